//! The bar subscription operations: their payloads, decoders, encoders and schemas.
//!
//! Payloads follow the seed document ("WebSocket Real-Time Data Streaming", API
//! Reference) and its pydantic models: `SubscriptionRequest {symbol, params}`,
//! `SubscriptionResponse {status, symbol, message, topic}`, `Bar {time, open, high, low,
//! close, volume}`.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;
use serde_json::value::RawValue;
use tickwire_bars::{Bar, Resolution};

use crate::Error;
use crate::registry::{Schema, payload_fields};
use crate::wire::{present, put_f64, put_i64, put_quantity, put_str, string};

/// What a client asks for: bars of `symbol` at `resolution`, the topic
/// `bars:{symbol}:{resolution}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// The symbol as the client spelled it (`AAPL`); any string, unchecked.
    pub symbol: String,
    /// The resolution, `1` when the client named none.
    pub resolution: Resolution,
}

impl Subscription {
    /// The subscription's topic: `bars:AAPL:1`.
    pub fn topic(&self) -> String {
        topic(&self.symbol, self.resolution)
    }
}

/// The topic of `symbol`'s bars at `resolution`: `bars:{SYMBOL}:{RESOLUTION}`.
///
/// ```
/// use tickwire_bars::Resolution;
/// assert_eq!(tickwire_fastws::topic("MSFT", Resolution::Day), "bars:MSFT:D");
/// ```
pub fn topic(symbol: &str, resolution: Resolution) -> String {
    let res = resolution.as_str();
    let mut topic = String::with_capacity(6 + symbol.len() + res.len());
    topic.push_str("bars:");
    topic.push_str(symbol);
    topic.push(':');
    topic.push_str(res);
    topic
}

/// A decoded client operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientOp {
    /// `bars.subscribe`: add the connection to the subscription's topic, then reply.
    Subscribe(Subscription),
    /// `bars.unsubscribe`: remove the connection from the topic, then reply.
    Unsubscribe(Subscription),
}

impl ClientOp {
    /// The operation's `type`: `bars.subscribe` or `bars.unsubscribe`.
    pub const fn type_name(&self) -> &'static str {
        match self {
            ClientOp::Subscribe(_) => "bars.subscribe",
            ClientOp::Unsubscribe(_) => "bars.unsubscribe",
        }
    }

    /// The subscription it is about.
    pub const fn subscription(&self) -> &Subscription {
        match self {
            ClientOp::Subscribe(s) | ClientOp::Unsubscribe(s) => s,
        }
    }

    /// The `message` of its `ok` reply: `Subscribed to AAPL`, `Unsubscribed from AAPL`.
    pub fn ok_message(&self) -> String {
        match self {
            ClientOp::Subscribe(s) => format!("Subscribed to {}", s.symbol),
            ClientOp::Unsubscribe(s) => format!("Unsubscribed from {}", s.symbol),
        }
    }

    /// A `SubscriptionResponse` frame of type `reply_type`.
    pub(crate) fn encode_response(&self, reply_type: &str, status: Status, message: &str) -> Bytes {
        let sub = self.subscription();
        encode_subscription_response(reply_type, status, &sub.symbol, message, &sub.topic())
    }
}

/// The `status` of a `SubscriptionResponse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `"ok"`: done.
    Ok,
    /// `"error"`: refused; `message` says why.
    Error,
}

impl Status {
    /// `ok` or `error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }
}

/// Encodes `{"type":reply_type,"payload":{"status":..,"symbol":..,"message":..,"topic":..}}`,
/// compact, keys in this order (the `SubscriptionResponse` model's).
pub fn encode_subscription_response(
    reply_type: &str,
    status: Status,
    symbol: &str,
    message: &str,
    topic: &str,
) -> Bytes {
    let mut out =
        BytesMut::with_capacity(64 + reply_type.len() + symbol.len() + message.len() + topic.len());
    out.put_slice(b"{\"type\":");
    put_str(&mut out, reply_type);
    out.put_slice(b",\"payload\":{\"status\":");
    put_str(&mut out, status.as_str());
    out.put_slice(b",\"symbol\":");
    put_str(&mut out, symbol);
    out.put_slice(b",\"message\":");
    put_str(&mut out, message);
    out.put_slice(b",\"topic\":");
    put_str(&mut out, topic);
    out.put_slice(b"}}");
    out.freeze()
}

