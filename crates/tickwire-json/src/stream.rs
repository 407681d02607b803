//! The `/stream` dialect: the authenticated price stream of the "WebSocket Protocol
//! Documentation" document (seed 002).
//!
//! Clients send `subscribe` (1–10 symbols), `unsubscribe` (some or all symbols) and `ping`
//! ([`parse`] → [`StreamCommand`]); the server answers `subscribed`, `unsubscribed` and
//! `pong`, pushes `price_update`, and reports `error`s with the document's four codes.
//! Symbols are canonical `BASE/QUOTE` pairs, exact and upper-case (`BTC/USD`); timestamps
//! are RFC 3339 strings with milliseconds in UTC (`2025-10-10T14:30:00.000Z`).
//!
//! Error messages are the document's, verbatim (`Invalid message format`, `Too many
//! symbols`, ...), so that clients comparing them keep working; the details (which field,
//! which symbol) are in the [`StreamError`]'s `Display` text, for the server's logs.
//!
//! ```
//! use tickwire_json::stream::{self, StreamCommand, StreamError};
//!
//! let cmd = stream::parse(br#"{"type":"subscribe","symbols":["BTC/USD","ETH/USD"]}"#)?;
//! let StreamCommand::Subscribe { symbols } = cmd else { unreachable!() };
//! let reply = stream::encode_subscribed(&symbols, 1_760_106_600_000);
//! assert_eq!(
//!     &reply[..],
//!     br#"{"type":"subscribed","symbols":["BTC/USD","ETH/USD"],"timestamp":"2025-10-10T14:30:00.000Z"}"#
//! );
//!
//! // Eleven symbols are refused before any is looked up.
//! let many = format!(r#"{{"type":"subscribe","symbols":[{}]}}"#, vec!["\"X/Y\""; 11].join(","));
//! assert_eq!(
//!     stream::parse(many.as_bytes()),
//!     Err(StreamError::SubscriptionLimit { requested: 11, max: 10 })
//! );
//! # Ok::<(), StreamError>(())
//! ```

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tickwire_model::market::{Instrument, PriceTick, Trade};

use crate::ParseError;
use crate::error::Clipped;
use crate::read::{Key, absent, array, read_object, required_str, strings};
use crate::write::{
    MAX_NUMBER_LEN, QUOTED_TIMESTAMP_LEN, put_f64, put_opt_f64, put_str, put_str_array,
    put_timestamp,
};

/// The endpoint's path.
pub const PATH: &str = "/stream";

/// The document's "Max subscribed symbols per connection".
pub const MAX_SYMBOLS: usize = 10;

/// The document's "Max message size: 1 MB", read as 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The document's "Max concurrent connections per API key".
pub const MAX_CONNECTIONS_PER_KEY: usize = 10;

/// The document's idle timeout: "5 minutes (no messages sent or received)".
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The document's heartbeat: "Server sends `pong` every 30 seconds automatically".
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// The longest symbol [`symbol_key`] accepts, in bytes.
pub const MAX_SYMBOL_LEN: usize = 32;

// -----------------------------------------------------------------------------------
// Client messages
// -----------------------------------------------------------------------------------

/// A client message of `/stream`.
///
/// Symbols are as the client sent them, duplicates kept; look them up by [`symbol_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamCommand {
    /// `{"type":"subscribe","symbols":[...]}`: 1 to [`Limits::max_symbols`] symbols.
    /// Answer with [`encode_subscribed`].
    Subscribe {
        /// The symbols, at least one.
        symbols: Vec<String>,
    },
    /// `{"type":"unsubscribe","symbols":[...]}`: answer with [`encode_unsubscribed`].
    Unsubscribe {
        /// The symbols to drop; `None` (the field omitted or `null`) drops them all.
        symbols: Option<Vec<String>>,
    },
    /// `{"type":"ping"}`: answer with [`encode_pong`].
    Ping,
}

/// The limits [`parse_with`] applies, defaulting to the document's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest message parsed, in bytes ([`MAX_MESSAGE_BYTES`]).
    pub max_message_bytes: usize,
    /// The most symbols one `subscribe` may name ([`MAX_SYMBOLS`]).
    pub max_symbols: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_symbols: MAX_SYMBOLS,
        }
    }
}

