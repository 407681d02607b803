//! A pubsub connection's protocol: what its messages mean, its groups, and
//! the reliable subprotocols' sequencing.
//!
//! Invalid messages: a message that carried an `ackId` is answered with a
//! failed ack (`BadRequest`) and the session goes on; a frame of the wrong
//! kind (binary on a JSON subprotocol, text on protobuf) is closed with 1003,
//! an undecodable payload (not JSON, not protobuf) with 1007. A well-formed
//! message of an unknown type or with a bad field and no `ackId` is logged and
//! ignored, so newer clients do not lose their session over it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tickwire_core::outbox::{Batch, Outbox, SlowConsumerStats};
use tickwire_core::session::{Activity, Ending, Protocol, Step, Transport};
use tickwire_core::subscriber::QueuePolicy;
use tickwire_core::{Feed, Index, Outbound, SequencedMessage, Sequencer, Subscriber, lock};
use tickwire_index::TopicId;
use tickwire_model::{GexRecord, GroupName, Hub, RawDataType, RawGroupPayload, Update};
use tickwire_pubsub::{
    AckError, Downstream, EncodedMessage, Error as CodecError, FrameKind, MessageData, MessageFrom,
    Subprotocol, Upstream, WireFormat, encode_message,
};
use tickwire_websocket::MessageKind;
use tickwire_websocket::OpCode;
use tickwire_websocket::frame::{frame, header_len, put_header};
use tracing::{debug, info, warn};

use crate::groups::{GroupShares, Memberships};
use crate::tokens::Permissions;
use tickwire_websocket::close_code;

/// Most unacknowledged messages a reliable connection may have (the service's limit).
const MAX_UNACKED_MESSAGES: usize = 1000;
/// Most unacknowledged bytes a reliable connection may have (the service's limit).
const MAX_UNACKED_BYTES: usize = 16 << 20;

/// Successful ack ids remembered per connection for `Duplicate` answers.
const ACK_IDS_KEPT: usize = 4096;
/// Longest group name accepted.
const MAX_GROUP_LEN: usize = 256;

/// Everything a pubsub session needs to start.
#[derive(Debug)]
pub(crate) struct SessionParams {
    pub(crate) hub: Hub,
    pub(crate) protocol: Subprotocol,
    pub(crate) user_id: String,
    pub(crate) roles: Vec<String>,
}

/// The transport of a pubsub connection speaking `protocol`, from `remote`.
pub(crate) fn transport(
    protocol: Subprotocol,
    hubs: &Hubs,
    remote: Option<std::net::SocketAddr>,
) -> Transport {
    Transport {
        variant: variant(protocol),
        reply_opcode: opcode_of(protocol.format()),
        max_message_bytes: hubs.max_message_bytes,
        slow_consumer: hubs.slow_consumer,
        // A reliable connection may hold as many messages as its client
        // may leave unacknowledged.
        queue_capacity: protocol.is_reliable().then_some(MAX_UNACKED_MESSAGES),
        endpoint: "hubs",
        format: match protocol.format() {
            WireFormat::Json => "json",
            WireFormat::Protobuf => "protobuf",
        },
        peer: tickwire_core::Peer { remote },
    }
}

/// The subscriber variant of a connection speaking `protocol`: bit 0 is the
/// wire format (protobuf), bit 1 whether data messages are sequenced.
fn variant(protocol: Subprotocol) -> u8 {
    u8::from(protocol.format() == WireFormat::Protobuf) | (u8::from(protocol.is_reliable()) << 1)
}

/// The opcode of `format`'s frames: text for JSON, binary for protobuf.
fn opcode_of(format: WireFormat) -> OpCode {
    match format {
        WireFormat::Json => OpCode::Text,
        WireFormat::Protobuf => OpCode::Binary,
    }
}

/// Delivers one data message to every member of `topic` (but `except`):
/// encoded at most once per wire format present among them, framed once per
/// wire format for the members that do not sequence messages, and shared as
/// one [`SequencedMessage`] per wire format by those that do. Returns how
/// many queues took it.
pub(crate) fn publish(
    index: &Index,
    topic: TopicId,
    from: &MessageFrom,
    data: &MessageData,
    except: Option<u64>,
) -> usize {
    let mut encoded: [Option<EncodedMessage>; 2] = [None, None];
    tickwire_core::publish(index, topic, except, |variant| {
        let format = if variant & 1 == 1 {
            WireFormat::Protobuf
        } else {
            WireFormat::Json
        };
        let msg = encoded[usize::from(variant & 1)]
            .get_or_insert_with(|| encode_message(format, from, data));
        if variant & 2 == 0 {
            Outbound::Frame(frame(opcode_of(format), &msg.unsequenced()))
        } else {
            Outbound::Sequenced(Arc::new(Sequenced(msg.clone())))
        }
    })
}

/// The hubs' part of the fan-out: GEX records to their group (encoded once
/// by the pipeline: JSON → scaled protobuf → zstd, the `Any` value), and raw
/// payloads of the publish API to their group as they are. A group nobody
/// is in costs one lookup.
pub struct GexFeed {
    index: Arc<Index>,
    prefix: String,
    zstd_level: i32,
    /// A reused buffer for group names.
    name: String,
}

impl std::fmt::Debug for GexFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GexFeed")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl GexFeed {
    /// A feed that encodes GEX records into the groups of `index` named
    /// under `prefix`, compressing payloads at `zstd_level`.
    pub fn new(index: Arc<Index>, prefix: String, zstd_level: i32) -> GexFeed {
        GexFeed {
            index,
            prefix,
            zstd_level,
            name: String::with_capacity(64),
        }
    }

    fn on_raw(&mut self, raw: &RawGroupPayload) {
        let Some(topic) = self.index.lookup(&raw.group) else {
            return;
        };
        if self.index.subscriber_count(topic) == 0 {
            return;
        }
        let data = match raw.data_type {
            RawDataType::Binary => MessageData::Binary(raw.data.clone()),
            RawDataType::Text | RawDataType::Json => {
                let text = String::from_utf8_lossy(&raw.data).into_owned();
                match raw.data_type {
                    RawDataType::Json => MessageData::Json(text),
                    _ => MessageData::Text(text),
                }
            }
        };
        let from = MessageFrom::group(raw.group.to_string());
        publish(&self.index, topic, &from, &data, None);
    }

    fn on_gex(&mut self, record: &GexRecord) {
        self.name.clear();
        // Same form as `GexRecord::group`, without an allocation per record.
        let _ = write!(
            self.name,
            "{}_{}_{}_{}",
            self.prefix,
            record.ticker,
            record.hub.group_kind(),
            record.category
        );
        let Some(topic) = self.index.lookup(&self.name) else {
            return;
        };
        if self.index.subscriber_count(topic) == 0 {
            return;
        }
        let kind = record.hub.record_kind();
        let value = match tickwire_pipeline::encode_json(kind, &record.json, self.zstd_level) {
            Ok(value) => value,
            Err(e) => {
                warn!(group = %self.name, error = %e, "bad record; skipping");
                return;
            }
        };
        let data = MessageData::Protobuf {
            type_url: kind.type_url().to_owned(),
            value,
        };
        let from = MessageFrom::group(self.name.clone());
        publish(&self.index, topic, &from, &data, None);
    }
}

impl Feed<Update> for GexFeed {
    fn on_update(&mut self, update: &Update) {
        match update {
            Update::Gex(record) => self.on_gex(record),
            Update::Raw(raw) => self.on_raw(raw),
            _ => {}
        }
    }
}

/// A data message of a reliable subprotocol, stamped with its `sequenceId`
/// when written.
#[derive(Debug)]
struct Sequenced(EncodedMessage);

impl SequencedMessage for Sequenced {
    fn write_frame(&self, sequence_id: u64, buf: &mut BytesMut) -> usize {
        let len = self.0.encoded_len(Some(sequence_id));
        buf.reserve(header_len(len) + len);
        put_header(buf, opcode_of(self.0.format()), len);
        self.0.write_to(Some(sequence_id), buf);
        header_len(len) + len
    }
}

