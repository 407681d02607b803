//! The Rust reference servers that tickwire is compared with (see the README
//! of `benches/compare`): plain broadcast servers of the seed 001 `/ws` price
//! feed, one on tokio-tungstenite (`tickwire-compare-tungstenite`) and one on
//! fastwebsockets (`tickwire-compare-fastwebsockets`), the two libraries a
//! Rust user reaches for first.
//!
//! Both offer the load generator (`tickwire-loadtest --protocol ws`) the two
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
//! What this library holds is what the two share and what is not the
//! WebSocket library's: the registry of subscribers ([`feed`]), the publish
//! API ([`http`]) and the seed 001 commands ([`commands`]). Each binary is
//! the session loop its library suggests. Neither implements seed 001's rate
//! limits, idle timeout, `server_status`, order books or signals.

pub mod commands;
pub mod feed;
pub mod http;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use feed::{ConnId, Registry};
use tokio::net::{TcpListener, TcpStream};

/// What every connection of a server shares; `M` is the message its
/// connections' queues carry.
#[derive(Debug)]
pub struct Shared<M> {
    /// Who is subscribed to what.
    pub registry: Registry<M>,
    /// The `Authorization` header value the publish API requires.
    pub authorization: String,
    /// Outgoing queue capacity per connection, in messages.
    pub queue: usize,
}

impl<M> Shared<M> {
    /// A server's shared state: `publish_key` guards the publish API, each
    /// connection queues up to `queue` messages.
    pub fn new(publish_key: &str, queue: usize) -> Self {
        Shared {
            registry: Registry::default(),
            authorization: format!("Bearer {publish_key}"),
            queue: queue.max(1),
        }
    }
}

/// Listens on `addr` as server `name` and hands each accepted connection,
/// with its own id, to `serve` as a task of its own, forever. Nagle is off:
/// frames go out when flushed.
pub async fn accept<F, Fut>(name: &str, addr: SocketAddr, serve: F) -> std::io::Result<()>
where
    F: Fn(TcpStream, ConnId) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    eprintln!("{name} listening on {}", listener.local_addr()?);
    let mut ids: ConnId = 0;
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
        let _ = stream.set_nodelay(true);
        ids += 1;
        tokio::spawn(serve(stream, ids));
    }
}
