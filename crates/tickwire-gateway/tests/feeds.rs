//! What the JSON feeds share with the pubsub hubs: a client that stops
//! reading is dropped while the others get everything, and shutdown closes
//! every connection with 1001.

mod common;

use common::*;
use tickwire_gateway::{Config, TransportConfig};
use tickwire_model::{Instrument, Update};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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

/// A `/stream` client with a tiny receive buffer that subscribes to
/// BTC/USD and then never reads again.
async fn stalled_stream_client(server: &Server) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let request = format!(
        "GET /stream HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {DEMO}\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let subscribe = br#"{"type":"subscribe","symbols":["BTC/USD"]}"#;
    // A masked text frame with an all-zero mask (RFC 6455 §5.3).
    let mut frame = vec![
        0x81,
        0x80 | u8::try_from(subscribe.len()).unwrap(),
        0,
        0,
        0,
        0,
    ];
    frame.extend_from_slice(subscribe);
    stream.write_all(&frame).await.unwrap();
    let reply = read_frame(&mut stream).await;
    assert!(reply.starts_with(br#"{"type":"subscribed""#));
    stream
}

#[tokio::test]
async fn a_feed_client_that_never_reads_is_dropped_and_others_get_everything() {
    let server = Server::start_with(
        Config {
            transport: TransportConfig {
                send_buffer: 8,
                ..TransportConfig::default()
            },
            ..Config::default()
        },
        universe(),
    )
    .await;
    let mut stalled = stalled_stream_client(&server).await;
    let mut healthy = FeedClient::stream(&server, DEMO).await;
    healthy
        .send(r#"{"type":"subscribe","symbols":["BTC/USD"]}"#)
        .await;
    assert_eq!(healthy.json().await["type"], "subscribed");

    // Far more than the stalled client's socket buffers hold: big ticks
    // (a long `source`), 16 MB in all.
    let source = "x".repeat(60_000);
    let target = 16 << 20;
    let mut sent_bytes = 0usize;
    let mut n = 0u32;
    while sent_bytes < target {
        n += 1;
        let mut t = tick(Instrument::crypto("BTC/USD"), f64::from(n));
        t.source = source.as_str().into();
        server.feed.push(Update::Tick(t)).await.unwrap();
        let text = healthy.text().await;
        let update: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(update["price"], f64::from(n), "every message, in order");
        sent_bytes += text.len();
    }

    // The stalled client's stream ends (EOF or reset) before it got it all.
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled client was disconnected");
    assert!(received < sent_bytes, "{received} of {sent_bytes} bytes");

    // The healthy one carries on.
    server
        .feed
        .push(Update::Tick(tick(Instrument::crypto("BTC/USD"), 0.5)))
        .await
        .unwrap();
    assert_eq!(healthy.json().await["price"], 0.5);
}

#[tokio::test]
async fn shutdown_closes_the_feeds_with_going_away() {
    let mut server = Server::start_with(Config::default(), universe()).await;
    let mut ws = FeedClient::ws(&server).await;
    ws.send(r#"{"type":"subscribe","symbols":["btc"]}"#).await;
    ws.sync().await;
    let mut stream = FeedClient::stream(&server, DEMO).await;
    stream.send(r#"{"type":"ping"}"#).await;
    assert_eq!(stream.json().await["type"], "pong");
    server.begin_shutdown();
    // No goodbye message on the JSON feeds: the close frame comes first.
    for client in [&mut ws, &mut stream] {
        match client.next().await {
            Feed::Close(Some((code, reason))) => {
                assert_eq!(code, 1001);
                assert!(reason.contains("shutting down"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
    server.finish().await.unwrap();
}
