//! The client side of the protocol: encoding requests, decoding the server's replies.
//!
//! [`encode_request`] writes any [`Request`] as the JSON text frame a client sends, so that
//! [`decode_request`](crate::decode_request) reads it back as the same value.
//! [`decode_reply`] reads every reply of the server, in either [`ReplyStyle`](crate::ReplyStyle)
//! (the two styles' names never clash, so the style needs no saying), into a typed [`Reply`].
//!
//! ```
//! use tickwire_model::Instrument;
//! use tickwire_proxy::{decode_reply, encode_request, Mode, Reply, Request, Subscribe};
//!
//! // What the client sends: authenticate, then subscribe in LTP mode.
//! let auth = encode_request(&Request::authenticate("my-key"));
//! assert_eq!(auth, r#"{"action":"authenticate","api_key":"my-key"}"#);
//! let sub = encode_request(&Subscribe::new([Instrument::new("TCS", "NSE")], Mode::Ltp).into());
//! assert_eq!(sub, r#"{"action":"subscribe","symbols":[{"symbol":"TCS","exchange":"NSE"}],"mode":"LTP"}"#);
//!
//! // What it receives.
//! let frame = br#"{"type":"market_data","symbol":"TCS","exchange":"NSE","mode":1,"data":{"ltp":4100.5,"timestamp":1700000000000}}"#;
//! let Reply::MarketData(md) = decode_reply(frame)? else { unreachable!() };
//! assert_eq!((md.instrument.to_string(), md.mode(), md.ltp()), ("NSE:TCS".into(), Mode::Ltp, Some(4100.5)));
//!
//! let frame = br#"{"status":"error","code":"AUTHENTICATION_ERROR","message":"Invalid API key"}"#;
//! assert_eq!(
//!     decode_reply(frame)?,
//!     Reply::Error { code: "AUTHENTICATION_ERROR".into(), message: "Invalid API key".into() }
//! );
//! # Ok::<(), tickwire_proxy::ReplyError>(())
//! ```

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tickwire_model::{Instrument, Level};

use crate::{Depth, Mode, Ping, RawJson, Request, Subscribe, Unsubscribe};

// --- Requests ------------------------------------------------------------------------------

impl Request {
    /// `authenticate` with `api_key`.
    pub fn authenticate(api_key: impl Into<String>) -> Request {
        Request::Authenticate {
            api_key: api_key.into(),
        }
    }
}

impl Subscribe {
    /// A subscription of `instruments` in `mode`, 5 levels deep, without a `request_id`.
    pub fn new(instruments: impl IntoIterator<Item = Instrument>, mode: Mode) -> Subscribe {
        Subscribe {
            instruments: instruments.into_iter().collect(),
            mode,
            depth: Depth::Five,
            request_id: None,
        }
    }

    /// The same with `depth` levels a side (it matters to Depth mode only).
    pub fn with_depth(self, depth: Depth) -> Subscribe {
        Subscribe { depth, ..self }
    }

    /// The same with a `request_id` for the server to echo in its reply.
    pub fn with_request_id(self, request_id: RawJson) -> Subscribe {
        Subscribe {
            request_id: Some(request_id),
            ..self
        }
    }
}

impl Unsubscribe {
    /// An `unsubscribe` of each instrument in the mode given, or in every mode the
    /// connection holds it in when the mode is `None`.
    pub fn new(targets: impl IntoIterator<Item = (Instrument, Option<Mode>)>) -> Unsubscribe {
        Unsubscribe {
            all: false,
            targets: targets.into_iter().collect(),
            rejected: Vec::new(),
            request_id: None,
        }
    }

    /// An `unsubscribe_all`: every subscription of the connection.
    pub fn all() -> Unsubscribe {
        Unsubscribe {
            all: true,
            ..Unsubscribe::new([])
        }
    }

    /// The same with a `request_id` for the server to echo in its reply.
    pub fn with_request_id(self, request_id: RawJson) -> Unsubscribe {
        Unsubscribe {
            request_id: Some(request_id),
            ..self
        }
    }
}

impl From<Subscribe> for Request {
    fn from(subscribe: Subscribe) -> Request {
        Request::Subscribe(subscribe)
    }
}

impl From<Unsubscribe> for Request {
    fn from(unsubscribe: Unsubscribe) -> Request {
        Request::Unsubscribe(unsubscribe)
    }
}

impl From<Ping> for Request {
    fn from(ping: Ping) -> Request {
        Request::Ping(ping)
    }
}

