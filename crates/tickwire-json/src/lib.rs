//! A sans-IO codec of tickwire's two plain JSON price feeds.
//!
//! | Module     | Endpoint  | Symbols   | Timestamps                         | Server messages |
//! |------------|-----------|-----------|------------------------------------|-----------------|
//! | [`ws`]     | `/ws`     | `btc`     | ms since the epoch (`1700000000000`) | `price_update`, `orderbook_update`, `signal_update`, `server_status`, `pong`, `error` |
//! | [`stream`] | `/stream` | `BTC/USD` | RFC 3339 (`2025-10-10T14:30:00.000Z`) | `subscribed`, `unsubscribed`, `price_update`, `pong`, `error` |
//!
//! It also reads the body of the publish API ([`publish`]): the items a
//! publisher injects into every feed.
//!
//! For each dialect this crate
//!
//! - parses client messages (`subscribe`, `unsubscribe`, `ping`) into typed commands
//!   ([`ws::parse`] → [`ws::WsCommand`], [`stream::parse`] → [`stream::StreamCommand`]),
//!   refusing oversized or malformed input with the dialect's own error and code rather
//!   than panicking, and counting `/stream`'s 10-symbol limit before anything is looked up;
//! - encodes every server message byte for byte as its document shows it: the examples'
//!   key order, compact JSON, integral figures as integers, NaN and infinities as `null`;
//! - encodes market events ([`tickwire_model::market`]) once per dialect straight into a
//!   buffer ([`ws::encode_tick`], [`ws::encode_book`], [`ws::encode_signal`],
//!   [`stream::encode_tick`]), so that fan-out hands every subscriber a clone of the same
//!   [`Bytes`](bytes::Bytes);
//! - spells instruments as each dialect does ([`ws::symbol_of`], [`stream::symbol_of`]) and
//!   turns a client's symbol into a lookup key ([`ws::symbol_key`], case-insensitive;
//!   [`stream::symbol_key`], exact).
//!
//! It does no I/O and keeps no state: sockets, authentication, subscriptions, rate limits,
//! heartbeats and timers belong to the server, which passes the current time in where a
//! message carries one. The documents' limits are exported as constants
//! ([`ws::MAX_SUBSCRIPTIONS`], [`stream::MAX_SYMBOLS`], ...) for the server's defaults.
//! The `channels` extension of `/ws` subscriptions is specified in [`ws`].
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tickwire_json::{stream, ws};
//! use tickwire_model::market::{Instrument, PriceTick};
//!
//! // A /ws client subscribes to Bitcoin's price and order book.
//! let cmd = ws::parse_limited(
//!     br#"{"type":"subscribe","symbols":["BTC"],"channels":["price","orderbook"]}"#,
//!     64 * 1024,
//! )?;
//! let ws::WsCommand::Subscribe { symbols, channels } = cmd else { unreachable!() };
//! assert_eq!(ws::symbol_key(&symbols[0]), "btc");
//! assert!(channels.contains(ws::Channel::OrderBook));
//!
//! // A tick arrives: encode it once per dialect, then clone the bytes per subscriber.
//! let tick = PriceTick {
//!     instrument: Instrument::crypto("BTC/USD"),
//!     price: 67234.56,
//!     last_quantity: 0.02,
//!     bid: 67234.5,
//!     bid_quantity: 1.2,
//!     ask: 67234.6,
//!     ask_quantity: 0.8,
//!     open: 65700.0,
//!     high: 67900.0,
//!     low: 65300.0,
//!     prev_close: 65700.0,
//!     change_24h_pct: 2.34,
//!     volume_24h: Some(28_500_000_000.0),
//!     session_volume: 410_000.0,
//!     source: Arc::from("synthetic"),
//!     timestamp_ms: 1_700_000_000_000,
//! };
//! assert_eq!(
//!     &ws::encode_tick(&tick)[..],
//!     br#"{"type":"price_update","symbol":"btc","price":67234.56,"change_24h":2.34,"volume_24h":28500000000,"timestamp":1700000000000}"#
//! );
//! assert_eq!(
//!     &stream::encode_tick(&tick)[..],
//!     br#"{"type":"price_update","symbol":"BTC/USD","price":67234.56,"volume":28500000000,"timestamp":"2023-11-14T22:13:20.000Z","source":"synthetic"}"#
//! );
//! # Ok::<(), ws::WsError>(())
//! ```

mod error;
pub mod publish;
mod read;
pub mod stream;
pub mod timestamp;
mod write;
pub mod ws;

pub use error::ParseError;
