//! Keepalive: the server pings; a client that sends nothing at all is closed.
//!
//! Uses one-second settings so the timers fire during the test; nothing
//! asserts on durations.

mod common;

use common::*;
use futures_util::StreamExt as _;
use tickwire_gateway::{Config, TransportConfig};
use tickwire_model::Hub;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn config() -> Config {
    Config {
        transport: TransportConfig {
            ping_interval_secs: 1,
            pong_timeout_secs: 2,
            ..TransportConfig::default()
        },
        ..Config::default()
    }
}

#[tokio::test]
async fn pings_are_sent_and_answered_pongs_keep_the_connection() {
    let server = Server::start(config()).await;
    let mut client = server.connect(Hub::Orderflow, JSON).await;
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    // Three pings span more than the pong timeout; tungstenite answers each.
    let mut pings = 0;
    while pings < 3 {
        let next = tokio::time::timeout(PATIENCE, client.ws.next())
            .await
            .expect("a ping");
        match next {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("{other:?}"),
        }
    }
    client.send(Up::Ping).await;
    assert_eq!(client.recv().await, Down::Pong);
}

#[tokio::test]
async fn a_silent_client_is_closed_with_1008() {
    let server = Server::start(config()).await;
    let url = server.url(Hub::Orderflow).await;
    let path = url
        .split_once(&server.addr.to_string())
        .unwrap()
        .1
        .to_owned();
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    // Frames until the close: the connected message, pings, then close 1008.
    let code = tokio::time::timeout(PATIENCE, async {
        loop {
            let b0 = stream.read_u8().await.unwrap();
            let len = usize::from(stream.read_u8().await.unwrap() & 0x7f);
            assert!(len < 126, "only small frames here");
            let mut payload = vec![0u8; len];
            stream.read_exact(&mut payload).await.unwrap();
            if b0 & 0x0f == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    })
    .await
    .expect("closed");
    assert_eq!(code, 1008);
}
