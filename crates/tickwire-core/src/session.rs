//! One WebSocket connection, whatever its endpoint: the read loop, the
//! writer task, the queues, idle handling and closing.
//!
//! Each endpoint supplies a [`Protocol`]: the decisions of its dialect
//! (what a message means, what to answer, when an idle connection closes,
//! what to release when it ends, and optionally a [`Sequencer`]).
//! Everything else is here, once, and knows no endpoint.
//!
//! # Design
//!
//! After the upgrade the gateway takes the TCP stream back out of hyper
//! (downcasting the upgraded connection, keeping any bytes hyper had already
//! read), sets `TCP_NODELAY` and splits it into owned halves:
//!
//! - the **read half** stays here: the loop only moves bytes from it into a
//!   buffer sized to what the next frame needs (small while the client is
//!   quiet) and hands them to the codec's [`Reader`] (`tickwire-websocket`),
//!   which applies every rule of RFC 6455 to them (masking, reserved bits,
//!   opcodes, control frames, the message size limit before anything is
//!   allocated for it, reassembly, UTF-8 as it arrives) and says what came:
//!   this module answers pings, echoes closes, and hands each message to
//!   [`Protocol::on_message`]; an error of the codec is answered with the
//!   close code it names;
//! - the **write half** goes to the [writer](crate::writer) task, which owns
//!   every byte written: replies, data, pings, closes.
//!
//! The two talk through the connection's [outbox](crate::outbox): a small
//! bounded control queue (reader → writer; the reader waits when it is full,
//! which slows a client that floods requests without reading answers) and
//! the data queue the fan-out fills (capacity `send_buffer`; when full, the
//! endpoint's [`SlowConsumer`] policy decides). Each connection is two tasks:
//! this read loop and the writer.
//!
//! Closing: a close the client starts is echoed and the connection ends. A
//! close the server starts (bad frame, shutdown, unacked overflow) is written
//! by the writer, which then half-closes the socket; the reader keeps reading
//! for a short while for the client's close frame, so the client reads our
//! close frame before the socket goes away. When the stream cannot be parsed
//! any further (the codec refused what the client sent), the reader instead
//! discards bytes until EOF or that short while ends.
//!
//! Idle connections: the protocol names a deadline from what the loop last
//! saw (any frame, or a data message or ping) and the close to send once it
//! passes; it is checked again before closing, so activity the protocol
//! tracks elsewhere (data sent to a `/stream` client) can move it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use futures_util::future::{Fuse, FusedFuture as _};
use tickwire_websocket::{Event, MessageKind, OpCode, Reader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::connections::{Connections, Tracker};
use crate::meter::{Card, Peer};
use crate::outbox::SlowConsumer;
use crate::subscriber::{QueuePolicy, Subscriber};
use crate::writer::{Control, Sequencer, Writer, WriterConfig, WriterExit};

/// How long the reader waits for the client's close frame after the server
/// sent its own.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// The protocol decisions of one endpoint's connections.
///
/// Every endpoint (the pubsub hubs, `/ws`, `/stream`, ...) shares [`run`]: the
/// read loop, message reassembly and size limit, the [writer](crate::writer)
/// with its bounded queue, slow-consumer disconnect, pings, idle handling and
/// shutdown. What an endpoint decides is here. Implementations do no I/O:
/// they take a message and the time, and say what to send.
pub trait Protocol: Send {
    /// The message sent right after the upgrade, if any.
    fn opening(&mut self) -> Option<Bytes> {
        None
    }

    /// The message sent before the close frame when the gateway shuts down.
    fn goodbye(&self) -> Option<Bytes> {
        None
    }

    /// The connection's [`Sequencer`], for a protocol whose data messages
    /// carry a per-connection sequence number; asked once, at the start.
    fn sequencer(&mut self) -> Option<Box<dyn Sequencer>> {
        None
    }

    /// Handles one complete client message that arrived at `now`.
    fn on_message(&mut self, kind: MessageKind, payload: &[u8], now: Instant) -> Step;

    /// The topics (symbols, groups) the connection follows now, for the
    /// operators' view of it; asked after every message. `None`: not told.
    fn subscriptions(&self) -> Option<usize> {
        None
    }

    /// When the connection is to be closed for inactivity, given what was
    /// last seen of it.
    fn deadline(&self, activity: &Activity) -> Instant;

    /// The close frame sent once [`deadline`](Protocol::deadline) passed
    /// (the reason may be built from the configuration, hence borrowed).
    fn idle_close(&self) -> (u16, &str);

    /// The connection ended: release what it holds (subscriptions, upstream
    /// keys), or, when its transport [vanished](Ending::Vanished), keep what
    /// a resumed session needs. Called once, after the last message and
    /// after the writer stopped; what the writer could not write is still
    /// in the connection's outbox ([`Outbox::take_now`]) until this returns.
    ///
    /// [`Outbox::take_now`]: crate::outbox::Outbox::take_now
    fn on_close(&mut self, _ending: Ending) {}
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The transport went away without a close handshake: end of stream, a
    /// reset, a failed or timed-out write. The client may come back.
    Vanished,
    /// A close frame was sent or received (the client's, an idle timeout, a
    /// protocol error, shutdown), or the server dropped the connection.
    Closed,
}

/// What the read loop last saw of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Activity {
    /// Any frame from the client, control frames included.
    pub last_frame: Instant,
    /// A data message or a WebSocket ping from the client (not a pong).
    pub last_message: Instant,
}

