//! `/stream`: the authenticated price stream of seed 002, over the codec of
//! [`tickwire_json::stream`].
//!
//! The handshake, in this order:
//!
//! 1. no API key (`Authorization: Bearer <key>`, or `?api_key=<key>` for
//!    browsers) or an unknown one → 401 with the document's `UNAUTHORIZED`
//!    error as the body; a key not allowed on the `stream` endpoint → 403
//!    with the same body;
//! 2. not a WebSocket upgrade → 400;
//! 3. the key over its request rate (a connection counts as one request,
//!    seed 002 "Rate Limiting") → 429 with a `RATE_LIMITED` error body;
//! 4. the key already holding `max_connections` connections (10 by
//!    default): the upgrade completes and the connection is closed at once
//!    with an `error` message (`CONNECTION_LIMIT`) and close code 1008
//!    "connection limit exceeded" — the document's "Connection closes
//!    unexpectedly … Rate limit exceeded → Reduce connection count". The
//!    key's other connections are not affected.
//!
//! Per connection: `subscribe` names 1 to `max_symbols` symbols; one that
//! would take the connection past `max_symbols` is refused whole with
//! `SUBSCRIPTION_LIMIT`, counted before any symbol is looked up. Otherwise
//! the known symbols are subscribed and confirmed with `subscribed`, and
//! each unknown one gets `UNKNOWN_SYMBOL` (after the confirmation).
//! `unsubscribe` with symbols drops those, without drops all, and is
//! confirmed with `unsubscribed`. Every subscribe and unsubscribe takes one
//! request of the key's rate, shared by all its connections; over it, the
//! message gets `RATE_LIMITED` and is not applied. `ping` gets `pong`, and a
//! `pong` heartbeat goes to every connection every `heartbeat_secs`.
//! `idle_timeout_secs` without a message either way (the heartbeat aside)
//! closes the connection (1000); messages over `max_message_bytes` close it
//! with 1009.
//!
//! `RATE_LIMITED` and `CONNECTION_LIMIT` are not in the document's table of
//! "Common Errors"; they follow its `error` format (`type`, `message`,
//! `code`, `timestamp`).

use futures_util::future::Either;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut as _, Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tickwire_json::stream::{self as codec, Limits, StreamCommand, StreamError};
use tickwire_model::{Instrument, Update};
use tickwire_websocket::MessageKind;
use tracing::debug;

use tickwire_config::{Endpoint, StreamConfig};
use tickwire_core::Tracker;
use tickwire_core::http::{Body, handshake, handshake_refusal, json_bytes, refuse, upgrade_with};
use tickwire_core::session::{Activity, Protocol, Step};
use tickwire_core::{Feed, Index, Subscriber};
use tickwire_services::http::{JsonTransport, feed_key, json_session};
use tickwire_services::market::{
    Feed as Topic, Market, STREAM_HEARTBEAT, deliver, housekeeping, topic_of,
};
use tickwire_services::{Context, KeyRejection, KeyUsage, Lease};
use tickwire_websocket::close_code;

/// The route.
pub const PATH: &str = codec::PATH;

/// The code of the `error` a key over its request rate gets.
const RATE_LIMITED: &str = "RATE_LIMITED";
/// The code of the `error` of a connection beyond the key's limit.
const CONNECTION_LIMIT: &str = "CONNECTION_LIMIT";

/// Answers a handshake on [`PATH`].
pub fn upgrade(
    mut req: Request<Incoming>,
    stream: &Arc<Stream>,
    context: &Context,
    tracker: &Tracker,
) -> Response<Body> {
    let now_ms = tickwire_model::now_millis();
    let unauthorized = |status| {
        json_bytes(
            status,
            codec::encode_error(&StreamError::Unauthorized, now_ms),
        )
    };
    let principal = match feed_key(&req, &context.keys) {
        Ok(p) => p,
        Err(KeyRejection::Missing | KeyRejection::Invalid) => {
            return unauthorized(StatusCode::UNAUTHORIZED);
        }
    };
    if !principal.allows(Endpoint::Stream) {
        debug!(user = principal.user_id, "key not allowed on /stream");
        return unauthorized(StatusCode::FORBIDDEN);
    }
    let usage = principal.usage();
    let handshake = match handshake(&req) {
        Ok(h) => h,
        Err(e) => return handshake_refusal(&e),
    };
    if !usage.take(Instant::now()) {
        return json_bytes(
            StatusCode::TOO_MANY_REQUESTS,
            encode_extra_error(RATE_LIMITED, "Rate limit exceeded", now_ms),
        );
    }
    let lease = usage.lease();
    let (stream, context, tracker) = (stream.clone(), context.clone(), tracker.clone());
    let remote = tickwire_core::http::remote(&req);
    upgrade_with(&mut req, handshake, move |upgraded| {
        let Some(lease) = lease else {
            debug!(
                user = usage.name(),
                "connection limit of the key reached; refusing"
            );
            let reason = format!(
                "connection limit exceeded: at most {} connections per API key",
                usage.max_connections()
            );
            let error = encode_extra_error(
                CONNECTION_LIMIT,
                "Too many connections",
                tickwire_model::now_millis(),
            );
            return Either::Left(async move {
                refuse(upgraded, Some(error), close_code::POLICY, &reason, tracker).await;
            });
        };
        let json = JsonTransport {
            endpoint: "stream",
            max_message_bytes: stream.config.max_message_bytes,
            slow_consumer: stream.config.slow_consumer,
            remote,
        };
        let make = move |sub| StreamSession::new(stream, sub, usage, lease);
        Either::Right(json_session(upgraded, &context, json, make, tracker))
    })
}

