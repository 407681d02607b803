//! HTTP: routing, `/negotiate`, `/healthz` and the handshake of the pubsub
//! hubs. The other endpoints have their own modules: `/ws` in [`crate::ws`],
//! `/stream` in [`crate::stream`], `POST /api/v1/publish` in
//! [`crate::publish`], `/api/v1/ws` and its AsyncAPI routes in
//! [`crate::fastws`], `/proxy` and its polls in [`crate::proxy`]. Every one
//! of them upgrades and runs its sessions with [`tickwire_core::http`].
//!
//! The handshake of a hub route is checked in this order, so that every
//! refusal is an HTTP answer the client can read before any upgrade:
//!
//! 1. unknown hub → 404;
//! 2. a recovery attempt of a reliable client (`awps_connection_id` and
//!    `awps_reconnection_token` in the query) is accepted and then closed with
//!    1008, "session gone" (checked before the token, which may have expired
//!    since, as the Azure Web PubSub client SDKs expect);
//! 3. no, invalid or expired access token, or a token of another hub → 401;
//! 4. not a valid WebSocket upgrade request → 400;
//! 5. only unsupported subprotocols offered → 400 naming the supported ones.
//!
//! The chosen subprotocol is echoed in `Sec-WebSocket-Protocol`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tickwire_core::http::{
    Body, handshake, handshake_refusal, json, json_error, method_not_allowed, refuse,
    serve_connection, start_session, upgrade_with,
};
use tickwire_core::session::{Protocol, Transport};
use tickwire_core::{Subscriber, Tracker};
use tickwire_model::Hub;
use tickwire_websocket::OpCode;
use tickwire_websocket::close_code;
use tokio::net::TcpStream;
use tracing::debug;

use crate::Shared;
use crate::auth::KeyRejection;
use crate::config::Endpoint;
use crate::pubsub::{Session, SessionParams};

/// Serves one HTTP/1.1 connection of the main listener (and hands upgraded
/// ones to a session).
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tracker: Tracker,
) {
    let shutdown = shared.shutdown.clone();
    let service = {
        let tracker = tracker.clone();
        move |req| route(req, shared.clone(), tracker.clone())
    };
    serve_connection(stream, peer, shutdown, service).await;
    drop(tracker);
}

/// Answers one request.
async fn route(req: Request<Incoming>, shared: Arc<Shared>, tracker: Tracker) -> Response<Body> {
    let path = req.uri().path();
    let hub = path
        .strip_prefix("/ws/")
        .or_else(|| path.strip_prefix("/client/hubs/"))
        .map(|name| name.trim_end_matches('/'));
    let get = req.method() == Method::GET;
    match (path, hub) {
        (_, Some(name)) => match Hub::from_name(name) {
            None => json_error(StatusCode::NOT_FOUND, &format!("unknown hub {name:?}")),
            Some(hub) if get => websocket(req, hub, &shared, &tracker),
            Some(_) => method_not_allowed(),
        },
        (crate::ws::PATH, _) if get => crate::ws::upgrade(req, &shared, &tracker),
        (crate::stream::PATH, _) if get => crate::stream::upgrade(req, &shared, &tracker),
        (crate::publish::PATH, _) => crate::publish::handle(req, shared).await,
        (p, _) if crate::fastws::serves(p) => crate::fastws::handle(req, &shared, &tracker),
        (crate::proxy::PATH, _) if get => crate::proxy::upgrade(req, &shared, &tracker),
        (p, _) if crate::proxy::serves_rest(p) => crate::proxy::rest(&req, &shared),
        ("/negotiate", _) if get => negotiate(&req, &shared),
        ("/healthz", _) if get => health(&shared),
        (
            "/negotiate" | "/healthz" | crate::ws::PATH | crate::stream::PATH | crate::proxy::PATH,
            _,
        ) => method_not_allowed(),
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `GET /healthz`: liveness, with the open WebSocket connections and what
/// the slow-consumer policies have done since the start.
#[derive(Serialize)]
struct Health {
    status: &'static str,
    connections: u64,
    slow_consumers: tickwire_core::SlowConsumerCounts,
}

fn health(shared: &Shared) -> Response<Body> {
    json(
        StatusCode::OK,
        &Health {
            status: "ok",
            connections: shared.connections.open(),
            slow_consumers: shared.connections.slow_consumers(),
        },
    )
}

/// The `/negotiate` answer (seed 000).
#[derive(Serialize)]
struct Negotiate<'a> {
    websocket_urls: HubUrls,
    prefix: &'a str,
}

/// `{hub name: URL}` in the order of [`Hub::ALL`].
struct HubUrls(Vec<(Hub, String)>);

impl Serialize for HubUrls {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(hub, url)| (hub.name(), url)))
    }
}

fn negotiate(req: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    let principal = match shared.auth.check_basic(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    ) {
        Ok(p) => p,
        Err(KeyRejection::Missing) => {
            return json_error(StatusCode::UNAUTHORIZED, "missing authorization");
        }
        Err(KeyRejection::Invalid) => {
            return json_error(StatusCode::UNAUTHORIZED, "invalid api key");
        }
    };
    if !principal.allows(Endpoint::Pubsub) {
        return json_error(
            StatusCode::FORBIDDEN,
            &format!("api key {:?} may not use /negotiate", principal.user_id),
        );
    }
    let (tls, authority): (bool, Cow<'_, str>) = match &shared.public_url {
        Some(url) => (url.tls, Cow::Borrowed(&url.authority)),
        None => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| is_valid_authority(h));
            match host {
                Some(host) => (false, Cow::Borrowed(host)),
                None => (false, Cow::Owned(shared.config.listen.to_string())),
            }
        }
    };
    let (ws, http) = if tls {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let urls = Hub::ALL
        .into_iter()
        .map(|hub| {
            let audience = format!("{http}://{authority}/client/hubs/{hub}");
            let token = shared.auth.issue(&principal, audience);
            (
                hub,
                format!("{ws}://{authority}/ws/{hub}?access_token={token}"),
            )
        })
        .collect();
    debug!(user = principal.user_id, "negotiated");
    json(
        StatusCode::OK,
        &Negotiate {
            websocket_urls: HubUrls(urls),
            prefix: &shared.config.prefix,
        },
    )
}

