//! One WebSocket connection, whatever its endpoint: the read loop, the
//! writer, the queues, idle handling and closing.
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
//!   buffer sized to what the next frame needs (none at all while the client
//!   is quiet: a read waiting for a new frame goes into the worker thread's
//!   scratch buffer, and only what came is kept) and hands them to the codec's [`Reader`] (`tickwire-websocket`),
//!   which applies every rule of RFC 6455 to them (masking, reserved bits,
//!   opcodes, control frames, the message size limit before anything is
//!   allocated for it, reassembly, UTF-8 as it arrives) and says what came:
//!   this module answers pings, echoes closes, and hands each message to
//!   [`Protocol::on_message`]; an error of the codec is answered with the
//!   close code it names;
//! - the **write half** goes to the [writer](crate::writer), which owns
//!   every byte written: replies, data, pings, closes.
//!
//! The two talk through the connection's [outbox](crate::outbox): a small
//! bounded control queue (reader → writer; the reader waits when it is full,
//! which slows a client that floods requests without reading answers) and
//! the data queue the fan-out fills (capacity `send_buffer`; when full, the
//! endpoint's [`SlowConsumer`] policy decides).
//!
//! Each connection is **one task**: the writer is a future polled beside the
//! read loop (while the reader waits for room in the control queue too), not
//! a task of its own. An idle connection's cost is mostly that task's state,
//! so it is kept small: the connection is set up before its future is made
//! (the future holds only the live connection, not the setup's arguments
//! and temporaries), and what only a rare path needs (a write the socket
//! pushes back on, the close's shutdown) is boxed when it happens. A test
//! holds the future to its budget.
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
//! tracks elsewhere (data sent to a `/stream` client) can move it. The
//! session holds no timer for it: it sets the connection's alarm, which the
//! server's one clock rings (`crate::alarm`), up to half a second late.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tickwire_websocket::{Event, MessageKind, OpCode, Reader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tracing::{debug, warn};

