//! The replay's own errors.

use std::io;
use std::path::PathBuf;

/// Why the replay cannot load its data. [`connect`](tickwire_adapter::BrokerAdapter::connect)
/// returns it as the `error` of an
/// [`AdapterError::Source`](tickwire_adapter::AdapterError::Source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The data directory does not exist or is not a directory: fix `data_dir`.
    #[error("replay data directory {} not found", path.display())]
    DataDirNotFound {
        /// The directory that was looked for.
        path: PathBuf,
    },

    /// The configured date has no folder in the data directory: pick another date or `latest`.
    #[error("no replay data for {date}: {} not found", path.display())]
    DateNotFound {
        /// The configured date.
        date: String,
        /// The folder that was looked for.
        path: PathBuf,
    },

    /// `latest` was asked for but the data directory holds no folder named as a
    /// valid `YYYY-MM-DD` date: add data or fix `data_dir`.
    #[error("no dated folder (YYYY-MM-DD) in replay data directory {}", path.display())]
    NoDatedFolder {
        /// The data directory.
        path: PathBuf,
    },

    /// The configured date is neither `latest` nor a valid `YYYY-MM-DD` date: fix `date`.
    #[error("invalid replay date {date:?}: expected \"latest\" or YYYY-MM-DD")]
    InvalidDate {
        /// The configured value.
        date: String,
    },

    /// The selected data folder holds no usable record (every file was
    /// skipped, empty or filtered out): check the folder and the ticker filter.
    #[error("no replayable records under {}", path.display())]
    NoRecords {
        /// The dated folder that was loaded.
        path: PathBuf,
    },

    /// Reading the file system failed: check the path and its permissions.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or directory being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}
