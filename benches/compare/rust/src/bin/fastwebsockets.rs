//! A plain fastwebsockets broadcast server of the seed 001 `/ws` price feed:
//! one of the Rust references that tickwire is compared with (see the
//! [library](tickwire_compare_rust) and the README of `benches/compare`).
//!
//! What a competent engineer writes with fastwebsockets, as its examples
//! show it, nothing more: hyper serves every connection; `GET /ws` is
//! upgraded with `fastwebsockets::upgrade`, anything else is the publish API.
//! The upgraded stream is split: a reader task (a `FragmentCollectorRead`)
//! applies the commands, a writer task owns the write half behind a
//! `BufWriter` and drains a bounded `tokio::sync::mpsc` queue per connection
//! into it, flushing once per wake-up. A `RwLock`ed map from symbol to the
//! subscribers' queues fans each update out, serialized once and shared by
//! reference count ([`Bytes`]); a full queue drops the update for that
//! subscriber. Pongs and the close reply the reader owes go through the
//! same queue.
//!
//! ```text
//! tickwire-compare-fastwebsockets --listen 127.0.0.1:9005 --publish-key lt-key
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use fastwebsockets::{
    FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocketError, after_handshake_split,
};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tickwire_compare_rust::commands::Commands;
use tickwire_compare_rust::feed::{ConnId, Update};
use tickwire_compare_rust::http::{self, WS_PATH};
use tokio::io::BufWriter;
use tokio::sync::mpsc::{self, Receiver};

/// What a connection's writer sends.
#[derive(Debug, Clone)]
enum Out {
    /// A text message: an update or a command's reply.
    Text(Bytes),
    /// The pong a ping is owed.
    Pong(Bytes),
    /// The close reply (or the close the server starts); the writer stops
    /// after it.
    Close(Bytes),
}

type Shared = tickwire_compare_rust::Shared<Out>;

/// A plain fastwebsockets broadcast server of the seed 001 `/ws` feed.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "COMPARE_LISTEN", default_value = "127.0.0.1:9005")]
    listen: SocketAddr,
    /// Bearer key that `POST /api/v1/publish` requires.
    #[arg(long, env = "COMPARE_PUBLISH_KEY", default_value = "lt-key")]
    publish_key: String,
    /// Messages queued per connection before updates to it are dropped.
    #[arg(long, default_value_t = 4096)]
    queue: usize,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let shared = Arc::new(Shared::new(&args.publish_key, args.queue));
    let name = "tickwire-compare-fastwebsockets";
    tickwire_compare_rust::accept(name, args.listen, |stream, id| {
        let shared = Arc::clone(&shared);
        async move {
            let service = service_fn(|req| route(req, Arc::clone(&shared), id));
            // A client that goes away mid-request is no concern of the server.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        }
    })
    .await
}

/// The message of an update: its text, shared.
fn message(update: &Update) -> Out {
    Out::Text(update.text.clone())
}

/// `GET /ws` upgraded to a WebSocket; anything else to the publish API.
async fn route(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    id: ConnId,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if req.uri().path() != WS_PATH {
        return http::publish(req, shared, message).await;
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        let body = http::error_body("a WebSocket upgrade is expected");
        return Ok(http::answer(StatusCode::BAD_REQUEST, body));
    }
    match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok((response, upgrade)) => {
            tokio::spawn(async move {
                if let Ok(ws) = upgrade.await {
                    session(ws.into_inner(), shared, id).await;
                }
            });
            Ok(response.map(|_| Full::new(Bytes::new())))
        }
        Err(e) => Ok(http::answer(
            StatusCode::BAD_REQUEST,
            http::error_body(&e.to_string()),
        )),
    }
}

/// Serves an upgraded connection: the reader here, the writer in a task of
/// its own, until either ends.
async fn session(stream: TokioIo<hyper::upgrade::Upgraded>, shared: Arc<Shared>, id: ConnId) {
    let (read, write) = tokio::io::split(stream);
    let (read, write) = after_handshake_split(read, BufWriter::new(write), Role::Server);
    let (tx, rx) = mpsc::channel(shared.queue);
    let writer = tokio::spawn(writer(write, rx));
    let mut read = FragmentCollectorRead::new(read);
    let mut commands = Commands::new(id, shared, tx.clone());
    // Pongs and the close reply go out through the queue.
    let mut obligated = |frame: Frame<'_>| {
        let out = match frame.opcode {
            OpCode::Pong => Out::Pong(Bytes::copy_from_slice(&frame.payload)),
            _ => Out::Close(Bytes::copy_from_slice(&frame.payload)),
        };
        let tx = tx.clone();
        async move {
            tx.send(out)
                .await
                .map_err(|_| WebSocketError::ConnectionClosed)
        }
    };
    loop {
        let frame = match read.read_frame(&mut obligated).await {
            Ok(frame) => frame,
            Err(_) => break,
        };
        match frame.opcode {
            OpCode::Text => {
                let reply = std::str::from_utf8(&frame.payload)
                    .ok()
                    .and_then(|text| commands.command(text));
                if let Some(reply) = reply {
                    if tx.send(Out::Text(Bytes::from(reply))).await.is_err() {
                        break;
                    }
                }
            }
            OpCode::Close => break,
            _ => {}
        }
    }
    // Unsubscribed: the registry lets go of the queue, and with the last
    // sender gone the writer stops once it has written what was queued.
    drop(commands);
    drop(tx);
    let _ = writer.await;
}

/// Writes what is queued for a connection: everything queued at a wake-up
/// into the buffer, then one flush.
async fn writer<W>(mut ws: fastwebsockets::WebSocketWrite<W>, mut rx: Receiver<Out>)
where
    W: tokio::io::AsyncWrite + Unpin,
{
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            let (frame, last) = match &out {
                Out::Text(text) => (Frame::text(Payload::Borrowed(text)), false),
                Out::Pong(data) => (Frame::pong(Payload::Borrowed(data)), false),
                Out::Close(data) => (Frame::close_raw(Payload::Borrowed(data)), true),
            };
            if ws.write_frame(frame).await.is_err() {
                return;
            }
            if last {
                let _ = ws.flush().await;
                return;
            }
            next = rx.try_recv().ok();
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}