/// The transport settings of one connection, chosen by its endpoint.
#[derive(Debug, Clone)]
pub struct Transport {
    /// The endpoint's [variant](Subscriber::variant) of the connection.
    pub variant: u8,
    /// The opcode of replies: text or binary.
    pub reply_opcode: OpCode,
    /// Largest client message, in bytes (larger ones close with 1009).
    pub max_message_bytes: usize,
    /// What a full send buffer does.
    pub slow_consumer: SlowConsumer,
    /// Data items the connection may have queued, when the endpoint needs
    /// another bound than the gateway's `send_buffer` (a reliable protocol
    /// that may hold as many unacknowledged messages). `None`: `send_buffer`.
    pub queue_capacity: Option<usize>,
    /// The endpoint's name, for the [meters](crate::meter) and the roster.
    pub endpoint: &'static str,
    /// The wire format's name, for the meters.
    pub format: &'static str,
    /// Who the client is, for the roster.
    pub peer: Peer,
}

/// Runs one connection to its end: `make` builds the endpoint's protocol
/// around the connection's [`Subscriber`].
pub async fn run<R, W, P>(
    mut reader: R,
    writer_io: W,
    connections: Arc<Connections>,
    transport: Transport,
    make: impl FnOnce(Subscriber) -> P,
    _tracker: Tracker,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + crate::writer::AbortiveClose + Unpin + Send + 'static,
    P: Protocol,
{
    let _open = connections.opened();
    let id = connections.next_id();
    let meter = connections
        .meters()
        .get(transport.endpoint, transport.format);
    let _metered = meter.opened();
    let settings = connections.settings();
    let queue = QueuePolicy {
        capacity: transport.queue_capacity.unwrap_or(settings.send_buffer),
        slow_consumer: transport.slow_consumer,
        pacer: connections.pacer().cloned(),
    };
    let sub = Subscriber::new(
        id,
        transport.variant,
        queue,
        connections.slow_consumer_stats().clone(),
    );
    let _listed = connections.roster().enter(Card {
        meter: meter.clone(),
        peer: transport.peer,
        opened_at: std::time::SystemTime::now(),
        sub: sub.clone(),
    });
    let mut protocol = make(sub.clone());
    // The opening goes first, before the writer takes anything (the queue
    // is empty: there is room).
    if let Some(opening) = protocol.opening() {
        let _ = sub.outbox().try_send_control(Control::Reply(opening));
    }
    let writer = Writer::new(
        writer_io,
        WriterConfig {
            reply_opcode: transport.reply_opcode,
            ping_interval: settings.ping_interval,
            write_timeout: settings.write_timeout,
            goodbye: protocol.goodbye(),
        },
        sub.clone(),
        connections.shutdown(),
        protocol.sequencer(),
    )
    .metered(meter, connections.latencies().clone());
    let mut writer = tokio::spawn(writer.run()).fuse();

    let (end, mut ending) = read_loop(
        &mut reader,
        &mut protocol,
        &sub,
        transport.max_message_bytes,
        &mut writer,
    )
    .await;
    // The writer sends what the reader queued (a close echo, say), then stops.
    sub.outbox().reader_gone();
    if end == LoopEnd::Drain {
        drain(&mut reader).await;
    }
    if !writer.is_terminated() {
        if let Ok(exit) = writer.await {
            ending = match exit {
                WriterExit::IoFailed => Ending::Vanished,
                WriterExit::Failed | WriterExit::CloseSent => Ending::Closed,
                WriterExit::ReaderGone => ending,
            };
        }
    }
    protocol.on_close(ending);
    sub.outbox().writer_gone();
    drop(protocol);
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

/// Bytes reserved to wait for the next frame: an idle connection's whole
/// read buffer.
const MIN_READ: usize = 256;
/// An empty read buffer larger than this (left by a large message) is freed.
const KEEP_READ: usize = 4096;

/// Reads messages until the connection ends: moves bytes from the socket
/// into the codec's [`Reader`], which decides what they are, and acts on
/// its events.
async fn read_loop<R: AsyncRead + Unpin, P: Protocol>(
    reader: &mut R,
    protocol: &mut P,
    sub: &Subscriber,
    max: usize,
    writer: &mut Fuse<JoinHandle<WriterExit>>,
) -> (LoopEnd, Ending) {
    use Ending::{Closed, Vanished};
    let outbox = sub.outbox();
    let close = |code: u16, reason: &str| Control::Close {
        code,
        reason: reason.into(),
        last: None,
    };
    let mut frames = Reader::new(max);
    let mut buf = BytesMut::new();
    let mut close_sent = false;
    let now = Instant::now();
    let mut activity = Activity {
        last_frame: now,
        last_message: now,
    };
    loop {
        let seen = frames.frames();
        let event = match frames.read(&mut buf) {
            Ok(event) => event,
            Err(e) => {
                if close_sent {
                    return (LoopEnd::Done, Closed);
                }
                warn!(connection = sub.id(), error = %e, code = e.close_code(), "bad WebSocket frame; closing");
                let _ = outbox
                    .send_control(close(e.close_code(), e.close_reason()))
                    .await;
                return (LoopEnd::Drain, Closed);
            }
        };
        let now = Instant::now();
        if frames.frames() != seen {
            activity.last_frame = now;
        }
        let Some(event) = event else {
            // Nothing whole yet: read more, into a buffer sized to what the
            // frame needs (small while the client is quiet).
            if buf.is_empty() && buf.capacity() > KEEP_READ {
                buf = BytesMut::new();
            }
            let wanted = frames.wanted(&buf).saturating_sub(buf.len());
            buf.reserve(wanted.max(MIN_READ));
            let deadline = if close_sent {
                now + CLOSE_LINGER
            } else {
                protocol.deadline(&activity)
            };
            let read = tokio::select! {
                biased;
                exit = &mut *writer, if !writer.is_terminated() => {
                    match exit {
                        Ok(WriterExit::CloseSent) => {
                            close_sent = true;
                            continue;
                        }
                        Ok(WriterExit::IoFailed) => return (LoopEnd::Done, Vanished),
                        _ => return (LoopEnd::Done, Closed),
                    }
                }
                read = tokio::time::timeout_at(deadline.into(), reader.read_buf(&mut buf)) => read,
            };
            match read {
                Ok(Ok(0)) => {
                    debug!(connection = sub.id(), "connection ended");
                    return (LoopEnd::Done, if close_sent { Closed } else { Vanished });
                }
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => {
                    debug!(connection = sub.id(), error = %e, "connection ended");
                    return (LoopEnd::Done, if close_sent { Closed } else { Vanished });
                }
                Err(_elapsed) if close_sent => return (LoopEnd::Done, Closed),
                Err(_elapsed) => {
                    // Activity the protocol tracks elsewhere (data sent) may
                    // have moved the deadline.
                    if protocol.deadline(&activity) > Instant::now() {
                        continue;
                    }
                    let (code, reason) = protocol.idle_close();
                    debug!(connection = sub.id(), reason, "closing an idle connection");
                    let _ = outbox.send_control(close(code, reason)).await;
                    return (LoopEnd::Done, Closed);
                }
            }
        };
        if close_sent {
            if matches!(event, Event::Close(_)) {
                return (LoopEnd::Done, Closed);
            }
            continue;
        }
        let (kind, payload) = match event {
            Event::Close(payload) => {
                // Echo the client's close (RFC 6455 §5.5.1) and end.
                let _ = outbox.send_control(Control::CloseEcho(payload)).await;
                return (LoopEnd::Done, Closed);
            }
            Event::Ping(payload) => {
                activity.last_message = now;
                if outbox.send_control(Control::Pong(payload)).await.is_err() {
                    return (LoopEnd::Done, Vanished);
                }
                continue;
            }
            Event::Pong(_) => continue,
            Event::Message { kind, payload } => (kind, payload),
        };
        activity.last_message = now;
        let step = protocol.on_message(kind, &payload, now);
        if let Some(n) = protocol.subscriptions() {
            sub.set_subscriptions(n);
        }
        let replies = match step {
            Step::Nothing => Vec::new(),
            Step::Reply(bytes) => vec![Control::Reply(bytes)],
            Step::Replies(all) => all.into_iter().map(Control::Reply).collect(),
            Step::Frame(frame) => vec![Control::Frame(frame)],
            Step::Ack(id) => vec![Control::Ack(id)],
            Step::Close { code, reason, last } => {
                close_sent = true;
                vec![Control::Close { code, reason, last }]
            }
        };
        for item in replies {
            if outbox.send_control(item).await.is_err() {
                return (LoopEnd::Done, Vanished);
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

/// What the loop does after a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing.
    Nothing,
    /// Send this encoded message.
    Reply(Bytes),
    /// Send these encoded messages, in order.
    Replies(Vec<Bytes>),
    /// Send this whole frame as it is (an echo of the client's opcode).
    Frame(Bytes),
    /// Pass an acknowledgement to the connection's [`Sequencer`].
    Ack(u64),
    /// Close the connection (after sending `last`, if any).
    Close {
        /// RFC 6455 §7.4 status code.
        code: u16,
        /// The close reason.
        reason: String,
        /// A message to send before the close frame.
        last: Option<Bytes>,
    },
}
