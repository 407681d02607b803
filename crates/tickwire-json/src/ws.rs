//! The `/ws` dialect: the symbol price feed of the "WebSocket Protocol" document (seed 001).
//!
//! Clients send `subscribe`, `unsubscribe` and `ping` ([`parse`] → [`WsCommand`]); the
//! server sends `price_update`, `orderbook_update`, `signal_update`, `server_status`, `pong`
//! and `error` (the `encode_*` and `write_*` functions). Symbols are lower-case base assets
//! (`btc` for `BTC/USD`, see [`symbol_of`]); timestamps are milliseconds since the UNIX
//! epoch, as JSON integers.
//!
//! # The `channels` field of `subscribe`
//!
//! The document sends order books "if subscribed to order book channel" without saying how
//! one subscribes to it; tickwire adds one optional field to `subscribe` and `unsubscribe`:
//!
//! ```json
//! {"type": "subscribe", "symbols": ["btc", "eth"], "channels": ["price", "orderbook"]}
//! ```
//!
//! - The channels are `"price"` (`price_update`), `"orderbook"` (`orderbook_update`) and
//!   `"signal"` (`signal_update`), spelled exactly so ([`Channel`]).
//! - **Omitted (or `null`) on `subscribe`, it means `["price", "signal"]`**
//!   ([`Channels::DEFAULT`]): the messages the document sends to any subscriber. A client
//!   that never sends `channels` gets exactly the document's behaviour.
//! - The channels apply to every symbol of the message. Subscribing adds them to what the
//!   connection already receives for those symbols: `subscribe btc` then
//!   `subscribe btc ["orderbook"]` yields all three channels for `btc`.
//! - **Omitted (or `null`) on `unsubscribe`, it means every channel** ([`Channels::ALL`]):
//!   the symbols are dropped entirely, as the document's `unsubscribe` does. Given, only
//!   those channels are removed; a symbol left with no channel is no longer subscribed.
//! - An unknown name (`"trades"`), a non-string entry or an empty array is
//!   `invalid_message` and nothing of that message applies. Repeated names are harmless.
//! - A subscription is a symbol: the limit of 100 subscriptions per connection
//!   ([`MAX_SUBSCRIPTIONS`]) counts symbols, whatever their channels.
//!
//! # Replies
//!
//! The document defines no reply to `subscribe` or `unsubscribe`, so none is invented:
//! success is silent and the symbol's updates follow; failures are `error` messages
//! (`invalid_symbol` for each unknown symbol while the rest of the request still applies,
//! `subscription_limit` refusing the whole request). `ping` is answered with `pong`.
//!
//! # Accepted variants
//!
//! `assets` is accepted as an alias of `symbols`, as the document's original server does;
//! sending both is `invalid_message`. Unknown fields are ignored.
//!
//! ```
//! use tickwire_json::ws::{self, Channels, WsCommand, WsError};
//!
//! let cmd = ws::parse(br#"{"type":"subscribe","assets":["BTC"],"channels":["orderbook"]}"#)?;
//! assert_eq!(
//!     cmd,
//!     WsCommand::Subscribe { symbols: vec!["BTC".into()], channels: Channels::ORDERBOOK }
//! );
//! assert_eq!(ws::symbol_key("BTC"), "btc");
//!
//! let err = WsError::InvalidSymbol { symbol: "xyz".into() };
//! assert_eq!(
//!     &ws::encode_error(&err)[..],
//!     br#"{"type":"error","code":"invalid_symbol","message":"Symbol 'xyz' not found"}"#
//! );
//! # Ok::<(), WsError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::ops::{BitOr, BitOrAssign};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tickwire_model::market::{
    Instrument, Level, OrderBook, PriceTick, ServerStatus, Signal, Trade,
};

use crate::ParseError;
use crate::error::Clipped;
use crate::read::{Key, absent, array, read_object, required_str, strings};
use crate::write::{
    MAX_NUMBER_LEN, put_f64, put_i64, put_lower_str, put_opt_f64, put_str, put_u64,
};

/// The endpoint's path.
pub const PATH: &str = "/ws";

/// The document's limit of subscriptions (symbols) per connection ("Rate Limits").
pub const MAX_SUBSCRIPTIONS: usize = 100;