/// Encodes a request as the JSON text of one client frame, compact, `action` first.
///
/// - `authenticate`: `{"action":"authenticate","api_key":K}`;
/// - `subscribe`: `{"action":"subscribe","symbols":[{"symbol":S,"exchange":E}],"mode":M}`
///   as the seed document writes it, the mode as its label (`LTP`, `Quote`, `Depth`), then
///   `"depth":N` unless it is the default 5, then `request_id`;
/// - `unsubscribe`: `{"action":"unsubscribe","symbols":[{"symbol":S,"exchange":E,"mode":M}]}`,
///   each entry's `mode` only when it has one; with [`Unsubscribe::all`],
///   `{"action":"unsubscribe_all"}` (its `targets` are then not sent). `rejected` is what a
///   server found invalid in a request and is never sent;
/// - `ping`: `{"action":"ping"}` with `timestamp` and `_pingId` when given;
/// - `{"action":"get_supported_brokers"}`, `{"action":"get_broker_info"}`.
///
/// [`decode_request`](crate::decode_request) reads the text back as the same request
/// whenever the server could have decoded that request at all: a key that is not empty,
/// instruments whose symbol and exchange are not empty, at least one of them (or `all`),
/// no `rejected` entries, and no `null` as a raw value (which reads as absent).
///
/// ```
/// use tickwire_model::Instrument;
/// use tickwire_proxy::{decode_request, encode_request, Depth, Mode, RawJson, Request, Subscribe, Unsubscribe};
///
/// let sub = Subscribe::new([Instrument::new("INFY", "NSE")], Mode::Depth)
///     .with_depth(Depth::Twenty)
///     .with_request_id(RawJson::new("7")?);
/// let text = encode_request(&sub.clone().into());
/// assert_eq!(
///     text,
///     r#"{"action":"subscribe","symbols":[{"symbol":"INFY","exchange":"NSE"}],"mode":"Depth","depth":20,"request_id":7}"#
/// );
/// assert_eq!(decode_request(text.as_bytes(), true), Ok(Request::Subscribe(sub)));
///
/// let all = encode_request(&Unsubscribe::all().into());
/// assert_eq!(all, r#"{"action":"unsubscribe_all"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn encode_request(request: &Request) -> String {
    let mut out = String::with_capacity(96);
    out.push_str("{\"action\":");
    match request {
        Request::Authenticate { api_key } => {
            out.push_str("\"authenticate\",\"api_key\":");
            push_str(&mut out, api_key);
        }
        Request::Subscribe(sub) => {
            out.push_str("\"subscribe\",\"symbols\":[");
            for (i, instrument) in sub.instruments.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_instrument(&mut out, instrument);
                out.push('}');
            }
            out.push_str("],\"mode\":");
            push_str(&mut out, sub.mode.label());
            if sub.depth != Depth::Five {
                let _ = write!(out, ",\"depth\":{}", sub.depth.levels());
            }
            push_raw(&mut out, "request_id", sub.request_id.as_ref());
        }
        Request::Unsubscribe(unsub) if unsub.all => {
            out.push_str("\"unsubscribe_all\"");
            push_raw(&mut out, "request_id", unsub.request_id.as_ref());
        }
        Request::Unsubscribe(unsub) => {
            out.push_str("\"unsubscribe\",\"symbols\":[");
            for (i, (instrument, mode)) in unsub.targets.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_instrument(&mut out, instrument);
                if let Some(mode) = mode {
                    out.push_str(",\"mode\":");
                    push_str(&mut out, mode.label());
                }
                out.push('}');
            }
            out.push(']');
            push_raw(&mut out, "request_id", unsub.request_id.as_ref());
        }
        Request::Ping(ping) => {
            out.push_str("\"ping\"");
            push_raw(&mut out, "timestamp", ping.client_timestamp.as_ref());
            push_raw(&mut out, "_pingId", ping.ping_id.as_ref());
        }
        Request::GetSupportedBrokers => out.push_str("\"get_supported_brokers\""),
        Request::GetBrokerInfo => out.push_str("\"get_broker_info\""),
    }
    out.push('}');
    out
}

/// Appends `s` as a JSON string, escaped as `serde_json` escapes it.
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            // Writing into a `String` cannot fail.
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `{"symbol":S,"exchange":E` (the object left open).
fn push_instrument(out: &mut String, instrument: &Instrument) {
    out.push_str("{\"symbol\":");
    push_str(out, &instrument.symbol);
    out.push_str(",\"exchange\":");
    push_str(out, &instrument.exchange);
}