/// The sequencing of a reliable session: gap-free ids from 1, and the
/// written messages kept until the client's `sequenceAck` (at most
/// [`MAX_UNACKED_MESSAGES`] and [`MAX_UNACKED_BYTES`]; beyond, close 1008).
///
/// Shared by the connection's writer (through [`Reliable`]) and the
/// session, so that it outlives a transport that vanished: while the
/// session is parked, what its groups publish is numbered and kept here as
/// if written, and a resumed connection writes every kept message again.
#[derive(Debug)]
pub(crate) struct Sequencing {
    next_sequence_id: u64,
    unacked: Unacked,
    /// Write every unacknowledged message before anything new (resumed).
    replay: bool,
    /// A resumption took the session: its parking task stops.
    resumed: bool,
    /// The limits were passed: the session cannot be resumed.
    overflowed: bool,
    /// Frames of messages numbered while parked (their size is counted).
    scratch: BytesMut,
}

impl Default for Sequencing {
    fn default() -> Self {
        Sequencing {
            next_sequence_id: 1,
            unacked: Unacked::default(),
            replay: false,
            resumed: false,
            overflowed: false,
            scratch: BytesMut::new(),
        }
    }
}

impl Sequencing {
    /// Numbers `msg`, writes its frame into `buf` and keeps it; false when
    /// that passes the limits.
    fn write(&mut self, msg: &Arc<dyn SequencedMessage>, buf: &mut BytesMut) -> bool {
        let seq = self.next_sequence_id;
        self.next_sequence_id += 1;
        let len = msg.write_frame(seq, buf);
        if !self.unacked.push(seq, len, msg.clone()) {
            self.overflowed = true;
        }
        !self.overflowed
    }

    /// Numbers and keeps `msg` without a socket to write it to (the session
    /// is parked, or its writer failed); false when that passes the limits.
    fn keep(&mut self, msg: &Arc<dyn SequencedMessage>) -> bool {
        let mut scratch = std::mem::take(&mut self.scratch);
        let kept = self.write(msg, &mut scratch);
        scratch.clear();
        self.scratch = scratch;
        kept
    }

    /// Keeps every sequenced message of `batch` (see [`keep`](Self::keep)).
    fn keep_all(&mut self, batch: &mut Batch) -> bool {
        batch.ctrl.clear();
        let mut kept = true;
        for item in batch.data.drain(..) {
            if let Outbound::Sequenced(msg) = item.out {
                kept = kept && self.keep(&msg);
            }
        }
        kept
    }
}

/// The writer's handle on a reliable session's [`Sequencing`].
#[derive(Debug)]
struct Reliable(Arc<Mutex<Sequencing>>);

impl Sequencer for Reliable {
    fn write(&mut self, msg: &Arc<dyn SequencedMessage>, buf: &mut BytesMut) -> Result<(), String> {
        let mut seq = lock(&self.0);
        if seq.write(msg, buf) {
            return Ok(());
        }
        warn!(
            messages = seq.unacked.messages.len(),
            bytes = seq.unacked.bytes,
            "too many unacknowledged messages"
        );
        Err("too many unacknowledged messages".to_owned())
    }

    fn ack(&mut self, sequence_id: u64) {
        lock(&self.0).unacked.ack(sequence_id);
    }

    fn resume(&mut self, buf: &mut BytesMut) -> Result<(), String> {
        let mut seq = lock(&self.0);
        if seq.overflowed {
            return Err("too many unacknowledged messages".to_owned());
        }
        if std::mem::take(&mut seq.replay) {
            for (id, _, msg) in &seq.unacked.messages {
                msg.write_frame(*id, buf);
            }
        }
        Ok(())
    }
}

/// The unacknowledged messages of a reliable connection, oldest first.
#[derive(Debug, Default)]
struct Unacked {
    messages: VecDeque<(u64, usize, Arc<dyn SequencedMessage>)>,
    bytes: usize,
}

impl Unacked {
    /// Keeps a written message; false when the buffer is over its limits.
    fn push(&mut self, seq: u64, len: usize, msg: Arc<dyn SequencedMessage>) -> bool {
        self.messages.push_back((seq, len, msg));
        self.bytes += len;
        self.messages.len() <= MAX_UNACKED_MESSAGES && self.bytes <= MAX_UNACKED_BYTES
    }

    /// Forgets every message up to and including `seq` (acks are cumulative).
    fn ack(&mut self, seq: u64) {
        while let Some(&(s, len, _)) = self.messages.front() {
            if s > seq {
                break;
            }
            self.bytes -= len;
            self.messages.pop_front();
        }
    }
}

/// What the hubs' connections share: the group index and the limits and
/// names of the configuration. Nothing else of the gateway, so that a
/// session can be driven by a test alone.
#[derive(Debug)]
pub struct Hubs {
    /// The groups and their members.
    pub index: Arc<Index>,
    /// The group prefix (`blue`).
    pub prefix: String,
    /// Most distinct groups of the gateway.
    pub max_groups: usize,
    /// Most groups one connection may be in.
    pub max_groups_per_connection: usize,
    /// No frame from the client for this long closes the connection.
    pub pong_timeout: std::time::Duration,
    /// Largest message a client may send; larger ones close with 1009.
    pub max_message_bytes: usize,
    /// What happens to a client whose queue is full.
    pub slow_consumer: tickwire_core::SlowConsumer,
    /// How long a reliable session outlives a transport that vanished
    /// (zero: not at all).
    pub recovery_window: Duration,
    /// The sessions waiting for their client to come back.
    pub parked: ParkedSessions,
    /// How many groups each key's connections hold.
    pub shares: Arc<GroupShares>,
}

/// Reliable sessions whose transport vanished, by connection id, each
/// until its client resumes it or its recovery window ends.
#[derive(Debug)]
pub struct ParkedSessions {
    sessions: Mutex<HashMap<String, Parked>>,
    /// What became of reliable sessions whose connection vanished.
    outcomes: Outcomes,
    /// Most sessions one key (a token's user) may have parked at once.
    max_per_key: usize,
    /// The reliable sessions connected now: their token and connection.
    live: Mutex<HashMap<String, (String, Subscriber)>>,
    /// Signalled whenever a session is parked.
    parked: tokio::sync::Notify,
    /// Ids of the stand-in subscribers (from the top of the id space, apart
    /// from the connections').
    next_id: AtomicU64,
}

impl Default for ParkedSessions {
    /// At most [`DEFAULT_MAX_PARKED_PER_KEY`] parked sessions per key.
    fn default() -> Self {
        ParkedSessions::with_limit(DEFAULT_MAX_PARKED_PER_KEY)
    }
}

/// What became of reliable sessions whose connection vanished, since the
/// start (in `/healthz`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryCounts {
    /// Sessions kept for their client to come back.
    pub parked: u64,
    /// Sessions a client came back to and resumed.
    pub resumed: u64,
    /// Kept sessions that ended unresumed: the window ended, or more than
    /// 1000 messages / 16 MB waited.
    pub ended: u64,
    /// Sessions not kept at all: their key had `max_parked_per_key`
    /// waiting, or a message was already lost when the connection vanished.
    pub not_kept: u64,
    /// Recovery attempts refused with 1008 (no such session, a wrong token,
    /// hub or subprotocol, or too late).
    pub refused: u64,
}

#[derive(Debug, Default)]
struct Outcomes {
    parked: AtomicU64,
    resumed: AtomicU64,
    ended: AtomicU64,
    not_kept: AtomicU64,
    refused: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The default of [`ParkedSessions::with_limit`].
pub const DEFAULT_MAX_PARKED_PER_KEY: usize = 100;

impl ParkedSessions {
    /// No session parked yet; at most `max_per_key` of one key at once (each
    /// holds up to 1000 messages and 16 MB while it waits).
    pub fn with_limit(max_per_key: usize) -> ParkedSessions {
        ParkedSessions {
            sessions: Mutex::new(HashMap::new()),
            outcomes: Outcomes::default(),
            max_per_key,
            live: Mutex::new(HashMap::new()),
            parked: tokio::sync::Notify::new(),
            next_id: AtomicU64::new(0),
        }
    }

