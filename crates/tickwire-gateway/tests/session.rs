//! Sessions over real sockets: joins, data, acks, roles, reliability, limits.

mod common;

use common::*;
use futures_util::SinkExt as _;
use tickwire_gateway::{ApiKey, Config, TransportConfig};
use tickwire_model::Hub;
use tickwire_pipeline::Record;
use tokio_tungstenite::tungstenite::Message;

const G1: &str = "blue_SPX_classic_gex_zero";
const G2: &str = "blue_ES_SPX_classic_gex_full";

fn timestamp(down: &Down) -> i64 {
    match down {
        Down::Data { payload, .. } => match payload.record() {
            Record::Gex(g) => g.timestamp,
            other => panic!("{other:?}"),
        },
        other => panic!("expected data, got {other:?}"),
    }
}

#[tokio::test]
async fn every_subprotocol_joins_receives_and_leaves() {
    let server = Server::default().await;
    for protocol in ALL_PROTOCOLS {
        let reliable = protocol.contains("reliable");
        let mut client = server.connect(Hub::Classic, protocol).await;
        match client.recv().await {
            Down::Connected {
                connection_id,
                user_id,
                reconnection_token,
            } => {
                assert!(!connection_id.is_empty());
                assert_eq!(user_id, "demo");
                assert_eq!(reconnection_token.is_some(), reliable, "{protocol}");
            }
            other => panic!("{other:?}"),
        }
        client.join(G1, 1).await;
        client.join(G2, 2).await;

        server.push(gex(Hub::Classic, "SPX", "gex_zero", 100)).await;
        let data = client.recv().await;
        let Down::Data {
            group,
            sequence_id,
            payload,
        } = &data
        else {
            panic!("{data:?}");
        };
        assert_eq!(group.as_deref(), Some(G1));
        assert_eq!(sequence_id.is_some(), reliable);
        let Record::Gex(record) = payload.record() else {
            panic!("a gex record");
        };
        assert_eq!((record.timestamp, record.ticker.as_str()), (100, "SPX"));
        // 4800.11 scaled by truncation, as the seed specifies.
        assert_eq!(record.spot, 480_010);
        if !client.json {
            assert!(matches!(payload, Payload::Any { type_url, .. } if type_url == "proto.gex"));
        }

        client.send(Up::Leave(G1.into(), Some(3))).await;
        assert_eq!(client.recv().await, ok(3));
        // After the leave, G1's update is not delivered but G2's, pushed
        // after it, is: the fan-out keeps the order of the updates.
        server.push(gex(Hub::Classic, "SPX", "gex_zero", 101)).await;
        server
            .push(gex(Hub::Classic, "ES_SPX", "gex_full", 102))
            .await;
        let next = client.recv().await;
        assert_eq!(timestamp(&next), 102, "{protocol}");
        let Down::Data { group, .. } = next else {
            unreachable!()
        };
        assert_eq!(group.as_deref(), Some(G2));
    }
}

#[tokio::test]
async fn ping_pong_in_both_encodings() {
    let server = Server::default().await;
    for protocol in [JSON, PROTOBUF] {
        let mut client = server.connect(Hub::Orderflow, protocol).await;
        assert!(matches!(client.recv().await, Down::Connected { .. }));
        client.send(Up::Ping).await;
        assert_eq!(client.recv().await, Down::Pong);
        // WebSocket-level pings are answered too.
        client
            .ws
            .send(Message::Ping(b"hi".to_vec().into()))
            .await
            .unwrap();
        client.send(Up::Ping).await;
        assert_eq!(client.recv().await, Down::Pong);
    }
}

