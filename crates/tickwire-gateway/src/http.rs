//! The router: the one place that knows every endpoint's routes. Each
//! endpoint's crate answers its own (the hubs and `/negotiate`
//! in `tickwire-endpoint-hubs`, `/ws`, `/stream`, the publish API, FastWS
//! with its AsyncAPI routes, the proxy with its polls); this module only
//! picks the endpoint, answers `/healthz` and `/readyz`, and applies what
//! holds for every route: which web origins may open WebSockets, and CORS
//! for the routes a page calls (`/negotiate`, the polls, the publish API).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tickwire_core::Tracker;
use tickwire_core::http::{Body, json, json_error, method_not_allowed, serve_io};
#[cfg(feature = "pubsub")]
use tickwire_endpoint_hubs::NEGOTIATE_PATH;

use crate::Shared;

/// Serves one HTTP/1.1 connection of the main listener (and hands upgraded
/// ones to a session).
pub(crate) async fn serve<I>(io: I, peer: SocketAddr, shared: Arc<Shared>, tracker: Tracker)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = shared.context.shutdown.clone();
    let service = {
        let tracker = tracker.clone();
        move |req| route(req, shared.clone(), tracker.clone())
    };
    serve_io(io, peer, shutdown, service).await;
    drop(tracker);
}

/// Answers one request.
async fn route(req: Request<Incoming>, shared: Arc<Shared>, tracker: Tracker) -> Response<Body> {
    #[cfg(feature = "fastws")]
    use tickwire_endpoint_fastws as fastws;
    #[cfg(feature = "pubsub")]
    use tickwire_endpoint_hubs as hubs;
    #[cfg(feature = "proxy")]
    use tickwire_endpoint_proxy as proxy;
    use tickwire_endpoint_publish as publish;
    #[cfg(feature = "stream")]
    use tickwire_endpoint_stream as stream;
    #[cfg(feature = "ws")]
    use tickwire_endpoint_ws as ws;

    // Upgrades count their connections; a build with no WebSocket endpoint
    // has none.
    #[cfg(not(any(
        feature = "pubsub",
        feature = "ws",
        feature = "stream",
        feature = "fastws",
        feature = "proxy"
    )))]
    let _ = tracker;
    let context = &shared.context;
    let path = req.uri().path();
    let get = req.method() == Method::GET;
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    #[cfg(feature = "socketio")]
    let socketio = tickwire_endpoint_socketio::Market::serves(path);
    #[cfg(not(feature = "socketio"))]
    let socketio = false;
    #[cfg(feature = "proxy")]
    let polls = proxy::serves_rest(path);
    #[cfg(not(feature = "proxy"))]
    let polls = false;
    #[cfg(feature = "pubsub")]
    let negotiate = path == NEGOTIATE_PATH;
    #[cfg(not(feature = "pubsub"))]
    let negotiate = false;
    let cors = negotiate || path == publish::PATH || polls || socketio;
    if cors && req.method() == Method::OPTIONS {
        return preflight(&shared, origin.as_deref());
    }
    let endpoint = endpoint_of(path);
    if let Some(refusal) = context.origins.refuse_upgrade(&req) {
        context.keys.refused(endpoint.unwrap_or("other"), "origin");
        return refusal;
    }
    #[cfg(feature = "socketio")]
    let page = if get {
        tickwire_endpoint_socketio::Market::page(path)
    } else {
        None
    };
    #[cfg(feature = "pubsub")]
    let hub = hubs::hub_of(path);
    #[cfg(not(feature = "pubsub"))]
    let hub: Option<Result<std::convert::Infallible, &str>> = None;
    let mut response = match (path, hub) {
        #[cfg(feature = "socketio")]
        _ if socketio => shared.socketio.handle(req, &tracker).await,
        #[cfg(feature = "socketio")]
        _ if page.is_some() => page.unwrap_or_default(),
        (_, Some(Err(name))) => json_error(StatusCode::NOT_FOUND, &format!("unknown hub {name:?}")),
        #[cfg(feature = "pubsub")]
        (_, Some(Ok(hub))) if get => hubs::websocket(req, hub, &shared.hubs, context, &tracker),
        (_, Some(Ok(_))) => method_not_allowed(),
        #[cfg(feature = "ws")]
        (ws::PATH, _) if get => ws::upgrade(req, &shared.ws, context, &tracker),
        #[cfg(feature = "stream")]
        (stream::PATH, _) if get => stream::upgrade(req, &shared.stream, context, &tracker),
        (publish::PATH, _) => {
            let response = publish::handle(req, &shared.publish, context).await;
            #[cfg(feature = "metrics")]
            shared.publish_statuses.count(response.status());
            response
        }
        #[cfg(feature = "fastws")]
        (p, _) if fastws::serves(p) => fastws::handle(req, &shared.fastws, context, &tracker),
        #[cfg(feature = "proxy")]
        (proxy::PATH, _) if get => proxy::upgrade(req, &shared.proxy, context, &tracker),
        #[cfg(feature = "proxy")]
        (p, _) if proxy::serves_rest(p) => proxy::rest(&req, &shared.proxy).await,
        #[cfg(feature = "pubsub")]
        (NEGOTIATE_PATH, _) if get => hubs::negotiate(&req, &shared.hubs, context).await,
        ("/healthz", _) if get => health(&shared),
        ("/readyz", _) if get => ready(&shared),
        #[cfg(feature = "metrics")]
        ("/metrics", _) if get => crate::metrics::metrics(&shared),
        ("/", _) if get => crate::dashboard::index(),
        ("/dashboard", _) if get => crate::dashboard::page(),
        ("/dashboard/stats", _) if get => crate::dashboard::stats(&shared),
        (p, _) if p.starts_with(crate::admin::PREFIX) => crate::admin::handle(&req, &shared),
        #[cfg(feature = "pubsub")]
        (NEGOTIATE_PATH, _) => method_not_allowed(),
        #[cfg(feature = "ws")]
        (ws::PATH, _) => method_not_allowed(),
        #[cfg(feature = "stream")]
        (stream::PATH, _) => method_not_allowed(),
        #[cfg(feature = "proxy")]
        (proxy::PATH, _) => method_not_allowed(),
        #[cfg(feature = "metrics")]
        ("/metrics", _) => method_not_allowed(),
        ("/healthz" | "/readyz" | "/" | "/dashboard" | "/dashboard/stats", _) => {
            method_not_allowed()
        }
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    };
    if let (Some(endpoint), Some(reason)) = (endpoint, refusal_reason(response.status())) {
        context.keys.refused(endpoint, reason);
    }
    if let Some(origin) = origin.filter(|o| cors && context.origins.allows(o)) {
        allow_origin(&shared, &origin, &mut response);
    }
    response
}

