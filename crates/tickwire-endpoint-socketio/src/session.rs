//! `/market` on the gateway's own session: a client that opens its
//! Engine.IO transport as a WebSocket (`?EIO=4&transport=websocket`, no
//! `sid`) is served like every other endpoint's connection, one task with
//! its queue and writer, Engine.IO and Socket.IO read and written by
//! [`packet`](crate::packet).
//!
//! - The Engine.IO `open` packet goes first: the session's id, the seed's
//!   heartbeat, the largest message taken, no upgrade.
//! - Every session is in the ping's housekeeping topic: one `2` for all
//!   every [`PING_INTERVAL`]. A session that sends nothing (not even the
//!   pong) for the interval and the [`PING_TIMEOUT`] is closed.
//! - `40/market,{auth}` joins the namespace once the key is admitted
//!   (`40/market,{"sid"}` and the `connected` greeting), or is refused with
//!   `44/market,{"message"}`; another namespace gets `Invalid namespace`.
//! - Events of `/market` are answered through their acknowledgement, or as
//!   an event when none is asked for. A subscription's room is a topic of
//!   the rooms' index, which each room's broadcast task publishes its
//!   `market_data` events to, encoded once.
//! - A binary frame, a packet that cannot be read, or a binary Socket.IO
//!   packet closes the connection with the reason (1003); the log says why.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header;
use hyper::{Request, Response};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tickwire_core::http::{Body, handshake, handshake_refusal, upgrade_with};
use tickwire_core::outbox::NO_TOPIC;
use tickwire_core::session::{Activity, Later, Protocol, Step};
use tickwire_core::{Index, Outbound, Subscriber, Tracker};
use tickwire_services::Context;
use tickwire_services::http::{JsonTransport, json_session, query_param};
use tickwire_services::keys::{KeyUsage, Lease};
use tickwire_websocket::{MessageKind, close_code};
use tracing::{debug, info};

use crate::packet::{self, EnginePacket, Kind, Packet};
use crate::{
    Auth, Carrier, MAX_PAYLOAD, NAME, NAMESPACE, PING_INTERVAL, PING_TIMEOUT, PING_TOPIC, RoomKey,
    Seat, Shared, SubscribeReply, admit, checked, greeting, leave_rooms, poll_answer, poll_mode,
    room_name, subscribe_to, to_raw, unsubscribe_from,
};

/// Whether `req` opens an Engine.IO v4 session on a WebSocket: the
/// transport is `websocket`, and no `sid` names a polling session to
/// upgrade (that is socketioxide's).
pub(crate) fn opens_websocket(req: &Request<Incoming>) -> bool {
    let query = req.uri().query().unwrap_or("");
    query_param(query, "EIO").as_deref() == Some("4")
        && query_param(query, "transport").as_deref() == Some("websocket")
        && query_param(query, "sid").is_none()
}

/// Answers the WebSocket handshake of a new session.
pub(crate) fn upgrade(
    mut req: Request<Incoming>,
    shared: &Shared,
    context: &Context,
    tracker: &Tracker,
) -> Response<Body> {
    let handshake = match handshake(&req) {
        Ok(h) => h,
        Err(e) => return handshake_refusal(&e),
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| Box::<[u8]>::from(value.as_bytes()));
    let json = JsonTransport {
        endpoint: NAME,
        max_message_bytes: MAX_PAYLOAD,
        slow_consumer: None,
        remote: tickwire_core::http::remote(&req),
    };
    let (shared, context, tracker) = (shared.clone(), context.clone(), tracker.clone());
    upgrade_with(&mut req, handshake, move |upgraded| {
        let make = move |sub| MarketSession::new(shared, sub, bearer);
        json_session(upgraded, &context, json, make, tracker)
    })
}

/// One session's state: what an idle connection keeps, besides the core's.
pub(crate) struct MarketSession {
    shared: Shared,
    sub: Subscriber,
    /// The handshake's `Authorization` header, until `/market` is joined.
    bearer: Option<Box<[u8]>>,
    /// In `/market`: the key's usage and lease, the rooms joined.
    member: Option<Arc<Member>>,
}

/// A session in `/market`.
struct Member {
    usage: Arc<KeyUsage>,
    /// The session's slot in its key's `max_connections`, released with it.
    _lease: Lease,
    joined: Mutex<Vec<RoomKey>>,
}

/// The session's place in the rooms: a topic of the rooms' index each.
struct SessionSeat {
    sub: Subscriber,
    index: Arc<Index>,
}

impl Seat for SessionSeat {
    const CARRIER: Carrier = Carrier::Session;