fn push_raw(out: &mut String, key: &str, value: Option<&RawJson>) {
    if let Some(value) = value {
        let _ = write!(out, ",\"{key}\":{}", value.as_str());
    }
}

// --- Replies -------------------------------------------------------------------------------

/// A reply of the server, as [`decode_reply`] reads it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// A successful `authenticate` (`auth_response`, or `auth` in the openalgo style).
    Auth(Authenticated),
    /// The reply to `subscribe` (`subscribe_response`, or `subscribe`).
    Subscribed(Subscribed),
    /// The reply to `unsubscribe` or `unsubscribe_all` (`unsubscribe_response`, or `unsubscribe`).
    Unsubscribed(Unsubscribed),
    /// A `market_data` message.
    MarketData(MarketData),
    /// An error reply: `{"status":"error","code":C,"message":M}`, with `"type":"error"` or,
    /// for a refused key, `"type":"auth_response"` in the documented style.
    Error {
        /// The error code: `AUTHENTICATION_ERROR`, `NOT_AUTHENTICATED`, `INVALID_MODE`, ...
        /// (see [`ProxyError::code`](crate::ProxyError::code)).
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// The reply to `ping`.
    Pong(Pong),
    /// The reply to `get_broker_info`.
    BrokerInfo(BrokerDetails),
    /// The reply to `get_supported_brokers`: the brokers' names.
    SupportedBrokers(Vec<String>),
    /// A JSON object of a `type` this crate does not know (or with neither a `type` nor an
    /// error `status`), as it came: a later server may send more kinds of replies.
    Other(Value),
}

/// A successful authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// `Authentication successful`.
    pub message: String,
    /// The broker serving the user (openalgo style only).
    pub broker: Option<String>,
    /// The user the key belongs to (openalgo style only).
    pub user_id: Option<String>,
    /// The modes the server says it supports, from `supported_features` (openalgo style only).
    pub supported_features: Option<Vec<Mode>>,
}

/// The overall outcome of a `subscribe` or `unsubscribe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `success`: every instrument.
    Success,
    /// `partial`: some instruments failed.
    Partial,
    /// `error`: every instrument failed (unsubscribe replies only).
    Error,
}

/// The reply to a `subscribe` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribed {
    /// Whether every instrument was subscribed.
    pub status: Status,
    /// One entry per instrument, in request order.
    pub subscriptions: Vec<Subscription>,
    /// `Subscription processing complete`.
    pub message: String,
    /// The broker name.
    pub broker: Option<String>,
    /// The request's `request_id`, echoed.
    pub request_id: Option<RawJson>,
}

/// The outcome of one instrument of a `subscribe` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// The instrument.
    pub instrument: Instrument,
    /// The mode and depth subscribed, or why the instrument was refused.
    pub result: Result<(Mode, Depth), String>,
    /// The broker name.
    pub broker: Option<String>,
}

/// The reply to an `unsubscribe` or `unsubscribe_all` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribed {
    /// `success`, `partial` (some failed) or `error` (all failed).
    pub status: Status,
    /// `Unsubscription processing complete`.
    pub message: String,
    /// The instruments unsubscribed.
    pub successful: Vec<Instrument>,
    /// The instruments that failed, with the reason.
    pub failed: Vec<(Instrument, String)>,
    /// The broker name.
    pub broker: Option<String>,
    /// The request's `request_id`, echoed.
    pub request_id: Option<RawJson>,
}

/// A `market_data` message: the data of one instrument in one mode.
///
/// Numbers the server could not write (non-finite ones, sent as `null`) read as `NaN`.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketData {
    /// The instrument (`symbol` and `exchange`).
    pub instrument: Instrument,
    /// The `data` object, by the message's `mode`.
    pub data: MarketFields,
    /// The broker that produced the data (openalgo style only).
    pub broker: Option<String>,
}

impl MarketData {
    /// The message's mode.
    pub fn mode(&self) -> Mode {
        match self.data {
            MarketFields::Ltp(_) => Mode::Ltp,
            MarketFields::Quote(_) => Mode::Quote,
            MarketFields::Depth(_) => Mode::Depth,
        }
    }

    /// The last traded price (a Depth message has none until a price arrived).
    pub fn ltp(&self) -> Option<f64> {
        match &self.data {
            MarketFields::Ltp(d) => Some(d.ltp),
            MarketFields::Quote(d) => Some(d.ltp),
            MarketFields::Depth(d) => d.ltp,
        }
    }

    /// The data's time, milliseconds since the epoch.
    pub fn timestamp(&self) -> Option<i64> {
        match &self.data {
            MarketFields::Ltp(d) => d.timestamp,
            MarketFields::Quote(d) => d.timestamp,
            MarketFields::Depth(d) => d.timestamp,
        }
    }
}

