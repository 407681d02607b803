//! The one error type of this crate.

/// Why a [`BrokerAdapter`](crate::BrokerAdapter) call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// A configuration value is out of range: fix the named field.
    #[error("invalid adapter configuration: {field} {reason}")]
    InvalidConfig {
        /// The configuration field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
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

    /// The adapter's own failure (a replay's missing data, say): `error`, of
    /// a type of the adapter's crate, says what to fix (and can be downcast
    /// to it).
    #[error("adapter {adapter}: {error}")]
    Source {
        /// The adapter's name.
        adapter: String,
        /// What went wrong, as the adapter tells it.
        error: Box<dyn std::error::Error + Send + Sync>,
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
