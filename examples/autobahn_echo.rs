//! An echo server built from the same core and codec as the gateway, for the
//! Autobahn|Testsuite's fuzzing client: every text or binary message comes
//! back as it came, everything else (pings, fragments, closes, every
//! protocol error) is the core's and the codec's doing. Not part of the
//! production server; `scripts/test` runs the suite against it.
//!
//! `cargo run -p tickwire-examples --example autobahn_echo -- [ADDR]` (default
//! `127.0.0.1:9001`; port 0 picks one). It prints `listening on ADDR` on its
//! first line, and stops on SIGINT or when its standard input closes.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tickwire_core::http::{
    Body, handshake, handshake_refusal, serve_connection, start_session, upgrade_with,
};
use tickwire_core::session::{Activity, Protocol, Step, Transport};
use tickwire_core::{ConnectionSettings, Connections, SlowConsumer, Tracker, tracker};
use tickwire_websocket::{MessageKind, OpCode, close_code, frame};
use tokio::io::AsyncReadExt as _;

/// The largest message echoed: the suite's largest is 16 MiB (case 9.1.6).
const MAX_MESSAGE: usize = 32 << 20;

/// Echoes every message in a frame of its own kind.
#[derive(Debug)]
struct Echo;

impl Protocol for Echo {
    fn on_message(&mut self, kind: MessageKind, payload: &[u8], _now: Instant) -> Step {
        let opcode = match kind {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        };
        Step::Frame(frame::frame(opcode, payload))
    }

    fn deadline(&self, activity: &Activity) -> Instant {
        activity.last_frame + Duration::from_secs(60)
    }

    fn idle_close(&self) -> (u16, &str) {
        (close_code::NORMAL, "idle timeout")
    }
}

fn answer(
    mut req: hyper::Request<hyper::body::Incoming>,
    connections: &std::sync::Arc<Connections>,
    tracker: &Tracker,
) -> hyper::Response<Body> {
    let handshake = match handshake(&req) {
        Ok(h) => h,
        Err(e) => return handshake_refusal(&e),
    };
    let transport = Transport {
        variant: 0,
        reply_opcode: OpCode::Text,
        max_message_bytes: MAX_MESSAGE,
        slow_consumer: SlowConsumer::Disconnect,
        queue_capacity: None,
        endpoint: "echo",
        format: "text",
        peer: tickwire_core::Peer {
            remote: tickwire_core::http::remote(&req),
        },
    };
    let (connections, tracker) = (connections.clone(), tracker.clone());
    upgrade_with(&mut req, handshake, move |upgraded| {
        start_session(upgraded, connections, transport, |_| Echo, tracker)
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(addr) => addr.parse().map_err(std::io::Error::other)?,
        None => SocketAddr::from(([127, 0, 0, 1], 9001)),
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    writeln!(std::io::stdout(), "listening on {}", listener.local_addr()?)?;
    std::io::stdout().flush()?;

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let settings = ConnectionSettings {
        // Pings of our own would be unexpected frames in the suite's cases.
        ping_interval: Duration::from_secs(3600),
        ..ConnectionSettings::default()
    };
    let connections = Connections::new(settings, shutdown.clone());
    let (tracker, mut drained) = tracker();
    let stdin_closed = async {
        let mut sink = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    tokio::pin!(stdin_closed);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = &mut stdin_closed => break,
            accepted = listener.accept() => {
                let (stream, peer) = accepted?;
                let (connections, tracker) = (connections.clone(), tracker.clone());
                let service = move |req| {
                    let response = answer(req, &connections, &tracker);
                    std::future::ready(response)
                };
                tokio::spawn(serve_connection(stream, peer, shutdown.clone(), service));
            }
        }
    }
    let _ = stop.send(true);
    drop(tracker);
    let _ = tokio::time::timeout(Duration::from_secs(5), drained.wait()).await;
    Ok(())
}
