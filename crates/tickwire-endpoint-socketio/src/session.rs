//! `/market` on the gateway's own session: a client that opens its
//! Engine.IO transport as a WebSocket (`?EIO=4&transport=websocket`, no
//! `sid`) is served like every other endpoint's connection, one task with
//! its queue and writer, Engine.IO and Socket.IO read and written by
//! [`packet`](crate::packet). The same [`MarketSession`] reads the packets
//! of a long-polling session ([`polling`](crate::polling)), and moves with
//! it to the WebSocket it upgrades to.
//!
//! - The Engine.IO `open` packet goes first: the session's id, the seed's
//!   heartbeat, the largest message taken, no upgrade.
//! - The Engine.IO ping, `2`, goes every [`PING_INTERVAL`] on the session's
//!   own schedule (the core's heartbeat, in place of the WebSocket ping:
//!   sessions opened at different times are pinged at different times). A
//!   session that sends nothing (not even the pong) for the interval and
//!   the [`PING_TIMEOUT`] is closed, and so is
//!   one that has not joined `/market` [`CONNECT_TIMEOUT`] after it opened
//!   (Socket.IO's `connectTimeout`).
//! - `40/market,{auth}` joins the namespace once the key is admitted
//!   (`40/market,{"sid"}` and the `connected` greeting), or is refused with
//!   `44/market,{"message"}`; another namespace gets `Invalid namespace`.
//! - Events of `/market` are answered through their acknowledgement, or as
//!   an event when none is asked for. A subscription's room is a topic of
//!   the rooms' index, which the room publishes its `market_data` events
//!   to as the proxy offers them, encoded once.
//! - A binary frame, a packet that cannot be read, or a binary Socket.IO
//!   packet closes the connection with the reason (1003); the log says why.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
use tickwire_services::http::{JsonTransport, json_session};
use tickwire_services::keys::{KeyUsage, Lease};
use tickwire_websocket::{MessageKind, close_code};
use tracing::{debug, info};

use crate::packet::{self, EnginePacket, Kind, Packet};
use crate::{
    Auth, MAX_PAYLOAD, NAME, NAMESPACE, PING_INTERVAL, PING_TIMEOUT, RoomKey, Shared,
    SubscribeReply, admit, checked, greeting, leave_rooms, poll_answer, poll_mode, room_name,
    subscribe_to, to_raw, unsubscribe_from,
};

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
    let json = json_transport(&req);
    let (shared, context, tracker) = (shared.clone(), context.clone(), tracker.clone());
    upgrade_with(&mut req, handshake, move |upgraded| {
        let make = move |sub| MarketSession::new(shared, sub, bearer);
        json_session(upgraded, &context, json, make, tracker)
    })
}

/// What a `/market` WebSocket is to the core: the endpoint's name, its
/// largest message, the gateway's slow-consumer policy, the client's
/// address.
pub(crate) fn json_transport<B>(req: &Request<B>) -> JsonTransport {
    JsonTransport {
        endpoint: NAME,
        max_message_bytes: MAX_PAYLOAD,
        slow_consumer: None,
        remote: tickwire_core::http::remote(req),
    }
}

/// How long a session may stay open without joining `/market` (Socket.IO's
/// default `connectTimeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

/// One session's state: what an idle connection keeps, besides the core's.
pub(crate) struct MarketSession {
    shared: Shared,
    /// The Engine.IO session's number: its first transport's connection id,
    /// kept when it moves to another transport.
    id: u64,
    /// The queue of its transport.
    sub: Subscriber,
    /// When it opened: the start of its [`CONNECT_TIMEOUT`].
    opened: Instant,
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
pub(crate) struct SessionSeat {
    sub: Subscriber,
    index: Arc<Index>,
}

impl SessionSeat {
    /// Sends `data`, the last value of a room about to be entered, ahead
    /// of the room's updates.
    pub(crate) fn snapshot(&self, data: &RawValue) {
        // Queued as data, before the session is in the room's topic: what
        // the room publishes next comes after it.
        let event = crate::market_data_event(data.get().as_bytes());
        self.sub.offer(NO_TOPIC, Outbound::text(&event));
    }

