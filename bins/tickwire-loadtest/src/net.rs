//! Sockets: TCP connections from chosen source addresses, the client side of
//! the WebSocket handshake (RFC 6455 §4.1), and a small keep-alive HTTP/1.1
//! client for `/negotiate` and the publish API.
//!
//! The handshake is written by hand rather than through hyper so that each
//! connection keeps a bare `TcpStream` (no boxed upgrade, no driver task)
//! under fastwebsockets: the receive path shares the machine's cores with
//! the server being measured.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes, BytesMut};
use fastwebsockets::{Role, WebSocket};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

use crate::Error;
use crate::cli::Target;

/// Largest handshake response head accepted.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// How much of an error body is kept for the report.
const ERROR_BODY_CHARS: usize = 200;

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connection failed.
    Tcp(io::Error),
    /// The server answered the upgrade with another status than 101.
    Refused {
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer was not a WebSocket handshake.
    Handshake(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "connect: {e}"),
            ConnectError::Refused { status, body } => write!(f, "upgrade refused: {status} {body}"),
            ConnectError::Handshake(why) => write!(f, "bad handshake: {why}"),
        }
    }
}

/// Opens a TCP connection to `addr`, from `source` (any port) when given.
pub async fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A stream that first yields bytes already read from it (those that
/// followed the handshake's response head), then reads the socket.
#[derive(Debug)]
pub struct Prefixed {
    prefix: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A WebSocket upgrade to send.
#[derive(Debug, Clone, Copy)]
pub struct Upgrade<'a> {
    /// The `Host` header.
    pub host: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// `Sec-WebSocket-Protocol` to offer.
    pub subprotocol: Option<&'a str>,
    /// `Authorization: Bearer` key.
    pub bearer: Option<&'a str>,
}

/// Performs the client handshake on `stream` and returns the WebSocket.
pub async fn handshake(
    mut stream: TcpStream,
    upgrade: Upgrade<'_>,
) -> Result<WebSocket<Prefixed>, ConnectError> {
    let mut request = String::with_capacity(256 + upgrade.path.len());
    request.push_str("GET ");
    request.push_str(upgrade.path);
    request.push_str(" HTTP/1.1\r\nHost: ");
    request.push_str(upgrade.host);
    request.push_str(
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
    );
    request.push_str(&fastwebsockets::handshake::generate_key());
    if let Some(protocol) = upgrade.subprotocol {
        request.push_str("\r\nSec-WebSocket-Protocol: ");
        request.push_str(protocol);
    }
    if let Some(key) = upgrade.bearer {
        request.push_str("\r\nAuthorization: Bearer ");
        request.push_str(key);
    }
    request.push_str("\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ConnectError::Tcp)?;

    let mut buf = BytesMut::with_capacity(1024);
    let (status, head_len, echoed) = loop {
        let read = stream.read_buf(&mut buf).await.map_err(ConnectError::Tcp)?;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(0);
                let echoed = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
                    .map(|h| String::from_utf8_lossy(h.value).trim().to_owned());
                break (status, len, echoed);
            }
            Ok(httparse::Status::Partial) if read == 0 => {
                return Err(ConnectError::Handshake(
                    "the server closed the connection during the handshake".into(),
                ));
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
                return Err(ConnectError::Handshake("response head too large".into()));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(ConnectError::Handshake(e.to_string())),
        }
    };
    if status != 101 {
        let body = String::from_utf8_lossy(&buf[head_len..]);
        return Err(ConnectError::Refused {
            status,
            body: body.chars().take(ERROR_BODY_CHARS).collect(),
        });
    }
    if let Some(offered) = upgrade.subprotocol {
        if echoed.as_deref() != Some(offered) {
            return Err(ConnectError::Handshake(format!(
                "subprotocol {offered} not echoed (got {echoed:?})"
            )));
        }
    }
    let prefix = buf.split_off(head_len).freeze();
    let mut ws = WebSocket::after_handshake(
        Prefixed {
            prefix,
            inner: stream,
        },
        Role::Client,
    );
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    ws.set_writev(false);
    Ok(ws)
}

/// A keep-alive HTTP/1.1 connection to the server, reopened when it drops.
#[derive(Debug)]
pub struct HttpClient {
    target: Target,
    /// The local address its connections are made from (the system's
    /// choice when `None`).
    source: Option<IpAddr>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The start of the body, for messages.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(ERROR_BODY_CHARS)
            .collect()
    }
}

