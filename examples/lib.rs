//! Examples live in this folder as `[[example]]` targets; this library is empty.
