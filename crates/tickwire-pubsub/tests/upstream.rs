//! Upstream decoding: byte-literal golden frames in both wire formats, bad input and
//! round trips from the prost types.

use bytes::Bytes;
use prost::Message as _;
use tickwire_proto::webpubsub as pb;
use tickwire_proto::webpubsub::upstream_message as up;
use tickwire_pubsub::{
    Error, FrameKind, MAX_JSON_DEPTH, MessageData, Upstream, WireFormat, decode_upstream,
};

fn json(frame: &str) -> Result<Upstream, Error> {
    decode_upstream(WireFormat::Json, FrameKind::Text, frame.as_bytes())
}

fn protobuf(frame: &[u8]) -> Result<Upstream, Error> {
    decode_upstream(WireFormat::Protobuf, FrameKind::Binary, frame)
}

fn join(group: &str, ack_id: Option<u64>) -> Upstream {
    Upstream::JoinGroup {
        group: group.into(),
        ack_id,
    }
}

// ------------------------------------------------------------------------------------
// Golden frames: JSON
// ------------------------------------------------------------------------------------

#[test]
fn json_join_and_leave() {
    assert_eq!(
        json(r#"{"type":"joinGroup","group":"g","ackId":1}"#),
        Ok(join("g", Some(1)))
    );
    assert_eq!(
        json(r#"{"type":"joinGroup","group":"g"}"#),
        Ok(join("g", None))
    );
    assert_eq!(
        json(r#"{"type":"leaveGroup","group":"g","ackId":2}"#),
        Ok(Upstream::LeaveGroup {
            group: "g".into(),
            ack_id: Some(2)
        })
    );
}

#[test]
fn json_send_to_group_in_every_data_type() {
    assert_eq!(
        json(
            r#"{"type":"sendToGroup","group":"g","ackId":3,"noEcho":true,"dataType":"text","data":"hi"}"#
        ),
        Ok(Upstream::SendToGroup {
            group: "g".into(),
            ack_id: Some(3),
            no_echo: true,
            data: MessageData::Text("hi".into()),
        })
    );
    // dataType defaults to json, noEcho to false; JSON data is kept verbatim.
    assert_eq!(
        json(r#"{"type":"sendToGroup","group":"g","data":{"b": [1, 2.5, null], "a":"x"}}"#),
        Ok(Upstream::SendToGroup {
            group: "g".into(),
            ack_id: None,
            no_echo: false,
            data: MessageData::Json(r#"{"b": [1, 2.5, null], "a":"x"}"#.into()),
        })
    );
    assert_eq!(
        json(
            r#"{"type":"sendToGroup","group":"g","noEcho":false,"dataType":"binary","data":"AQID+/8="}"#
        ),
        Ok(Upstream::SendToGroup {
            group: "g".into(),
            ack_id: None,
            no_echo: false,
            data: MessageData::Binary(Bytes::from_static(&[1, 2, 3, 0xfb, 0xff])),
        })
    );
    // Unpadded base64 is accepted too.
    assert_eq!(
        json(r#"{"type":"sendToGroup","group":"g","dataType":"binary","data":"AQID+/8"}"#),
        Ok(Upstream::SendToGroup {
            group: "g".into(),
            ack_id: None,
            no_echo: false,
            data: MessageData::Binary(Bytes::from_static(&[1, 2, 3, 0xfb, 0xff])),
        })
    );
    assert_eq!(
        json(
            r#"{"type":"sendToGroup","group":"g","dataType":"json","data":"a string is JSON too"}"#
        ),
        Ok(Upstream::SendToGroup {
            group: "g".into(),
            ack_id: None,
            no_echo: false,
            data: MessageData::Json(r#""a string is JSON too""#.into()),
        })
    );
}

#[test]
fn json_event_sequence_ack_and_ping() {
    assert_eq!(
        json(r#"{"type":"event","event":"name","ackId":4,"dataType":"text","data":"x"}"#),
        Ok(Upstream::Event {
            event: "name".into(),
            ack_id: Some(4),
            data: MessageData::Text("x".into()),
        })
    );
    assert_eq!(
        json(r#"{"type":"event","event":"name","data":[1]}"#),
        Ok(Upstream::Event {
            event: "name".into(),
            ack_id: None,
            data: MessageData::Json("[1]".into()),
        })
    );
    assert_eq!(
        json(r#"{"type":"sequenceAck","sequenceId":5}"#),
        Ok(Upstream::SequenceAck { sequence_id: 5 })
    );
    assert_eq!(json(r#"{"type":"ping"}"#), Ok(Upstream::Ping));
}

#[test]
fn json_is_lenient_where_the_service_is() {
    // Unknown fields, any key order, whitespace, escapes in keys and values, null optionals.
    assert_eq!(
        json(
            r#" { "metadata" : {"x":[{"y":null}]}, "ackId" : 18446744073709551615 ,
                 "ttlSeconds": 30, "gr\u006fup": "a\"b\u00e9", "type": "joinGroup" } "#
        ),
        Ok(join("a\"bé", Some(u64::MAX)))
    );
    assert_eq!(
        json(
            r#"{"type":"sendToGroup","group":"g","ackId":null,"noEcho":null,"dataType":null,"data":1}"#
        ),
        Ok(Upstream::SendToGroup {
            group: "g".into(),
            ack_id: None,
            no_echo: false,
            data: MessageData::Json("1".into()),
        })
    );
    // Fields a type does not use are not checked.
    assert_eq!(
        json(r#"{"type":"ping","ackId":"x","group":7}"#),
        Ok(Upstream::Ping)
    );
    // A large but valid message decodes.
    let group = "g".repeat(1 << 20);
    assert_eq!(
        json(&format!(r#"{{"type":"joinGroup","group":"{group}"}}"#)),
        Ok(join(&group, None))
    );
}

// ------------------------------------------------------------------------------------
// Golden frames: protobuf
// ------------------------------------------------------------------------------------

#[test]
fn protobuf_join_and_leave() {
    assert_eq!(
        protobuf(&[0x32, 0x05, 0x0a, 0x01, b'g', 0x10, 0x01]),
        Ok(join("g", Some(1)))
    );
    assert_eq!(
        protobuf(&[0x32, 0x03, 0x0a, 0x01, b'g']),
        Ok(join("g", None))
    );
    // Explicit presence: ack id 0 is still an ack id.
    assert_eq!(
        protobuf(&[0x32, 0x05, 0x0a, 0x01, b'g', 0x10, 0x00]),
        Ok(join("g", Some(0)))
    );
    assert_eq!(
        protobuf(&[0x3a, 0x05, 0x0a, 0x01, b'g', 0x10, 0x02]),
        Ok(Upstream::LeaveGroup {
            group: "g".into(),
            ack_id: Some(2)
        })
    );
}

#[test]
fn protobuf_send_to_group() {
    let frame = [
        0x0a, 0x0d, // send_to_group_message = 1, 13 bytes
        0x0a, 0x01, b'g', // group = 1
        0x10, 0x03, // ack_id = 2
        0x1a, 0x04, 0x0a, 0x02, b'h', b'i', // data = 3 { text_data = 1 }
        0x20, 0x01, // no_echo = 4
    ];
    assert_eq!(
        protobuf(&frame),
        Ok(Upstream::SendToGroup {
            group: "g".into(),
            ack_id: Some(3),
            no_echo: true,
            data: MessageData::Text("hi".into()),
        })
    );
    let frame = [
        0x0a, 0x0d, // send_to_group_message = 1
        0x0a, 0x01, b'g', // group = 1
        0x1a, 0x08, // data = 3
        0x1a, 0x06, // protobuf_data = 3 (google.protobuf.Any)
        0x0a, 0x01, b't', // type_url = 1
        0x12, 0x01, 0x09, // value = 2
    ];
    assert_eq!(
        protobuf(&frame),
        Ok(Upstream::SendToGroup {
            group: "g".into(),
            ack_id: None,
            no_echo: false,
            data: MessageData::Protobuf {
                type_url: "t".into(),
                value: Bytes::from_static(&[9]),
            },
        })
    );
}

#[test]
fn protobuf_event_sequence_ack_and_ping() {
    let frame = [
        0x2a, 0x0b, // event_message = 5
        0x0a, 0x01, b'e', // event = 1
        0x12, 0x04, 0x12, 0x02, 0x01, 0x02, // data = 2 { binary_data = 2 }
        0x18, 0x04, // ack_id = 3
    ];
    assert_eq!(
        protobuf(&frame),
        Ok(Upstream::Event {
            event: "e".into(),
            ack_id: Some(4),
            data: MessageData::Binary(Bytes::from_static(&[1, 2])),
        })
    );
    let mut frame = vec![0x2a, 0x0e, 0x0a, 0x01, b'e', 0x12, 0x09, 0x22, 0x07];
    frame.extend_from_slice(br#"{"a":1}"#); // json_data = 4
    assert_eq!(
        protobuf(&frame),
        Ok(Upstream::Event {
            event: "e".into(),
            ack_id: None,
            data: MessageData::Json(r#"{"a":1}"#.into()),
        })
    );
    assert_eq!(
        protobuf(&[0x42, 0x02, 0x08, 0x05]),
        Ok(Upstream::SequenceAck { sequence_id: 5 })
    );
    assert_eq!(
        protobuf(&[0x42, 0x03, 0x08, 0xac, 0x02]),
        Ok(Upstream::SequenceAck { sequence_id: 300 })
    );
    assert_eq!(protobuf(&[0x4a, 0x00]), Ok(Upstream::Ping));
}

#[test]
fn protobuf_skips_unknown_fields() {
    // An unknown field 15 (varint) before the join and another inside it.
    let frame = [
        0x78, 0x01, 0x32, 0x07, 0x0a, 0x01, b'g', 0x78, 0x05, 0x10, 0x01,
    ];
    assert_eq!(protobuf(&frame), Ok(join("g", Some(1))));
}

// ------------------------------------------------------------------------------------
// Bad input
// ------------------------------------------------------------------------------------

#[test]
fn wrong_frame_kind() {
    assert_eq!(
        decode_upstream(WireFormat::Json, FrameKind::Binary, br#"{"type":"ping"}"#),
        Err(Error::WrongFrameKind {
            expected: FrameKind::Text,
            got: FrameKind::Binary
        })
    );
    let err = decode_upstream(WireFormat::Protobuf, FrameKind::Text, &[0x4a, 0x00]).unwrap_err();
    assert_eq!(
        err,
        Error::WrongFrameKind {
            expected: FrameKind::Binary,
            got: FrameKind::Text
        }
    );
    assert_eq!(err.to_string(), "expected a binary frame, got a text frame");
}

#[test]
fn json_that_is_not_an_object() {
    for frame in [
        "",
        " ",
        "not json",
        "[]",
        r#"["joinGroup","g"]"#,
        "1",
        "null",
        r#""ping""#,
        "{",
        r#"{"type":"ping"} x"#,
        r#"{"type":"ping",}"#,
    ] {
        assert!(
            matches!(json(frame), Err(Error::InvalidJson { .. })),
            "{frame:?}: {:?}",
            json(frame)
        );
    }
    assert!(matches!(
        decode_upstream(
            WireFormat::Json,
            FrameKind::Text,
            b"{\"type\":\"ping\xff\"}"
        ),
        Err(Error::InvalidJson { .. })
    ));
    let err = json(r#"{"type":"ping","type":"ping"}"#).unwrap_err();
    assert!(err.to_string().contains("duplicate field `type`"), "{err}");
}

#[test]
fn unknown_or_missing_type() {
    let err = json(r#"{"type":"shout","ackId":9}"#).unwrap_err();
    assert_eq!(
        err,
        Error::UnknownType {
            type_name: "shout".into(),
            ack_id: Some(9)
        }
    );
    assert_eq!(err.ack_id(), Some(9));
    assert_eq!(err.to_string(), "unknown message type `shout`");
    assert_eq!(
        json(r#"{"group":"g","ackId":1}"#),
        Err(Error::MissingField {
            field: "type",
            ack_id: Some(1)
        })
    );
    assert!(matches!(
        json(r#"{"type":1}"#),
        Err(Error::InvalidField { field: "type", .. })
    ));
    // Message types are case-sensitive.
    assert!(matches!(
        json(r#"{"type":"JoinGroup","group":"g"}"#),
        Err(Error::UnknownType { .. })
    ));
}

#[test]
fn missing_required_fields_keep_the_ack_id() {
    let cases = [
        (r#"{"type":"joinGroup","ackId":1}"#, "group"),
        (r#"{"type":"leaveGroup","ackId":1,"group":null}"#, "group"),
        (r#"{"type":"sendToGroup","ackId":1,"data":"x"}"#, "group"),
        (r#"{"type":"sendToGroup","ackId":1,"group":"g"}"#, "data"),
        (r#"{"type":"event","ackId":1,"data":"x"}"#, "event"),
        (
            r#"{"type":"event","ackId":1,"event":"e","dataType":"text"}"#,
            "data",
        ),
    ];
    for (frame, field) in cases {
        let err = json(frame).unwrap_err();
        assert_eq!(
            err,
            Error::MissingField {
                field,
                ack_id: Some(1)
            },
            "{frame}"
        );
        assert_eq!(err.ack_id(), Some(1));
    }
    assert_eq!(
        json(r#"{"type":"sequenceAck"}"#),
        Err(Error::MissingField {
            field: "sequenceId",
            ack_id: None
        })
    );
}

#[test]
fn numbers_must_be_u64_integers() {
    for bad in [
        "-1",
        "1.0",
        "1.5",
        "1e3",
        "1e30",
        "-0",
        r#""1""#,
        "true",
        "[1]",
        "18446744073709551616",
        "99999999999999999999999999999",
    ] {
        let frame = format!(r#"{{"type":"joinGroup","group":"g","ackId":{bad}}}"#);
        let err = json(&frame).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidField {
                    field: "ackId",
                    ack_id: None,
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
        assert_eq!(err.ack_id(), None);
        let frame = format!(r#"{{"type":"sequenceAck","sequenceId":{bad}}}"#);
        assert!(
            matches!(
                json(&frame),
                Err(Error::InvalidField {
                    field: "sequenceId",
                    ..
                })
            ),
            "{bad}"
        );
    }
    let err = json(r#"{"type":"joinGroup","group":"g","ackId":-1}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid field `ackId`: must be a non-negative integer"
    );
}

#[test]
fn invalid_field_values() {
    let cases = [
        (r#"{"type":"joinGroup","group":1,"ackId":1}"#, "group"),
        (r#"{"type":"joinGroup","group":["g"],"ackId":1}"#, "group"),
        (r#"{"type":"event","event":{},"data":1,"ackId":1}"#, "event"),
        (
            r#"{"type":"sendToGroup","group":"g","noEcho":"yes","data":1,"ackId":1}"#,
            "noEcho",
        ),
        (
            r#"{"type":"sendToGroup","group":"g","noEcho":1,"data":1,"ackId":1}"#,
            "noEcho",
        ),
        (
            r#"{"type":"sendToGroup","group":"g","dataType":"protobuf","data":"","ackId":1}"#,
            "dataType",
        ),
        (
            r#"{"type":"sendToGroup","group":"g","dataType":5,"data":"","ackId":1}"#,
            "dataType",
        ),
        (
            r#"{"type":"sendToGroup","group":"g","dataType":"text","data":5,"ackId":1}"#,
            "data",
        ),
        (
            r#"{"type":"sendToGroup","group":"g","dataType":"text","data":null,"ackId":1}"#,
            "data",
        ),
        (
            r#"{"type":"sendToGroup","group":"g","dataType":"binary","data":"!!","ackId":1}"#,
            "data",
        ),
        (
            r#"{"type":"sendToGroup","group":"g","dataType":"binary","data":[1],"ackId":1}"#,
            "data",
        ),
    ];
    for (frame, field) in cases {
        let err = json(frame).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidField { field: f, ack_id: Some(1), .. } if *f == field),
            "{frame}: {err:?}"
        );
    }
}

#[test]
fn deeply_nested_json_is_bounded_without_overflowing_the_stack() {
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep = nest(100_000);
    // Ignored fields are skipped without recursion, whatever their depth.
    assert_eq!(
        json(&format!(r#"{{"type":"ping","metadata":{deep}}}"#)),
        Ok(Upstream::Ping)
    );
    // JSON data is forwarded to other clients, so its depth is bounded.
    let err = json(&format!(
        r#"{{"type":"sendToGroup","group":"g","ackId":5,"data":{deep}}}"#
    ))
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidField {
                field: "data",
                ack_id: Some(5),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        json(&format!(
            r#"{{"type":"event","event":"e","data":{}}}"#,
            nest(MAX_JSON_DEPTH + 1)
        )),
        Err(Error::InvalidField { field: "data", .. })
    ));
    assert!(matches!(
        json(&format!(r#"{{"type":{deep}}}"#)),
        Err(Error::InvalidField { field: "type", .. })
    ));
    let limit = nest(MAX_JSON_DEPTH);
    assert_eq!(
        json(&format!(r#"{{"type":"event","event":"e","data":{limit}}}"#)),
        Ok(Upstream::Event {
            event: "e".into(),
            ack_id: None,
            data: MessageData::Json(limit),
        })
    );
    // The same bound applies to protobuf json_data.
    let frame = pb::UpstreamMessage {
        message: Some(up::Message::EventMessage(up::EventMessage {
            event: "e".into(),
            data: data(pb::message_data::Data::JsonData(nest(MAX_JSON_DEPTH + 1))),
            ack_id: Some(1),
        })),
    }
    .encode_to_vec();
    assert!(matches!(
        protobuf(&frame),
        Err(Error::InvalidField {
            field: "json_data",
            ack_id: Some(1),
            ..
        })
    ));
}

#[test]
fn protobuf_garbage_and_truncation() {
    for frame in [
        &[0xff_u8, 0xff, 0xff][..],
        &[0x32],
        &[0x32, 0x05, 0x0a],
        &[0x0f],
        &[
            0x32, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    ] {
        assert!(
            matches!(protobuf(frame), Err(Error::Protobuf { .. })),
            "{frame:?}"
        );
    }
    // Every strict prefix of a valid frame fails.
    let frame = [
        0x0a, 0x0d, 0x0a, 0x01, b'g', 0x10, 0x03, 0x1a, 0x04, 0x0a, 0x02, b'h', b'i', 0x20, 0x01,
    ];
    assert!(protobuf(&frame).is_ok());
    for end in 0..frame.len() {
        assert!(protobuf(&frame[..end]).is_err(), "prefix of {end} bytes");
    }
    // Invalid UTF-8 in a string field.
    assert!(matches!(
        protobuf(&[0x32, 0x03, 0x0a, 0x01, 0xff]),
        Err(Error::Protobuf { .. })
    ));
}

#[test]
fn protobuf_deeply_nested_groups_are_rejected() {
    // 100 000 nested start-group tags of an unknown field (wire type 3).
    let frame = vec![0x13_u8; 100_000];
    assert!(matches!(protobuf(&frame), Err(Error::Protobuf { .. })));
}

#[test]
fn protobuf_missing_oneofs() {
    let missing_message = Error::MissingField {
        field: "message",
        ack_id: None,
    };
    assert_eq!(protobuf(&[]), Err(missing_message.clone()));
    // Only an unknown field (2): no known message type is set.
    assert_eq!(protobuf(&[0x10, 0x01]), Err(missing_message));
    // A sendToGroup without data, then with an empty MessageData.
    assert_eq!(
        protobuf(&[0x0a, 0x05, 0x0a, 0x01, b'g', 0x10, 0x07]),
        Err(Error::MissingField {
            field: "data",
            ack_id: Some(7)
        })
    );
    assert_eq!(
        protobuf(&[0x0a, 0x07, 0x0a, 0x01, b'g', 0x10, 0x07, 0x1a, 0x00]),
        Err(Error::MissingField {
            field: "data",
            ack_id: Some(7)
        })
    );
    assert_eq!(
        protobuf(&[0x2a, 0x03, 0x0a, 0x01, b'e']),
        Err(Error::MissingField {
            field: "data",
            ack_id: None
        })
    );
    // json_data that is not JSON.
    let err = protobuf(&[
        0x2a, 0x09, 0x0a, 0x01, b'e', 0x12, 0x02, 0x22, 0x00, 0x18, 0x02,
    ])
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidField {
                field: "json_data",
                ack_id: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
}

// ------------------------------------------------------------------------------------
// Round trips from the prost types
// ------------------------------------------------------------------------------------

fn data(d: pb::message_data::Data) -> Option<pb::MessageData> {
    Some(pb::MessageData { data: Some(d) })
}

#[test]
fn protobuf_round_trips() {
    use pb::message_data::Data;
    let cases = [
        (
            up::Message::JoinGroupMessage(up::JoinGroupMessage {
                group: "blue_SPX_state_gex_zero".into(),
                ack_id: Some(u64::MAX),
            }),
            join("blue_SPX_state_gex_zero", Some(u64::MAX)),
        ),
        (
            up::Message::LeaveGroupMessage(up::LeaveGroupMessage {
                group: String::new(),
                ack_id: None,
            }),
            Upstream::LeaveGroup {
                group: String::new(),
                ack_id: None,
            },
        ),
        (
            up::Message::SendToGroupMessage(up::SendToGroupMessage {
                group: "g".into(),
                ack_id: Some(1),
                data: data(Data::BinaryData(Bytes::from_static(b"\x00\x01"))),
                no_echo: Some(false),
            }),
            Upstream::SendToGroup {
                group: "g".into(),
                ack_id: Some(1),
                no_echo: false,
                data: MessageData::Binary(Bytes::from_static(b"\x00\x01")),
            },
        ),
        (
            up::Message::SendToGroupMessage(up::SendToGroupMessage {
                group: "g".into(),
                ack_id: None,
                data: data(Data::TextData(String::new())),
                no_echo: Some(true),
            }),
            Upstream::SendToGroup {
                group: "g".into(),
                ack_id: None,
                no_echo: true,
                data: MessageData::Text(String::new()),
            },
        ),
        (
            up::Message::EventMessage(up::EventMessage {
                event: "e".into(),
                data: data(Data::ProtobufData(prost_types::Any {
                    type_url: "proto.gex".into(),
                    value: vec![1, 2, 3],
                })),
                ack_id: Some(0),
            }),
            Upstream::Event {
                event: "e".into(),
                ack_id: Some(0),
                data: MessageData::Protobuf {
                    type_url: "proto.gex".into(),
                    value: Bytes::from_static(&[1, 2, 3]),
                },
            },
        ),
        (
            up::Message::EventMessage(up::EventMessage {
                event: "e".into(),
                data: data(Data::JsonData("[true]".into())),
                ack_id: None,
            }),
            Upstream::Event {
                event: "e".into(),
                ack_id: None,
                data: MessageData::Json("[true]".into()),
            },
        ),
        (
            up::Message::SequenceAckMessage(up::SequenceAckMessage { sequence_id: 0 }),
            Upstream::SequenceAck { sequence_id: 0 },
        ),
        (up::Message::PingMessage(up::PingMessage {}), Upstream::Ping),
    ];
    for (message, expected) in cases {
        let frame = pb::UpstreamMessage {
            message: Some(message),
        }
        .encode_to_vec();
        assert_eq!(protobuf(&frame), Ok(expected));
    }
}

#[test]
fn json_round_trips_from_serde_json() {
    let value = serde_json::json!({
        "type": "sendToGroup",
        "group": "grp \"quoted\" \n ✓",
        "ackId": 9_007_199_254_740_991_u64,
        "noEcho": true,
        "dataType": "text",
        "data": "\u{0}\u{1f}😀",
    });
    assert_eq!(
        json(&value.to_string()),
        Ok(Upstream::SendToGroup {
            group: "grp \"quoted\" \n ✓".into(),
            ack_id: Some(9_007_199_254_740_991),
            no_echo: true,
            data: MessageData::Text("\u{0}\u{1f}😀".into()),
        })
    );
}
