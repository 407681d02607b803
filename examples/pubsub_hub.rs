//! A chat hub that the Azure Web PubSub client SDKs connect to, built from a plain hyper
//! server, `fastwebsockets` and the sans-IO codec `tickwire-pubsub`.
//!
//! The codec negotiates the subprotocol, decodes client frames and encodes the answers, in
//! all four subprotocols (JSON and protobuf, plain and reliable). The rest is the service's
//! own: routing, its made-up token auth, WebSocket framing, groups and fan-out.
//!
//! - `GET /negotiate?user=NAME` issues a random access token for `NAME` and answers
//!   `{"url": "ws://ADDR/client/hubs/chat?access_token=TOKEN"}`, which is what an SDK's
//!   `getClientAccessUrl` returns.
//! - `GET /client/hubs/{hub}?access_token=TOKEN` upgrades to a WebSocket (401 without a valid
//!   token, 400 when no offered subprotocol is supported). The client gets the `connected`
//!   message, then may join and leave the hub's groups and send to them.
//!
//! Left out: session recovery and re-delivery on the reliable subprotocols (messages carry
//! a `sequenceId`, `sequenceAck`s are accepted and ignored), events, permissions.
//!
//! ```text
//! cargo run -p tickwire-examples --example pubsub_hub -- [ADDR]
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:8080` (port 0 picks a free port); once bound, the server
//! prints `listening on http://ADDR`. `tests/interop/node/example_pubsub_hub.test.mjs`
//! drives it with the JavaScript SDK, `@azure/web-pubsub-client`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use fastwebsockets::WebSocketError::ConnectionClosed;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, Role};
use http_body_util::Full;
use hyper::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, upgrade::Upgraded};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tickwire_pubsub::{AckError, Downstream, Error, FrameKind, MessageFrom};
use tickwire_pubsub::{Upstream, WireFormat, decode_upstream, encode_downstream};
use tokio::sync::mpsc;

/// Frames queued per connection. A member whose queue is full misses group messages (and,
/// on a reliable subprotocol, takes no sequence id for them).
const QUEUE: usize = 1024;

/// What a connection's writer task writes: one frame, its payload shared where it can be.
type Out = (OpCode, Bytes);

/// A member of a group: where its connection's frames go, and how to encode for it.
#[derive(Clone)]
struct Member {
    format: WireFormat,
    tx: mpsc::Sender<Out>,
    /// The last `sequenceId` given out, on the reliable subprotocols.
    sequence: Option<Arc<AtomicU64>>,
}

/// What every connection shares.
struct Hub {
    /// The address `/negotiate` hands out.
    addr: std::net::SocketAddr,
    /// Access token → user id. Tokens never expire in this example.
    tokens: Mutex<HashMap<String, String>>,
    /// `hub/group` → connection id → member.
    groups: Mutex<HashMap<String, HashMap<u64, Member>>>,
    connections: AtomicU64,
}

type Body = Full<Bytes>;

