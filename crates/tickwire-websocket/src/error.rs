//! The errors of the codec.

use crate::close_code;

/// Why the client's bytes cannot be read any further: the connection must be
/// closed with [`close_code`](Error::close_code) (RFC 6455 §7.4.1).
///
/// After an error the [`Reader`](crate::Reader) is failed for good: it
/// returns the same error again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame or sequence of frames the protocol forbids (unmasked, reserved
    /// bits, unknown opcode, bad length encoding, bad control frame, bad
    /// fragmentation, bad close frame): close with 1002.
    #[error("protocol error: {reason}")]
    Protocol {
        /// What was wrong.
        reason: &'static str,
    },
    /// A message larger than the limit the reader was made with: close with
    /// 1009. Checked from the frame header, before the payload is read.
    #[error("message of {size} bytes or more is over the limit of {max} bytes")]
    TooBig {
        /// The size the message would have had (at least).
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A text message or close reason that is not UTF-8: close with 1007.
    #[error("invalid UTF-8")]
    InvalidUtf8,
}

impl Error {
    /// The close code to answer the error with.
    pub fn close_code(&self) -> u16 {
        match self {
            Error::Protocol { .. } => close_code::PROTOCOL_ERROR,
            Error::TooBig { .. } => close_code::TOO_BIG,
            Error::InvalidUtf8 => close_code::INVALID_PAYLOAD,
        }
    }

    /// A short close reason (at most 123 bytes, as a close frame allows).
    pub fn close_reason(&self) -> &'static str {
        match self {
            Error::Protocol { reason } => reason,
            Error::TooBig { .. } => "message too big",
            Error::InvalidUtf8 => "invalid UTF-8",
        }
    }
}

/// Why an upgrade request is refused (RFC 6455 §4.2.1, §4.2.2). Each is an
/// HTTP 400; [`WrongVersion`](HandshakeError::WrongVersion) also tells the
/// client which version the server speaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Not `GET`: use `GET`.
    #[error("a WebSocket handshake must be a GET request")]
    NotGet,
    /// No `Upgrade: websocket` or no `Connection: upgrade`: this is not an
    /// upgrade request.
    #[error("expected a WebSocket upgrade request")]
    NotUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13: answer with
    /// `Sec-WebSocket-Version: 13` ([`handshake::VERSION`](crate::handshake::VERSION)).
    #[error("unsupported WebSocket version: this server speaks version 13")]
    WrongVersion,
    /// `Sec-WebSocket-Key` is missing, repeated, or not 16 bytes in base64.
    #[error("Sec-WebSocket-Key must be 16 bytes in base64")]
    BadKey,
}