    fn snapshot(&self, _key: &RoomKey, data: &RawValue) {
        // Queued as data, before the session is in the room's topic: what
        // the room publishes next comes after it.
        let event = crate::market_data_event(data.get());
        self.sub.offer(NO_TOPIC, Outbound::text(&event));
    }

    fn enter(&self, key: &RoomKey) {
        self.index.subscribe(&room_name(key), self.sub.clone());
    }

    fn exit(&self, key: &RoomKey) {
        self.index.unsubscribe(&room_name(key), &self.sub);
    }
}

/// Why a session is closed for what its client sent.
const UNREADABLE: u16 = close_code::UNSUPPORTED_DATA;

impl MarketSession {
    fn new(shared: Shared, sub: Subscriber, bearer: Option<Box<[u8]>>) -> MarketSession {
        shared.rooms.index.subscribe(PING_TOPIC, sub.clone());
        MarketSession {
            shared,
            sub,
            bearer,
            member: None,
        }
    }

    /// The Engine.IO session's id: the connection's, which is unique on
    /// this server and not reused.
    fn sid(&self) -> String {
        format!("{:016x}", self.sub.id())
    }

    /// The socket's id in `/market`.
    fn socket_id(&self) -> String {
        format!("{:016x}", !self.sub.id())
    }

    fn seat(&self) -> SessionSeat {
        SessionSeat {
            sub: self.sub.clone(),
            index: self.shared.rooms.index.clone(),
        }
    }

    /// Closes the connection for `why`, which the log and the close frame
    /// give.
    fn unreadable(&self, why: &str) -> Step {
        info!(
            connection = self.sub.id(),
            "{NAMESPACE} session closed: {why}"
        );
        Step::Close {
            code: UNREADABLE,
            reason: why.to_owned(),
            last: None,
        }
    }

    fn on_packet(&mut self, packet: Packet<'_>) -> Step {
        if packet.namespace != NAMESPACE {
            return match packet.kind {
                Kind::Connect => {
                    Step::Reply(packet::connect_error(packet.namespace, "Invalid namespace"))
                }
                _ => {
                    debug!(
                        connection = self.sub.id(),
                        namespace = packet.namespace,
                        "a packet of a namespace not joined; ignored"
                    );
                    Step::Nothing
                }
            };
        }
        match (packet.kind, self.member.clone()) {
            (Kind::Connect, None) => self.connect(packet.data),
            (Kind::Connect, Some(_)) => {
                Step::Reply(packet::connected(NAMESPACE, &self.socket_id()))
            }
            (Kind::Disconnect, Some(member)) => {
                self.member = None;
                self.leave(&member);
                debug!(connection = self.sub.id(), "{NAMESPACE} left");
                Step::Nothing
            }
            (Kind::Event, Some(member)) => self.on_event(&member, packet.ack, packet.data),
            (Kind::Disconnect | Kind::Event, None) => {
                debug!(
                    connection = self.sub.id(),
                    "a packet of {NAMESPACE} before joining it; ignored"
                );
                Step::Nothing
            }
            // Acknowledgements of events the server sent: it asks for none.
            (Kind::Ack, _) => Step::Nothing,
        }
    }

    /// `40/market,{auth}`: the key admitted, the namespace joined.
    fn connect(&mut self, data: &str) -> Step {
        let auth = if data.is_empty() {
            Auth::default()
        } else {
            serde_json::from_str(data).unwrap_or_default()
        };
        let socket_id = self.socket_id();
        match admit(&self.shared, self.bearer.as_deref(), &auth, &socket_id) {
            Ok((usage, lease)) => {
                self.bearer = None;
                self.member = Some(Arc::new(Member {
                    usage,
                    _lease: lease,
                    joined: Mutex::default(),
                }));
                debug!(connection = self.sub.id(), "{NAMESPACE} connected");
                let greeting = greeting().to_string();
                Step::Replies(vec![
                    packet::connected(NAMESPACE, &socket_id),
                    packet::event(NAMESPACE, "connected", &greeting),
                ])
            }
            Err(refused) => Step::Reply(packet::connect_error(NAMESPACE, &refused.0)),
        }
    }