/// The document's limit of client messages per second ("Rate Limits").
pub const MAX_MESSAGES_PER_SECOND: u32 = 10;

/// The document's inactivity timeout: "Connections are closed after 5 minutes of
/// inactivity (unless ping/pong is active)".
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The quote currency a bare `/ws` symbol is priced in by default (`btc` is `BTC/USD`).
pub const DEFAULT_QUOTE: &str = "USD";

// -----------------------------------------------------------------------------------
// Channels
// -----------------------------------------------------------------------------------

/// One kind of update a `/ws` client can subscribe to (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `"price"`: `price_update` messages.
    Price,
    /// `"orderbook"`: `orderbook_update` messages.
    OrderBook,
    /// `"signal"`: `signal_update` messages.
    Signal,
}

impl Channel {
    /// Every channel, in wire order.
    pub const ALL: [Channel; 3] = [Channel::Price, Channel::OrderBook, Channel::Signal];

    /// The channel's name on the wire: `price`, `orderbook` or `signal`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Price => "price",
            Channel::OrderBook => "orderbook",
            Channel::Signal => "signal",
        }
    }

    /// The channel a wire name denotes; names are exact and lower-case.
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Channel`]s, `Copy` and one byte wide.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Channels(u8);

impl Channels {
    /// No channel.
    pub const NONE: Channels = Channels(0);
    /// Only `price`.
    pub const PRICE: Channels = Channels(Channel::Price.bit());
    /// Only `orderbook`.
    pub const ORDERBOOK: Channels = Channels(Channel::OrderBook.bit());
    /// Only `signal`.
    pub const SIGNAL: Channels = Channels(Channel::Signal.bit());
    /// Every channel: what an `unsubscribe` without `channels` removes.
    pub const ALL: Channels = Channels(Self::PRICE.0 | Self::ORDERBOOK.0 | Self::SIGNAL.0);
    /// `price` and `signal`: what a `subscribe` without `channels` adds.
    pub const DEFAULT: Channels = Channels(Self::PRICE.0 | Self::SIGNAL.0);

    /// Whether `channel` is in the set.
    pub const fn contains(self, channel: Channel) -> bool {
        self.0 & channel.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The channels in either set.
    pub const fn union(self, other: Channels) -> Channels {
        Channels(self.0 | other.0)
    }

    /// The channels in both sets.
    pub const fn intersection(self, other: Channels) -> Channels {
        Channels(self.0 & other.0)
    }

    /// The channels of `self` not in `other`.
    pub const fn difference(self, other: Channels) -> Channels {
        Channels(self.0 & !other.0)
    }

    /// The channels in the set, in wire order.
    pub fn iter(self) -> impl Iterator<Item = Channel> {
        Channel::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl From<Channel> for Channels {
    fn from(channel: Channel) -> Channels {
        Channels(channel.bit())
    }
}

impl BitOr for Channels {
    type Output = Channels;

    fn bitor(self, other: Channels) -> Channels {
        self.union(other)
    }
}

impl BitOrAssign for Channels {
    fn bitor_assign(&mut self, other: Channels) {
        *self = self.union(other);
    }
}

impl FromIterator<Channel> for Channels {
    fn from_iter<I: IntoIterator<Item = Channel>>(iter: I) -> Channels {
        iter.into_iter()
            .fold(Channels::NONE, |set, c| set | Channels::from(c))
    }
}

impl fmt::Debug for Channels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

// -----------------------------------------------------------------------------------
// Client messages
// -----------------------------------------------------------------------------------

/// A client message of `/ws`.
///
/// Symbols are as the client spelled them (so that `invalid_symbol` can echo them); look
/// them up by [`symbol_key`]. Duplicates are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsCommand {
    /// `{"type":"subscribe","symbols":[...],"channels":[...]}`: add `channels` (default
    /// [`Channels::DEFAULT`]) of each symbol to the connection's subscriptions.
    Subscribe {
        /// The symbols, at least one (`symbols`, or its alias `assets`).
        symbols: Vec<String>,
        /// The channels to add, never empty.
        channels: Channels,
    },
    /// `{"type":"unsubscribe","symbols":[...],"channels":[...]}`: remove `channels`
    /// (default [`Channels::ALL`]) of each symbol.
    Unsubscribe {
        /// The symbols, at least one (`symbols`, or its alias `assets`).
        symbols: Vec<String>,
        /// The channels to remove, never empty.
        channels: Channels,
    },
    /// `{"type":"ping"}`: answer with [`encode_pong`].
    Ping,
}

const TYPE: usize = 0;
const SYMBOLS: usize = 1;
const CHANNELS: usize = 2;
const KEYS: &[Key] = &[
    ("type", TYPE),
    ("symbols", SYMBOLS),
    ("assets", SYMBOLS),
    ("channels", CHANNELS),
];
const SYMBOLS_EXPECTED: &str = "a non-empty array of strings";
const CHANNELS_EXPECTED: &str = "a non-empty array of channel names";

/// Parses a client message without a size limit of its own; prefer [`parse_limited`] on
/// network input (the document sets no limit: pick one, such as the frame size limit).
pub fn parse(bytes: &[u8]) -> Result<WsCommand, WsError> {
    parse_limited(bytes, usize::MAX)
}

/// Parses a client message, refusing one longer than `max_bytes` before parsing it.
///
/// Every failure is [`WsError::InvalidMessage`] (`invalid_message`); unknown fields are
/// ignored; no input panics.
///
/// ```
/// use tickwire_json::ws::{self, Channels, WsCommand};
///
/// assert_eq!(ws::parse_limited(br#"{"type":"ping"}"#, 64), Ok(WsCommand::Ping));
/// assert_eq!(
///     ws::parse_limited(br#"{"type":"unsubscribe","symbols":["sol"]}"#, 64),
///     Ok(WsCommand::Unsubscribe { symbols: vec!["sol".into()], channels: Channels::ALL })
/// );
/// assert_eq!(ws::parse_limited(&[b' '; 65], 64).unwrap_err().code().as_str(), "invalid_message");
/// ```
pub fn parse_limited(bytes: &[u8], max_bytes: usize) -> Result<WsCommand, WsError> {
    if bytes.len() > max_bytes {
        return Err(ParseError::TooLarge {
            size: bytes.len(),
            max: max_bytes,
        }
        .into());
    }
    let fields = read_object::<3>(bytes, KEYS)?;
    let ty = required_str(fields[TYPE], "type")?;
    let command = match ty.as_str() {
        "subscribe" => WsCommand::Subscribe {
            symbols: symbol_list(&fields)?,
            channels: channel_set(&fields, Channels::DEFAULT)?,
        },
        "unsubscribe" => WsCommand::Unsubscribe {
            symbols: symbol_list(&fields)?,
            channels: channel_set(&fields, Channels::ALL)?,
        },
        "ping" => WsCommand::Ping,
        _ => return Err(ParseError::UnknownType { type_name: ty }.into()),
    };
    Ok(command)
}

