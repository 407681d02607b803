//! The broker-adapter market-data proxy (seed 003) over the codec of
//! [`tickwire_proxy`].
//!
//! Served on its own listener ([`ProxyConfig::listen`], where every path
//! upgrades to a WebSocket, as the seed's clients expect) and at [`PATH`] on
//! the main one. Per connection:
//!
//! - `authenticate` checks the API key against the gateway's key ring; the
//!   key must be allowed on the `proxy` endpoint and under its
//!   `max_connections` (an authenticated proxy connection counts against the
//!   key until it closes, like a `/stream` one). Until then, `subscribe`,
//!   `unsubscribe` and `get_broker_info` get `NOT_AUTHENTICATED`;
//! - `subscribe` keys each instrument by (instrument, mode, depth) — a
//!   [`SubKey`] — in the shared [`UpstreamRefs`]: the first client of a key
//!   makes the gateway subscribe it upstream (`EXCHANGE:SYMBOL:MODE[:N]`, on
//!   every adapter that may carry the instrument), the last one leaving
//!   unsubscribes it, and a disconnect releases all of a client's keys. With
//!   `snapshot_on_subscribe`, the reply is followed by the current value of
//!   each instrument from the last-value cache;
//! - bad input of any kind is answered with the reference server's error and
//!   the connection stays usable.
//!
//! Fan-out: every trade, quote and book is merged into the instrument's
//! [`MarketState`] in the cache (a trade changes the cached quote's price and
//! time only), then encoded once per topic it feeds that has subscribers (the
//! higher-mode rule of [`topics_fed`]: a book serves the Depth topics, a quote
//! the Quote and LTP topics, an LTP-only trade the LTP topic alone, each with
//! its own `mode`),
//! and every subscriber's bounded queue gets a clone of the same bytes; a full
//! queue drops that client, as on every endpoint. LTP topics go through a
//! conflating [`Throttle`] (`ltp_throttle_ms` per instrument): the first tick
//! of a quiet instrument goes out at once, later ones within the window
//! replace one another, and a timer task delivers the latest at the window's
//! end, read from the cache.
//!
//! Polling: `GET /api/v1/ltp`, `/api/v1/quote` and `/api/v1/depth`
//! (`?symbol=&exchange=`, and `depth=5|20|30` for depth) answer the cached
//! value as the `market_data` message of that mode, with the same API keys
//! (`Authorization: Bearer <key>` or `?api_key=<key>`).
//!
//! Locks: the subscriptions, the throttle and the cache's shards are each
//! taken for a few non-blocking operations and never held across an `.await`;
//! the only nesting is subscriptions → cache shard (read), in that order.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use futures_util::FutureExt as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tickwire_adapter::{AdapterError, BrokerAdapter};
use tickwire_model::{Instrument, Update};
use tickwire_proxy::{
    AuthOk, BrokerInfo, Depth, Joined, Left, MarketState, Mode, ProxyError, ReplyStyle,
    Request as ProxyRequest, SubKey, Subscribe, SubscribeOutcome, SubscribeReply, Throttle, Topic,
    Unsubscribe, UnsubscribeReply, UpstreamRefs, decode_request, encode_auth_ok,
    encode_broker_info, encode_error, encode_market_data, encode_pong, encode_subscribe,
    encode_supported_brokers, encode_unsubscribe, topics_fed,
};
use tickwire_websocket::MessageKind;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use tickwire_adapter::AdapterStates;
use tickwire_config::{Endpoint, ProxyConfig};
use tickwire_core::Outbound;
use tickwire_core::Tracker;
use tickwire_core::http::{
    Body, handshake, handshake_refusal, json_bytes, json_error, upgrade_with,
};
use tickwire_core::outbox::NO_TOPIC;
use tickwire_core::session::{Activity, Protocol, Step};
use tickwire_core::{Feed, Subscriber, lock};
use tickwire_services::http::{JsonTransport, json_session, query_param};
use tickwire_services::{Context, KeyRejection, KeyRing, KeyUsage, Lease};
use tickwire_websocket::close_code;

/// The proxy's route on the main listener.
pub const PATH: &str = "/proxy";
/// The polling routes.
const LTP_PATH: &str = "/api/v1/ltp";
const QUOTE_PATH: &str = "/api/v1/quote";
const DEPTH_PATH: &str = "/api/v1/depth";
/// The broker name replies carry when [`ProxyConfig::brokers`] is empty.
const DEFAULT_BROKER: &str = "tickwire";

/// An adapter the proxy subscribes through, with the instruments it lists.
struct Upstream {
    adapter: Arc<dyn BrokerAdapter>,
    /// Empty: the adapter may carry any instrument (a bus).
    instruments: HashSet<Instrument>,
}

impl Upstream {
    fn carries(&self, instrument: &Instrument) -> bool {
        self.instruments.is_empty() || self.instruments.contains(instrument)
    }
}

/// Who subscribes to what. Never locked across an `.await`.
#[derive(Default)]
struct Subs {
    refs: UpstreamRefs<u64, SubKey>,
    /// The queue of every connection holding at least one key.
    clients: HashMap<u64, Subscriber>,
}

impl Subs {
    /// Queues `bytes` to every subscriber of `key`.
    fn send(&self, key: &SubKey, bytes: &Bytes) {
        // The text frame is built once for every subscriber of the key.
        let mut frame: Option<Outbound> = None;
        for id in self.refs.subscribers(key) {
            if let Some(sub) = self.clients.get(id) {
                let out = frame.get_or_insert_with(|| Outbound::text(bytes)).clone();
                sub.offer(NO_TOPIC, out);
            }
        }
    }
}

