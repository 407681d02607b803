//! The Socket.IO channel of seed 003: the `/market` namespace that browser
//! UIs reach with the standard `socket.io-client`, at `/socket.io/` on the
//! main listener.
//!
//! Socket.IO v5 over Engine.IO v4, both transports and the upgrade from
//! long-polling to a WebSocket, on sessions of the gateway's own, like every
//! other endpoint's: the same queue, writer, slow-consumer policy, metering
//! and fan-out, with Engine.IO and Socket.IO read and written by [`packet`].
//! A WebSocket (opened as the transport, or upgraded to) costs what a `/ws`
//! connection does (about 2 KiB idle). Long-polling is served request by
//! request (`polling`), and a polling session moves to its WebSocket at the
//! upgrade with its rooms and what it had queued.
//!
//! This crate says what `/market` means:
//!
//! - the heartbeat the seed configures: a ping every 5 s, 10 s to answer;
//! - authentication at connect: an API key in the handshake's `auth`
//!   payload (`{"api_key": "..."}`) or `Authorization: Bearer <key>`,
//!   checked against the gateway's key ring (a key allowed on the proxy,
//!   whose data this channel carries), its request rate and its
//!   `max_connections`; a refusal is a Socket.IO `connect_error` whose
//!   `message` says why;
//! - on connect, `connected` `{"status": "ok"}`;
//! - `subscribe` `{"symbols": [{"symbol", "exchange"}...], "mode": "LTP" |
//!   "Quote" | "Depth"}` (mode `Quote` by default) joins one room per
//!   instrument and mode; each room is one member of the proxy's key (the
//!   proxy subscribes the adapters, throttles LTP and caches). A room
//!   passes each `market_data` message on as the proxy offers it (a
//!   [`Relay`](tickwire_core::Relay), no task between): one frame for its
//!   sessions, published to the room's topic. A snapshot of the last value
//!   comes first; `unsubscribe` leaves;
//! - `get_ltp`, `get_quote`, `get_depth` `{"symbol", "exchange"}` answer from
//!   the last-value cache ([`Quotes`]) through the client's acknowledgement,
//!   or, to a client that asked for none, as an event (`ltp`, `quote`,
//!   `depth`).
//!
//! CORS (all origins by default, else `allowed_origins`) is the router's,
//! as for every route a page calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut as _, Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tickwire_config::Endpoint;
use tickwire_core::http::Body;
use tickwire_core::subscriber::QueuePolicy;
use tickwire_core::{
    Connections, Index, Kind as DataKind, Outbound, SlowConsumer, Subscriber, Tracker, publish_text,
};
use tickwire_model::Instrument;
use tickwire_proxy::{Depth, Mode};
use tickwire_services::Context;
use tickwire_services::keys::{KeyRejection, KeyRing, KeyUsage, Lease};
use tickwire_services::quotes::Quotes;
use tickwire_websocket::frame::payload_of;
use tracing::{debug, info};

pub mod packet;
mod polling;
mod session;

pub use polling::MAX_POLLING_SESSIONS;
pub use session::CONNECT_TIMEOUT;
use session::SessionSeat;

/// Where Socket.IO clients connect (the standard path).
pub const PATH: &str = "/socket.io";
/// The namespace of market data.
pub const NAMESPACE: &str = "/market";
/// Engine.IO ping interval (seed 003: `ping_interval=5`).
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long a client has to answer a ping (seed 003: `ping_timeout=10`).
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message a client may send, on either carrier
/// (the `maxPayload` of Socket.IO's own servers).
pub const MAX_PAYLOAD: usize = 100_000;
/// The watchlist page: a few instruments streaming over `/market`.
pub const PAGE_PATH: &str = "/watchlist";
/// The Socket.IO client the page loads, served here rather than from a CDN.
pub const CLIENT_PATH: &str = "/watchlist/socket.io.min.js";
const PAGE: &str = include_str!("../assets/watchlist.html");
/// `socket.io-client` 4.8.4's browser bundle (see `assets/README.md`).
const CLIENT: &str = include_str!("../assets/socket.io.min.js");

/// The endpoint's name in logs, metrics and refusals.
const NAME: &str = "socketio";