fn symbol_list(
    fields: &[Option<&serde_json::value::RawValue>; 3],
) -> Result<Vec<String>, ParseError> {
    let raw = fields[SYMBOLS].ok_or(ParseError::MissingField { field: "symbols" })?;
    let items = array(raw, "symbols", SYMBOLS_EXPECTED)?;
    if items.is_empty() {
        return Err(ParseError::InvalidField {
            field: "symbols",
            expected: SYMBOLS_EXPECTED,
        });
    }
    strings(&items, "symbols", SYMBOLS_EXPECTED)
}

fn channel_set(
    fields: &[Option<&serde_json::value::RawValue>; 3],
    default: Channels,
) -> Result<Channels, ParseError> {
    let raw = match fields[CHANNELS] {
        Some(raw) if !absent(Some(raw)) => raw,
        _ => return Ok(default),
    };
    let items = array(raw, "channels", CHANNELS_EXPECTED)?;
    let names = strings(&items, "channels", CHANNELS_EXPECTED)?;
    let mut set = Channels::NONE;
    for name in names {
        match Channel::from_name(&name) {
            Some(channel) => set |= channel.into(),
            None => return Err(ParseError::UnknownChannel { channel: name }),
        }
    }
    if set.is_empty() {
        return Err(ParseError::InvalidField {
            field: "channels",
            expected: CHANNELS_EXPECTED,
        });
    }
    Ok(set)
}