/// Sends the heartbeat `pong` to every `/stream` connection every
/// `heartbeat_secs`, until the gateway shuts down.
pub async fn heartbeat_task(stream: Arc<Stream>, context: Context) {
    let period = Duration::from_secs(stream.config.heartbeat_secs);
    let encode = || codec::encode_pong(tickwire_model::now_millis());
    housekeeping(
        &stream.feeds,
        STREAM_HEARTBEAT,
        period,
        context.shutdown.clone(),
        encode,
    )
    .await;
}

/// `/stream`'s part of the fan-out: ticks and trades to the price topics,
/// each encoded once per topic with subscribers.
#[derive(Debug)]
pub struct StreamFeed {
    feeds: Arc<Index>,
    /// A reused buffer for topic names.
    name: String,
}

impl StreamFeed {
    /// A feed that encodes prices and trades into the topics of `feeds`.
    pub fn new(feeds: Arc<Index>) -> StreamFeed {
        StreamFeed {
            feeds,
            name: String::with_capacity(64),
        }
    }
}

impl Feed<Update> for StreamFeed {
    fn on_update(&mut self, update: &Update) {
        let (feeds, name) = (&self.feeds, &mut self.name);
        match update {
            Update::Tick(tick) => {
                deliver(feeds, name, Topic::StreamPrice, &tick.instrument, || {
                    codec::encode_tick(tick)
                })
            }
            Update::Trade(trade) => {
                deliver(feeds, name, Topic::StreamPrice, &trade.instrument, || {
                    codec::encode_trade(trade)
                });
            }
            _ => {}
        }
    }
}

/// What the endpoint's connections share: its configuration, the symbol
/// table and the feed index. Nothing else of the gateway, so that a session
/// can be driven by a test alone.
#[derive(Debug)]
pub struct Stream {
    /// The endpoint's configuration section.
    pub config: StreamConfig,
    /// The symbol table subscriptions are checked against.
    pub market: Arc<Market>,
    /// The index the endpoint's topics live in.
    pub feeds: Arc<Index>,
}

/// The protocol state of one `/stream` connection.
pub struct StreamSession {
    state: Arc<Stream>,
    sub: Subscriber,
    /// Subscribed symbols in the order subscribed, with their instruments.
    subscriptions: Vec<(String, Instrument)>,
    usage: Arc<KeyUsage>,
    /// The connection's slot among the key's connections.
    _lease: Lease,
}

impl std::fmt::Debug for StreamSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSession")
            .field("connection", &self.sub.id())
            .field("key", &self.usage.name())
            .field("subscriptions", &self.subscriptions.len())
            .finish_non_exhaustive()
    }
}

impl StreamSession {
    fn new(state: Arc<Stream>, sub: Subscriber, usage: Arc<KeyUsage>, lease: Lease) -> Self {
        state.feeds.subscribe(STREAM_HEARTBEAT, sub.clone());
        sub.set_principal(usage.name());
        debug!(
            connection = sub.id(),
            key = usage.name(),
            "/stream connected"
        );
        StreamSession {
            state,
            sub,
            subscriptions: Vec::new(),
            usage,
            _lease: lease,
        }
    }

    fn config(&self) -> &StreamConfig {
        &self.state.config
    }

    fn is_subscribed(&self, symbol: &str) -> bool {
        self.subscriptions.iter().any(|(s, _)| s == symbol)
    }