/// The proxy's shared state: subscriptions, last-value cache, LTP throttle
/// and the adapters it subscribes through.
pub struct Proxy {
    style: ReplyStyle,
    snapshot_on_subscribe: bool,
    /// The broker replies name.
    broker: String,
    /// What `get_supported_brokers` lists.
    supported: Vec<String>,
    cache: DashMap<Instrument, MarketState>,
    subs: Mutex<Subs>,
    throttle: Mutex<Throttle<Instrument, ()>>,
    /// Wakes the throttle task when a tick is parked.
    parked: Notify,
    upstreams: Vec<Upstream>,
    states: AdapterStates,
    /// The key ring `authenticate` checks keys against.
    auth: Arc<KeyRing>,
    /// Subscriptions one connection may hold.
    max_subscriptions: usize,
    /// How long a connection may stay unauthenticated.
    auth_timeout: Duration,
    /// This endpoint's largest client message and slow-consumer policy.
    max_message_bytes: usize,
    slow_consumer: Option<tickwire_config::SlowConsumer>,
    /// No frame from a client for this long closes its connection.
    pong_timeout: Duration,
    /// Told of each instrument's first subscription and last leaving, by
    /// mode (a cluster node following it on the bus): an upstream that
    /// carries every instrument.
    watch: OnceLock<ProxyWatch>,
    /// Where a poll of an instrument no client here follows finds its last
    /// values (a cluster member: the nodes that ingest it).
    last_values: OnceLock<Arc<dyn LastValues>>,
}

/// The last values of instruments this node's clients do not follow, so
/// its cache does not have them live: a cluster member asks the nodes that
/// ingest them.
pub trait LastValues: Send + Sync {
    /// The newest tick and book of `instrument` there are (none if nobody
    /// has them).
    fn fetch(&self, instrument: &Instrument) -> Pin<Box<dyn Future<Output = Vec<Update>> + Send>>;
}