/// The `/market` namespace and the Socket.IO server that carries it.
pub struct Market {
    polls: Arc<polling::Polls>,
    shared: Shared,
    context: Context,
}

impl std::fmt::Debug for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Market").finish_non_exhaustive()
    }
}

/// What the namespace's sessions share.
#[derive(Clone)]
struct Shared {
    keys: Arc<KeyRing>,
    quotes: Arc<dyn Quotes>,
    rooms: Arc<Rooms>,
}

/// Most rooms (instrument × mode) one connection may be in.
pub const MAX_SUBSCRIPTIONS: usize = 1000;

/// One room per instrument and mode with members: the member of the
/// proxy's key that stands for them all.
struct Rooms {
    connections: Arc<Connections>,
    /// The rooms' members on the gateway's own carrier: a topic per room,
    /// by its [`room_name`].
    index: Arc<Index>,
    rooms: Mutex<HashMap<RoomKey, Room>>,
}

type RoomKey = (Instrument, Mode, Depth);

struct Room {
    /// The room as a member of the proxy's key: it relays to the room's
    /// sessions.
    sub: Subscriber,
    /// Its members.
    members: usize,
}

/// The Socket.IO room name of a key: `market_data:MODE:EXCHANGE:SYMBOL`.
fn room_name((instrument, mode, depth): &RoomKey) -> String {
    let mode = match mode {
        Mode::Ltp => "LTP".to_owned(),
        Mode::Quote => "Quote".to_owned(),
        Mode::Depth => format!("Depth{}", depth.levels()),
    };
    format!(
        "market_data:{mode}:{}:{}",
        instrument.exchange, instrument.symbol
    )
}

impl Rooms {
    /// Adds a member to `key`'s room, making the room (and its proxy
    /// membership) for the first. Returns the room's own key, for the
    /// member to keep: its names are the room's, shared, not a copy per
    /// member.
    fn join(&self, quotes: &dyn Quotes, key: &RoomKey) -> Result<RoomKey, String> {
        let mut rooms = tickwire_core::lock(&self.rooms);
        if let Some(own) = rooms.get_key_value(key).map(|(own, _)| own.clone()) {
            if let Some(room) = rooms.get_mut(&own) {
                room.members += 1;
            }
            return Ok(own);
        }
        let connections = &self.connections;
        // Nothing is queued: the relay passes every update on as it is
        // offered.
        let queue = QueuePolicy {
            capacity: 1,
            slow_consumer: SlowConsumer::DropOldest,
            pacer: None,
        };
        let relay = RoomRelay {
            name: room_name(key),
            index: self.index.clone(),
        };
        let sub = Subscriber::relaying(
            connections.next_id(),
            queue,
            connections.slow_consumer_stats().clone(),
            Arc::new(relay),
        );
        quotes.join(&sub, &key.0, key.1, key.2)?;
        rooms.insert(key.clone(), Room { sub, members: 1 });
        Ok(key.clone())
    }

    /// Takes a member from `key`'s room; the last one closes it.
    fn leave(&self, quotes: &dyn Quotes, key: &RoomKey) {
        let mut rooms = tickwire_core::lock(&self.rooms);
        let Some(room) = rooms.get_mut(key) else {
            return;
        };
        room.members -= 1;
        if room.members == 0 {
            if let Some(room) = rooms.remove(key) {
                quotes.leave(room.sub.id(), &key.0, key.1, key.2);
            }
        }
    }
}

/// A room as the proxy's fan-out sees it: each `market_data` message the
/// proxy offers goes on to the room's sessions at once, on the proxy's
/// thread and in its corked burst.
struct RoomRelay {
    /// The Socket.IO room, and its topic in `index`.
    name: String,
    /// Where the room's sessions are.
    index: Arc<Index>,
}

impl tickwire_core::Relay for RoomRelay {
    fn relay(&self, _topic: u32, msg: Outbound) -> Option<Outbound> {
        if let Some(data) = payload_of_outbound(&msg) {
            if let Some(topic) = self.index.lookup(&self.name) {
                // One frame for every session of the room; their writers
                // are woken once, at the end of the proxy's burst (or of
                // this one, for a throttled LTP sent on its own).
                let event = market_data_event(data);
                tickwire_core::corked(|| {
                    publish_text(&self.index, topic, &event, DataKind::Data);
                });
            }
        }
        None
    }
}

