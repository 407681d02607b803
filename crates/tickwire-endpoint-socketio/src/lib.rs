//! The Socket.IO channel of seed 003: the `/market` namespace that browser
//! UIs reach with the standard `socket.io-client`, at `/socket.io/` on the
//! main listener.
//!
//! Socket.IO v5 over Engine.IO v4 (long-polling, WebSocket and the upgrade
//! between them) is socketioxide's; this crate says what `/market` means:
//!
//! - the heartbeat the seed configures: a ping every 5 s, 10 s to answer;
//! - authentication at connect: an API key in the handshake's `auth`
//!   payload (`{"api_key": "..."}`) or `Authorization: Bearer <key>`,
//!   checked against the gateway's key ring (a key allowed on the proxy,
//!   whose data this channel carries), its request rate and its
//!   `max_connections`; a refusal is a Socket.IO `connect_error` whose
//!   `message` says why;
//! - on connect, `connected` `{"status": "ok"}`;
//! - `get_ltp`, `get_quote`, `get_depth` `{"symbol", "exchange"}` answer from
//!   the last-value cache ([`Quotes`]) through the client's acknowledgement,
//!   or, to a client that asked for none, as an event (`ltp`, `quote`,
//!   `depth`).
//!
//! CORS (all origins by default, else `allowed_origins`) is the router's,
//! as for every route a page calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engineioxide::service::NotFoundService;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use serde::{Deserialize, Serialize};
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler as _;
use socketioxide::service::SocketIoService;
use socketioxide::{SocketIo, TransportType};
use tickwire_config::Endpoint;
use tickwire_core::http::Body;
use tickwire_model::Instrument;
use tickwire_proxy::{Depth, Mode};
use tickwire_services::keys::{KeyRejection, KeyRing, KeyUsage, Lease};
use tickwire_services::quotes::Quotes;
use tracing::{debug, info};

/// Where Socket.IO clients connect (the standard path).
pub const PATH: &str = "/socket.io";
/// The namespace of market data.
pub const NAMESPACE: &str = "/market";
/// Engine.IO ping interval (seed 003: `ping_interval=5`).
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long a client has to answer a ping (seed 003: `ping_timeout=10`).
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint's name in logs, metrics and refusals.
const NAME: &str = "socketio";

/// The `/market` namespace and the Socket.IO server that carries it.
pub struct Market {
    svc: SocketIoService<NotFoundService>,
    io: SocketIo,
}

impl std::fmt::Debug for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Market").finish_non_exhaustive()
    }
}

/// What the namespace's handlers share.
#[derive(Clone)]
struct Shared {
    keys: Arc<KeyRing>,
    quotes: Arc<dyn Quotes>,
}

/// The slot a connection holds in its key's `max_connections`, released
/// when the socket (and with it this extension) goes away.
#[derive(Clone)]
struct Held(#[allow(dead_code)] Arc<(Arc<KeyUsage>, Lease)>);

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
    /// The namespace, checking keys against `keys` and answering polls
    /// from `quotes`.
    pub fn new(keys: Arc<KeyRing>, quotes: Arc<dyn Quotes>) -> Market {
        let (svc, io) = SocketIo::builder()
            .req_path(PATH)
            .ping_interval(PING_INTERVAL)
            .ping_timeout(PING_TIMEOUT)
            .transports([TransportType::Polling, TransportType::Websocket])
            .with_state(Shared { keys, quotes })
            .build_svc();
        io.ns(NAMESPACE, on_connect.with(authenticate));
        Market { svc, io }
    }

    /// Whether `path` is Socket.IO's.
    pub fn serves(path: &str) -> bool {
        path == PATH
            || path
                .strip_prefix(PATH)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Sockets connected to `/market` now.
    pub fn connected(&self) -> usize {
        self.io.of(NAMESPACE).map_or(0, |ns| ns.sockets().len())
    }

    /// Answers a request of Socket.IO's path: a long-polling request, or
    /// the upgrade of a WebSocket transport.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        use hyper::service::Service as _;
        let response = match self.svc.call(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        // Socket.IO's answers are whole (a polling payload, a handshake):
        // collecting them copies nothing that is not already in memory.
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                debug!(error = ?e, "Socket.IO answer not collected");
                bytes::Bytes::new()
            }
        };
        Response::from_parts(parts, Body::new(bytes))
    }
}