/// The endpoint of a route that takes keys or tokens, by name (for the
/// refusal counts).
fn endpoint_of(path: &str) -> Option<&'static str> {
    match path {
        #[cfg(feature = "pubsub")]
        NEGOTIATE_PATH => Some("negotiate"),
        #[cfg(feature = "ws")]
        tickwire_endpoint_ws::PATH => Some("ws"),
        #[cfg(feature = "stream")]
        tickwire_endpoint_stream::PATH => Some("stream"),
        tickwire_endpoint_publish::PATH => Some("publish"),
        #[cfg(feature = "proxy")]
        tickwire_endpoint_proxy::PATH => Some("proxy"),
        #[cfg(feature = "pubsub")]
        p if tickwire_endpoint_hubs::hub_of(p).is_some() => Some("hubs"),
        #[cfg(feature = "fastws")]
        p if tickwire_endpoint_fastws::serves(p) => Some("fastws"),
        _ => None,
    }
}

/// What an answer of an endpoint's route says of its client's credentials:
/// 401 none or a wrong one, 403 one not allowed there, 429 over its limits.
fn refusal_reason(status: StatusCode) -> Option<&'static str> {
    match status {
        StatusCode::UNAUTHORIZED => Some("unauthorized"),
        StatusCode::FORBIDDEN => Some("forbidden"),
        StatusCode::TOO_MANY_REQUESTS => Some("limit"),
        _ => None,
    }
}