    fn subscribe(&mut self, symbols: Vec<String>, now_ms: i64) -> Step {
        let symbols = dedup(symbols);
        // Counted before any lookup.
        let max = self.config().max_symbols;
        let requested =
            self.subscriptions.len() + symbols.iter().filter(|s| !self.is_subscribed(s)).count();
        if requested > max {
            return Step::Reply(codec::encode_error(
                &StreamError::SubscriptionLimit { requested, max },
                now_ms,
            ));
        }
        let mut confirmed = Vec::with_capacity(symbols.len());
        let mut errors = Vec::new();
        for symbol in symbols {
            if self.is_subscribed(&symbol) {
                confirmed.push(symbol);
                continue;
            }
            match self.state.market.stream_symbol(&symbol) {
                Some(instrument) => {
                    let topic = topic_of(Topic::StreamPrice, &instrument);
                    self.state.feeds.subscribe(&topic, self.sub.clone());
                    self.subscriptions.push((symbol.clone(), instrument));
                    confirmed.push(symbol);
                }
                None => errors.push(codec::encode_error(
                    &StreamError::UnknownSymbol { symbol },
                    now_ms,
                )),
            }
        }
        let mut replies = Vec::with_capacity(1 + errors.len());
        if !confirmed.is_empty() {
            replies.push(codec::encode_subscribed(&confirmed, now_ms));
        }
        replies.extend(errors);
        Step::Replies(replies)
    }

    fn unsubscribe(&mut self, symbols: Option<Vec<String>>, now_ms: i64) -> Step {
        let dropped = match symbols {
            None => {
                let all: Vec<String> = self.subscriptions.iter().map(|(s, _)| s.clone()).collect();
                for (_, instrument) in self.subscriptions.drain(..) {
                    let topic = topic_of(Topic::StreamPrice, &instrument);
                    self.state.feeds.unsubscribe(&topic, &self.sub);
                }
                all
            }
            Some(symbols) => {
                let symbols = dedup(symbols);
                for symbol in &symbols {
                    if let Some(i) = self.subscriptions.iter().position(|(s, _)| s == symbol) {
                        let (_, instrument) = self.subscriptions.remove(i);
                        let topic = topic_of(Topic::StreamPrice, &instrument);
                        self.state.feeds.unsubscribe(&topic, &self.sub);
                    }
                }
                symbols
            }
        };
        Step::Reply(codec::encode_unsubscribed(&dropped, now_ms))
    }
}

impl Protocol for StreamSession {
    fn subscriptions(&self) -> Option<usize> {
        Some(self.subscriptions.len())
    }

    fn on_message(&mut self, _kind: MessageKind, payload: &[u8], now: Instant) -> Step {
        let now_ms = tickwire_model::now_millis();
        let limits = Limits {
            max_message_bytes: self.config().max_message_bytes,
            max_symbols: self.config().max_symbols,
        };
        let command = match codec::parse_with(payload, limits) {
            Ok(command) => command,
            Err(e) => {
                debug!(connection = self.sub.id(), error = %e, "invalid /stream message");
                return Step::Reply(codec::encode_error(&e, now_ms));
            }
        };
        let counted = !matches!(command, StreamCommand::Ping);
        if counted && !self.usage.take(now) {
            debug!(
                connection = self.sub.id(),
                key = self.usage.name(),
                "key over its rate"
            );
            return Step::Reply(encode_extra_error(
                RATE_LIMITED,
                "Rate limit exceeded",
                now_ms,
            ));
        }
        match command {
            StreamCommand::Subscribe { symbols } => self.subscribe(symbols, now_ms),
            StreamCommand::Unsubscribe { symbols } => self.unsubscribe(symbols, now_ms),
            StreamCommand::Ping => Step::Reply(codec::encode_pong(now_ms)),
        }
    }

    /// Seed 002: "Idle timeout: 5 minutes (no messages sent or received)";
    /// price updates sent count, the heartbeat does not.
    fn deadline(&self, activity: &Activity) -> Instant {
        activity.last_message.max(self.sub.last_data())
            + Duration::from_secs(self.config().idle_timeout_secs)
    }

    fn idle_close(&self) -> (u16, &'static str) {
        (close_code::NORMAL, "idle timeout")
    }

    fn on_close(&mut self, _ending: tickwire_core::Ending) {
        self.state.feeds.unsubscribe_all(&self.sub);
    }
}