    /// What became of reliable sessions whose connection vanished.
    pub fn outcomes(&self) -> RecoveryCounts {
        let o = &self.outcomes;
        RecoveryCounts {
            parked: o.parked.load(Ordering::Relaxed),
            resumed: o.resumed.load(Ordering::Relaxed),
            ended: o.ended.load(Ordering::Relaxed),
            not_kept: o.not_kept.load(Ordering::Relaxed),
            refused: o.refused.load(Ordering::Relaxed),
        }
    }

    /// Counts a recovery attempt refused.
    pub(crate) fn refused(&self) {
        count(&self.outcomes.refused);
    }

    /// How many sessions of `user` wait now.
    pub fn held_by(&self, user: &str) -> usize {
        lock(&self.sessions)
            .values()
            .filter(|p| p.user_id == user)
            .count()
    }

    /// How many sessions wait now.
    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Whether no session waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn stand_in_id(&self) -> u64 {
        u64::MAX - self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn connected(&self, connection_id: &str, token: &str, sub: &Subscriber) {
        lock(&self.live).insert(connection_id.to_owned(), (token.to_owned(), sub.clone()));
    }

    fn disconnected(&self, connection_id: &str, sub: &Subscriber) {
        let mut live = lock(&self.live);
        if live.get(connection_id).is_some_and(|(_, s)| s == sub) {
            live.remove(connection_id);
        }
    }
}

/// A parked session: what its connection had, and the stand-in that holds
/// its place in its groups meanwhile.
#[derive(Debug)]
struct Parked {
    connection_id: String,
    token: String,
    hub: Hub,
    protocol: Subprotocol,
    user_id: String,
    permissions: Permissions,
    acked: BTreeSet<u64>,
    groups: Memberships,
    /// In the session's groups instead of the vanished connection: its
    /// queue is drained into `sequencing` by the parking task.
    stand_in: Subscriber,
    sequencing: Arc<Mutex<Sequencing>>,
    task: tokio::task::JoinHandle<()>,
}

/// A parked session taken by a client that came back with its id and
/// token, on its way to the new connection ([`Session::resume`]). Dropped
/// unused (the upgrade failed), it ends the session.
#[derive(Debug)]
pub(crate) struct Resumption {
    hubs: Arc<Hubs>,
    /// Boxed: a connection's task holds a resumption until it starts.
    parked: Option<Box<Parked>>,
}

impl Drop for Resumption {
    fn drop(&mut self) {
        if let Some(parked) = self.parked.take() {
            info!(connection_id = %parked.connection_id, "reliable session ended: its resumption was not used");
            count(&self.hubs.parked.outcomes.ended);
            self.hubs.index.unsubscribe_all(&parked.stand_in);
            parked.task.abort();
        }
    }
}

impl Hubs {
    /// Takes the parked session `connection_id` for a client that presents
    /// `token` on `hub` with `protocol`: `None` when there is no such
    /// session (never parked, expired, overflowed) or the token, hub or
    /// subprotocol differs. A refused attempt leaves the session parked.
    pub(crate) fn resume(
        self: &Arc<Self>,
        connection_id: &str,
        token: &str,
        hub: Hub,
        protocol: Subprotocol,
    ) -> Option<Resumption> {
        let mut sessions = lock(&self.parked.sessions);
        let parked = sessions.get(connection_id)?;
        if !same_secret(parked.token.as_bytes(), token.as_bytes())
            || parked.hub != hub
            || parked.protocol != protocol
        {
            debug!(
                connection_id,
                "recovery refused: token, hub or subprotocol differs"
            );
            return None;
        }
        let parked = sessions.remove(connection_id)?;
        drop(sessions);
        let mut sequencing = lock(&parked.sequencing);
        if sequencing.overflowed {
            drop(sequencing);
            count(&self.parked.outcomes.ended);
            self.index.unsubscribe_all(&parked.stand_in);
            return None;
        }
        // The parking task stops at its next wake-up; what arrives until
        // the new connection takes its place stays in the stand-in's queue.
        sequencing.resumed = true;
        drop(sequencing);
        Some(Resumption {
            hubs: self.clone(),
            parked: Some(Box::new(parked)),
        })
    }

    /// [`resume`](Self::resume), for a client that may come back before
    /// its old connection ended here: when the session is still connected
    /// and the token is its own, the old transport is abandoned (its client
    /// is evidently gone) and the session taken once parked, waiting a few
    /// seconds at most.
    pub(crate) async fn recover(
        self: &Arc<Self>,
        connection_id: &str,
        token: &str,
        hub: Hub,
        protocol: Subprotocol,
    ) -> Option<Resumption> {
        const PATIENCE: Duration = Duration::from_secs(5);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let parked = self.parked.parked.notified();
            tokio::pin!(parked);
            parked.as_mut().enable();
            if let Some(resumption) = self.resume(connection_id, token, hub, protocol) {
                return Some(resumption);
            }
            let old = lock(&self.parked.live)
                .get(connection_id)
                .filter(|(own, _)| same_secret(own.as_bytes(), token.as_bytes()))
                .map(|(_, sub)| sub.clone())?;
            debug!(
                connection_id,
                "client came back on a new connection; ending the old one"
            );
            old.outbox().abandon();
            tokio::time::timeout_at(deadline, parked).await.ok()?;
        }
    }

    /// Ends the parked session `connection_id` if it still waits.
    fn forget(&self, connection_id: &str, why: &str) {
        let parked = lock(&self.parked.sessions).remove(connection_id);
        if let Some(parked) = parked {
            count(&self.parked.outcomes.ended);
            self.index.unsubscribe_all(&parked.stand_in);
            info!(connection_id, why, "reliable session ended");
        }
    }
}

/// Compares two secrets in time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Drains a parked session's stand-in into its sequencing until the
/// session is resumed, passes its limits, or its window ends.
async fn parking(
    hubs: Arc<Hubs>,
    connection_id: String,
    stand_in: Subscriber,
    sequencing: Arc<Mutex<Sequencing>>,
    window: Duration,
) {
    let mut batch = Batch::default();
    // Taken and numbered under the sequencing lock in one step, so that a
    // resumption sees every message either kept or still queued.
    let drained = std::future::poll_fn(|cx| {
        loop {
            let mut seq = lock(&sequencing);
            if seq.resumed {
                return Poll::Ready("resumed");
            }
            match stand_in.outbox().poll_take(cx, &mut batch) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if batch.dropped => {
                    seq.overflowed = true;
                    return Poll::Ready("its queue overflowed while parked");
                }
                Poll::Ready(()) => {
                    if !seq.keep_all(&mut batch) {
                        return Poll::Ready("too many unacknowledged messages while parked");
                    }
                    Outbox::recycle(&mut batch);
                }
            }
        }
    });
    let why = tokio::select! {
        why = drained => why,
        () = tokio::time::sleep(window) => "its recovery window ended",
    };
    if why != "resumed" {
        hubs.forget(&connection_id, why);
    }
}

/// The protocol state of one connection.
pub(crate) struct Session {
    hubs: Arc<Hubs>,
    sub: Subscriber,
    hub: Hub,
    protocol: Subprotocol,
    /// Boxed strings, not `String`s: a session is kept per connection.
    connection_id: Box<str>,
    permissions: Permissions,
    /// Ack ids that succeeded, for `Duplicate` answers; the oldest (smallest)
    /// are forgotten beyond [`ACK_IDS_KEPT`].
    /// Boxed when the first ack id comes: most connections never send one,
    /// and every connection keeps its session.
    // The box is the point: 8 bytes in the session instead of 24.
    #[allow(clippy::box_collection)]
    acked: Option<Box<BTreeSet<u64>>>,
    /// The session's groups, counted under its user id, which they keep
    /// ([`Session::user_id`]).
    groups: Memberships,
    /// A reliable session's sequencing and reconnection token.
    /// Boxed: absent on the plain subprotocols.
    reliable: Option<Box<(Arc<Mutex<Sequencing>>, String)>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("connection_id", &self.connection_id)
            .field("hub", &self.hub)
            .field("protocol", &self.protocol)
            .field("user_id", &self.user_id())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The user the session was opened for.
    fn user_id(&self) -> &str {
        self.groups.key()
    }

