//! A client that stops reading is dropped; the others keep receiving everything.

mod common;

use common::*;
use prost::Message as _;
use tickwire_gateway::{Config, TransportConfig};
use tickwire_model::Hub;
use tickwire_pipeline::Record;
use tickwire_proto::webpubsub::{self as pb, upstream_message as up};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const GROUP: &str = "blue_SPX_classic_gex_zero";

/// Reads one server frame (unmasked, RFC 6455 §5.2) and returns its payload.
async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => usize::from(stream.read_u16().await.unwrap()),
        127 => usize::try_from(stream.read_u64().await.unwrap()).unwrap(),
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    payload
}

/// A client that speaks just enough WebSocket to join, with a tiny receive buffer.
async fn stalled_client(server: &Server) -> TcpStream {
    let url = server.url(Hub::Classic).await;
    let path = url
        .split_once(&server.addr.to_string())
        .unwrap()
        .1
        .to_owned();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: {PROTOBUF}\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    read_frame(&mut stream).await; // connected
    let join = pb::UpstreamMessage {
        message: Some(up::Message::JoinGroupMessage(up::JoinGroupMessage {
            group: GROUP.into(),
            ack_id: Some(1),
        })),
    }
    .encode_to_vec();
    // A masked binary frame with an all-zero mask (RFC 6455 §5.3).
    let mut frame = vec![0x82, 0x80 | u8::try_from(join.len()).unwrap(), 0, 0, 0, 0];
    frame.extend_from_slice(&join);
    stream.write_all(&frame).await.unwrap();
    read_frame(&mut stream).await; // the ack
    stream
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_others_get_everything() {
    let server = Server::start(Config {
        transport: TransportConfig {
            send_buffer: 8,
            ..TransportConfig::default()
        },
        ..Config::default()
    })
    .await;
    let mut stalled = stalled_client(&server).await;
    let mut healthy = server.connect(Hub::Classic, PROTOBUF).await;
    assert!(matches!(healthy.recv().await, Down::Connected { .. }));
    healthy.join(GROUP, 1).await;

    // Far more than the socket buffers of the stalled client can hold (the
    // kernel's send buffer is at most a few MB): its queue must fill.
    let target = 16 << 20;
    let mut sent_bytes = 0usize;
    let mut ts = 0;
    while sent_bytes < target {
        ts += 1;
        let record = gex_with_strikes(Hub::Classic, "SPX", "gex_zero", ts, 2000);
        server.push(record).await;
        match healthy.recv().await {
            Down::Data { payload, .. } => {
                let Record::Gex(g) = payload.record() else {
                    panic!()
                };
                assert_eq!(
                    g.timestamp, ts,
                    "the healthy client gets every message in order"
                );
                if let Payload::Any { value, .. } = payload {
                    sent_bytes += value.len();
                }
            }
            other => panic!("{other:?}"),
        }
    }

    // The stalled client's stream ends with a reset before it got it all:
    // an abortive close, so that the server's kernel does not keep megabytes
    // queued for a client that does not read.
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) => return None,
                Err(e) => return Some(e.kind()),
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert_eq!(
        ended,
        Ok(Some(std::io::ErrorKind::ConnectionReset)),
        "the stalled client was reset"
    );
    assert!(received < sent_bytes, "{received} of {sent_bytes} bytes");

    // The healthy one carries on.
    server
        .push(gex(Hub::Classic, "SPX", "gex_zero", 999_999))
        .await;
    match healthy.recv().await {
        Down::Data { payload, .. } => assert_eq!(payload.record().timestamp(), 999_999),
        other => panic!("{other:?}"),
    }

    // `/healthz` counts the disconnection: one client, by the policy.
    let (status, _, body) = http_get(server.addr, "/healthz", &[]).await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["slow_consumers"]["disconnected"], 1, "{body}");
    assert_eq!(health["slow_consumers"]["dropped_oldest"], 0, "{body}");
}
