//! A plain tokio-tungstenite broadcast server of the seed 001 `/ws` price
//! feed: the Rust reference that tickwire is compared with (see the README of
//! `benches/compare`).
//!
//! It offers the load generator (`tickwire-loadtest --protocol ws`) the two
//! things tickwire offers it, on one port:
//!
//! - `GET /ws`: a WebSocket speaking seed 001 `subscribe`, `unsubscribe` and
//!   `ping` (answered by `pong`); subscribers of a symbol receive its
//!   `price_update` messages. Any symbol is valid; symbols are
//!   case-insensitive.
//! - `POST /api/v1/publish` with `Authorization: Bearer <key>` and a JSON body
//!   of one item or an array of items; every `kind: tick` item becomes one
//!   `price_update` of the lower-case base of its symbol (`LT0001/USD` →
//!   `lt0001`), sent to that symbol's subscribers. Answers 202
//!   `{"accepted":n}`.
//!
//! What a competent engineer writes with these crates, nothing more: one
//! task per connection owning the WebSocket, a bounded `tokio::sync::mpsc`
//! queue of [`Message`]s per connection, a `RwLock`ed map from symbol to the
//! subscribers' queues. Each update is serialized once and shared by
//! reference count ([`Utf8Bytes`]); the connection task feeds every queued
//! message into tungstenite's write buffer and flushes once. A full queue
//! drops the update for that subscriber. It does not implement seed 001's
//! rate limits, idle timeout, `server_status`, order books or signals.
//!
//! ```text
//! tickwire-compare-tungstenite --listen 127.0.0.1:9003 --publish-key lt-key
//! ```
//!
//! [`Message`]: tokio_tungstenite::tungstenite::Message
//! [`Utf8Bytes`]: tokio_tungstenite::tungstenite::Utf8Bytes

mod feed;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;

use crate::feed::Registry;

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
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!(
        "tickwire-compare-tungstenite listening on {}",
        listener.local_addr()?
    );
    let shared = Arc::new(session::Shared {
        registry: Registry::default(),
        authorization: format!("Bearer {}", args.publish_key),
        queue: args.queue.max(1),
        read_buffer: args.read_buffer,
    });
    let ids = AtomicU64::new(0);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, for one: wait, then go on.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Frames go out when flushed, not when Nagle allows.
        let _ = stream.set_nodelay(true);
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(session::connection(stream, Arc::clone(&shared), id));
    }
}
