//! The typed messages of the protocol, independent of their wire format.

use bytes::Bytes;

use crate::Error;

/// The payload of a data or event message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageData {
    /// Text. JSON: `"dataType":"text"` with a JSON string; protobuf: `text_data`.
    Text(String),
    /// Raw JSON text, inlined verbatim by the JSON encoder. It must be valid JSON:
    /// the decoder guarantees that, [`MessageData::json`] checks it for other sources.
    /// JSON: `"dataType":"json"`; protobuf: `text_data` downstream, `text_data` or
    /// `json_data` upstream.
    Json(String),
    /// Opaque bytes. JSON: `"dataType":"binary"` with standard padded base64;
    /// protobuf: `binary_data`.
    Binary(Bytes),
    /// A protobuf message as a `google.protobuf.Any`. Protobuf: `protobuf_data`; JSON
    /// (which has no such data type): `"dataType":"binary"` with the base64 of the encoded
    /// `Any`, as the gateway's GEX feeds do.
    Protobuf {
        /// The `Any.type_url`, for example `proto.gex`.
        type_url: String,
        /// The `Any.value`: the encoded message.
        value: Bytes,
    },
}

impl MessageData {
    /// [`MessageData::Json`] after checking that `text` is one valid JSON value, nested at
    /// most [`MAX_JSON_DEPTH`] deep.
    pub fn json(text: impl Into<String>) -> Result<Self, Error> {
        let text = text.into();
        match check_json(&text) {
            Ok(()) => Ok(MessageData::Json(text)),
            Err(reason) => Err(Error::InvalidField {
                field: "data",
                reason,
                ack_id: None,
            }),
        }
    }
}

/// The deepest nesting of arrays and objects accepted in JSON data (serde_json's own
/// recursion limit). JSON data is forwarded verbatim to other clients, whose parsers may
/// recurse; the syntax check alone does not bound the depth.
pub const MAX_JSON_DEPTH: usize = 128;

/// Checks that `text` is one JSON value nested at most [`MAX_JSON_DEPTH`] deep; `Err`
/// holds the reason.
pub(crate) fn check_json(text: &str) -> Result<(), String> {
    serde_json::from_str::<&serde_json::value::RawValue>(text)
        .map_err(|e| format!("not valid JSON: {e}"))?;
    check_json_depth(text)
}

/// Checks the nesting depth of syntactically valid JSON text, without recursion.
pub(crate) fn check_json_depth(text: &str) -> Result<(), String> {
    let (mut depth, mut in_string, mut escaped) = (0_usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(format!("nested deeper than {MAX_JSON_DEPTH} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// `joinGroup`: add the connection to `group`.
    JoinGroup {
        /// The group to join.
        group: String,
        /// Answer with an ack carrying this id, if set.
        ack_id: Option<u64>,
    },
    /// `leaveGroup`: remove the connection from `group`.
    LeaveGroup {
        /// The group to leave.
        group: String,
        /// Answer with an ack carrying this id, if set.
        ack_id: Option<u64>,
    },
    /// `sendToGroup`: publish `data` to every member of `group`.
    SendToGroup {
        /// The target group.
        group: String,
        /// Answer with an ack carrying this id, if set.
        ack_id: Option<u64>,
        /// Do not deliver the message back to the sending connection.
        no_echo: bool,
        /// The payload.
        data: MessageData,
    },
    /// `event`: a user event for the server.
    Event {
        /// The event name.
        event: String,
        /// Answer with an ack carrying this id, if set.
        ack_id: Option<u64>,
        /// The payload.
        data: MessageData,
    },
    /// `sequenceAck` (reliable subprotocols): every data message up to and including
    /// `sequence_id` arrived; the server may forget them.
    SequenceAck {
        /// The highest sequence id received.
        sequence_id: u64,
    },
    /// `ping`: answer with [`Downstream::Pong`].
    Ping,
}

impl Upstream {
    /// The ack id the client asked to be answered with, if any.
    pub fn ack_id(&self) -> Option<u64> {
        match self {
            Upstream::JoinGroup { ack_id, .. }
            | Upstream::LeaveGroup { ack_id, .. }
            | Upstream::SendToGroup { ack_id, .. }
            | Upstream::Event { ack_id, .. } => *ack_id,
            Upstream::SequenceAck { .. } | Upstream::Ping => None,
        }
    }
}

/// Where a data message comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageFrom {
    /// Sent by the server to this connection.
    Server,
    /// Published to a group the connection has joined.
    Group {
        /// The group.
        group: String,
        /// The publishing user, when a client published it (JSON only: the protobuf
        /// `DataMessage` has no such field).
        from_user_id: Option<String>,
    },
}

impl MessageFrom {
    /// A message the server publishes to `group`.
    pub fn group(group: impl Into<String>) -> Self {
        MessageFrom::Group {
            group: group.into(),
            from_user_id: None,
        }
    }
}

/// Why an acknowledged message failed: the `error` of an ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// The error name: `Forbidden`, `Duplicate`, `BadRequest` or `InternalServerError`.
    pub name: String,
    /// A human-readable description.
    pub message: String,
}

impl AckError {
    /// `Forbidden`: the client lacks the permission (for example to join the group).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new("Forbidden", message)
    }

    /// `Duplicate`: a message with this ack id already succeeded. The SDKs treat it as
    /// success.
    pub fn duplicate(ack_id: u64) -> Self {
        Self::new(
            "Duplicate",
            format!("Message with ack-id: {ack_id} has been processed"),
        )
    }

    /// `BadRequest`: the message was malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new("BadRequest", message)
    }

    /// `InternalServerError`: the server failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalServerError", message)
    }

    fn new(name: &str, message: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            message: message.into(),
        }
    }
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Downstream {
    /// The `connected` system message, sent first on a new connection.
    Connected {
        /// The connection id (the Python SDK requires it).
        connection_id: String,
        /// The authenticated user id.
        user_id: String,
        /// The token to recover the session with (reliable subprotocols only).
        reconnection_token: Option<String>,
    },
    /// The `disconnected` system message, sent before the server ends the session on purpose.
    Disconnected {
        /// Why the connection ends.
        reason: String,
    },
    /// The answer to an upstream message that carried an ack id.
    Ack {
        /// The upstream message's ack id.
        ack_id: u64,
        /// Whether the message succeeded.
        success: bool,
        /// Why it failed.
        error: Option<AckError>,
    },
    /// The answer to a ping.
    Pong,
    /// A data message.
    Message {
        /// Where the message comes from.
        from: MessageFrom,
        /// The payload.
        data: MessageData,
        /// The per-connection sequence id (reliable subprotocols only, starting at 1).
        sequence_id: Option<u64>,
    },
}