// -----------------------------------------------------------------------------------
// Errors
// -----------------------------------------------------------------------------------

/// An `error` message of `/ws`: one of the document's five codes with its message.
///
/// [`parse`] returns only [`WsError::InvalidMessage`]; the server builds the others. Send
/// any of them with [`encode_error`]; the `Display` text is the `message` sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// `invalid_message`: malformed JSON or missing required fields. Nothing of the
    /// message applies; the connection stays open.
    #[error(transparent)]
    InvalidMessage(#[from] ParseError),

    /// `invalid_symbol`: the symbol does not exist (`Symbol 'xyz' not found`). Send one per
    /// unknown symbol; the rest of the request still applies.
    #[error("Symbol '{}' not found", Clipped(.symbol))]
    InvalidSymbol {
        /// The symbol as the client spelled it.
        symbol: String,
    },

    /// `rate_limited`: the client sent more messages per second than allowed; the message
    /// was dropped. Close the connection if the client keeps flooding.
    #[error("Rate limit exceeded: at most {max_per_second} messages per second")]
    RateLimited {
        /// The limit, messages per second.
        max_per_second: u32,
    },

    /// `subscription_limit`: the request would take the connection past its limit of
    /// subscriptions; it was refused whole, before its symbols were looked up.
    #[error("Maximum subscriptions exceeded: {requested} requested, limit is {max}")]
    SubscriptionLimit {
        /// The subscriptions the connection would hold had the request been applied.
        requested: usize,
        /// The limit per connection.
        max: usize,
    },

    /// `internal_error`: the server failed; the request may be retried.
    #[error("Internal server error")]
    Internal,
}

impl WsError {
    /// The error's code.
    pub fn code(&self) -> WsErrorCode {
        match self {
            WsError::InvalidMessage(_) => WsErrorCode::InvalidMessage,
            WsError::InvalidSymbol { .. } => WsErrorCode::InvalidSymbol,
            WsError::RateLimited { .. } => WsErrorCode::RateLimited,
            WsError::SubscriptionLimit { .. } => WsErrorCode::SubscriptionLimit,
            WsError::Internal => WsErrorCode::InternalError,
        }
    }

    /// The `message` sent to the client: the `Display` text.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// The five error codes of the document's "Error Codes" table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WsErrorCode {
    /// `invalid_message`: malformed JSON or missing required fields.
    InvalidMessage,
    /// `invalid_symbol`: requested symbol does not exist.
    InvalidSymbol,
    /// `rate_limited`: too many messages sent.
    RateLimited,
    /// `subscription_limit`: maximum subscriptions exceeded.
    SubscriptionLimit,
    /// `internal_error`: server-side error occurred.
    InternalError,
}

impl WsErrorCode {
    /// Every code, in the document's order.
    pub const ALL: [WsErrorCode; 5] = [
        WsErrorCode::InvalidMessage,
        WsErrorCode::InvalidSymbol,
        WsErrorCode::RateLimited,
        WsErrorCode::SubscriptionLimit,
        WsErrorCode::InternalError,
    ];

    /// The code on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            WsErrorCode::InvalidMessage => "invalid_message",
            WsErrorCode::InvalidSymbol => "invalid_symbol",
            WsErrorCode::RateLimited => "rate_limited",
            WsErrorCode::SubscriptionLimit => "subscription_limit",
            WsErrorCode::InternalError => "internal_error",
        }
    }
}

impl fmt::Display for WsErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// -----------------------------------------------------------------------------------
// Symbols
// -----------------------------------------------------------------------------------

/// The `/ws` spelling of an instrument: its base asset in lower case for a `BASE/QUOTE`
/// pair (`btc` for `BTC/USD`), else its symbol in lower case (`reliance`). Borrows when
/// the spelling is already lower-case.
///
/// Pairs of one base in several quotes share a spelling: a server indexes, per base, the
/// pair in its `/ws` quote currency ([`DEFAULT_QUOTE`] by default; see [`instrument_for`]).
pub fn symbol_of(instrument: &Instrument) -> Cow<'_, str> {
    lower(instrument.base())
}

