//! Placeholder: filled in by the crate's first change.
