//! The HTTP side of a WebSocket server: serving a connection with hyper,
//! the upgrade (checked by the codec), taking the TCP stream back from
//! hyper for the session, refusing an upgraded connection, and the JSON
//! answers every endpoint writes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tickwire_websocket::HandshakeError;
use tickwire_websocket::frame::{OpCode, put_close, put_frame};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::connections::{Connections, Tracker, shutdown_started};
use crate::session::{self, Protocol, Transport};
use crate::subscriber::Subscriber;

/// The body of every response.
pub type Body = Full<Bytes>;

/// The largest request head (request line and headers) a client may send;
/// a larger one is answered 431 and the connection closed. A WebSocket
/// handshake with an access token takes about 1 KiB.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long a client may take to send a request head (slow-loris guard).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one HTTP/1.1 connection with `service`, upgrades allowed, until
/// it ends; once `shutdown` is set, the request under way is finished and
/// the connection closed.
pub async fn serve_connection<S, F>(
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    service: S,
) where
    S: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, error = %e, "TCP_NODELAY failed");
    }
    serve_io(stream, peer, shutdown, service).await;
}

/// Serves one HTTP/1.1 connection over any stream (a TLS one, say), as
/// [`serve_connection`] does over TCP.
pub async fn serve_io<I, S, F>(
    io: I,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    service: S,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(Remote(peer));
        let answer = service(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown_started(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// The client address of a request, as [`serve_connection`] records it in
/// the request's extensions.
#[derive(Debug, Clone, Copy)]
struct Remote(SocketAddr);

/// The address of the client that sent `req` (served by [`serve_connection`]).
pub fn remote<B>(req: &Request<B>) -> Option<SocketAddr> {
    req.extensions().get::<Remote>().map(|r| r.0)
}

/// A checked WebSocket upgrade request: the value of its
/// `Sec-WebSocket-Accept`.
#[derive(Debug)]
pub struct Handshake(HeaderValue);

/// Checks that `req` is a WebSocket upgrade request a server may accept
/// (RFC 6455 §4.2.1, by the codec); [`handshake_refusal`] answers an error.
pub fn handshake(req: &Request<Incoming>) -> Result<Handshake, HandshakeError> {
    tickwire_websocket::handshake::check(req.method(), req.headers())
        .map(Handshake)
        .inspect_err(|e| debug!(path = req.uri().path(), error = %e, "WebSocket handshake refused"))
}

/// The answer to a refused handshake: 400 naming what is wrong, with
/// `Sec-WebSocket-Version: 13` when the client asked for another version
/// (§4.4).
pub fn handshake_refusal(e: &HandshakeError) -> Response<Body> {
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
pub fn upgrade_with<F, Fut>(
    req: &mut Request<Incoming>,
    handshake: Handshake,
    then: F,
) -> Response<Body>
where
    F: FnOnce(hyper::upgrade::Upgraded) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let upgrade = hyper::upgrade::on(req);
    // Boxed: what `then` captures is needed once, to start the connection,
    // and is freed then rather than kept in the task for its life.
    let then = Box::new(then);
    // The upgrade, then the connection, as alternatives of one future: an
    // `async` block would keep the upgrade's slots (and the result of its
    // `match`) beside the connection for its life.
    let fut = futures_util::FutureExt::then(upgrade, move |upgraded| match upgraded {
        Ok(upgraded) => futures_util::future::Either::Left(then(upgraded)),
        Err(e) => {
            debug!(error = %e, "upgrade failed");
            futures_util::future::Either::Right(std::future::ready(()))
        }
    });
    tokio::spawn(fut);
    tickwire_websocket::handshake::switching_protocols(handshake.0)
        .map(|()| Body::new(Bytes::new()))
}

/// Takes the TCP stream back from hyper and runs the [session](session::run)
/// on its halves; any other transport runs on a generic split. The
/// connection is set up when this is called (see [`session::run`]).
pub fn start_session<P: Protocol>(
    upgraded: hyper::upgrade::Upgraded,
    connections: Arc<Connections>,
    transport: Transport,
    make: impl FnOnce(Subscriber) -> P,
    tracker: Tracker,
) -> impl Future<Output = ()> {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let stream = parts.io.into_inner();
            let _ = stream.set_nodelay(true);
            let (read, write) = stream.into_split();
            // Bytes hyper read past the request belong to the WebSocket
            // stream. They are a slice of hyper's whole read buffer (8 KiB or
            // more): copy them out, so that the buffer is freed now rather
            // than held for the life of the connection.
            let early = BytesMut::from(&parts.read_buf[..]);
            drop(parts.read_buf);
            Either::Left(session::run(
                read,
                early,
                write,
                connections,
                transport,
                make,
                tracker,
            ))
        }
        Err(upgraded) => {
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            Either::Right(session::run(
                read,
                BytesMut::new(),
                write,
                connections,
                transport,
                make,
                tracker,
            ))
        }
    }
}

/// Refuses an upgraded connection: writes `message` (a text frame) if any
/// and a close frame, then lets the client read them before the socket
/// goes away.
///
/// The refusal is boxed: a connection that is refused is rare, and its
/// state (the frames and a read buffer to drain the client) would otherwise
/// be room kept in every accepted connection's task, whose future includes
/// this path.
pub fn refuse(
    upgraded: hyper::upgrade::Upgraded,
    message: Option<Bytes>,
    code: u16,
    reason: &str,
    tracker: Tracker,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let mut buf = BytesMut::new();
    if let Some(message) = message {
        // RFC 6455 §5.6: a text frame.
        put_frame(&mut buf, OpCode::Text, &message);
    }
    put_close(&mut buf, code, reason);
    Box::pin(async move {
        let mut io = TokioIo::new(upgraded);
        let write = async {
            io.write_all(&buf).await?;
            io.shutdown().await
        };
        if let Err(e) = tokio::time::timeout(Duration::from_secs(5), write).await {
            warn!(error = %e, "refusal not written");
        }
        // Give the client a moment to read the close before the socket goes away.
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        drop(tracker);
    })
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    json_bytes(
        status,
        Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
    )
}

/// A JSON `{"error": ...}` response.
pub fn json_error(status: StatusCode, error: &str) -> Response<Body> {
    json(status, &ErrorBody { error })
}

/// A JSON response of `body` (already encoded).
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A static page or script compiled into the binary, as `content_type`,
/// with `X-Content-Type-Options: nosniff`.
pub fn asset(body: &'static str, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// 405 for a route that only answers `GET`.
pub fn method_not_allowed() -> Response<Body> {
    let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}
