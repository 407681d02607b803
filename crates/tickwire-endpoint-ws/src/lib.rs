//! `/ws`: the symbol price feed of seed 001, over the codec of
//! [`tickwire_json::ws`].
//!
//! Public by default; with `ws.require_key` a connection needs an API key
//! allowed on the `ws` endpoint (`Authorization: Bearer` or `?api_key=`;
//! else 401 or 403), counted against the key's connections (429 beyond) and
//! request rate.
//!
//! Per connection (seed 001 "Rate Limits", all configurable in `[ws]`):
//!
//! - **Subscriptions.** A subscription is a symbol, whatever its channels
//!   (`price` and `signal` by default, `orderbook` on request). A subscribe
//!   that would take the connection past `subscription_limit` is refused
//!   whole with `subscription_limit`, counted on the distinct symbols it
//!   names before any is looked up. Otherwise each unknown symbol gets its
//!   own `invalid_symbol` and the rest of the request applies. Success is
//!   silent, as the document defines no reply.
//! - **Message rate.** At most `messages_per_second` client messages in each
//!   second of the connection; more are answered with `rate_limited` and not
//!   applied. A client over the rate in `flood_close_secs` consecutive
//!   seconds is closed (1008, logged).
//! - **Inactivity.** No client message (a `ping` included) for
//!   `idle_timeout_secs` closes the connection (1000).
//!
//! Every connection receives `server_status` every `status_interval_secs`,
//! encoded once for all of them, with the gateway's true figures.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tickwire_json::ws::{self as codec, Channels, WsCommand, WsError};
use tickwire_model::{Instrument, Update};
use tickwire_websocket::MessageKind;
use tracing::{debug, warn};

use tickwire_config::{Endpoint, WsConfig};
use tickwire_core::Tracker;
use tickwire_core::http::{Body, handshake, handshake_refusal, json_error, upgrade_with};
use tickwire_core::session::{Activity, Protocol, Step};
use tickwire_core::{Feed, Index, Subscriber};
use tickwire_services::http::{JsonTransport, feed_key, json_session};
use tickwire_services::market::{
    Feed as Topic, Market, WS_STATUS, deliver, housekeeping, topic_of,
};
use tickwire_services::{Context, KeyRejection, KeyUsage, Lease};
use tickwire_websocket::close_code;

/// The route.
pub const PATH: &str = codec::PATH;

/// Answers a handshake on [`PATH`].
pub fn upgrade(
    mut req: Request<Incoming>,
    ws: &Arc<Ws>,
    context: &Context,
    tracker: &Tracker,
) -> Response<Body> {
    let (keyed, handshake) = if ws.config.require_key {
        let principal = match feed_key(&req, &context.keys) {
            Ok(p) => p,
            Err(KeyRejection::Missing) => {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    "missing api key: send Authorization: Bearer <key> or ?api_key=<key>",
                );
            }
            Err(KeyRejection::Invalid) => {
                return json_error(StatusCode::UNAUTHORIZED, "invalid api key");
            }
        };
        if !principal.allows(Endpoint::Ws) {
            return json_error(
                StatusCode::FORBIDDEN,
                &format!("api key {:?} may not use /ws", principal.user_id),
            );
        }
        let usage = principal.usage();
        let handshake = match handshake(&req) {
            Ok(h) => h,
            Err(e) => return handshake_refusal(&e),
        };
        if !usage.take(Instant::now()) {
            return json_error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("api key {:?} is over its request rate", usage.name()),
            );
        }
        let Some(lease) = usage.lease() else {
            return json_error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "api key {:?} already has {} connections open",
                    usage.name(),
                    usage.max_connections()
                ),
            );
        };
        (Some((usage, lease)), handshake)
    } else {
        match handshake(&req) {
            Ok(h) => (None, h),
            Err(e) => return handshake_refusal(&e),
        }
    };
    let (ws, context, tracker) = (ws.clone(), context.clone(), tracker.clone());
    let remote = tickwire_core::http::remote(&req);
    upgrade_with(&mut req, handshake, move |upgraded| {
        let json = JsonTransport {
            endpoint: "ws",
            max_message_bytes: ws.config.max_message_bytes,
            slow_consumer: ws.config.slow_consumer,
            remote,
        };
        let make = move |sub| WsSession::new(ws, sub, keyed);
        json_session(upgraded, &context, json, make, tracker)
    })
}