const TYPE: usize = 0;
const SYMBOLS: usize = 1;
const KEYS: &[Key] = &[("type", TYPE), ("symbols", SYMBOLS)];
const SUBSCRIBE_EXPECTED: &str = "a non-empty array of strings";
const UNSUBSCRIBE_EXPECTED: &str = "an array of strings";

/// Parses a client message under the document's limits (1 MiB, 10 symbols).
pub fn parse(bytes: &[u8]) -> Result<StreamCommand, StreamError> {
    parse_with(bytes, Limits::default())
}

/// Parses a client message no longer than `max_bytes`, at most [`MAX_SYMBOLS`] per
/// `subscribe`.
pub fn parse_limited(bytes: &[u8], max_bytes: usize) -> Result<StreamCommand, StreamError> {
    parse_with(
        bytes,
        Limits {
            max_message_bytes: max_bytes,
            ..Limits::default()
        },
    )
}

/// Parses a client message under `limits`.
///
/// A message over the size limit is refused before it is parsed. A `subscribe` naming
/// more than `max_symbols` entries is [`StreamError::SubscriptionLimit`], decided on the
/// array's length alone, before any entry is checked or looked up. Everything else that is
/// wrong is [`StreamError::Validation`]: malformed JSON, a missing or non-string `type`,
/// an unknown `type`, a `symbols` that is missing, empty (on `subscribe`), not an array,
/// or holds a non-string. Unknown fields are ignored; no input panics.
///
/// ```
/// use tickwire_json::stream::{self, Limits, StreamCommand};
///
/// let limits = Limits { max_message_bytes: 256, max_symbols: 2 };
/// assert_eq!(
///     stream::parse_with(br#"{"type":"unsubscribe"}"#, limits),
///     Ok(StreamCommand::Unsubscribe { symbols: None })
/// );
/// let err = stream::parse_with(br#"{"type":"subscribe","symbols":["A/B",1,2]}"#, limits);
/// assert_eq!(err.unwrap_err().code().as_str(), "SUBSCRIPTION_LIMIT");
/// ```
pub fn parse_with(bytes: &[u8], limits: Limits) -> Result<StreamCommand, StreamError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(ParseError::TooLarge {
            size: bytes.len(),
            max: limits.max_message_bytes,
        }
        .into());
    }
    let fields = read_object::<2>(bytes, KEYS)?;
    let ty = required_str(fields[TYPE], "type")?;
    match ty.as_str() {
        "subscribe" => {
            let raw = fields[SYMBOLS].ok_or(ParseError::MissingField { field: "symbols" })?;
            let items = array(raw, "symbols", SUBSCRIBE_EXPECTED)?;
            // The limit is counted first: an oversized request is refused whole, whatever
            // its entries hold.
            if items.len() > limits.max_symbols {
                return Err(StreamError::SubscriptionLimit {
                    requested: items.len(),
                    max: limits.max_symbols,
                });
            }
            if items.is_empty() {
                return Err(ParseError::InvalidField {
                    field: "symbols",
                    expected: SUBSCRIBE_EXPECTED,
                }
                .into());
            }
            let symbols = strings(&items, "symbols", SUBSCRIBE_EXPECTED)?;
            Ok(StreamCommand::Subscribe { symbols })
        }
        "unsubscribe" => {
            // Omitted (or `null`, as some clients serialise an absent list): all symbols.
            let symbols = match fields[SYMBOLS] {
                Some(raw) if !absent(Some(raw)) => {
                    let items = array(raw, "symbols", UNSUBSCRIBE_EXPECTED)?;
                    Some(strings(&items, "symbols", UNSUBSCRIBE_EXPECTED)?)
                }
                _ => None,
            };
            Ok(StreamCommand::Unsubscribe { symbols })
        }
        "ping" => Ok(StreamCommand::Ping),
        _ => Err(ParseError::UnknownType { type_name: ty }.into()),
    }
}

// -----------------------------------------------------------------------------------
// Errors
// -----------------------------------------------------------------------------------