    pub(crate) fn new(hubs: Arc<Hubs>, sub: Subscriber, params: SessionParams) -> Session {
        let user_id: Arc<str> = params.user_id.into();
        let reliable = params.protocol.is_reliable().then(|| {
            Box::new((
                Arc::new(Mutex::new(Sequencing::default())),
                uuid::Uuid::new_v4().simple().to_string(),
            ))
        });
        let connection_id: Box<str> = uuid::Uuid::new_v4().simple().to_string().into();
        if let Some((_, token)) = reliable.as_deref() {
            hubs.parked.connected(&connection_id, token, &sub);
        }
        Session {
            groups: Memberships::new(hubs.shares.clone(), user_id),
            hubs,
            sub,
            hub: params.hub,
            protocol: params.protocol,
            permissions: Permissions::from_roles(&params.roles),
            connection_id,
            acked: None,
            reliable,
        }
    }

    /// The parked session of `resumption` on a new connection, `sub`: `sub`
    /// takes the stand-in's place in every group, what the stand-in still
    /// held is numbered after what was kept, and the connection's writer
    /// writes every unacknowledged message again before anything new.
    pub(crate) fn resume(hubs: Arc<Hubs>, sub: Subscriber, mut resumption: Resumption) -> Session {
        let parked = resumption.parked.take().expect("a resumption is used once");
        parked.task.abort();
        count(&hubs.parked.outcomes.resumed);
        {
            let mut seq = lock(&parked.sequencing);
            hubs.index.replace(&parked.stand_in, sub.clone());
            let mut batch = Batch::default();
            parked.stand_in.outbox().take_now(&mut batch);
            if parked.stand_in.outbox().is_dropped() || !seq.keep_all(&mut batch) {
                seq.overflowed = true;
            }
            seq.replay = true;
            info!(
                connection = sub.id(),
                connection_id = %parked.connection_id,
                unacked = seq.unacked.messages.len(),
                next_sequence_id = seq.next_sequence_id,
                "reliable session resumed"
            );
        }
        hubs.parked
            .connected(&parked.connection_id, &parked.token, &sub);
        Session {
            hubs,
            connection_id: parked.connection_id.into(),
            sub,
            hub: parked.hub,
            protocol: parked.protocol,
            permissions: parked.permissions,
            acked: if parked.acked.is_empty() {
                None
            } else {
                Some(Box::new(parked.acked))
            },
            groups: parked.groups,
            reliable: Some(Box::new((parked.sequencing, parked.token))),
        }
    }

    /// Keeps the session of a reliable connection whose transport vanished
    /// for [`Hubs::recovery_window`]: a stand-in takes the connection's place
    /// in its groups, and what the writer could not write is numbered and
    /// kept. Returns false when it cannot be kept (recovery off, nothing
    /// reliable, a message already lost).
    fn park(&mut self) -> bool {
        let window = self.hubs.recovery_window;
        let Some((sequencing, token)) = self.reliable.as_deref().cloned() else {
            return false;
        };
        if window.is_zero() {
            return false;
        }
        if self.sub.outbox().is_dropped() {
            count(&self.hubs.parked.outcomes.not_kept);
            return false;
        }
        let max = self.hubs.parked.max_per_key;
        if self.hubs.parked.held_by(self.user_id()) >= max {
            count(&self.hubs.parked.outcomes.not_kept);
            info!(
                connection_id = %self.connection_id,
                user = %self.user_id(),
                max_parked_per_key = max,
                "reliable session ended: its key has as many sessions waiting for recovery as it may"
            );
            return false;
        }
        let stand_in = Subscriber::new(
            self.hubs.parked.stand_in_id(),
            self.sub.variant(),
            QueuePolicy {
                capacity: MAX_UNACKED_MESSAGES,
                slow_consumer: tickwire_core::SlowConsumer::Disconnect,
                pacer: None,
            },
            Arc::new(SlowConsumerStats::default()),
        );
        {
            let mut seq = lock(&sequencing);
            // A session resumed before may vanish again.
            seq.resumed = false;
            self.hubs.index.replace(&self.sub, stand_in.clone());
            let mut batch = Batch::default();
            self.sub.outbox().take_now(&mut batch);
            if !seq.keep_all(&mut batch) {
                drop(seq);
                self.hubs.index.unsubscribe_all(&stand_in);
                count(&self.hubs.parked.outcomes.not_kept);
                info!(connection_id = %self.connection_id, "reliable session ended: too many unacknowledged messages");
                return true;
            }
        }
        let task = tokio::spawn(parking(
            self.hubs.clone(),
            self.connection_id.to_string(),
            stand_in.clone(),
            sequencing.clone(),
            window,
        ));
        let parked = Parked {
            connection_id: self.connection_id.to_string(),
            token,
            hub: self.hub,
            protocol: self.protocol,
            user_id: self.user_id().to_string(),
            permissions: std::mem::take(&mut self.permissions),
            acked: self.acked.take().map(|acked| *acked).unwrap_or_default(),
            groups: self.groups.take(),
            stand_in,
            sequencing,
            task,
        };
        debug!(connection_id = %self.connection_id, window_secs = window.as_secs(), "transport vanished; session kept for recovery");
        lock(&self.hubs.parked.sessions).insert(self.connection_id.to_string(), parked);
        count(&self.hubs.parked.outcomes.parked);
        self.hubs.parked.parked.notify_waiters();
        true
    }

    /// The `connected` system message.
    fn connected(&self) -> Bytes {
        self.encode(&Downstream::Connected {
            connection_id: self.connection_id.to_string(),
            user_id: self.user_id().to_string(),
            reconnection_token: self.reliable.as_deref().map(|(_, token)| token.clone()),
        })
    }

    fn encode(&self, msg: &Downstream) -> Bytes {
        let mut buf = BytesMut::new();
        tickwire_pubsub::encode_downstream(self.protocol.format(), msg, &mut buf);
        buf.freeze()
    }

    /// Handles one complete client message.
    fn handle(&mut self, kind: FrameKind, payload: &[u8]) -> Step {
        let upstream = match tickwire_pubsub::decode_upstream(self.protocol.format(), kind, payload)
        {
            Ok(upstream) => upstream,
            Err(e) => return self.on_invalid(&e),
        };
        if let Some(ack_id) = upstream.ack_id() {
            if self
                .acked
                .as_ref()
                .is_some_and(|acked| acked.contains(&ack_id))
            {
                return self.reply(&Downstream::ack_err(ack_id, AckError::duplicate(ack_id)));
            }
        }
        match upstream {
            Upstream::JoinGroup { group, ack_id } => {
                let result = self.join(&group);
                self.finish(ack_id, result)
            }
            Upstream::LeaveGroup { group, ack_id } => {
                if let Some(topic) = self.hubs.index.lookup(&group) {
                    self.hubs.index.unsubscribe(&group, &self.sub);
                    self.groups.remove(topic);
                }
                self.finish(ack_id, Ok(()))
            }
            Upstream::SendToGroup {
                group,
                ack_id,
                no_echo,
                data,
            } => {
                let result = self.send_to_group(group, no_echo, &data);
                self.finish(ack_id, result)
            }
            Upstream::Event {
                event,
                ack_id,
                data,
            } => {
                let result = if self.permissions.can_send_events() {
                    debug!(connection = self.sub.id(), event, data = ?data, "event (no handler)");
                    Ok(())
                } else {
                    Err(AckError::forbidden(
                        "sending events requires the role webpubsub.event",
                    ))
                };
                self.finish(ack_id, result)
            }
            Upstream::SequenceAck { sequence_id } => {
                if self.protocol.is_reliable() {
                    Step::Ack(sequence_id)
                } else {
                    debug!(
                        connection = self.sub.id(),
                        "sequenceAck on a non-reliable subprotocol; ignored"
                    );
                    Step::Nothing
                }
            }
            Upstream::Ping => self.reply(&Downstream::Pong),
        }
    }

