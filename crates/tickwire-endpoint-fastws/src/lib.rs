//! `/api/v1/ws`: the FastWS envelope of seed 004 ("WebSocket Real-Time Data
//! Streaming"), live OHLCV bars, and the routes of its AsyncAPI document.
//!
//! The codec, the operation table, the timers and the document are
//! [`tickwire_fastws`]'s; the bars are [`tickwire_bars`]'s. This module wires
//! them to the gateway's shared connection machinery ([`tickwire_core::session`]:
//! bounded queue, batching writer, slow-consumer drop, pings, shutdown).
//!
//! # The connection
//!
//! The endpoint is public, as in the seed ("Current: No authentication
//! required"). Every text frame is an envelope `{"type", "payload"}`:
//!
//! - `bars.subscribe` adds the connection to the topic
//!   `bars:{SYMBOL}:{RESOLUTION}` and is answered with
//!   `bars.subscribe.response`; `bars.unsubscribe` removes it and is answered
//!   with `bars.unsubscribe.response`. Both payload shapes are accepted
//!   (`{"symbol", "params": {"resolution"}}` and `{"symbol", "resolution"}`);
//!   the resolution defaults to `1`.
//! - A symbol is an instrument's canonical symbol (`AAPL`, `BTC/USD`), exact.
//!   FastWS itself checks nothing; here a symbol no adapter knows is answered
//!   with the operation's reply with `"status": "error"` and the message
//!   `Unknown symbol {SYMBOL}`, and nothing is subscribed. Of several
//!   instruments with one symbol on different exchanges, the first known one
//!   is served.
//! - Any frame that does not validate closes the connection with 1003 and
//!   FastWS's reason: `Could not validate payload` (not JSON, no `type`, a
//!   missing or mistyped field, an unknown resolution), `No matching type`
//!   (an unknown operation, or one only the server sends), `Could not decode
//!   message` (a binary frame).
//! - The client must send a message every `heartbeat_secs` (any data
//!   message; WebSocket pings, and anything the server sends, do not count),
//!   and the connection lives at most `lifespan_secs`; either limit closes it
//!   with 1003 `Connection timed out. Heartbeat interval 30.0. Max connection
//!   lifespan 3600.0` (the configured values, as FastWS prints them).
//!
//! # Bars
//!
//! The fan-out feeds every tick of every adapter to one [`BarFeed`], which
//! keeps the current bar of every instrument at every resolution (UTC
//! buckets: see [`tickwire_bars::Resolution`]) whether or not anybody is
//! subscribed, so that a late subscriber gets a bar that counts the whole
//! bucket. For each bar a tick changes, if the bar's topic has subscribers,
//! `bars.update` is encoded once and every subscriber's queue gets the same
//! bytes. Nothing is sent on subscription: the next tick brings the bar.
//! The endpoint's own feed ([`FastWs::bar_feed`]) knows which instruments
//! its clients follow ([`Followed`]): a tick of any other instrument
//! updates its bars and looks up no topic.
//!
//! Topics live in the gateway's feed index under an internal name that
//! includes the exchange (`fastws:bars:NASDAQ:AAPL:1`); the session ends by
//! leaving all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tickwire_bars::{Bar, BarAggregator, Resolution};
use tickwire_fastws::{
    ASYNCAPI_DOCS_PATH, ASYNCAPI_JS_PATH, ASYNCAPI_JSON_PATH, BARS, ClientOp, DOCS_HTML, DOCS_JS,
    Info, Timers, WS_PATH, encode_update,
};
use tickwire_model::{BarSeed, Instrument, PriceTick, SeedBar, Trade, Update};
use tickwire_websocket::MessageKind;
use tracing::debug;

use tickwire_config::FastWsConfig;
use tickwire_core::Tracker;
use tickwire_core::http::{
    Body, asset, handshake, handshake_refusal, json_bytes, json_error, method_not_allowed,
    upgrade_with,
};
use tickwire_core::session::{Activity, Protocol, Step};
use tickwire_core::{Feed, Index, Kind, Subscriber, publish_text};
use tickwire_services::http::{JsonTransport, json_session};
use tickwire_services::{Context, Market};

