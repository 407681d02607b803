//! A plain tokio-tungstenite broadcast server of the seed 001 `/ws` price
//! feed: one of the Rust references that tickwire is compared with (see the
//! [library](tickwire_compare_rust) and the README of `benches/compare`).
//!
//! What a competent engineer writes with these crates, nothing more: one
//! task per connection owning the WebSocket, a bounded `tokio::sync::mpsc`
//! queue of [`Message`]s per connection, a `RwLock`ed map from symbol to the
//! subscribers' queues. Each update is serialized once and shared by
//! reference count ([`Utf8Bytes`]); the connection task feeds every queued
//! message into tungstenite's write buffer and flushes once. A full queue
//! drops the update for that subscriber. The publish API and the WebSocket
//! are told apart by the request line (`POST ` goes to hyper).
//!
//! ```text
//! tickwire-compare-tungstenite --listen 127.0.0.1:9003 --publish-key lt-key
//! ```
//!
//! [`Message`]: tokio_tungstenite::tungstenite::Message
//! [`Utf8Bytes`]: tokio_tungstenite::tungstenite::Utf8Bytes

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::StatusCode;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tickwire_compare_rust::commands::Commands;
use tickwire_compare_rust::feed::{ConnId, Update};
use tickwire_compare_rust::http::{self, WS_PATH};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, Receiver};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as WsRequest};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::{WebSocketStream, accept_hdr_async_with_config};

type Shared = tickwire_compare_rust::Shared<Message>;

/// A plain tokio-tungstenite broadcast server of the seed 001 `/ws` feed.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "COMPARE_LISTEN", default_value = "127.0.0.1:9003")]
    listen: SocketAddr,
    /// Bearer key that `POST /api/v1/publish` requires.
    #[arg(long, env = "COMPARE_PUBLISH_KEY", default_value = "lt-key")]
    publish_key: String,
    /// Messages queued per connection before updates to it are dropped.
    #[arg(long, default_value_t = 4096)]
    queue: usize,
    /// tungstenite's `read_buffer_size` in bytes (default: tungstenite's own,
    /// 128 KiB). tungstenite 0.28 zero-fills up to this much of its read
    /// buffer on every read attempt, so the size sets much of the cost of
    /// each wake-up of a connection.
    #[arg(long)]
    read_buffer: Option<usize>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let shared = Arc::new(Shared::new(&args.publish_key, args.queue));
    let config = args
        .read_buffer
        .map(|size| WebSocketConfig::default().read_buffer_size(size));
    let name = "tickwire-compare-tungstenite";
    tickwire_compare_rust::accept(name, args.listen, |stream, id| {
        connection(stream, Arc::clone(&shared), id, config)
    })
    .await
}

/// The message of an update: its text, shared.
fn message(update: &Update) -> Message {
    // The text was built from a `String`: valid UTF-8.
    Message::Text(Utf8Bytes::try_from(update.text.clone()).unwrap_or_default())
}

/// Serves one accepted connection to its end: the publish API or a `/ws`
/// WebSocket, told apart by the request line.
async fn connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    id: ConnId,
    config: Option<WebSocketConfig>,
) {
    match is_publish(&stream).await {
        Ok(true) => {
            let service = service_fn(|req| http::publish(req, Arc::clone(&shared), message));
            // A client that goes away mid-request is no concern of the server.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
        Ok(false) => websocket(stream, shared, id, config).await,
        Err(_) => {}
    }
}

/// Whether the connection's first request is a `POST` (the publish API);
/// anything else goes to the WebSocket handshake, which refuses what is not
/// an upgrade to [`WS_PATH`].
async fn is_publish(stream: &TcpStream) -> std::io::Result<bool> {
    const POST: &[u8] = b"POST ";
    let mut head = [0u8; POST.len()];
    // The request line arrives in one segment in practice; a client that
    // trickles it is given a little time.
    for _ in 0..100 {
        let n = stream.peek(&mut head).await?;
        if n == 0 || n == head.len() || !POST.starts_with(&head[..n]) {
            return Ok(&head[..n] == POST);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(false)
}

/// Accepts the WebSocket upgrade to [`WS_PATH`] and serves the session.
async fn websocket(
    stream: TcpStream,
    shared: Arc<Shared>,
    id: ConnId,
    config: Option<WebSocketConfig>,
) {
    // The callback's error type is tungstenite's, large or not.
    #[allow(clippy::result_large_err)]
    let route = |req: &WsRequest, response| {
        if req.uri().path() == WS_PATH {
            Ok(response)
        } else {
            let mut refusal = ErrorResponse::new(Some("no such route".to_owned()));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            Err(refusal)
        }
    };
    let Ok(ws) = accept_hdr_async_with_config(stream, route, config).await else {
        return;
    };
    let (tx, rx) = mpsc::channel(shared.queue);
    let commands = Commands::new(id, shared, tx);
    // A session ends on close or on any error; either way it unsubscribes
    // (dropping `commands`).
    let _ = session(ws, rx, commands).await;
}

/// Reads commands and writes queued updates until the connection ends.
async fn session(
    ws: WebSocketStream<TcpStream>,
    mut rx: Receiver<Message>,
    mut commands: Commands<Message>,
) -> Result<(), tungstenite::Error> {
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            Some(message) = rx.recv() => {
                // Everything queued goes into one flush.
                sink.feed(message).await?;
                while let Ok(message) = rx.try_recv() {
                    sink.feed(message).await?;
                }
                sink.flush().await?;
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = commands.command(text.as_str()) {
                        sink.send(Message::text(reply)).await?;
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                // tungstenite answers pings itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
            },
        }
    }
}