/// The `data` of a `market_data` message: its shape follows the `mode` (1, 2 or 3).
#[derive(Debug, Clone, PartialEq)]
pub enum MarketFields {
    /// Mode 1.
    Ltp(LtpData),
    /// Mode 2.
    Quote(QuoteData),
    /// Mode 3.
    Depth(DepthData),
}

/// The data of an LTP message.
#[derive(Debug, Clone, PartialEq)]
pub struct LtpData {
    /// The last traded price.
    pub ltp: f64,
    /// The last trade's time, milliseconds since the epoch (openalgo style only).
    pub ltt: Option<i64>,
    /// The data's time, milliseconds since the epoch.
    pub timestamp: Option<i64>,
}

/// The data of a Quote message. The seed document's fields are there in both styles
/// (`None` only from a server that leaves one out); the last three in the openalgo style.
#[derive(Debug, Clone, PartialEq)]
pub struct QuoteData {
    /// The last traded price.
    pub ltp: f64,
    /// The session's open.
    pub open: Option<f64>,
    /// The session's high.
    pub high: Option<f64>,
    /// The session's low.
    pub low: Option<f64>,
    /// The previous session's close.
    pub close: Option<f64>,
    /// The session's volume.
    pub volume: Option<f64>,
    /// The best bid.
    pub bid: Option<f64>,
    /// The best ask.
    pub ask: Option<f64>,
    /// The quantity at the best bid.
    pub bid_qty: Option<f64>,
    /// The quantity at the best ask.
    pub ask_qty: Option<f64>,
    /// The last trade's quantity (openalgo style).
    pub last_trade_quantity: Option<f64>,
    /// The change from the previous close (openalgo style).
    pub change: Option<f64>,
    /// The change from the previous close, in percent of it (openalgo style).
    pub change_percent: Option<f64>,
    /// The data's time, milliseconds since the epoch.
    pub timestamp: Option<i64>,
}

/// The data of a Depth message: the book, at most the subscribed levels a side.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthData {
    /// The last traded price, once one arrived.
    pub ltp: Option<f64>,
    /// Bid levels (`depth.buy`), best first.
    pub buy: Vec<Level>,
    /// Ask levels (`depth.sell`), best first.
    pub sell: Vec<Level>,
    /// The book's time, milliseconds since the epoch.
    pub timestamp: Option<i64>,
}

/// The reply to `ping`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    /// The server's clock, milliseconds since the epoch.
    pub server_timestamp: Option<i64>,
    /// The ping's `timestamp`, echoed.
    pub client_timestamp: Option<RawJson>,
    /// The ping's `_pingId`, echoed.
    pub ping_id: Option<RawJson>,
}

/// The reply to `get_broker_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDetails {
    /// The broker name.
    pub broker: String,
    /// The adapter's state: `connected`, `connecting`, `retrying`, `failed`, ...
    pub adapter_status: String,
    /// The user of the connection's key.
    pub user_id: String,
}

/// A server frame [`decode_reply`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The frame is not JSON.
    #[error("the reply is not valid JSON: {reason}")]
    InvalidJson {
        /// What the JSON parser objected to.
        reason: String,
    },
    /// The frame is not a JSON object.
    #[error("the reply is not a JSON object")]
    NotAnObject,
    /// A reply of a known type lacks a field or has one of the wrong kind.
    #[error("malformed {reply} reply: {reason}")]
    Malformed {
        /// The reply's `type` (`error` for an error reply).
        reply: String,
        /// What is wrong.
        reason: String,
    },
}

/// The keys of a reply, each kept as raw JSON and read on demand.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Fields<'a> {
    #[serde(borrow, rename = "type")]
    ty: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
    #[serde(borrow)]
    code: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(borrow)]
    symbol: Option<&'a RawValue>,
    #[serde(borrow)]
    exchange: Option<&'a RawValue>,
    #[serde(borrow)]
    mode: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    broker: Option<&'a RawValue>,
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    supported_features: Option<&'a RawValue>,
    #[serde(borrow)]
    subscriptions: Option<&'a RawValue>,
    #[serde(borrow)]
    successful: Option<&'a RawValue>,
    #[serde(borrow)]
    failed: Option<&'a RawValue>,
    #[serde(borrow)]
    request_id: Option<&'a RawValue>,
    #[serde(borrow)]
    server_timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    client_timestamp: Option<&'a RawValue>,
    #[serde(borrow, rename = "_pingId")]
    ping_id: Option<&'a RawValue>,
    #[serde(borrow)]
    brokers: Option<&'a RawValue>,
    #[serde(borrow)]
    adapter_status: Option<&'a RawValue>,
}

