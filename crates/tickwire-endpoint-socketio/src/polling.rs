//! Engine.IO's long-polling transport, and the upgrade from it to a
//! WebSocket, on the gateway's own session: what `socket.io-client` and
//! `python-socketio` do by default (poll first, then upgrade).
//!
//! - `GET ?EIO=4&transport=polling` opens a session: a [`MarketSession`]
//!   with a queue of its own (the gateway's send buffer and slow-consumer
//!   policy), kept here by its number; the answer is the `open` packet,
//!   offering the upgrade to `websocket`.
//! - `POST ...&sid=` carries the client's packets (separated by `\x1e`),
//!   read one at a time as a WebSocket session reads its messages; the
//!   answers are queued.
//! - `GET ...&sid=` waits until something is queued (an answer, an update,
//!   the heartbeat's ping, the session's end) and takes all of it. One
//!   request of each kind at a time: a second while one waits ends the
//!   session (`400`, as Engine.IO's servers do).
//! - A sweep each second pings every session on its own schedule, and ends
//!   one that sent nothing (not even the pong) for the ping interval and
//!   timeout, one that has not joined `/market` in time, one whose queue
//!   overflowed, and all of them when the server shuts down. An ended
//!   session's next poll gets the close packet (`1`); its rooms are left at
//!   once.
//! - A WebSocket opened with the session's `sid` is the upgrade: `2probe` is
//!   answered `3probe` (and a waiting poll is released with a no-op), and at
//!   `5` the session moves to the WebSocket: the WebSocket's queue takes the
//!   polling queue's place in every room, and what that queue still held is
//!   written first. From then on it is a WebSocket session like one opened
//!   as such.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tickwire_core::http::{Body, handshake, handshake_refusal, upgrade_with};
use tickwire_core::meter::{Meter, OpenGuard};
use tickwire_core::outbox::{Batch, NO_TOPIC};
use tickwire_core::session::{Activity, Protocol, Step};
use tickwire_core::subscriber::QueuePolicy;
use tickwire_core::{Ending, Index, Outbound, Subscriber, Tracker, lock};
use tickwire_services::Context;
use tickwire_services::http::json_session;
use tickwire_websocket::frame::payload_of;
use tickwire_websocket::{MessageKind, close_code};
use tracing::{debug, info};

use crate::session::MarketSession;
use crate::{MAX_PAYLOAD, NAME, NAMESPACE, PING_INTERVAL, PING_TIMEOUT, Shared, packet};

/// How often the sweep pings and checks the polling sessions.
const SWEEP: Duration = Duration::from_secs(1);

/// The Engine.IO packet separator of a polling payload.
const SEPARATOR: u8 = 0x1e;

/// The most sessions on long-polling at a time, by default (see
/// [`Market::polling_limit`](crate::Market::polling_limit)).
pub const MAX_POLLING_SESSIONS: usize = 20_000;

/// The long-polling sessions of the endpoint, by number.
pub(crate) struct Polls {
    /// By the sessions' ids: 128 random bits each, the credential of every
    /// request of the session (its polls, its packets, its upgrade).
    sessions: Mutex<HashMap<u128, Arc<Polling>>>,
    /// Whether the sweep runs (started with the first session).
    sweeping: std::sync::OnceLock<()>,
    /// The most sessions at a time.
    max: usize,
}

impl Polls {
    /// At most `max` sessions at a time.
    pub(crate) fn new(max: usize) -> Polls {
        Polls {
            sessions: Mutex::default(),
            sweeping: std::sync::OnceLock::new(),
            max,
        }
    }
}

/// One long-polling session.
struct Polling {
    /// Its id (see [`Polls`]).
    token: u128,
    /// The session, until it moves to a WebSocket or ends.
    session: Mutex<Option<MarketSession>>,
    /// Its queue while it polls.
    sub: Subscriber,
    /// The rooms' index, where its queue is a member of its rooms.
    rooms: Arc<Index>,
    io: Mutex<Io>,
    /// Where it is counted (the `socketio` endpoint's meter).
    meter: Arc<Meter>,
    /// Counted open while it polls.
    _open: OpenGuard,
}

/// What the requests of a polling session last did.
struct Io {
    /// A `GET` waits.
    getting: bool,
    /// A `POST` is read.
    posting: bool,
    /// A WebSocket probes to take the session over.
    upgrading: bool,
    /// The WebSocket's queue that took the session over, if one did.
    moved_to: Option<Subscriber>,
    /// The session ended; its next poll gets the close packet.
    ended: bool,
    /// When the client last sent a packet (for the deadline).
    last_message: Instant,
    /// When the next ping is due.
    next_ping: Instant,
}

