//! RFC 6455 on the real endpoints, over raw sockets: what a client sends
//! that the protocol forbids is answered with the close code the RFC names,
//! and the handshake refuses bad keys and versions as it should.
//!
//! Each test speaks bytes, not a WebSocket library, so that it can send
//! frames no library would (unmasked, reserved bits, non-minimal lengths).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tickwire_gateway::{Config, TransportConfig};
use tickwire_model::{Instrument, Update};
use tickwire_websocket::OpCode;
use tickwire_websocket::frame::put_masked_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame whose first byte is `b0` (FIN, RSV, opcode: any of them,
/// reserved ones included), masked unless `mask` is `None`, with the length
/// in its shortest form.
fn frame(b0: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match mask {
        Some(mask) => put_masked_frame(&mut out, true, OpCode::Text, mask, payload),
        // An unmasked frame is laid out as a server's.
        None => out.extend_from_slice(&tickwire_websocket::frame::frame(OpCode::Text, payload)),
    }
    out[0] = b0;
    out
}

fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    frame(b0, Some(MASK), payload)
}

/// What the server sent, frame by frame.
#[derive(Debug, PartialEq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Close(u16),
    /// The connection ended without a close frame.
    End,
}

/// A raw WebSocket connection.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Upgrades `path` of `addr` and checks the 101.
    async fn open(addr: SocketAddr, path: &str) -> Raw {
        let (status, head, raw) = handshake(addr, path, &[]).await;
        assert_eq!(status, 101, "{head}");
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame the server sends (pings skipped).
    async fn next(&mut self) -> Got {
        loop {
            while self.buf.len() < 2 || self.buf.len() < frame_len(&self.buf) {
                let mut chunk = [0u8; 4096];
                let n = tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk))
                    .await
                    .expect("the server answers in time")
                    .unwrap_or(0);
                if n == 0 {
                    return Got::End;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
            let len = frame_len(&self.buf);
            let frame: Vec<u8> = self.buf.drain(..len).collect();
            assert_eq!(frame[1] & 0x80, 0, "server frames are not masked");
            let header = len - payload_len(&frame);
            let payload = &frame[header..];
            match frame[0] & 0x0F {
                0x1 => return Got::Text(String::from_utf8(payload.to_vec()).unwrap()),
                0x2 => return Got::Binary(payload.to_vec()),
                0x8 => return Got::Close(u16::from_be_bytes([payload[0], payload[1]])),
                0x9 | 0xA => continue,
                op => panic!("unexpected opcode {op}"),
            }
        }
    }

    /// Reads up to the close frame and returns its code; data messages
    /// before it are returned too.
    async fn close(&mut self) -> (Vec<String>, Got) {
        let mut texts = Vec::new();
        loop {
            match self.next().await {
                Got::Text(t) => texts.push(t),
                Got::Binary(b) => texts.push(format!("{b:?}")),
                end => return (texts, end),
            }
        }
    }
}

fn payload_len(frame: &[u8]) -> usize {
    match frame[1] & 0x7F {
        126 => usize::from(u16::from_be_bytes([frame[2], frame[3]])),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&frame[2..10]);
            u64::from_be_bytes(b) as usize
        }
        n => usize::from(n),
    }
}

/// The whole length of the server frame at the start of `buf` (header
/// included), as far as the bytes there tell.
fn frame_len(buf: &[u8]) -> usize {
    let extra = match buf[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    if buf.len() < 2 + extra {
        return 2 + extra;
    }
    2 + extra + payload_len(buf)
}

/// Sends an upgrade request for `path` with the standard headers, of which
/// `replace` overrides some; returns the status, the head and the
/// connection.
async fn handshake(addr: SocketAddr, path: &str, replace: &[(&str, &str)]) -> (u16, String, Raw) {
    let mut headers = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    for (name, value) in replace {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name, value));
    }
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in &headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("response")
            .unwrap();
        assert!(n > 0, "connection closed inside the head");
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let rest = raw[end..].to_vec();
    (status, head, Raw { stream, buf: rest })
}

async fn server() -> Server {
    Server::start_with(Config::default(), universe()).await
}