/// Decodes one server text frame, in either reply style.
///
/// A frame with `"status":"error"` and a `code` is an [`Reply::Error`], whatever its `type`
/// (none in the openalgo style, `error` or `auth_response` in the documented one). Other
/// frames are read by their `type`; an object of a `type` not known here is
/// [`Reply::Other`]. Unknown keys are ignored. Anything else that is not what the server
/// sends (not JSON, not an object, a known reply lacking a field or with one of the wrong
/// kind, a `mode` other than 1, 2, 3) is a [`ReplyError`]; bad input never panics.
///
/// ```
/// use tickwire_proxy::{decode_reply, encode_auth_ok, AuthOk, Reply, ReplyError, ReplyStyle};
///
/// let bytes = encode_auth_ok(ReplyStyle::Openalgo, &AuthOk { broker: "zmq", user_id: "alice" });
/// let Reply::Auth(auth) = decode_reply(&bytes)? else { unreachable!() };
/// assert_eq!(auth.user_id.as_deref(), Some("alice"));
///
/// let bytes = encode_auth_ok(ReplyStyle::Documented, &AuthOk { broker: "zmq", user_id: "alice" });
/// let Reply::Auth(auth) = decode_reply(&bytes)? else { unreachable!() };
/// assert_eq!((auth.message.as_str(), auth.user_id), ("Authentication successful", None));
///
/// assert!(matches!(
///     decode_reply(br#"{"type":"market_data","symbol":"TCS"}"#),
///     Err(ReplyError::Malformed { .. })
/// ));
/// # Ok::<(), ReplyError>(())
/// ```
pub fn decode_reply(payload: &[u8]) -> Result<Reply, ReplyError> {
    // A derived struct would also accept a JSON array, field by field: refuse it first.
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return match serde_json::from_slice::<&RawValue>(payload) {
            Ok(_) => Err(ReplyError::NotAnObject),
            Err(e) => Err(ReplyError::InvalidJson {
                reason: e.to_string(),
            }),
        };
    }
    let fields: Fields<'_> =
        serde_json::from_slice(payload).map_err(|e| ReplyError::InvalidJson {
            reason: e.to_string(),
        })?;
    let ty = opt_str(fields.ty, "type").map_err(|reason| ReplyError::Malformed {
        reply: "unknown".into(),
        reason,
    })?;
    let malformed = |reply: &str| {
        let reply = reply.to_owned();
        move |reason| ReplyError::Malformed { reply, reason }
    };
    let status =
        opt_str(fields.status, "status").map_err(malformed(ty.as_deref().unwrap_or("error")))?;
    // An error reply: an error status with a code whatever the type (none in the openalgo
    // style, `auth_response` for a refused key in the documented one), or `"type":"error"`.
    let is_error = status.as_deref() == Some("error");
    if (is_error && (fields.code.is_some() || ty.is_none())) || ty.as_deref() == Some("error") {
        return error(&fields).map_err(malformed("error"));
    }
    let Some(ty) = ty else {
        return other(payload);
    };
    let reply = match ty.as_str() {
        "auth_response" | "auth" => authenticated(&fields, status.as_deref()).map(Reply::Auth),
        "subscribe_response" | "subscribe" => {
            subscribed(&fields, status.as_deref()).map(Reply::Subscribed)
        }
        "unsubscribe_response" | "unsubscribe" => {
            unsubscribed(&fields, status.as_deref()).map(Reply::Unsubscribed)
        }
        "market_data" => market_data(&fields).map(Reply::MarketData),
        "pong" => pong(&fields).map(Reply::Pong),
        "supported_brokers" => supported_brokers(&fields).map(Reply::SupportedBrokers),
        "broker_info" => broker_details(&fields).map(Reply::BrokerInfo),
        _ => return other(payload),
    };
    reply.map_err(malformed(&ty))
}

/// A reply this crate does not know, as a JSON value.
fn other(payload: &[u8]) -> Result<Reply, ReplyError> {
    serde_json::from_slice(payload)
        .map(Reply::Other)
        .map_err(|e| ReplyError::InvalidJson {
            reason: e.to_string(),
        })
}

/// Why a field is not what the reply needs.
type Why = String;

fn error(f: &Fields<'_>) -> Result<Reply, Why> {
    Ok(Reply::Error {
        code: req_str(f.code, "code")?,
        message: opt_str(f.message, "message")?.unwrap_or_default(),
    })
}