/// Whether `path` is one of this module's routes: the WebSocket endpoint and
/// the three routes of its documentation.
pub fn serves(path: &str) -> bool {
    matches!(
        path,
        WS_PATH | ASYNCAPI_DOCS_PATH | ASYNCAPI_JS_PATH | ASYNCAPI_JSON_PATH
    )
}

/// Answers a request on one of the routes [`serves`] names.
///
/// | Route                        | Answer                                                 |
/// |------------------------------|--------------------------------------------------------|
/// | `GET /api/v1/ws`             | the WebSocket upgrade                                  |
/// | `GET /api/v1/ws/asyncapi`    | the documentation page, `text/html`                    |
/// | `GET /api/v1/ws/asyncapi.js` | its script, `text/javascript`                          |
/// | `GET /api/v1/ws/asyncapi.json` | the AsyncAPI 2.4.0 document, `application/json`      |
pub fn handle(
    mut req: Request<Incoming>,
    fastws: &Arc<FastWs>,
    context: &Context,
    tracker: &Tracker,
) -> Response<Body> {
    if req.method() != Method::GET {
        return method_not_allowed();
    }
    match req.uri().path() {
        WS_PATH => upgrade(&mut req, fastws, context, tracker),
        ASYNCAPI_DOCS_PATH => asset(DOCS_HTML, "text/html; charset=utf-8"),
        ASYNCAPI_JS_PATH => asset(DOCS_JS, "text/javascript; charset=utf-8"),
        ASYNCAPI_JSON_PATH => json_bytes(StatusCode::OK, document()),
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The AsyncAPI document, generated from the operation table once.
fn document() -> Bytes {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            let doc = BARS.asyncapi(&Info::default());
            Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
        })
        .clone()
}

/// Upgrades a handshake on `/api/v1/ws` and runs the session.
fn upgrade(
    req: &mut Request<Incoming>,
    fastws: &Arc<FastWs>,
    context: &Context,
    tracker: &Tracker,
) -> Response<Body> {
    let (fastws, context, tracker) = (fastws.clone(), context.clone(), tracker.clone());
    let handshake = match handshake(req) {
        Ok(h) => h,
        Err(e) => return handshake_refusal(&e),
    };
    let remote = tickwire_core::http::remote(req);
    upgrade_with(req, handshake, move |upgraded| {
        let json = JsonTransport {
            endpoint: "fastws",
            max_message_bytes: fastws.config.max_message_bytes,
            slow_consumer: fastws.config.slow_consumer,
            remote,
        };
        let make = move |sub| FastWsSession::new(fastws, sub, Instant::now());
        json_session(upgraded, &context, json, make, tracker)
    })
}

/// Writes the internal feed-index topic of `instrument`'s bars at
/// `resolution` into `buf` (cleared first): `fastws:bars:NASDAQ:AAPL:1`.
fn bars_topic(buf: &mut String, instrument: &Instrument, resolution: Resolution) {
    buf.clear();
    buf.push_str("fastws:bars:");
    buf.push_str(&instrument.exchange);
    buf.push(':');
    buf.push_str(&instrument.symbol);
    buf.push(':');
    buf.push_str(resolution.as_str());
}

/// The instrument of a bars topic (`fastws:bars:NASDAQ:AAPL:1`), `None`
/// for any other name.
pub fn instrument_of_topic(name: &str) -> Option<Instrument> {
    let rest = name.strip_prefix("fastws:bars:")?;
    let (instrument, _resolution) = rest.rsplit_once(':')?;
    let (exchange, symbol) = instrument.split_once(':')?;
    (!exchange.is_empty() && !symbol.is_empty()).then(|| Instrument::new(symbol, exchange))
}

