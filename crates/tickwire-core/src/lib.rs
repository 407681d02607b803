//! The transport and fan-out core of tickwire: everything a WebSocket
//! connection needs that is not a protocol.
//!
//! - [`session`]: one connection's read loop over the sans-IO codec of
//!   `tickwire-websocket` (the loop only moves bytes), pings, idle
//!   deadlines, closing, and the [`Protocol`] trait an endpoint implements
//!   to decide what messages mean;
//! - [`writer`]: the task that owns the socket's write half, writes
//!   everything queued in one `write`, and the [`Sequencer`] hook for
//!   protocols that number their messages per connection;
//! - [`outbox`]: each connection's bounded data queue and its slow-consumer
//!   policies ([`SlowConsumer`]), the control queue, corked wake-ups, write
//!   pacing;
//! - [`subscriber`]: the connection as the fan-out sees it, a subscription
//!   [`Index`] of them, and delivering one update to every subscriber of a
//!   topic, encoded once per endpoint-defined variant ([`publish`],
//!   [`publish_text`]);
//! - [`dispatch`]: the fan-out of updates to every endpoint's [`Feed`], in
//!   corked bursts, from the adapters' streams or a publish request;
//! - [`connections`]: what a server's connections share (settings,
//!   counters, shutdown) and the tracker it waits on when it stops;
//! - [`meter`]: what it counts for operators (per endpoint and format,
//!   latency histograms, the connections open now), as plain atomics an
//!   exporter reads;
//! - [`http`]: serving an HTTP/1.1 connection with hyper, the upgrade, the
//!   hand-over of the TCP stream to a session, JSON answers.
//!
//! What it does not do: it knows no endpoint, no wire format beyond RFC 6455
//! and no adapter. Endpoints plug in through [`Protocol`] (per connection),
//! [`Sequencer`] (optional, per connection), the variant of their
//! subscribers (per message), [`Relay`] (optional, per subscriber: an
//! endpoint that feeds on another's fan-out) and [`Feed`] (per update).
//! Locks are held for a few instructions and never across an `.await`.
//!
//! An echo server is a few lines over it (here serving one connection, which
//! a hand-written client checks):
//!
//! ```
//! use std::time::Instant;
//!
//! use tickwire_core::http::{handshake, handshake_refusal, serve_connection, start_session, upgrade_with};
//! use tickwire_core::session::{Activity, Protocol, Step, Transport};
//! use tickwire_core::{ConnectionSettings, Connections, SlowConsumer, tracker};
//! use tickwire_websocket::{MessageKind, OpCode, close_code, frame};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! struct Echo;
//!
//! impl Protocol for Echo {
//!     fn on_message(&mut self, kind: MessageKind, payload: &[u8], _now: Instant) -> Step {
//!         let opcode = if kind == MessageKind::Text { OpCode::Text } else { OpCode::Binary };
//!         Step::Frame(frame::frame(opcode, payload))
//!     }
//!     fn deadline(&self, activity: &Activity) -> Instant {
//!         activity.last_frame + std::time::Duration::from_secs(60)
//!     }
//!     fn idle_close(&self) -> (u16, &str) {
//!         (close_code::NORMAL, "idle")
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//! let connections = Connections::new(ConnectionSettings::default(), shutdown.clone());
//! let (tracker, _drained) = tracker();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let (stream, peer) = listener.accept().await?;
//!     serve_connection(stream, peer, shutdown, move |mut req| {
//!         let (connections, tracker) = (connections.clone(), tracker.clone());
//!         let transport = Transport {
//!             variant: 0,
//!             reply_opcode: OpCode::Text,
//!             max_message_bytes: 1 << 20,
//!             slow_consumer: SlowConsumer::Disconnect,
//!             queue_capacity: None,
//!             endpoint: "echo",
//!             format: "text",
//!             peer: Default::default(),
//!         };
//!         let answer = match handshake(&req) {
//!             Ok(h) => upgrade_with(&mut req, h, move |upgraded| {
//!                 start_session(upgraded, connections, transport, |_| Echo, tracker)
//!             }),
//!             Err(e) => handshake_refusal(&e),
//!         };
//!         async move { answer }
//!     })
//!     .await;
//!     std::io::Result::Ok(())
//! });
//!
//! // A client: the opening handshake, then one masked text frame.
//! let mut client = tokio::net::TcpStream::connect(addr).await?;
//! client.write_all(b"GET / HTTP/1.1\r\nHost: echo\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n").await?;
//! let mut head = Vec::new();
//! while !head.ends_with(b"\r\n\r\n") {
//!     head.push(client.read_u8().await?);
//! }
//! assert!(head.starts_with(b"HTTP/1.1 101"));
//! let mask = [1, 2, 3, 4];
//! let mut hello = vec![0x81, 0x80 | 5, 1, 2, 3, 4];
//! hello.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
//! client.write_all(&hello).await?;
//! let mut echoed = [0; 7];
//! client.read_exact(&mut echoed).await?;
//! assert_eq!(&echoed, b"\x81\x05hello");
//! # std::io::Result::Ok(())
//! # })?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod alarm;
pub mod connections;
pub mod dispatch;
pub mod http;
pub mod meter;
pub mod outbox;
pub mod session;
pub mod subscriber;
pub mod writer;

pub use connections::{
    ConnectionSettings, Connections, Drained, Tracker, every, shutdown_started, tracker,
};
pub use dispatch::{FanOut, Feed};
pub use meter::Peer;
pub use outbox::{SlowConsumer, SlowConsumerCounts, corked};
pub use session::{Activity, Ending, Protocol, Step, Transport};
pub use subscriber::{Index, Kind, Relay, Subscriber, publish, publish_text};
pub use writer::{AbortiveClose, Outbound, SequencedMessage, Sequencer};

/// Locks `mutex`, whether or not a thread panicked while holding it: every
/// mutex of the core and the gateway guards state that stays consistent
/// between operations (they hold it for a few instructions, never across an
/// `.await`), so a panic elsewhere must not stop every later user.
pub fn lock<T: ?Sized>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub mod testing {
    //! Connections without a socket, for the unit tests of an endpoint's
    //! protocol: feed its session messages and read what it queued.

    use std::sync::Arc;

    use crate::outbox::{SlowConsumer, SlowConsumerStats};
    use crate::subscriber::QueuePolicy;
    use crate::{Index, Subscriber};

    /// Connection `id` of `variant`, with a queue of 16 that disconnects
    /// when full, and no writer: what is queued stays in its outbox.
    pub fn subscriber(id: u64, variant: u8) -> Subscriber {
        let queue = QueuePolicy {
            capacity: 16,
            slow_consumer: SlowConsumer::Disconnect,
            pacer: None,
        };
        Subscriber::new(id, variant, queue, Arc::new(SlowConsumerStats::default()))
    }

    /// The JSON messages a protocol step sends: its reply or replies.
    ///
    /// # Panics
    ///
    /// When the step sends no reply, or a reply is not JSON.
    pub fn replies(step: crate::Step) -> Vec<serde_json::Value> {
        let all = match step {
            crate::Step::Reply(one) => vec![one],
            crate::Step::Replies(all) => all,
            other => panic!("expected replies, got {other:?}"),
        };
        all.iter()
            .map(|b| serde_json::from_slice(b).expect("a JSON reply"))
            .collect()
    }

    /// How many connections `index` has in `topic`.
    pub fn members(index: &Index, topic: &str) -> usize {
        index.lookup(topic).map_or(0, |t| index.subscriber_count(t))
    }
}
