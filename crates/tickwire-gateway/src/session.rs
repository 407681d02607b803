//! One WebSocket connection: the read loop and the session's protocol decisions.
//!
//! # Design
//!
//! After the upgrade the gateway takes the TCP stream back out of hyper
//! (downcasting the upgraded connection, keeping any bytes hyper had already
//! read), sets `TCP_NODELAY` and splits it into owned halves:
//!
//! - the **read half** goes to fastwebsockets (`WebSocketRead`), which parses
//!   and unmasks frames, answers pings and echoes closes through a callback,
//!   and enforces the per-frame size limit; this module reassembles
//!   fragmented messages under the same limit and hands each message to
//!   [`Session::on_message`];
//! - the **write half** goes to the [writer](crate::writer) task, which owns
//!   every byte written: replies, data, pings, closes.
//!
//! The two talk through a small bounded control queue (reader → writer; the
//! reader waits when it is full, which slows a client that floods requests
//! without reading answers) and the data queue the fan-out fills (capacity
//! `send_buffer`; full means the client is dropped).
//!
//! Closing: a close the client starts is echoed and the connection ends. A
//! close the server starts (bad frame, shutdown, unacked overflow) is written
//! by the writer, which then half-closes the socket; the reader keeps reading
//! for a short while for the client's close frame, so the client reads our
//! close frame before the socket goes away. When the stream cannot be parsed
//! any further (an oversized frame), the reader instead discards bytes until
//! EOF or that short while ends.
//!
//! Invalid messages: a message that carried an `ackId` is answered with a
//! failed ack (`BadRequest`) and the session goes on; a frame of the wrong
//! kind (binary on a JSON subprotocol, text on protobuf) is closed with 1003,
//! an undecodable payload (not JSON, not protobuf) with 1007. A well-formed
//! message of an unknown type or with a bad field and no `ackId` is logged and
//! ignored, so newer clients do not lose their session over it.

use std::collections::{BTreeSet, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Role, WebSocketError};
use futures_util::FutureExt as _;
use futures_util::future::{Fuse, FusedFuture as _};
use tickwire_index::TopicId;
use tickwire_model::{GroupName, Hub};
use tickwire_pubsub::{
    AckError, Downstream, Error as CodecError, FrameKind, MessageFrom, Subprotocol, Upstream,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::auth::Permissions;
use crate::fanout::{Subscriber, publish};
use crate::writer::{Control, Writer, WriterConfig, WriterExit, close_code};
use crate::{Shared, Tracker};

/// How long the reader waits for the client's close frame after the server
/// sent its own.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Control items queued from reader to writer.
const CONTROL_QUEUE: usize = 32;
/// Successful ack ids remembered per connection for `Duplicate` answers.
const ACK_IDS_KEPT: usize = 4096;
/// Longest group name accepted.
const MAX_GROUP_LEN: usize = 256;

/// Everything a session needs to start.
#[derive(Debug)]
pub(crate) struct SessionParams {
    pub(crate) hub: Hub,
    pub(crate) protocol: Subprotocol,
    pub(crate) user_id: String,
    pub(crate) roles: Vec<String>,
}

/// Runs one connection to its end.
pub(crate) async fn run<R, W>(
    mut reader: R,
    writer_io: W,
    shared: Arc<Shared>,
    params: SessionParams,
    _tracker: Tracker,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let id = shared.next_connection_id();
    let transport = &shared.config.transport;
    let (data_tx, data_rx) = mpsc::channel(transport.send_buffer);
    let (ctrl_tx, ctrl_rx) = mpsc::channel(CONTROL_QUEUE);
    let format = params.protocol.format();
    let sub = Subscriber::new(id, format, data_tx);
    let writer = Writer::new(
        writer_io,
        WriterConfig {
            format,
            reliable: params.protocol.is_reliable(),
            ping_interval: transport.ping_interval(),
            write_timeout: transport.write_timeout(),
        },
        sub.clone(),
        ctrl_rx,
        data_rx,
        shared.shutdown.clone(),
    );
    let mut writer = tokio::spawn(writer.run()).fuse();

    let mut session = Session::new(shared.clone(), sub.clone(), params);
    debug!(
        connection = id,
        connection_id = %session.connection_id,
        hub = %session.hub,
        protocol = %session.protocol,
        user = %session.user_id,
        "connected"
    );
    let _ = ctrl_tx.send(Control::Reply(session.connected())).await;

    let end = read_loop(&mut reader, &mut session, &ctrl_tx, &mut writer).await;
    shared.index.unsubscribe_all(&sub);
    // The writer sends what the reader queued (a close echo, say), then stops.
    drop(ctrl_tx);
    if end == LoopEnd::Drain {
        drain(&mut reader).await;
    }
    if !writer.is_terminated() {
        let _ = writer.await;
    }
    debug!(connection = id, "disconnected");
}

/// How the read loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoopEnd {
    /// Nothing more to read.
    Done,
    /// The server sent a close after a frame it could not parse: discard the
    /// rest of the stream for a moment.
    Drain,
}

