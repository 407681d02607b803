//! Property tests: arbitrary input never panics the decoder, decoding inverts encoding,
//! and the fan-out fast path equals the full encoder.

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use prost::Message as _;
use serde_json::{Value, json};
use tickwire_proto::webpubsub as pb;
use tickwire_proto::webpubsub::upstream_message as up;
use tickwire_pubsub::{
    Downstream, Error, FrameKind, MessageData, MessageFrom, Upstream, WireFormat, decode_upstream,
    encode_downstream, encode_message,
};

// ------------------------------------------------------------------------------------
// Strategies
// ------------------------------------------------------------------------------------

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

/// Upstream data a JSON client can send, with the JSON value that carries it.
fn json_client_data() -> impl Strategy<Value = (MessageData, Option<&'static str>, Value)> {
    prop_oneof![
        any::<String>().prop_map(|s| (
            MessageData::Text(s.clone()),
            Some("text"),
            Value::String(s)
        )),
        bytes().prop_map(|b| {
            let text = base64::engine::general_purpose::STANDARD.encode(&b);
            (MessageData::Binary(b), Some("binary"), Value::String(text))
        }),
        (json_value(), any::<bool>()).prop_map(|(v, explicit)| {
            (
                MessageData::Json(v.to_string()),
                explicit.then_some("json"),
                v,
            )
        }),
    ]
}

/// Any message data, for protobuf and downstream.
fn message_data() -> impl Strategy<Value = MessageData> {
    prop_oneof![
        any::<String>().prop_map(MessageData::Text),
        json_value().prop_map(|v| MessageData::Json(v.to_string())),
        bytes().prop_map(MessageData::Binary),
        (any::<String>(), bytes())
            .prop_map(|(type_url, value)| MessageData::Protobuf { type_url, value }),
    ]
}

fn upstream() -> impl Strategy<Value = Upstream> {
    let ack = any::<Option<u64>>;
    prop_oneof![
        (any::<String>(), ack()).prop_map(|(group, ack_id)| Upstream::JoinGroup { group, ack_id }),
        (any::<String>(), ack()).prop_map(|(group, ack_id)| Upstream::LeaveGroup { group, ack_id }),
        (any::<String>(), ack(), any::<bool>(), message_data()).prop_map(
            |(group, ack_id, no_echo, data)| Upstream::SendToGroup {
                group,
                ack_id,
                no_echo,
                data
            }
        ),
        (any::<String>(), ack(), message_data()).prop_map(|(event, ack_id, data)| {
            Upstream::Event {
                event,
                ack_id,
                data,
            }
        }),
        any::<u64>().prop_map(|sequence_id| Upstream::SequenceAck { sequence_id }),
        Just(Upstream::Ping),
    ]
}

fn message_from() -> impl Strategy<Value = MessageFrom> {
    prop_oneof![
        Just(MessageFrom::Server),
        (any::<String>(), any::<Option<String>>()).prop_map(|(group, from_user_id)| {
            MessageFrom::Group {
                group,
                from_user_id,
            }
        }),
    ]
}

/// Token soup that often forms almost-valid upstream JSON.
fn json_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\"type\"".to_owned()),
        Just("\"joinGroup\"".to_owned()),
        Just("\"sendToGroup\"".to_owned()),
        Just("\"event\"".to_owned()),
        Just("\"sequenceAck\"".to_owned()),
        Just("\"group\"".to_owned()),
        Just("\"ackId\"".to_owned()),
        Just("\"sequenceId\"".to_owned()),
        Just("\"dataType\"".to_owned()),
        Just("\"binary\"".to_owned()),
        Just("\"data\"".to_owned()),
        Just("\"noEcho\"".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("-1".to_owned()),
        Just("1e400".to_owned()),
        Just("\"\\u0000\\ud800\"".to_owned()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<String>().prop_map(|s| Value::String(s).to_string()),
    ];
    prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.concat())
}

// ------------------------------------------------------------------------------------
// Encoders the tests use to build client frames
// ------------------------------------------------------------------------------------

fn to_proto_data(data: &MessageData) -> pb::MessageData {
    use pb::message_data::Data;
    let data = match data {
        MessageData::Text(t) => Data::TextData(t.clone()),
        MessageData::Json(j) => Data::JsonData(j.clone()),
        MessageData::Binary(b) => Data::BinaryData(b.clone()),
        MessageData::Protobuf { type_url, value } => Data::ProtobufData(prost_types::Any {
            type_url: type_url.clone(),
            value: value.to_vec(),
        }),
    };
    pb::MessageData { data: Some(data) }
}

fn to_proto_frame(msg: &Upstream) -> Vec<u8> {
    let message = match msg.clone() {
        Upstream::JoinGroup { group, ack_id } => {
            up::Message::JoinGroupMessage(up::JoinGroupMessage { group, ack_id })
        }
        Upstream::LeaveGroup { group, ack_id } => {
            up::Message::LeaveGroupMessage(up::LeaveGroupMessage { group, ack_id })
        }
        Upstream::SendToGroup {
            group,
            ack_id,
            no_echo,
            data,
        } => up::Message::SendToGroupMessage(up::SendToGroupMessage {
            group,
            ack_id,
            data: Some(to_proto_data(&data)),
            no_echo: no_echo.then_some(true),
        }),
        Upstream::Event {
            event,
            ack_id,
            data,
        } => up::Message::EventMessage(up::EventMessage {
            event,
            data: Some(to_proto_data(&data)),
            ack_id,
        }),
        Upstream::SequenceAck { sequence_id } => {
            up::Message::SequenceAckMessage(up::SequenceAckMessage { sequence_id })
        }
        Upstream::Ping => up::Message::PingMessage(up::PingMessage {}),
    };
    pb::UpstreamMessage {
        message: Some(message),
    }
    .encode_to_vec()
}

