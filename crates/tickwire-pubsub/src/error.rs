//! The one error type of the crate.

use crate::subprotocol::{FrameKind, Subprotocol};

/// Everything that can go wrong while negotiating a subprotocol or decoding a client frame.
///
/// Decoding errors are the client's fault. If [`Error::ack_id`] returns an id, the frame
/// was well-formed enough to carry one: answer it with a failed ack
/// ([`AckError::bad_request`](crate::AckError::bad_request)) as the service does, and keep
/// the connection. Otherwise the frame cannot be answered; a server usually closes the
/// connection (RFC 6455 §7.4.1: 1003 for a wrong frame kind, 1007 for a malformed payload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The frame kind does not match the subprotocol: JSON subprotocols take text frames,
    /// protobuf ones binary frames. Close the connection with 1003 (unsupported data).
    #[error("expected a {expected} frame, got a {got} frame")]
    WrongFrameKind {
        /// The frame kind the negotiated subprotocol uses.
        expected: FrameKind,
        /// The frame kind that arrived.
        got: FrameKind,
    },

    /// A text frame is not a JSON object (not UTF-8, a syntax error, another JSON value,
    /// or a key given twice). The frame cannot be answered; close with 1007.
    #[error("invalid JSON message: {reason}")]
    InvalidJson {
        /// What the JSON parser objected to.
        reason: String,
    },

    /// A binary frame is not a protobuf `UpstreamMessage` (truncated, bad wire type,
    /// invalid UTF-8 in a string, nested too deep). The frame cannot be answered; close with 1007.
    #[error("invalid protobuf message: {reason}")]
    Protobuf {
        /// What the protobuf decoder objected to.
        reason: String,
    },

    /// A JSON message names a `type` this protocol does not define. Answer with a failed
    /// ack when [`Error::ack_id`] is set.
    #[error("unknown message type `{type_name}`")]
    UnknownType {
        /// The `type` the client sent.
        type_name: String,
        /// The message's ack id, if it carried a valid one.
        ack_id: Option<u64>,
    },

    /// A field the message type requires is absent (for protobuf: an unset `oneof`).
    /// Answer with a failed ack when [`Error::ack_id`] is set.
    #[error("missing field `{field}`")]
    MissingField {
        /// The field's name as it appears on the wire (`group`, `data`, `sequenceId`, ...).
        field: &'static str,
        /// The message's ack id, if it carried a valid one.
        ack_id: Option<u64>,
    },

    /// A field is present but holds a value of the wrong type or range (a negative or
    /// fractional `ackId`, non-base64 binary data, an unknown `dataType`, ...). Answer with
    /// a failed ack when [`Error::ack_id`] is set.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The field's name as it appears on the wire.
        field: &'static str,
        /// Why the value was rejected.
        reason: String,
        /// The message's ack id, if it carried a valid one.
        ack_id: Option<u64>,
    },

    /// The client offered subprotocols, none of which is supported. Refuse the upgrade
    /// (for example with 400 Bad Request) rather than pick one it did not offer.
    #[error(
        "unsupported WebSocket subprotocol(s) {}; supported: {}",
        requested.join(", "),
        supported_names()
    )]
    UnsupportedSubprotocols {
        /// Every subprotocol the client offered, in order.
        requested: Vec<String>,
    },
}

impl Error {
    /// The ack id of the rejected message, when the frame carried a valid one.
    ///
    /// The server answers such a message with
    /// `Downstream::Ack { ack_id, success: false, error: Some(AckError::bad_request(..)) }`.
    pub fn ack_id(&self) -> Option<u64> {
        match self {
            Error::UnknownType { ack_id, .. }
            | Error::MissingField { ack_id, .. }
            | Error::InvalidField { ack_id, .. } => *ack_id,
            _ => None,
        }
    }
}

fn supported_names() -> String {
    Subprotocol::ALL
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}