/// A [`Proxy::watch`] callback: the instrument, and whether a key of it got
/// its first client (`true`) or lost its last (`false`).
pub type ProxyWatch = Box<dyn Fn(&Instrument, bool) + Send + Sync>;

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("style", &self.style)
            .field("broker", &self.broker)
            .field("instruments", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// The result of one upstream call.
enum Call {
    /// The adapter answered at once.
    Done(Result<(), AdapterError>),
    /// The adapter's future is still running, in a task of its own.
    Pending,
}

impl Proxy {
    /// The proxy of `config` over `adapters`, with an empty last-value
    /// cache: `states` are the adapter states `get_broker_info` reports,
    /// `auth` the key ring clients authenticate against, and
    /// `pong_timeout` how long a client may take to answer a ping.
    pub fn new(
        config: &ProxyConfig,
        adapters: &[Arc<dyn BrokerAdapter>],
        states: AdapterStates,
        auth: Arc<KeyRing>,
        pong_timeout: Duration,
    ) -> Proxy {
        let upstreams: Vec<Upstream> = adapters
            .iter()
            .map(|adapter| Upstream {
                adapter: adapter.clone(),
                instruments: adapter.instruments().into_iter().collect(),
            })
            .collect();
        let supported = if config.brokers.is_empty() {
            adapters.iter().map(|a| a.name().to_owned()).collect()
        } else {
            config.brokers.clone()
        };
        Proxy {
            style: match config.reply_style {
                tickwire_config::ReplyStyle::Openalgo => ReplyStyle::Openalgo,
                _ => ReplyStyle::Documented,
            },
            snapshot_on_subscribe: config.snapshot_on_subscribe,
            broker: config
                .brokers
                .first()
                .cloned()
                .unwrap_or_else(|| DEFAULT_BROKER.to_owned()),
            supported,
            cache: DashMap::new(),
            subs: Mutex::new(Subs::default()),
            throttle: Mutex::new(Throttle::new(config.ltp_throttle())),
            parked: Notify::new(),
            upstreams,
            states,
            auth,
            max_subscriptions: config.max_subscriptions,
            auth_timeout: Duration::from_secs(config.auth_timeout_secs),
            max_message_bytes: config.max_message_bytes,
            slow_consumer: config.slow_consumer,
            pong_timeout,
            watch: OnceLock::new(),
            last_values: OnceLock::new(),
        }
    }

    /// Answers polls of instruments no client of this node follows from
    /// `source` rather than from the cache (which holds such an instrument
    /// only while followed, or while ingested here). Returns `false` if a
    /// source was set already.
    pub fn last_values_from(&self, source: Arc<dyn LastValues>) -> bool {
        self.last_values.set(source).is_ok()
    }

    /// Calls `watch` from now on for each subscription key's first client
    /// and last leaving (one key per instrument and mode: the calls for an
    /// instrument are counted by whoever watches). The watcher counts as an
    /// upstream that carries every instrument, so a node with no adapter of
    /// its own (a cluster member fed by the bus) takes subscriptions.
    /// Returns `false` if a watch was set already.
    pub fn watch(&self, watch: ProxyWatch) -> bool {
        self.watch.set(watch).is_ok()
    }

    /// The fan-out hook: caches a tick or book and delivers it to the topics
    /// it feeds. Called by the fan-out task for every update; never waits.
    pub fn on_update(&self, update: &Update) {
        let instrument = match update {
            Update::Tick(tick) => &tick.instrument,
            Update::Trade(trade) => &trade.instrument,
            Update::Book(book) => &book.instrument,
            Update::Forget(gone) => {
                for instrument in gone.iter() {
                    if !self.follows(instrument) {
                        self.cache.remove(instrument);
                    }
                }
                return;
            }
            _ => return,
        };
        let kind = match self.cache.get_mut(instrument) {
            Some(mut state) => state.apply(update),
            None => {
                let mut state = MarketState::default();
                let kind = state.apply(update);
                self.cache.insert(instrument.clone(), state);
                kind
            }
        };
        let Some(kind) = kind else { return };
        let subs = lock(&self.subs);
        if subs.clients.is_empty() {
            return;
        }
        let now = Instant::now();
        for topic in topics_fed(kind) {
            let key = SubKey {
                instrument: instrument.clone(),
                topic: *topic,
            };
            if !subs.refs.is_subscribed(&key) {
                continue;
            }
            if topic.mode() == Mode::Ltp && !self.admit_ltp(instrument, now) {
                continue;
            }
            if let Some(bytes) = self.encode(instrument, *topic) {
                subs.send(&key, &bytes);
            }
        }
    }

    /// Every key (instrument and mode, as an adapter key) that a client
    /// holds, with its client count: for operators.
    pub fn topics(&self) -> Vec<(String, usize)> {
        let mut topics: Vec<(String, usize)> = lock(&self.subs)
            .refs
            .keys()
            .map(|(key, clients)| (key.adapter_key(), clients))
            .collect();
        topics.sort();
        topics
    }

    /// How many keys clients hold.
    pub fn topic_count(&self) -> usize {
        lock(&self.subs).refs.key_count()
    }

    /// Whether a client of the proxy is subscribed to `instrument` in any
    /// mode (the gateway never forgets such an instrument).
    pub fn follows(&self, instrument: &Instrument) -> bool {
        let subs = lock(&self.subs);
        Topic::ALL.into_iter().any(|topic| {
            subs.refs.is_subscribed(&SubKey {
                instrument: instrument.clone(),
                topic,
            })
        })
    }

    /// Whether an LTP message of `instrument` goes out now; if not, the
    /// throttle keeps it for the end of the window.
    fn admit_ltp(&self, instrument: &Instrument, now: Instant) -> bool {
        let admitted = lock(&self.throttle)
            .offer(instrument.clone(), (), now)
            .is_some();
        if !admitted {
            self.parked.notify_one();
        }
        admitted
    }

    /// The `market_data` message of `topic` from the cache.
    fn encode(&self, instrument: &Instrument, topic: Topic) -> Option<Bytes> {
        let state = self.cache.get(instrument)?;
        encode_market_data(self.style, instrument, topic.mode(), topic.depth(), &state)
    }

    /// Sends the cached LTP of `instrument` to its LTP subscribers (the end
    /// of a throttle window).
    fn deliver_ltp(&self, instrument: &Instrument) {
        let key = SubKey {
            instrument: instrument.clone(),
            topic: Topic::LTP,
        };
        let subs = lock(&self.subs);
        if !subs.refs.is_subscribed(&key) {
            return;
        }
        if let Some(bytes) = self.encode(instrument, Topic::LTP) {
            subs.send(&key, &bytes);
        }
    }

    /// `sub` joins `key`; the key's first client subscribes it upstream.
    /// `Err` carries the adapters' refusal (then the client holds nothing).
    fn join(&self, sub: &Subscriber, key: &SubKey) -> Result<(), String> {
        let joined = {
            let mut subs = lock(&self.subs);
            subs.clients.entry(sub.id()).or_insert_with(|| sub.clone());
            let joined = subs.refs.subscribe(sub.id(), key.clone());
            sub.set_subscriptions(subs.refs.keys_of(&sub.id()).count());
            joined
        };
        if joined != Joined::First {
            return Ok(());
        }
        self.upstream(key, true).inspect_err(|_| {
            let mut subs = lock(&self.subs);
            subs.refs.unsubscribe(&sub.id(), key);
            sub.set_subscriptions(subs.refs.keys_of(&sub.id()).count());
            if subs.refs.keys_of(&sub.id()).next().is_none() {
                subs.clients.remove(&sub.id());
            }
        })
    }

    /// Connection `id` leaves `key`; the key's last client unsubscribes it
    /// upstream. Returns whether the connection held it.
    fn leave(&self, id: u64, key: &SubKey) -> bool {
        let left = {
            let mut subs = lock(&self.subs);
            let left = subs.refs.unsubscribe(&id, key);
            let held = subs.refs.keys_of(&id).count();
            if let Some(sub) = subs.clients.get(&id) {
                sub.set_subscriptions(held);
            }
            if held == 0 {
                subs.clients.remove(&id);
            }
            left
        };
        self.released(key, left);
        left != Left::NotSubscribed
    }

    /// Connection `id` leaves every key it holds (disconnect, `unsubscribe_all`).
    fn leave_all(&self, id: u64) -> Vec<SubKey> {
        let released = {
            let mut subs = lock(&self.subs);
            subs.clients.remove(&id);
            subs.refs.disconnect(&id)
        };
        released
            .into_iter()
            .map(|(key, left)| {
                self.released(&key, left);
                key
            })
            .collect()
    }

    fn released(&self, key: &SubKey, left: Left) {
        if left != Left::Last {
            return;
        }
        if key.topic == Topic::LTP {
            lock(&self.throttle).remove(&key.instrument);
        }
        if let Err(message) = self.upstream(key, false) {
            debug!(key = %key.adapter_key(), message, "upstream unsubscribe not applied");
        }
    }

    /// The keys connection `id` holds for `instrument`, in `mode` if given.
    /// How many keys connection `id` holds.
    fn held_by(&self, id: u64) -> usize {
        lock(&self.subs).refs.keys_of(&id).count()
    }

    fn keys_of(&self, id: u64, instrument: &Instrument, mode: Option<Mode>) -> Vec<SubKey> {
        lock(&self.subs)
            .refs
            .keys_of(&id)
            .filter(|k| &k.instrument == instrument && mode.is_none_or(|m| k.topic.mode() == m))
            .cloned()
            .collect()
    }

    /// Subscribes (or unsubscribes) `key` on every adapter that may carry its
    /// instrument. `Ok` when at least one took it; an adapter that refuses
    /// the key's form (a GEX replay) is not counted.
    fn upstream(&self, key: &SubKey, subscribe: bool) -> Result<(), String> {
        let keys = vec![key.adapter_key()];
        let mut served = false;
        if let Some(watch) = self.watch.get() {
            watch(&key.instrument, subscribe);
            served = true;
        }
        let mut refusal = None;
        for upstream in self.upstreams.iter().filter(|u| u.carries(&key.instrument)) {
            let name = upstream.adapter.name();
            match call(&upstream.adapter, keys.clone(), subscribe) {
                Call::Done(Ok(())) | Call::Pending => {
                    debug!(adapter = name, key = %keys[0], subscribe, "upstream");
                    served = true;
                }
                Call::Done(Err(AdapterError::InvalidKey { .. })) => {
                    debug!(adapter = name, key = %keys[0], "adapter does not carry such keys");
                }
                Call::Done(Err(e)) => {
                    warn!(adapter = name, key = %keys[0], subscribe, error = %e, "upstream refused");
                    refusal.get_or_insert_with(|| e.to_string());
                }
            }
        }
        if served {
            Ok(())
        } else {
            Err(refusal.unwrap_or_else(|| format!("No adapter carries {}", key.instrument)))
        }
    }

    /// The state `get_broker_info` reports: that of the watched adapter (the
    /// bus) if any, else `connected` (the gateway runs only with its adapters
    /// connected).
    fn adapter_status(&self) -> &'static str {
        self.states.first().unwrap_or("connected")
    }

    /// The cached `market_data` message of `mode` for a poll.
    fn poll(&self, instrument: &Instrument, mode: Mode, depth: Depth) -> Option<Bytes> {
        self.encode(instrument, Topic::new(mode, depth))
    }

    /// The `market_data` message of `instrument` in `mode`: from the cache,
    /// or, for an instrument no client of this node follows, from the
    /// nodes that ingest it ([`last_values_from`](Self::last_values_from)).
    async fn last_of(&self, instrument: &Instrument, mode: Mode, depth: Depth) -> Option<Bytes> {
        match self.last_values.get() {
            Some(source) if !self.follows(instrument) => {
                let mut state = MarketState::default();
                for update in source.fetch(instrument).await {
                    state.apply(&update);
                }
                encode_market_data(self.style, instrument, mode, depth, &state)
            }
            _ => self.poll(instrument, mode, depth),
        }
    }
}

