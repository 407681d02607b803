//! A pubsub connection's protocol: what its messages mean, its groups, and
//! the reliable subprotocols' sequencing.
//!
//! Invalid messages: a message that carried an `ackId` is answered with a
//! failed ack (`BadRequest`) and the session goes on; a frame of the wrong
//! kind (binary on a JSON subprotocol, text on protobuf) is closed with 1003,
//! an undecodable payload (not JSON, not protobuf) with 1007. A well-formed
//! message of an unknown type or with a bad field and no `ackId` is logged and
//! ignored, so newer clients do not lose their session over it.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tickwire_core::session::{Activity, Protocol, Step, Transport};
use tickwire_core::{Feed, Index, Outbound, SequencedMessage, Sequencer, Subscriber};
use tickwire_index::TopicId;
use tickwire_model::{GexRecord, GroupName, Hub, RawDataType, RawGroupPayload, Update};
use tickwire_pubsub::{
    AckError, Downstream, EncodedMessage, Error as CodecError, FrameKind, MessageData, MessageFrom,
    Subprotocol, Upstream, WireFormat, encode_message,
};
use tickwire_websocket::MessageKind;
use tickwire_websocket::OpCode;
use tickwire_websocket::frame::{frame, header_len, put_header};
use tracing::{debug, warn};

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

impl SessionParams {
    /// The transport of a pubsub connection.
    pub(crate) fn transport(&self, hubs: &Hubs) -> Transport {
        Transport {
            variant: variant(self.protocol),
            reply_opcode: opcode_of(self.protocol.format()),
            max_message_bytes: hubs.max_message_bytes,
            slow_consumer: hubs.slow_consumer,
            // A reliable connection may hold as many messages as its client
            // may leave unacknowledged.
            queue_capacity: self.protocol.is_reliable().then_some(MAX_UNACKED_MESSAGES),
        }
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

/// The sequencing of a reliable connection: gap-free ids from 1, and the
/// written messages kept until the client's `sequenceAck` (at most
/// [`MAX_UNACKED_MESSAGES`] and [`MAX_UNACKED_BYTES`]; beyond, close 1008).
#[derive(Debug)]
struct Reliable {
    next_sequence_id: u64,
    unacked: Unacked,
}

impl Default for Reliable {
    fn default() -> Self {
        Reliable {
            next_sequence_id: 1,
            unacked: Unacked::default(),
        }
    }
}

impl Sequencer for Reliable {
    fn write(&mut self, msg: &Arc<dyn SequencedMessage>, buf: &mut BytesMut) -> Result<(), String> {
        let seq = self.next_sequence_id;
        self.next_sequence_id += 1;
        let len = msg.write_frame(seq, buf);
        if self.unacked.push(seq, len, msg.clone()) {
            return Ok(());
        }
        warn!(
            messages = self.unacked.messages.len(),
            bytes = self.unacked.bytes,
            "too many unacknowledged messages"
        );
        Err("too many unacknowledged messages".to_owned())
    }

    fn ack(&mut self, sequence_id: u64) {
        self.unacked.ack(sequence_id);
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
}

/// The protocol state of one connection.
pub(crate) struct Session {
    hubs: Arc<Hubs>,
    sub: Subscriber,
    hub: Hub,
    protocol: Subprotocol,
    user_id: String,
    connection_id: String,
    permissions: Permissions,
    /// Ack ids that succeeded, for `Duplicate` answers; the oldest (smallest)
    /// are forgotten beyond [`ACK_IDS_KEPT`].
    acked: BTreeSet<u64>,
    groups: HashSet<TopicId>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("connection_id", &self.connection_id)
            .field("hub", &self.hub)
            .field("protocol", &self.protocol)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(hubs: Arc<Hubs>, sub: Subscriber, params: SessionParams) -> Session {
        Session {
            hubs,
            sub,
            hub: params.hub,
            protocol: params.protocol,
            permissions: Permissions::from_roles(&params.roles),
            user_id: params.user_id,
            connection_id: uuid::Uuid::new_v4().simple().to_string(),
            acked: BTreeSet::new(),
            groups: HashSet::new(),
        }
    }

    /// The `connected` system message.
    fn connected(&self) -> Bytes {
        self.encode(&Downstream::Connected {
            connection_id: self.connection_id.clone(),
            user_id: self.user_id.clone(),
            reconnection_token: self
                .protocol
                .is_reliable()
                .then(|| uuid::Uuid::new_v4().simple().to_string()),
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
            if self.acked.contains(&ack_id) {
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
                    self.groups.remove(&topic);
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
        if known.is_some_and(|t| self.groups.contains(&t)) {
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
        self.groups.insert(subscribed.topic);
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
                from_user_id: Some(self.user_id.clone()),
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
                self.acked.insert(ack_id);
                if self.acked.len() > ACK_IDS_KEPT {
                    self.acked.pop_first();
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
    fn opening(&mut self) -> Option<Bytes> {
        debug!(
            connection = self.sub.id(),
            connection_id = %self.connection_id,
            hub = %self.hub,
            protocol = %self.protocol,
            user = %self.user_id,
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
        self.protocol
            .is_reliable()
            .then(|| Box::new(Reliable::default()) as Box<dyn Sequencer>)
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

    fn on_close(&mut self, ending: tickwire_core::Ending) {
        self.hubs.index.unsubscribe_all(&self.sub);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_core::testing::{self, subscriber};

    const GROUP: &str = "blue_SPX_state_gex_zero";

    /// The hubs' state and one session of `protocol` on the `state_gex`
    /// hub with `roles`; no socket, no gateway.
    fn session(
        protocol: Subprotocol,
        roles: &[&str],
        per_connection: usize,
    ) -> (Arc<Hubs>, Session) {
        let hubs = Arc::new(Hubs {
            index: Arc::new(Index::new()),
            prefix: "blue".to_owned(),
            max_groups: 100,
            max_groups_per_connection: per_connection,
            pong_timeout: std::time::Duration::from_secs(60),
            max_message_bytes: 512 * 1024,
            slow_consumer: tickwire_core::SlowConsumer::Disconnect,
        });
        let sub = subscriber(1, variant(protocol));
        let params = SessionParams {
            hub: Hub::StateGex,
            protocol,
            user_id: "alice".to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        };
        (hubs.clone(), Session::new(hubs, sub, params))
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
        let mut reliable = Reliable::default();
        let mut buf = BytesMut::new();
        for _ in 0..3 {
            reliable.write(&message(), &mut buf).unwrap();
        }
        let text = String::from_utf8_lossy(&buf);
        for id in 1..=3 {
            assert!(text.contains(&format!("\"sequenceId\":{id}")), "{text}");
        }
        reliable.ack(3);
        assert!(reliable.unacked.messages.is_empty());
        for _ in 0..MAX_UNACKED_MESSAGES {
            reliable.write(&message(), &mut buf).unwrap();
        }
        assert!(reliable.write(&message(), &mut buf).is_err());
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