/// An Engine.IO error answer: `400` with its code and message.
pub(crate) fn refusal(status: StatusCode, code: u8, message: &str) -> Response<Body> {
    tickwire_core::http::json(
        status,
        &serde_json::json!({ "code": code, "message": message }),
    )
}

fn unknown_session() -> Response<Body> {
    refusal(StatusCode::BAD_REQUEST, 1, "Session ID unknown")
}

fn bad_request() -> Response<Body> {
    refusal(StatusCode::BAD_REQUEST, 3, "Bad request")
}

/// A polling answer: Engine.IO packets as text.
fn text(body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    response
}

/// The token of an Engine.IO `sid`: 32 hexadecimal digits.
fn token_of(sid: &str) -> Option<u128> {
    (sid.len() == 32)
        .then(|| u128::from_str_radix(sid, 16).ok())
        .flatten()
}

/// Resets a request's flag when it ends, answered or not.
struct Busy<'a>(&'a Polling, fn(&mut Io) -> &mut bool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *(self.1)(&mut lock(&self.0.io)) = false;
    }
}

impl Polls {
    fn get(&self, sid: &str) -> Option<Arc<Polling>> {
        let token = token_of(sid)?;
        lock(&self.sessions).get(&token).cloned()
    }

    /// `GET ?EIO=4&transport=polling`: a new session.
    pub(crate) fn open(
        self: &Arc<Self>,
        req: &Request<Incoming>,
        shared: &Shared,
        context: &Context,
    ) -> Response<Body> {
        if req.method() != Method::GET {
            return refusal(StatusCode::BAD_REQUEST, 2, "Bad handshake method");
        }
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|value| Box::<[u8]>::from(value.as_bytes()));
        match self.open_session(shared, context.slow_consumer, bearer) {
            Ok(open) => text(open),
            Err(full) => refusal(StatusCode::SERVICE_UNAVAILABLE, 4, &full),
        }
    }

    /// A new session: its `open` packet, or why there is no room for it.
    fn open_session(
        self: &Arc<Self>,
        shared: &Shared,
        policy: tickwire_core::SlowConsumer,
        bearer: Option<Box<[u8]>>,
    ) -> Result<Bytes, String> {
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= self.max {
            drop(sessions);
            let why = format!(
                "too many long-polling sessions: at most {}; connect over a WebSocket or later",
                self.max
            );
            info!("{NAMESPACE} polling session refused: {why}");
            return Err(why);
        }
        let connections = &shared.rooms.connections;
        let queue = QueuePolicy {
            capacity: connections.settings().send_buffer,
            slow_consumer: policy,
            pacer: None,
        };
        let sub = Subscriber::new(
            connections.next_id(),
            0,
            queue,
            connections.slow_consumer_stats().clone(),
        );
        let session = MarketSession::new(shared.clone(), sub.clone(), bearer);
        // Unguessable, and new: a token in use is not given twice.
        let token = loop {
            let token = rand::random::<u128>();
            if !sessions.contains_key(&token) {
                break token;
            }
        };
        let open = MarketSession::open_packet(&format!("{token:032x}"), &["websocket"]);
        let meter = connections.meters().get(NAME, "json");
        let now = Instant::now();
        let polling = Arc::new(Polling {
            token,
            session: Mutex::new(Some(session)),
            sub: sub.clone(),
            rooms: shared.rooms.index.clone(),
            io: Mutex::new(Io {
                getting: false,
                posting: false,
                upgrading: false,
                moved_to: None,
                ended: false,
                last_message: now,
                next_ping: now + PING_INTERVAL,
            }),
            _open: meter.opened(),
            meter,
        });
        sessions.insert(token, polling);
        drop(sessions);
        self.sweeping.get_or_init(|| {
            tokio::spawn(sweep(Arc::downgrade(self), connections.shutdown()));
        });
        debug!(connection = sub.id(), "{NAMESPACE} polling session opened");
        Ok(open)
    }

    /// A request of the session `sid`: a poll (`GET`) or the client's
    /// packets (`POST`).
    pub(crate) async fn request(&self, req: Request<Incoming>, sid: &str) -> Response<Body> {
        let Some(polling) = self.get(sid) else {
            return unknown_session();
        };
        match *req.method() {
            Method::GET => self.poll(&polling).await,
            Method::POST => self.post(&polling, req.into_body()).await,
            _ => bad_request(),
        }
    }

    /// Ends `polling` for `why` (the log says it): it leaves its rooms, its
    /// number is forgotten, and its next poll gets the close packet.
    fn end(&self, polling: &Polling, why: &str) {
        let session = {
            let mut io = lock(&polling.io);
            if io.ended || io.moved_to.is_some() {
                return;
            }
            io.ended = true;
            lock(&polling.session).take()
        };
        lock(&self.sessions).remove(&polling.token);
        if let Some(mut session) = session {
            session.on_close(Ending::Closed);
        }
        // A poll that waits is released.
        polling.sub.outbox().reader_gone();
        info!(
            connection = polling.sub.id(),
            "{NAMESPACE} polling session closed: {why}"
        );
    }

    /// Marks a request of `polling` under way (`flag`) until the guard
    /// returned goes; a second one while it is ends the session for
    /// `overlap` (Engine.IO takes one of each kind at a time) and gets
    /// `None`.
    fn claim<'p>(
        &self,
        polling: &'p Polling,
        flag: fn(&mut Io) -> &mut bool,
        overlap: &str,
    ) -> Option<Busy<'p>> {
        let mut io = lock(&polling.io);
        let busy = flag(&mut io);
        if *busy {
            drop(io);
            self.end(polling, overlap);
            return None;
        }
        *busy = true;
        Some(Busy(polling, flag))
    }

    /// `GET ...&sid=`: waits for what is queued, and takes all of it.
    async fn poll(&self, polling: &Polling) -> Response<Body> {
        let Some(_busy) = self.claim(
            polling,
            |io| &mut io.getting,
            "a second poll while one waits",
        ) else {
            return bad_request();
        };
        let mut batch = Batch::default();
        polling.sub.outbox().take(&mut batch).await;
        if batch.dropped {
            self.end(polling, "its queue is full (slow consumer)");
        }
        let mut packets: Vec<&[u8]> = Vec::with_capacity(batch.data.len() + 2);
        if batch.ping {
            packets.push(packet::PING);
        }
        for item in &batch.data {
            match &item.out {
                Outbound::Frame(frame) => packets.extend(payload_of(frame)),
                Outbound::Sequenced(_) => {}
            }
        }
        let messages = packets.len() as u64;
        let (ended, moved) = {
            let io = lock(&polling.io);
            (io.ended, io.moved_to.is_some())
        };
        if ended {
            packets.push(b"1");
        } else if packets.is_empty() || moved {
            // Released for the upgrade: nothing more comes here.
            packets.push(b"6");
        }
        let mut body = BytesMut::with_capacity(packets.iter().map(|p| p.len() + 1).sum());
        for (i, packet) in packets.iter().enumerate() {
            if i > 0 {
                body.extend_from_slice(&[SEPARATOR]);
            }
            body.extend_from_slice(packet);
        }
        polling.meter.wrote(messages, body.len() as u64);
        text(body.freeze())
    }

    /// `POST ...&sid=`: the client's packets, read in order.
    async fn post(&self, polling: &Polling, body: Incoming) -> Response<Body> {
        let Some(_busy) = self.claim(
            polling,
            |io| &mut io.posting,
            "a second POST while one is read",
        ) else {
            return bad_request();
        };
        let payload = match http_body_util::Limited::new(body, MAX_PAYLOAD)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    self.end(polling, "a payload over maxPayload");
                    return refusal(StatusCode::PAYLOAD_TOO_LARGE, 3, "Payload too large");
                }
                debug!(error = %e, "a polling payload not read");
                return bad_request();
            }
        };
        let now = Instant::now();
        lock(&polling.io).last_message = now;
        for message in payload.split(|b| *b == SEPARATOR) {
            let step = {
                let mut session = lock(&polling.session);
                let Some(session) = session.as_mut() else {
                    break;
                };
                session.on_message(MessageKind::Text, message, now)
            };
            if let Err((code, why)) = self.apply(polling, step).await {
                self.end(polling, &why);
                if code == close_code::NORMAL {
                    break;
                }
                return refusal(StatusCode::BAD_REQUEST, 3, &why);
            }
        }
        // A room joined with the polling queue after the session moved to a
        // WebSocket (a client that upgraded while this was read) follows it.
        if let Some(moved_to) = lock(&polling.io).moved_to.clone() {
            polling.rooms.replace(&polling.sub, moved_to);
        }
        let mut response = Response::new(Body::new(Bytes::from_static(b"ok")));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        response
    }

    /// Carries out a step of the session: queues its answers, or returns why
    /// the session is to close.
    async fn apply(&self, polling: &Polling, mut step: Step) -> Result<(), (u16, String)> {
        loop {
            let queue = |message: &Bytes| {
                let to = lock(&polling.io).moved_to.clone();
                let sub = to.as_ref().unwrap_or(&polling.sub);
                sub.offer(NO_TOPIC, Outbound::text(message));
            };
            return match step {
                Step::Later(later) => {
                    step = later.await;
                    continue;
                }
                Step::Nothing | Step::Ack(_) | Step::Frame(_) => Ok(()),
                Step::Reply(message) => {
                    queue(&message);
                    Ok(())
                }
                Step::Replies(messages) => {
                    messages.iter().for_each(queue);
                    Ok(())
                }
                Step::Close { code, reason, last } => {
                    if let Some(last) = &last {
                        queue(last);
                    }
                    Err((code, reason))
                }
            };
        }
    }
}