/// Checks the key of a connection to `/market` (see the [crate](crate) docs).
async fn authenticate(
    socket: SocketRef,
    TryData(auth): TryData<Auth>,
    State(shared): State<Shared>,
) -> Result<(), Refused> {
    let auth = auth.unwrap_or_default();
    let header = socket
        .req_parts()
        .headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let refuse = |reason: &'static str, message: String| {
        shared.keys.refused(NAME, reason);
        info!(sid = %socket.id, reason, "{NAMESPACE} connection refused: {message}");
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
    debug!(sid = %socket.id, key = usage.name(), "{NAMESPACE} authenticated");
    socket.extensions.insert(Held(Arc::new((usage, lease))));
    Ok(())
}

/// A connection joined `/market`: greet it as the seed does, and take its
/// events.
async fn on_connect(socket: SocketRef, Extension(_held): Extension<Held>) {
    debug!(sid = %socket.id, "{NAMESPACE} connected");
    socket.on("get_ltp", poll::<LTP>);
    socket.on("get_quote", poll::<QUOTE>);
    socket.on("get_depth", poll::<DEPTH>);
    if let Err(e) = socket.emit("connected", &serde_json::json!({"status": "ok"})) {
        debug!(sid = %socket.id, error = %e, "greeting not sent");
    }
}

/// The modes of the polls, as const parameters of [`poll`].
const LTP: u8 = 0;
const QUOTE: u8 = 1;
const DEPTH: u8 = 2;

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
    data: Option<&'a serde_json::value::RawValue>,
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

/// Whether the client asked for an acknowledgement of the event.
struct Acked(bool);

impl<A: socketioxide::adapter::Adapter> socketioxide::handler::FromMessageParts<A> for Acked {
    type Error = std::convert::Infallible;

    fn from_message_parts(
        _: &Arc<socketioxide::socket::Socket<A>>,
        _: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        Ok(Acked(ack_id.is_some()))
    }
}

/// `get_ltp`, `get_quote`, `get_depth`: the last value, from the cache.
async fn poll<const MODE: u8>(
    socket: SocketRef,
    TryData(request): TryData<PollRequest>,
    ack: AckSender,
    Acked(acked): Acked,
    State(shared): State<Shared>,
) {
    let (mode, event) = match MODE {
        LTP => (Mode::Ltp, "ltp"),
        QUOTE => (Mode::Quote, "quote"),
        _ => (Mode::Depth, "depth"),
    };
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
                (Some(depth), Ok(())) => shared
                    .quotes
                    .last(&instrument, mode, depth)
                    .await
                    .ok_or_else(|| format!("no {event} data for {instrument} yet")),
            }
        }
    };
    let raw;
    let reply = match &found {
        Ok(bytes) => match std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| serde_json::from_str::<&serde_json::value::RawValue>(text).ok())
        {
            Some(data) => {
                raw = data;
                PollReply {
                    status: "success",
                    data: Some(raw),
                    message: None,
                }
            }
            None => PollReply::error("the cached value is not JSON".to_owned()),
        },
        Err(message) => {
            debug!(sid = %socket.id, event, message, "poll not answered with data");
            PollReply::error(message.clone())
        }
    };
    let sent = if acked {
        ack.send(&reply)
    } else {
        socket.emit(event, &reply)
    };
    if let Err(e) = sent {
        debug!(sid = %socket.id, error = %e, "poll reply not sent");
    }
}