/// `symbols` without repeats, in their first order.
fn dedup(symbols: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(symbols.len());
    for s in symbols {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// An `error` with a code outside the document's table, in its format:
/// `{"type":"error","message":…,"code":…,"timestamp":…}`.
fn encode_extra_error(code: &str, message: &str, now_ms: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    out.extend_from_slice(br#"{"type":"error","message":"#);
    // Serialising a `&str` cannot fail.
    out.extend_from_slice(&serde_json::to_vec(message).unwrap_or_default());
    out.extend_from_slice(br#","code":"#);
    out.extend_from_slice(&serde_json::to_vec(code).unwrap_or_default());
    out.extend_from_slice(br#","timestamp":""#);
    out.extend_from_slice(
        tickwire_json::timestamp::rfc3339_millis(now_ms)
            .as_str()
            .as_bytes(),
    );
    out.put_slice(b"\"}");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_core::testing::{self, subscriber};

    use tickwire_config::ApiKey;
    use tickwire_services::KeyRing;

    /// A `/stream` endpoint that knows BTC/USD and ETH/USD, and one session of
    /// a key allowed `rate_per_minute` requests; no socket, no gateway.
    fn session(config: StreamConfig, rate_per_minute: u32) -> (Arc<Stream>, StreamSession) {
        let market = Arc::new(Market::new());
        market.learn(&Instrument::crypto("BTC/USD"));
        market.learn(&Instrument::crypto("ETH/USD"));
        let state = Arc::new(Stream {
            config,
            market,
            feeds: Arc::new(Index::new()),
        });
        let auth = KeyRing::new(&[ApiKey {
            rate_per_minute,
            ..ApiKey::new("k", "secret")
        }])
        .unwrap();
        let usage = auth.check_bearer(None, Some("secret")).unwrap().usage();
        let lease = usage.lease().unwrap();
        let sub = subscriber(3, 0);
        let session = StreamSession::new(state.clone(), sub, usage, lease);
        (state, session)
    }

    fn members(state: &Stream, topic: &str) -> usize {
        testing::members(&state.feeds, topic)
    }

    use tickwire_core::testing::replies;

    const BTC: &str = "stream:price:CRYPTO:BTC/USD";

    #[test]
    fn subscribe_confirms_the_known_and_refuses_the_unknown() {
        let (state, mut stream) = session(StreamConfig::default(), 600);
        let now = Instant::now();
        let msg = br#"{"type":"subscribe","symbols":["BTC/USD","NOPE/USD"]}"#;
        let answer = replies(stream.on_message(MessageKind::Text, msg, now));
        assert_eq!(answer[0]["type"], "subscribed");
        assert_eq!(answer[0]["symbols"], serde_json::json!(["BTC/USD"]));
        assert_eq!(answer[1]["code"], "UNKNOWN_SYMBOL");
        assert_eq!(members(&state, BTC), 1);
        assert_eq!(members(&state, STREAM_HEARTBEAT), 1);
        let answer =
            replies(stream.on_message(MessageKind::Text, br#"{"type":"unsubscribe"}"#, now));
        assert_eq!(answer[0]["type"], "unsubscribed");
        assert_eq!(members(&state, BTC), 0);
        stream.on_close(tickwire_core::Ending::Closed);
        assert_eq!(members(&state, STREAM_HEARTBEAT), 0);
    }

    #[test]
    fn the_symbol_limit_refuses_a_subscribe_whole() {
        let (state, mut stream) = session(
            StreamConfig {
                max_symbols: 1,
                ..StreamConfig::default()
            },
            600,
        );
        let msg = br#"{"type":"subscribe","symbols":["BTC/USD","ETH/USD"]}"#;
        let answer = replies(stream.on_message(MessageKind::Text, msg, Instant::now()));
        assert_eq!(answer[0]["code"], "SUBSCRIPTION_LIMIT", "{answer:?}");
        assert_eq!(members(&state, BTC), 0);
    }

    #[test]
    fn requests_over_the_keys_rate_are_refused_and_pings_are_free() {
        let (state, mut stream) = session(StreamConfig::default(), 1);
        let now = Instant::now();
        let sub = br#"{"type":"subscribe","symbols":["BTC/USD"]}"#;
        assert_eq!(
            replies(stream.on_message(MessageKind::Text, sub, now))[0]["type"],
            "subscribed"
        );
        let unsub = br#"{"type":"unsubscribe","symbols":["BTC/USD"]}"#;
        let answer = replies(stream.on_message(MessageKind::Text, unsub, now));
        assert_eq!(answer[0]["code"], RATE_LIMITED);
        assert_eq!(members(&state, BTC), 1, "not applied");
        let pong = replies(stream.on_message(MessageKind::Text, br#"{"type":"ping"}"#, now));
        assert_eq!(pong[0]["type"], "pong");
    }

    #[test]
    fn extra_errors_follow_the_documents_format() {
        assert_eq!(
            &encode_extra_error(RATE_LIMITED, "Rate limit exceeded", 1_760_106_600_000)[..],
            br#"{"type":"error","message":"Rate limit exceeded","code":"RATE_LIMITED","timestamp":"2025-10-10T14:30:00.000Z"}"#
        );
    }

    #[test]
    fn repeats_are_dropped_in_order() {
        let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(dedup(v(&["B", "A", "B", "C", "A"])), v(&["B", "A", "C"]));
    }
}
