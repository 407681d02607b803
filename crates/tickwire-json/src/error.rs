//! Why a client message was rejected, shared by both dialects.
//!
//! Each dialect answers with its own error ([`WsError`](crate::ws::WsError),
//! [`StreamError`](crate::stream::StreamError)), because each document defines its own
//! codes; both carry a [`ParseError`] for the structural failures they have in common. On
//! `/ws` its text is the `message` sent to the client; on `/stream` the document fixes the
//! message (`Invalid message format`) and the text serves the server's logs.

use std::fmt;

/// A client message that is not a well-formed command of its dialect.
///
/// Every variant is the client's fault and answered with the dialect's validation error
/// (`invalid_message` on `/ws`, `VALIDATION_ERROR` on `/stream`); the connection stays
/// open. The `Display` text is meant for the client (`Missing required field 'symbols'`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The message is longer than the limit the caller gave; it was not parsed. Answer with
    /// the validation error, or close the connection (RFC 6455 §7.4.1: 1009, message too
    /// big) if the client keeps doing it.
    #[error("Message too large: {size} bytes, limit is {max}")]
    TooLarge {
        /// The message's length in bytes.
        size: usize,
        /// The caller's limit in bytes.
        max: usize,
    },

    /// The message is not one JSON object: not UTF-8, a syntax error, another JSON value,
    /// or trailing data.
    #[error("Malformed JSON: {detail}")]
    Json {
        /// What the JSON parser objected to, with the line and column.
        detail: String,
    },

    /// A field the message needs is absent (`type`, or `symbols` of a subscribe).
    #[error("Missing required field '{field}'")]
    MissingField {
        /// The field's name on the wire.
        field: &'static str,
    },

    /// A field appears twice (or a field and its alias, such as `symbols` and `assets`
    /// on `/ws`); which one to believe is ambiguous, so neither is.
    #[error("Duplicate field '{field}'")]
    DuplicateField {
        /// The name of the second occurrence, as the client spelled it.
        field: &'static str,
    },

    /// A field holds a value of the wrong type or shape (a string where an array of
    /// strings belongs, an empty symbol list, ...).
    #[error("Field '{field}' must be {expected}")]
    InvalidField {
        /// The field's name on the wire.
        field: &'static str,
        /// What the field must hold, as a phrase (`a non-empty array of strings`).
        expected: &'static str,
    },

    /// The `type` is not one the dialect defines (`subscribe`, `unsubscribe`, `ping`).
    #[error("Unknown message type '{}'", Clipped(.type_name))]
    UnknownType {
        /// The `type` the client sent.
        type_name: String,
    },

    /// A `/ws` `channels` entry names no channel (`price`, `orderbook`, `signal`).
    #[error("Unknown channel '{}', expected price, orderbook or signal", Clipped(.channel))]
    UnknownChannel {
        /// The entry the client sent.
        channel: String,
    },
}

impl ParseError {
    pub(crate) fn json(error: &serde_json::Error) -> ParseError {
        ParseError::Json {
            detail: error.to_string(),
        }
    }
}

/// Shows client-supplied text in an error message, cut at [`Clipped::MAX_CHARS`]
/// characters so that a huge symbol or type is not echoed back whole.
pub(crate) struct Clipped<'a>(pub(crate) &'a str);

impl Clipped<'_> {
    /// The most characters shown.
    pub(crate) const MAX_CHARS: usize = 64;
}

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(Self::MAX_CHARS) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}...", &self.0[..cut]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_the_documents_write_them() {
        let cases = [
            (
                ParseError::TooLarge { size: 10, max: 5 },
                "Message too large: 10 bytes, limit is 5",
            ),
            (
                ParseError::MissingField { field: "symbols" },
                "Missing required field 'symbols'",
            ),
            (
                ParseError::DuplicateField { field: "assets" },
                "Duplicate field 'assets'",
            ),
            (
                ParseError::InvalidField {
                    field: "symbols",
                    expected: "a non-empty array of strings",
                },
                "Field 'symbols' must be a non-empty array of strings",
            ),
            (
                ParseError::UnknownType {
                    type_name: "subscribe_all".into(),
                },
                "Unknown message type 'subscribe_all'",
            ),
            (
                ParseError::UnknownChannel {
                    channel: "trades".into(),
                },
                "Unknown channel 'trades', expected price, orderbook or signal",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn long_client_text_is_clipped_on_a_char_boundary() {
        let long = "é".repeat(100);
        let shown = Clipped(&long).to_string();
        assert_eq!(shown, format!("{}...", "é".repeat(Clipped::MAX_CHARS)));
        assert_eq!(Clipped("xyz").to_string(), "xyz");
        let exact = "a".repeat(Clipped::MAX_CHARS);
        assert_eq!(Clipped(&exact).to_string(), exact);
    }
}