/// The lookup key of a symbol a client sent: symbols are case-insensitive on `/ws`, so
/// the key is the symbol with ASCII letters in lower case (`BTC` → `btc`). It matches
/// [`symbol_of`] of the instrument it names.
pub fn symbol_key(symbol: &str) -> Cow<'_, str> {
    lower(symbol)
}

/// The crypto pair a `/ws` symbol names when priced in `quote`: `("btc", "USD")` →
/// `BTC/USD` on the `CRYPTO` exchange. Instruments of other exchanges are found by
/// [`symbol_of`] in the server's universe instead.
pub fn instrument_for(symbol: &str, quote: &str) -> Instrument {
    let mut pair = String::with_capacity(symbol.len() + 1 + quote.len());
    pair.push_str(symbol);
    pair.make_ascii_uppercase();
    pair.push('/');
    pair.push_str(&quote.to_ascii_uppercase());
    Instrument::crypto(pair)
}

fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

// -----------------------------------------------------------------------------------
// Server messages
// -----------------------------------------------------------------------------------
//
// Keys appear in the order of the document's examples; the JSON is compact. Numbers follow
// one rule (non-finite → null, integral → integer, else shortest round-trip), so the
// document's `"volume_24h": 28500000000` prints as an integer and `"price": 67234.56` as
// written.

/// Encodes a `price_update` once for every subscriber of the instrument's `price` channel.
///
/// `change_24h` is [`PriceTick::change_24h_pct`] (percent); `volume_24h` is `null` when
/// the source does not know it.
///
/// ```
/// # use std::sync::Arc;
/// # use tickwire_model::market::{Instrument, PriceTick};
/// # let tick = PriceTick {
/// #     instrument: Instrument::crypto("BTC/USD"), price: 67234.56, last_quantity: 0.1,
/// #     bid: 67234.5, bid_quantity: 1.0, ask: 67234.6, ask_quantity: 1.0, open: 66000.0,
/// #     high: 68000.0, low: 65000.0, prev_close: 65700.0, change_24h_pct: 2.34,
/// #     volume_24h: Some(28_500_000_000.0), session_volume: 0.0,
/// #     source: Arc::from("coinbase"), timestamp_ms: 1_700_000_000_000,
/// # };
/// let frame = tickwire_json::ws::encode_tick(&tick);
/// assert_eq!(
///     &frame[..],
///     br#"{"type":"price_update","symbol":"btc","price":67234.56,"change_24h":2.34,"volume_24h":28500000000,"timestamp":1700000000000}"#
/// );
/// ```
pub fn encode_tick(tick: &PriceTick) -> Bytes {
    let mut out = BytesMut::with_capacity(100 + tick.instrument.symbol.len() + 4 * MAX_NUMBER_LEN);
    write_tick(tick, &mut out);
    out.freeze()
}

