//! A sans-IO codec of the FastWS `{type, payload}` envelope, the bar subscription
//! operations that travel in it, and the AsyncAPI document that describes them.
//!
//! FastWS (Python, 0.1.7) carries typed operations over one WebSocket: every frame is a
//! JSON text frame `{"type": "bars.subscribe", "payload": {...}}`, requests are answered
//! with `<type>.response`, and the server broadcasts `bars.update` to the subscribers of
//! a topic `bars:{SYMBOL}:{RESOLUTION}`. Any failure closes the connection with 1003 and
//! a reason. This crate
//!
//! - declares the operations once, in a static table ([`OPERATIONS`]): type, direction,
//!   payload schema, reply, decoder;
//! - derives from it the dispatcher ([`Registry::decode`], [`decode`]) with FastWS's exact
//!   failures ([`Error::close`]), the replies ([`Registry::reply`]) and the AsyncAPI 2.4.0
//!   document ([`Registry::asyncapi`]);
//! - encodes the server's frames byte-exactly ([`encode_update`] once per topic,
//!   [`encode_subscription_response`]);
//! - tracks the heartbeat and lifespan limits ([`Timers`]) from instants it is given;
//! - ships a self-contained page that renders the document ([`DOCS_HTML`], [`DOCS_JS`]).
//!
//! It does no I/O: no sockets, tasks, clocks or WebSocket framing. Subscriptions, the
//! fan-out and the routes belong to the server; bars come from `tickwire-bars`.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tickwire_fastws::{BARS, ClientOp, FrameKind, Timers, encode_update};
//!
//! let mut timers = Timers::new(Some(Duration::from_secs(30)), Some(Duration::from_secs(3600)), Instant::now());
//!
//! // A text frame arrives: it counts as a heartbeat, then it is dispatched.
//! let frame = br#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":{"resolution":"1"}}}"#;
//! timers.on_receive(Instant::now());
//! let op = BARS.decode(FrameKind::Text, frame)?;
//! let ClientOp::Subscribe(sub) = &op else { unreachable!() };
//! assert_eq!(sub.topic(), "bars:AAPL:1");
//! assert_eq!(
//!     &BARS.reply(&op).unwrap()[..],
//!     br#"{"type":"bars.subscribe.response","payload":{"status":"ok","symbol":"AAPL","message":"Subscribed to AAPL","topic":"bars:AAPL:1"}}"#
//! );
//!
//! // An unknown operation closes the connection.
//! let err = BARS.decode(FrameKind::Text, br#"{"type":"unknown.operation","payload":{}}"#).unwrap_err();
//! assert_eq!((err.close().code, err.reason()), (1003, "No matching type"));
//! # Ok::<(), tickwire_fastws::Error>(())
//! ```

mod asyncapi;
mod bars;
mod docs;
mod error;
mod registry;
mod timers;
mod wire;

pub use asyncapi::{ASYNCAPI_VERSION, Info, envelope_schema_name};
pub use bars::{
    ClientOp, Status, Subscription, encode_subscription_response, encode_update, topic,
};
pub use docs::{
    ASYNCAPI_DOCS_PATH, ASYNCAPI_JS_PATH, ASYNCAPI_JSON_PATH, DOCS_HTML, DOCS_JS, WS_PATH,
};
pub use error::{
    CLOSE_UNSUPPORTED_DATA, Close, Error, REASON_INVALID_PAYLOAD, REASON_NO_MATCHING_TYPE,
    REASON_UNDECODABLE,
};
pub use registry::{BARS, Decoder, Direction, OPERATIONS, Operation, Registry, Schema, decode};
pub use timers::{Timers, timeout_reason};

/// The kind of a WebSocket data frame (RFC 6455 §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Opcode 0x1: UTF-8 text. The envelope travels in text frames.
    Text,
    /// Opcode 0x2: binary data. Refused with [`Error::BinaryFrame`].
    Binary,
}