#[tokio::main]
#[allow(clippy::print_stdout)] // the listening line is how a caller learns the port
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener =
        tokio::net::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8080")).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    let (tokens, groups, connections) = Default::default();
    let hub = Arc::new(Hub {
        addr,
        tokens,
        groups,
        connections,
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue; // out of file descriptors, say: keep serving the others
        };
        let hub = Arc::clone(&hub);
        let service = hyper::service::service_fn(move |req| {
            let response = route(req, Arc::clone(&hub));
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        // A client that goes away mid-request is no concern of the server.
        let http = hyper::server::conn::http1::Builder::new();
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(conn.with_upgrades());
    }
}

fn answer(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// The value of `name` in the query string.
fn query(req: &Request<Incoming>, name: &str) -> Option<String> {
    let mut pairs = form_urlencoded::parse(req.uri().query()?.as_bytes());
    pairs.find_map(|(k, v)| (k == name).then(|| v.into_owned()))
}

/// `/negotiate`, `/client/hubs/{hub}`, and 404 for anything else.
fn route(req: Request<Incoming>, hub: Arc<Hub>) -> Response<Body> {
    let path = req.uri().path();
    let hub_name = path.strip_prefix("/client/hubs/").unwrap_or_default();
    if req.method() == Method::GET && path == "/negotiate" {
        let Some(user) = query(&req, "user").filter(|u| !u.is_empty()) else {
            return answer(StatusCode::BAD_REQUEST, "`user` is required");
        };
        let token = format!("{:032x}", rand::random::<u128>());
        hub.tokens.lock().insert(token.clone(), user);
        let url = format!("ws://{}/client/hubs/chat?access_token={token}", hub.addr);
        let body = serde_json::json!({ "url": url }).to_string();
        answer(StatusCode::OK, body)
    } else if req.method() == Method::GET && !hub_name.is_empty() && !hub_name.contains('/') {
        let prefix = format!("{hub_name}/");
        upgrade(req, hub, prefix)
    } else {
        answer(StatusCode::NOT_FOUND, "not found")
    }
}

/// Checks the token, negotiates the subprotocol and upgrades; the connection is served in a
/// task of its own once hyper has sent the 101.
fn upgrade(mut req: Request<Incoming>, hub: Arc<Hub>, prefix: String) -> Response<Body> {
    let token = query(&req, "access_token").unwrap_or_default();
    let Some(user) = hub.tokens.lock().get(&token).cloned() else {
        return answer(StatusCode::UNAUTHORIZED, "invalid or missing access_token");
    };
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return answer(StatusCode::BAD_REQUEST, "a WebSocket upgrade is expected");
    }
    let offered = req.headers().get_all(SEC_WEBSOCKET_PROTOCOL).iter();
    let negotiated = match tickwire_pubsub::negotiate(offered.filter_map(|v| v.to_str().ok())) {
        Ok(negotiated) => negotiated,
        Err(e) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let (response, upgraded) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(upgrade) => upgrade,
        Err(e) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let id = hub.connections.fetch_add(1, Ordering::Relaxed);
    let protocol = negotiated.protocol;
    let sequence = protocol.is_reliable().then(Arc::default);
    let me = Member {
        format: protocol.format(),
        tx,
        sequence,
    };
    let conn = Connection {
        hub,
        prefix,
        user,
        id,
        me,
        joined: HashSet::new(),
    };
    tokio::spawn(async move {
        if let Ok(ws) = upgraded.await {
            serve(ws.into_inner(), conn, rx).await;
        }
    });
    let mut response = response.map(|_| Body::default());
    if let Some(echo) = negotiated.echo {
        // Clients abort the handshake unless the chosen subprotocol comes back.
        let echo = HeaderValue::from_static(echo);
        response.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, echo);
    }
    response
}

/// One client connection: who it is, where its frames go, which groups it is in.
struct Connection {
    hub: Arc<Hub>,
    /// `hub/`, which keeps each hub's groups apart.
    prefix: String,
    user: String,
    id: u64,
    me: Member,
    joined: HashSet<String>,
}

/// The WebSocket frame kind of a wire format.
fn opcode(format: WireFormat) -> OpCode {
    match format {
        WireFormat::Json => OpCode::Text,
        WireFormat::Protobuf => OpCode::Binary,
    }
}

impl Connection {
    /// Encodes a message for this connection alone.
    fn reply(&self, msg: &Downstream) -> Out {
        let mut frame = BytesMut::new();
        encode_downstream(self.me.format, msg, &mut frame);
        (opcode(self.me.format), frame.freeze())
    }

    /// Applies a client message; returns the answer it is owed, if any.
    fn handle(&mut self, msg: Upstream) -> Option<Downstream> {
        let ack = msg.ack_id().map(Downstream::ack_ok);
        match msg {
            Upstream::JoinGroup { group, .. } => {
                let mut groups = self.hub.groups.lock();
                let members = groups.entry(self.prefix.clone() + &group).or_default();
                members.insert(self.id, self.me.clone());
                self.joined.insert(group);
            }
            Upstream::LeaveGroup { group, .. } => self.leave(&group),
            Upstream::SendToGroup {
                group,
                no_echo,
                data,
                ..
            } => {
                let key = self.prefix.clone() + &group;
                let from_user_id = Some(self.user.clone());
                let from = MessageFrom::Group {
                    group,
                    from_user_id,
                };
                // Encoded at most once per wire format; plain members share those bytes,
                // reliable ones get a copy with their own sequence id appended.
                let (mut json, mut protobuf) = (None, None);
                let groups = self.hub.groups.lock();
                for (id, member) in groups.get(&key).into_iter().flatten() {
                    if no_echo && *id == self.id {
                        continue;
                    }
                    let encoded = match member.format {
                        WireFormat::Json => &mut json,
                        WireFormat::Protobuf => &mut protobuf,
                    };
                    let encoded = encoded.get_or_insert_with(|| {
                        tickwire_pubsub::encode_message(member.format, &from, &data)
                    });
                    // Numbered under the groups' lock, so a reliable member's ids follow
                    // the order of its queue; an id is used only by a frame queued.
                    let sequence_id = member
                        .sequence
                        .as_ref()
                        .map(|n| n.load(Ordering::Relaxed) + 1);
                    let frame = (opcode(member.format), encoded.to_frame(sequence_id));
                    // A full queue means a client that does not read: it misses the
                    // message, and its sequence ids stay without a gap.
                    if member.tx.try_send(frame).is_ok() {
                        if let (Some(n), Some(id)) = (&member.sequence, sequence_id) {
                            n.store(id, Ordering::Relaxed);
                        }
                    }
                }
            }
            // This hub has no event handler, and keeps nothing to re-deliver.
            Upstream::Event { .. } | Upstream::SequenceAck { .. } => {}
            Upstream::Ping => return Some(Downstream::Pong),
        }
        ack
    }

    /// Leaves a group; the group goes once it is empty.
    fn leave(&mut self, group: &str) {
        let mut groups = self.hub.groups.lock();
        let key = self.prefix.clone() + group;
        if let Some(members) = groups.get_mut(&key) {
            members.remove(&self.id);
            if members.is_empty() {
                groups.remove(&key);
            }
        }
        self.joined.remove(group);
    }
}

/// Serves a connection: the reader loop here, the writer in a task of its own.
async fn serve(stream: TokioIo<Upgraded>, mut conn: Connection, mut rx: mpsc::Receiver<Out>) {
    let (read, write) = tokio::io::split(stream);
    let (mut read, mut write) = fastwebsockets::after_handshake_split(read, write, Role::Server);
    read.set_max_message_size(1 << 20);
    let mut read = FragmentCollectorRead::new(read);
    // The writer: every frame queued for the connection, in order, until a close.
    let writer = tokio::spawn(async move {
        while let Some((opcode, payload)) = rx.recv().await {
            let frame = Frame::new(true, opcode, None, Payload::Borrowed(&payload));
            if write.write_frame(frame).await.is_err() || opcode == OpCode::Close {
                break;
            }
        }
    });

    let tx = conn.me.tx.clone();
    let connected = Downstream::Connected {
        connection_id: format!("conn-{}", conn.id),
        user_id: conn.user.clone(),
        reconnection_token: None, // this example does not recover sessions
    };
    let _ = tx.send(conn.reply(&connected)).await;
    // fastwebsockets answers pings and closes; its frames go out through the writer too.
    let mut obligated = |frame: Frame<'static>| {
        let (tx, out) = (tx.clone(), (frame.opcode, Vec::from(frame.payload).into()));
        async move { tx.send(out).await.map_err(|_| ConnectionClosed) }
    };
    while let Ok(frame) = read.read_frame(&mut obligated).await {
        let kind = match frame.opcode {
            OpCode::Text => FrameKind::Text,
            OpCode::Binary => FrameKind::Binary,
            OpCode::Close => break,
            _ => continue,
        };
        let answer = match decode_upstream(conn.me.format, kind, &frame.payload) {
            Ok(msg) => conn.handle(msg),
            // Well-formed enough to carry an ack id: a failed ack, and the connection stays.
            Err(e) if e.ack_id().is_some() => {
                let error = AckError::bad_request(e.to_string());
                e.ack_id().map(|ack_id| Downstream::ack_err(ack_id, error))
            }
            // Nothing to answer: close with 1003 (wrong frame kind) or 1007 (malformed).
            Err(e) => {
                let (code, reason) = match e {
                    Error::WrongFrameKind { .. } => (1003_u16, "wrong frame kind"),
                    _ => (1007, "malformed message"),
                };
                let payload = [&code.to_be_bytes(), reason.as_bytes()].concat();
                let _ = tx.send((OpCode::Close, payload.into())).await;
                break;
            }
        };
        if let Some(answer) = answer {
            if tx.send(conn.reply(&answer)).await.is_err() {
                break;
            }
        }
    }
    for group in std::mem::take(&mut conn.joined) {
        conn.leave(&group);
    }
    // With the last sender gone, the writer stops once it has written what was queued.
    drop((tx, conn));
    let _ = writer.await;
}