/// The head of a `market_data` event in `/market`: its message follows,
/// then [`EVENT_TAIL`].
const EVENT_HEAD: &[u8] = br#"42/market,["market_data","#;
const EVENT_TAIL: u8 = b']';

/// The `market_data` event of `data` in `/market`, as an Engine.IO message.
fn market_data_event(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(EVENT_HEAD.len() + data.len() + 1);
    out.extend_from_slice(EVENT_HEAD);
    out.extend_from_slice(data);
    out.put_u8(EVENT_TAIL);
    out.freeze()
}

/// The `market_data` message (JSON, as the proxy encoded it) of what the
/// proxy offers a room.
fn payload_of_outbound(out: &Outbound) -> Option<&[u8]> {
    match out {
        Outbound::Frame(frame) => payload_of(frame),
        Outbound::Sequenced(_) => None,
    }
}

/// The handshake's `auth` payload.
#[derive(Debug, Default, Deserialize)]
struct Auth {
    api_key: Option<String>,
}

/// Why a connection to `/market` is refused: the `message` of its
/// `connect_error`.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Market {
    /// The namespace, checking keys against the context's key ring, serving
    /// market data from `quotes`, its sessions and rooms' queues made like
    /// the context's connections'.
    pub fn new(context: &Context, quotes: Arc<dyn Quotes>) -> Market {
        let rooms = Arc::new(Rooms {
            connections: context.connections.clone(),
            index: Arc::new(Index::new()),
            rooms: Mutex::default(),
        });
        let shared = Shared {
            keys: context.keys.clone(),
            quotes,
            rooms,
        };
        Market {
            polls: Arc::new(polling::Polls::new(polling::MAX_POLLING_SESSIONS)),
            shared,
            context: context.clone(),
        }
    }

    /// Takes at most `max` sessions on long-polling at a time (by default
    /// [`MAX_POLLING_SESSIONS`]). Each costs memory but no open file once its
    /// request is answered, so a flood of handshakes is bounded here: past
    /// the limit a handshake gets `503` and Engine.IO's error saying why,
    /// and a log line. Sessions on a WebSocket, and sessions that moved to
    /// one, do not count.
    pub fn polling_limit(mut self, max: usize) -> Market {
        self.polls = Arc::new(polling::Polls::new(max));
        self
    }

    /// The rooms' topics, with their members: each room with sessions in
    /// it, by its Socket.IO name.
    pub fn topics(&self) -> Vec<(Arc<str>, usize)> {
        self.shared.rooms.index.topics()
    }

    /// How many [`topics`](Self::topics) there are.
    pub fn topic_count(&self) -> usize {
        self.shared.rooms.index.topic_count()
    }

    /// The watchlist page (`GET /watchlist`), and the Socket.IO client
    /// script it loads (`GET /watchlist/socket.io.min.js`), or `None` for
    /// another path.
    pub fn page(path: &str) -> Option<Response<Body>> {
        let (body, content_type): (&'static str, &'static str) = match path {
            PAGE_PATH => (PAGE, "text/html; charset=utf-8"),
            CLIENT_PATH => (CLIENT, "text/javascript; charset=utf-8"),
            _ => return None,
        };
        Some(tickwire_core::http::asset(body, content_type))
    }

    /// Whether `path` is Socket.IO's.
    pub fn serves(path: &str) -> bool {
        path == PATH
            || path
                .strip_prefix(PATH)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Answers a request of Socket.IO's path (Engine.IO v4) on the gateway's
    /// own sessions: a WebSocket opened as the transport, a long-polling
    /// session and its requests, the upgrade of one to a WebSocket (its
    /// tasks tracked by `tracker`). Another Engine.IO version or transport
    /// gets Engine.IO's error.
    pub async fn handle(&self, req: Request<Incoming>, tracker: &Tracker) -> Response<Body> {
        match route(&req) {
            Route::OpenWebSocket => session::upgrade(req, &self.shared, &self.context, tracker),
            Route::Upgrade(sid) => polling::upgrade(&self.polls, req, &sid, &self.context, tracker),
            Route::OpenPolling => self.polls.open(&req, &self.shared, &self.context),
            Route::Polling(sid) => self.polls.request(req, &sid).await,
            Route::Refused(code, message) => {
                debug!(
                    query = req.uri().query().unwrap_or(""),
                    "a Socket.IO request refused: {message}"
                );
                polling::refusal(hyper::StatusCode::BAD_REQUEST, code, message)
            }
        }
    }
}

