//! The one error type of the crate.

/// What can go wrong in this crate: only parsing a resolution's spelling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not one of `1`, `5`, `15`, `30`, `60`, `D`, `W`, `M`. Refuse the request
    /// that named it.
    #[error("unknown resolution `{resolution}`; expected 1, 5, 15, 30, 60, D, W or M")]
    UnknownResolution {
        /// The rejected text (its first 16 characters).
        resolution: String,
    },
}