use crate::connections::{Connections, Tracker};
use crate::meter::{Card, Peer};
use crate::outbox::{Outbox, SlowConsumer};
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

    /// A heartbeat in the protocol's own messages (Engine.IO's ping), sent
    /// every so often on the connection's own schedule in place of the
    /// WebSocket ping: how often, and the message. Each connection's
    /// schedule starts when it opens, so a server's pings are spread over
    /// the interval rather than sent to every connection at once. `None`
    /// (the default): a WebSocket ping every `ping_interval`.
    fn heartbeat(&self) -> Option<(Duration, Bytes)> {
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
/// around the connection's [`Subscriber`]. `early` holds what was read from
/// `reader` before (bytes the HTTP server read past the upgrade request);
/// the session reads them first.
///
/// The connection is set up (registered, its protocol and writer built)
/// when this is called; the future returned holds only what the live
/// connection needs, which is most of what an idle connection costs.
pub fn run<R, W, P>(
    mut reader: R,
    mut early: BytesMut,
    writer_io: W,
    connections: Arc<Connections>,
    transport: Transport,
    make: impl FnOnce(Subscriber) -> P,
    tracker: Tracker,
) -> impl Future<Output = ()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + crate::writer::AbortiveClose + Unpin + Send,
    P: Protocol,
{
    let id = connections.next_id();
    let meter = connections
        .meters()
        .get(transport.endpoint, transport.format);
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
    let listed = connections.roster().enter(Card {
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
    let mut writer = Writer::new(
        writer_io,
        WriterConfig {
            reply_opcode: transport.reply_opcode,
            write_timeout: settings.write_timeout,
            goodbye: protocol.goodbye().map(Box::new),
        },
        sub.clone(),
        protocol.sequencer(),
    )
    .metered(meter);
    // Listed before the check: a shutdown signalled after it finds the
    // connection on the roster ([`Connections`] tells every listed one).
    if *connections.shutdown().borrow() {
        sub.outbox().shut_down();
    }
    let ping_interval = protocol
        .heartbeat()
        .map_or(settings.ping_interval, |(every, _)| every);
    let limits = Limits::new(transport.max_message_bytes, ping_interval);
    drop(connections);
    async move {
        let ending = {
            let running = writer.run_in_place();
            tokio::pin!(running);
            let mut running = Running {
                future: running,
                exit: None,
            };
            let (end, ending) = read_loop(
                &mut reader,
                &mut early,
                &mut protocol,
                &sub,
                &limits,
                &mut running,
            )
            .await;
            // The writer sends what the reader queued (a close echo, say),
            // then stops.
            sub.outbox().reader_gone();
            let drained = async {
                if end == LoopEnd::Drain {
                    drain(&mut reader).await;
                }
            };
            if running.exit.is_none() {
                let ((), exit) = futures_util::future::join(drained, running.ended()).await;
                match exit {
                    WriterExit::IoFailed => Ending::Vanished,
                    WriterExit::Failed | WriterExit::CloseSent => Ending::Closed,
                    WriterExit::ReaderGone => ending,
                }
            } else {
                drained.await;
                ending
            }
        };
        // The subscriber may outlive the task: its alarm lets go of it.
        sub.outbox().clear_alarm();
        // The writer stopped: its half of the socket closes now, before the
        // protocol releases what the connection held.
        drop(writer);
        protocol.on_close(ending);
        sub.outbox().writer_gone();
        drop(protocol);
        debug!(connection = sub.id(), "disconnected");
        // Held to the end, as they were (not moved into a tuple of their
        // own: the future would keep them twice). Listed, the connection is
        // counted open, on the server and on its meter.
        drop((listed, tracker));
    }
}

/// The connection's writer, polled by the session's own task beside the
/// read loop (one task per connection, not two), and how it ended.
struct Running<'a, F> {
    /// Never polled again once `exit` is set.
    future: Pin<&'a mut F>,
    exit: Option<WriterExit>,
}

impl<F: Future<Output = WriterExit>> Running<'_, F> {
    /// Runs the writer until it ends; at once if it has.
    fn ended(&mut self) -> impl Future<Output = WriterExit> + '_ {
        std::future::poll_fn(move |cx| {
            if let Some(exit) = self.exit {
                return std::task::Poll::Ready(exit);
            }
            let exit = std::task::ready!(self.future.as_mut().poll(cx));
            self.exit = Some(exit);
            std::task::Poll::Ready(exit)
        })
    }

    /// Queues `item` for the writer, running the writer meanwhile if the
    /// control queue is full (it is what makes room): `false` when the
    /// writer is gone.
    ///
    /// Not an `async fn`: the common case is done before the future exists,
    /// and the rare wait is boxed, so that what the read loop keeps at each
    /// of its sends is a pointer, not the wait's state.
    fn send<'s>(
        &'s mut self,
        outbox: &'s Outbox,
        item: Control,
    ) -> impl Future<Output = bool> + 's {
        match outbox.try_send_control(item) {
            Ok(()) => futures_util::future::Either::Left(std::future::ready(true)),
            Err(item) => {
                futures_util::future::Either::Right(Box::pin(self.send_waiting(outbox, item)))
            }
        }
    }

    /// Runs `later` to its step (through any later work that step names),
    /// and the writer meanwhile. A writer that ends on the way has its exit
    /// recorded, for the read loop to see.
    fn alongside(&mut self, mut later: Later) -> impl Future<Output = Step> + '_ {
        std::future::poll_fn(move |cx| {
            while let std::task::Poll::Ready(step) = later.0.as_mut().poll(cx) {
                match step {
                    Step::Later(next) => later = next,
                    step => return std::task::Poll::Ready(step),
                }
            }
            if self.exit.is_none() {
                if let std::task::Poll::Ready(exit) = self.future.as_mut().poll(cx) {
                    self.exit = Some(exit);
                }
            }
            std::task::Poll::Pending
        })
    }

    async fn send_waiting(&mut self, outbox: &Outbox, item: Control) -> bool {
        let send = outbox.send_control(item);
        tokio::pin!(send);
        loop {
            tokio::select! {
                biased;
                sent = &mut send => return sent.is_ok(),
                // Once it ended, the writer released the queue: the send fails.
                _ = self.ended(), if self.exit.is_none() => {}
            }
        }
    }
}

/// What the read loop enforces.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// The largest message read (saturated at 4 GiB).
    max_message_bytes: u32,
    /// Milliseconds between two pings the writer sends (none when zero;
    /// saturated at 49 days). Eight bytes for both, not twenty-four: every
    /// connection keeps them.
    ping_interval_ms: u32,
}

impl Limits {
    fn new(max_message_bytes: usize, ping_interval: Duration) -> Limits {
        Limits {
            max_message_bytes: u32::try_from(max_message_bytes).unwrap_or(u32::MAX),
            ping_interval_ms: u32::try_from(ping_interval.as_millis()).unwrap_or(u32::MAX),
        }
    }

