//! Encoding server replies in the two reply styles.
//!
//! [`ReplyStyle::Documented`] answers with the names the seed document shows
//! (`auth_response`); the replies the document leaves out follow its pattern
//! (`subscribe_response`, `unsubscribe_response`, and errors carry `"type":"error"`).
//! [`ReplyStyle::Openalgo`] answers exactly as the reference server does (`auth`,
//! `subscribe`, `unsubscribe`, errors without `type`), which its Python SDK relies on.
//! Both write compact JSON (no spaces), keys in the order shown.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tickwire_model::Instrument;

use crate::json::{put_int, put_key, put_str};
use crate::{Depth, Mode, Ping, ProxyError, RawJson};

/// Which reply names and shapes the proxy answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyStyle {
    /// `documented` (the default): as the seed document shows.
    #[default]
    Documented,
    /// `openalgo`: as the reference server sends, for its SDK.
    Openalgo,
}

/// The successful authentication of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOk<'a> {
    /// The broker (adapter) serving the user.
    pub broker: &'a str,
    /// The user the API key belongs to.
    pub user_id: &'a str,
}

/// The outcome of one instrument of a `subscribe` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOutcome<'a> {
    /// The instrument.
    pub instrument: &'a Instrument,
    /// `Ok` when subscribed, else the adapter's message.
    pub result: Result<(), String>,
}

/// The reply to one `subscribe` request.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeReply<'a> {
    /// The mode subscribed.
    pub mode: Mode,
    /// The depth subscribed.
    pub depth: Depth,
    /// The broker name.
    pub broker: &'a str,
    /// One outcome per instrument, in request order.
    pub outcomes: &'a [SubscribeOutcome<'a>],
    /// The request's `request_id`, echoed.
    pub request_id: Option<&'a RawJson>,
}

/// The reply to one `unsubscribe` or `unsubscribe_all` request.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsubscribeReply<'a> {
    /// The broker name.
    pub broker: &'a str,
    /// The instruments unsubscribed.
    pub successful: &'a [&'a Instrument],
    /// The instruments that failed, with the reason.
    pub failed: &'a [(&'a Instrument, &'a str)],
    /// The request's `request_id`, echoed.
    pub request_id: Option<&'a RawJson>,
}

/// The reply to `get_broker_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo<'a> {
    /// The broker name.
    pub broker: &'a str,
    /// The adapter's state: `connected`, `connecting`, `retrying`, `failed`, ...
    pub adapter_status: &'a str,
    /// The user.
    pub user_id: &'a str,
}

fn finish(out: BytesMut) -> Bytes {
    out.freeze()
}

fn type_field(out: &mut BytesMut, ty: &str) {
    out.extend_from_slice(b"{\"type\":");
    put_str(out, ty);
    out.put_u8(b',');
}