// ------------------------------------------------------------------------------------
// Properties
// ------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(payload in prop::collection::vec(any::<u8>(), 0..256)) {
        for format in WireFormat::ALL {
            for kind in [FrameKind::Text, FrameKind::Binary] {
                let result = decode_upstream(format, kind, &payload);
                if kind != format.frame_kind() {
                    prop_assert!(matches!(result, Err(Error::WrongFrameKind { .. })), "{result:?}");
                } else if let Ok(msg) = result {
                    if format == WireFormat::Protobuf {
                        // Whatever decodes re-encodes to something that decodes the same.
                        let again = decode_upstream(format, kind, &to_proto_frame(&msg));
                        prop_assert_eq!(again, Ok(msg));
                    } else {
                        let text = std::str::from_utf8(&payload).unwrap();
                        prop_assert!(text.trim_start().starts_with('{'), "{}", text);
                    }
                }
            }
        }
    }

    #[test]
    fn json_soup_never_panics(frame in json_soup()) {
        match decode_upstream(WireFormat::Json, FrameKind::Text, frame.as_bytes()) {
            Ok(_) => prop_assert!(frame.trim_start().starts_with('{'), "{}", frame),
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    #[test]
    fn protobuf_round_trip(msg in upstream()) {
        let frame = to_proto_frame(&msg);
        prop_assert_eq!(decode_upstream(WireFormat::Protobuf, FrameKind::Binary, &frame), Ok(msg));
    }

    #[test]
    fn json_round_trip(
        kind in 0..6_u8,
        name in any::<String>(),
        ack_id in any::<Option<u64>>(),
        no_echo in any::<Option<bool>>(),
        (data, data_type, data_value) in json_client_data(),
        sequence_id in any::<u64>(),
    ) {
        let (frame, expected) = match kind {
            0 => (
                json!({"type": "joinGroup", "group": name, "ackId": ack_id}),
                Upstream::JoinGroup { group: name, ack_id },
            ),
            1 => (
                json!({"type": "leaveGroup", "group": name, "ackId": ack_id}),
                Upstream::LeaveGroup { group: name, ack_id },
            ),
            2 => (
                json!({"type": "sendToGroup", "group": name, "ackId": ack_id, "noEcho": no_echo,
                       "dataType": data_type, "data": data_value, "metadata": {"x": 1}}),
                Upstream::SendToGroup { group: name, ack_id, no_echo: no_echo.unwrap_or(false), data },
            ),
            3 => (
                json!({"type": "event", "event": name, "ackId": ack_id, "dataType": data_type,
                       "data": data_value}),
                Upstream::Event { event: name, ack_id, data },
            ),
            4 => (
                json!({"type": "sequenceAck", "sequenceId": sequence_id}),
                Upstream::SequenceAck { sequence_id },
            ),
            _ => (json!({"type": "ping"}), Upstream::Ping),
        };
        let frame = frame.to_string();
        prop_assert_eq!(decode_upstream(WireFormat::Json, FrameKind::Text, frame.as_bytes()), Ok(expected));
    }

    #[test]
    fn encoded_message_equals_full_encoder(
        from in message_from(),
        data in message_data(),
        sequence_id in any::<Option<u64>>(),
    ) {
        for format in WireFormat::ALL {
            let msg = Downstream::Message { from: from.clone(), data: data.clone(), sequence_id };
            let mut full = BytesMut::new();
            encode_downstream(format, &msg, &mut full);
            let encoded = encode_message(format, &from, &data);
            let mut fast = BytesMut::new();
            encoded.write_to(sequence_id, &mut fast);
            prop_assert_eq!(&fast[..], &full[..]);
            prop_assert_eq!(encoded.encoded_len(sequence_id), full.len());
        }
    }

    #[test]
    fn downstream_json_parses_back(
        from in message_from(),
        data in message_data(),
        sequence_id in any::<Option<u64>>(),
    ) {
        let msg = Downstream::Message { from: from.clone(), data: data.clone(), sequence_id };
        let mut out = BytesMut::new();
        encode_downstream(WireFormat::Json, &msg, &mut out);
        let value: Value = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(&value["type"], "message");
        match &from {
            MessageFrom::Server => {
                prop_assert_eq!(&value["from"], "server");
                prop_assert!(value.get("group").is_none());
            }
            MessageFrom::Group { group, from_user_id } => {
                prop_assert_eq!(&value["from"], "group");
                prop_assert_eq!(value["group"].as_str(), Some(group.as_str()));
                prop_assert_eq!(value.get("fromUserId").and_then(Value::as_str), from_user_id.as_deref());
            }
        }
        prop_assert_eq!(value.get("sequenceId").and_then(Value::as_u64), sequence_id);
        let b64 = |v: &Value| base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        match &data {
            MessageData::Text(t) => {
                prop_assert_eq!(&value["dataType"], "text");
                prop_assert_eq!(value["data"].as_str(), Some(t.as_str()));
            }
            MessageData::Json(j) => {
                prop_assert_eq!(&value["dataType"], "json");
                prop_assert_eq!(&value["data"], &serde_json::from_str::<Value>(j).unwrap());
            }
            MessageData::Binary(b) => {
                prop_assert_eq!(&value["dataType"], "binary");
                prop_assert_eq!(&b64(&value["data"])[..], &b[..]);
            }
            MessageData::Protobuf { type_url, value: inner } => {
                prop_assert_eq!(&value["dataType"], "binary");
                let any = prost_types::Any::decode(&b64(&value["data"])[..]).unwrap();
                prop_assert_eq!(&any.type_url, type_url);
                prop_assert_eq!(&any.value[..], &inner[..]);
            }
        }
    }
}