/// What the endpoint's connections share: its configuration, the symbol
/// table and the feed index its bars' topics live in. Nothing else of the
/// gateway, so that a session can be driven by a test alone.
#[derive(Debug)]
pub struct FastWs {
    /// The endpoint's `[fastws]` configuration.
    pub config: FastWsConfig,
    /// The symbol table subscriptions are checked against.
    pub market: Arc<Market>,
    /// The index the bars' topics live in.
    pub feeds: Arc<Index>,
    /// The close reason of a connection that timed out, the same for all
    /// (written once, not kept by each connection).
    timeout_reason: String,
    /// The instruments the endpoint's connections follow the bars of.
    followed: Arc<Followed>,
}

/// The instruments whose bars some connection follows, each with how many
/// bar topics (connection and resolution) it is followed in.
///
/// A connection counts a topic here before it enters the topic in the
/// index and uncounts it after it left, so an instrument with a subscriber
/// in the index is always counted: [`BarFeed`] may skip the topics of an
/// instrument that is not, and loses nothing.
#[derive(Debug, Default)]
pub struct Followed(Mutex<HashMap<Instrument, u32>>);

impl Followed {
    /// Whether some connection follows a bar topic of `instrument`.
    pub fn follows(&self, instrument: &Instrument) -> bool {
        tickwire_core::lock(&self.0).contains_key(instrument)
    }

    /// How many bar topics of `instrument` are followed.
    pub fn count(&self, instrument: &Instrument) -> u32 {
        tickwire_core::lock(&self.0)
            .get(instrument)
            .copied()
            .unwrap_or(0)
    }

    fn add(&self, instrument: &Instrument) {
        *tickwire_core::lock(&self.0)
            .entry(instrument.clone())
            .or_insert(0) += 1;
    }

    fn remove(&self, instrument: &Instrument) {
        let mut counts = tickwire_core::lock(&self.0);
        if let Some(n) = counts.get_mut(instrument) {
            *n -= 1;
            if *n == 0 {
                counts.remove(instrument);
            }
        }
    }
}

impl FastWs {
    /// The feed of the endpoint's bars, for the fan-out: a [`BarFeed`] over
    /// the endpoint's index that skips the topics of instruments no
    /// connection of this endpoint follows.
    pub fn bar_feed(&self) -> BarFeed {
        BarFeed {
            followed: Some(self.followed.clone()),
            ..BarFeed::new(self.feeds.clone())
        }
    }

    /// What the endpoint's connections follow.
    pub fn followed(&self) -> &Followed {
        &self.followed
    }

    /// Whether a connection of the endpoint follows an instrument's bars
    /// (any resolution), for the symbol table's forgetting: the same
    /// answer [`BarFeed`] acts on, one lookup.
    pub fn interest(&self) -> tickwire_services::market::Interest {
        let followed = self.followed.clone();
        Box::new(move |instrument| followed.follows(instrument))
    }

    /// The endpoint of `config`, checking subscriptions against `market`,
    /// its bars' topics in `feeds`.
    pub fn new(config: FastWsConfig, market: Arc<Market>, feeds: Arc<Index>) -> FastWs {
        let timeout_reason =
            tickwire_fastws::timeout_reason(Some(config.heartbeat()), Some(config.lifespan()));
        FastWs {
            followed: Arc::default(),
            config,
            market,
            feeds,
            timeout_reason,
        }
    }
}

/// The protocol state of one `/api/v1/ws` connection.
pub struct FastWsSession {
    state: Arc<FastWs>,
    sub: Subscriber,
    timers: Timers,
    /// Bar topics followed.
    subscribed: usize,
}

impl std::fmt::Debug for FastWsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastWsSession")
            .field("connection", &self.sub.id())
            .finish_non_exhaustive()
    }
}