fn btc_tick() -> Update {
    Update::Tick(tick(Instrument::crypto("BTC/USD"), 67234.56))
}

const SUBSCRIBE: &[u8] = br#"{"type":"subscribe","symbols":["btc"],"channels":["price"]}"#;

#[tokio::test]
async fn an_unmasked_subscribe_closes_with_1002_and_starts_no_stream() {
    let server = server().await;
    // A masked subscribe on another connection: the tick reaches it...
    let mut good = Raw::open(server.addr, "/ws").await;
    good.send(&masked(0x81, SUBSCRIBE)).await;
    good.send(&masked(0x81, br#"{"type":"ping"}"#)).await;
    assert!(matches!(good.next().await, Got::Text(t) if t.contains("pong")));
    // ...the same subscribe unmasked is a protocol error.
    let mut bad = Raw::open(server.addr, "/ws").await;
    bad.send(&frame(0x81, None, SUBSCRIBE)).await;
    let (texts, end) = bad.close().await;
    assert_eq!(end, Got::Close(1002));
    server.feed.push(btc_tick()).await.unwrap();
    assert!(matches!(good.next().await, Got::Text(t) if t.contains("price_update")));
    assert!(
        texts.iter().all(|t| !t.contains("price_update")),
        "{texts:?}"
    );
    assert_eq!(bad.next().await, Got::End, "nothing after the close");
}

#[tokio::test]
async fn every_endpoint_refuses_unmasked_frames() {
    let server = server().await;
    let hub = server.url(tickwire_model::Hub::Classic).await;
    let hub_path = &hub[hub.find("/ws/").unwrap()..];
    for path in [
        "/ws",
        "/stream?api_key=tickwire-demo-key",
        "/api/v1/ws",
        "/proxy",
        hub_path,
    ] {
        let mut raw = Raw::open(server.addr, path).await;
        raw.send(&frame(0x81, None, br#"{"type":"ping"}"#)).await;
        assert_eq!(raw.close().await.1, Got::Close(1002), "{path}");
    }
}

#[tokio::test]
async fn framing_errors_close_with_the_code_the_rfc_names() {
    let server = server().await;
    let huge = {
        // A binary frame announcing 2^63 bytes.
        let mut f = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        f.extend_from_slice(&MASK);
        f
    };
    let short_length = {
        // "hi" with its length in the 16-bit form.
        let mut f = vec![0x81, 0x80 | 126, 0, 2];
        f.extend_from_slice(&MASK);
        f.extend([b'h' ^ MASK[0], b'i' ^ MASK[1]]);
        f
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("reserved bit", masked(0xC1, b"x"), 1002),
        ("reserved data opcode", masked(0x83, b"x"), 1002),
        ("reserved control opcode", masked(0x8B, b"x"), 1002),
        ("fragmented ping", masked(0x09, b"x"), 1002),
        ("ping over 125 bytes", masked(0x89, &[0; 126]), 1002),
        ("continuation without a message", masked(0x80, b"x"), 1002),
        ("length of 2^63", huge, 1002),
        ("length not minimal", short_length, 1002),
        ("close of one byte", masked(0x88, b"\x03"), 1002),
        ("close code 1004", masked(0x88, b"\x03\xec"), 1002),
        ("close code 2999", masked(0x88, b"\x0b\xb7"), 1002),
        (
            "close reason not UTF-8",
            masked(0x88, b"\x03\xe8\xff"),
            1007,
        ),
        ("text not UTF-8", masked(0x81, b"\xff"), 1007),
        ("over the size limit", masked(0x82, &vec![0; 70_000]), 1009),
    ];
    for (what, bytes, code) in cases {
        let mut raw = Raw::open(server.addr, "/ws").await;
        raw.send(&bytes).await;
        assert_eq!(raw.close().await.1, Got::Close(code), "{what}");
    }
    // A valid close is echoed.
    let mut raw = Raw::open(server.addr, "/ws").await;
    raw.send(&masked(0x88, b"\x0f\xa0bye")).await;
    assert_eq!(raw.close().await.1, Got::Close(4000));
}

#[tokio::test]
async fn invalid_utf8_fails_at_the_first_bad_fragment() {
    let server = server().await;
    let mut raw = Raw::open(server.addr, "/ws").await;
    // The first fragment is valid, the second cannot become UTF-8; the last
    // fragment never comes, yet the server closes.
    raw.send(&masked(
        0x01,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
    ))
    .await;
    raw.send(&masked(0x00, b"\xf4\x90\x80\x80")).await;
    assert_eq!(raw.close().await.1, Got::Close(1007));

    // The same inside one frame whose end never comes.
    let mut raw = Raw::open(server.addr, "/ws").await;
    let whole = masked(
        0x81,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited",
    );
    raw.send(&whole[..6 + 13]).await;
    assert_eq!(raw.close().await.1, Got::Close(1007));
}

#[tokio::test]
async fn pings_between_fragments_are_answered_and_the_message_applied() {
    let server = server().await;
    let mut raw = Raw::open(server.addr, "/ws").await;
    let (a, b) = SUBSCRIBE.split_at(20);
    raw.send(&masked(0x01, a)).await;
    raw.send(&masked(0x89, b"hello")).await;
    raw.send(&masked(0x80, b)).await;
    raw.send(&masked(0x81, br#"{"type":"ping"}"#)).await;
    assert!(matches!(raw.next().await, Got::Text(t) if t.contains("pong")));
    server.feed.push(btc_tick()).await.unwrap();
    assert!(matches!(raw.next().await, Got::Text(t) if t.contains("price_update")));
}

#[tokio::test]
async fn the_handshake_refuses_bad_keys_and_versions() {
    let server = server().await;
    for key in ["abc", "", "YWJjZGVmZ2hpamtsbW5v"] {
        let (status, head, _) = handshake(server.addr, "/ws", &[("Sec-WebSocket-Key", key)]).await;
        assert_eq!(status, 400, "{key:?}: {head}");
    }
    for path in ["/ws", "/api/v1/ws", "/proxy"] {
        let (status, head, _) =
            handshake(server.addr, path, &[("Sec-WebSocket-Version", "12")]).await;
        assert_eq!(status, 400, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-version: 13\r\n"),
            "{path}: {head}"
        );
    }
    // A good one is answered with the RFC's accept key.
    let (status, head, _) = handshake(server.addr, "/ws", &[]).await;
    assert_eq!(status, 101);
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    // And the server carries on.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut raw = Raw::open(server.addr, "/ws").await;
    raw.send(&masked(0x81, br#"{"type":"ping"}"#)).await;
    assert!(matches!(raw.next().await, Got::Text(t) if t.contains("pong")));
}

/// Open WebSocket connections, as `/healthz` counts them.
async fn open_connections(addr: SocketAddr) -> u64 {
    let (status, _, body) = http_get(addr, "/healthz", &[]).await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    health["connections"].as_u64().unwrap()
}

#[tokio::test]
async fn a_client_trickling_one_frame_is_closed_at_its_keepalive_and_released() {
    // The keep-alive counts whole frames: bytes of a frame that never ends
    // do not keep a connection open.
    let server = Server::start_with(
        Config {
            transport: TransportConfig {
                pong_timeout_secs: 1,
                ..TransportConfig::default()
            },
            ..Config::default()
        },
        universe(),
    )
    .await;
    let hub = server.url(tickwire_model::Hub::Classic).await;
    let mut raw = Raw::open(server.addr, &hub[hub.find("/ws/").unwrap()..]).await;
    assert_eq!(open_connections(server.addr).await, 1);
    let frame = masked(0x82, &[0; 1000]);
    let trickle = async {
        for chunk in frame.chunks(10) {
            if raw.stream.write_all(chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    // 100 chunks at 200 ms would take 20 s; the keep-alive ends it in about 1.
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .unwrap_or(());
    let (_, end) = raw.close().await;
    assert_eq!(end, Got::Close(1008));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed in time"
    );
    // The connection is released: nothing is left open.
    let deadline = std::time::Instant::now() + PATIENCE;
    while open_connections(server.addr).await != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the connection is released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