/// Appends the `price_update` of [`encode_tick`] to `out`.
pub fn write_tick(tick: &PriceTick, out: &mut BytesMut) {
    out.extend_from_slice(br#"{"type":"price_update","symbol":"#);
    put_lower_str(out, tick.instrument.base());
    out.extend_from_slice(br#","price":"#);
    put_f64(out, tick.price);
    out.extend_from_slice(br#","change_24h":"#);
    put_f64(out, tick.change_24h_pct);
    out.extend_from_slice(br#","volume_24h":"#);
    put_opt_f64(out, tick.volume_24h);
    out.extend_from_slice(br#","timestamp":"#);
    put_i64(out, tick.timestamp_ms);
    out.put_u8(b'}');
}

/// Encodes the `price_update` of a [`Trade`] (an LTP-only update): the price and time
/// with `change_24h` and `volume_24h` `null`, as the trade does not know them (the rule
/// [`encode_tick`] applies to an unknown volume).
///
/// ```
/// # use tickwire_model::market::{Instrument, Trade};
/// let trade = Trade {
///     instrument: Instrument::new("RELIANCE", "NSE"), price: 2851.5, quantity: None,
///     source: "zmq".into(), timestamp_ms: 1_700_000_000_000,
/// };
/// assert_eq!(
///     &tickwire_json::ws::encode_trade(&trade)[..],
///     br#"{"type":"price_update","symbol":"reliance","price":2851.5,"change_24h":null,"volume_24h":null,"timestamp":1700000000000}"#
/// );
/// ```
pub fn encode_trade(trade: &Trade) -> Bytes {
    let mut out = BytesMut::with_capacity(110 + trade.instrument.symbol.len() + 2 * MAX_NUMBER_LEN);
    out.extend_from_slice(br#"{"type":"price_update","symbol":"#);
    put_lower_str(&mut out, trade.instrument.base());
    out.extend_from_slice(br#","price":"#);
    put_f64(&mut out, trade.price);
    out.extend_from_slice(br#","change_24h":null,"volume_24h":null,"timestamp":"#);
    put_i64(&mut out, trade.timestamp_ms);
    out.put_u8(b'}');
    out.freeze()
}

/// Encodes an `orderbook_update` with at most `depth` levels a side (best first, as the
/// book holds them), once for every subscriber of the instrument's `orderbook` channel.
/// `depth` 0 sends empty sides.
pub fn encode_book(book: &OrderBook, depth: usize) -> Bytes {
    let levels = book.bids.len().min(depth) + book.asks.len().min(depth);
    let mut out = BytesMut::with_capacity(
        80 + book.instrument.symbol.len() + levels * (24 + 2 * MAX_NUMBER_LEN),
    );
    write_book(book, depth, &mut out);
    out.freeze()
}

/// Appends the `orderbook_update` of [`encode_book`] to `out`.
pub fn write_book(book: &OrderBook, depth: usize, out: &mut BytesMut) {
    out.extend_from_slice(br#"{"type":"orderbook_update","symbol":"#);
    put_lower_str(out, book.instrument.base());
    out.extend_from_slice(br#","bids":"#);
    put_levels(out, &book.bids, depth);
    out.extend_from_slice(br#","asks":"#);
    put_levels(out, &book.asks, depth);
    out.extend_from_slice(br#","timestamp":"#);
    put_i64(out, book.timestamp_ms);
    out.put_u8(b'}');
}

fn put_levels(out: &mut BytesMut, levels: &[Level], depth: usize) {
    out.put_u8(b'[');
    for (i, level) in levels.iter().take(depth).enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.extend_from_slice(br#"{"price":"#);
        put_f64(out, level.price);
        out.extend_from_slice(br#","quantity":"#);
        put_f64(out, level.quantity);
        out.put_u8(b'}');
    }
    out.put_u8(b']');
}

/// Encodes a `signal_update` once for every subscriber of the instrument's `signal`
/// channel: `indicator` as the model names it (`rsi`), `signal` `buy`, `sell` or
/// `neutral`.
pub fn encode_signal(signal: &Signal) -> Bytes {
    let mut out = BytesMut::with_capacity(
        110 + signal.instrument.symbol.len() + signal.indicator.len() + 2 * MAX_NUMBER_LEN,
    );
    write_signal(signal, &mut out);
    out.freeze()
}

/// Appends the `signal_update` of [`encode_signal`] to `out`.
pub fn write_signal(signal: &Signal, out: &mut BytesMut) {
    out.extend_from_slice(br#"{"type":"signal_update","symbol":"#);
    put_lower_str(out, signal.instrument.base());
    out.extend_from_slice(br#","indicator":"#);
    put_str(out, &signal.indicator);
    out.extend_from_slice(br#","signal":"#);
    put_str(out, signal.direction.as_str());
    out.extend_from_slice(br#","value":"#);
    put_f64(out, signal.value);
    out.extend_from_slice(br#","confidence":"#);
    put_f64(out, signal.confidence);
    out.extend_from_slice(br#","timestamp":"#);
    put_i64(out, signal.timestamp_ms);
    out.put_u8(b'}');
}

/// Encodes a `server_status`, sent periodically to every `/ws` connection.
pub fn encode_status(status: &ServerStatus) -> Bytes {
    let mut out = BytesMut::with_capacity(160);
    write_status(status, &mut out);
    out.freeze()
}

/// Appends the `server_status` of [`encode_status`] to `out`.
pub fn write_status(status: &ServerStatus, out: &mut BytesMut) {
    out.extend_from_slice(br#"{"type":"server_status","connected_peers":"#);
    put_u64(out, status.connected_peers);
    out.extend_from_slice(br#","active_sources":"#);
    put_u64(out, status.active_sources);
    out.extend_from_slice(br#","symbols_tracked":"#);
    put_u64(out, status.symbols_tracked);
    out.extend_from_slice(br#","uptime_seconds":"#);
    put_u64(out, status.uptime_seconds);
    out.put_u8(b'}');
}

/// Encodes the `pong` answering a `ping`, stamped with the server's time `now_ms`
/// (milliseconds since the UNIX epoch).
pub fn encode_pong(now_ms: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(48);
    write_pong(now_ms, &mut out);
    out.freeze()
}

/// Appends the `pong` of [`encode_pong`] to `out`.
pub fn write_pong(now_ms: i64, out: &mut BytesMut) {
    out.extend_from_slice(br#"{"type":"pong","timestamp":"#);
    put_i64(out, now_ms);
    out.put_u8(b'}');
}

/// Encodes an `error`: `{"type":"error","code":...,"message":...}`.
pub fn encode_error(error: &WsError) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    write_error(error, &mut out);
    out.freeze()
}

/// Appends the `error` of [`encode_error`] to `out`.
pub fn write_error(error: &WsError, out: &mut BytesMut) {
    out.extend_from_slice(br#"{"type":"error","code":""#);
    out.extend_from_slice(error.code().as_str().as_bytes());
    out.extend_from_slice(br#"","message":"#);
    put_str(out, &error.message());
    out.put_u8(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        for channel in Channel::ALL {
            assert_eq!(Channel::from_name(channel.as_str()), Some(channel));
            assert_eq!(channel.to_string(), channel.as_str());
        }
        assert_eq!(Channel::from_name("Price"), None);
        assert_eq!(Channel::from_name("order_book"), None);
    }

    #[test]
    fn channel_sets_behave_as_sets() {
        assert_eq!(Channels::DEFAULT, Channels::PRICE | Channels::SIGNAL);
        assert_eq!(
            Channels::ALL,
            Channel::ALL.into_iter().collect::<Channels>()
        );
        assert!(Channels::NONE.is_empty());
        assert!(Channels::default().is_empty());
        assert!(Channels::DEFAULT.contains(Channel::Price));
        assert!(!Channels::DEFAULT.contains(Channel::OrderBook));
        assert_eq!(
            Channels::ALL.difference(Channels::DEFAULT),
            Channels::ORDERBOOK
        );
        assert_eq!(
            Channels::ALL.intersection(Channels::SIGNAL),
            Channels::SIGNAL
        );
        assert_eq!(
            Channels::DEFAULT.iter().collect::<Vec<_>>(),
            [Channel::Price, Channel::Signal]
        );
        assert_eq!(format!("{:?}", Channels::DEFAULT), "{Price, Signal}");
        let mut set = Channels::PRICE;
        set |= Channels::ORDERBOOK;
        assert_eq!(
            set,
            Channels::from(Channel::Price) | Channel::OrderBook.into()
        );
    }

    #[test]
    fn symbols_spell_as_the_document_does() {
        assert_eq!(symbol_of(&Instrument::crypto("BTC/USD")), "btc");
        assert_eq!(symbol_of(&Instrument::new("RELIANCE", "NSE")), "reliance");
        assert!(matches!(
            symbol_of(&Instrument::crypto("btc/usd")),
            Cow::Borrowed("btc")
        ));
        assert_eq!(symbol_key("BtC"), "btc");
        assert!(matches!(symbol_key("eth"), Cow::Borrowed("eth")));
        assert_eq!(
            instrument_for("btc", DEFAULT_QUOTE),
            Instrument::crypto("BTC/USD")
        );
        assert_eq!(
            instrument_for("Sol", "usdt"),
            Instrument::crypto("SOL/USDT")
        );
        let pair = Instrument::crypto("ETH/USD");
        assert_eq!(symbol_key(&symbol_of(&pair)), symbol_of(&pair));
    }

    #[test]
    fn every_code_is_spelled_as_documented() {
        let names: Vec<_> = WsErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "invalid_message",
                "invalid_symbol",
                "rate_limited",
                "subscription_limit",
                "internal_error"
            ]
        );
        assert_eq!(WsErrorCode::RateLimited.to_string(), "rate_limited");
    }
}