impl FastWsSession {
    fn new(state: Arc<FastWs>, sub: Subscriber, now: Instant) -> FastWsSession {
        let config = &state.config;
        let timers = Timers::new(Some(config.heartbeat()), Some(config.lifespan()), now);
        debug!(connection = sub.id(), "{WS_PATH} connected");
        FastWsSession {
            state,
            sub,
            timers,
            subscribed: 0,
        }
    }

    /// Applies a decoded operation and returns its reply.
    fn apply(&mut self, op: &ClientOp) -> Option<Bytes> {
        let request = op.subscription();
        let Some(instrument) = self.state.market.by_symbol(&request.symbol) else {
            debug!(
                connection = self.sub.id(),
                symbol = %request.symbol,
                op = op.type_name(),
                "unknown symbol"
            );
            let message = format!("Unknown symbol {}", request.symbol);
            return BARS.error_reply(op, &message);
        };
        // Written for this request only: a connection keeps no buffer for it.
        let mut topic = String::new();
        bars_topic(&mut topic, &instrument, request.resolution);
        match op {
            ClientOp::Subscribe(_) => {
                // Counted before it is in the index (see `Followed`).
                self.state.followed.add(&instrument);
                if self.state.feeds.subscribe(&topic, self.sub.clone()).added {
                    self.subscribed += 1;
                } else {
                    self.state.followed.remove(&instrument);
                }
            }
            ClientOp::Unsubscribe(_) => {
                if self.state.feeds.unsubscribe(&topic, &self.sub).removed {
                    self.subscribed -= 1;
                    self.state.followed.remove(&instrument);
                }
            }
            // A future operation this endpoint does not serve yet: refuse it
            // in its own reply rather than pretending it worked.
            _ => return BARS.error_reply(op, "Operation not supported"),
        }
        debug!(connection = self.sub.id(), op = op.type_name(), %topic, "applied");
        BARS.reply(op)
    }
}

impl Protocol for FastWsSession {
    fn subscriptions(&self) -> Option<usize> {
        Some(self.subscribed)
    }

    fn on_message(&mut self, kind: MessageKind, payload: &[u8], now: Instant) -> Step {
        // FastWS: any message received resets the heartbeat, valid or not.
        self.timers.on_receive(now);
        let kind = match kind {
            MessageKind::Text => tickwire_fastws::FrameKind::Text,
            MessageKind::Binary => tickwire_fastws::FrameKind::Binary,
        };
        match BARS.decode(kind, payload) {
            Ok(op) => match self.apply(&op) {
                Some(reply) => Step::Reply(reply),
                None => Step::Nothing,
            },
            Err(e) => {
                debug!(connection = self.sub.id(), error = %e, "invalid envelope; closing");
                let close = e.close();
                Step::Close {
                    code: close.code,
                    reason: close.reason.into_owned(),
                    last: None,
                }
            }
        }
    }

    /// The earlier of the heartbeat and lifespan deadlines. WebSocket pings
    /// and frames the server sends do not move it, so `activity` is unused.
    fn deadline(&self, _activity: &Activity) -> Instant {
        self.timers
            .deadline()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }

    fn idle_close(&self) -> (u16, &str) {
        (
            tickwire_fastws::CLOSE_UNSUPPORTED_DATA,
            &self.state.timeout_reason,
        )
    }

    fn on_close(&mut self, _ending: tickwire_core::Ending) {
        for left in self.state.feeds.unsubscribe_all(&self.sub) {
            if let Some(instrument) = instrument_of_topic(&left.name) {
                self.state.followed.remove(&instrument);
            }
        }
    }
}

/// The bars of every instrument, fed by the fan-out with every tick.
///
/// Owned by the fan-out task. For each bar a tick changes, the
/// `bars.update` frame is encoded once if its topic has subscribers. The
/// bars live behind a lock that only the fan-out task and a cluster's
/// seeds take ([`BarFeed::state`]).
#[derive(Debug)]
pub struct BarFeed {
    feeds: Arc<Index>,
    bars: Arc<Mutex<BarAggregator>>,
    /// A reused buffer for topic names.
    topic: String,
    /// What the endpoint's connections follow, for the endpoint's own feed;
    /// without it, every changed bar's topic is looked up.
    followed: Option<Arc<Followed>>,
}