impl tickwire_services::quotes::Quotes for Proxy {
    fn last<'a>(
        &'a self,
        instrument: &'a Instrument,
        mode: Mode,
        depth: Depth,
    ) -> Pin<Box<dyn Future<Output = Option<Bytes>> + Send + 'a>> {
        Box::pin(self.last_of(instrument, mode, depth))
    }

    fn join(
        &self,
        sub: &Subscriber,
        instrument: &Instrument,
        mode: Mode,
        depth: Depth,
    ) -> Result<(), String> {
        tickwire_proxy::check_instrument(instrument)?;
        Proxy::join(self, sub, &SubKey::new(instrument.clone(), mode, depth))
    }

    fn leave(&self, id: u64, instrument: &Instrument, mode: Mode, depth: Depth) {
        Proxy::leave(self, id, &SubKey::new(instrument.clone(), mode, depth));
    }
}

/// Calls the adapter, taking its answer at once when it has one (every
/// adapter of this workspace answers at once) and otherwise finishing the
/// call in a task of its own.
fn call(adapter: &Arc<dyn BrokerAdapter>, keys: Vec<String>, subscribe: bool) -> Call {
    let adapter = adapter.clone();
    let mut call: Pin<Box<dyn Future<Output = Result<(), AdapterError>> + Send>> =
        Box::pin(async move {
            if subscribe {
                adapter.subscribe(&keys).await
            } else {
                adapter.unsubscribe(&keys).await
            }
        });
    match call.as_mut().now_or_never() {
        Some(result) => Call::Done(result),
        None => {
            tokio::spawn(async move {
                if let Err(e) = call.await {
                    warn!(error = %e, subscribe, "upstream call failed");
                }
            });
            Call::Pending
        }
    }
}

/// Delivers the LTP ticks the throttle parked, each at its window's end,
/// until the gateway shuts down.
pub async fn throttle_task(proxy: Arc<Proxy>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let next = lock(&proxy.throttle).next_deadline();
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tickwire_core::shutdown_started(&mut shutdown) => return,
            () = proxy.parked.notified() => continue,
            () = due => {}
        }
        let due = lock(&proxy.throttle).poll_due(Instant::now());
        for (instrument, ()) in due {
            proxy.deliver_ltp(&instrument);
        }
    }
}

/// Serves one connection of the proxy's own listener: any path upgrades.
pub async fn serve<I>(
    io: I,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    context: Context,
    tracker: Tracker,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = context.shutdown.clone();
    let service = {
        let tracker = tracker.clone();
        move |req: Request<Incoming>| {
            let response = if let Some(refusal) = context.origins.refuse_upgrade(&req) {
                refusal
            } else if req.method() == Method::GET {
                upgrade(req, &proxy, &context, &tracker)
            } else {
                tickwire_core::http::method_not_allowed()
            };
            std::future::ready(response)
        }
    };
    tickwire_core::http::serve_io(io, peer, shutdown, service).await;
    drop(tracker);
}