    /// Takes the updates of `key`'s room from now on.
    pub(crate) fn enter(&self, key: &RoomKey) {
        self.index.subscribe(&room_name(key), self.sub.clone());
    }

    /// Stops taking them.
    pub(crate) fn exit(&self, key: &RoomKey) {
        self.index.unsubscribe(&room_name(key), &self.sub);
    }
}

/// Why a session is closed for what its client sent.
const UNREADABLE: u16 = close_code::UNSUPPORTED_DATA;

impl MarketSession {
    pub(crate) fn new(shared: Shared, sub: Subscriber, bearer: Option<Box<[u8]>>) -> MarketSession {
        MarketSession {
            shared,
            id: sub.id(),
            sub,
            opened: Instant::now(),
            bearer,
            member: None,
        }
    }

    /// The Engine.IO session's id on a WebSocket: the connection's, which is
    /// unique on this server and not reused.
    pub(crate) fn sid(&self) -> String {
        format!("{:016x}", self.id)
    }

    /// The socket's id in `/market`.
    fn socket_id(&self) -> String {
        format!("{:016x}", !self.id)
    }

    /// The Engine.IO `open` packet of the session under `sid`, offering
    /// `upgrades`.
    pub(crate) fn open_packet(sid: &str, upgrades: &[&str]) -> Bytes {
        let interval = u64::try_from(PING_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let timeout = u64::try_from(PING_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        packet::open(sid, upgrades, interval, timeout, MAX_PAYLOAD)
    }

    /// Moves the session to a new transport's queue, `sub`: `sub` takes the
    /// old queue's place in every room, and what the old queue still holds
    /// goes first in `sub` (it is older than anything the rooms offered `sub`
    /// since). The old queue takes nothing more.
    pub(crate) fn move_to(&mut self, sub: Subscriber) {
        let old = std::mem::replace(&mut self.sub, sub);
        self.shared.rooms.index.replace(&old, self.sub.clone());
        let mut taken = tickwire_core::outbox::Batch::default();
        old.outbox().take_now(&mut taken);
        // Nothing more is queued there, and a request waiting on it is
        // released.
        old.outbox().writer_gone();
        old.outbox().reader_gone();
        self.sub.outbox().put_first(&mut taken);
        debug!(
            connection = self.sub.id(),
            from = old.id(),
            "{NAMESPACE} session moved to a new transport"
        );
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
            .and_then(|name| serde_json::from_str::<String>(name.get()).ok())
        else {
            return self.unreadable("an event without a name");
        };
        let name = name.as_str();
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
            other => match poll_mode(other) {
                // `get_ltp`, `get_quote`, `get_depth`.
                Some((mode, event)) => {
                    let request = argument_of(argument);
                    let quotes = self.shared.quotes.clone();
                    Step::Later(Later::new(async move {
                        let reply = poll_answer(&*quotes, mode, event, request, &sid).await;
                        Step::Reply(reply_of(ack, event, &reply))
                    }))
                }
                None => {
                    debug!(
                        sid,
                        event = other,
                        "an event {NAMESPACE} does not take; ignored"
                    );
                    Step::Nothing
                }
            },
        }
    }

    /// Leaves every room `member` is in.
    fn leave(&self, member: &Member) {
        let seat = self.seat();
        for key in tickwire_core::lock(&member.joined).iter() {
            seat.exit(key);
        }
        leave_rooms(&self.shared, &member.joined);
    }
}

/// An event's argument read as `T`, or why not (the reply names what the
/// event takes).
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
        // Its id names it in the log; nothing is looked up by it (a
        // WebSocket session cannot be joined by another request).
        Some(MarketSession::open_packet(&self.sid(), &[]))
    }