/// What a request of Socket.IO's path asks for, by its query.
enum Route {
    /// `?EIO=4&transport=websocket`: a session on a WebSocket.
    OpenWebSocket,
    /// `...&transport=websocket&sid=`: the upgrade of a polling session.
    Upgrade(String),
    /// `?EIO=4&transport=polling`: a session on long-polling.
    OpenPolling,
    /// `...&transport=polling&sid=`: a request of one.
    Polling(String),
    /// Another Engine.IO version or transport: Engine.IO's error code and
    /// message.
    Refused(u8, &'static str),
}

/// Reads what `req` asks for (its query, once).
fn route<B>(req: &Request<B>) -> Route {
    let query = req.uri().query().unwrap_or("");
    let param = |name| tickwire_services::http::query_param(query, name);
    if param("EIO").as_deref() != Some("4") {
        return Route::Refused(5, "Unsupported protocol version");
    }
    let sid = param("sid").map(std::borrow::Cow::into_owned);
    match (param("transport").as_deref(), sid) {
        (Some("websocket"), None) => Route::OpenWebSocket,
        (Some("websocket"), Some(sid)) => Route::Upgrade(sid),
        (Some("polling"), None) => Route::OpenPolling,
        (Some("polling"), Some(sid)) => Route::Polling(sid),
        _ => Route::Refused(0, "Transport unknown"),
    }
}

/// Checks a connection's key for `/market` (see the [crate](crate) docs):
/// the key in the `Authorization` header (`header`) or in the handshake's
/// `auth`, allowed on the proxy, within its request rate and with a
/// connection to spare. `sid` names the connection in the log.
fn admit(
    shared: &Shared,
    header: Option<&[u8]>,
    auth: &Auth,
    sid: &str,
) -> Result<(Arc<KeyUsage>, Lease), Refused> {
    let refuse = |reason: &'static str, message: String| {
        shared.keys.refused(NAME, reason);
        info!(sid, reason, "{NAMESPACE} connection refused: {message}");
        Err(Refused(message))
    };
    let principal = match shared.keys.check_bearer(header, auth.api_key.as_deref()) {
        Ok(p) => p,
        Err(KeyRejection::Missing) => {
            return refuse(
                "missing_key",
                "missing api key: send auth {\"api_key\": \"...\"} or Authorization: Bearer <key>"
                    .to_owned(),
            );
        }
        Err(KeyRejection::Invalid) => return refuse("invalid_key", "invalid api key".to_owned()),
    };
    if !principal.allows(Endpoint::Proxy) {
        let message = format!("api key {:?} may not use market data", principal.user_id);
        return refuse("forbidden", message);
    }
    let usage = principal.usage();
    if !usage.take(Instant::now()) {
        let message = format!("api key {:?} is over its request rate", usage.name());
        return refuse("limit", message);
    }
    let Some(lease) = usage.lease() else {
        let message = format!(
            "connection limit exceeded: at most {} connections per API key",
            usage.max_connections()
        );
        return refuse("connection_limit", message);
    };
    debug!(sid, key = usage.name(), "{NAMESPACE} authenticated");
    Ok((usage, lease))
}

/// The greeting of a connection that joined `/market`.
fn greeting() -> serde_json::Value {
    serde_json::json!({"status": "ok"})
}

/// The mode a poll event (`get_ltp`, `get_quote`, `get_depth`) asks for,
/// and the event that answers it without an acknowledgement; `None` for
/// another event.
fn poll_mode(event: &str) -> Option<(Mode, &'static str)> {
    match event {
        "get_ltp" => Some((Mode::Ltp, "ltp")),
        "get_quote" => Some((Mode::Quote, "quote")),
        "get_depth" => Some((Mode::Depth, "depth")),
        _ => None,
    }
}

/// A poll's payload: `{"symbol": "RELIANCE", "exchange": "NSE"}` (and, for
/// `get_depth`, `"depth"`: 5, 20 or 30; default 5).
#[derive(Debug, Deserialize)]
struct PollRequest {
    symbol: String,
    exchange: String,
    #[serde(default)]
    depth: Option<i64>,
}