/// A `Host` value safe to put into a URL: host and optional port only.
fn is_valid_authority(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        })
}

fn websocket(
    mut req: Request<Incoming>,
    hub: Hub,
    shared: &Arc<Shared>,
    tracker: &Tracker,
) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    let recovery = query_param(query, "awps_connection_id").is_some()
        && query_param(query, "awps_reconnection_token").is_some();
    let claims = if recovery {
        None
    } else {
        let Some(token) = access_token(&req, query) else {
            return json_error(StatusCode::UNAUTHORIZED, "missing access token");
        };
        match shared.auth.verify(&token, hub) {
            Some(claims) => Some(claims),
            None => return json_error(StatusCode::UNAUTHORIZED, "invalid or expired access token"),
        }
    };
    let handshake = match handshake(&req) {
        Ok(h) => h,
        Err(e) => return handshake_refusal(&e),
    };
    let offered: Vec<&str> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let negotiated = match tickwire_pubsub::negotiate(offered) {
        Ok(n) => n,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let shared = shared.clone();
    let tracker = tracker.clone();
    let protocol = negotiated.protocol;
    let mut response = upgrade_with(&mut req, handshake, move |upgraded| async move {
        match claims {
            None => {
                debug!(%protocol, "recovery attempt refused");
                refuse(
                    upgraded,
                    None,
                    close_code::POLICY,
                    "session cannot be recovered",
                    tracker,
                )
                .await;
            }
            Some(claims) => {
                let params = SessionParams {
                    hub,
                    protocol,
                    user_id: claims.sub,
                    roles: claims.role,
                };
                let transport = params.transport(&shared);
                let make = {
                    let shared = shared.clone();
                    move |sub| Session::new(shared.hubs.clone(), sub, params)
                };
                let connections = shared.connections.clone();
                start_session(upgraded, connections, transport, make, tracker).await;
            }
        }
    });
    if let Some(echo) = negotiated.echo {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(echo),
        );
    }
    response
}

/// The access token of a handshake: the `access_token` query parameter, or
/// an `Authorization: Bearer` header.
fn access_token<'q>(req: &Request<Incoming>, query: &'q str) -> Option<Cow<'q, str>> {
    query_param(query, "access_token").or_else(|| {
        let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| Cow::Owned(token.trim().to_owned()))
    })
}

/// Runs a session of a JSON endpoint on an upgraded connection: one variant,
/// text replies, messages of at most `max_message_bytes`, and the endpoint's
/// slow-consumer policy (`None`: the transport's). `make` builds the
/// endpoint's protocol around the connection.
pub(crate) async fn json_session<P: Protocol>(
    upgraded: hyper::upgrade::Upgraded,
    shared: Arc<Shared>,
    max_message_bytes: usize,
    slow_consumer: Option<tickwire_core::SlowConsumer>,
    make: impl FnOnce(Arc<Shared>, Subscriber) -> P,
    tracker: Tracker,
) {
    let transport = Transport {
        variant: 0,
        reply_opcode: OpCode::Text,
        max_message_bytes,
        slow_consumer: slow_consumer.unwrap_or(shared.config.transport.slow_consumer),
    };
    let connections = shared.connections.clone();
    start_session(
        upgraded,
        connections,
        transport,
        |sub| make(shared, sub),
        tracker,
    )
    .await;
}

/// The API key of a JSON-feed handshake: `Authorization: Bearer <key>`, or
/// else the `api_key` query parameter (seed 002).
pub(crate) fn feed_key<'s>(
    req: &Request<Incoming>,
    shared: &'s Shared,
) -> Result<crate::auth::Principal<'s>, KeyRejection> {
    let query = req.uri().query().unwrap_or("");
    let api_key = query_param(query, "api_key");
    shared.auth.check_bearer(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        api_key.as_deref(),
    )
}

/// The decoded value of the first `name=` parameter of `query`
/// (`application/x-www-form-urlencoded`: `%XX` and `+`).
pub(crate) fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    form_urlencoded::parse(query.as_bytes()).find_map(|(key, value)| (key == name).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let q = "a=1&access_token=x.y%2Dz&flag&sp=a+b&bad=%zz&end=%4";
        assert_eq!(query_param(q, "access_token").as_deref(), Some("x.y-z"));
        assert_eq!(query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(query_param(q, "sp").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "bad").as_deref(), Some("%zz"));
        assert_eq!(query_param(q, "end").as_deref(), Some("%4"));
        assert_eq!(query_param(q, "missing"), None);
    }

    #[test]
    fn hosts_are_checked_before_use() {
        assert!(is_valid_authority("127.0.0.1:8080"));
        assert!(is_valid_authority("[::1]:80"));
        assert!(!is_valid_authority("evil.com/path?x"));
        assert!(!is_valid_authority(""));
    }
}