/// Encodes a `bars.update` frame of `bar`, once per topic; every subscriber gets a clone of
/// the same [`Bytes`].
///
/// `{"type":"bars.update","payload":{"time":..,"open":..,"high":..,"low":..,"close":..,
/// "volume":..}}`: `time` is the bar's start in ms; prices are written as `serde_json`
/// (and pydantic) write floats (`150.0`); `volume` as an integer when it is one (share
/// volumes), else as a float (fractional crypto volumes). The payload names no symbol or
/// resolution: the client knows them from the topic it subscribed to.
///
/// ```
/// use tickwire_bars::Bar;
///
/// let bar = Bar { time: 1_697_097_600_000, open: 150.0, high: 151.0, low: 149.5, close: 150.5, volume: 1e6 };
/// assert_eq!(
///     &tickwire_fastws::encode_update(&bar)[..],
///     br#"{"type":"bars.update","payload":{"time":1697097600000,"open":150.0,"high":151.0,"low":149.5,"close":150.5,"volume":1000000}}"#
/// );
/// ```
pub fn encode_update(bar: &Bar) -> Bytes {
    let mut out = BytesMut::with_capacity(160);
    out.put_slice(b"{\"type\":\"bars.update\",\"payload\":{\"time\":");
    put_i64(&mut out, bar.time);
    out.put_slice(b",\"open\":");
    put_f64(&mut out, bar.open);
    out.put_slice(b",\"high\":");
    put_f64(&mut out, bar.high);
    out.put_slice(b",\"low\":");
    put_f64(&mut out, bar.low);
    out.put_slice(b",\"close\":");
    put_f64(&mut out, bar.close);
    out.put_slice(b",\"volume\":");
    put_quantity(&mut out, bar.volume);
    out.put_slice(b"}}");
    out.freeze()
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

pub(crate) fn decode_subscribe(payload: Option<&RawValue>) -> Result<ClientOp, Error> {
    decode_subscription(payload).map(ClientOp::Subscribe)
}

pub(crate) fn decode_unsubscribe(payload: Option<&RawValue>) -> Result<ClientOp, Error> {
    decode_subscription(payload).map(ClientOp::Unsubscribe)
}

/// Decodes a `SubscriptionRequest`, in either shape:
///
/// - the seed's, `{"symbol":"AAPL","params":{"resolution":"1"}}` (`params` and
///   `params.resolution` optional);
/// - the later one, `{"symbol":"AAPL","resolution":"1"}` (`resolution` optional).
///
/// The resolution defaults to `1`. When both places name one they must agree. Unknown
/// keys are ignored (pydantic's default); `null` counts as absent, except for `params`,
/// which pydantic types as a dict.
fn decode_subscription(payload: Option<&RawValue>) -> Result<Subscription, Error> {
    let payload = payload.ok_or(Error::MissingField { field: "payload" })?;
    let [symbol, params, flat] =
        payload_fields(payload, "payload", ["symbol", "params", "resolution"])?;
    let symbol = string(
        present(symbol).ok_or(Error::MissingField { field: "symbol" })?,
        "symbol",
    )?;
    let nested = match params {
        None => None,
        Some(params) if params.get() == "null" => {
            return Err(Error::InvalidField {
                field: "params",
                reason: "expected an object",
            });
        }
        Some(params) => {
            let [resolution] = payload_fields(params, "params", ["resolution"])?;
            present(resolution)
                .map(|r| resolution_of(r, "params.resolution"))
                .transpose()?
        }
    };
    let flat = present(flat)
        .map(|r| resolution_of(r, "resolution"))
        .transpose()?;
    let resolution = match (nested, flat) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::InvalidField {
                field: "resolution",
                reason: "contradicts params.resolution",
            });
        }
        (Some(r), _) | (None, Some(r)) => r,
        (None, None) => Resolution::DEFAULT,
    };
    Ok(Subscription { symbol, resolution })
}

