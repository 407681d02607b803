//! The one error type of the load generator.

/// Everything that can stop a load test before it has a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line asks for something impossible; fix the named option.
    #[error("invalid settings: {reason}")]
    InvalidSettings {
        /// What is wrong and with which option.
        reason: String,
    },

    /// The server answered a request the run depends on with an error.
    #[error("{what} failed: HTTP {status}: {body}{hint}")]
    Http {
        /// The request (`publish`, `negotiate`).
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
        /// What to do about it, when known (starts with a line break).
        hint: &'static str,
    },

    /// A socket, pipe or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A worker process died or said something unexpected.
    #[error("worker {worker}: {reason}")]
    Worker {
        /// The worker's index.
        worker: usize,
        /// What went wrong.
        reason: String,
    },

    /// Not one connection could be opened and subscribed.
    #[error("no connection could be opened and subscribed; errors: {samples}")]
    NoConnections {
        /// The most frequent errors with their counts.
        samples: String,
    },
}

impl Error {
    pub(crate) fn invalid(reason: impl Into<String>) -> Error {
        Error::InvalidSettings {
            reason: reason.into(),
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