/// The bars a [`BarFeed`] keeps, read from elsewhere: what a cluster node
/// sends a node that starts following an instrument.
#[derive(Debug, Clone)]
pub struct BarState(Arc<Mutex<BarAggregator>>);

impl BarState {
    /// The current bars of `instrument` at every resolution, if it traded.
    pub fn seed_of(&self, instrument: &Instrument) -> Option<BarSeed> {
        let bars: Vec<SeedBar> = tickwire_core::lock(&self.0)
            .export(instrument)
            .into_iter()
            .map(|(resolution, bar, first_ts, last_ts)| SeedBar {
                resolution: Arc::from(resolution.as_str()),
                time: bar.time,
                open: bar.open,
                high: bar.high,
                low: bar.low,
                close: bar.close,
                volume: bar.volume,
                first_ts,
                last_ts,
            })
            .collect();
        (!bars.is_empty()).then(|| BarSeed {
            instrument: instrument.clone(),
            bars,
        })
    }
}

impl BarFeed {
    /// Bars at every resolution of [`Resolution::ALL`], each changed bar's
    /// topic looked up in `feeds` (the endpoint's own feed,
    /// [`FastWs::bar_feed`], looks up only those of followed instruments).
    pub fn new(feeds: Arc<Index>) -> BarFeed {
        BarFeed {
            feeds,
            bars: Arc::new(Mutex::new(BarAggregator::all())),
            topic: String::with_capacity(64),
            followed: None,
        }
    }

    /// A handle on the bars, for a cluster's seeds.
    pub fn state(&self) -> BarState {
        BarState(self.bars.clone())
    }

    /// Applies `tick` and sends every bar it changed to the subscribers of
    /// that bar's topic. Returns how many queues took an update.
    pub fn on_tick(&mut self, tick: &PriceTick) -> usize {
        let (price, quantity) = (tick.price, tick.last_quantity);
        self.on_price(&tick.instrument, price, quantity, tick.timestamp_ms)
    }

    /// Applies an LTP-only `trade` (its quantity, 0 when unknown, adds to the
    /// volume) as [`on_tick`](Self::on_tick) does.
    pub fn on_trade(&mut self, trade: &Trade) -> usize {
        let quantity = trade.quantity.unwrap_or(0.0);
        self.on_price(&trade.instrument, trade.price, quantity, trade.timestamp_ms)
    }

    /// Takes the bars of a seed (the ingesting node's, in a cluster) in
    /// place of those kept, and sends each taken one to its topic's
    /// subscribers. Returns how many queues took an update.
    pub fn on_seed(&mut self, seed: &BarSeed) -> usize {
        let mut delivered = 0;
        let mut bars = tickwire_core::lock(&self.bars);
        for seeded in &seed.bars {
            let Some(resolution) = Resolution::parse(&seeded.resolution) else {
                continue;
            };
            let bar = Bar {
                time: seeded.time,
                open: seeded.open,
                high: seeded.high,
                low: seeded.low,
                close: seeded.close,
                volume: seeded.volume,
            };
            if !bars.seed(
                &seed.instrument,
                resolution,
                bar,
                seeded.first_ts,
                seeded.last_ts,
            ) {
                continue;
            }
            delivered += send_bar(
                &self.feeds,
                &mut self.topic,
                &seed.instrument,
                resolution,
                &bar,
            );
        }
        delivered
    }

    fn on_price(
        &mut self,
        instrument: &Instrument,
        price: f64,
        quantity: f64,
        ts_ms: i64,
    ) -> usize {
        let mut delivered = 0;
        let mut bars = tickwire_core::lock(&self.bars);
        let changed = bars.on_tick(instrument, price, quantity, ts_ms);
        // Kept whoever follows it; named and looked up only if somebody may.
        if let Some(followed) = &self.followed {
            if !followed.follows(instrument) {
                return 0;
            }
        }
        for (resolution, bar) in changed {
            delivered += send_bar(&self.feeds, &mut self.topic, instrument, resolution, bar);
        }
        delivered
    }
}

