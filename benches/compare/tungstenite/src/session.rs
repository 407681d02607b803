//! One accepted connection: the publish API over hyper, or a `/ws`
//! WebSocket over tokio-tungstenite, told apart by the request line.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, Receiver, Sender};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as WsRequest};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, accept_hdr_async_with_config};

use crate::feed::{self, ConnId, Registry};

/// The publish API's route.
const PUBLISH_PATH: &str = "/api/v1/publish";
/// The WebSocket route.
const WS_PATH: &str = "/ws";
/// Largest publish body read.
const MAX_BODY: usize = 4 << 20;
/// Symbols one connection may subscribe to (seed 001 "Rate Limits").
const MAX_SUBSCRIPTIONS: usize = 100;

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Who is subscribed to what.
    pub(crate) registry: Registry,
    /// The `Authorization` header value the publish API requires.
    pub(crate) authorization: String,
    /// Outgoing queue capacity per connection, in messages.
    pub(crate) queue: usize,
    /// tungstenite's read buffer size; `None`: its default.
    pub(crate) read_buffer: Option<usize>,
}

/// Serves one accepted connection to its end.
pub(crate) async fn connection(stream: TcpStream, shared: Arc<Shared>, id: ConnId) {
    match is_publish(&stream).await {
        Ok(true) => {
            let service = service_fn(|req| publish(req, Arc::clone(&shared)));
            // A client that goes away mid-request is no concern of the server.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
        Ok(false) => websocket(stream, shared, id).await,
        Err(_) => {}
    }
}

/// Whether the connection's first request is a `POST` (the publish API);
/// anything else goes to the WebSocket handshake, which refuses what is not
/// an upgrade to [`WS_PATH`].
async fn is_publish(stream: &TcpStream) -> std::io::Result<bool> {
    const POST: &[u8] = b"POST ";
    let mut head = [0u8; POST.len()];
    // The request line arrives in one segment in practice; a client that
    // trickles it is given a little time.
    for _ in 0..100 {
        let n = stream.peek(&mut head).await?;
        if n == 0 || n == head.len() || !POST.starts_with(&head[..n]) {
            return Ok(&head[..n] == POST);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(false)
}

/// Answers one request of the publish API.
async fn publish(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != PUBLISH_PATH {
        return Ok(answer(StatusCode::NOT_FOUND, error_body("no such route")));
    }
    if req.method() != Method::POST {
        return Ok(answer(
            StatusCode::METHOD_NOT_ALLOWED,
            error_body("use POST"),
        ));
    }
    let authorized = req
        .headers()
        .get(AUTHORIZATION)
        .is_some_and(|value| value.as_bytes() == shared.authorization.as_bytes());
    if !authorized {
        return Ok(answer(
            StatusCode::UNAUTHORIZED,
            error_body("a valid publish key is required"),
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                error_body("body too large or cut short"),
            ));
        }
    };
    let (updates, accepted) = match feed::parse_publish(&body) {
        Ok(parsed) => parsed,
        Err(e) => return Ok(answer(StatusCode::BAD_REQUEST, error_body(&e))),
    };
    shared.registry.publish(
        updates
            .iter()
            .map(|u| (u.symbol.as_str(), Message::Text(u.text.clone()))),
    );
    Ok(answer(
        StatusCode::ACCEPTED,
        format!(r#"{{"accepted":{accepted}}}"#),
    ))
}

/// A JSON answer.
fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"error":"…"}`.
fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Accepts the WebSocket upgrade to [`WS_PATH`] and serves the session.
async fn websocket(stream: TcpStream, shared: Arc<Shared>, id: ConnId) {
    // The callback's error type is tungstenite's, large or not.
    #[allow(clippy::result_large_err)]
    let route = |req: &WsRequest, response| {
        if req.uri().path() == WS_PATH {
            Ok(response)
        } else {
            let mut refusal = ErrorResponse::new(Some("no such route".to_owned()));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            Err(refusal)
        }
    };
    let config = shared
        .read_buffer
        .map(|size| WebSocketConfig::default().read_buffer_size(size));
    let Ok(ws) = accept_hdr_async_with_config(stream, route, config).await else {
        return;
    };
    let (tx, rx) = mpsc::channel(shared.queue);
    let mut session = Session {
        id,
        shared,
        tx,
        symbols: HashSet::new(),
    };
    // A session ends on close or on any error; either way it unsubscribes
    // (Drop).
    let _ = session.run(ws, rx).await;
}

/// A client message of seed 001.
#[derive(Debug, Deserialize)]
struct Command {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    symbols: Vec<String>,
}

/// One `/ws` connection's subscriptions.
#[derive(Debug)]
struct Session {
    id: ConnId,
    shared: Arc<Shared>,
    /// This connection's queue, handed to the registry on subscribe.
    tx: Sender<Message>,
    symbols: HashSet<String>,
}

impl Session {
    /// Reads commands and writes queued updates until the connection ends.
    async fn run(
        &mut self,
        ws: WebSocketStream<TcpStream>,
        mut rx: Receiver<Message>,
    ) -> Result<(), tungstenite::Error> {
        let (mut sink, mut stream) = ws.split();
        loop {
            tokio::select! {
                Some(message) = rx.recv() => {
                    // Everything queued goes into one flush.
                    sink.feed(message).await?;
                    while let Ok(message) = rx.try_recv() {
                        sink.feed(message).await?;
                    }
                    sink.flush().await?;
                }
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(reply) = self.command(text.as_str()) {
                            sink.send(Message::text(reply)).await?;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    // tungstenite answers pings itself.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                },
            }
        }
    }

    /// Applies one client message; the reply, if any.
    fn command(&mut self, text: &str) -> Option<String> {
        let Ok(command) = serde_json::from_str::<Command>(text) else {
            return Some(error(
                "invalid_message",
                "Malformed JSON or missing required fields",
            ));
        };
        match command.kind.as_str() {
            "subscribe" => {
                let new: HashSet<String> = command
                    .symbols
                    .iter()
                    .map(|s| feed::symbol_key(s))
                    .filter(|s| !self.symbols.contains(s))
                    .collect();
                if self.symbols.len() + new.len() > MAX_SUBSCRIPTIONS {
                    return Some(error(
                        "subscription_limit",
                        "Maximum subscriptions exceeded",
                    ));
                }
                for symbol in new {
                    self.shared.registry.subscribe(&symbol, self.id, &self.tx);
                    self.symbols.insert(symbol);
                }
                None
            }
            "unsubscribe" => {
                for symbol in &command.symbols {
                    let symbol = feed::symbol_key(symbol);
                    if self.symbols.remove(&symbol) {
                        self.shared.registry.unsubscribe(&symbol, self.id);
                    }
                }
                None
            }
            "ping" => Some(format!(r#"{{"type":"pong","timestamp":{}}}"#, now_ms())),
            _ => Some(error("invalid_message", "Unknown message type")),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for symbol in &self.symbols {
            self.shared.registry.unsubscribe(symbol, self.id);
        }
    }
}

/// A seed 001 `error` message.
fn error(code: &str, message: &str) -> String {
    serde_json::json!({ "type": "error", "code": code, "message": message }).to_string()
}

/// Milliseconds since the UNIX epoch.
fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> (Session, Receiver<Message>) {
        let (tx, rx) = mpsc::channel(8);
        let shared = Arc::new(Shared {
            registry: Registry::default(),
            authorization: "Bearer k".to_owned(),
            queue: 8,
            read_buffer: None,
        });
        let session = Session {
            id: 1,
            shared,
            tx,
            symbols: HashSet::new(),
        };
        (session, rx)
    }

    fn update(session: &Session, symbol: &str) -> u64 {
        let message = Message::text(symbol.to_owned());
        session.shared.registry.publish([(symbol, message)]).queued
    }

    #[test]
    fn subscribe_unsubscribe_and_ping() {
        let (mut session, mut rx) = session();
        assert_eq!(
            session.command(r#"{"type":"subscribe","symbols":["BTC","eth"]}"#),
            None
        );
        assert_eq!(update(&session, "btc"), 1);
        assert_eq!(rx.try_recv().unwrap(), Message::text("btc"));
        assert_eq!(
            session.command(r#"{"type":"unsubscribe","symbols":["btc"]}"#),
            None
        );
        assert_eq!(update(&session, "btc"), 0);
        assert_eq!(update(&session, "eth"), 1);
        assert_eq!(rx.try_recv().unwrap(), Message::text("eth"));
        let pong = session.command(r#"{"type":"ping"}"#).unwrap();
        assert!(pong.starts_with(r#"{"type":"pong","timestamp":"#), "{pong}");
    }

    #[test]
    fn dropping_the_session_unsubscribes() {
        let (mut session, _rx) = session();
        session.command(r#"{"type":"subscribe","symbols":["sol"]}"#);
        let shared = Arc::clone(&session.shared);
        drop(session);
        let queued = shared
            .registry
            .publish([("sol", Message::text("x"))])
            .queued;
        assert_eq!(queued, 0);
    }

    #[test]
    fn bad_commands_get_errors() {
        let (mut session, _rx) = session();
        let reply = session.command("{").unwrap();
        assert!(reply.contains("invalid_message"), "{reply}");
        let reply = session.command(r#"{"type":"dance"}"#).unwrap();
        assert!(reply.contains("invalid_message"), "{reply}");
        let many: Vec<String> = (0..101).map(|i| format!("s{i}")).collect();
        let subscribe = serde_json::json!({"type": "subscribe", "symbols": many}).to_string();
        let reply = session.command(&subscribe).unwrap();
        assert!(reply.contains("subscription_limit"), "{reply}");
        assert!(session.symbols.is_empty());
    }
}
