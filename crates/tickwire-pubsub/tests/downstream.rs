//! Downstream encoding: byte-literal golden frames in both wire formats, and the fan-out
//! fast path ([`EncodedMessage`]) against the full encoder.

use bytes::{Bytes, BytesMut};
use prost::Message as _;
use tickwire_proto::webpubsub as pb;
use tickwire_pubsub::{
    AckError, Downstream, EncodedMessage, MessageData, MessageFrom, WireFormat, encode_downstream,
    encode_message,
};

fn encode(format: WireFormat, msg: &Downstream) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_downstream(format, msg, &mut out);
    out.to_vec()
}

fn json(msg: &Downstream) -> String {
    String::from_utf8(encode(WireFormat::Json, msg)).unwrap()
}

fn protobuf(msg: &Downstream) -> Vec<u8> {
    encode(WireFormat::Protobuf, msg)
}

fn connected(token: Option<&str>) -> Downstream {
    Downstream::Connected {
        connection_id: "c1".into(),
        user_id: "u1".into(),
        reconnection_token: token.map(Into::into),
    }
}

fn gex() -> MessageData {
    MessageData::Protobuf {
        type_url: "proto.gex".into(),
        value: Bytes::from_static(&[1, 2, 3]),
    }
}

fn message(from: MessageFrom, data: MessageData, sequence_id: Option<u64>) -> Downstream {
    Downstream::Message {
        from,
        data,
        sequence_id,
    }
}

// ------------------------------------------------------------------------------------
// Golden frames: JSON
// ------------------------------------------------------------------------------------

#[test]
fn json_system_messages() {
    assert_eq!(
        json(&connected(Some("t"))),
        r#"{"type":"system","event":"connected","userId":"u1","connectionId":"c1","reconnectionToken":"t"}"#
    );
    assert_eq!(
        json(&connected(None)),
        r#"{"type":"system","event":"connected","userId":"u1","connectionId":"c1"}"#
    );
    assert_eq!(
        json(&Downstream::Disconnected {
            reason: "bye \"now\"".into()
        }),
        r#"{"type":"system","event":"disconnected","message":"bye \"now\""}"#
    );
}

