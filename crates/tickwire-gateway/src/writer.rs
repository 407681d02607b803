//! The write side of a connection: one task owns the socket's write half.
//!
//! It waits for work (a control item, a data message, the ping timer, the
//! gateway's shutdown), then drains up to [`BATCH`] more queued items without
//! waiting, renders all of them into one buffer as complete WebSocket frames
//! and writes that buffer with one `write_all` under the write timeout. Server
//! frames are not masked (RFC 6455 §5.1), so rendering is a header and a copy.
//!
//! Control items (replies, pongs, closes, sequence acks) come first: an ack
//! is always written before data of the group it confirmed. Sequence ids of
//! the reliable subprotocols are assigned here, at write time, so they are
//! gap-free per connection whatever the fan-out did; the written messages
//! stay in the unacked buffer until the client's `sequenceAck`.
//!
//! The writer is the same for every endpoint: the pubsub subprotocols queue
//! [`Outbound::Message`]s, the JSON feeds (`/ws`, `/stream`) complete text
//! messages ([`Outbound::Text`]). What differs per endpoint is in
//! [`WriterConfig`]: the wire format of replies, whether messages are
//! sequenced, and the goodbye message sent before the shutdown's close frame.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tickwire_pubsub::{EncodedMessage, WireFormat};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::fanout::Subscriber;

/// One item of a connection's data queue, as the fan-out leaves it.
///
/// Cloning either variant is a reference-count increment: the fan-out
/// encodes an update once and every subscriber's queue holds the same bytes.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// A pubsub data message; reliable subprotocols stamp their `sequenceId`
    /// on it at write time.
    Message(EncodedMessage),
    /// A complete JSON message of a JSON feed, sent as one text frame.
    Text(Bytes),
}

/// Queued items rendered into one write, beyond the one that woke the writer.
pub(crate) const BATCH: usize = 64;
/// Most unacknowledged messages a reliable connection may have (the service's limit).
pub(crate) const MAX_UNACKED_MESSAGES: usize = 1000;
/// Most unacknowledged bytes a reliable connection may have (the service's limit).
pub(crate) const MAX_UNACKED_BYTES: usize = 16 << 20;

/// RFC 6455 §5.2 opcodes.
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// RFC 6455 §7.4.1 close codes the gateway sends.
pub(crate) mod close_code {
    /// Normal closure (an idle connection).
    pub(crate) const NORMAL: u16 = 1000;
    /// The server is going away (shutdown).
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// A frame kind the subprotocol does not use.
    pub(crate) const UNSUPPORTED_DATA: u16 = 1003;
    /// A payload that cannot be decoded.
    pub(crate) const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation; for Azure Web PubSub clients: the session is gone.
    pub(crate) const POLICY: u16 = 1008;
    /// A message larger than the configured maximum.
    pub(crate) const TOO_BIG: u16 = 1009;
    /// A protocol error (RFC 6455 framing).
    pub(crate) const PROTOCOL_ERROR: u16 = 1002;
}

/// Work for the writer from the connection's reader side.
#[derive(Debug)]
pub(crate) enum Control {
    /// An encoded protocol message (connected, ack, pong) to send as a data frame.
    Reply(Bytes),
    /// A WebSocket pong answering the client's ping (RFC 6455 §5.5.3).
    Pong(Bytes),
    /// The client's `sequenceAck`: forget messages up to and including this id.
    SequenceAck(u64),
    /// Send a close frame (after an optional last message) and stop.
    Close {
        /// RFC 6455 §7.4 status code.
        code: u16,
        /// The close reason (at most 123 bytes are sent).
        reason: String,
        /// An encoded message to send first (a `disconnected` system message,
        /// an `error` of a JSON feed).
        last: Option<Bytes>,
    },
    /// Echo the client's close frame (its payload) and stop.
    CloseEcho(Bytes),
}

/// How the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterExit {
    /// A close frame was written; the reader may wait for the client's.
    CloseSent,
    /// The connection failed or was dropped (write error, timeout, full queue).
    Failed,
    /// The reader side went away.
    ReaderGone,
}

/// The writer's settings.
#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    /// The wire format of replies: JSON in text frames, protobuf in binary ones.
    pub(crate) format: WireFormat,
    /// Whether [`Outbound::Message`]s get a `sequenceId` and are kept until acked.
    pub(crate) reliable: bool,
    /// Time between two WebSocket pings.
    pub(crate) ping_interval: Duration,
    /// Longest a single write may take.
    pub(crate) write_timeout: Duration,
    /// A message sent before the close frame when the gateway shuts down
    /// (the pubsub `disconnected` system message).
    pub(crate) goodbye: Option<Bytes>,
}

/// The writer task's state.
pub(crate) struct Writer<W> {
    io: W,
    config: WriterConfig,
    sub: Subscriber,
    ctrl: mpsc::Receiver<Control>,
    data: mpsc::Receiver<Outbound>,
    shutdown: watch::Receiver<bool>,
    buf: BytesMut,
    next_sequence_id: u64,
    unacked: Unacked,
}