/// An `error` of `/stream`: one of the document's four codes.
///
/// [`parse`] returns [`StreamError::Validation`] and [`StreamError::SubscriptionLimit`];
/// the server builds the others. Send any of them with [`encode_error`], whose `message`
/// is the document's ([`StreamError::message`]); the `Display` text adds the details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// `VALIDATION_ERROR`, "Invalid message format": malformed JSON or missing fields.
    /// Nothing of the message applies; the connection stays open.
    #[error("Invalid message format: {0}")]
    Validation(#[from] ParseError),

    /// `UNAUTHORIZED`, "Authentication failed": missing or invalid API key. Refuse the
    /// upgrade with 401 and this error's JSON as the body.
    #[error("Authentication failed")]
    Unauthorized,

    /// `SUBSCRIPTION_LIMIT`, "Too many symbols": the request would take the connection
    /// past its symbol limit; it was refused whole, before its symbols were looked up.
    #[error("Too many symbols: {requested} requested, limit is {max}")]
    SubscriptionLimit {
        /// The symbols the request names (or the connection would hold, counted by the
        /// server).
        requested: usize,
        /// The limit per connection.
        max: usize,
    },

    /// `UNKNOWN_SYMBOL`, "Symbol not found": the symbol does not exist in the system.
    #[error("Symbol not found: {}", Clipped(.symbol))]
    UnknownSymbol {
        /// The symbol as the client sent it.
        symbol: String,
    },
}

impl StreamError {
    /// The error's code.
    pub fn code(&self) -> StreamErrorCode {
        match self {
            StreamError::Validation(_) => StreamErrorCode::ValidationError,
            StreamError::Unauthorized => StreamErrorCode::Unauthorized,
            StreamError::SubscriptionLimit { .. } => StreamErrorCode::SubscriptionLimit,
            StreamError::UnknownSymbol { .. } => StreamErrorCode::UnknownSymbol,
        }
    }

    /// The `message` sent to the client: the document's message for the code.
    pub fn message(&self) -> &'static str {
        self.code().message()
    }
}

/// The four error codes of the document's "Common Errors" table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamErrorCode {
    /// `VALIDATION_ERROR`: malformed JSON or missing fields.
    ValidationError,
    /// `UNAUTHORIZED`: missing or invalid API key.
    Unauthorized,
    /// `SUBSCRIPTION_LIMIT`: exceeded max symbols (10).
    SubscriptionLimit,
    /// `UNKNOWN_SYMBOL`: symbol doesn't exist in system.
    UnknownSymbol,
}

impl StreamErrorCode {
    /// Every code, in the document's order.
    pub const ALL: [StreamErrorCode; 4] = [
        StreamErrorCode::ValidationError,
        StreamErrorCode::Unauthorized,
        StreamErrorCode::SubscriptionLimit,
        StreamErrorCode::UnknownSymbol,
    ];

    /// The code on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamErrorCode::ValidationError => "VALIDATION_ERROR",
            StreamErrorCode::Unauthorized => "UNAUTHORIZED",
            StreamErrorCode::SubscriptionLimit => "SUBSCRIPTION_LIMIT",
            StreamErrorCode::UnknownSymbol => "UNKNOWN_SYMBOL",
        }
    }

    /// The document's message for the code.
    pub const fn message(self) -> &'static str {
        match self {
            StreamErrorCode::ValidationError => "Invalid message format",
            StreamErrorCode::Unauthorized => "Authentication failed",
            StreamErrorCode::SubscriptionLimit => "Too many symbols",
            StreamErrorCode::UnknownSymbol => "Symbol not found",
        }
    }
}

impl fmt::Display for StreamErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// -----------------------------------------------------------------------------------
// Symbols
// -----------------------------------------------------------------------------------

/// The `/stream` spelling of an instrument: its canonical symbol (`BTC/USD`).
pub fn symbol_of(instrument: &Instrument) -> &str {
    &instrument.symbol
}

/// The lookup key of a symbol a client sent, or `None` when it cannot name any
/// instrument, so that the server answers `UNKNOWN_SYMBOL` without a lookup.
///
/// Symbols are exact on `/stream`: the key is the symbol itself, compared with
/// [`symbol_of`] byte for byte (`btc/usd` is not `BTC/USD`). A plausible symbol is 1 to
/// [`MAX_SYMBOL_LEN`] bytes without ASCII lower-case letters, whitespace or control
/// characters.
pub fn symbol_key(symbol: &str) -> Option<&str> {
    let plausible = !symbol.is_empty()
        && symbol.len() <= MAX_SYMBOL_LEN
        && !symbol
            .chars()
            .any(|c| c.is_ascii_lowercase() || c.is_whitespace() || c.is_control());
    plausible.then_some(symbol)
}