/// Pings the polling sessions on their schedules and ends those that are
/// gone, every [`SWEEP`], while the endpoint lives; ends them all when the
/// server shuts down.
async fn sweep(polls: Weak<Polls>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let shutting_down = tokio::select! {
            _ = tick.tick() => *shutdown.borrow(),
            changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
        };
        let Some(polls) = polls.upgrade() else {
            return;
        };
        let sessions: Vec<Arc<Polling>> = lock(&polls.sessions).values().cloned().collect();
        let now = Instant::now();
        for polling in sessions {
            if shutting_down {
                polls.end(&polling, "the server shuts down");
                continue;
            }
            if polling.sub.outbox().is_dropped() {
                polls.end(&polling, "its queue is full (slow consumer)");
                continue;
            }
            let (last_message, ping) = {
                let mut io = lock(&polling.io);
                let ping = now >= io.next_ping;
                if ping {
                    io.next_ping = now + PING_INTERVAL;
                }
                (io.last_message, ping)
            };
            let activity = Activity {
                last_frame: last_message,
                last_message,
            };
            let expired = lock(&polling.session).as_ref().and_then(|session| {
                (now >= session.deadline(&activity)).then(|| session.idle_close().1.to_owned())
            });
            if let Some(why) = expired {
                polls.end(&polling, &why);
            } else if ping {
                polling.sub.outbox().ping();
            }
        }
        if shutting_down {
            return;
        }
    }
}