/// Answers a proxy handshake (no subprotocol; authentication comes in-band).
pub fn upgrade(
    mut req: Request<Incoming>,
    proxy: &Arc<Proxy>,
    context: &Context,
    tracker: &Tracker,
) -> Response<Body> {
    let (proxy, context, tracker) = (proxy.clone(), context.clone(), tracker.clone());
    let handshake = match handshake(&req) {
        Ok(h) => h,
        Err(e) => return handshake_refusal(&e),
    };
    let remote = tickwire_core::http::remote(&req);
    upgrade_with(&mut req, handshake, move |upgraded| {
        let json = JsonTransport {
            endpoint: "proxy",
            max_message_bytes: proxy.max_message_bytes,
            slow_consumer: proxy.slow_consumer,
            remote,
        };
        let make = move |sub| ProxySession::new(proxy, sub);
        json_session(upgraded, &context, json, make, tracker)
    })
}

/// The protocol state of one proxy connection.
pub struct ProxySession {
    proxy: Arc<Proxy>,
    sub: Subscriber,
    /// The user of the key the connection authenticated with.
    user: Option<String>,
    /// The connection's slot in its key's `max_connections`, held from a
    /// successful `authenticate` until the connection closes.
    lease: Option<(Arc<KeyUsage>, Lease)>,
    /// When the connection opened: it must authenticate within the
    /// endpoint's `auth_timeout`.
    opened: Instant,
}

impl std::fmt::Debug for ProxySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySession")
            .field("connection", &self.sub.id())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ProxySession {
    fn new(proxy: Arc<Proxy>, sub: Subscriber) -> Self {
        debug!(connection = sub.id(), "proxy client connected");
        ProxySession {
            proxy,
            sub,
            user: None,
            lease: None,
            opened: Instant::now(),
        }
    }

    /// Ends what an earlier `authenticate` granted: the user, the key's
    /// connection slot, and the subscriptions made under it.
    fn deauthenticate(&mut self) {
        if self.user.take().is_some() {
            debug!(connection = self.sub.id(), "proxy authority ended");
        }
        self.lease = None;
        self.release();
    }

    /// Takes one request from the key's rate, or refuses it.
    fn within_rate(&self, now: Instant) -> Result<(), ProxyError> {
        match &self.lease {
            Some((usage, _)) if !usage.take(now) => Err(ProxyError::Limited {
                message: format!(
                    "Rate limit exceeded for API key {:?}: requests per minute are limited",
                    usage.name()
                ),
            }),
            _ => Ok(()),
        }
    }

    fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    fn error(&self, error: &ProxyError) -> Step {
        debug!(connection = self.sub.id(), code = error.code(), error = %error, "proxy request refused");
        Step::Reply(encode_error(self.proxy().style, error))
    }

    fn authenticate(&mut self, api_key: &str) -> Step {
        // A new authenticate ends the earlier authority, whatever its outcome
        // (the same key again keeps its slot and subscriptions).
        let proxy = self.proxy.clone();
        let principal = match proxy.auth.check_bearer(None, Some(api_key)) {
            Ok(p) => p,
            Err(KeyRejection::Missing | KeyRejection::Invalid) => {
                self.deauthenticate();
                proxy.auth.refused("proxy", "invalid_key");
                return self.error(&ProxyError::invalid_api_key());
            }
        };
        if !principal.allows(Endpoint::Proxy) {
            self.deauthenticate();
            proxy.auth.refused("proxy", "forbidden");
            return self.error(&ProxyError::Authentication {
                message: "API key not allowed on the proxy".into(),
            });
        }
        let usage = principal.usage();
        match &self.lease {
            // Authenticating again with the key it holds a slot of: keep that slot.
            Some((held, _)) if Arc::ptr_eq(held, &usage) => {}
            _ => {
                self.deauthenticate();
                let Some(lease) = usage.lease() else {
                    warn!(
                        connection = self.sub.id(),
                        user = usage.name(),
                        max_connections = usage.max_connections(),
                        "proxy authentication refused: the key's connection limit is reached"
                    );
                    self.proxy.auth.refused("proxy", "connection_limit");
                    return self.error(&ProxyError::Authentication {
                        message: format!(
                            "Connection limit exceeded: at most {} connections per API key",
                            usage.max_connections()
                        ),
                    });
                };
                // A slot of another key, if any, is freed as this one is taken.
                self.lease = Some((usage, lease));
            }
        }
        let user_id = principal.user_id.to_owned();
        debug!(connection = self.sub.id(), user = %user_id, "proxy client authenticated");
        self.sub.set_principal(&user_id);
        let proxy = self.proxy();
        let reply = encode_auth_ok(
            proxy.style,
            &AuthOk {
                broker: &proxy.broker,
                user_id: &user_id,
            },
        );
        self.user = Some(user_id);
        Step::Reply(reply)
    }

    fn subscribe(&self, request: &Subscribe, now: Instant) -> Step {
        if let Err(e) = self.within_rate(now) {
            return self.error(&e);
        }
        let proxy = self.proxy();
        let mut snapshots = Vec::new();
        let mut held = proxy.held_by(self.sub.id());
        let outcomes: Vec<SubscribeOutcome<'_>> = request
            .instruments
            .iter()
            .map(|instrument| {
                let key = SubKey::new(instrument.clone(), request.mode, request.depth);
                let result = if let Err(why) = tickwire_proxy::check_instrument(instrument) {
                    Err(why)
                } else if held >= proxy.max_subscriptions
                    && proxy
                        .keys_of(self.sub.id(), instrument, Some(request.mode))
                        .is_empty()
                {
                    Err(format!(
                        "Subscription limit reached: at most {} per connection",
                        proxy.max_subscriptions
                    ))
                } else {
                    let joined = proxy.join(&self.sub, &key);
                    if joined.is_ok() {
                        held = proxy.held_by(self.sub.id());
                    }
                    joined
                };
                if result.is_ok() && proxy.snapshot_on_subscribe {
                    snapshots.extend(proxy.encode(instrument, key.topic));
                }
                SubscribeOutcome { instrument, result }
            })
            .collect();
        let reply = encode_subscribe(
            proxy.style,
            &SubscribeReply {
                mode: request.mode,
                depth: request.depth,
                broker: &proxy.broker,
                outcomes: &outcomes,
                request_id: request.request_id.as_ref(),
            },
        );
        let mut replies = Vec::with_capacity(1 + snapshots.len());
        replies.push(reply);
        replies.extend(snapshots);
        Step::Replies(replies)
    }

    fn unsubscribe(&self, request: &Unsubscribe, now: Instant) -> Step {
        if let Err(e) = self.within_rate(now) {
            return self.error(&e);
        }
        let proxy = self.proxy();
        let id = self.sub.id();
        let mut successful: Vec<Instrument> = Vec::new();
        let mut failed: Vec<(&Instrument, &str)> = Vec::new();
        if request.all {
            for key in proxy.leave_all(id) {
                if !successful.contains(&key.instrument) {
                    successful.push(key.instrument);
                }
            }
        }
        for (instrument, mode) in &request.targets {
            let keys = proxy.keys_of(id, instrument, *mode);
            if keys.is_empty() {
                failed.push((instrument, "Not subscribed"));
                continue;
            }
            for key in &keys {
                proxy.leave(id, key);
            }
            if !successful.contains(instrument) {
                successful.push(instrument.clone());
            }
        }
        failed.extend(request.rejected.iter().map(|(i, why)| (i, why.as_str())));
        let successful: Vec<&Instrument> = successful.iter().collect();
        Step::Reply(encode_unsubscribe(
            proxy.style,
            &UnsubscribeReply {
                broker: &proxy.broker,
                successful: &successful,
                failed: &failed,
                request_id: request.request_id.as_ref(),
            },
        ))
    }

    fn broker_info(&self) -> Step {
        let proxy = self.proxy();
        let status = proxy.adapter_status();
        info!(
            connection = self.sub.id(),
            adapter_status = status,
            "get_broker_info"
        );
        Step::Reply(encode_broker_info(
            proxy.style,
            &BrokerInfo {
                broker: &proxy.broker,
                adapter_status: status,
                user_id: self.user.as_deref().unwrap_or_default(),
            },
        ))
    }
}