// -----------------------------------------------------------------------------------
// Server messages
// -----------------------------------------------------------------------------------
//
// Keys appear in the order of the document's examples; the JSON is compact; numbers follow
// one rule (non-finite → null, integral → integer, else shortest round-trip).

/// Encodes a `price_update` once for every subscriber of the instrument.
///
/// `volume` is [`PriceTick::volume_24h`], `null` when the source does not know it (the
/// document's "may be null"); `timestamp` is the tick's exchange time; `source` the
/// tick's source.
///
/// ```
/// # use std::sync::Arc;
/// # use tickwire_model::market::{Instrument, PriceTick, Trade};
/// # let tick = PriceTick {
/// #     instrument: Instrument::crypto("BTC/USD"), price: 45123.5, last_quantity: 0.1,
/// #     bid: 45123.4, bid_quantity: 1.0, ask: 45123.6, ask_quantity: 1.0, open: 44000.0,
/// #     high: 46000.0, low: 43000.0, prev_close: 44500.0, change_24h_pct: 1.4,
/// #     volume_24h: Some(1_234_567.89), session_volume: 0.0,
/// #     source: Arc::from("coinbase"), timestamp_ms: 1_760_106_600_000,
/// # };
/// let frame = tickwire_json::stream::encode_tick(&tick);
/// assert_eq!(
///     &frame[..],
///     br#"{"type":"price_update","symbol":"BTC/USD","price":45123.5,"volume":1234567.89,"timestamp":"2025-10-10T14:30:00.000Z","source":"coinbase"}"#
/// );
/// ```
pub fn encode_tick(tick: &PriceTick) -> Bytes {
    let mut out = BytesMut::with_capacity(
        90 + tick.instrument.symbol.len()
            + tick.source.len()
            + 2 * MAX_NUMBER_LEN
            + QUOTED_TIMESTAMP_LEN,
    );
    write_tick(tick, &mut out);
    out.freeze()
}