/// Encodes the reply to a successful `authenticate`.
///
/// Documented: `{"type":"auth_response","status":"success","message":"Authentication successful"}`;
/// openalgo adds `broker`, `user_id` and `supported_features` under `"type":"auth"`.
pub fn encode_auth_ok(style: ReplyStyle, auth: &AuthOk<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(192);
    match style {
        ReplyStyle::Documented => type_field(&mut out, "auth_response"),
        ReplyStyle::Openalgo => type_field(&mut out, "auth"),
    }
    out.extend_from_slice(br#""status":"success","message":"Authentication successful""#);
    if style == ReplyStyle::Openalgo {
        out.extend_from_slice(b",\"broker\":");
        put_str(&mut out, auth.broker);
        out.extend_from_slice(b",\"user_id\":");
        put_str(&mut out, auth.user_id);
        out.extend_from_slice(br#","supported_features":{"ltp":true,"quote":true,"depth":true}"#);
    }
    out.put_u8(b'}');
    finish(out)
}

/// Encodes an error reply.
///
/// Openalgo: `{"status":"error","code":C,"message":M}`. Documented: the same with
/// `"type":"error"` first, except that authentication failures answer in the
/// document's `auth_response` (`{"type":"auth_response","status":"error",...}`).
pub fn encode_error(style: ReplyStyle, error: &ProxyError) -> Bytes {
    let message = error.to_string();
    let mut out = BytesMut::with_capacity(64 + message.len());
    if style == ReplyStyle::Documented {
        let ty = match error {
            ProxyError::Authentication { .. } => "auth_response",
            _ => "error",
        };
        type_field(&mut out, ty);
    } else {
        out.put_u8(b'{');
    }
    out.extend_from_slice(br#""status":"error","code":"#);
    put_str(&mut out, error.code());
    out.extend_from_slice(b",\"message\":");
    put_str(&mut out, &message);
    out.put_u8(b'}');
    finish(out)
}

/// Encodes the reply to a `subscribe` request: `status` is `success` when every
/// instrument was subscribed, else `partial`; each entry carries the mode's label
/// (`LTP`, `Quote`, `Depth`) and depth, or the failure's message.
pub fn encode_subscribe(style: ReplyStyle, reply: &SubscribeReply<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(128 + 96 * reply.outcomes.len());
    match style {
        ReplyStyle::Documented => type_field(&mut out, "subscribe_response"),
        ReplyStyle::Openalgo => type_field(&mut out, "subscribe"),
    }
    let all_ok = reply.outcomes.iter().all(|o| o.result.is_ok());
    out.extend_from_slice(b"\"status\":");
    put_str(&mut out, if all_ok { "success" } else { "partial" });
    out.extend_from_slice(b",\"subscriptions\":[");
    for (i, outcome) in reply.outcomes.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        put_instrument(&mut out, outcome.instrument);
        match &outcome.result {
            Ok(()) => {
                out.extend_from_slice(br#","status":"success","mode":"#);
                put_str(&mut out, reply.mode.label());
                out.extend_from_slice(b",\"depth\":");
                put_int(&mut out, reply.depth.levels());
            }
            Err(message) => {
                out.extend_from_slice(br#","status":"error","message":"#);
                put_str(&mut out, message);
            }
        }
        out.extend_from_slice(b",\"broker\":");
        put_str(&mut out, reply.broker);
        out.put_u8(b'}');
    }
    out.extend_from_slice(br#"],"message":"Subscription processing complete","broker":"#);
    put_str(&mut out, reply.broker);
    put_request_id(&mut out, reply.request_id);
    out.put_u8(b'}');
    finish(out)
}

/// Encodes the reply to an `unsubscribe` request: `status` is `success`, `partial`
/// (some failed) or `error` (all failed).
pub fn encode_unsubscribe(style: ReplyStyle, reply: &UnsubscribeReply<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(160 + 80 * (reply.successful.len() + reply.failed.len()));
    match style {
        ReplyStyle::Documented => type_field(&mut out, "unsubscribe_response"),
        ReplyStyle::Openalgo => type_field(&mut out, "unsubscribe"),
    }
    let status = match (reply.successful.is_empty(), reply.failed.is_empty()) {
        (_, true) => "success",
        (false, false) => "partial",
        (true, false) => "error",
    };
    out.extend_from_slice(b"\"status\":");
    put_str(&mut out, status);
    out.extend_from_slice(br#","message":"Unsubscription processing complete","successful":["#);
    for (i, instrument) in reply.successful.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        put_instrument(&mut out, instrument);
        out.extend_from_slice(br#","status":"success","broker":"#);
        put_str(&mut out, reply.broker);
        out.put_u8(b'}');
    }
    out.extend_from_slice(b"],\"failed\":[");
    for (i, (instrument, message)) in reply.failed.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        put_instrument(&mut out, instrument);
        out.extend_from_slice(br#","status":"error","message":"#);
        put_str(&mut out, message);
        out.extend_from_slice(b",\"broker\":");
        put_str(&mut out, reply.broker);
        out.put_u8(b'}');
    }
    out.extend_from_slice(b"],\"broker\":");
    put_str(&mut out, reply.broker);
    put_request_id(&mut out, reply.request_id);
    out.put_u8(b'}');
    finish(out)
}

/// Encodes the reply to a `ping`, the same in both styles:
/// `{"type":"pong","status":"success","server_timestamp":MS}` plus the client's
/// `client_timestamp` and `_pingId` when it sent them.
pub fn encode_pong(_style: ReplyStyle, ping: &Ping, server_timestamp_ms: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(96);
    out.extend_from_slice(br#"{"type":"pong","status":"success","server_timestamp":"#);
    put_int(&mut out, server_timestamp_ms);
    if let Some(ts) = &ping.client_timestamp {
        out.extend_from_slice(b",\"client_timestamp\":");
        out.extend_from_slice(ts.as_str().as_bytes());
    }
    if let Some(id) = &ping.ping_id {
        out.extend_from_slice(b",\"_pingId\":");
        out.extend_from_slice(id.as_str().as_bytes());
    }
    out.put_u8(b'}');
    finish(out)
}

/// Encodes the reply to `get_supported_brokers`, the same in both styles:
/// `{"type":"supported_brokers","status":"success","brokers":[...],"count":N}`.
pub fn encode_supported_brokers(_style: ReplyStyle, brokers: &[&str]) -> Bytes {
    let mut out = BytesMut::with_capacity(80 + 16 * brokers.len());
    out.extend_from_slice(br#"{"type":"supported_brokers","status":"success","brokers":["#);
    for (i, broker) in brokers.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        put_str(&mut out, broker);
    }
    out.extend_from_slice(b"],\"count\":");
    put_int(&mut out, brokers.len());
    out.put_u8(b'}');
    finish(out)
}

/// Encodes the reply to `get_broker_info`, the same in both styles:
/// `{"type":"broker_info","status":"success","broker":B,"adapter_status":S,"user_id":U}`.
pub fn encode_broker_info(_style: ReplyStyle, info: &BrokerInfo<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    out.extend_from_slice(br#"{"type":"broker_info","status":"success","broker":"#);
    put_str(&mut out, info.broker);
    out.extend_from_slice(b",\"adapter_status\":");
    put_str(&mut out, info.adapter_status);
    out.extend_from_slice(b",\"user_id\":");
    put_str(&mut out, info.user_id);
    out.put_u8(b'}');
    finish(out)
}

/// `{"symbol":S,"exchange":E` (the object left open).
fn put_instrument(out: &mut BytesMut, instrument: &Instrument) {
    out.put_u8(b'{');
    put_key(out, "symbol");
    put_str(out, &instrument.symbol);
    out.put_u8(b',');
    put_key(out, "exchange");
    put_str(out, &instrument.exchange);
}

fn put_request_id(out: &mut BytesMut, id: Option<&RawJson>) {
    if let Some(id) = id {
        out.extend_from_slice(b",\"request_id\":");
        out.extend_from_slice(id.as_str().as_bytes());
    }
}