    fn heartbeat(&self) -> Option<(Duration, Bytes)> {
        Some((PING_INTERVAL, Bytes::from_static(packet::PING)))
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
        let heartbeat = activity.last_message + PING_INTERVAL + PING_TIMEOUT;
        match self.member {
            Some(_) => heartbeat,
            None => heartbeat.min(self.opened + CONNECT_TIMEOUT),
        }
    }

    fn idle_close(&self) -> (u16, &str) {
        if self.member.is_none() && Instant::now() >= self.opened + CONNECT_TIMEOUT {
            (close_code::POLICY, "no namespace joined in time")
        } else {
            (close_code::NORMAL, "ping timeout")
        }
    }

    fn on_close(&mut self, _ending: tickwire_core::Ending) {
        self.shared.rooms.index.unsubscribe_all(&self.sub);
        if let Some(member) = self.member.take() {
            leave_rooms(&self.shared, &member.joined);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::future::Future;
    use std::pin::Pin;

    use tickwire_core::outbox::Batch;
    use tickwire_core::{Connections, Ending};
    use tickwire_model::Instrument;
    use tickwire_proxy::{Depth, Mode};
    use tickwire_services::keys::KeyRing;
    use tickwire_services::quotes::Quotes;
    use tickwire_websocket::frame::payload_of;

    use super::*;
    use crate::Rooms;

    /// The last values and the rooms' queues, as the proxy keeps them.
    #[derive(Default)]
    pub(crate) struct Cache {
        last: Mutex<HashMap<Instrument, Bytes>>,
        /// Each room's queue, the proxy's member of its key.
        rooms: Mutex<Vec<Subscriber>>,
        /// The members that left.
        left: Mutex<Vec<u64>>,
    }

    impl Quotes for Cache {
        fn last<'a>(
            &'a self,
            instrument: &'a Instrument,
            _mode: Mode,
            _depth: Depth,
        ) -> Pin<Box<dyn Future<Output = Option<Bytes>> + Send + 'a>> {
            let last = tickwire_core::lock(&self.last).get(instrument).cloned();
            Box::pin(async move {
                // A fetch from another node, in a cluster: not at once.
                tokio::task::yield_now().await;
                last
            })
        }

        fn join(&self, sub: &Subscriber, _: &Instrument, _: Mode, _: Depth) -> Result<(), String> {
            tickwire_core::lock(&self.rooms).push(sub.clone());
            Ok(())
        }

        fn leave(&self, id: u64, _: &Instrument, _: Mode, _: Depth) {
            tickwire_core::lock(&self.left).push(id);
        }
    }

    pub(crate) fn shared(cache: &Arc<Cache>) -> Shared {
        let (_, shutdown) = tokio::sync::watch::channel(false);
        Shared {
            keys: Arc::new(KeyRing::new(&tickwire_config::Config::default().api_keys).unwrap()),
            quotes: cache.clone(),
            rooms: Arc::new(Rooms {
                connections: Connections::new(Default::default(), shutdown),
                index: Arc::new(Index::new()),
                rooms: Mutex::default(),
            }),
        }
    }

    fn session(shared: &Shared, bearer: Option<&str>) -> MarketSession {
        let sub = tickwire_core::testing::subscriber(7, 0);
        let bearer = bearer.map(|b| Box::<[u8]>::from(b.as_bytes()));
        MarketSession::new(shared.clone(), sub, bearer)
    }

    fn send(session: &mut MarketSession, text: &str) -> Step {
        session.on_message(MessageKind::Text, text.as_bytes(), Instant::now())
    }

