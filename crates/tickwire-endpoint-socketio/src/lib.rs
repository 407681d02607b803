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
//! - on connect, `connected` `{"status": "ok"}`.
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
use serde::Deserialize;
use socketioxide::extract::{Extension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler as _;
use socketioxide::service::SocketIoService;
use socketioxide::{SocketIo, TransportType};
use tickwire_config::Endpoint;
use tickwire_core::http::Body;
use tickwire_services::keys::{KeyRejection, KeyRing, KeyUsage, Lease};
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
    /// The namespace, checking keys against `keys`.
    pub fn new(keys: Arc<KeyRing>) -> Market {
        let (svc, io) = SocketIo::builder()
            .req_path(PATH)
            .ping_interval(PING_INTERVAL)
            .ping_timeout(PING_TIMEOUT)
            .transports([TransportType::Polling, TransportType::Websocket])
            .with_state(Shared { keys })
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

/// A connection joined `/market`: greet it as the seed does.
async fn on_connect(socket: SocketRef, Extension(_held): Extension<Held>) {
    debug!(sid = %socket.id, "{NAMESPACE} connected");
    if let Err(e) = socket.emit("connected", &serde_json::json!({"status": "ok"})) {
        debug!(sid = %socket.id, error = %e, "greeting not sent");
    }
}
