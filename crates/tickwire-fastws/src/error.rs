//! The one error type of the crate, and the close frames FastWS answers failures with.

use std::borrow::Cow;
use std::fmt;

/// WebSocket close code 1003, "unsupported data" (RFC 6455 §7.4.1): FastWS closes with it
/// on every failure, timeouts included.
pub const CLOSE_UNSUPPORTED_DATA: u16 = 1003;

/// The close reason of a frame that is not a valid envelope, or whose payload does not
/// validate against its operation's schema (FastWS: a pydantic `ValidationError`).
pub const REASON_INVALID_PAYLOAD: &str = "Could not validate payload";

/// The close reason of an envelope whose `type` names no client-to-server operation
/// (FastWS: `NoMatchingOperation`).
pub const REASON_NO_MATCHING_TYPE: &str = "No matching type";

/// FastWS's generic close reason, for frames it cannot even read as text: here, binary
/// frames (the ASGI server hands FastWS text frames only).
pub const REASON_UNDECODABLE: &str = "Could not decode message";

/// A close frame to send before dropping the connection: a code and a UTF-8 reason.
///
/// Every reason this crate produces fits the 123 bytes a close frame allows
/// (RFC 6455 §5.5: control frame payloads are at most 125 bytes, 2 of them the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The status code: always [`CLOSE_UNSUPPORTED_DATA`] from this crate.
    pub code: u16,
    /// The reason, as FastWS words it.
    pub reason: Cow<'static, str>,
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

/// Why a client frame was refused. Every variant is the client's fault, and FastWS's
/// answer to each is the same: close the connection with [`Error::close`] (code 1003 and
/// the reason of [`Error::reason`]). Nothing is sent back before the close frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A binary frame: the envelope is JSON text. Close with 1003
    /// `Could not decode message`.
    #[error("binary frames are not supported; send the JSON envelope as a text frame")]
    BinaryFrame,

    /// The frame is not a JSON object (not UTF-8, a syntax error, another JSON value).
    /// Close with 1003 `Could not validate payload`.
    #[error("invalid JSON envelope: {reason}")]
    InvalidJson {
        /// What the JSON parser objected to.
        reason: String,
    },

    /// The envelope has no `type` (or `"type": null`). Close with 1003
    /// `Could not validate payload`.
    #[error("the envelope has no `type`")]
    MissingType,

    /// `type` names no operation the client may send (unknown, or one only the server
    /// sends, such as `bars.update`). Close with 1003 `No matching type`.
    #[error("no client operation `{type_name}`")]
    UnknownType {
        /// The `type` the client sent (its first 64 bytes, cut on a character boundary).
        type_name: String,
    },

    /// A field the operation's payload requires is absent or `null` (`payload` itself
    /// included). Close with 1003 `Could not validate payload`.
    #[error("missing field `{field}`")]
    MissingField {
        /// The field's name as it appears on the wire: `payload`, `symbol`, ...
        field: &'static str,
    },

    /// A field holds a value of the wrong JSON type, or contradicts another field. Close
    /// with 1003 `Could not validate payload`.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The field's name as it appears on the wire: `type`, `symbol`, `params`, ...
        field: &'static str,
        /// Why the value was refused.
        reason: &'static str,
    },

    /// The resolution is not one of `1`, `5`, `15`, `30`, `60`, `D`, `W`, `M`. Close with
    /// 1003 `Could not validate payload`.
    #[error("unknown resolution `{resolution}`; expected 1, 5, 15, 30, 60, D, W or M")]
    UnknownResolution {
        /// The resolution the client sent (its first 16 characters).
        resolution: String,
    },
}

impl Error {
    /// The close reason FastWS gives for this failure.
    pub const fn reason(&self) -> &'static str {
        match self {
            Error::BinaryFrame => REASON_UNDECODABLE,
            Error::UnknownType { .. } => REASON_NO_MATCHING_TYPE,
            Error::InvalidJson { .. }
            | Error::MissingType
            | Error::MissingField { .. }
            | Error::InvalidField { .. }
            | Error::UnknownResolution { .. } => REASON_INVALID_PAYLOAD,
        }
    }

    /// The close frame to answer this failure with: code 1003 and [`Error::reason`].
    pub const fn close(&self) -> Close {
        Close {
            code: CLOSE_UNSUPPORTED_DATA,
            reason: Cow::Borrowed(self.reason()),
        }
    }
}