impl<W> std::fmt::Debug for Writer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("connection", &self.sub.id())
            .field("next_sequence_id", &self.next_sequence_id)
            .finish_non_exhaustive()
    }
}

/// What one rendered item asks of the loop.
enum After {
    Continue,
    Stop,
}

enum Work {
    Ctrl(Control),
    Data(Outbound),
    Ping,
    Shutdown,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub(crate) fn new(
        io: W,
        config: WriterConfig,
        sub: Subscriber,
        ctrl: mpsc::Receiver<Control>,
        data: mpsc::Receiver<Outbound>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Writer {
            io,
            config,
            sub,
            ctrl,
            data,
            shutdown,
            buf: BytesMut::with_capacity(16 * 1024),
            next_sequence_id: 1,
            unacked: Unacked::default(),
        }
    }

    /// Runs until a close frame is written, the connection fails, or the
    /// reader goes away.
    pub(crate) async fn run(mut self) -> WriterExit {
        let start = tokio::time::Instant::now() + self.config.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutting_down = *self.shutdown.borrow();
        loop {
            let work = if shutting_down {
                Work::Shutdown
            } else {
                tokio::select! {
                    biased;
                    () = self.sub.dropped() => return WriterExit::Failed,
                    c = self.ctrl.recv() => match c {
                        Some(c) => Work::Ctrl(c),
                        None => return WriterExit::ReaderGone,
                    },
                    changed = self.shutdown.changed() => {
                        // A dropped sender means the gateway is gone: shut down too.
                        if changed.is_err() || *self.shutdown.borrow() {
                            Work::Shutdown
                        } else {
                            continue;
                        }
                    }
                    d = self.data.recv() => match d {
                        Some(d) => Work::Data(d),
                        None => return WriterExit::ReaderGone,
                    },
                    _ = ping.tick() => Work::Ping,
                }
            };
            shutting_down = false;
            self.buf.clear();
            let mut stop = matches!(self.render(work), After::Stop);
            // Drain what is already queued, control first, without waiting.
            let mut drained = 0;
            while !stop && drained < BATCH {
                let work = if let Ok(c) = self.ctrl.try_recv() {
                    Work::Ctrl(c)
                } else if let Ok(d) = self.data.try_recv() {
                    Work::Data(d)
                } else {
                    break;
                };
                stop = matches!(self.render(work), After::Stop);
                drained += 1;
            }
            if !self.buf.is_empty() && !self.flush().await {
                return WriterExit::Failed;
            }
            if stop {
                // Half-close: the client sees our close frame, then EOF, and
                // may still send its own close frame to the reader.
                let _ = tokio::time::timeout(self.config.write_timeout, self.io.shutdown()).await;
                return WriterExit::CloseSent;
            }
        }
    }

    /// Writes the buffer in one `write_all` under the write timeout.
    async fn flush(&mut self) -> bool {
        match tokio::time::timeout(self.config.write_timeout, self.io.write_all(&self.buf)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                debug!(connection = self.sub.id(), error = %e, "write failed");
                self.sub.drop_connection();
                false
            }
            Err(_) => {
                warn!(
                    connection = self.sub.id(),
                    timeout_secs = self.config.write_timeout.as_secs(),
                    "write timed out; dropping the client"
                );
                self.sub.drop_connection();
                false
            }
        }
    }

    /// Renders one item into the buffer.
    fn render(&mut self, work: Work) -> After {
        let op = match self.config.format {
            WireFormat::Json => OP_TEXT,
            WireFormat::Protobuf => OP_BINARY,
        };
        match work {
            Work::Data(Outbound::Text(text)) => {
                put_frame(&mut self.buf, OP_TEXT, &text);
                After::Continue
            }
            Work::Data(Outbound::Message(msg)) => {
                if self.config.reliable {
                    let seq = self.next_sequence_id;
                    self.next_sequence_id += 1;
                    let len = msg.encoded_len(Some(seq));
                    put_frame_header(&mut self.buf, op, len);
                    msg.write_to(Some(seq), &mut self.buf);
                    if !self.unacked.push(seq, len, msg) {
                        warn!(
                            connection = self.sub.id(),
                            messages = self.unacked.messages.len(),
                            bytes = self.unacked.bytes,
                            "too many unacknowledged messages; closing"
                        );
                        put_close(
                            &mut self.buf,
                            close_code::POLICY,
                            "too many unacknowledged messages",
                        );
                        return After::Stop;
                    }
                } else {
                    let bytes = msg.unsequenced();
                    put_frame(&mut self.buf, op, &bytes);
                }
                After::Continue
            }
            Work::Ctrl(Control::Reply(bytes)) => {
                put_frame(&mut self.buf, op, &bytes);
                After::Continue
            }
            Work::Ctrl(Control::Pong(payload)) => {
                put_frame(&mut self.buf, OP_PONG, &payload[..payload.len().min(125)]);
                After::Continue
            }
            Work::Ctrl(Control::SequenceAck(id)) => {
                self.unacked.ack(id);
                After::Continue
            }
            Work::Ctrl(Control::Close { code, reason, last }) => {
                if let Some(msg) = last {
                    put_frame(&mut self.buf, op, &msg);
                }
                put_close(&mut self.buf, code, &reason);
                After::Stop
            }
            Work::Ctrl(Control::CloseEcho(payload)) => {
                put_frame(&mut self.buf, OP_CLOSE, &payload[..payload.len().min(125)]);
                After::Stop
            }
            Work::Ping => {
                put_frame(&mut self.buf, OP_PING, b"");
                After::Continue
            }
            Work::Shutdown => {
                if let Some(goodbye) = &self.config.goodbye {
                    put_frame(&mut self.buf, op, goodbye);
                }
                put_close(
                    &mut self.buf,
                    close_code::GOING_AWAY,
                    "server shutting down",
                );
                After::Stop
            }
        }
    }
}