/// Reads messages until the connection ends.
async fn read_loop<R: AsyncRead + Unpin>(
    reader: &mut R,
    session: &mut Session,
    ctrl: &mpsc::Sender<Control>,
    writer: &mut Fuse<JoinHandle<WriterExit>>,
) -> LoopEnd {
    let transport = &session.shared.config.transport;
    let max = transport.max_message_bytes;
    let pong_timeout = transport.pong_timeout();
    let (mut ws, _) =
        fastwebsockets::after_handshake_split(reader, tokio::io::sink(), Role::Server);
    // fastwebsockets refuses frames of `max_message_size` bytes or more.
    ws.set_max_message_size(max.saturating_add(1));
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let mut obligated = |frame: Frame<'_>| {
        let payload = Bytes::copy_from_slice(&frame.payload);
        let item = match frame.opcode {
            OpCode::Close => Control::CloseEcho(payload),
            _ => Control::Pong(payload),
        };
        let ctrl = ctrl.clone();
        async move {
            // A writer that is gone needs no answer.
            let _ = ctrl.send(item).await;
            Ok::<(), Infallible>(())
        }
    };
    let mut message = Message::default();
    let mut close_sent = false;
    loop {
        let deadline = tokio::time::Instant::now()
            + if close_sent {
                CLOSE_LINGER
            } else {
                pong_timeout
            };
        let frame = tokio::select! {
            biased;
            exit = &mut *writer, if !writer.is_terminated() => {
                match exit {
                    Ok(WriterExit::CloseSent) => {
                        close_sent = true;
                        continue;
                    }
                    _ => return LoopEnd::Done,
                }
            }
            frame = tokio::time::timeout_at(deadline, ws.read_frame(&mut obligated)) => frame,
        };
        let frame = match frame {
            Err(_elapsed) => {
                if !close_sent {
                    debug!(
                        connection = session.sub.id(),
                        "no frame within the pong timeout; closing"
                    );
                    let _ = ctrl
                        .send(Control::Close {
                            code: close_code::POLICY,
                            reason: "keepalive timeout".into(),
                            disconnected: None,
                        })
                        .await;
                }
                return LoopEnd::Done;
            }
            Ok(Err(e)) => {
                if close_sent {
                    return LoopEnd::Done;
                }
                let Some((code, reason)) = close_for(&e) else {
                    debug!(connection = session.sub.id(), error = %e, "connection ended");
                    return LoopEnd::Done;
                };
                warn!(connection = session.sub.id(), error = %e, code, "bad WebSocket frame; closing");
                let _ = ctrl
                    .send(Control::Close {
                        code,
                        reason: reason.into(),
                        disconnected: None,
                    })
                    .await;
                return LoopEnd::Drain;
            }
            Ok(Ok(frame)) => frame,
        };
        if close_sent {
            if frame.opcode == OpCode::Close {
                return LoopEnd::Done;
            }
            continue;
        }
        let (kind, payload) = match frame.opcode {
            OpCode::Close => return LoopEnd::Done,
            OpCode::Ping | OpCode::Pong => continue,
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                match message.push(frame.opcode, frame.fin, &frame.payload, max) {
                    Ok(Some(done)) => done,
                    Ok(None) => continue,
                    Err((code, reason)) => {
                        warn!(
                            connection = session.sub.id(),
                            code, reason, "bad message; closing"
                        );
                        let _ = ctrl
                            .send(Control::Close {
                                code,
                                reason: reason.into(),
                                disconnected: None,
                            })
                            .await;
                        close_sent = true;
                        continue;
                    }
                }
            }
        };
        match session.on_message(kind, &payload) {
            Step::Nothing => {}
            Step::Reply(bytes) => {
                if ctrl.send(Control::Reply(bytes)).await.is_err() {
                    return LoopEnd::Done;
                }
            }
            Step::SequenceAck(id) => {
                let _ = ctrl.send(Control::SequenceAck(id)).await;
            }
            Step::Close(code, reason) => {
                let _ = ctrl
                    .send(Control::Close {
                        code,
                        reason,
                        disconnected: None,
                    })
                    .await;
                close_sent = true;
            }
        }
    }
}