/// Answers the WebSocket handshake that upgrades the polling session `sid`.
pub(crate) fn upgrade(
    polls: &Arc<Polls>,
    mut req: Request<Incoming>,
    sid: &str,
    context: &Context,
    tracker: &Tracker,
) -> Response<Body> {
    let Some(polling) = polls.get(sid) else {
        return unknown_session();
    };
    {
        let mut io = lock(&polling.io);
        if io.upgrading || io.ended {
            return bad_request();
        }
        io.upgrading = true;
    }
    let handshake = match handshake(&req) {
        Ok(h) => h,
        Err(e) => {
            lock(&polling.io).upgrading = false;
            return handshake_refusal(&e);
        }
    };
    let json = crate::session::json_transport(&req);
    let (polls, context, tracker) = (polls.clone(), context.clone(), tracker.clone());
    upgrade_with(&mut req, handshake, move |upgraded| {
        let make = move |sub| Upgrade {
            polls,
            polling: Some(polling),
            sub,
            session: None,
        };
        json_session(upgraded, &context, json, make, tracker)
    })
}

/// A WebSocket that takes a polling session over: it answers the probe,
/// and at `5` the session moves to it.
struct Upgrade {
    polls: Arc<Polls>,
    /// The polling session, until it moved here.
    polling: Option<Arc<Polling>>,
    /// The WebSocket's queue.
    sub: Subscriber,
    /// The session, once it moved here.
    session: Option<MarketSession>,
}