impl Protocol for ProxySession {
    fn on_message(&mut self, _kind: MessageKind, payload: &[u8], now: Instant) -> Step {
        let request = match decode_request(payload, self.user.is_some()) {
            Ok(request) => request,
            Err(e) => return self.error(&e),
        };
        let style = self.proxy().style;
        match request {
            ProxyRequest::Authenticate { api_key } => self.authenticate(&api_key),
            ProxyRequest::Subscribe(request) => self.subscribe(&request, now),
            ProxyRequest::Unsubscribe(request) => self.unsubscribe(&request, now),
            ProxyRequest::Ping(ping) => {
                Step::Reply(encode_pong(style, &ping, tickwire_model::now_millis()))
            }
            ProxyRequest::GetSupportedBrokers => {
                let brokers: Vec<&str> =
                    self.proxy().supported.iter().map(String::as_str).collect();
                Step::Reply(encode_supported_brokers(style, &brokers))
            }
            ProxyRequest::GetBrokerInfo => self.broker_info(),
            // A request kind this gateway does not serve yet.
            _ => self.error(&ProxyError::InvalidAction {
                action: "unsupported".into(),
            }),
        }
    }

    /// A client that answers the writer's pings stays connected, however
    /// quiet (the reference server has no idle limit of its own), once it
    /// authenticated; before, for `auth_timeout` at most.
    fn deadline(&self, activity: &Activity) -> Instant {
        let keepalive = activity.last_frame + self.proxy.pong_timeout;
        if self.user.is_some() {
            keepalive
        } else {
            keepalive.min(self.opened + self.proxy.auth_timeout)
        }
    }

    fn idle_close(&self) -> (u16, &'static str) {
        if self.user.is_some() {
            (close_code::POLICY, "keepalive timeout")
        } else {
            (close_code::POLICY, "authentication timeout")
        }
    }

    fn on_close(&mut self, _ending: tickwire_core::Ending) {
        self.release();
    }
}

impl ProxySession {
    /// A disconnect releases every subscription of the connection.
    fn release(&mut self) {
        let released = self.proxy.leave_all(self.sub.id());
        if !released.is_empty() {
            debug!(
                connection = self.sub.id(),
                keys = released.len(),
                "proxy subscriptions released"
            );
        }
    }
}

/// The proxy's part of the fan-out: every tick, trade and book goes to the
/// last-value cache and the topics it feeds ([`Proxy::on_update`]).
#[derive(Debug)]
pub struct ProxyFeed(pub Arc<Proxy>);

impl Feed<Update> for ProxyFeed {
    fn on_update(&mut self, update: &Update) {
        self.0.on_update(update);
    }
}

/// Whether `path` is one of the polling routes.
pub fn serves_rest(path: &str) -> bool {
    matches!(path, LTP_PATH | QUOTE_PATH | DEPTH_PATH)
}