fn authenticated(f: &Fields<'_>, status: Option<&str>) -> Result<Authenticated, Why> {
    if status != Some("success") {
        return Err(format!("`status` is {status:?}, not \"success\""));
    }
    let supported_features = match parse(f.supported_features, "supported_features")? {
        None => None,
        Some(Value::Object(features)) => Some(
            Mode::ALL
                .into_iter()
                .filter(|m| {
                    features
                        .iter()
                        .any(|(k, v)| m.upper().eq_ignore_ascii_case(k) && v == &Value::Bool(true))
                })
                .collect(),
        ),
        Some(_) => return Err("`supported_features` is not an object".into()),
    };
    Ok(Authenticated {
        message: opt_str(f.message, "message")?.unwrap_or_default(),
        broker: opt_str(f.broker, "broker")?,
        user_id: opt_str(f.user_id, "user_id")?,
        supported_features,
    })
}

fn status_of(status: Option<&str>) -> Result<Status, Why> {
    match status {
        Some("success") => Ok(Status::Success),
        Some("partial") => Ok(Status::Partial),
        Some("error") => Ok(Status::Error),
        other => Err(format!(
            "`status` is {other:?}, not success, partial or error"
        )),
    }
}

fn subscribed(f: &Fields<'_>, status: Option<&str>) -> Result<Subscribed, Why> {
    let subscriptions = objects(f.subscriptions, "subscriptions")?
        .iter()
        .map(|entry| {
            let instrument = instrument_of(entry)?;
            let result = match get_str(entry, "status")? {
                Some("success") => {
                    let mode = match entry.get("mode") {
                        Some(Value::Number(n)) => n.as_i64().and_then(Mode::from_number),
                        Some(Value::String(s)) => Mode::from_label(s),
                        _ => None,
                    }
                    .ok_or_else(|| format!("subscription of {instrument}: no valid `mode`"))?;
                    let depth = match int(entry, "depth")? {
                        None => Depth::Five,
                        Some(n) => Depth::from_levels(n).ok_or_else(|| {
                            format!("subscription of {instrument}: `depth` {n} is not 5, 20 or 30")
                        })?,
                    };
                    Ok((mode, depth))
                }
                Some("error") => Err(get_str(entry, "message")?.unwrap_or_default().to_owned()),
                other => {
                    return Err(format!(
                        "subscription of {instrument}: `status` is {other:?}, not success or error"
                    ));
                }
            };
            Ok(Subscription {
                instrument,
                result,
                broker: get_str(entry, "broker")?.map(str::to_owned),
            })
        })
        .collect::<Result<_, Why>>()?;
    Ok(Subscribed {
        status: status_of(status)?,
        subscriptions,
        message: opt_str(f.message, "message")?.unwrap_or_default(),
        broker: opt_str(f.broker, "broker")?,
        request_id: raw(f.request_id),
    })
}

fn unsubscribed(f: &Fields<'_>, status: Option<&str>) -> Result<Unsubscribed, Why> {
    let successful = objects(f.successful, "successful")?
        .iter()
        .map(instrument_of)
        .collect::<Result<_, Why>>()?;
    let failed = objects(f.failed, "failed")?
        .iter()
        .map(|entry| {
            let message = get_str(entry, "message")?.unwrap_or_default().to_owned();
            Ok((instrument_of(entry)?, message))
        })
        .collect::<Result<_, Why>>()?;
    Ok(Unsubscribed {
        status: status_of(status)?,
        message: opt_str(f.message, "message")?.unwrap_or_default(),
        successful,
        failed,
        broker: opt_str(f.broker, "broker")?,
        request_id: raw(f.request_id),
    })
}