/// Appends the `price_update` of [`encode_tick`] to `out`.
pub fn write_tick(tick: &PriceTick, out: &mut BytesMut) {
    out.extend_from_slice(br#"{"type":"price_update","symbol":"#);
    put_str(out, &tick.instrument.symbol);
    out.extend_from_slice(br#","price":"#);
    put_f64(out, tick.price);
    out.extend_from_slice(br#","volume":"#);
    put_opt_f64(out, tick.volume_24h);
    out.extend_from_slice(br#","timestamp":"#);
    put_timestamp(out, tick.timestamp_ms);
    out.extend_from_slice(br#","source":"#);
    put_str(out, &tick.source);
    out.put_u8(b'}');
}

/// Encodes the `price_update` of a [`Trade`] (an LTP-only update): the same message as
/// [`encode_tick`], with `volume` `null` (the trade does not know it).
///
/// ```
/// # use tickwire_model::market::{Instrument, Trade};
/// let trade = Trade {
///     instrument: Instrument::new("RELIANCE", "NSE"), price: 2851.5, quantity: Some(10.0),
///     source: "zmq".into(), timestamp_ms: 1_760_106_600_000,
/// };
/// assert_eq!(
///     &tickwire_json::stream::encode_trade(&trade)[..],
///     br#"{"type":"price_update","symbol":"RELIANCE","price":2851.5,"volume":null,"timestamp":"2025-10-10T14:30:00.000Z","source":"zmq"}"#
/// );
/// ```
pub fn encode_trade(trade: &Trade) -> Bytes {
    let mut out = BytesMut::with_capacity(
        90 + trade.instrument.symbol.len()
            + trade.source.len()
            + MAX_NUMBER_LEN
            + QUOTED_TIMESTAMP_LEN,
    );
    out.extend_from_slice(br#"{"type":"price_update","symbol":"#);
    put_str(&mut out, &trade.instrument.symbol);
    out.extend_from_slice(br#","price":"#);
    put_f64(&mut out, trade.price);
    out.extend_from_slice(br#","volume":null,"timestamp":"#);
    put_timestamp(&mut out, trade.timestamp_ms);
    out.extend_from_slice(br#","source":"#);
    put_str(&mut out, &trade.source);
    out.put_u8(b'}');
    out.freeze()
}

/// Encodes the `subscribed` confirmation: the symbols now subscribed, stamped with the
/// server's time `now_ms` (milliseconds since the UNIX epoch).
pub fn encode_subscribed<I, S>(symbols: I, now_ms: i64) -> Bytes
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    encode_confirmation(b"subscribed", symbols, now_ms)
}

/// Encodes the `unsubscribed` confirmation: the symbols dropped (all of them, after an
/// `unsubscribe` without symbols), stamped with `now_ms`.
pub fn encode_unsubscribed<I, S>(symbols: I, now_ms: i64) -> Bytes
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    encode_confirmation(b"unsubscribed", symbols, now_ms)
}

fn encode_confirmation<I, S>(ty: &[u8], symbols: I, now_ms: i64) -> Bytes
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = BytesMut::with_capacity(128);
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(ty);
    out.extend_from_slice(br#"","symbols":"#);
    put_str_array(&mut out, symbols);
    out.extend_from_slice(br#","timestamp":"#);
    put_timestamp(&mut out, now_ms);
    out.put_u8(b'}');
    out.freeze()
}

/// Encodes a `pong` (the answer to `ping`, and the 30-second heartbeat) stamped with
/// `now_ms`.
pub fn encode_pong(now_ms: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + 14 + QUOTED_TIMESTAMP_LEN);
    out.extend_from_slice(br#"{"type":"pong","timestamp":"#);
    put_timestamp(&mut out, now_ms);
    out.put_u8(b'}');
    out.freeze()
}

/// Encodes an `error`, keys in the document's order: `type`, `message`, `code`,
/// `timestamp`. Also the body of a refused upgrade (401 with
/// [`StreamError::Unauthorized`]).
pub fn encode_error(error: &StreamError, now_ms: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    out.extend_from_slice(br#"{"type":"error","message":"#);
    put_str(&mut out, error.message());
    out.extend_from_slice(br#","code":""#);
    out.extend_from_slice(error.code().as_str().as_bytes());
    out.extend_from_slice(br#"","timestamp":"#);
    put_timestamp(&mut out, now_ms);
    out.put_u8(b'}');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages_are_the_documents() {
        let table: Vec<_> = StreamErrorCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.message()))
            .collect();
        assert_eq!(
            table,
            [
                ("VALIDATION_ERROR", "Invalid message format"),
                ("UNAUTHORIZED", "Authentication failed"),
                ("SUBSCRIPTION_LIMIT", "Too many symbols"),
                ("UNKNOWN_SYMBOL", "Symbol not found"),
            ]
        );
        assert_eq!(StreamErrorCode::Unauthorized.to_string(), "UNAUTHORIZED");
    }

    #[test]
    fn display_adds_details_the_wire_message_omits() {
        let err = StreamError::UnknownSymbol {
            symbol: "DOGE/EUR".into(),
        };
        assert_eq!(err.to_string(), "Symbol not found: DOGE/EUR");
        assert_eq!(err.message(), "Symbol not found");
        let err = StreamError::from(ParseError::MissingField { field: "symbols" });
        assert_eq!(
            err.to_string(),
            "Invalid message format: Missing required field 'symbols'"
        );
        assert_eq!(err.message(), "Invalid message format");
    }

    #[test]
    fn symbols_are_exact() {
        assert_eq!(symbol_of(&Instrument::crypto("BTC/USD")), "BTC/USD");
        assert_eq!(symbol_key("BTC/USD"), Some("BTC/USD"));
        assert_eq!(symbol_key("RELIANCE"), Some("RELIANCE"));
        assert_eq!(symbol_key("BAJAJ-AUTO"), Some("BAJAJ-AUTO"));
        assert_eq!(symbol_key("btc/usd"), None);
        assert_eq!(symbol_key("BTC/usd"), None);
        assert_eq!(symbol_key(""), None);
        assert_eq!(symbol_key("BTC USD"), None);
        assert_eq!(symbol_key("BTC/\u{0}"), None);
        assert_eq!(
            symbol_key(&"A".repeat(MAX_SYMBOL_LEN)).map(str::len),
            Some(32)
        );
        assert_eq!(symbol_key(&"A".repeat(MAX_SYMBOL_LEN + 1)), None);
    }

    #[test]
    fn limits_default_to_the_documents() {
        let limits = Limits::default();
        assert_eq!(limits.max_message_bytes, 1_048_576);
        assert_eq!(limits.max_symbols, 10);
    }
}