    fn ping_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.ping_interval_ms))
    }
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

/// The size of each worker thread's scratch buffer, which every connection
/// of the thread reads into while its own buffer is empty.
const SCRATCH: usize = 64 * 1024;
/// The least one read asks for. A read asks for what the frame in progress
/// still needs, or this much, never more: bytes a client sends ahead (say,
/// while its replies are not read and the reader waits for room) stay in
/// the socket, where the kernel's buffer bounds them, not in the connection.
const MIN_READ: usize = 256;

thread_local! {
    static SCRATCH_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// Reads what the socket has into `buf`, holding no memory while it waits:
/// an empty `buf` is not allocated, the bytes are read into the thread's
/// scratch buffer and only what came is copied into `buf` (the rest of a
/// frame in progress, or what the codec will consume at once). A connection
/// waiting for its client's next frame thus holds no read buffer at all.
/// At most `limit` bytes are read.
fn read_some<'a, R: AsyncRead + Unpin>(
    reader: &'a mut R,
    buf: &'a mut BytesMut,
    limit: usize,
) -> impl Future<Output = std::io::Result<usize>> + Unpin + 'a {
    std::future::poll_fn(move |cx| {
        SCRATCH_BUF.with_borrow_mut(|scratch| {
            let mut read = tokio::io::ReadBuf::new(&mut scratch[..limit.min(SCRATCH)]);
            std::task::ready!(Pin::new(&mut *reader).poll_read(cx, &mut read))?;
            buf.extend_from_slice(read.filled());
            std::task::Poll::Ready(Ok(read.filled().len()))
        })
    })
}

/// The connection's alarm rang before anything came to read.
#[derive(Debug)]
struct Rang;

/// [`read_some`] until the connection's alarm rings, whichever is first.
fn read_until_alarm<'a, R: AsyncRead + Unpin>(
    reader: &'a mut R,
    buf: &'a mut BytesMut,
    limit: usize,
    outbox: &'a Outbox,
) -> impl Future<Output = Result<std::io::Result<usize>, Rang>> + 'a {
    let mut read = read_some(reader, buf, limit);
    std::future::poll_fn(move |cx| {
        if let std::task::Poll::Ready(read) = Pin::new(&mut read).poll(cx) {
            return std::task::Poll::Ready(Ok(read));
        }
        outbox.poll_alarm(cx).map(|()| Err(Rang))
    })
}

