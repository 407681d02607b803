//! Encoding server-to-client messages in both wire formats.
//!
//! JSON follows the service's JSON subprotocol reference (`reference-json-webpubsub-subprotocol`,
//! "Responses"): keys in a fixed order and `dataType` always present, since the JS SDK
//! silently drops a data message without it and the Python SDK raises. Protobuf uses the
//! `DownstreamMessage` of `proto/webpubsub_messages.proto`.

use bytes::{BufMut, BytesMut};
use prost::Message as _;
use tickwire_proto::webpubsub as pb;
use tickwire_proto::webpubsub::downstream_message::{
    self as down, ack_message::ErrorMessage, system_message,
};

use crate::subprotocol::WireFormat;
use crate::wire::{self, put_base64_str, put_json_str, put_u64};
use crate::{Downstream, MessageData, MessageFrom};

/// The `from` of a protobuf `DataMessage`.
///
/// Seed 000: the server's own group broadcasts reach protobuf clients as
/// `DataMessage{from: "server", group, data}` (while JSON clients see `"from":"group"`), so
/// protobuf clients written against it expect `"server"` for them; the group travels in
/// `group`. A message a client published with `sendToGroup` (it has a sender) is `"group"`,
/// as in the Azure Web PubSub protobuf protocol.
pub(crate) fn protobuf_from(from: &MessageFrom) -> &'static str {
    match from {
        MessageFrom::Group {
            from_user_id: Some(_),
            ..
        } => "group",
        MessageFrom::Server | MessageFrom::Group { .. } => "server",
    }
}

/// Appends `msg` to `out` in `format`, as the payload of one WebSocket frame (text for
/// [`WireFormat::Json`], binary for [`WireFormat::Protobuf`]).
///
/// For data messages sent to many connections, [`encode_message`](crate::encode_message)
/// encodes the payload once instead of once per connection.
pub fn encode_downstream(format: WireFormat, msg: &Downstream, out: &mut BytesMut) {
    match format {
        WireFormat::Json => put_json(msg, out),
        WireFormat::Protobuf => {
            let msg = to_proto(msg);
            out.reserve(msg.encoded_len());
            // `BytesMut` grows on demand, so prost's only failure (a buffer without room)
            // cannot happen.
            let encoded = msg.encode(out);
            debug_assert!(encoded.is_ok(), "BytesMut always has room");
        }
    }
}