fn resolution_of(raw: &RawValue, field: &'static str) -> Result<Resolution, Error> {
    let text = string(raw, field)?;
    Resolution::parse(&text).ok_or_else(|| Error::UnknownResolution {
        resolution: text.chars().take(16).collect(),
    })
}

// ---------------------------------------------------------------------------------------
// Schemas (JSON Schema draft 7, as AsyncAPI 2.4.0 embeds it)
// ---------------------------------------------------------------------------------------

/// The payload of `bars.subscribe` and `bars.unsubscribe`.
pub(crate) const SUBSCRIPTION_REQUEST: Schema = Schema {
    name: "SubscriptionRequest",
    build: subscription_request_schema,
};

/// The payload of their replies.
pub(crate) const SUBSCRIPTION_RESPONSE: Schema = Schema {
    name: "SubscriptionResponse",
    build: subscription_response_schema,
};

/// The payload of `bars.update`.
pub(crate) const BAR: Schema = Schema {
    name: "Bar",
    build: bar_schema,
};

fn resolution_schema() -> serde_json::Value {
    let all: Vec<&str> = Resolution::ALL.iter().map(|r| r.as_str()).collect();
    json!({
        "type": "string",
        "title": "Resolution",
        "description": "Time resolution: '1', '5', '15', '30', '60' (minutes), 'D' (day, \
                        from 00:00 UTC), 'W' (week, from Monday 00:00 UTC), 'M' (month, \
                        from the 1st, 00:00 UTC)",
        "enum": all,
        "default": Resolution::DEFAULT.as_str(),
    })
}

fn subscription_request_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "title": "SubscriptionRequest",
        "description": "A subscription to the bars of a symbol at a resolution. The \
                        resolution is `params.resolution` or `resolution` (both accepted; \
                        they must agree when both are given) and defaults to '1'.",
        "properties": {
            "symbol": {
                "type": "string",
                "title": "Symbol",
                "description": "Symbol to subscribe to",
                "examples": ["AAPL", "GOOGL", "MSFT", "TSLA"],
            },
            "params": {
                "type": "object",
                "title": "Params",
                "description": "Additional subscription parameters",
                "properties": { "resolution": resolution_schema() },
                "default": {},
            },
            "resolution": resolution_schema(),
        },
        "required": ["symbol"],
    })
}

fn subscription_response_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "title": "SubscriptionResponse",
        "properties": {
            "status": {
                "type": "string",
                "title": "Status",
                "description": "Status",
                "enum": ["ok", "error"],
            },
            "symbol": { "type": "string", "title": "Symbol", "description": "Symbol" },
            "message": {
                "type": "string",
                "title": "Message",
                "description": "Status message",
            },
            "topic": {
                "type": "string",
                "title": "Topic",
                "description": "Subscription topic: bars:{SYMBOL}:{RESOLUTION}",
                "examples": ["bars:AAPL:1"],
            },
        },
        "required": ["status", "symbol", "message", "topic"],
    })
}

fn bar_schema() -> serde_json::Value {
    let price = |title: &str, description: &str| json!({ "type": "number", "title": title, "description": description });
    json!({
        "type": "object",
        "title": "Bar",
        "description": "An OHLC bar",
        "properties": {
            "time": {
                "type": "integer",
                "title": "Time",
                "description": "Start of the bar's bucket, milliseconds since the UNIX epoch",
            },
            "open": price("Open", "Opening price"),
            "high": price("High", "Highest price"),
            "low": price("Low", "Lowest price"),
            "close": price("Close", "Closing price"),
            "volume": {
                "type": "number",
                "title": "Volume",
                "description": "Traded volume: an integer for shares, fractional for \
                                crypto pairs",
            },
        },
        "required": ["time", "open", "high", "low", "close", "volume"],
    })
}