impl Upgrade {
    /// `5`: the session moves to this WebSocket.
    fn take_over(&mut self) -> Step {
        let Some(polling) = self.polling.take() else {
            return Step::Nothing;
        };
        let session = {
            let mut io = lock(&polling.io);
            let session = if io.ended {
                None
            } else {
                lock(&polling.session).take()
            };
            if session.is_some() {
                io.moved_to = Some(self.sub.clone());
            }
            session
        };
        let Some(mut session) = session else {
            return Step::Close {
                code: close_code::NORMAL,
                reason: "the session ended".to_owned(),
                last: None,
            };
        };
        session.move_to(self.sub.clone());
        lock(&self.polls.sessions).remove(&polling.token);
        debug!(
            connection = self.sub.id(),
            "{NAMESPACE} session upgraded from long-polling"
        );
        self.session = Some(session);
        Step::Nothing
    }
}

impl Protocol for Upgrade {
    fn heartbeat(&self) -> Option<(Duration, Bytes)> {
        Some((PING_INTERVAL, Bytes::from_static(packet::PING)))
    }

    fn on_message(&mut self, kind: MessageKind, payload: &[u8], now: Instant) -> Step {
        if let Some(session) = &mut self.session {
            return session.on_message(kind, payload, now);
        }
        match (kind, payload) {
            (MessageKind::Text, b"2probe") => {
                // A poll that waits is released, so that the client can
                // pause polling and send `5`.
                if let Some(polling) = &self.polling {
                    polling.sub.offer(NO_TOPIC, Outbound::text(b"6"));
                }
                Step::Reply(packet::pong("probe"))
            }
            (MessageKind::Text, b"5") => self.take_over(),
            _ => {
                info!(
                    connection = self.sub.id(),
                    "{NAMESPACE} upgrade closed: a packet before the upgrade's probe and `5`"
                );
                Step::Close {
                    code: close_code::UNSUPPORTED_DATA,
                    reason: "expected the upgrade's probe (2probe) and 5".to_owned(),
                    last: None,
                }
            }
        }
    }

    fn subscriptions(&self) -> Option<usize> {
        self.session.as_ref().and_then(Protocol::subscriptions)
    }

    fn deadline(&self, activity: &Activity) -> Instant {
        match &self.session {
            Some(session) => session.deadline(activity),
            None => activity.last_message + PING_INTERVAL + PING_TIMEOUT,
        }
    }

    fn idle_close(&self) -> (u16, &str) {
        match &self.session {
            Some(session) => session.idle_close(),
            None => (close_code::NORMAL, "upgrade not completed"),
        }
    }

    fn on_close(&mut self, ending: Ending) {
        if let Some(session) = &mut self.session {
            session.on_close(ending);
        } else if let Some(polling) = &self.polling {
            // The probe failed: the session goes on polling.
            lock(&polling.io).upgrading = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::{Cache, shared};

    fn sid_of(open: &[u8]) -> String {
        let handshake: serde_json::Value = serde_json::from_slice(&open[1..]).unwrap();
        handshake["sid"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn past_the_limit_a_handshake_is_refused_until_a_session_ends() {
        let cache = Arc::new(Cache::default());
        let shared = shared(&cache);
        let polls = Arc::new(Polls::new(2));
        let policy = tickwire_core::SlowConsumer::Disconnect;
        let first = polls.open_session(&shared, policy, None).unwrap();
        assert_eq!(first[0], b'0');
        let second = polls.open_session(&shared, policy, None).unwrap();
        // Ids are 128 random bits, not the connections' numbers.
        let (a, b) = (token_of(&sid_of(&first)), token_of(&sid_of(&second)));
        assert!(
            a.unwrap().abs_diff(b.unwrap()) > u128::from(u64::MAX),
            "{a:?} {b:?}"
        );
        let refused = polls.open_session(&shared, policy, None).unwrap_err();
        assert!(refused.contains("at most 2"), "{refused}");
        // One ends: it is forgotten, and there is room again.
        let sid = sid_of(&first);
        let polling = polls.get(&sid).unwrap();
        polls.end(&polling, "the test ends it");
        assert!(polls.get(&sid).is_none());
        assert!(lock(&polling.io).ended);
        polls.open_session(&shared, policy, None).unwrap();
    }

    #[test]
    fn a_sid_is_thirty_two_hex_digits() {
        assert_eq!(token_of(&format!("{:032x}", 255)), Some(255));
        assert_eq!(token_of("00000000000000ff"), None);
        assert_eq!(token_of(&"z".repeat(32)), None);
        assert_eq!(token_of(&"f".repeat(33)), None);
    }
}