/// Discards what the client still sends, until EOF or [`CLOSE_LINGER`], so
/// that closing the socket does not reset it before the client read our close.
async fn drain<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut buf = vec![0u8; 8192];
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// The close code for a frame-level error, or `None` when the connection is
/// simply gone (EOF, I/O error).
fn close_for(e: &WebSocketError) -> Option<(u16, &'static str)> {
    match e {
        WebSocketError::FrameTooLarge => Some((close_code::TOO_BIG, "message too big")),
        WebSocketError::InvalidUTF8 => Some((close_code::INVALID_PAYLOAD, "invalid UTF-8")),
        WebSocketError::UnexpectedEOF
        | WebSocketError::IoError(_)
        | WebSocketError::ConnectionClosed => None,
        // The close echo of an invalid close code was already sent.
        WebSocketError::InvalidCloseCode => None,
        _ => Some((close_code::PROTOCOL_ERROR, "protocol error")),
    }
}

/// A message being reassembled from fragments (RFC 6455 §5.4).
#[derive(Default)]
struct Message {
    kind: Option<FrameKind>,
    buf: BytesMut,
}

impl Message {
    /// Adds a data frame; returns the complete message on its last frame.
    fn push(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        max: usize,
    ) -> Result<Option<(FrameKind, Bytes)>, (u16, &'static str)> {
        let kind = match (opcode, self.kind) {
            (OpCode::Text, None) => FrameKind::Text,
            (OpCode::Binary, None) => FrameKind::Binary,
            (OpCode::Continuation, Some(kind)) => kind,
            _ => return Err((close_code::PROTOCOL_ERROR, "unexpected continuation frame")),
        };
        if self.buf.len() + payload.len() > max {
            return Err((close_code::TOO_BIG, "message too big"));
        }
        if fin && self.kind.is_none() {
            return Ok(Some((kind, Bytes::copy_from_slice(payload))));
        }
        self.buf.extend_from_slice(payload);
        if !fin {
            self.kind = Some(kind);
            return Ok(None);
        }
        self.kind = None;
        let whole = self.buf.split().freeze();
        if kind == FrameKind::Text && std::str::from_utf8(&whole).is_err() {
            return Err((close_code::INVALID_PAYLOAD, "invalid UTF-8"));
        }
        Ok(Some((kind, whole)))
    }
}

/// What the loop does after a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing.
    Nothing,
    /// Send this encoded message.
    Reply(Bytes),
    /// Trim the unacked buffer.
    SequenceAck(u64),
    /// Close the connection.
    Close(u16, String),
}