/// The answer of a poll: `{"status": "success", "data": <market_data>}` or
/// `{"status": "error", "message": "..."}`.
#[derive(Debug, Serialize)]
struct PollReply<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

impl PollReply<'_> {
    fn error(message: String) -> Self {
        PollReply {
            status: "error",
            data: None,
            message: Some(message),
        }
    }
}

/// The answer to a poll of `mode` (answered as `event` without an ack) for
/// `request` (or why it could not be read), as JSON: the last value, from
/// the cache.
async fn poll_answer(
    quotes: &dyn Quotes,
    mode: Mode,
    event: &str,
    request: Result<PollRequest, String>,
    sid: &str,
) -> Box<RawValue> {
    let found = match request {
        Err(e) => Err(format!(
            "get_{event} takes {{\"symbol\": ..., \"exchange\": ...}}: {e}"
        )),
        Ok(request) => {
            let depth = match request.depth {
                None => Some(Depth::Five),
                Some(levels) => Depth::from_levels(levels),
            };
            let instrument = Instrument::new(request.symbol.trim(), request.exchange.trim());
            match (depth, tickwire_proxy::check_instrument(&instrument)) {
                (None, _) => Err("depth must be 5, 20 or 30".to_owned()),
                (_, Err(why)) => Err(why),
                (Some(depth), Ok(())) => quotes
                    .last(&instrument, mode, depth)
                    .await
                    .ok_or_else(|| format!("no {event} data for {instrument} yet")),
            }
        }
    };
    let reply = match &found {
        Ok(bytes) => match std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
        {
            Some(data) => PollReply {
                status: "success",
                data: Some(data),
                message: None,
            },
            None => PollReply::error("the cached value is not JSON".to_owned()),
        },
        Err(message) => {
            debug!(sid, event, message, "poll not answered with data");
            PollReply::error(message.clone())
        }
    };
    to_raw(&reply)
}

/// `value` as raw JSON.
fn to_raw<T: Serialize>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value)
        .unwrap_or_else(|e| unreachable!("a reply always serializes: {e}"))
}

/// A `subscribe` or `unsubscribe` payload.
#[derive(Debug, Deserialize)]
struct SubscribeRequest {
    symbols: Vec<PollRequestSymbol>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    depth: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct PollRequestSymbol {
    symbol: String,
    exchange: String,
}

impl PollRequestSymbol {
    /// This instrument in a reply, refused for `message` if any.
    fn named(&self, message: Option<String>) -> Named {
        Named {
            symbol: self.symbol.clone(),
            exchange: self.exchange.clone(),
            message,
        }
    }
}

/// An instrument in a reply.
#[derive(Debug, Serialize)]
struct Named {
    symbol: String,
    exchange: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// The reply to `subscribe` and `unsubscribe`: what was done, what refused.
#[derive(Debug, Serialize)]
struct SubscribeReply {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    subscribed: Vec<Named>,
    refused: Vec<Named>,
}

impl SubscribeReply {
    /// What was done for `done` and not for `refused`: `success` when
    /// nothing was refused, `error` when nothing was done, else `partial`.
    fn of(mode: &'static str, done: Vec<Named>, refused: Vec<Named>) -> Self {
        let status = match (done.is_empty(), refused.is_empty()) {
            (_, true) => "success",
            (true, false) => "error",
            (false, false) => "partial",
        };
        SubscribeReply {
            status,
            mode: Some(mode),
            message: None,
            subscribed: done,
            refused,
        }
    }

    /// A `what` (`subscribe`, `unsubscribe`) of the socket `sid` refused
    /// for `message`, which the log repeats.
    fn refused(what: &str, sid: &dyn std::fmt::Display, message: String) -> Self {
        info!(%sid, "{NAMESPACE} {what} refused: {message}");
        SubscribeReply::error(message)
    }