impl HttpClient {
    /// A client of `target`; connects on the first request.
    pub fn new(target: Target) -> HttpClient {
        HttpClient {
            target,
            source: None,
            sender: None,
        }
    }

    /// A client of `target` whose connections come from `source` (as a
    /// subscriber's do, so that both share its spread of local ports).
    pub fn from_source(target: Target, source: Option<IpAddr>) -> HttpClient {
        HttpClient {
            source,
            ..HttpClient::new(target)
        }
    }

    /// The server it talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sends one request (`authorization` is the whole header value) and
    /// reads the whole answer. Retries once on a fresh connection when the
    /// kept-alive one turns out to be closed.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        authorization: &str,
        body: Bytes,
    ) -> Result<Answer, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let alive = match &mut self.sender {
                Some(sender) => sender.ready().await.is_ok(),
                None => false,
            };
            if !alive {
                self.sender = Some(open(&self.target, self.source).await?);
            }
            let Some(sender) = &mut self.sender else {
                continue;
            };
            let mut request = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(HOST, &self.target.host)
                .header(AUTHORIZATION, authorization);
            if !body.is_empty() {
                request = request.header(CONTENT_TYPE, "application/json");
            }
            let request = request
                .body(Full::new(body.clone()))
                .map_err(|e| Error::invalid(format!("bad request to {path}: {e}")))?;
            let response = match sender.send_request(request).await {
                Ok(response) => response,
                Err(e) => {
                    self.sender = None;
                    // Canceled: the connection closed before the request went
                    // out, so sending it again cannot publish twice.
                    if attempt < 2 && e.is_canceled() {
                        continue;
                    }
                    return Err(Error::io(
                        format!("{method} {path}"),
                        io::Error::other(e.to_string()),
                    ));
                }
            };
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::io(format!("{method} {path}"), io::Error::other(e)))?
                .to_bytes();
            return Ok(Answer { status, body });
        }
    }
}

/// Opens an HTTP/1.1 connection to `target`; its driver runs as a task.
async fn open(target: &Target, source: Option<IpAddr>) -> Result<SendRequest<Full<Bytes>>, Error> {
    let what = || format!("connecting to {}", target.addr);
    let stream = connect_tcp(target.addr, source)
        .await
        .map_err(|e| Error::io(what(), e))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Error::io(what(), io::Error::other(e)))?;
    tokio::spawn(connection);
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers one handshake with `response`, then sends `after`.
    async fn serve_once(response: &'static [u8], after: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 2048];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let mut reply = response.to_vec();
            reply.extend_from_slice(after);
            s.write_all(&reply).await.unwrap();
            // Keep the socket open until the client is done.
            let _ = s.read(&mut buf).await;
        });
        addr
    }

    #[tokio::test]
    async fn bytes_after_the_head_are_the_first_frame() {
        let addr = serve_once(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: json.webpubsub.azure.v1\r\n\r\n",
            b"\x81\x02hi",
        )
        .await;
        let stream = connect_tcp(addr, Some("127.0.0.1".parse().unwrap()))
            .await
            .unwrap();
        let upgrade = Upgrade {
            host: "h",
            path: "/",
            subprotocol: Some("json.webpubsub.azure.v1"),
            bearer: Some("k"),
        };
        let mut ws = handshake(stream, upgrade).await.unwrap();
        let frame = ws.read_frame().await.unwrap();
        assert_eq!(&frame.payload[..], b"hi");
    }

    #[tokio::test]
    async fn refusals_carry_status_and_body() {
        let addr = serve_once(
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 12\r\n\r\n",
            b"{\"error\":1}\n",
        )
        .await;
        let stream = connect_tcp(addr, None).await.unwrap();
        let upgrade = Upgrade {
            host: "h",
            path: "/stream",
            subprotocol: None,
            bearer: None,
        };
        match handshake(stream, upgrade).await {
            Err(ConnectError::Refused { status: 401, body }) => {
                assert!(body.starts_with("{\"error\":1}"), "{body}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a 401 was taken for a handshake"),
        }
    }
}
