//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Why a [`BrokerAdapter`](crate::BrokerAdapter) call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The replay data directory does not exist or is not a directory: fix `data_dir`.
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

    /// A configuration value is out of range: fix the named field.
    #[error("invalid adapter configuration: {field} {reason}")]
    InvalidConfig {
        /// The configuration field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
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

    /// A subscription key this adapter does not understand: the caller built
    /// the key wrongly; nothing was subscribed.
    #[error("invalid subscription key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// [`updates`](crate::BrokerAdapter::updates) was already called: there is
    /// one stream per adapter; keep the first one.
    #[error("the update stream of adapter {adapter} was already taken")]
    UpdatesTaken {
        /// The adapter's name.
        adapter: String,
    },

    /// The adapter was disconnected and takes no more calls: build a new one.
    #[error("adapter {adapter} is disconnected")]
    Disconnected {
        /// The adapter's name.
        adapter: String,
    },

    /// The upstream broker refused or failed a request: retry later or report it.
    #[error("adapter {adapter}: upstream error: {message}")]
    Upstream {
        /// The adapter's name.
        adapter: String,
        /// What the broker said.
        message: String,
    },
}
