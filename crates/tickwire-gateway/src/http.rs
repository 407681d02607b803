//! HTTP: routing, `/negotiate`, `/healthz` and the WebSocket handshake.
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

use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tickwire_model::Hub;
use tickwire_pubsub::Subprotocol;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::auth::KeyRejection;
use crate::session::{self, SessionParams};
use crate::writer::{close_code, put_close};
use crate::{Shared, Tracker};

type Body = Full<Bytes>;

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
            let response = route(req, &shared, &tracker);
            async move { Ok::<_, Infallible>(response) }
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
fn route(req: Request<Incoming>, shared: &Arc<Shared>, tracker: &Tracker) -> Response<Body> {
    let path = req.uri().path();
    let hub = path
        .strip_prefix("/ws/")
        .or_else(|| path.strip_prefix("/client/hubs/"))
        .map(|name| name.trim_end_matches('/'));
    match (path, hub) {
        (_, Some(name)) => match Hub::from_name(name) {
            None => json_error(StatusCode::NOT_FOUND, &format!("unknown hub {name:?}")),
            Some(hub) if req.method() == Method::GET => websocket(req, hub, shared, tracker),
            Some(_) => method_not_allowed(),
        },
        ("/negotiate", _) if req.method() == Method::GET => negotiate(&req, shared),
        ("/healthz", _) if req.method() == Method::GET => {
            json(StatusCode::OK, &Status { status: "ok" })
        }
        ("/negotiate" | "/healthz", _) => method_not_allowed(),
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    }
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
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
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade request",
        );
    }
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
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let mut response = response.map(|_| Body::new(Bytes::new()));
    if let Some(echo) = negotiated.echo {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(echo),
        );
    }
    let shared = shared.clone();
    let tracker = tracker.clone();
    let protocol = negotiated.protocol;
    tokio::spawn(async move {
        let ws = match upgrade.await {
            Ok(ws) => ws,
            Err(e) => {
                debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let upgraded = ws.into_inner().into_inner();
        match claims {
            None => refuse_recovery(upgraded, protocol, tracker).await,
            Some(claims) => {
                let params = SessionParams {
                    hub,
                    protocol,
                    user_id: claims.sub,
                    roles: claims.role,
                };
                start_session(upgraded, shared, params, tracker).await;
            }
        }
    });
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
async fn start_session(
    upgraded: hyper::upgrade::Upgraded,
    shared: Arc<Shared>,
    params: SessionParams,
    tracker: Tracker,
) {
    use tokio::io::AsyncReadExt as _;
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let stream = parts.io.into_inner();
            let _ = stream.set_nodelay(true);
            let (read, write) = stream.into_split();
            // Bytes hyper read past the request belong to the WebSocket stream.
            let read = std::io::Cursor::new(parts.read_buf).chain(read);
            session::run(read, write, shared, params, tracker).await;
        }
        Err(upgraded) => {
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            session::run(read, write, shared, params, tracker).await;
        }
    }
}

/// Answers a recovery attempt: this gateway keeps no sessions to recover, so
/// the connection is closed with 1008 and the client starts a new session.
async fn refuse_recovery(
    upgraded: hyper::upgrade::Upgraded,
    protocol: Subprotocol,
    tracker: Tracker,
) {
    let mut io = TokioIo::new(upgraded);
    let mut buf = BytesMut::new();
    put_close(&mut buf, close_code::POLICY, "session cannot be recovered");
    debug!(%protocol, "recovery attempt refused");
    let write = async {
        io.write_all(&buf).await?;
        io.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(std::time::Duration::from_secs(5), write).await {
        warn!(error = %e, "recovery refusal not written");
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

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Body::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn json_error(status: StatusCode, error: &str) -> Response<Body> {
    json(status, &ErrorBody { error })
}

fn method_not_allowed() -> Response<Body> {
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