#[test]
fn json_acks_and_pong() {
    assert_eq!(
        json(&Downstream::ack_ok(1)),
        r#"{"type":"ack","ackId":1,"success":true}"#
    );
    assert_eq!(
        json(&Downstream::ack_err(1, AckError::forbidden("no"))),
        r#"{"type":"ack","ackId":1,"success":false,"error":{"name":"Forbidden","message":"no"}}"#
    );
    assert_eq!(
        json(&Downstream::ack_err(
            18_446_744_073_709_551_615,
            AckError::duplicate(1)
        )),
        r#"{"type":"ack","ackId":18446744073709551615,"success":false,"error":{"name":"Duplicate","message":"Message with ack-id: 1 has been processed"}}"#
    );
    assert_eq!(
        json(&Downstream::Ack {
            ack_id: 2,
            success: false,
            error: None
        }),
        r#"{"type":"ack","ackId":2,"success":false}"#
    );
    assert_eq!(json(&Downstream::Pong), r#"{"type":"pong"}"#);
}

#[test]
fn json_data_messages() {
    assert_eq!(
        json(&message(
            MessageFrom::Server,
            MessageData::Text("hi".into()),
            None
        )),
        r#"{"type":"message","from":"server","dataType":"text","data":"hi"}"#
    );
    assert_eq!(
        json(&message(
            MessageFrom::group("g"),
            MessageData::Binary(Bytes::from_static(&[1, 2, 3, 0xfb, 0xff])),
            Some(1)
        )),
        r#"{"type":"message","from":"group","group":"g","dataType":"binary","data":"AQID+/8=","sequenceId":1}"#
    );
    assert_eq!(
        json(&message(
            MessageFrom::Group {
                group: "g".into(),
                from_user_id: Some("u2".into())
            },
            MessageData::Json(r#"{"a":[1,null]}"#.into()),
            Some(2)
        )),
        r#"{"type":"message","from":"group","fromUserId":"u2","group":"g","dataType":"json","data":{"a":[1,null]},"sequenceId":2}"#
    );
    // A GEX record: base64 of the encoded google.protobuf.Any.
    assert_eq!(
        json(&message(
            MessageFrom::group("blue_SPX_classic_gex_zero"),
            gex(),
            None
        )),
        r#"{"type":"message","from":"group","group":"blue_SPX_classic_gex_zero","dataType":"binary","data":"Cglwcm90by5nZXgSAwECAw=="}"#
    );
    assert_eq!(
        json(&message(
            MessageFrom::Server,
            MessageData::Text("\u{1}\n".into()),
            Some(u64::MAX)
        )),
        r#"{"type":"message","from":"server","dataType":"text","data":"\u0001\n","sequenceId":18446744073709551615}"#
    );
}

#[test]
fn json_output_is_valid_json() {
    for msg in [
        connected(Some("t\u{7f}\u{0}")),
        Downstream::Disconnected {
            reason: "\\".into(),
        },
        Downstream::ack_err(3, AckError::bad_request("\"")),
        message(
            MessageFrom::Group {
                group: "ü".into(),
                from_user_id: Some("\t".into()),
            },
            gex(),
            Some(3),
        ),
    ] {
        let text = json(&msg);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(value.is_object(), "{text}");
    }
}

// ------------------------------------------------------------------------------------
// Golden frames: protobuf
// ------------------------------------------------------------------------------------

#[test]
fn protobuf_system_messages() {
    assert_eq!(
        protobuf(&connected(Some("t"))),
        [
            0x1a, 0x0d, // system_message = 3
            0x0a, 0x0b, // connected_message = 1
            0x0a, 0x02, b'c', b'1', // connection_id = 1
            0x12, 0x02, b'u', b'1', // user_id = 2
            0x1a, 0x01, b't', // reconnection_token = 3
        ]
    );
    assert_eq!(
        protobuf(&connected(None)),
        [
            0x1a, 0x0a, 0x0a, 0x08, 0x0a, 0x02, b'c', b'1', 0x12, 0x02, b'u', b'1'
        ]
    );
    assert_eq!(
        protobuf(&Downstream::Disconnected {
            reason: "bye".into()
        }),
        [
            0x1a, 0x07, // system_message = 3
            0x12, 0x05, // disconnected_message = 2
            0x12, 0x03, b'b', b'y', b'e', // reason = 2
        ]
    );
}

#[test]
fn protobuf_acks_and_pong() {
    assert_eq!(
        protobuf(&Downstream::ack_ok(1)),
        [0x0a, 0x04, 0x08, 0x01, 0x10, 0x01]
    );
    let mut expected = vec![
        0x0a, 0x13, // ack_message = 1
        0x08, 0x01, // ack_id = 1; success = false is the proto3 default, left out
        0x1a, 0x0f, // error = 3
        0x0a, 0x09, // name = 1
    ];
    expected.extend_from_slice(b"Forbidden");
    expected.extend_from_slice(&[0x12, 0x02, b'n', b'o']); // message = 2
    assert_eq!(
        protobuf(&Downstream::ack_err(1, AckError::forbidden("no"))),
        expected
    );
    assert_eq!(protobuf(&Downstream::Pong), [0x22, 0x00]);
}

#[test]
fn protobuf_data_messages() {
    let mut expected = vec![0x12, 0x0e, 0x0a, 0x06]; // data_message = 2 { from = 1
    expected.extend_from_slice(b"server");
    expected.extend_from_slice(&[0x1a, 0x04, 0x0a, 0x02, b'h', b'i']); // data { text_data }
    assert_eq!(
        protobuf(&message(
            MessageFrom::Server,
            MessageData::Text("hi".into()),
            None
        )),
        expected
    );
    // JSON over protobuf travels as text_data.
    assert_eq!(
        protobuf(&message(
            MessageFrom::Server,
            MessageData::Json("hi".into()),
            None
        )),
        expected
    );

    // A GEX broadcast: from "server", the group set, the record in protobuf_data.
    let mut expected = vec![0x12, 0x21, 0x0a, 0x06];
    expected.extend_from_slice(b"server");
    expected.extend_from_slice(&[0x12, 0x01, b'g']); // group = 2
    expected.extend_from_slice(&[0x1a, 0x12, 0x1a, 0x10, 0x0a, 0x09]); // data { protobuf_data { type_url
    expected.extend_from_slice(b"proto.gex");
    expected.extend_from_slice(&[0x12, 0x03, 1, 2, 3]); // value }}
    expected.extend_from_slice(&[0x20, 0x01]); // sequence_id = 4
    assert_eq!(
        protobuf(&message(MessageFrom::group("g"), gex(), Some(1))),
        expected
    );

    let mut expected = vec![0x12, 0x10, 0x0a, 0x06];
    expected.extend_from_slice(b"server");
    expected.extend_from_slice(&[0x12, 0x00]); // an empty group is still present
    expected.extend_from_slice(&[0x1a, 0x02, 0x12, 0x00]); // empty binary_data
    expected.extend_from_slice(&[0x20, 0x00]); // sequence_id 0 is present
    assert_eq!(
        protobuf(&message(
            MessageFrom::group(""),
            MessageData::Binary(Bytes::new()),
            Some(0)
        )),
        expected
    );
}

#[test]
fn protobuf_from_is_server_for_broadcasts_and_group_for_client_messages() {
    use pb::downstream_message::Message;
    let from_of = |from: MessageFrom| {
        let frame = protobuf(&message(from, MessageData::Text("x".into()), None));
        match pb::DownstreamMessage::decode(&frame[..]).unwrap().message {
            Some(Message::DataMessage(data)) => data.from,
            other => panic!("{other:?}"),
        }
    };
    // Seed 000: the server's group broadcasts say "server".
    assert_eq!(from_of(MessageFrom::group("g")), "server");
    assert_eq!(from_of(MessageFrom::Server), "server");
    assert_eq!(
        from_of(MessageFrom::Group {
            group: "g".into(),
            from_user_id: Some("u1".into()),
        }),
        "group"
    );
}

#[test]
fn protobuf_output_decodes_with_prost() {
    use pb::downstream_message::Message;
    let frame = protobuf(&message(
        MessageFrom::Group {
            group: "g".into(),
            from_user_id: Some("dropped: no such protobuf field".into()),
        },
        gex(),
        Some(42),
    ));
    let decoded = pb::DownstreamMessage::decode(&frame[..]).unwrap();
    let Some(Message::DataMessage(data)) = decoded.message else {
        panic!("{decoded:?}");
    };
    // A client's sendToGroup (it has a sender) is `from: "group"`, as in Azure's protocol.
    assert_eq!(data.from, "group");
    assert_eq!(data.group.as_deref(), Some("g"));
    assert_eq!(data.sequence_id, Some(42));
    assert_eq!(
        data.data.and_then(|d| d.data),
        Some(pb::message_data::Data::ProtobufData(prost_types::Any {
            type_url: "proto.gex".into(),
            value: vec![1, 2, 3],
        }))
    );
}

// ------------------------------------------------------------------------------------
// EncodedMessage: the same bytes as the full encoder
// ------------------------------------------------------------------------------------

const SEQUENCE_IDS: [u64; 12] = [
    0,
    1,
    9,
    10,
    127,
    128,
    999,
    16_384,
    (1 << 53) - 1,
    1 << 56,
    u64::MAX - 1,
    u64::MAX,
];

fn sources() -> Vec<MessageFrom> {
    vec![
        MessageFrom::Server,
        MessageFrom::group("blue_SPX_state_gex_zero"),
        MessageFrom::group(""),
        MessageFrom::Group {
            group: "g\"".into(),
            from_user_id: Some("u\n".into()),
        },
    ]
}

fn payloads() -> Vec<MessageData> {
    vec![
        MessageData::Text(String::new()),
        MessageData::Text("héllo \"x\"".into()),
        MessageData::Json(r#"{"k":[1,2,{"n":null}]}"#.into()),
        MessageData::Binary(Bytes::new()),
        MessageData::Binary(Bytes::from(vec![0xab; 200])),
        // Bodies around the one- and two-byte length varint boundaries.
        MessageData::Binary(Bytes::from(vec![7; 100])),
        MessageData::Binary(Bytes::from(vec![7; 114])),
        MessageData::Binary(Bytes::from(vec![7; 16_370])),
        gex(),
        MessageData::Protobuf {
            type_url: String::new(),
            value: Bytes::new(),
        },
        MessageData::Protobuf {
            type_url: "proto.orderflow".into(),
            value: Bytes::from(vec![0x28; 70_000]),
        },
    ]
}

fn check_equivalence(encoded: &EncodedMessage, from: &MessageFrom, data: &MessageData) {
    let format = encoded.format();
    for sequence_id in SEQUENCE_IDS.map(Some).into_iter().chain([None]) {
        let full = encode(format, &message(from.clone(), data.clone(), sequence_id));
        let mut fast = BytesMut::from(&b"prefix"[..]);
        encoded.write_to(sequence_id, &mut fast);
        assert_eq!(&fast[..6], b"prefix");
        assert_eq!(&fast[6..], &full[..], "{format:?} {from:?} {sequence_id:?}");
        assert_eq!(encoded.encoded_len(sequence_id), full.len());
        assert_eq!(&encoded.to_frame(sequence_id)[..], &full[..]);
    }
    let unsequenced = encode(format, &message(from.clone(), data.clone(), None));
    assert_eq!(&encoded.unsequenced()[..], &unsequenced[..]);
}

#[test]
fn encoded_message_equals_the_full_encoder() {
    for format in WireFormat::ALL {
        for from in sources() {
            for data in payloads() {
                let encoded = encode_message(format, &from, &data);
                assert_eq!(encoded.format(), format);
                check_equivalence(&encoded, &from, &data);
            }
        }
    }
}

#[test]
fn encoded_message_golden() {
    let json = encode_message(
        WireFormat::Json,
        &MessageFrom::group("g"),
        &MessageData::Text("hi".into()),
    );
    assert_eq!(
        &json.unsequenced()[..],
        br#"{"type":"message","from":"group","group":"g","dataType":"text","data":"hi"}"#
    );
    assert_eq!(
        &json.to_frame(Some(300))[..],
        br#"{"type":"message","from":"group","group":"g","dataType":"text","data":"hi","sequenceId":300}"#
    );

    let proto = encode_message(
        WireFormat::Protobuf,
        &MessageFrom::group("g"),
        &MessageData::Text("hi".into()),
    );
    let mut body = vec![0x0a, 0x06];
    body.extend_from_slice(b"server");
    body.extend_from_slice(&[0x12, 0x01, b'g', 0x1a, 0x04, 0x0a, 0x02, b'h', b'i']);
    let mut expected = vec![0x12, 0x11];
    expected.extend_from_slice(&body);
    assert_eq!(&proto.unsequenced()[..], &expected[..]);
    let mut expected = vec![0x12, 0x14];
    expected.extend_from_slice(&body);
    expected.extend_from_slice(&[0x20, 0xac, 0x02]); // sequence_id = 300
    assert_eq!(&proto.to_frame(Some(300))[..], &expected[..]);
}

#[test]
fn encoded_message_outer_length_crosses_a_varint_boundary() {
    // A body of 127 bytes takes a one-byte length; the sequence id pushes it to two.
    let from = MessageFrom::Server;
    let text = "x".repeat(127 - 8 - 2 - 2);
    let data = MessageData::Text(text);
    let encoded = encode_message(WireFormat::Protobuf, &from, &data);
    assert_eq!(encoded.encoded_len(None), 1 + 1 + 127);
    assert_eq!(encoded.encoded_len(Some(1)), 1 + 2 + 129);
    check_equivalence(&encoded, &from, &data);
}