fn market_data(f: &Fields<'_>) -> Result<MarketData, Why> {
    let instrument = Instrument::new(
        req_str(f.symbol, "symbol")?,
        req_str(f.exchange, "exchange")?,
    );
    let mode = match parse(f.mode, "mode")? {
        Some(Value::Number(n)) => n.as_i64().and_then(Mode::from_number),
        _ => None,
    }
    .ok_or("`mode` is not 1, 2 or 3")?;
    let data = match parse(f.data, "data")? {
        Some(Value::Object(data)) => data,
        _ => return Err("`data` is not an object".into()),
    };
    let ltp = num(&data, "ltp")?;
    let timestamp = int(&data, "timestamp")?;
    let data = match mode {
        Mode::Ltp => MarketFields::Ltp(LtpData {
            ltp: ltp.ok_or("no `data.ltp`")?,
            ltt: int(&data, "ltt")?,
            timestamp,
        }),
        Mode::Quote => MarketFields::Quote(QuoteData {
            ltp: ltp.ok_or("no `data.ltp`")?,
            open: num(&data, "open")?,
            high: num(&data, "high")?,
            low: num(&data, "low")?,
            close: num(&data, "close")?,
            volume: num(&data, "volume")?,
            bid: num(&data, "bid")?,
            ask: num(&data, "ask")?,
            bid_qty: num(&data, "bid_qty")?,
            ask_qty: num(&data, "ask_qty")?,
            last_trade_quantity: num(&data, "last_trade_quantity")?,
            change: num(&data, "change")?,
            change_percent: num(&data, "change_percent")?,
            timestamp,
        }),
        Mode::Depth => {
            let Some(Value::Object(depth)) = data.get("depth") else {
                return Err("`data.depth` is not an object".into());
            };
            MarketFields::Depth(DepthData {
                ltp,
                buy: levels(depth, "buy")?,
                sell: levels(depth, "sell")?,
                timestamp,
            })
        }
    };
    Ok(MarketData {
        instrument,
        data,
        broker: opt_str(f.broker, "broker")?,
    })
}

/// The levels of one side of a book: `[{"price","quantity","orders"}]`.
fn levels(depth: &Map<String, Value>, side: &str) -> Result<Vec<Level>, Why> {
    let Some(Value::Array(levels)) = depth.get(side) else {
        return Err(format!("`data.depth.{side}` is not a list"));
    };
    levels
        .iter()
        .map(|level| {
            let Value::Object(level) = level else {
                return Err(format!("a level of `data.depth.{side}` is not an object"));
            };
            let orders = match int(level, "orders")? {
                None => 0,
                Some(n) => u32::try_from(n)
                    .map_err(|_| format!("`orders` {n} of a `{side}` level is out of range"))?,
            };
            Ok(Level {
                price: num(level, "price")?.ok_or("a level without `price`")?,
                quantity: num(level, "quantity")?.ok_or("a level without `quantity`")?,
                orders,
            })
        })
        .collect()
}

fn pong(f: &Fields<'_>) -> Result<Pong, Why> {
    let server_timestamp = match parse(f.server_timestamp, "server_timestamp")? {
        None => None,
        Some(v) => Some(v.as_i64().ok_or("`server_timestamp` is not an integer")?),
    };
    Ok(Pong {
        server_timestamp,
        client_timestamp: raw(f.client_timestamp),
        ping_id: raw(f.ping_id),
    })
}

fn supported_brokers(f: &Fields<'_>) -> Result<Vec<String>, Why> {
    match f.brokers {
        None => Err("no `brokers`".into()),
        Some(raw) => {
            serde_json::from_str(raw.get()).map_err(|_| "`brokers` is not a list of strings".into())
        }
    }
}

fn broker_details(f: &Fields<'_>) -> Result<BrokerDetails, Why> {
    Ok(BrokerDetails {
        broker: req_str(f.broker, "broker")?,
        adapter_status: req_str(f.adapter_status, "adapter_status")?,
        user_id: req_str(f.user_id, "user_id")?,
    })
}

// --- Field readers -------------------------------------------------------------------------

/// A top-level field as it was written, unless absent or `null`.
fn raw(raw: Option<&RawValue>) -> Option<RawJson> {
    raw.filter(|r| r.get() != "null").map(RawJson::of)
}

/// A top-level field as a JSON value (`null` reads as absent).
fn parse(raw: Option<&RawValue>, key: &str) -> Result<Option<Value>, Why> {
    match raw {
        None => Ok(None),
        Some(raw) => match serde_json::from_str(raw.get()) {
            Ok(Value::Null) => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(format!("`{key}`: {e}")),
        },
    }
}

/// A top-level string field, if present and not `null`.
fn opt_str(raw: Option<&RawValue>, key: &str) -> Result<Option<String>, Why> {
    match raw {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
            .map_err(|_| format!("`{key}` is not a string")),
    }
}

/// A top-level string field that must be present.
fn req_str(raw: Option<&RawValue>, key: &str) -> Result<String, Why> {
    opt_str(raw, key)?.ok_or_else(|| format!("no `{key}`"))
}

/// A top-level list of objects; absent reads as empty.
fn objects(raw: Option<&RawValue>, key: &str) -> Result<Vec<Map<String, Value>>, Why> {
    match parse(raw, key)? {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(map) => Ok(map),
                _ => Err(format!("an entry of `{key}` is not an object")),
            })
            .collect(),
        Some(_) => Err(format!("`{key}` is not a list")),
    }
}

