//! HTTP: routing, `/negotiate`, `/healthz` and the handshake of the pubsub
//! hubs. The other endpoints have their own modules: `/ws` in [`crate::ws`],
//! `/stream` in [`crate::stream`], `POST /api/v1/publish` in
//! [`crate::publish`], `/api/v1/ws` and its AsyncAPI routes in
//! [`crate::fastws`], `/proxy` and its polls in [`crate::proxy`]; they share
//! [`start_session`] and [`refuse`] from here.
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
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tickwire_model::Hub;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::auth::KeyRejection;
use crate::config::Endpoint;
use crate::fanout::Subscriber;
use crate::pubsub::{Session, SessionParams};
use crate::session::{self, Protocol, Transport};
use crate::{Shared, Tracker};
use tickwire_websocket::HandshakeError;
use tickwire_websocket::close_code;
use tickwire_websocket::frame::{OpCode, put_close, put_frame};

/// The body of every response the gateway writes.
pub(crate) type Body = Full<Bytes>;

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves one HTTP/1.1 connection (and hands upgraded ones to a session).
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tracker: Tracker,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, error = %e, "TCP_NODELAY failed");
    }
    let mut shutdown = shared.shutdown.clone();
    let service = {
        let shared = shared.clone();
        let tracker = tracker.clone();
        hyper::service::service_fn(move |req| {
            let shared = shared.clone();
            let tracker = tracker.clone();
            async move { Ok::<_, Infallible>(route(req, shared, tracker).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        // A client gets this long to send a request head (slow-loris guard).
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = crate::shutdown_started(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
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
    slow_consumers: crate::outbox::SlowConsumerCounts,
}

fn health(shared: &Shared) -> Response<Body> {
    json(
        StatusCode::OK,
        &Health {
            status: "ok",
            connections: shared.connections.load(Ordering::Relaxed),
            slow_consumers: shared.slow_consumers.counts(),
        },
    )
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
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
                    move |sub| Session::new(shared, sub, params)
                };
                start_session(upgraded, shared, transport, make, tracker).await;
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

/// Takes the TCP stream back from hyper and runs the session on its halves;
/// any other transport runs on a generic split.
pub(crate) async fn start_session<P: Protocol>(
    upgraded: hyper::upgrade::Upgraded,
    shared: Arc<Shared>,
    transport: Transport,
    make: impl FnOnce(Subscriber) -> P,
    tracker: Tracker,
) {
    use tokio::io::AsyncReadExt as _;
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let stream = parts.io.into_inner();
            let _ = stream.set_nodelay(true);
            let (read, write) = stream.into_split();
            // Bytes hyper read past the request belong to the WebSocket
            // stream. They are a slice of hyper's whole read buffer (8 KiB or
            // more): copy them out, so that the buffer is freed now rather
            // than held for the life of the connection.
            let early = Bytes::copy_from_slice(&parts.read_buf);
            drop(parts.read_buf);
            let read = std::io::Cursor::new(early).chain(read);
            session::run(read, write, shared, transport, make, tracker).await;
        }
        Err(upgraded) => {
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            session::run(read, write, shared, transport, make, tracker).await;
        }
    }
}

/// A checked WebSocket upgrade request: the value of its
/// `Sec-WebSocket-Accept`.
#[derive(Debug)]
pub(crate) struct Handshake(HeaderValue);

/// Checks that `req` is a WebSocket upgrade request a server may accept
/// (RFC 6455 §4.2.1, by the codec); [`handshake_refusal`] answers an error.
pub(crate) fn handshake(req: &Request<Incoming>) -> Result<Handshake, HandshakeError> {
    tickwire_websocket::handshake::check(req.method(), req.headers())
        .map(Handshake)
        .inspect_err(|e| debug!(path = req.uri().path(), error = %e, "WebSocket handshake refused"))
}

/// The answer to a refused handshake: 400 naming what is wrong, with
/// `Sec-WebSocket-Version: 13` when the client asked for another version
/// (§4.4).
pub(crate) fn handshake_refusal(e: &HandshakeError) -> Response<Body> {
    let mut refusal = json_error(StatusCode::BAD_REQUEST, &e.to_string());
    if *e == HandshakeError::WrongVersion {
        refusal.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static(tickwire_websocket::handshake::VERSION),
        );
    }
    refusal
}

/// Answers a checked upgrade request with 101 and runs `then` on the
/// upgraded connection in a task of its own.
pub(crate) fn upgrade_with<F, Fut>(
    req: &mut Request<Incoming>,
    handshake: Handshake,
    then: F,
) -> Response<Body>
where
    F: FnOnce(hyper::upgrade::Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => then(upgraded).await,
            Err(e) => debug!(error = %e, "upgrade failed"),
        }
    });
    tickwire_websocket::handshake::switching_protocols(handshake.0)
        .map(|()| Body::new(Bytes::new()))
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

/// Refuses an upgraded connection: writes `message` (a text frame) if any
/// and a close frame, then lets the client read them before the socket
/// goes away.
pub(crate) async fn refuse(
    upgraded: hyper::upgrade::Upgraded,
    message: Option<Bytes>,
    code: u16,
    reason: &str,
    tracker: Tracker,
) {
    let mut io = TokioIo::new(upgraded);
    let mut buf = BytesMut::new();
    if let Some(message) = message {
        // RFC 6455 §5.6: a text frame.
        put_frame(&mut buf, OpCode::Text, &message);
    }
    put_close(&mut buf, code, reason);
    let write = async {
        io.write_all(&buf).await?;
        io.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(std::time::Duration::from_secs(5), write).await {
        warn!(error = %e, "refusal not written");
    }
    // Give the client a moment to read the close before the socket goes away.
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        use tokio::io::AsyncReadExt as _;
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    drop(tracker);
}

/// The percent-decoded value of the first `name=` parameter of `query`.
pub(crate) fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A JSON response.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    json_bytes(
        status,
        Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
    )
}

/// A JSON `{"error": ...}` response.
pub(crate) fn json_error(status: StatusCode, error: &str) -> Response<Body> {
    json(status, &ErrorBody { error })
}

/// A JSON response of `body` (already encoded).
pub(crate) fn json_bytes(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn method_not_allowed() -> Response<Body> {
    let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
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