/// Answers `GET /api/v1/{ltp,quote,depth}?symbol=&exchange=[&depth=]` from
/// the cache: the `market_data` message of the mode; 400 on missing or bad
/// parameters, 401 without a valid key, 403 for a key not allowed on the
/// proxy, 404 when no data arrived yet.
///
/// A cluster member asks the nodes that ingest an instrument no client of
/// its own follows ([`Proxy::last_values_from`]): its cache has such an
/// instrument only while followed.
pub async fn rest(req: &Request<Incoming>, proxy: &Proxy) -> Response<Body> {
    if req.method() != Method::GET {
        return tickwire_core::http::method_not_allowed();
    }
    let query = req.uri().query().unwrap_or("");
    let principal = proxy.auth.check_bearer(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        query_param(query, "api_key").as_deref(),
    );
    match principal {
        Ok(p) if p.allows(Endpoint::Proxy) => {}
        Ok(p) => {
            return json_error(
                StatusCode::FORBIDDEN,
                &format!("api key {:?} may not use the proxy", p.user_id),
            );
        }
        Err(KeyRejection::Missing) => {
            return json_error(StatusCode::UNAUTHORIZED, "missing api key");
        }
        Err(KeyRejection::Invalid) => {
            return json_error(StatusCode::UNAUTHORIZED, "invalid api key");
        }
    }
    let mode = match req.uri().path() {
        LTP_PATH => Mode::Ltp,
        QUOTE_PATH => Mode::Quote,
        _ => Mode::Depth,
    };
    let param = |name: &str| query_param(query, name).filter(|v| !v.trim().is_empty());
    let (Some(symbol), Some(exchange)) = (param("symbol"), param("exchange")) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the query parameters `symbol` and `exchange` are required",
        );
    };
    let depth = match param("depth") {
        None => Depth::Five,
        Some(d) => match d.trim().parse().ok().and_then(Depth::from_levels) {
            Some(depth) => depth,
            None => {
                return json_error(StatusCode::BAD_REQUEST, "`depth` must be 5, 20 or 30");
            }
        },
    };
    let instrument = Instrument::new(symbol.trim(), exchange.trim());
    let found = proxy.last_of(&instrument, mode, depth).await;
    match found {
        Some(body) => json_bytes(StatusCode::OK, body),
        None => json_error(
            StatusCode::NOT_FOUND,
            &format!(
                "no {} data for {instrument} yet",
                match mode {
                    Mode::Ltp => "LTP",
                    Mode::Quote => "quote",
                    Mode::Depth => "depth",
                }
            ),
        ),
    }
}