    fn on_invalid(&self, e: &CodecError) -> Step {
        warn!(connection = self.sub.id(), error = %e, "invalid client message");
        if let Some(ack_id) = e.ack_id() {
            return self.reply(&Downstream::ack_err(
                ack_id,
                AckError::bad_request(e.to_string()),
            ));
        }
        match e {
            CodecError::WrongFrameKind { .. } => Step::Close {
                code: close_code::UNSUPPORTED_DATA,
                reason: e.to_string(),
                last: None,
            },
            CodecError::InvalidJson { .. } | CodecError::Protobuf { .. } => Step::Close {
                code: close_code::INVALID_PAYLOAD,
                reason: e.to_string(),
                last: None,
            },
            _ => Step::Nothing,
        }
    }

    fn join(&mut self, group: &str) -> Result<(), AckError> {
        let prefix = &self.hubs.prefix;
        self.check_group(group)?;
        if !self.permissions.can_join(group) {
            return Err(AckError::forbidden(format!(
                "joining {group} requires the role webpubsub.joinLeaveGroup or webpubsub.joinLeaveGroup.{group}"
            )));
        }
        let index = &self.hubs.index;
        let known = index.lookup(group);
        if known.is_some_and(|t| self.groups.contains(t)) {
            return Ok(());
        }
        if self.groups.len() >= self.hubs.max_groups_per_connection {
            return Err(AckError::bad_request(format!(
                "a connection may be in at most {} groups",
                self.hubs.max_groups_per_connection
            )));
        }
        if known.is_none() && index.topic_count() >= self.hubs.max_groups {
            warn!(
                max_groups = self.hubs.max_groups,
                "group table full; join refused"
            );
            return Err(AckError::internal("the server cannot track more groups"));
        }
        debug!(connection = self.sub.id(), group, prefix, "join");
        let subscribed = index.subscribe(group, self.sub.clone());
        if !self.groups.insert(subscribed.topic) {
            index.unsubscribe(group, &self.sub);
            let max = self.hubs.shares.max_per_key();
            warn!(
                connection = self.sub.id(),
                user = %self.user_id(),
                max_groups_per_key = max,
                "key's share of groups used up; join refused"
            );
            return Err(AckError::forbidden(format!(
                "the connections of one key may be in at most {max} distinct groups"
            )));
        }
        Ok(())
    }

    fn send_to_group(
        &mut self,
        group: String,
        no_echo: bool,
        data: &tickwire_pubsub::MessageData,
    ) -> Result<(), AckError> {
        if !self.permissions.can_send(&group) {
            return Err(AckError::forbidden(format!(
                "sending to {group} requires the role webpubsub.sendToGroup or webpubsub.sendToGroup.{group}"
            )));
        }
        self.check_group(&group)?;
        if let Some(topic) = self.hubs.index.lookup(&group) {
            let from = MessageFrom::Group {
                group,
                from_user_id: Some(self.user_id().to_string()),
            };
            let except = no_echo.then(|| self.sub.id());
            publish(&self.hubs.index, topic, &from, data, except);
        }
        Ok(())
    }

    /// A group must be one of this hub's (seed 000 group naming).
    fn check_group(&self, group: &str) -> Result<(), AckError> {
        let prefix = &self.hubs.prefix;
        if group.len() > MAX_GROUP_LEN {
            return Err(AckError::bad_request(format!(
                "group names are at most {MAX_GROUP_LEN} bytes long"
            )));
        }
        if GroupName::parse(prefix, self.hub, group).is_none() {
            return Err(AckError::bad_request(format!(
                "{group:?} is not a group of hub {hub}: groups are {prefix}_{{TICKER}}_{kind}_{{category}} with category one of {categories}",
                hub = self.hub,
                kind = self.hub.group_kind(),
                categories = self.hub.categories().join(", "),
            )));
        }
        Ok(())
    }

    /// Answers a message that carried `ack_id` (if any) with `result`.
    fn finish(&mut self, ack_id: Option<u64>, result: Result<(), AckError>) -> Step {
        let Some(ack_id) = ack_id else {
            return Step::Nothing;
        };
        match result {
            Ok(()) => {
                let acked = self.acked.get_or_insert_default();
                acked.insert(ack_id);
                if acked.len() > ACK_IDS_KEPT {
                    acked.pop_first();
                }
                self.reply(&Downstream::ack_ok(ack_id))
            }
            Err(error) => self.reply(&Downstream::ack_err(ack_id, error)),
        }
    }

    fn reply(&self, msg: &Downstream) -> Step {
        Step::Reply(self.encode(msg))
    }
}

impl Protocol for Session {
    fn subscriptions(&self) -> Option<usize> {
        Some(self.groups.len())
    }

    fn opening(&mut self) -> Option<Bytes> {
        self.sub.set_principal(self.user_id());
        debug!(
            connection = self.sub.id(),
            connection_id = %self.connection_id,
            hub = %self.hub,
            protocol = %self.protocol,
            user = %self.user_id(),
            "connected"
        );
        Some(self.connected())
    }

    fn goodbye(&self) -> Option<Bytes> {
        Some(self.encode(&Downstream::Disconnected {
            reason: "the server is shutting down".to_owned(),
        }))
    }

    fn sequencer(&mut self) -> Option<Box<dyn Sequencer>> {
        self.reliable
            .as_deref()
            .map(|(sequencing, _)| Box::new(Reliable(sequencing.clone())) as Box<dyn Sequencer>)
    }

    fn on_message(&mut self, kind: MessageKind, payload: &[u8], _now: Instant) -> Step {
        let kind = match kind {
            MessageKind::Text => FrameKind::Text,
            MessageKind::Binary => FrameKind::Binary,
        };
        self.handle(kind, payload)
    }

    /// Seed 000 keepalive: any frame, pongs included, keeps the connection.
    fn deadline(&self, activity: &Activity) -> Instant {
        activity.last_frame + self.hubs.pong_timeout
    }

    fn idle_close(&self) -> (u16, &'static str) {
        (close_code::POLICY, "keepalive timeout")
    }

