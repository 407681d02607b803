//! The one error type of the crate.

/// A client request that cannot be carried out, with the error code the proxy
/// answers it with (the codes of the reference server: `INVALID_JSON`,
/// `INVALID_ACTION`, `NOT_AUTHENTICATED`, ...).
///
/// Every variant is answered with [`encode_error`](crate::encode_error) and the
/// connection stays open: the protocol has no fatal client error. The `Display`
/// text is the reply's `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The frame is not a JSON object: tell the client, keep the connection.
    #[error("Invalid JSON message")]
    InvalidJson {
        /// What the JSON parser objected to (for logs; not sent).
        reason: String,
    },

    /// The `action` (or `type`) is missing or unknown: tell the client.
    #[error("Invalid action: {action}")]
    InvalidAction {
        /// The action as the client sent it (`None` when absent), cut to 64 characters.
        action: String,
    },

    /// The request needs an authenticated connection: the client must send
    /// `authenticate` first.
    #[error("You must authenticate first")]
    NotAuthenticated,

    /// `authenticate` without an API key, or with one the server does not know.
    #[error("{message}")]
    Authentication {
        /// `API key is required` or `Invalid API key`.
        message: String,
    },

    /// The `mode` is not 1, 2, 3 or `LTP`/`Quote`/`Depth` in any case.
    #[error("{message}")]
    InvalidMode {
        /// Why, in the reference server's words.
        message: String,
    },

    /// Required parameters are missing or out of range (no symbols, a depth other
    /// than 5, 20 or 30, `symbols` not a list).
    #[error("{message}")]
    InvalidParameters {
        /// Which parameter and why.
        message: String,
    },

    /// The key is over its request rate, or the connection at its
    /// subscription limit: the request is not carried out.
    #[error("{message}")]
    Limited {
        /// Which limit.
        message: String,
    },

    /// The broker side failed (adapter unavailable or refusing): retry later.
    #[error("{message}")]
    Broker {
        /// What the adapter said.
        message: String,
    },
}

impl ProxyError {
    /// The error code sent in the reply's `code` field.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::InvalidJson { .. } => "INVALID_JSON",
            ProxyError::InvalidAction { .. } => "INVALID_ACTION",
            ProxyError::NotAuthenticated => "NOT_AUTHENTICATED",
            ProxyError::Authentication { .. } => "AUTHENTICATION_ERROR",
            ProxyError::InvalidMode { .. } => "INVALID_MODE",
            ProxyError::InvalidParameters { .. } => "INVALID_PARAMETERS",
            ProxyError::Limited { .. } => "RATE_LIMITED",
            ProxyError::Broker { .. } => "BROKER_ERROR",
        }
    }

    /// `authenticate` with a key the server rejected.
    pub fn invalid_api_key() -> ProxyError {
        ProxyError::Authentication {
            message: "Invalid API key".into(),
        }
    }
}