/// The CORS headers that let a page of `origin` (allowed) read `response`.
fn allow_origin(shared: &Shared, origin: &str, response: &mut Response<Body>) {
    let headers = response.headers_mut();
    if shared.context.origins.any() {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Answers a CORS preflight of a route a page calls: 204 with what it may
/// send (GET and POST, `Authorization` and `Content-Type`) when `origin` is
/// allowed, 403 otherwise.
fn preflight(shared: &Shared, origin: Option<&str>) -> Response<Body> {
    let Some(origin) = origin.filter(|o| shared.context.origins.allows(o)) else {
        return json_error(StatusCode::FORBIDDEN, "origin not allowed");
    };
    let mut response = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS")
        .header(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Authorization, Content-Type",
        )
        .header(header::ACCESS_CONTROL_MAX_AGE, "600")
        .body(Body::default())
        .unwrap_or_default();
    allow_origin(shared, origin, &mut response);
    response
}

/// `GET /readyz`: whether to send this gateway new clients.
#[derive(Serialize)]
struct Ready {
    status: &'static str,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<String>,
}

/// 200 `{"status":"ready"}` while the gateway takes new clients; 503
/// `{"status":"unready","reasons":[...]}` once shutdown is signalled, or
/// while an adapter of `required_adapters` that reports its state (the
/// ZeroMQ bus) is not connected. Adapters that report none are up once
/// started (the gateway does not start without a required one).
fn ready(shared: &Shared) -> Response<Body> {
    let mut reasons = Vec::new();
    if shared.draining.load(std::sync::atomic::Ordering::Acquire) {
        reasons.push("shutting down".to_owned());
    }
    for name in &shared.required {
        if let Some(state) = shared.adapter_states.get(name) {
            if state != "connected" {
                reasons.push(format!("adapter {name}: {state}"));
            }
        }
    }
    if reasons.is_empty() {
        json(
            StatusCode::OK,
            &Ready {
                status: "ready",
                reasons,
            },
        )
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &Ready {
                status: "unready",
                reasons,
            },
        )
    }
}

/// `GET /healthz`: liveness, with the open WebSocket connections, what the
/// slow-consumer policies have done since the start, the instruments, and
/// what became of reliable sessions whose connection vanished.
#[derive(Serialize)]
struct Health {
    status: &'static str,
    connections: u64,
    slow_consumers: tickwire_core::SlowConsumerCounts,
    instruments: Instruments,
    #[cfg(feature = "pubsub")]
    recovery: tickwire_endpoint_hubs::RecoveryCounts,
    /// A cluster member's bus: what it published, took, and could not read.
    #[cfg(feature = "cluster")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterHealth>,
}

/// The cluster's figures in `/healthz`.
#[cfg(feature = "cluster")]
#[derive(Serialize)]
struct ClusterHealth {
    node: String,
    published: u64,
    received: u64,
    unreadable: u64,
    /// Updates not published because the queue to the bus was full.
    dropped: u64,
    /// Topics subscribed to on the bus now.
    subscriptions: u64,
    /// Last values taken from other nodes.
    last_values: u64,
}

/// The symbol table's figures in `/healthz`.
#[derive(Serialize)]
struct Instruments {
    /// Known now.
    known: usize,
    /// Refused because the table was full (`max_instruments`).
    refused: u64,
    /// Forgotten when idle (`forget_instruments_after_secs`).
    forgotten: u64,
}

fn health(shared: &Shared) -> Response<Body> {
    let connections = &shared.context.connections;
    json(
        StatusCode::OK,
        &Health {
            status: "ok",
            connections: connections.open(),
            slow_consumers: connections.slow_consumers(),
            instruments: Instruments {
                known: shared.context.market.symbols_tracked(),
                refused: shared.context.market.refused(),
                forgotten: shared.context.market.forgotten(),
            },
            #[cfg(feature = "pubsub")]
            recovery: shared.hubs.hubs.parked.outcomes(),
            #[cfg(feature = "cluster")]
            cluster: shared.cluster.as_ref().map(|c| {
                let stats = c.stats();
                let read =
                    |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
                ClusterHealth {
                    node: c.node().to_owned(),
                    published: read(&stats.published),
                    received: read(&stats.received),
                    unreadable: read(&stats.unreadable),
                    dropped: read(&stats.dropped),
                    subscriptions: read(&stats.subscriptions),
                    last_values: read(&stats.last_values),
                }
            }),
        },
    )
}