/// Accepts a connection of the proxy's own listener; never completes without one.
pub async fn accept(
    listener: Option<&tokio::net::TcpListener>,
) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_config::Config;
    use tickwire_core::testing::subscriber;

    use tickwire_adapter::{MemoryAdapter, MemoryHandle};

    /// The proxy over one in-memory adapter, with the demo key; no socket,
    /// no gateway.
    fn proxy() -> (Arc<Proxy>, MemoryHandle) {
        proxy_with(ProxyConfig::default(), 600)
    }

    /// The proxy of `config` over one in-memory adapter, with the demo key
    /// and `limited`, a key of `rate_per_minute` requests.
    fn proxy_with(config: ProxyConfig, rate_per_minute: u32) -> (Arc<Proxy>, MemoryHandle) {
        let adapter = MemoryAdapter::new("memory");
        let handle = adapter.handle();
        let adapters: Vec<Arc<dyn BrokerAdapter>> = vec![Arc::new(adapter)];
        let mut keys = Config::default().api_keys;
        keys.push(tickwire_config::ApiKey {
            rate_per_minute,
            ..tickwire_config::ApiKey::new("limited", "limited-key")
        });
        let auth = Arc::new(KeyRing::new(&keys).unwrap());
        let proxy = Proxy::new(
            &config,
            &adapters,
            AdapterStates::default(),
            auth,
            Duration::from_secs(60),
        );
        (Arc::new(proxy), handle)
    }

    fn client(proxy: &Arc<Proxy>, id: u64) -> ProxySession {
        let sub = subscriber(id, 0);
        ProxySession::new(proxy.clone(), sub)
    }

    fn ask(session: &mut ProxySession, request: &str) -> Vec<serde_json::Value> {
        tickwire_core::testing::replies(session.on_message(
            MessageKind::Text,
            request.as_bytes(),
            Instant::now(),
        ))
    }

    const AUTH: &str = r#"{"action":"authenticate","api_key":"tickwire-demo-key"}"#;
    const SUBSCRIBE: &str =
        r#"{"action":"subscribe","symbols":[{"symbol":"RELIANCE","exchange":"NSE"}],"mode":"LTP"}"#;

    #[test]
    fn nothing_is_served_before_authentication() {
        let (proxy, upstream) = proxy();
        let mut session = client(&proxy, 1);
        let refused = ask(&mut session, SUBSCRIBE);
        assert_eq!(refused[0]["code"], "NOT_AUTHENTICATED", "{refused:?}");
        assert!(upstream.subscriptions().is_empty());
        let bad_key = ask(
            &mut session,
            r#"{"action":"authenticate","api_key":"nope"}"#,
        );
        assert_eq!(bad_key[0]["status"], "error", "{bad_key:?}");
        assert_eq!(ask(&mut session, AUTH)[0]["status"], "success");
    }

    #[test]
    fn the_first_subscriber_subscribes_upstream_and_the_last_to_leave_unsubscribes() {
        let (proxy, upstream) = proxy();
        let mut a = client(&proxy, 1);
        let mut b = client(&proxy, 2);
        for session in [&mut a, &mut b] {
            ask(session, AUTH);
            let reply = ask(session, SUBSCRIBE);
            assert_eq!(reply[0]["status"], "success", "{reply:?}");
        }
        assert_eq!(upstream.subscriptions(), ["NSE:RELIANCE:LTP"]);
        a.on_close(tickwire_core::Ending::Closed);
        assert_eq!(
            upstream.subscriptions(),
            ["NSE:RELIANCE:LTP"],
            "b still holds it"
        );
        b.on_close(tickwire_core::Ending::Closed);
        assert!(upstream.subscriptions().is_empty());
    }

    #[test]
    fn bad_requests_are_answered_and_the_connection_carries_on() {
        let (proxy, _upstream) = proxy();
        let mut session = client(&proxy, 1);
        assert_eq!(ask(&mut session, "not json")[0]["status"], "error");
        assert_eq!(
            ask(&mut session, r#"{"action":"dance"}"#)[0]["status"],
            "error"
        );
        assert_eq!(ask(&mut session, AUTH)[0]["status"], "success");
    }

    fn subscribe_to(symbols: &[&str]) -> String {
        let list: Vec<String> = symbols
            .iter()
            .map(|s| format!(r#"{{"symbol":{},"exchange":"NSE"}}"#, serde_json::json!(s)))
            .collect();
        format!(
            r#"{{"action":"subscribe","symbols":[{}],"mode":"LTP"}}"#,
            list.join(",")
        )
    }

    #[test]
    fn invalid_symbols_are_refused_and_never_reach_the_adapter() {
        let (proxy, upstream) = proxy();
        let mut session = client(&proxy, 1);
        ask(&mut session, AUTH);
        let long = "X".repeat(65 * 1024);
        let reply = ask(&mut session, &subscribe_to(&[" ", "A\u{1}B", &long, "TCS"]));
        let text = reply[0].to_string();
        for why in ["empty", "control characters", "longer than 64 bytes"] {
            assert!(text.contains(why), "no {why:?} in the reply");
        }
        assert_eq!(
            upstream.subscriptions(),
            ["NSE:TCS:LTP"],
            "only the valid one"
        );
    }

    #[test]
    fn a_connection_holds_at_most_its_limit_of_subscriptions() {
        let config = ProxyConfig {
            max_subscriptions: 2,
            ..ProxyConfig::default()
        };
        let (proxy, upstream) = proxy_with(config, 600);
        let mut session = client(&proxy, 1);
        ask(&mut session, AUTH);
        let reply = ask(&mut session, &subscribe_to(&["A", "B", "C"]));
        assert!(
            reply[0].to_string().contains("Subscription limit reached"),
            "{reply:?}"
        );
        assert_eq!(upstream.subscriptions().len(), 2);
        // Subscribing again to what it holds is not a new subscription.
        let again = ask(&mut session, &subscribe_to(&["A"]));
        assert!(!again[0].to_string().contains("limit"), "{again:?}");
    }

    #[test]
    fn subscribe_requests_count_against_the_keys_rate() {
        let (proxy, _upstream) = proxy_with(ProxyConfig::default(), 2);
        let mut session = client(&proxy, 1);
        ask(
            &mut session,
            r#"{"action":"authenticate","api_key":"limited-key"}"#,
        );
        for symbol in ["A", "B"] {
            assert_eq!(
                ask(&mut session, &subscribe_to(&[symbol]))[0]["status"],
                "success"
            );
        }
        let limited = ask(&mut session, &subscribe_to(&["C"]));
        assert_eq!(limited[0]["code"], "RATE_LIMITED", "{limited:?}");
    }

    #[test]
    fn an_unauthenticated_connection_has_a_deadline() {
        let (proxy, _upstream) = proxy();
        let mut session = client(&proxy, 1);
        let now = Instant::now();
        let activity = Activity {
            last_frame: now,
            last_message: now,
        };
        assert!(session.deadline(&activity) <= session.opened + Duration::from_secs(10));
        assert_eq!(session.idle_close().1, "authentication timeout");
        ask(&mut session, AUTH);
        assert_eq!(session.deadline(&activity), now + Duration::from_secs(60));
        assert_eq!(session.idle_close().1, "keepalive timeout");
    }

    #[test]
    fn a_failed_authenticate_ends_the_earlier_authority() {
        let (proxy, upstream) = proxy();
        let mut session = client(&proxy, 1);
        ask(&mut session, AUTH);
        ask(&mut session, SUBSCRIBE);
        assert_eq!(upstream.subscriptions(), ["NSE:RELIANCE:LTP"]);
        let refused = ask(
            &mut session,
            r#"{"action":"authenticate","api_key":"nope"}"#,
        );
        assert_eq!(refused[0]["status"], "error");
        assert!(
            upstream.subscriptions().is_empty(),
            "its subscriptions went with it"
        );
        let after = ask(&mut session, SUBSCRIBE);
        assert_eq!(after[0]["code"], "NOT_AUTHENTICATED", "{after:?}");
    }

    #[test]
    fn replies_name_the_first_configured_broker() {
        let config = ProxyConfig {
            brokers: vec!["zerodha".into(), "angel".into()],
            ..ProxyConfig::default()
        };
        let auth = Arc::new(KeyRing::new(&Config::default().api_keys).unwrap());
        let proxy = Proxy::new(
            &config,
            &[],
            AdapterStates::default(),
            auth,
            Duration::from_secs(60),
        );
        assert_eq!(proxy.broker, "zerodha");
        assert_eq!(proxy.supported, ["zerodha", "angel"]);
        let (proxy, _upstream) = self::proxy();
        assert_eq!(proxy.broker, DEFAULT_BROKER);
        assert_eq!(proxy.supported, ["memory"], "without brokers: the adapters");
    }

    #[test]
    fn adapters_listing_instruments_carry_only_those() {
        let listed = Upstream {
            adapter: Arc::new(tickwire_adapter::MemoryAdapter::new("m")),
            instruments: [Instrument::new("TCS", "NSE")].into_iter().collect(),
        };
        assert!(listed.carries(&Instrument::new("TCS", "NSE")));
        assert!(!listed.carries(&Instrument::new("INFY", "NSE")));
        let bus = Upstream {
            instruments: HashSet::new(),
            ..listed
        };
        assert!(bus.carries(&Instrument::new("INFY", "NSE")));
    }
}