/// Reads messages until the connection ends: moves bytes from the socket
/// into the codec's [`Reader`], which decides what they are, and acts on
/// its events.
///
/// One alarm serves the connection: the read waits until the protocol's
/// idle deadline or the next ping, whichever is first, on the connection's
/// alarm, which the server's one clock rings (`crate::alarm`: up to half a
/// second late, never early); a ping due is handed to the writer through
/// the outbox ([`Outbox::ping`]).
///
/// Written for the size of the connection's state (an idle connection is
/// mostly this future): not an `async fn`, whose arguments would be kept
/// twice; the codec's event and the protocol's step are dropped before the
/// loop waits, and no event is alive while it reads.
fn read_loop<'a, R, P, F>(
    reader: &'a mut R,
    buf: &'a mut BytesMut,
    protocol: &'a mut P,
    sub: &'a Subscriber,
    limits: &'a Limits,
    writer: &'a mut Running<'_, F>,
) -> impl Future<Output = (LoopEnd, Ending)> + 'a
where
    R: AsyncRead + Unpin,
    P: Protocol,
    F: Future<Output = WriterExit>,
{
    use Ending::{Closed, Vanished};
    let close = |code: u16, reason: &str| Control::Close {
        code,
        reason: reason.into(),
        last: None,
    };
    async move {
        let mut frames = Reader::new(limits.max_message_bytes as usize);
        let mut close_sent = false;
        let now = Instant::now();
        let mut activity = Activity {
            last_frame: now,
            last_message: now,
        };
        // Tokio's clock, as the timer's: the ping does not drift from it.
        let mut next_ping = (limits.ping_interval_ms != 0)
            .then(|| tokio::time::Instant::now() + limits.ping_interval());
        loop {
            // What to send: the event and the protocol's step are gone
            // before the first send waits.
            let replies = {
                // Read until the codec has an event.
                let (event, now) = loop {
                    let seen = frames.frames();
                    let now = Instant::now();
                    let error = {
                        let read = frames.read(buf);
                        if frames.frames() != seen {
                            activity.last_frame = now;
                        }
                        match read {
                            Ok(Some(event)) => break (event, now),
                            Ok(None) => None,
                            Err(e) => Some(e),
                        }
                    };
                    if let Some(e) = error {
                        if close_sent {
                            return (LoopEnd::Done, Closed);
                        }
                        warn!(connection = sub.id(), error = %e, code = e.close_code(), "bad WebSocket frame; closing");
                        let bye = close(e.close_code(), e.close_reason());
                        writer.send(sub.outbox(), bye).await;
                        return (LoopEnd::Drain, Closed);
                    }
                    // Nothing whole yet: read more. A connection waiting for a new
                    // frame holds no buffer; one in the middle of a frame reserves
                    // what the frame needs.
                    let wanted = frames.wanted(buf).saturating_sub(buf.len());
                    if buf.is_empty() {
                        *buf = BytesMut::new();
                    } else {
                        buf.reserve(wanted);
                    }
                    let limit = wanted.max(MIN_READ);
                    let deadline = if close_sent {
                        tokio::time::Instant::from_std(now + CLOSE_LINGER)
                    } else {
                        let idle = tokio::time::Instant::from_std(protocol.deadline(&activity));
                        next_ping.map_or(idle, |ping| ping.min(idle))
                    };
                    // The server's one clock wakes the connection then
                    // (crate::alarm), not a timer of its own.
                    sub.outbox().set_alarm(deadline);
                    let read = tokio::select! {
                        biased;
                        exit = writer.ended(), if writer.exit.is_none() => {
                            match exit {
                                WriterExit::CloseSent => {
                                    close_sent = true;
                                    continue;
                                }
                                WriterExit::IoFailed => return (LoopEnd::Done, Vanished),
                                _ => return (LoopEnd::Done, Closed),
                            }
                        }
                        read = read_until_alarm(reader, buf, limit, sub.outbox()) => read,
                    };
                    match read {
                        Ok(Ok(0)) => {
                            debug!(connection = sub.id(), "connection ended");
                            return (LoopEnd::Done, if close_sent { Closed } else { Vanished });
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            debug!(connection = sub.id(), error = %e, "connection ended");
                            return (LoopEnd::Done, if close_sent { Closed } else { Vanished });
                        }
                        Err(Rang) if close_sent => return (LoopEnd::Done, Closed),
                        Err(Rang) => {
                            let due = tokio::time::Instant::now();
                            if let Some(ping) = next_ping.filter(|ping| *ping <= due) {
                                match protocol.heartbeat() {
                                    // Skipped when the control queue is full:
                                    // the client reads nothing, and its
                                    // deadline will close it.
                                    Some((_, beat)) => {
                                        let _ = sub.outbox().try_send_control(Control::Reply(beat));
                                    }
                                    None => sub.outbox().ping(),
                                }
                                // A late timer delays the next ping rather than
                                // sending two in a row.
                                next_ping = Some(due.max(ping) + limits.ping_interval());
                            }
                            // Activity the protocol tracks elsewhere (data sent) may
                            // have moved the deadline.
                            if protocol.deadline(&activity) > Instant::now() {
                                continue;
                            }
                            let (code, reason) = protocol.idle_close();
                            debug!(connection = sub.id(), reason, "closing an idle connection");
                            let bye = close(code, reason);
                            writer.send(sub.outbox(), bye).await;
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
                match event {
                    Event::Close(payload) => {
                        // Echo the client's close (RFC 6455 §5.5.1) and end.
                        writer.send(sub.outbox(), Control::CloseEcho(payload)).await;
                        return (LoopEnd::Done, Closed);
                    }
                    Event::Ping(payload) => {
                        activity.last_message = now;
                        if !writer.send(sub.outbox(), Control::Pong(payload)).await {
                            return (LoopEnd::Done, Vanished);
                        }
                        continue;
                    }
                    Event::Pong(_) => continue,
                    Event::Message { kind, payload } => {
                        activity.last_message = now;
                        let step = protocol.on_message(kind, &payload, now);
                        drop(payload);
                        let replies = match controls(step, &mut close_sent) {
                            Ok(replies) => replies,
                            // Work the message needs first: nothing more is
                            // read until it is done, the writer runs meanwhile.
                            Err(later) => {
                                let step = Box::pin(writer.alongside(later)).await;
                                match writer.exit {
                                    None => {}
                                    Some(WriterExit::CloseSent) => {
                                        close_sent = true;
                                        continue;
                                    }
                                    Some(WriterExit::IoFailed) => {
                                        return (LoopEnd::Done, Vanished);
                                    }
                                    Some(_) => return (LoopEnd::Done, Closed),
                                }
                                controls(step, &mut close_sent).unwrap_or_default()
                            }
                        };
                        if let Some(n) = protocol.subscriptions() {
                            sub.set_subscriptions(n);
                        }
                        replies
                    }
                }
            };
            // Not a `for` loop: the `Option` its `next` returns would be
            // kept (64 bytes) across each send.
            let mut replies = replies.into_iter();
            loop {
                let Some(item) = replies.next() else { break };
                if !writer.send(sub.outbox(), item).await {
                    return (LoopEnd::Done, Vanished);
                }
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
    /// Work the message needs before its answer, such as a lookup on
    /// another node: the session runs it to its own step. Meanwhile nothing
    /// more is read from the connection, so that its messages are still
    /// handled one at a time and in order, and its writer keeps writing
    /// what the fan-out queues. The work must end in a bounded time (a
    /// lookup with its own timeout): the connection's idle deadline is not
    /// checked until it does.
    Later(Later),
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

/// What the writer is to send for `step` (noting a close in `close_sent`),
/// or, for [`Step::Later`], the work to do first.
fn controls(step: Step, close_sent: &mut bool) -> Result<Vec<Control>, Later> {
    Ok(match step {
        Step::Later(later) => return Err(later),
        Step::Nothing => Vec::new(),
        Step::Reply(bytes) => vec![Control::Reply(bytes)],
        Step::Replies(all) => all.into_iter().map(Control::Reply).collect(),
        Step::Frame(frame) => vec![Control::Frame(frame)],
        Step::Ack(id) => vec![Control::Ack(id)],
        Step::Close { code, reason, last } => {
            *close_sent = true;
            vec![Control::Close { code, reason, last }]
        }
    })
}

/// The work of a [`Step::Later`]: a future whose output is the message's
/// step. Equal only to itself.
pub struct Later(Pin<Box<dyn Future<Output = Step> + Send>>);

impl Later {
    /// The work `future` does, ending in its step.
    pub fn new(future: impl Future<Output = Step> + Send + 'static) -> Later {
        Later(Box::pin(future))
    }
}

/// The work itself, to await where no session runs it (a test, say).
impl Future for Later {
    type Output = Step;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Step> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Later(..)")
    }
}

impl PartialEq for Later {
    fn eq(&self, other: &Later) -> bool {
        std::ptr::addr_eq(&*self.0, &*other.0)
    }
}

impl Eq for Later {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    /// Answers every message with its payload.
    struct Echo;

    impl Protocol for Echo {
        fn on_message(&mut self, _kind: MessageKind, payload: &[u8], _now: Instant) -> Step {
            Step::Reply(Bytes::copy_from_slice(payload))
        }

        fn deadline(&self, activity: &Activity) -> Instant {
            activity.last_frame + Duration::from_secs(60)
        }

        fn idle_close(&self) -> (u16, &str) {
            (1000, "idle")
        }
    }

    fn transport() -> Transport {
        Transport {
            variant: 0,
            reply_opcode: OpCode::Text,
            max_message_bytes: 1 << 16,
            slow_consumer: SlowConsumer::Disconnect,
            queue_capacity: None,
            endpoint: "test",
            format: "json",
            peer: Peer { remote: None },
        }
    }

    /// A client's masked text frame.
    fn client_text(text: &[u8]) -> Vec<u8> {
        let mask = [7u8, 1, 2, 3];
        let mut frame = vec![0x81, 0x80 | u8::try_from(text.len()).unwrap()];
        frame.extend_from_slice(&mask);
        frame.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    /// The bound on a connection's own state (its task's future, with the
    /// test's one-word protocol): what an idle connection mostly costs. The
    /// writer runs in this future, not in a task of its own, and no timer
    /// does (776 bytes). An endpoint's task fits tokio's 1,024-byte cell
    /// while its future stays under 928 bytes, which leaves its protocol
    /// about 150.
    const SESSION_BUDGET: usize = 800;

    #[tokio::test]
    async fn a_connection_is_one_task_whose_state_fits_its_budget() {
        let (mut client, server) = tokio::io::duplex(4096);
        let (read, write) = tokio::io::split(server);
        let (_shutdown, rx) = tokio::sync::watch::channel(false);
        let connections = Connections::new(Default::default(), rx);
        let (tracker, _drained) = crate::connections::tracker();
        let session = run(
            read,
            BytesMut::new(),
            write,
            connections.clone(),
            transport(),
            |_| Echo,
            tracker,
        );
        let size = std::mem::size_of_val(&session);
        assert!(
            size <= SESSION_BUDGET,
            "the session's future is {size} bytes"
        );

        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let task = tokio::spawn(session);
        client.write_all(&client_text(b"hello")).await.unwrap();
        let mut reply = [0u8; 7];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"\x81\x05hello");
        // The connection is served, reading and writing, by one task.
        assert_eq!(metrics.num_alive_tasks(), before + 1);
        assert_eq!(connections.open(), 1);

        // The client closes; the echo comes back and the connection ends.
        client.write_all(&[0x88, 0x80, 0, 0, 0, 0]).await.unwrap();
        let mut close = [0u8; 2];
        client.read_exact(&mut close).await.unwrap();
        assert_eq!(close, [0x88, 0x00]);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(connections.open(), 0);
    }

    /// A session of `Echo` over an in-memory socket with `settings`, its
    /// client side and the sender of the server's shutdown signal.
    fn session_with(
        settings: crate::ConnectionSettings,
    ) -> (
        tokio::io::DuplexStream,
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let (client, task) = session_on(settings, rx);
        (client, shutdown, task)
    }

    /// A session of `Echo` of a server whose shutdown signal is `rx`.
    fn session_on(
        settings: crate::ConnectionSettings,
        rx: tokio::sync::watch::Receiver<bool>,
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
        session_of(settings, rx, |_| Echo)
    }

    /// A session of the protocol `make` makes, over an in-memory socket, of
    /// a server whose shutdown signal is `rx`: its client side and its task.
    fn session_of<P: Protocol + 'static>(
        settings: crate::ConnectionSettings,
        rx: tokio::sync::watch::Receiver<bool>,
        make: impl FnOnce(Subscriber) -> P + Send + 'static,
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
        let (client, server) = tokio::io::duplex(4096);
        let (read, write) = tokio::io::split(server);
        let connections = Connections::new(settings, rx);
        let (tracker, _drained) = crate::connections::tracker();
        let session = run(
            read,
            BytesMut::new(),
            write,
            connections,
            transport(),
            make,
            tracker,
        );
        (client, tokio::spawn(session))
    }

    #[tokio::test(start_paused = true)]
    async fn the_one_timer_pings_every_interval_beside_the_idle_deadline() {
        let settings = crate::ConnectionSettings {
            ping_interval: Duration::from_secs(10),
            ..Default::default()
        };
        let (mut client, _shutdown, _task) = session_with(settings);
        let start = tokio::time::Instant::now();
        for n in 1..=3u32 {
            let mut ping = [0u8; 2];
            client.read_exact(&mut ping).await.unwrap();
            assert_eq!(ping, [0x89, 0x00]);
            assert_eq!(start.elapsed(), Duration::from_secs(10) * n);
        }
        // A message in between does not move the pings.
        client.write_all(&client_text(b"hi")).await.unwrap();
        let mut echo = [0u8; 4];
        client.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"\x81\x02hi");
        let mut ping = [0u8; 2];
        client.read_exact(&mut ping).await.unwrap();
        assert_eq!(ping, [0x89, 0x00]);
        assert_eq!(start.elapsed(), Duration::from_secs(40));
    }

    /// Echo with a heartbeat of its own: `2` every three seconds.
    struct Beating;

    impl Protocol for Beating {
        fn heartbeat(&self) -> Option<(Duration, Bytes)> {
            Some((Duration::from_secs(3), Bytes::from_static(b"2")))
        }

        fn on_message(&mut self, kind: MessageKind, payload: &[u8], now: Instant) -> Step {
            Echo.on_message(kind, payload, now)
        }

        fn deadline(&self, activity: &Activity) -> Instant {
            Echo.deadline(activity)
        }

        fn idle_close(&self) -> (u16, &str) {
            (1000, "idle")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_protocols_heartbeat_replaces_the_ping_on_each_connections_own_schedule() {
        let settings = crate::ConnectionSettings {
            ping_interval: Duration::from_secs(10),
            ..Default::default()
        };
        let start = tokio::time::Instant::now();
        let (_shutdown, rx) = tokio::sync::watch::channel(false);
        let (mut first, _a) = session_of(settings.clone(), rx.clone(), |_| Beating);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (mut second, _b) = session_of(settings, rx, |_| Beating);
        // Each gets the protocol's message (no WebSocket ping) every three
        // seconds from its own start: the two are a second apart.
        for n in 1..=4u32 {
            let mut beat = [0u8; 3];
            first.read_exact(&mut beat).await.unwrap();
            assert_eq!(&beat, b"\x81\x012");
            assert_eq!(start.elapsed(), Duration::from_secs(3) * n);
            second.read_exact(&mut beat).await.unwrap();
            assert_eq!(&beat, b"\x81\x012");
            assert_eq!(
                start.elapsed(),
                Duration::from_secs(3) * n + Duration::from_secs(1)
            );
        }
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_its_replies_waits_and_then_gets_them_all() {
        let (client, _shutdown, task) = session_with(Default::default());
        // Many more requests than the control queue and the socket hold,
        // while the client reads nothing: the socket fills, the writer waits
        // on it, the queue fills, and the reader waits for room.
        let payload = [b'x'; 100];
        let requests = crate::outbox::CONTROL_QUEUE * 16;
        let mut sent = Vec::new();
        for n in 0..requests {
            let mut text = format!("{n:04}").into_bytes();
            text.extend_from_slice(&payload);
            sent.extend(client_text(&text));
        }
        let (mut read, mut write) = tokio::io::split(client);
        let writing = tokio::spawn(async move {
            write.write_all(&sent).await.unwrap();
            write
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!writing.is_finished(), "the server stopped reading");
        // Now the client reads: every reply comes, in order, at once (the
        // writer's progress wakes the waiting reader; no timer does).
        let replies = async {
            for n in 0..requests {
                let mut head = [0u8; 2];
                read.read_exact(&mut head).await.unwrap();
                assert_eq!(head, [0x81, 104]);
                let mut body = [0u8; 104];
                read.read_exact(&mut body).await.unwrap();
                assert_eq!(&body[..4], format!("{n:04}").as_bytes());
            }
        };
        tokio::time::timeout(Duration::from_secs(10), replies)
            .await
            .expect("the reader was woken when the writer made room");
        let _write = writing.await.unwrap();
        assert!(!task.is_finished());
    }

    #[tokio::test]
    async fn the_servers_shutdown_reaches_every_open_connection_and_later_ones() {
        let (mut client, shutdown, task) = session_with(Default::default());
        shutdown.send(true).unwrap();
        let mut close = [0u8; 4];
        client.read_exact(&mut close).await.unwrap();
        assert_eq!(close[0], 0x88, "a close frame");
        assert_eq!(close[2..], 1001u16.to_be_bytes());
        client.write_all(&[0x88, 0x80, 0, 0, 0, 0]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();

        // A connection set up after the signal closes at once too.
        let (_sent, rx) = tokio::sync::watch::channel(true);
        let (mut client, _task) = session_on(Default::default(), rx);
        let mut close = [0u8; 4];
        client.read_exact(&mut close).await.unwrap();
        assert_eq!(close[2..], 1001u16.to_be_bytes());
    }

    /// Keeps, when its transport vanishes, what its connection's queue holds
    /// at that point, as a reliable session does; and, to stand for the
    /// fan-out, which offers from other threads at any moment, offers one
    /// message of its own first.
    struct Keeper {
        sub: Subscriber,
        kept: Arc<std::sync::Mutex<Option<(Ending, bool, usize)>>>,
    }

    impl Protocol for Keeper {
        fn on_message(&mut self, _kind: MessageKind, _payload: &[u8], _now: Instant) -> Step {
            Step::Nothing
        }

        fn deadline(&self, activity: &Activity) -> Instant {
            activity.last_frame + Duration::from_secs(60)
        }

        fn idle_close(&self) -> (u16, &str) {
            (1000, "idle")
        }

        fn on_close(&mut self, ending: Ending) {
            let offered = self
                .sub
                .offer(0, crate::Outbound::Frame(Bytes::from_static(b"\x81\x01x")));
            let mut batch = crate::outbox::Batch::default();
            self.sub.outbox().take_now(&mut batch);
            *self.kept.lock().unwrap() = Some((ending, offered, batch.data.len()));
        }
    }

    #[tokio::test]
    async fn what_is_offered_after_the_transport_vanished_waits_for_the_protocol() {
        let (_shutdown, rx) = tokio::sync::watch::channel(false);
        let kept = Arc::new(std::sync::Mutex::new(None));
        let (client, task) = session_of(Default::default(), rx, {
            let kept = kept.clone();
            |sub| Keeper { sub, kept }
        });
        // The client vanishes with nothing queued: the reader ends first and
        // the writer follows it with nothing to write.
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        // Until the protocol has taken it, the queue takes what the fan-out
        // offers: a reliable session parked now keeps it.
        assert_eq!(*kept.lock().unwrap(), Some((Ending::Vanished, true, 1)));
    }

    /// Answers `wait` once `gate` opens (a lookup elsewhere, in a real
    /// endpoint), and every other message at once, with its payload.
    struct Waiter {
        gate: Option<tokio::sync::oneshot::Receiver<()>>,
    }

    impl Protocol for Waiter {
        fn on_message(&mut self, _kind: MessageKind, payload: &[u8], _now: Instant) -> Step {
            let echo = Bytes::copy_from_slice(payload);
            match (payload, self.gate.take()) {
                (b"wait", Some(gate)) => Step::Later(Later::new(async move {
                    let _ = gate.await;
                    Step::Reply(echo)
                })),
                _ => Step::Reply(echo),
            }
        }

        fn deadline(&self, activity: &Activity) -> Instant {
            activity.last_frame + Duration::from_secs(60)
        }

        fn idle_close(&self) -> (u16, &str) {
            (1000, "idle")
        }
    }

    #[tokio::test]
    async fn a_message_that_waits_holds_the_next_ones_back_but_not_the_writer() {
        let (_shutdown, rx) = tokio::sync::watch::channel(false);
        let (open, gate) = tokio::sync::oneshot::channel();
        let (sub_tx, sub_rx) = std::sync::mpsc::channel();
        let (mut client, task) = session_of(Default::default(), rx, move |sub: Subscriber| {
            sub_tx.send(sub.clone()).unwrap();
            Waiter { gate: Some(gate) }
        });
        let sub = sub_rx.recv().unwrap();
        let mut requests = client_text(b"wait");
        requests.extend(client_text(b"next"));
        client.write_all(&requests).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // While `wait` waits, what the fan-out queues is written...
        assert!(sub.offer(
            0,
            crate::Outbound::Frame(Bytes::from_static(b"\x81\x04data"))
        ));
        let mut frame = [0u8; 6];
        client.read_exact(&mut frame).await.unwrap();
        assert_eq!(&frame, b"\x81\x04data");
        // ...and `next`, read with it, is not answered before `wait` is.
        let early = tokio::time::timeout(Duration::from_millis(100), client.read_u8()).await;
        assert!(
            early.is_err(),
            "a message was answered while the one before it waited"
        );
        open.send(()).unwrap();
        let mut answers = [0u8; 12];
        client.read_exact(&mut answers).await.unwrap();
        assert_eq!(&answers, b"\x81\x04wait\x81\x04next");
        assert!(!task.is_finished());
    }

    #[tokio::test]
    async fn reading_holds_only_what_came_not_the_scratch_buffer() {
        let mut socket: &[u8] = b"abc";
        let mut buf = BytesMut::new();
        let n = read_some(&mut socket, &mut buf, 256).await.unwrap();
        assert_eq!(n, 3);
        assert_eq!(&buf[..], b"abc");
        assert!(buf.capacity() < 64, "capacity {}", buf.capacity());
        // A frame in progress keeps its bytes and appends the next ones.
        let mut more: &[u8] = b"de";
        read_some(&mut more, &mut buf, 256).await.unwrap();
        assert_eq!(&buf[..], b"abcde");
        // A client that sends far ahead gets no more read than asked for:
        // the rest stays in its socket.
        let flood = vec![0x81u8; 100_000];
        let mut socket: &[u8] = &flood;
        let mut buf = BytesMut::new();
        let n = read_some(&mut socket, &mut buf, MIN_READ).await.unwrap();
        assert_eq!(n, MIN_READ);
        assert_eq!(buf.len(), MIN_READ);
        assert_eq!(socket.len(), flood.len() - MIN_READ);
    }
}