/// The protocol state of one connection.
pub(crate) struct Session {
    shared: Arc<Shared>,
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
    pub(crate) fn new(shared: Arc<Shared>, sub: Subscriber, params: SessionParams) -> Session {
        Session {
            shared,
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
    pub(crate) fn connected(&self) -> Bytes {
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
    pub(crate) fn on_message(&mut self, kind: FrameKind, payload: &[u8]) -> Step {
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
                if let Some(topic) = self.shared.index.lookup(&group) {
                    self.shared.index.unsubscribe(&group, &self.sub);
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
                    Step::SequenceAck(sequence_id)
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
            CodecError::WrongFrameKind { .. } => {
                Step::Close(close_code::UNSUPPORTED_DATA, e.to_string())
            }
            CodecError::InvalidJson { .. } | CodecError::Protobuf { .. } => {
                Step::Close(close_code::INVALID_PAYLOAD, e.to_string())
            }
            _ => Step::Nothing,
        }
    }

    fn join(&mut self, group: &str) -> Result<(), AckError> {
        let prefix = &self.shared.config.prefix;
        self.check_group(group)?;
        if !self.permissions.can_join(group) {
            return Err(AckError::forbidden(format!(
                "joining {group} requires the role webpubsub.joinLeaveGroup or webpubsub.joinLeaveGroup.{group}"
            )));
        }
        let index = &self.shared.index;
        let known = index.lookup(group);
        if known.is_some_and(|t| self.groups.contains(&t)) {
            return Ok(());
        }
        if self.groups.len() >= self.shared.config.transport.max_groups_per_connection {
            return Err(AckError::bad_request(format!(
                "a connection may be in at most {} groups",
                self.shared.config.transport.max_groups_per_connection
            )));
        }
        if known.is_none() && index.topic_count() >= self.shared.config.max_groups {
            warn!(
                max_groups = self.shared.config.max_groups,
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
        if let Some(topic) = self.shared.index.lookup(&group) {
            let from = MessageFrom::Group {
                group,
                from_user_id: Some(self.user_id.clone()),
            };
            let except = no_echo.then(|| self.sub.id());
            publish(&self.shared.index, topic, &from, data, except);
        }
        Ok(())
    }

    /// A group must be one of this hub's (seed 000 group naming).
    fn check_group(&self, group: &str) -> Result<(), AckError> {
        let prefix = &self.shared.config.prefix;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_reassembled_under_the_limit() {
        let mut m = Message::default();
        assert_eq!(m.push(OpCode::Text, false, b"{\"ty", 100), Ok(None));
        assert_eq!(
            m.push(OpCode::Continuation, true, b"pe\":1}", 100),
            Ok(Some((FrameKind::Text, Bytes::from_static(b"{\"type\":1}"))))
        );
        assert_eq!(
            m.push(OpCode::Binary, true, b"ab", 100),
            Ok(Some((FrameKind::Binary, Bytes::from_static(b"ab"))))
        );
        assert_eq!(m.push(OpCode::Binary, false, &[0; 60], 100), Ok(None));
        assert_eq!(
            m.push(OpCode::Continuation, false, &[0; 60], 100),
            Err((close_code::TOO_BIG, "message too big"))
        );
        let mut m = Message::default();
        assert!(m.push(OpCode::Continuation, true, b"x", 100).is_err());
        assert_eq!(m.push(OpCode::Text, false, b"x", 100), Ok(None));
        assert!(m.push(OpCode::Text, true, b"x", 100).is_err());
        let mut m = Message::default();
        assert_eq!(m.push(OpCode::Text, false, &[0xc3], 100), Ok(None));
        assert_eq!(
            m.push(OpCode::Continuation, true, &[0x28], 100),
            Err((close_code::INVALID_PAYLOAD, "invalid UTF-8"))
        );
    }
}