    /// The Engine.IO messages of a step.
    fn replies(step: Step) -> Vec<String> {
        let all = match step {
            Step::Reply(one) => vec![one],
            Step::Replies(all) => all,
            other => panic!("expected replies, got {other:?}"),
        };
        all.iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    /// The Engine.IO messages queued for the session's writer.
    fn queued(session: &MarketSession) -> Vec<String> {
        let mut batch = Batch::default();
        session.sub.outbox().take_now(&mut batch);
        batch
            .data
            .iter()
            .map(|item| match &item.out {
                Outbound::Frame(frame) => {
                    String::from_utf8(payload_of(frame).unwrap().to_vec()).unwrap()
                }
                other => panic!("{other:?}"),
            })
            .collect()
    }

    async fn run(step: Step) -> Step {
        match step {
            Step::Later(later) => later.await,
            other => other,
        }
    }

    const JOIN: &str = r#"40/market,{"api_key":"tickwire-demo-key"}"#;

    #[tokio::test]
    async fn the_session_opens_with_the_seeds_heartbeat_and_no_upgrade() {
        let cache = Arc::new(Cache::default());
        let mut session = session(&shared(&cache), None);
        let open = session.opening().unwrap();
        let handshake: serde_json::Value = serde_json::from_slice(&open[1..]).unwrap();
        assert_eq!(open[0], b'0');
        assert_eq!(handshake["sid"], session.sid());
        assert_eq!(handshake["pingInterval"], 5000);
        assert_eq!(handshake["pingTimeout"], 10000);
        assert_eq!(handshake["upgrades"], serde_json::json!([]));
        assert_eq!(handshake["maxPayload"], MAX_PAYLOAD);
        // Its ping is Engine.IO's, every interval, on its own schedule.
        assert_eq!(
            session.heartbeat(),
            Some((PING_INTERVAL, Bytes::from_static(b"2")))
        );
        assert_eq!(replies(send(&mut session, "2probe")), ["3probe"]);
    }

    #[tokio::test]
    async fn a_key_in_auth_or_the_header_joins_market_and_others_are_refused() {
        let cache = Arc::new(Cache::default());
        let shared = shared(&cache);
        let mut joined = session(&shared, None);
        let sid = joined.socket_id();
        assert_eq!(
            replies(send(&mut joined, JOIN)),
            [
                format!(r#"40/market,{{"sid":"{sid}"}}"#),
                r#"42/market,["connected",{"status":"ok"}]"#.to_owned(),
            ]
        );
        let mut by_header = session(&shared, Some("Bearer tickwire-demo-key"));
        assert_eq!(replies(send(&mut by_header, "40/market,")).len(), 2);
        assert!(
            by_header.bearer.is_none(),
            "the header is not kept once joined"
        );

        let mut wrong = session(&shared, None);
        let refused = replies(send(&mut wrong, r#"40/market,{"api_key":"nope"}"#));
        assert_eq!(refused, [r#"44/market,{"message":"invalid api key"}"#]);
        let missing = replies(send(&mut wrong, "40/market,"));
        assert!(missing[0].starts_with(r#"44/market,{"message":"missing api key"#));
        assert_eq!(
            replies(send(&mut wrong, "40/admin,")),
            [r#"44/admin,{"message":"Invalid namespace"}"#]
        );
        // Not joined: its events are not answered.
        let poll = r#"42/market,1["get_ltp",{"symbol":"BTC/USD","exchange":"CRYPTO"}]"#;
        assert_eq!(send(&mut wrong, poll), Step::Nothing);
        // An event it does not take, whatever its name, is ignored.
        assert_eq!(
            send(&mut joined, r#"42/market,["say \"hi\"",{}]"#),
            Step::Nothing
        );
    }

    #[tokio::test]
    async fn the_snapshot_comes_before_the_rooms_updates_and_a_closed_session_leaves() {
        let cache = Arc::new(Cache::default());
        let btc = Instrument::crypto("BTC/USD");
        let snapshot = Bytes::from_static(br#"{"type":"market_data","data":{"ltp":1}}"#);
        tickwire_core::lock(&cache.last).insert(btc.clone(), snapshot);
        let shared = shared(&cache);
        let mut session = session(&shared, None);
        send(&mut session, JOIN);
        let subscribe = r#"42/market,3["subscribe",{"symbols":[{"symbol":"BTC/USD","exchange":"CRYPTO"}],"mode":"LTP"}]"#;
        // The snapshot is fetched (not at once): the answer waits for it.
        let step = send(&mut session, subscribe);
        assert!(matches!(step, Step::Later(_)), "{step:?}");
        let ack = replies(run(step).await);
        assert!(
            ack[0].starts_with(r#"43/market,3[{"status":"success","mode":"LTP""#),
            "{ack:?}"
        );
        assert_eq!(session.subscriptions(), Some(1));
        // What the session keeps of its room: the room's own names (shared,
        // not copied), in a list of one.
        {
            let member = session.member.as_ref().unwrap();
            let joined = tickwire_core::lock(&member.joined);
            let rooms = tickwire_core::lock(&shared.rooms.rooms);
            let (own, _) = rooms.get_key_value(&joined[0]).unwrap();
            assert!(Arc::ptr_eq(&own.0.symbol, &joined[0].0.symbol));
            assert!(Arc::ptr_eq(&own.0.exchange, &joined[0].0.exchange));
            assert_eq!(joined.capacity(), 1);
        }
        // The proxy's next update reaches the session as the proxy offers
        // it to the room, with no task between (nothing is awaited here),
        // and the room's own queue stays empty.
        let room = tickwire_core::lock(&cache.rooms)[0].clone();
        assert!(room.offer(
            0,
            Outbound::text(br#"{"type":"market_data","data":{"ltp":2}}"#),
        ));
        assert_eq!(
            queued(&session),
            [
                r#"42/market,["market_data",{"type":"market_data","data":{"ltp":1}}]"#,
                r#"42/market,["market_data",{"type":"market_data","data":{"ltp":2}}]"#,
            ]
        );
        let mut kept = Batch::default();
        room.outbox().take_now(&mut kept);
        assert!(kept.data.is_empty(), "the room queues nothing");
        // The connection ends: it leaves its room, the room the proxy's key.
        session.on_close(Ending::Vanished);
        assert_eq!(*tickwire_core::lock(&cache.left), [room.id()]);
        assert_eq!(
            shared.rooms.index.topic_count(),
            0,
            "the room's topic is left"
        );
        assert!(tickwire_core::lock(&shared.rooms.rooms).is_empty());
    }

    #[tokio::test]
    async fn a_session_that_joins_nothing_is_closed_at_the_connect_timeout() {
        let cache = Arc::new(Cache::default());
        let shared = shared(&cache);
        let mut session = session(&shared, None);
        let opened = session.opened;
        // A client that answers every ping but joins no namespace.
        let ponging = Activity {
            last_frame: opened + Duration::from_secs(40),
            last_message: opened + Duration::from_secs(40),
        };
        assert_eq!(session.deadline(&ponging), opened + CONNECT_TIMEOUT);
        send(&mut session, JOIN);
        assert_eq!(
            session.deadline(&ponging),
            ponging.last_message + PING_INTERVAL + PING_TIMEOUT
        );
        assert_eq!(session.idle_close(), (close_code::NORMAL, "ping timeout"));
    }

    #[tokio::test]
    async fn what_cannot_be_read_closes_the_session_with_the_reason() {
        let cache = Arc::new(Cache::default());
        let shared = shared(&cache);
        let cases: [(MessageKind, &str, &str); 5] = [
            (MessageKind::Binary, "4hello", "binary packets"),
            (MessageKind::Text, "9", "unknown Engine.IO packet type"),
            (MessageKind::Text, "4x", "unknown Socket.IO packet type"),
            (
                MessageKind::Text,
                r#"451-/market,["a",{}]"#,
                "binary Socket.IO",
            ),
            (
                MessageKind::Text,
                r#"42/market,{"a":1}"#,
                "not a JSON array",
            ),
        ];
        for (kind, text, why) in cases {
            let mut session = session(&shared, None);
            send(&mut session, JOIN);
            match session.on_message(kind, text.as_bytes(), Instant::now()) {
                Step::Close { code, reason, .. } => {
                    assert_eq!(code, close_code::UNSUPPORTED_DATA, "{text}");
                    assert!(reason.contains(why), "{text}: {reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