impl Downstream {
    /// A successful ack.
    pub fn ack_ok(ack_id: u64) -> Self {
        Downstream::Ack {
            ack_id,
            success: true,
            error: None,
        }
    }

    /// A failed ack.
    pub fn ack_err(ack_id: u64, error: AckError) -> Self {
        Downstream::Ack {
            ack_id,
            success: false,
            error: Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_error_constructors() {
        assert_eq!(
            AckError::duplicate(7),
            AckError {
                name: "Duplicate".into(),
                message: "Message with ack-id: 7 has been processed".into()
            }
        );
        assert_eq!(AckError::forbidden("no").name, "Forbidden");
        assert_eq!(AckError::bad_request("bad").name, "BadRequest");
        assert_eq!(AckError::internal("oops").name, "InternalServerError");
        assert_eq!(AckError::internal("oops").message, "oops");
    }

    #[test]
    fn json_data_is_validated() {
        assert_eq!(
            MessageData::json(r#"{"a":[1,2]}"#),
            Ok(MessageData::Json(r#"{"a":[1,2]}"#.into()))
        );
        assert!(matches!(
            MessageData::json("{"),
            Err(Error::InvalidField { field: "data", .. })
        ));
        assert!(MessageData::json("1 2").is_err());
        assert!(MessageData::json("").is_err());
    }

    #[test]
    fn json_depth_is_bounded() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(MessageData::json(nest(MAX_JSON_DEPTH)).is_ok());
        let err = MessageData::json(nest(MAX_JSON_DEPTH + 1)).unwrap_err();
        assert!(err.to_string().contains("nested deeper than 128"), "{err}");
        // Brackets, quotes and escapes inside strings do not count.
        let in_string = format!(r#"["{}\"{}"]"#, "[".repeat(500), "{".repeat(500));
        assert!(MessageData::json(in_string).is_ok());
        let objects = format!("{}1{}", r#"{"a":"#.repeat(129), "}".repeat(129));
        assert!(MessageData::json(objects).is_err());
    }

    #[test]
    fn upstream_ack_id() {
        let join = Upstream::JoinGroup {
            group: "g".into(),
            ack_id: Some(3),
        };
        assert_eq!(join.ack_id(), Some(3));
        assert_eq!(Upstream::Ping.ack_id(), None);
        assert_eq!(Upstream::SequenceAck { sequence_id: 4 }.ack_id(), None);
    }
}