    fn error(message: String) -> Self {
        SubscribeReply {
            status: "error",
            mode: None,
            message: Some(message),
            subscribed: Vec::new(),
            refused: Vec::new(),
        }
    }
}

/// The mode of a request: `LTP`, `Quote` (the default) or `Depth` (names
/// or the proxy's numbers 1, 2, 3).
fn mode_of(request: &SubscribeRequest) -> Result<(Mode, Depth, &'static str), String> {
    let mode = match request.mode.as_deref().map(str::trim) {
        None | Some("Quote" | "QUOTE" | "quote" | "2") => (Mode::Quote, "Quote"),
        Some("LTP" | "ltp" | "Ltp" | "1") => (Mode::Ltp, "LTP"),
        Some("Depth" | "DEPTH" | "depth" | "3") => (Mode::Depth, "Depth"),
        Some(other) => {
            return Err(format!("unknown mode {other:?}: LTP, Quote or Depth"));
        }
    };
    let depth = match request.depth {
        None => Depth::Five,
        Some(levels) => Depth::from_levels(levels).ok_or("depth must be 5, 20 or 30")?,
    };
    // Only Depth has levels: LTP and Quote rooms are one per instrument
    // whatever depth a client names.
    let depth = if mode.0 == Mode::Depth {
        depth
    } else {
        Depth::Five
    };
    Ok((mode.0, depth, mode.1))
}

/// Takes one request from the key's rate (`rate_per_minute`: subscribe and
/// unsubscribe messages count, as on the proxy).
fn within_rate(usage: &KeyUsage) -> Result<(), String> {
    if usage.take(Instant::now()) {
        Ok(())
    } else {
        Err(format!(
            "api key {:?} is over its request rate",
            usage.name()
        ))
    }
}

/// A `subscribe` or `unsubscribe` (`what`) checked: within the key's rate,
/// a payload of the right shape, a known mode and depth.
fn checked(
    what: &str,
    usage: &KeyUsage,
    request: Result<SubscribeRequest, String>,
) -> Result<Subscription, String> {
    within_rate(usage)?;
    let request = request.map_err(|e| {
        format!("{what} takes {{\"symbols\": [{{\"symbol\", \"exchange\"}}...], \"mode\"}}: {e}")
    })?;
    let (mode, depth, name) = mode_of(&request)?;
    Ok(Subscription {
        request,
        mode,
        depth,
        name,
    })
}

/// A checked `subscribe` or `unsubscribe`.
struct Subscription {
    request: SubscribeRequest,
    mode: Mode,
    depth: Depth,
    /// The mode's name in the reply.
    name: &'static str,
}

impl Subscription {
    /// Each instrument asked for, with the key of its room in the mode.
    fn rooms(self) -> impl Iterator<Item = (PollRequestSymbol, RoomKey)> {
        let (mode, depth) = (self.mode, self.depth);
        self.request.symbols.into_iter().map(move |s| {
            let instrument = Instrument::new(s.symbol.trim(), s.exchange.trim());
            (s, (instrument, mode, depth))
        })
    }
}

/// `subscribe`: joins the rooms of the instruments in the mode, a snapshot
/// of each one's last value first.
async fn subscribe_to(
    shared: &Shared,
    seat: &SessionSeat,
    joined: &Mutex<Vec<RoomKey>>,
    subscription: Subscription,
    sid: &str,
) -> SubscribeReply {
    let mode_name = subscription.name;
    let mut subscribed = Vec::new();
    let mut refused = Vec::new();
    for (s, key) in subscription.rooms() {
        let (instrument, mode, depth) = &key;
        let named = |message| s.named(message);
        let already = tickwire_core::lock(joined).contains(&key);
        if already {
            subscribed.push(named(None));
            continue;
        }
        if tickwire_core::lock(joined).len() >= MAX_SUBSCRIPTIONS {
            refused.push(named(Some(format!(
                "subscription limit reached: at most {MAX_SUBSCRIPTIONS} per connection"
            ))));
            continue;
        }
        // The snapshot before the room: an update that comes between is
        // newer than it, never older.
        let snapshot = shared.quotes.last(instrument, *mode, *depth).await;
        match shared.rooms.join(&*shared.quotes, &key) {
            Ok(key) => {
                if let Some(data) = snapshot
                    .as_deref()
                    .and_then(|last| serde_json::from_slice::<&RawValue>(last).ok())
                {
                    seat.snapshot(data);
                }
                seat.enter(&key);
                // Most connections are in a room or two: the list grows
                // from one, not from four.
                let mut joined = tickwire_core::lock(joined);
                if joined.len() == joined.capacity() {
                    let more = joined.len().max(1);
                    joined.reserve_exact(more);
                }
                joined.push(key);
                subscribed.push(named(None));
            }
            Err(why) => refused.push(named(Some(why))),
        }
    }
    debug!(
        sid,
        subscribed = subscribed.len(),
        refused = refused.len(),
        mode = mode_name,
        "{NAMESPACE} subscribe"
    );
    SubscribeReply::of(mode_name, subscribed, refused)
}

/// `unsubscribe`: leaves the rooms of the instruments in the mode.
fn unsubscribe_from(
    shared: &Shared,
    seat: &SessionSeat,
    joined: &Mutex<Vec<RoomKey>>,
    subscription: Subscription,
) -> SubscribeReply {
    let mode_name = subscription.name;
    let mut done = Vec::new();
    let mut refused = Vec::new();
    for (s, key) in subscription.rooms() {
        let held = {
            let mut joined = tickwire_core::lock(joined);
            let at = joined.iter().position(|k| k == &key);
            at.map(|at| joined.remove(at))
        };
        let named = |message| s.named(message);
        match held {
            Some(key) => {
                seat.exit(&key);
                shared.rooms.leave(&*shared.quotes, &key);
                done.push(named(None));
            }
            None => refused.push(named(Some("not subscribed".to_owned()))),
        }
    }
    SubscribeReply::of(mode_name, done, refused)
}

/// A connection went away: it leaves every room it was in (it already left
/// their topics).
fn leave_rooms(shared: &Shared, joined: &Mutex<Vec<RoomKey>>) {
    let keys = std::mem::take(&mut *tickwire_core::lock(joined));
    for key in keys {
        shared.rooms.leave(&*shared.quotes, &key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mode: Option<&str>, depth: Option<i64>) -> SubscribeRequest {
        SubscribeRequest {
            symbols: Vec::new(),
            mode: mode.map(str::to_owned),
            depth,
        }
    }

    #[test]
    fn a_request_is_routed_by_its_engine_io_query() {
        let route_of = |query: &str| {
            let req = Request::get(format!("/socket.io/?{query}"))
                .body(())
                .unwrap();
            match route(&req) {
                Route::OpenWebSocket => "websocket".to_owned(),
                Route::Upgrade(sid) => format!("upgrade {sid}"),
                Route::OpenPolling => "polling".to_owned(),
                Route::Polling(sid) => format!("poll {sid}"),
                Route::Refused(code, message) => format!("{code} {message}"),
            }
        };
        assert_eq!(route_of("EIO=4&transport=websocket"), "websocket");
        assert_eq!(route_of("EIO=4&transport=websocket&sid=ab"), "upgrade ab");
        assert_eq!(route_of("EIO=4&transport=polling&t=x"), "polling");
        assert_eq!(route_of("transport=polling&EIO=4&sid=ab"), "poll ab");
        assert_eq!(
            route_of("EIO=3&transport=polling"),
            "5 Unsupported protocol version"
        );
        assert_eq!(
            route_of("transport=polling"),
            "5 Unsupported protocol version"
        );
        assert_eq!(route_of("EIO=4&transport=pigeon"), "0 Transport unknown");
        assert_eq!(route_of("EIO=4"), "0 Transport unknown");
    }

    #[test]
    fn modes_and_depths_name_one_room_each() {
        assert_eq!(
            mode_of(&request(None, None)),
            Ok((Mode::Quote, Depth::Five, "Quote"))
        );
        assert_eq!(
            mode_of(&request(Some("1"), Some(20))),
            Ok((Mode::Ltp, Depth::Five, "LTP"))
        );
        assert_eq!(
            mode_of(&request(Some("Depth"), Some(20))),
            Ok((Mode::Depth, Depth::Twenty, "Depth"))
        );
        assert!(mode_of(&request(Some("Trades"), None)).is_err());
        assert!(mode_of(&request(Some("Depth"), Some(7))).is_err());
        let key = (
            Instrument::new("RELIANCE", "NSE"),
            Mode::Depth,
            Depth::Twenty,
        );
        assert_eq!(room_name(&key), "market_data:Depth20:NSE:RELIANCE");
    }
}