    fn on_close(&mut self, ending: Ending) {
        // Parked before it leaves the live connections: a recovery attempt
        // (the SDKs come back at once after a reset) finds the session in
        // one or the other, and waits for the park if it finds it live.
        // Found in neither, it would be refused with 1008 and the SDK would
        // give the session up.
        let parked = ending == Ending::Vanished && self.park();
        self.hubs
            .parked
            .disconnected(&self.connection_id, &self.sub);
        if !parked {
            self.hubs.index.unsubscribe_all(&self.sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::ROLE_JOIN_LEAVE;
    use tickwire_core::testing::{self, subscriber};

    const GROUP: &str = "blue_SPX_state_gex_zero";

    /// The hubs' state and one session of `protocol` on the `state_gex`
    /// hub with `roles`; no socket, no gateway.
    fn session(
        protocol: Subprotocol,
        roles: &[&str],
        per_connection: usize,
    ) -> (Arc<Hubs>, Session) {
        let hubs = hubs(100, per_connection, 3);
        let sub = subscriber(1, variant(protocol));
        let params = SessionParams {
            hub: Hub::StateGex,
            protocol,
            user_id: "alice".to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        };
        (hubs.clone(), Session::new(hubs, sub, params))
    }

    /// The hubs' state with these limits.
    fn hubs(max_groups: usize, per_connection: usize, per_key: usize) -> Arc<Hubs> {
        Arc::new(Hubs {
            index: Arc::new(Index::new()),
            prefix: "blue".to_owned(),
            max_groups,
            max_groups_per_connection: per_connection,
            pong_timeout: std::time::Duration::from_secs(60),
            max_message_bytes: 512 * 1024,
            slow_consumer: tickwire_core::SlowConsumer::Disconnect,
            recovery_window: Duration::from_secs(30),
            parked: ParkedSessions::default(),
            shares: Arc::new(GroupShares::new(per_key)),
        })
    }

    fn json_reply(step: Step) -> serde_json::Value {
        match step {
            Step::Reply(bytes) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn send(session: &mut Session, text: &str) -> Step {
        session.on_message(MessageKind::Text, text.as_bytes(), Instant::now())
    }

    fn members(hubs: &Hubs, group: &str) -> usize {
        testing::members(&hubs.index, group)
    }

    const JSON: Subprotocol = Subprotocol::Json;
    const JSON_RELIABLE: Subprotocol = Subprotocol::JsonReliable;

    #[test]
    fn the_opening_is_connected_with_a_reconnection_token_only_when_reliable() {
        let (_hubs, mut plain) = session(JSON, &[], 10);
        let connected: serde_json::Value =
            serde_json::from_slice(&plain.opening().unwrap()).unwrap();
        assert_eq!(connected["event"], "connected", "{connected}");
        assert_eq!(connected["userId"], "alice");
        assert!(connected.get("reconnectionToken").is_none(), "{connected}");
        assert!(plain.sequencer().is_none());
        let (_hubs, mut reliable) = session(JSON_RELIABLE, &[], 10);
        let connected: serde_json::Value =
            serde_json::from_slice(&reliable.opening().unwrap()).unwrap();
        assert!(connected["reconnectionToken"].is_string(), "{connected}");
        assert!(reliable.sequencer().is_some());
    }

    #[test]
    fn join_needs_the_role_and_a_group_of_the_hub_and_acks() {
        let (hubs, mut denied) = session(JSON, &[], 10);
        let ack = json_reply(send(
            &mut denied,
            &format!(r#"{{"type":"joinGroup","group":"{GROUP}","ackId":1}}"#),
        ));
        assert_eq!(
            (ack["success"].as_bool(), &ack["error"]["name"]),
            (Some(false), &serde_json::json!("Forbidden")),
            "{ack}"
        );
        assert_eq!(members(&hubs, GROUP), 0);

        let (hubs, mut alice) = session(JSON, &["webpubsub.joinLeaveGroup"], 10);
        let join = format!(r#"{{"type":"joinGroup","group":"{GROUP}","ackId":1}}"#);
        let ack = json_reply(send(&mut alice, &join));
        assert_eq!(ack["success"], true, "{ack}");
        assert_eq!(members(&hubs, GROUP), 1);
        // The same ack id again: Duplicate.
        let ack = json_reply(send(&mut alice, &join));
        assert_eq!(ack["error"]["name"], "Duplicate", "{ack}");
        // A group of another hub.
        let other = r#"{"type":"joinGroup","group":"blue_SPX_classic_gex_zero","ackId":2}"#;
        let ack = json_reply(send(&mut alice, other));
        assert_eq!(ack["error"]["name"], "BadRequest", "{ack}");
        let leave = format!(r#"{{"type":"leaveGroup","group":"{GROUP}","ackId":3}}"#);
        assert_eq!(json_reply(send(&mut alice, &leave))["success"], true);
        assert_eq!(members(&hubs, GROUP), 0);
    }

    #[test]
    fn a_connection_is_in_at_most_its_limit_of_groups_and_leaves_all_on_close() {
        let (hubs, mut alice) = session(JSON, &["webpubsub.joinLeaveGroup"], 1);
        let ack = json_reply(send(
            &mut alice,
            &format!(r#"{{"type":"joinGroup","group":"{GROUP}","ackId":1}}"#),
        ));
        assert_eq!(ack["success"], true);
        let second = r#"{"type":"joinGroup","group":"blue_NDX_state_gex_zero","ackId":2}"#;
        let ack = json_reply(send(&mut alice, second));
        assert_eq!(ack["error"]["name"], "BadRequest", "{ack}");
        alice.on_close(tickwire_core::Ending::Closed);
        assert_eq!(members(&hubs, GROUP), 0);
    }

    /// Another session of the same hubs, for `user`.
    fn another(hubs: &Arc<Hubs>, id: u64, user: &str) -> Session {
        let params = SessionParams {
            hub: Hub::StateGex,
            protocol: JSON,
            user_id: user.to_owned(),
            roles: vec![ROLE_JOIN_LEAVE.to_owned()],
        };
        Session::new(hubs.clone(), subscriber(id, variant(JSON)), params)
    }

    fn join(session: &mut Session, ticker: &str, ack_id: u64) -> serde_json::Value {
        let join = format!(
            r#"{{"type":"joinGroup","group":"blue_{ticker}_state_gex_zero","ackId":{ack_id}}}"#
        );
        json_reply(send(session, &join))
    }

    #[test]
    fn a_key_takes_its_share_of_groups_and_the_others_are_still_served() {
        // Shares of 3 groups per key, a table of 100 groups.
        let (hubs, mut one) = session(JSON, &[ROLE_JOIN_LEAVE], 10);
        let mut two = another(&hubs, 2, "alice");
        let mut bob = another(&hubs, 3, "bob");
        assert_eq!(join(&mut one, "A", 1)["success"], true);
        assert_eq!(join(&mut one, "B", 2)["success"], true);
        assert_eq!(join(&mut two, "C", 1)["success"], true);
        let refused = join(&mut two, "D", 2);
        assert_eq!(refused["error"]["name"], "Forbidden", "{refused}");
        assert_eq!(hubs.index.lookup("blue_D_state_gex_zero"), None, "not kept");
        assert_eq!(
            join(&mut two, "A", 3)["success"],
            true,
            "alice holds A already"
        );
        assert_eq!(
            join(&mut bob, "D", 1)["success"],
            true,
            "bob has his own share"
        );
        assert_eq!(hubs.index.topic_count(), 4);
        // The last member leaving frees a group and gives back its share.
        let leave = r#"{"type":"leaveGroup","group":"blue_C_state_gex_zero","ackId":4}"#;
        assert_eq!(json_reply(send(&mut two, leave))["success"], true);
        assert_eq!(hubs.index.lookup("blue_C_state_gex_zero"), None);
        assert_eq!(join(&mut two, "E", 5)["success"], true);
        // Connections that end give back everything.
        for mut s in [one, two, bob] {
            s.on_close(tickwire_core::Ending::Closed);
        }
        assert_eq!(hubs.index.topic_count(), 0);
        assert_eq!(hubs.shares.held("alice"), 0);
    }

    #[test]
    fn groups_are_freed_so_a_full_table_empties_again() {
        let hubs = hubs(3, 1000, 1000);
        let mut filler = another(&hubs, 2, "mallory");
        for (i, t) in ["A", "B", "C"].iter().enumerate() {
            assert_eq!(join(&mut filler, t, i as u64 + 1)["success"], true);
        }
        let mut late = another(&hubs, 3, "alice");
        let full = join(&mut late, "D", 1);
        assert_eq!(full["error"]["name"], "InternalServerError", "{full}");
        filler.on_close(tickwire_core::Ending::Closed);
        assert_eq!(
            join(&mut late, "D", 2)["success"],
            true,
            "the table emptied"
        );
    }

    #[test]
    fn sequence_acks_reach_the_sequencer_only_when_reliable() {
        let ack = r#"{"type":"sequenceAck","sequenceId":5}"#;
        let (_hubs, mut reliable) = session(JSON_RELIABLE, &[], 10);
        assert_eq!(send(&mut reliable, ack), Step::Ack(5));
        let (_hubs, mut plain) = session(JSON, &[], 10);
        assert_eq!(send(&mut plain, ack), Step::Nothing);
    }

    #[test]
    fn wrong_frames_and_undecodable_payloads_close() {
        let (_hubs, mut json) = session(JSON, &[], 10);
        let step = json.on_message(MessageKind::Binary, b"\x0a", Instant::now());
        assert!(matches!(step, Step::Close { code: 1003, .. }), "{step:?}");
        let (_hubs, mut json) = session(JSON, &[], 10);
        assert!(matches!(
            send(&mut json, "not json"),
            Step::Close { code: 1007, .. }
        ));
        // A well-formed message of an unknown type and no ack id is ignored.
        let (_hubs, mut json) = session(JSON, &[], 10);
        assert_eq!(send(&mut json, r#"{"type":"future"}"#), Step::Nothing);
    }

    fn message() -> Arc<dyn SequencedMessage> {
        Arc::new(Sequenced(encode_message(
            WireFormat::Json,
            &MessageFrom::group("g"),
            &MessageData::Text("x".into()),
        )))
    }

    #[test]
    fn unacked_messages_are_trimmed_cumulatively() {
        let mut unacked = Unacked::default();
        for seq in 1..=5 {
            assert!(unacked.push(seq, 10, message()));
        }
        unacked.ack(3);
        assert_eq!(unacked.messages.len(), 2);
        assert_eq!(unacked.bytes, 20);
        unacked.ack(2);
        assert_eq!(unacked.messages.len(), 2);
        unacked.ack(u64::MAX);
        assert_eq!((unacked.messages.len(), unacked.bytes), (0, 0));

        for seq in 1..=MAX_UNACKED_MESSAGES as u64 {
            assert!(unacked.push(seq, 1, message()));
        }
        assert!(!unacked.push(1001, 1, message()));
    }

    #[test]
    fn the_sequencer_stamps_gap_free_ids_and_refuses_past_the_limit() {
        let sequencing = Arc::new(Mutex::new(Sequencing::default()));
        let mut reliable = Reliable(sequencing.clone());
        let mut buf = BytesMut::new();
        for _ in 0..3 {
            reliable.write(&message(), &mut buf).unwrap();
        }
        let text = String::from_utf8_lossy(&buf);
        for id in 1..=3 {
            assert!(text.contains(&format!("\"sequenceId\":{id}")), "{text}");
        }
        reliable.ack(3);
        assert!(lock(&sequencing).unacked.messages.is_empty());
        for _ in 0..MAX_UNACKED_MESSAGES {
            reliable.write(&message(), &mut buf).unwrap();
        }
        assert!(reliable.write(&message(), &mut buf).is_err());
    }

    /// Publishes `text` to [`GROUP`] as a group message.
    fn publish_text(hubs: &Hubs, text: &str) {
        let topic = hubs.index.lookup(GROUP).expect("joined");
        publish(
            &hubs.index,
            topic,
            &MessageFrom::group(GROUP.to_owned()),
            &MessageData::Text(text.to_owned()),
            None,
        );
    }

    /// What a writer would do with everything queued for `sub`: write it
    /// through `sequencer`; returns the frames.
    fn write_queued(sub: &Subscriber, sequencer: &mut dyn Sequencer) -> BytesMut {
        let mut batch = Batch::default();
        sub.outbox().take_now(&mut batch);
        let mut buf = BytesMut::new();
        for item in batch.data {
            if let Outbound::Sequenced(msg) = item.out {
                sequencer.write(&msg, &mut buf).unwrap();
            }
        }
        buf
    }

    /// The `(sequenceId, data)` of every JSON message in the server frames
    /// of `frames`.
    fn numbered(frames: &[u8]) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut rest = frames;
        while rest.len() >= 2 {
            let (len, header) = match rest[1] {
                126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
                n => (usize::from(n), 2),
            };
            let v: serde_json::Value = serde_json::from_slice(&rest[header..header + len]).unwrap();
            out.push((
                v["sequenceId"].as_u64().unwrap(),
                v["data"].as_str().unwrap().to_owned(),
            ));
            rest = &rest[header + len..];
        }
        out
    }

    /// A reliable JSON session in [`GROUP`], its id and reconnection token.
    fn reliable_in_group() -> (Arc<Hubs>, Session, Subscriber, String, String) {
        let (hubs, mut s) = session(Subprotocol::JsonReliable, &[ROLE_JOIN_LEAVE], 10);
        let connected = json_reply(Step::Reply(s.opening().unwrap()));
        let id = connected["connectionId"].as_str().unwrap().to_owned();
        let token = connected["reconnectionToken"].as_str().unwrap().to_owned();
        let join = format!(r#"{{"type":"joinGroup","group":"{GROUP}","ackId":1}}"#);
        assert_eq!(
            json_reply(s.on_message(MessageKind::Text, join.as_bytes(), Instant::now()))["success"],
            true
        );
        let sub = s.sub.clone();
        (hubs, s, sub, id, token)
    }

    /// While a vanished session is being parked, it is still a live
    /// connection: a recovery attempt in between finds it (and waits for the
    /// park) rather than nothing (and a refusal with 1008, after which the
    /// SDKs give the session up).
    #[tokio::test]
    async fn a_vanished_session_stays_live_until_it_is_parked() {
        let (hubs, mut s, _sub, id, _token) = reliable_in_group();
        assert!(lock(&hubs.parked.live).contains_key(&id));
        // The park cannot finish while the parked sessions are held here.
        let held = lock(&hubs.parked.sessions);
        let runtime = tokio::runtime::Handle::current();
        let closing = std::thread::spawn(move || {
            let _entered = runtime.enter();
            s.on_close(Ending::Vanished);
        });
        // Time for the close to go as far as it can (the old order took the
        // session off the live connections first, at once).
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            lock(&hubs.parked.live).contains_key(&id),
            "the session left the live connections before it was parked"
        );
        drop(held);
        closing.join().unwrap();
        assert!(lock(&hubs.parked.sessions).contains_key(&id), "parked");
        assert!(!lock(&hubs.parked.live).contains_key(&id), "no longer live");
    }

    #[tokio::test]
    async fn a_vanished_reliable_session_is_kept_and_resumed_with_every_unacked_message() {
        let (hubs, mut old, old_sub, id, token) = reliable_in_group();
        let mut writer = old.sequencer().unwrap();
        for n in 1..=3 {
            publish_text(&hubs, &n.to_string());
        }
        let written = numbered(&write_queued(&old_sub, writer.as_mut()));
        assert_eq!(written, [(1, "1".into()), (2, "2".into()), (3, "3".into())]);
        writer.ack(1);
        // Published, but the socket failed before the writer took them.
        publish_text(&hubs, "4");
        publish_text(&hubs, "5");
        drop(writer);
        old.on_close(Ending::Vanished);
        assert_eq!(hubs.parked.len(), 1);
        assert_eq!(
            testing::members(&hubs.index, GROUP),
            1,
            "a stand-in holds the place"
        );
        // Published while nobody is connected: kept.
        publish_text(&hubs, "6");
        publish_text(&hubs, "7");
        tokio::task::yield_now().await;

        // Another token, hub or subprotocol does not take it.
        assert!(
            hubs.resume(&id, "forged", Hub::StateGex, Subprotocol::JsonReliable)
                .is_none()
        );
        assert!(
            hubs.resume(&id, &token, Hub::Classic, Subprotocol::JsonReliable)
                .is_none()
        );
        assert!(
            hubs.resume(&id, &token, Hub::StateGex, Subprotocol::ProtobufReliable)
                .is_none()
        );
        assert!(
            hubs.resume("another", &token, Hub::StateGex, Subprotocol::JsonReliable)
                .is_none()
        );
        assert_eq!(hubs.parked.len(), 1);

        let resumption = hubs
            .resume(&id, &token, Hub::StateGex, Subprotocol::JsonReliable)
            .unwrap();
        assert!(hubs.parked.is_empty());
        publish_text(&hubs, "8"); // before the new connection takes the place
        let new_sub = subscriber(2, variant(Subprotocol::JsonReliable));
        let mut new = Session::resume(hubs.clone(), new_sub.clone(), resumption);
        let connected = json_reply(Step::Reply(new.opening().unwrap()));
        assert_eq!(connected["connectionId"], id.as_str());
        assert_eq!(connected["reconnectionToken"], token.as_str());
        assert_eq!(testing::members(&hubs.index, GROUP), 1);
        assert!(hubs.index.is_subscribed(GROUP, &new_sub));

        let mut writer = new.sequencer().unwrap();
        let mut replay = BytesMut::new();
        writer.resume(&mut replay).unwrap();
        let replayed = numbered(&replay);
        let expected: Vec<(u64, String)> = (2..=8).map(|n| (n, n.to_string())).collect();
        assert_eq!(replayed, expected, "unacked, in order, with their ids");
        publish_text(&hubs, "9");
        assert_eq!(
            numbered(&write_queued(&new_sub, writer.as_mut())),
            [(9, "9".into())]
        );
        // Resumed once only.
        let mut again = BytesMut::new();
        writer.resume(&mut again).unwrap();
        assert!(again.is_empty());
        new.on_close(Ending::Closed);
        assert_eq!(testing::members(&hubs.index, GROUP), 0);
        assert!(hubs.parked.is_empty());
        let counts = hubs.parked.outcomes();
        assert_eq!((counts.parked, counts.resumed, counts.ended), (1, 1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_session_ends_with_its_window_or_its_limits() {
        let (hubs, mut s, _sub, id, token) = reliable_in_group();
        s.on_close(Ending::Vanished);
        assert_eq!(hubs.parked.len(), 1);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(hubs.parked.is_empty(), "the window ended");
        assert_eq!(hubs.parked.outcomes().ended, 1);
        assert_eq!(testing::members(&hubs.index, GROUP), 0);
        assert!(
            hubs.resume(&id, &token, Hub::StateGex, Subprotocol::JsonReliable)
                .is_none()
        );

        let (hubs, mut s, _sub, id, token) = reliable_in_group();
        s.on_close(Ending::Vanished);
        for n in 0..=MAX_UNACKED_MESSAGES {
            publish_text(&hubs, &n.to_string());
            if n % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(hubs.parked.is_empty(), "past 1000 unacked messages");
        assert_eq!(testing::members(&hubs.index, GROUP), 0);
        assert!(
            hubs.resume(&id, &token, Hub::StateGex, Subprotocol::JsonReliable)
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_key_parks_at_most_its_limit_of_sessions() {
        let (hubs, mut first, _sub, _id, _token) = reliable_in_group();
        let hubs = Arc::new(Hubs {
            index: hubs.index.clone(),
            prefix: hubs.prefix.clone(),
            max_groups: hubs.max_groups,
            max_groups_per_connection: hubs.max_groups_per_connection,
            pong_timeout: hubs.pong_timeout,
            max_message_bytes: hubs.max_message_bytes,
            slow_consumer: hubs.slow_consumer,
            recovery_window: hubs.recovery_window,
            parked: ParkedSessions::with_limit(1),
            shares: hubs.shares.clone(),
        });
        let reliable = |id: u64, user: &str| {
            let params = SessionParams {
                hub: Hub::StateGex,
                protocol: Subprotocol::JsonReliable,
                user_id: user.to_owned(),
                roles: vec![],
            };
            Session::new(hubs.clone(), subscriber(id, 2), params)
        };
        let (mut one, mut two, mut bob) = (
            reliable(2, "alice"),
            reliable(3, "alice"),
            reliable(4, "bob"),
        );
        one.on_close(Ending::Vanished);
        two.on_close(Ending::Vanished);
        bob.on_close(Ending::Vanished);
        assert_eq!(hubs.parked.held_by("alice"), 1, "the second one ended");
        assert_eq!(hubs.parked.held_by("bob"), 1, "another key has its own");
        let counts = hubs.parked.outcomes();
        assert_eq!((counts.parked, counts.not_kept), (2, 1), "{counts:?}");
        first.on_close(Ending::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_resumed_session_that_vanishes_again_is_kept_again_for_its_window() {
        let (hubs, mut s, _sub, id, token) = reliable_in_group();
        s.on_close(Ending::Vanished);
        let resumption = hubs
            .resume(&id, &token, Hub::StateGex, Subprotocol::JsonReliable)
            .unwrap();
        let mut s = Session::resume(hubs.clone(), subscriber(2, 2), resumption);
        s.on_close(Ending::Vanished);
        assert_eq!(hubs.parked.len(), 1);
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(hubs.parked.len(), 1, "kept for the whole window");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(hubs.parked.is_empty(), "and not longer");
        assert_eq!(testing::members(&hubs.index, GROUP), 0);
    }

    /// Whether `sub`'s connection was told to end as vanished.
    fn abandoned(sub: &Subscriber) -> bool {
        let mut batch = Batch::default();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let ready = sub.outbox().poll_take(&mut cx, &mut batch).is_ready();
        ready && batch.abandoned
    }

    #[tokio::test]
    async fn a_client_back_before_its_old_connection_ended_takes_the_session_over() {
        let (hubs, mut old, old_sub, id, token) = reliable_in_group();
        // A forged token does not touch the live connection.
        let forged = hubs
            .recover(&id, "forged", Hub::StateGex, Subprotocol::JsonReliable)
            .await;
        assert!(forged.is_none());
        assert!(!abandoned(&old_sub));

        let recovering = tokio::spawn({
            let (hubs, id, token) = (hubs.clone(), id.clone(), token.clone());
            async move {
                hubs.recover(&id, &token, Hub::StateGex, Subprotocol::JsonReliable)
                    .await
            }
        });
        while !abandoned(&old_sub) {
            tokio::task::yield_now().await;
        }
        // What the core does once the abandoned writer stopped.
        old.on_close(Ending::Vanished);
        let resumption = recovering.await.unwrap().expect("resumed");
        let new_sub = subscriber(2, variant(Subprotocol::JsonReliable));
        let mut new = Session::resume(hubs.clone(), new_sub.clone(), resumption);
        assert_eq!(
            json_reply(Step::Reply(new.opening().unwrap()))["connectionId"],
            id.as_str()
        );
        assert!(hubs.index.is_subscribed(GROUP, &new_sub));
        new.on_close(Ending::Closed);
    }

    #[tokio::test]
    async fn only_a_vanished_reliable_session_is_kept() {
        let (hubs, mut s, _sub, _id, _token) = reliable_in_group();
        s.on_close(Ending::Closed);
        assert!(hubs.parked.is_empty());
        assert_eq!(testing::members(&hubs.index, GROUP), 0);

        let (hubs, mut s) = session(Subprotocol::Json, &[ROLE_JOIN_LEAVE], 10);
        let join = format!(r#"{{"type":"joinGroup","group":"{GROUP}"}}"#);
        s.on_message(MessageKind::Text, join.as_bytes(), Instant::now());
        s.on_close(Ending::Vanished);
        assert!(hubs.parked.is_empty());
        assert_eq!(testing::members(&hubs.index, GROUP), 0);
    }

    #[tokio::test]
    async fn an_unused_resumption_ends_the_session() {
        let (hubs, mut s, _sub, id, token) = reliable_in_group();
        s.on_close(Ending::Vanished);
        let resumption = hubs.resume(&id, &token, Hub::StateGex, Subprotocol::JsonReliable);
        drop(resumption);
        assert!(hubs.parked.is_empty());
        assert_eq!(testing::members(&hubs.index, GROUP), 0);
    }

    #[test]
    fn variants_tell_format_and_sequencing_apart() {
        let all: Vec<u8> = tickwire_pubsub::Subprotocol::ALL
            .iter()
            .map(|p| variant(*p))
            .collect();
        let mut distinct = all.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), all.len());
    }
}