#[tokio::test]
async fn acks_duplicates_bad_groups_and_silence_without_ack_id() {
    let server = Server::default().await;
    for protocol in [JSON, PROTOBUF] {
        let mut client = server.connect(Hub::StateGex, protocol).await;
        assert!(matches!(client.recv().await, Down::Connected { .. }));
        client.join("blue_SPX_state_gex_one", 7).await;
        client
            .send(Up::Join("blue_SPX_state_gex_one".into(), Some(7)))
            .await;
        assert_eq!(
            client.recv().await,
            Down::Ack {
                ack_id: 7,
                success: false,
                error: Some((
                    "Duplicate".into(),
                    "Message with ack-id: 7 has been processed".into()
                )),
            }
        );
        // A group of another hub, and a wrong prefix.
        for (group, ack) in [
            ("blue_SPX_state_delta_zero", 8),
            ("red_SPX_state_gex_one", 9),
        ] {
            client.send(Up::Join(group.into(), Some(ack))).await;
            match client.recv().await {
                Down::Ack {
                    ack_id,
                    success: false,
                    error: Some((name, message)),
                } => {
                    assert_eq!((ack_id, name.as_str()), (ack, "BadRequest"));
                    assert!(message.contains("state_gex"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        // A failed ack id may be used again.
        client.join("blue_NDX_state_gex_zero", 8).await;
        // Leave always succeeds, even of groups never joined; no ack id, no ack.
        client.send(Up::Leave("whatever".into(), None)).await;
        client
            .send(Up::Leave("blue_NDX_state_gex_zero".into(), Some(10)))
            .await;
        assert_eq!(client.recv().await, ok(10));
        // Events need the event role.
        client.send(Up::Event(Some(11))).await;
        assert!(matches!(
            client.recv().await,
            Down::Ack { ack_id: 11, success: false, error: Some((name, _)) } if name == "Forbidden"
        ));
    }
}

fn writer_config() -> Config {
    let mut config = Config::default();
    config.api_keys.push(ApiKey {
        roles: vec![
            "webpubsub.joinLeaveGroup".into(),
            "webpubsub.sendToGroup".into(),
            "webpubsub.event".into(),
        ],
        ..ApiKey::new("writer", "writer-key")
    });
    config.api_keys.push(ApiKey {
        roles: vec![format!("webpubsub.joinLeaveGroup.{G1}")],
        ..ApiKey::new("scoped", "scoped-key")
    });
    config
}

async fn url_for(server: &Server, key: &str, hub: Hub) -> String {
    let (status, _, body) = http_get(
        server.addr,
        "/negotiate",
        &[("Authorization", &format!("Basic {key}"))],
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["websocket_urls"][hub.name()].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn send_to_group_needs_the_role_and_honours_no_echo() {
    let server = Server::start(writer_config()).await;
    let url = url_for(&server, "writer-key", Hub::Classic).await;
    let mut writer = Client::connect(&url, Some(JSON)).await.unwrap();
    assert!(matches!(writer.recv().await, Down::Connected { .. }));
    let mut reader = server.connect(Hub::Classic, PROTOBUF).await;
    assert!(matches!(reader.recv().await, Down::Connected { .. }));
    reader.join(G1, 1).await;
    writer.join(G1, 1).await;

    // The demo key has no send role.
    reader
        .send(Up::SendText {
            group: G1.into(),
            ack_id: Some(2),
            no_echo: false,
            text: "nope".into(),
        })
        .await;
    assert!(matches!(
        reader.recv().await,
        Down::Ack { ack_id: 2, success: false, error: Some((name, _)) } if name == "Forbidden"
    ));

    // With noEcho the writer does not get its own message; the reader does.
    writer
        .send(Up::SendText {
            group: G1.into(),
            ack_id: Some(2),
            no_echo: true,
            text: "hello".into(),
        })
        .await;
    assert_eq!(writer.recv().await, ok(2));
    assert_eq!(
        reader.recv().await,
        Down::Data {
            group: Some(G1.into()),
            sequence_id: None,
            payload: Payload::Text("hello".into()),
        }
    );
    // Without it both get it.
    writer
        .send(Up::SendText {
            group: G1.into(),
            ack_id: Some(3),
            no_echo: false,
            text: "again".into(),
        })
        .await;
    let mut got_ack = false;
    let mut got_echo = false;
    while !(got_ack && got_echo) {
        match writer.recv().await {
            Down::Ack {
                ack_id: 3,
                success: true,
                ..
            } => got_ack = true,
            Down::Data {
                payload: Payload::Text(t),
                ..
            } if t == "again" => got_echo = true,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        matches!(reader.recv().await, Down::Data { payload: Payload::Text(t), .. } if t == "again")
    );
    // The event role allows events.
    writer.send(Up::Event(Some(4))).await;
    assert_eq!(writer.recv().await, ok(4));
}

#[tokio::test]
async fn scoped_join_roles() {
    let server = Server::start(writer_config()).await;
    let url = url_for(&server, "scoped-key", Hub::Classic).await;
    let mut client = Client::connect(&url, Some(JSON)).await.unwrap();
    match client.recv().await {
        Down::Connected { user_id, .. } => assert_eq!(user_id, "scoped"),
        other => panic!("{other:?}"),
    }
    client.join(G1, 1).await;
    client.send(Up::Join(G2.into(), Some(2))).await;
    assert!(matches!(
        client.recv().await,
        Down::Ack { ack_id: 2, success: false, error: Some((name, _)) } if name == "Forbidden"
    ));
}

#[tokio::test]
async fn reliable_sequence_ids_start_at_one_and_increase() {
    let server = Server::default().await;
    for protocol in [JSON_RELIABLE, PROTOBUF_RELIABLE] {
        let mut client = server.connect(Hub::Classic, protocol).await;
        assert!(matches!(client.recv().await, Down::Connected { .. }));
        client.join(G1, 1).await;
        for i in 0..5 {
            server
                .push(gex(Hub::Classic, "SPX", "gex_zero", 200 + i))
                .await;
        }
        for i in 0..5u64 {
            match client.recv().await {
                Down::Data { sequence_id, .. } => assert_eq!(sequence_id, Some(i + 1)),
                other => panic!("{other:?}"),
            }
            if i == 2 {
                client.send(Up::SequenceAck(3)).await;
            }
        }
        // Acks do not reset the numbering.
        server.push(gex(Hub::Classic, "SPX", "gex_zero", 300)).await;
        assert!(matches!(
            client.recv().await,
            Down::Data {
                sequence_id: Some(6),
                ..
            }
        ));
    }
}

#[tokio::test]
async fn oversized_messages_close_with_1009() {
    let server = Server::start(Config {
        transport: TransportConfig {
            max_message_bytes: 1024,
            ..TransportConfig::default()
        },
        ..Config::default()
    })
    .await;
    let mut client = server.connect(Hub::Classic, JSON).await;
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    // Exactly the maximum is fine (answered with a BadRequest: no such type).
    let fits = format!(
        r#"{{"type":"x","ackId":1,"pad":"{}"}}"#,
        "a".repeat(1024 - 31)
    );
    assert_eq!(fits.len(), 1024);
    client.ws.send(Message::text(fits)).await.unwrap();
    assert!(matches!(
        client.recv().await,
        Down::Ack {
            ack_id: 1,
            success: false,
            ..
        }
    ));
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "a".repeat(2000));
    client.ws.send(Message::text(big)).await.unwrap();
    assert_eq!(client.close_code().await, 1009);

    // A fragmented message is limited as a whole.
    let mut client = server.connect(Hub::Classic, PROTOBUF).await;
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    use tokio_tungstenite::tungstenite::protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    };
    let part = |op, fin| Message::Frame(Frame::message(vec![0u8; 700], op, fin));
    client
        .ws
        .send(part(OpCode::Data(Data::Binary), false))
        .await
        .unwrap();
    client
        .ws
        .send(part(OpCode::Data(Data::Continue), true))
        .await
        .unwrap();
    assert_eq!(client.close_code().await, 1009);
}

#[tokio::test]
async fn invalid_frames_are_answered_or_closed_and_others_carry_on() {
    let server = Server::default().await;
    let mut bystander = server.connect(Hub::Classic, JSON).await;
    assert!(matches!(bystander.recv().await, Down::Connected { .. }));
    bystander.join(G1, 1).await;

    // Unknown type with an ack id: BadRequest, the session goes on.
    let mut client = server.connect(Hub::Classic, JSON).await;
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    client
        .ws
        .send(Message::text(r#"{"type":"bogus","ackId":5}"#))
        .await
        .unwrap();
    assert!(matches!(
        client.recv().await,
        Down::Ack { ack_id: 5, success: false, error: Some((name, _)) } if name == "BadRequest"
    ));
    client.send(Up::Ping).await;
    assert_eq!(client.recv().await, Down::Pong);
    // Not JSON: 1007.
    client.ws.send(Message::text("not json")).await.unwrap();
    assert_eq!(client.close_code().await, 1007);

    // A binary frame on a JSON subprotocol: 1003.
    let mut client = server.connect(Hub::Classic, JSON).await;
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    client
        .ws
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(client.close_code().await, 1003);

    // Garbage protobuf: 1007.
    let mut client = server.connect(Hub::Classic, PROTOBUF).await;
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    client
        .ws
        .send(Message::binary(vec![0xff, 0xff, 0xff]))
        .await
        .unwrap();
    assert_eq!(client.close_code().await, 1007);

    // The bystander still gets data.
    server.push(gex(Hub::Classic, "SPX", "gex_zero", 7)).await;
    assert_eq!(timestamp(&bystander.recv().await), 7);
}

#[tokio::test]
async fn client_close_is_echoed() {
    let server = Server::default().await;
    let mut client = server.connect(Hub::Classic, JSON).await;
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    client.ws.close(None).await.unwrap();
    assert!(matches!(client.recv().await, Down::Close(_)));
}