/// The reliable subprotocols' unacknowledged messages, oldest first.
#[derive(Default)]
struct Unacked {
    messages: VecDeque<(u64, usize, EncodedMessage)>,
    bytes: usize,
}

impl Unacked {
    /// Keeps a written message; false when the buffer is over its limits.
    fn push(&mut self, seq: u64, len: usize, msg: EncodedMessage) -> bool {
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

/// Appends a frame header: FIN, `opcode`, no mask, 7/16/64-bit payload length
/// (RFC 6455 §5.2).
pub(crate) fn put_frame_header(buf: &mut BytesMut, opcode: u8, len: usize) {
    buf.reserve(10 + len);
    buf.put_u8(0x80 | opcode);
    if len < 126 {
        // Fits the 7-bit length.
        buf.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        buf.put_u8(126);
        buf.put_u16(len);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
}

/// Appends a whole unmasked frame.
pub(crate) fn put_frame(buf: &mut BytesMut, opcode: u8, payload: &[u8]) {
    put_frame_header(buf, opcode, payload.len());
    buf.extend_from_slice(payload);
}

/// Appends a close frame with `code` and as much of `reason` as fits a control
/// frame (125 bytes in all, RFC 6455 §5.5), cut at a character boundary.
pub(crate) fn put_close(buf: &mut BytesMut, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    put_frame_header(buf, OP_CLOSE, 2 + reason.len());
    buf.put_u16(code);
    buf.extend_from_slice(reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_use_the_shortest_length() {
        let mut buf = BytesMut::new();
        put_frame(&mut buf, OP_TEXT, b"hi");
        assert_eq!(&buf[..], b"\x81\x02hi");

        buf.clear();
        put_frame_header(&mut buf, OP_BINARY, 126);
        assert_eq!(&buf[..], b"\x82\x7e\x00\x7e");

        buf.clear();
        put_frame_header(&mut buf, OP_BINARY, 65_535);
        assert_eq!(&buf[..], b"\x82\x7e\xff\xff");

        buf.clear();
        put_frame_header(&mut buf, OP_BINARY, 65_536);
        assert_eq!(&buf[..], b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00");
    }

    #[test]
    fn close_frames_carry_code_and_a_bounded_reason() {
        let mut buf = BytesMut::new();
        put_close(&mut buf, 1001, "bye");
        assert_eq!(&buf[..], b"\x88\x05\x03\xe9bye");

        buf.clear();
        put_close(&mut buf, 1000, &"é".repeat(100));
        // 2 code bytes + 122 bytes of whole characters.
        assert_eq!(buf[1], 124);
        assert!(std::str::from_utf8(&buf[4..]).is_ok());
    }

    #[test]
    fn unacked_messages_are_trimmed_cumulatively() {
        use tickwire_pubsub::{MessageData, MessageFrom, encode_message};
        let msg = encode_message(
            WireFormat::Json,
            &MessageFrom::group("g"),
            &MessageData::Text("x".into()),
        );
        let mut unacked = Unacked::default();
        for seq in 1..=5 {
            assert!(unacked.push(seq, 10, msg.clone()));
        }
        unacked.ack(3);
        assert_eq!(unacked.messages.len(), 2);
        assert_eq!(unacked.bytes, 20);
        unacked.ack(2);
        assert_eq!(unacked.messages.len(), 2);
        unacked.ack(u64::MAX);
        assert_eq!((unacked.messages.len(), unacked.bytes), (0, 0));

        for seq in 1..=MAX_UNACKED_MESSAGES as u64 {
            assert!(unacked.push(seq, 1, msg.clone()));
        }
        assert!(!unacked.push(1001, 1, msg));
    }
}