/// Sends `server_status` to every `/ws` connection every
/// `status_interval_secs`, until the gateway shuts down.
pub async fn status_task(ws: Arc<Ws>, context: Context) {
    let period = Duration::from_secs(ws.config.status_interval_secs);
    let encode = || codec::encode_status(&ws.market.status(context.connections.open()));
    housekeeping(
        &ws.feeds,
        WS_STATUS,
        period,
        context.shutdown.clone(),
        encode,
    )
    .await;
}

/// `/ws`'s part of the fan-out: ticks and trades to the price topics, books
/// (cut to `book_depth` levels a side) and signals to theirs, each encoded
/// once per topic with subscribers.
#[derive(Debug)]
pub struct WsFeed {
    feeds: Arc<Index>,
    book_depth: usize,
    /// A reused buffer for topic names.
    name: String,
}

impl WsFeed {
    /// A feed that encodes prices, books (to `book_depth` levels) and
    /// signals into the topics of `feeds`.
    pub fn new(feeds: Arc<Index>, book_depth: usize) -> WsFeed {
        WsFeed {
            feeds,
            book_depth,
            name: String::with_capacity(64),
        }
    }
}

impl Feed<Update> for WsFeed {
    fn on_update(&mut self, update: &Update) {
        let (feeds, name) = (&self.feeds, &mut self.name);
        match update {
            Update::Tick(tick) => deliver(feeds, name, Topic::WsPrice, &tick.instrument, || {
                codec::encode_tick(tick)
            }),
            Update::Trade(trade) => deliver(feeds, name, Topic::WsPrice, &trade.instrument, || {
                codec::encode_trade(trade)
            }),
            Update::Book(book) => {
                let levels = self.book_depth;
                deliver(feeds, name, Topic::WsBook, &book.instrument, || {
                    codec::encode_book(book, levels)
                });
            }
            Update::Signal(signal) => {
                deliver(feeds, name, Topic::WsSignal, &signal.instrument, || {
                    codec::encode_signal(signal)
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
pub struct Ws {
    /// The endpoint's configuration section.
    pub config: WsConfig,
    /// The symbol table subscriptions are checked against.
    pub market: Arc<Market>,
    /// The index the endpoint's topics live in.
    pub feeds: Arc<Index>,
}

/// The protocol state of one `/ws` connection.
pub struct WsSession {
    state: Arc<Ws>,
    sub: Subscriber,
    /// Subscriptions by `/ws` symbol key (`btc`): the instrument and its
    /// channels. A vector kept to its length, not a hash table: there are at
    /// most `subscription_limit` (100 by default), so a scan is cheap, and
    /// a connection with one subscription holds one entry's bytes rather
    /// than a table's first four buckets.
    subscriptions: Vec<(Box<str>, Instrument, Channels)>,
    rate: MessageRate,
    /// The key of a keyed connection, and its open-connection slot.
    key: Option<(Arc<KeyUsage>, Lease)>,
}

impl std::fmt::Debug for WsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsSession")
            .field("connection", &self.sub.id())
            .field("subscriptions", &self.subscriptions.len())
            .finish_non_exhaustive()
    }
}

impl WsSession {
    fn new(state: Arc<Ws>, sub: Subscriber, key: Option<(Arc<KeyUsage>, Lease)>) -> Self {
        state.feeds.subscribe(WS_STATUS, sub.clone());
        if let Some((usage, _)) = &key {
            sub.set_principal(usage.name());
        }
        let rate = MessageRate::new(&state.config, Instant::now());
        debug!(connection = sub.id(), "/ws connected");
        WsSession {
            state,
            sub,
            subscriptions: Vec::new(),
            rate,
            key,
        }
    }

    fn config(&self) -> &WsConfig {
        &self.state.config
    }

    fn error(e: &WsError) -> Bytes {
        codec::encode_error(e)
    }

    /// Where the subscription of symbol key `key` is, if the connection has it.
    fn position(&self, key: &str) -> Option<usize> {
        self.subscriptions.iter().position(|(k, ..)| &**k == key)
    }

    fn subscribe(&mut self, symbols: &[String], channels: Channels) -> Step {
        // Counted before any lookup: the distinct symbols this connection
        // would hold.
        let limit = self.config().subscription_limit;
        let new: HashSet<String> = symbols
            .iter()
            .map(|s| codec::symbol_key(s).into_owned())
            .filter(|k| self.position(k).is_none())
            .collect();
        let requested = self.subscriptions.len() + new.len();
        if requested > limit {
            return Step::Reply(Self::error(&WsError::SubscriptionLimit {
                requested,
                max: limit,
            }));
        }
        let mut errors = Vec::new();
        for symbol in symbols {
            let key = codec::symbol_key(symbol);
            let held = self.position(&key);
            let (instrument, old) = match held.map(|i| &self.subscriptions[i]) {
                Some((_, instrument, old)) => (instrument.clone(), *old),
                None => match self.state.market.ws_symbol(symbol) {
                    Some(instrument) => (instrument, Channels::NONE),
                    None => {
                        errors.push(Self::error(&WsError::InvalidSymbol {
                            symbol: symbol.clone(),
                        }));
                        continue;
                    }
                },
            };
            for channel in channels.difference(old).iter() {
                let topic = topic_of(Topic::of_channel(channel), &instrument);
                self.state.feeds.subscribe(&topic, self.sub.clone());
            }
            match held {
                Some(i) => self.subscriptions[i].2 = old | channels,
                None => self
                    .subscriptions
                    .push((key.into(), instrument, old | channels)),
            }
        }
        self.subscriptions.shrink_to_fit();
        replies(errors)
    }

    fn unsubscribe(&mut self, symbols: &[String], channels: Channels) -> Step {
        let mut errors = Vec::new();
        for symbol in symbols {
            let key = codec::symbol_key(symbol);
            let Some(i) = self.position(&key) else {
                if self.state.market.ws_symbol(symbol).is_none() {
                    errors.push(Self::error(&WsError::InvalidSymbol {
                        symbol: symbol.clone(),
                    }));
                }
                continue;
            };
            let (_, instrument, old) = &self.subscriptions[i];
            let (instrument, old) = (instrument.clone(), *old);
            for channel in old.intersection(channels).iter() {
                let topic = topic_of(Topic::of_channel(channel), &instrument);
                self.state.feeds.unsubscribe(&topic, &self.sub);
            }
            let left = old.difference(channels);
            if left.is_empty() {
                self.subscriptions.swap_remove(i);
            } else {
                self.subscriptions[i].2 = left;
            }
        }
        self.subscriptions.shrink_to_fit();
        replies(errors)
    }
}

fn replies(mut all: Vec<Bytes>) -> Step {
    match all.len() {
        0 => Step::Nothing,
        1 => Step::Reply(all.remove(0)),
        _ => Step::Replies(all),
    }
}

impl Protocol for WsSession {
    fn subscriptions(&self) -> Option<usize> {
        Some(self.subscriptions.len())
    }

    fn on_message(&mut self, _kind: MessageKind, payload: &[u8], now: Instant) -> Step {
        match self.rate.check(now) {
            Rate::Within => {}
            Rate::Over => {
                return Step::Reply(Self::error(&WsError::RateLimited {
                    max_per_second: self.config().messages_per_second,
                }));
            }
            Rate::Flooding => {
                warn!(
                    connection = self.sub.id(),
                    seconds = self.config().flood_close_secs,
                    max_per_second = self.config().messages_per_second,
                    "/ws client keeps flooding; closing"
                );
                return Step::Close {
                    code: close_code::POLICY,
                    reason: "rate limit exceeded".to_owned(),
                    last: Some(Self::error(&WsError::RateLimited {
                        max_per_second: self.config().messages_per_second,
                    })),
                };
            }
        }
        let command = match codec::parse_limited(payload, self.config().max_message_bytes) {
            Ok(command) => command,
            Err(e) => {
                debug!(connection = self.sub.id(), error = %e, "invalid /ws message");
                return Step::Reply(Self::error(&e));
            }
        };
        if !matches!(command, WsCommand::Ping) {
            if let Some((usage, _)) = &self.key {
                if !usage.take(now) {
                    return Step::Reply(Self::error(&WsError::RateLimited {
                        max_per_second: self.config().messages_per_second,
                    }));
                }
            }
        }
        match command {
            WsCommand::Subscribe { symbols, channels } => self.subscribe(&symbols, channels),
            WsCommand::Unsubscribe { symbols, channels } => self.unsubscribe(&symbols, channels),
            WsCommand::Ping => Step::Reply(codec::encode_pong(tickwire_model::now_millis())),
        }
    }

    /// Seed 001: closed "after 5 minutes of inactivity (unless ping/pong is
    /// active)": a client message or ping keeps the connection.
    fn deadline(&self, activity: &Activity) -> Instant {
        activity.last_message + Duration::from_secs(self.config().idle_timeout_secs)
    }

    fn idle_close(&self) -> (u16, &'static str) {
        (close_code::NORMAL, "idle timeout")
    }

    fn on_close(&mut self, _ending: tickwire_core::Ending) {
        self.state.feeds.unsubscribe_all(&self.sub);
    }
}

/// Whether a client message is within the message rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rate {
    /// Within: handle it.
    Within,
    /// Over the rate this second: answer `rate_limited`.
    Over,
    /// Over the rate for too many consecutive seconds: close.
    Flooding,
}

/// Counts client messages per second of the connection (sans-IO: the time
/// is an argument).
#[derive(Debug)]
struct MessageRate {
    per_second: u32,
    close_after: u32,
    origin: Instant,
    /// The second (since `origin`) being counted.
    second: u64,
    count: u32,
    /// Whether `second` went over the rate.
    over: bool,
    /// Consecutive seconds over the rate, `second` included.
    streak: u32,
}

impl MessageRate {
    fn new(config: &WsConfig, now: Instant) -> MessageRate {
        MessageRate {
            per_second: config.messages_per_second,
            close_after: config.flood_close_secs,
            origin: now,
            second: 0,
            count: 0,
            over: false,
            streak: 0,
        }
    }

    fn check(&mut self, now: Instant) -> Rate {
        let second = now.saturating_duration_since(self.origin).as_secs();
        if second != self.second {
            if !(self.over && second == self.second + 1) {
                self.streak = 0;
            }
            self.second = second;
            self.count = 0;
            self.over = false;
        }
        self.count = self.count.saturating_add(1);
        if self.count <= self.per_second {
            return Rate::Within;
        }
        if !self.over {
            self.over = true;
            self.streak += 1;
        }
        if self.streak >= self.close_after {
            Rate::Flooding
        } else {
            Rate::Over
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_core::testing::{self, subscriber};

    use tickwire_core::Activity;

    /// A `/ws` endpoint that knows BTC/USD and ETH/USD, and one public
    /// connection's session; no socket, no gateway.
    fn session(config: WsConfig) -> (Arc<Ws>, WsSession) {
        let market = Arc::new(Market::new());
        market.learn(&Instrument::crypto("BTC/USD"));
        market.learn(&Instrument::crypto("ETH/USD"));
        let state = Arc::new(Ws {
            config,
            market,
            feeds: Arc::new(Index::new()),
        });
        let sub = subscriber(7, 0);
        let session = WsSession::new(state.clone(), sub, None);
        (state, session)
    }

    fn members(state: &Ws, topic: &str) -> usize {
        testing::members(&state.feeds, topic)
    }

    fn json(bytes: &Bytes) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn subscribing_joins_each_channels_topic_and_is_silent() {
        let (state, mut ws) = session(WsConfig::default());
        let now = Instant::now();
        assert_eq!(
            members(&state, WS_STATUS),
            1,
            "every connection gets server_status"
        );
        let msg = br#"{"type":"subscribe","symbols":["btc"],"channels":["price","orderbook"]}"#;
        assert_eq!(ws.on_message(MessageKind::Text, msg, now), Step::Nothing);
        assert_eq!(members(&state, "ws:price:CRYPTO:BTC/USD"), 1);
        assert_eq!(members(&state, "ws:book:CRYPTO:BTC/USD"), 1);
        assert_eq!(members(&state, "ws:signal:CRYPTO:BTC/USD"), 0);
        let msg = br#"{"type":"unsubscribe","symbols":["btc"],"channels":["price"]}"#;
        assert_eq!(ws.on_message(MessageKind::Text, msg, now), Step::Nothing);
        assert_eq!(members(&state, "ws:price:CRYPTO:BTC/USD"), 0);
        assert_eq!(members(&state, "ws:book:CRYPTO:BTC/USD"), 1);
        ws.on_close(tickwire_core::Ending::Closed);
        assert_eq!(members(&state, "ws:book:CRYPTO:BTC/USD"), 0);
        assert_eq!(members(&state, WS_STATUS), 0);
    }

    #[test]
    fn unknown_symbols_and_the_subscription_limit_are_answered() {
        let (state, mut ws) = session(WsConfig {
            subscription_limit: 1,
            ..WsConfig::default()
        });
        let now = Instant::now();
        let Step::Reply(error) = ws.on_message(
            MessageKind::Text,
            br#"{"type":"subscribe","symbols":["xyz"]}"#,
            now,
        ) else {
            panic!("an error reply");
        };
        assert_eq!(json(&error)["code"], "invalid_symbol");
        let Step::Reply(error) = ws.on_message(
            MessageKind::Text,
            br#"{"type":"subscribe","symbols":["btc","eth"]}"#,
            now,
        ) else {
            panic!("an error reply");
        };
        assert_eq!(json(&error)["code"], "subscription_limit");
        assert_eq!(
            members(&state, "ws:price:CRYPTO:BTC/USD"),
            0,
            "refused whole"
        );
    }

    #[test]
    fn a_flood_is_answered_then_closed() {
        let (_state, mut ws) = session(WsConfig {
            messages_per_second: 2,
            flood_close_secs: 2,
            ..WsConfig::default()
        });
        let t0 = Instant::now();
        let ping = br#"{"type":"ping"}"#;
        let at = |s: u64| t0 + Duration::from_secs(s);
        for second in 0..2 {
            for _ in 0..2 {
                let Step::Reply(pong) = ws.on_message(MessageKind::Text, ping, at(second)) else {
                    panic!("a pong");
                };
                assert_eq!(json(&pong)["type"], "pong");
            }
            let over = ws.on_message(MessageKind::Text, ping, at(second));
            match (second, over) {
                (0, Step::Reply(error)) => assert_eq!(json(&error)["code"], "rate_limited"),
                (1, Step::Close { code, last, .. }) => {
                    assert_eq!(code, close_code::POLICY);
                    assert_eq!(json(&last.unwrap())["code"], "rate_limited");
                }
                (_, other) => panic!("second {second}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_client_message_keeps_the_connection_for_idle_timeout_secs() {
        let (_state, ws) = session(WsConfig {
            idle_timeout_secs: 300,
            ..WsConfig::default()
        });
        let t0 = Instant::now();
        let activity = Activity {
            last_frame: t0 + Duration::from_secs(100),
            last_message: t0,
        };
        assert_eq!(ws.deadline(&activity), t0 + Duration::from_secs(300));
        assert_eq!(ws.idle_close(), (close_code::NORMAL, "idle timeout"));
    }

    fn rate(per_second: u32, close_after: u32, t0: Instant) -> MessageRate {
        MessageRate::new(
            &WsConfig {
                messages_per_second: per_second,
                flood_close_secs: close_after,
                ..WsConfig::default()
            },
            t0,
        )
    }

    #[test]
    fn messages_over_the_rate_are_refused_within_their_second() {
        let t0 = Instant::now();
        let mut r = rate(2, 3, t0);
        assert_eq!(r.check(t0), Rate::Within);
        assert_eq!(r.check(t0), Rate::Within);
        assert_eq!(r.check(t0), Rate::Over);
        assert_eq!(r.check(t0 + Duration::from_millis(999)), Rate::Over);
        // A new second starts afresh.
        assert_eq!(r.check(t0 + Duration::from_secs(1)), Rate::Within);
    }

    #[test]
    fn consecutive_seconds_over_the_rate_are_flooding() {
        let t0 = Instant::now();
        let mut r = rate(1, 3, t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut verdicts = Vec::new();
        for s in 0..3 {
            verdicts.push(r.check(at(s)));
            verdicts.push(r.check(at(s)));
        }
        assert_eq!(
            verdicts,
            [
                Rate::Within,
                Rate::Over,
                Rate::Within,
                Rate::Over,
                Rate::Within,
                Rate::Flooding
            ]
        );
    }

    #[test]
    fn a_quiet_second_resets_the_streak() {
        let t0 = Instant::now();
        let mut r = rate(1, 2, t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        r.check(at(0));
        assert_eq!(r.check(at(0)), Rate::Over);
        // Second 1 stays within the rate, second 2 is over again: no streak.
        assert_eq!(r.check(at(1)), Rate::Within);
        r.check(at(2));
        assert_eq!(r.check(at(2)), Rate::Over);
        // A gap of a whole second also resets it.
        r.check(at(4));
        assert_eq!(r.check(at(4)), Rate::Over);
        r.check(at(5));
        assert_eq!(r.check(at(5)), Rate::Flooding);
    }
}