/// The `symbol` and `exchange` of an entry.
fn instrument_of(entry: &Map<String, Value>) -> Result<Instrument, Why> {
    match (get_str(entry, "symbol")?, get_str(entry, "exchange")?) {
        (Some(symbol), Some(exchange)) => Ok(Instrument::new(symbol, exchange)),
        _ => Err("an entry without `symbol` and `exchange`".into()),
    }
}

/// A string of an object, if present and not `null`.
fn get_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Why> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{key}` is not a string")),
    }
}

/// A number of an object, if present; `null` (what the server writes for a non-finite
/// number) reads as `NaN`.
fn num(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, Why> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(f64::NAN)),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(format!("`{key}` is not a number")),
    }
}

/// An integer of an object, if present and not `null`.
fn int(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, Why> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` is not an integer")),
        Some(_) => Err(format!("`{key}` is not an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_request;

    fn nse(symbol: &str) -> Instrument {
        Instrument::new(symbol, "NSE")
    }

    fn round_trip(request: Request) {
        let text = encode_request(&request);
        serde_json::from_str::<Value>(&text).unwrap();
        assert_eq!(decode_request(text.as_bytes(), true), Ok(request), "{text}");
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        let controls: String = (0u8..0x20).map(char::from).collect();
        for s in [
            "",
            "RELIANCE",
            "a\"b\\c/",
            "ünï ✓ \u{7f}",
            controls.as_str(),
        ] {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn every_request_round_trips() {
        round_trip(Request::authenticate("k\"ey"));
        round_trip(Subscribe::new([nse("RELIANCE"), nse("TCS")], Mode::Quote).into());
        for mode in Mode::ALL {
            for depth in Depth::ALL {
                round_trip(
                    Subscribe::new([Instrument::new("NIFTY_50", "NSE_INDEX")], mode)
                        .with_depth(depth)
                        .with_request_id(RawJson::new(r#"{"n":[1, 2]}"#).unwrap())
                        .into(),
                );
            }
        }
        round_trip(Unsubscribe::new([(nse("A"), None), (nse("B"), Some(Mode::Depth))]).into());
        round_trip(
            Unsubscribe::new([(nse("A"), Some(Mode::Ltp))])
                .with_request_id(RawJson::new("\"r\"").unwrap())
                .into(),
        );
        round_trip(Unsubscribe::all().into());
        round_trip(
            Unsubscribe::all()
                .with_request_id(RawJson::new("3").unwrap())
                .into(),
        );
        round_trip(Ping::default().into());
        round_trip(
            Ping {
                client_timestamp: Some(RawJson::new("1700000000123").unwrap()),
                ping_id: Some(RawJson::new("\"p1\"").unwrap()),
            }
            .into(),
        );
        round_trip(Request::GetSupportedBrokers);
        round_trip(Request::GetBrokerInfo);
    }

    #[test]
    fn requests_read_as_the_seed_writes_them() {
        assert_eq!(
            encode_request(&Subscribe::new([nse("RELIANCE"), nse("TCS")], Mode::Quote).into()),
            r#"{"action":"subscribe","symbols":[{"symbol":"RELIANCE","exchange":"NSE"},{"symbol":"TCS","exchange":"NSE"}],"mode":"Quote"}"#
        );
        assert_eq!(
            encode_request(&Unsubscribe::new([(nse("RELIANCE"), None)]).into()),
            r#"{"action":"unsubscribe","symbols":[{"symbol":"RELIANCE","exchange":"NSE"}]}"#
        );
        assert_eq!(
            encode_request(&Request::Ping(Ping {
                client_timestamp: Some(RawJson::new("5").unwrap()),
                ping_id: None,
            })),
            r#"{"action":"ping","timestamp":5}"#
        );
        assert_eq!(
            encode_request(&Request::GetBrokerInfo),
            r#"{"action":"get_broker_info"}"#
        );
        // `all` wins over targets, as the server reads it.
        let mut all = Unsubscribe::all();
        all.targets.push((nse("A"), None));
        assert_eq!(
            encode_request(&all.into()),
            r#"{"action":"unsubscribe_all"}"#
        );
    }

    #[test]
    fn raw_json_is_checked() {
        assert_eq!(RawJson::new(" 7 ").unwrap().as_str(), "7");
        for bad in ["", "{", "1 2", "nope"] {
            assert!(RawJson::new(bad).is_err(), "{bad:?}");
        }
    }
}