fn put_json(msg: &Downstream, out: &mut BytesMut) {
    match msg {
        Downstream::Connected {
            connection_id,
            user_id,
            reconnection_token,
        } => {
            out.extend_from_slice(br#"{"type":"system","event":"connected","userId":"#);
            put_json_str(out, user_id);
            out.extend_from_slice(br#","connectionId":"#);
            put_json_str(out, connection_id);
            if let Some(token) = reconnection_token {
                out.extend_from_slice(br#","reconnectionToken":"#);
                put_json_str(out, token);
            }
            out.put_u8(b'}');
        }
        Downstream::Disconnected { reason } => {
            out.extend_from_slice(br#"{"type":"system","event":"disconnected","message":"#);
            put_json_str(out, reason);
            out.put_u8(b'}');
        }
        Downstream::Ack {
            ack_id,
            success,
            error,
        } => {
            out.extend_from_slice(br#"{"type":"ack","ackId":"#);
            put_u64(out, *ack_id);
            out.extend_from_slice(if *success {
                br#","success":true"#
            } else {
                br#","success":false"#
            });
            if let Some(error) = error {
                out.extend_from_slice(br#","error":{"name":"#);
                put_json_str(out, &error.name);
                out.extend_from_slice(br#","message":"#);
                put_json_str(out, &error.message);
                out.put_u8(b'}');
            }
            out.put_u8(b'}');
        }
        Downstream::Pong => out.extend_from_slice(br#"{"type":"pong"}"#),
        Downstream::Message {
            from,
            data,
            sequence_id,
        } => put_json_message(from, data, *sequence_id, out),
    }
}

/// Appends a JSON data message. With `sequence_id` set, `"sequenceId"` is the last key,
/// which lets [`EncodedMessage`](crate::EncodedMessage) add it to a stored message.
pub(crate) fn put_json_message(
    from: &MessageFrom,
    data: &MessageData,
    sequence_id: Option<u64>,
    out: &mut BytesMut,
) {
    match from {
        MessageFrom::Server => out.extend_from_slice(br#"{"type":"message","from":"server""#),
        MessageFrom::Group {
            group,
            from_user_id,
        } => {
            out.extend_from_slice(br#"{"type":"message","from":"group""#);
            if let Some(user) = from_user_id {
                out.extend_from_slice(br#","fromUserId":"#);
                put_json_str(out, user);
            }
            out.extend_from_slice(br#","group":"#);
            put_json_str(out, group);
        }
    }
    match data {
        MessageData::Text(text) => {
            out.extend_from_slice(br#","dataType":"text","data":"#);
            put_json_str(out, text);
        }
        MessageData::Json(raw) => {
            out.extend_from_slice(br#","dataType":"json","data":"#);
            out.extend_from_slice(raw.as_bytes());
        }
        MessageData::Binary(bytes) => {
            out.extend_from_slice(br#","dataType":"binary","data":"#);
            put_base64_str(out, bytes);
        }
        MessageData::Protobuf { type_url, value } => {
            // JSON has no protobuf data type: the encoded `google.protobuf.Any` travels as
            // binary, `"data": base64(Any bytes)`, as the reference server sends its GEX data.
            out.extend_from_slice(br#","dataType":"binary","data":"#);
            let mut any = BytesMut::with_capacity(any_len(type_url, value));
            put_any(&mut any, type_url, value);
            put_base64_str(out, &any);
        }
    }
    if let Some(sequence_id) = sequence_id {
        out.extend_from_slice(SEQUENCE_ID_KEY);
        put_u64(out, sequence_id);
    }
    out.put_u8(b'}');
}

/// What precedes the sequence id in a JSON data message.
pub(crate) const SEQUENCE_ID_KEY: &[u8] = br#","sequenceId":"#;

/// The encoded length of `google.protobuf.Any { type_url = 1; bytes value = 2 }`.
/// proto3 leaves out empty scalar fields, as prost does.
pub(crate) fn any_len(type_url: &str, value: &[u8]) -> usize {
    let url = if type_url.is_empty() {
        0
    } else {
        wire::len_field_len(type_url.len())
    };
    let value = if value.is_empty() {
        0
    } else {
        wire::len_field_len(value.len())
    };
    url + value
}

/// Appends the body of a `google.protobuf.Any`.
pub(crate) fn put_any(out: &mut BytesMut, type_url: &str, value: &[u8]) {
    if !type_url.is_empty() {
        wire::put_len_field(out, 1, type_url.as_bytes());
    }
    if !value.is_empty() {
        wire::put_len_field(out, 2, value);
    }
}

/// The prost form of `msg`: the reference encoding the fan-out fast path is tested against.
fn to_proto(msg: &Downstream) -> pb::DownstreamMessage {
    let message = match msg {
        Downstream::Connected {
            connection_id,
            user_id,
            reconnection_token,
        } => down::Message::SystemMessage(down::SystemMessage {
            message: Some(system_message::Message::ConnectedMessage(
                system_message::ConnectedMessage {
                    connection_id: connection_id.clone(),
                    user_id: user_id.clone(),
                    reconnection_token: reconnection_token.clone(),
                },
            )),
        }),
        Downstream::Disconnected { reason } => down::Message::SystemMessage(down::SystemMessage {
            message: Some(system_message::Message::DisconnectedMessage(
                system_message::DisconnectedMessage {
                    reason: reason.clone(),
                },
            )),
        }),
        Downstream::Ack {
            ack_id,
            success,
            error,
        } => down::Message::AckMessage(down::AckMessage {
            ack_id: *ack_id,
            success: *success,
            error: error.as_ref().map(|e| ErrorMessage {
                name: e.name.clone(),
                message: e.message.clone(),
            }),
        }),
        Downstream::Pong => down::Message::PongMessage(down::PongMessage {}),
        Downstream::Message {
            from,
            data,
            sequence_id,
        } => down::Message::DataMessage(down::DataMessage {
            from: protobuf_from(from).to_owned(),
            group: match from {
                MessageFrom::Server => None,
                MessageFrom::Group { group, .. } => Some(group.clone()),
            },
            data: Some(data_to_proto(data)),
            sequence_id: *sequence_id,
        }),
    };
    pb::DownstreamMessage {
        message: Some(message),
    }
}

fn data_to_proto(data: &MessageData) -> pb::MessageData {
    use pb::message_data::Data;
    let data = match data {
        // The protobuf reference: "For JSON payloads over protobuf, send text_data".
        MessageData::Text(text) | MessageData::Json(text) => Data::TextData(text.clone()),
        MessageData::Binary(bytes) => Data::BinaryData(bytes.clone()),
        MessageData::Protobuf { type_url, value } => Data::ProtobufData(prost_types::Any {
            type_url: type_url.clone(),
            value: value.to_vec(),
        }),
    };
    pb::MessageData { data: Some(data) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_matches_prost() {
        for (url, value) in [
            ("", &b""[..]),
            ("proto.gex", &b""[..]),
            ("", &b"\x01\x02"[..]),
            ("proto.orderflow", &[7u8; 300][..]),
        ] {
            let mut out = BytesMut::new();
            put_any(&mut out, url, value);
            let expected = prost_types::Any {
                type_url: url.into(),
                value: value.to_vec(),
            }
            .encode_to_vec();
            assert_eq!(&out[..], &expected[..]);
            assert_eq!(any_len(url, value), expected.len());
        }
    }

    #[test]
    fn protobuf_group_messages_say_from_server() {
        let msg = Downstream::Message {
            from: MessageFrom::group("g"),
            data: MessageData::Text("x".into()),
            sequence_id: None,
        };
        let mut out = BytesMut::new();
        encode_downstream(WireFormat::Protobuf, &msg, &mut out);
        let decoded = pb::DownstreamMessage::decode(&out[..]).unwrap();
        let Some(down::Message::DataMessage(data)) = decoded.message else {
            panic!("not a data message: {decoded:?}");
        };
        assert_eq!(data.from, "server");
        assert_eq!(data.group.as_deref(), Some("g"));
    }
}