    /// An event of `/market`: `["name", argument]`.
    fn on_event(&mut self, member: &Arc<Member>, ack: Option<u64>, data: &str) -> Step {
        let Ok(args) = serde_json::from_str::<Vec<&RawValue>>(data) else {
            return self.unreadable("an event that is not a JSON array");
        };
        let Some(name) = args
            .first()
            .and_then(|name| serde_json::from_str::<&str>(name.get()).ok())
        else {
            return self.unreadable("an event without a name");
        };
        let argument = args.get(1).copied();
        let sid = self.socket_id();
        match name {
            "subscribe" => {
                let request = argument_of(argument);
                let subscription = match checked("subscribe", &member.usage, request) {
                    Ok(subscription) => subscription,
                    Err(message) => {
                        let reply = SubscribeReply::refused("subscribe", &sid, message);
                        return Step::Reply(reply_of(ack, "subscribed", &to_raw(&reply)));
                    }
                };
                let (shared, seat, member) = (self.shared.clone(), self.seat(), member.clone());
                Step::Later(Later::new(async move {
                    let reply =
                        subscribe_to(&shared, &seat, &member.joined, subscription, &sid).await;
                    Step::Reply(reply_of(ack, "subscribed", &to_raw(&reply)))
                }))
            }
            "unsubscribe" => {
                let request = argument_of(argument);
                let reply = match checked("unsubscribe", &member.usage, request) {
                    Ok(subscription) => {
                        unsubscribe_from(&self.shared, &self.seat(), &member.joined, subscription)
                    }
                    Err(message) => SubscribeReply::refused("unsubscribe", &sid, message),
                };
                Step::Reply(reply_of(ack, "unsubscribed", &to_raw(&reply)))
            }
            "get_ltp" | "get_quote" | "get_depth" => {
                let mode = match name {
                    "get_ltp" => crate::LTP,
                    "get_quote" => crate::QUOTE,
                    _ => crate::DEPTH,
                };
                let (mode, event) = poll_mode(mode);
                let request = argument_of(argument);
                let quotes = self.shared.quotes.clone();
                Step::Later(Later::new(async move {
                    let reply = poll_answer(&*quotes, mode, event, request, &sid).await;
                    Step::Reply(reply_of(ack, event, &reply))
                }))
            }
            other => {
                debug!(
                    sid,
                    event = other,
                    "an event {NAMESPACE} does not take; ignored"
                );
                Step::Nothing
            }
        }
    }

    /// Leaves every room `member` is in.
    fn leave(&self, member: &Member) {
        let seat = self.seat();
        for key in tickwire_core::lock(&member.joined).iter() {
            seat.exit(key);
        }
        leave_rooms(&self.shared, &member.joined, Carrier::Session);
    }
}

/// An event's argument read as `T`, or why not (as socketioxide words it
/// for its carrier: the reply names what the event takes).
fn argument_of<T: DeserializeOwned>(argument: Option<&RawValue>) -> Result<T, String> {
    let text = argument.map_or("null", RawValue::get);
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// `reply` to an event: through its acknowledgement `ack`, or as `event`.
fn reply_of(ack: Option<u64>, event: &str, reply: &RawValue) -> Bytes {
    match ack {
        Some(id) => packet::ack(NAMESPACE, id, reply.get()),
        None => packet::event(NAMESPACE, event, reply.get()),
    }
}

impl Protocol for MarketSession {
    fn opening(&mut self) -> Option<Bytes> {
        let interval = u64::try_from(PING_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let timeout = u64::try_from(PING_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        Some(packet::open(&self.sid(), interval, timeout, MAX_PAYLOAD))
    }

    fn on_message(&mut self, kind: MessageKind, payload: &[u8], _now: Instant) -> Step {
        if kind == MessageKind::Binary {
            return self.unreadable("binary packets are not taken here");
        }
        let Ok(text) = std::str::from_utf8(payload) else {
            return self.unreadable("a text frame that is not UTF-8");
        };
        let engine = match packet::engine(text) {
            Ok(engine) => engine,
            Err(e) => return self.unreadable(&e.to_string()),
        };
        match engine {
            EnginePacket::Message(message) => match packet::socket(message) {
                Ok(packet) => self.on_packet(packet),
                Err(e) => self.unreadable(&e.to_string()),
            },
            EnginePacket::Ping(data) => Step::Reply(packet::pong(data)),
            EnginePacket::Pong | EnginePacket::Noop | EnginePacket::Upgrade => Step::Nothing,
            EnginePacket::Close => Step::Close {
                code: close_code::NORMAL,
                reason: "the client closed the session".to_owned(),
                last: None,
            },
        }
    }

    fn subscriptions(&self) -> Option<usize> {
        let joined = self
            .member
            .as_ref()
            .map_or(0, |member| tickwire_core::lock(&member.joined).len());
        Some(joined)
    }

    fn deadline(&self, activity: &Activity) -> Instant {
        activity.last_message + PING_INTERVAL + PING_TIMEOUT
    }

    fn idle_close(&self) -> (u16, &str) {
        (close_code::NORMAL, "ping timeout")
    }

    fn on_close(&mut self, _ending: tickwire_core::Ending) {
        self.shared.rooms.index.unsubscribe_all(&self.sub);
        if let Some(member) = self.member.take() {
            leave_rooms(&self.shared, &member.joined, Carrier::Session);
        }
    }
}