/// Sends `bar` to the subscribers of its topic, encoded once, if it has
/// any. Returns how many queues took it.
fn send_bar(
    feeds: &Index,
    topic: &mut String,
    instrument: &Instrument,
    resolution: Resolution,
    bar: &Bar,
) -> usize {
    bars_topic(topic, instrument, resolution);
    let Some(id) = feeds.lookup(topic) else {
        return 0;
    };
    if feeds.subscriber_count(id) == 0 {
        return 0;
    }
    publish_text(feeds, id, &encode_update(bar), Kind::Data)
}

impl Feed<Update> for BarFeed {
    fn on_update(&mut self, update: &Update) {
        match update {
            Update::Tick(tick) => {
                self.on_tick(tick);
            }
            Update::Trade(trade) => {
                self.on_trade(trade);
            }
            Update::Bars(seed) => {
                self.on_seed(seed);
            }
            Update::Forget(gone) => {
                let mut bars = tickwire_core::lock(&self.bars);
                for instrument in gone.iter() {
                    bars.forget(instrument);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_core::testing::{self, subscriber};

    /// A FastWS endpoint that knows AAPL, and one connection's session.
    fn session(config: FastWsConfig, now: Instant) -> (Arc<FastWs>, Subscriber, FastWsSession) {
        let market = Arc::new(Market::new());
        market.learn(&Instrument::new("AAPL", "NASDAQ"));
        let state = Arc::new(FastWs::new(config, market, Arc::new(Index::new())));
        let sub = subscriber(1, 0);
        let session = FastWsSession::new(state.clone(), sub.clone(), now);
        (state, sub, session)
    }

    fn reply(step: Step) -> serde_json::Value {
        match step {
            Step::Reply(bytes) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn members(state: &FastWs, topic: &str) -> usize {
        testing::members(&state.feeds, topic)
    }

    const TOPIC: &str = "fastws:bars:NASDAQ:AAPL:5";

    #[test]
    fn subscribe_and_unsubscribe_join_and_leave_the_bar_topic() {
        let now = Instant::now();
        let (state, _sub, mut session) = session(FastWsConfig::default(), now);
        let sub =
            br#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":{"resolution":"5"}}}"#;
        let answer = reply(session.on_message(MessageKind::Text, sub, now));
        assert_eq!(answer["type"], "bars.subscribe.response", "{answer}");
        assert_eq!(members(&state, TOPIC), 1);
        let unsub = br#"{"type":"bars.unsubscribe","payload":{"symbol":"AAPL","resolution":"5"}}"#;
        let answer = reply(session.on_message(MessageKind::Text, unsub, now));
        assert_eq!(answer["type"], "bars.unsubscribe.response", "{answer}");
        assert_eq!(members(&state, TOPIC), 0);
    }

    #[test]
    fn an_unknown_symbol_is_refused_in_the_reply_and_subscribes_nothing() {
        let now = Instant::now();
        let (state, _sub, mut session) = session(FastWsConfig::default(), now);
        let sub = br#"{"type":"bars.subscribe","payload":{"symbol":"NOPE","resolution":"1"}}"#;
        let answer = reply(session.on_message(MessageKind::Text, sub, now));
        assert_eq!(answer["payload"]["status"], "error", "{answer}");
        assert!(
            answer.to_string().contains("Unknown symbol NOPE"),
            "{answer}"
        );
        assert_eq!(state.feeds.topic_count(), 0);
    }

    #[test]
    fn bad_envelopes_close_with_fastws_reasons() {
        let now = Instant::now();
        for (kind, payload, reason) in [
            (
                MessageKind::Text,
                &b"not json"[..],
                "Could not validate payload",
            ),
            (
                MessageKind::Text,
                br#"{"type":"bars.update","payload":{}}"#,
                "No matching type",
            ),
            (MessageKind::Binary, b"\x00", "Could not decode message"),
        ] {
            let (_state, _sub, mut session) = session(FastWsConfig::default(), now);
            match session.on_message(kind, payload, now) {
                Step::Close {
                    code, reason: got, ..
                } => {
                    assert_eq!(code, tickwire_fastws::CLOSE_UNSUPPORTED_DATA);
                    assert!(got.contains(reason), "{got}");
                }
                other => panic!("expected a close, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_heartbeat_deadline_moves_with_every_message_and_closing_leaves_all_topics() {
        let t0 = Instant::now();
        let config = FastWsConfig {
            heartbeat_secs: 30,
            ..FastWsConfig::default()
        };
        let (state, _sub, mut session) = session(config, t0);
        let activity = tickwire_core::Activity {
            last_frame: t0,
            last_message: t0,
        };
        assert_eq!(session.deadline(&activity), t0 + Duration::from_secs(30));
        let later = t0 + Duration::from_secs(20);
        let msg = br#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","resolution":"5"}}"#;
        session.on_message(MessageKind::Text, msg, later);
        assert_eq!(session.deadline(&activity), later + Duration::from_secs(30));
        assert!(
            session.idle_close().1.contains("Heartbeat interval 30"),
            "{}",
            session.idle_close().1
        );
        assert_eq!(members(&state, TOPIC), 1);
        session.on_close(tickwire_core::Ending::Closed);
        assert_eq!(members(&state, TOPIC), 0);
    }

    #[test]
    fn routes_are_the_documented_ones() {
        for path in [
            "/api/v1/ws",
            "/api/v1/ws/asyncapi",
            "/api/v1/ws/asyncapi.js",
            "/api/v1/ws/asyncapi.json",
        ] {
            assert!(serves(path), "{path}");
        }
        for path in ["/ws", "/api/v1/ws/", "/api/v1/ws/other", "/api/v1"] {
            assert!(!serves(path), "{path}");
        }
    }

    #[test]
    fn internal_topics_name_the_exchange() {
        let mut buf = String::from("stale");
        bars_topic(
            &mut buf,
            &Instrument::new("AAPL", "NASDAQ"),
            Resolution::Min1,
        );
        assert_eq!(buf, "fastws:bars:NASDAQ:AAPL:1");
        assert_eq!(
            instrument_of_topic(&buf),
            Some(Instrument::new("AAPL", "NASDAQ"))
        );
        assert_eq!(instrument_of_topic("ws:price:NASDAQ:AAPL"), None);
        assert_eq!(instrument_of_topic("fastws:bars:AAPL"), None);
        bars_topic(&mut buf, &Instrument::crypto("BTC/USD"), Resolution::Week);
        assert_eq!(buf, "fastws:bars:CRYPTO:BTC/USD:W");
    }

    #[test]
    fn the_document_is_built_once_and_lists_every_operation() {
        let first = document();
        assert_eq!(first.as_ptr(), document().as_ptr());
        let doc: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(doc["asyncapi"], "2.4.0");
        for op in BARS.operations() {
            assert!(
                doc["components"]["messages"].get(op.type_name).is_some(),
                "{}",
                op.type_name
            );
        }
    }

    /// A trade of one unit of `instrument` at `price`, at `ts`.
    fn trade_of(instrument: &Instrument, price: f64, ts: i64) -> Trade {
        Trade {
            instrument: instrument.clone(),
            price,
            quantity: Some(1.0),
            source: Arc::from("test"),
            timestamp_ms: ts,
        }
    }

    #[test]
    fn bars_are_kept_while_nobody_follows_them_and_a_later_subscriber_gets_them_whole() {
        let index = Arc::new(Index::new());
        let mut feed = BarFeed::new(index.clone());
        let aapl = Instrument::new("AAPL", "NASDAQ");
        let at = 1_700_000_000_000;
        let trade = |price: f64, ts: i64| trade_of(&aapl, price, ts);
        // Nobody follows AAPL's bars: nothing is sent, the bar is kept.
        assert_eq!(feed.on_trade(&trade(10.0, at)), 0);
        let sub = subscriber(1, 0);
        index.subscribe("fastws:bars:NASDAQ:AAPL:D", sub.clone());
        assert_eq!(feed.on_trade(&trade(12.0, at + 1_000)), 1);
        let mut batch = tickwire_core::outbox::Batch::default();
        sub.outbox().take_now(&mut batch);
        let frames: Vec<serde_json::Value> = batch
            .data
            .iter()
            .map(|item| match &item.out {
                tickwire_core::Outbound::Frame(frame) => {
                    serde_json::from_slice(tickwire_websocket::frame::payload_of(frame).unwrap())
                        .unwrap()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(frames.len(), 1, "{frames:?}");
        let bar = &frames[0]["payload"];
        assert_eq!(
            (
                bar["open"].as_f64(),
                bar["close"].as_f64(),
                bar["volume"].as_f64()
            ),
            (Some(10.0), Some(12.0), Some(2.0)),
            "the day's bar holds the trade made before anyone followed it: {bar}"
        );
    }

    #[test]
    fn the_endpoints_feed_sends_the_bars_its_connections_follow_and_names_no_other_topic() {
        let now = Instant::now();
        let (state, sub, mut session) = session(FastWsConfig::default(), now);
        let aapl = Instrument::new("AAPL", "NASDAQ");
        let mut feed = state.bar_feed();
        let at = 1_700_000_000_000;
        let trade = |price: f64, ts: i64| trade_of(&aapl, price, ts);
        let send = |session: &mut FastWsSession, text: &str| {
            reply(session.on_message(MessageKind::Text, text.as_bytes(), now))
        };
        let subscribe = |resolution: &str| {
            format!(
                r#"{{"type":"bars.subscribe","payload":{{"symbol":"AAPL","resolution":"{resolution}"}}}}"#
            )
        };
        let interest = state.interest();
        assert!(!state.followed().follows(&aapl));
        assert!(!interest(&aapl));
        // Two resolutions, one of them asked for twice: two topics followed.
        send(&mut session, &subscribe("5"));
        send(&mut session, &subscribe("5"));
        send(&mut session, &subscribe("D"));
        assert_eq!(state.followed().count(&aapl), 2);
        // The symbol table is told the instrument is followed.
        assert!(interest(&aapl));
        // A trade reaches both topics (the session's one queue, twice).
        assert_eq!(feed.on_trade(&trade(10.0, at)), 2);
        let mut batch = tickwire_core::outbox::Batch::default();
        sub.outbox().take_now(&mut batch);
        assert_eq!(batch.data.len(), 2);
        let unsubscribe =
            r#"{"type":"bars.unsubscribe","payload":{"symbol":"AAPL","resolution":"5"}}"#;
        send(&mut session, unsubscribe);
        assert_eq!(state.followed().count(&aapl), 1);
        assert_eq!(feed.on_trade(&trade(11.0, at + 1)), 1);
        // The connection ends: nothing followed, nothing sent, the bars kept.
        session.on_close(tickwire_core::Ending::Vanished);
        assert!(!state.followed().follows(&aapl));
        assert!(!interest(&aapl));
        assert_eq!(state.feeds.topic_count(), 0);
        assert_eq!(feed.on_trade(&trade(12.0, at + 2)), 0);
        let kept = feed.state().seed_of(&aapl).expect("the bars are kept");
        let day = kept.bars.iter().find(|b| &*b.resolution == "D").unwrap();
        assert_eq!((day.open, day.close, day.volume), (10.0, 12.0, 3.0));
    }
}
