//! The write side of a connection: the writer owns the socket's write half
//! (a future the [session](crate::session) polls in the connection's task).
//!
//! It waits for work (the [outbox](crate::outbox) going non-empty, the ping
//! timer, the gateway's shutdown), then takes everything queued in one go and
//! writes it with one `write_all` under the write timeout. Server frames are
//! not masked (RFC 6455 §5.1), so the fan-out builds each update's whole
//! frame once per wire format ([`Outbound::Frame`]); the writer copies those
//! bytes into one buffer, or writes a lone frame as it is, without
//! re-framing. The buffer exists only while a batch is written: an idle
//! connection holds none.
//!
//! Control items (replies, pongs, closes, acknowledgements) come first: a
//! reply is always written before data queued after it was decided.
//!
//! The writer is the same for every endpoint and knows none of their
//! protocols. Most data is pre-built frames ([`Outbound::Frame`]). An
//! endpoint whose messages carry a per-connection sequence number (the
//! reliable Azure Web PubSub subprotocols) queues [`Outbound::Sequenced`]
//! messages instead and gives the connection a [`Sequencer`]: the hook that
//! stamps each one at write time, so that numbers are gap-free per
//! connection whatever the fan-out or the slow-consumer policy dropped, and
//! keeps it until the client acknowledges it. What else differs per
//! endpoint is in [`WriterConfig`]: the opcode of replies and the goodbye
//! message sent before the shutdown's close frame.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tickwire_websocket::close_code;
use tickwire_websocket::frame::{OpCode, frame, put_close, put_control, put_frame};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use crate::meter::{Meter, SAMPLE_WRITES};
use crate::outbox::{Batch, Outbox, Stop};
use crate::subscriber::Subscriber;

/// One item of a connection's data queue, as the fan-out leaves it.
///
/// Cloning either variant is a reference-count increment: the fan-out
/// encodes an update once and every subscriber's queue holds the same bytes.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A complete, unmasked WebSocket frame (header and payload), built once
    /// per update and wire format and written as it is.
    Frame(Bytes),
    /// A message the connection's [`Sequencer`] stamps with its sequence
    /// number at write time.
    Sequenced(Arc<dyn SequencedMessage>),
}

/// A data message whose bytes depend on the connection it is written to: a
/// sequence number is part of it (see [`Sequencer`]). Shared by every
/// subscriber of an update, as a pre-built frame is.
pub trait SequencedMessage: Send + Sync + std::fmt::Debug + 'static {
    /// Appends the message's whole frame (header and payload), stamped with
    /// `sequence_id`, and returns how many bytes it appended.
    fn write_frame(&self, sequence_id: u64, buf: &mut BytesMut) -> usize;
}

/// A connection's sequencing: the hook a reliable protocol supplies (see
/// [`Protocol::sequencer`](crate::session::Protocol::sequencer)).
///
/// The writer calls [`write`](Sequencer::write) for every
/// [`Outbound::Sequenced`] it writes, in order, and
/// [`ack`](Sequencer::ack) for every [`Step::Ack`](crate::session::Step::Ack)
/// the protocol returns. It runs on the writer task; it need not be `Sync`.
pub trait Sequencer: Send + 'static {
    /// Stamps `msg` with the connection's next sequence number, writes it
    /// into `buf` and keeps it until acknowledged; `Err` with a reason when
    /// the connection must be closed instead (1008: too much unacknowledged).
    fn write(&mut self, msg: &Arc<dyn SequencedMessage>, buf: &mut BytesMut) -> Result<(), String>;

    /// The client acknowledged every message up to `sequence_id`.
    fn ack(&mut self, sequence_id: u64);

    /// Called once, when the writer takes its first batch, after that
    /// batch's control items (the protocol's opening message) and before
    /// any data: a resumed session writes the messages its client has not
    /// acknowledged, with their sequence numbers, so they go out before
    /// anything new; `Err` with a reason when the session cannot go on
    /// (1008, as from [`write`](Sequencer::write)). Nothing by default.
    fn resume(&mut self, _buf: &mut BytesMut) -> Result<(), String> {
        Ok(())
    }
}

impl Outbound {
    /// A text frame carrying `text`, built once for every subscriber.
    pub fn text(text: &[u8]) -> Outbound {
        Outbound::Frame(frame(OpCode::Text, text))
    }

    /// A binary frame carrying `bytes`, built once for every subscriber.
    pub fn binary(bytes: &[u8]) -> Outbound {
        Outbound::Frame(frame(OpCode::Binary, bytes))
    }
}

/// Work for the writer from the connection's reader side.
#[derive(Debug)]
pub enum Control {
    /// An encoded protocol message (connected, ack, pong) to send as a data
    /// frame of the connection's reply opcode.
    Reply(Bytes),
    /// A whole frame to write as it is.
    Frame(Bytes),
    /// A WebSocket pong answering the client's ping (RFC 6455 §5.5.3).
    Pong(Bytes),
    /// An acknowledgement for the connection's [`Sequencer`].
    Ack(u64),
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

/// The write half of a connection, which a writer may ask to end with an
/// abortive close: when a client too slow to read is dropped, a reset frees
/// at once the kernel's send queue (megabytes) that an orderly close would
/// keep, in FIN-WAIT-1, for as long as the peer stays.
pub trait AbortiveClose {
    /// Makes the coming close of the socket a reset. Nothing by default.
    fn abort_on_close(&self) {}
}

impl AbortiveClose for tokio::net::tcp::OwnedWriteHalf {
    fn abort_on_close(&self) {
        let socket = socket2::SockRef::from(self.as_ref());
        if let Err(e) = socket.set_linger(Some(Duration::ZERO)) {
            debug!(error = %e, "SO_LINGER 0 failed");
        }
    }
}

impl<T> AbortiveClose for tokio::io::WriteHalf<T> {}

/// The reason of the close frame a client dropped for a full queue gets.
pub const SLOW_CONSUMER_REASON: &str = "slow consumer: the send queue is full";

/// How the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterExit {
    /// A close frame was written; the reader may wait for the client's.
    CloseSent,
    /// The connection was dropped (full queue under `disconnect`, or a
    /// failed write of a connection without a sequencer).
    Failed,
    /// A write failed or timed out on a connection with a [`Sequencer`]: its
    /// socket is gone, and what is queued was left for the protocol (see
    /// [`Outbox::writer_failed`](crate::outbox::Outbox::writer_failed)).
    IoFailed,
    /// The reader side went away.
    ReaderGone,
}

/// The writer's settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The opcode of replies ([`Control::Reply`]) and goodbyes: text or binary.
    pub reply_opcode: OpCode,
    /// Longest a single write may take.
    pub write_timeout: Duration,
    /// A message sent before the close frame when the gateway shuts down
    /// (the pubsub `disconnected` system message).
    /// Boxed: it is written once, at shutdown, and every connection keeps
    /// its config.
    pub goodbye: Option<Box<Bytes>>,
}

/// The writer task's state.
pub struct Writer<W> {
    io: W,
    config: WriterConfig,
    sub: Subscriber,
    /// The frames of one batch; empty (unallocated) between batches.
    buf: BytesMut,
    sequencer: Option<Box<dyn Sequencer>>,
    /// The first batch was taken (and the sequencer resumed).
    started: bool,
    /// Where its writes are counted.
    meter: Option<Arc<Meter>>,
    /// Writes with data so far (for sampling their latency).
    timed: u32,
}

impl<W> std::fmt::Debug for Writer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("connection", &self.sub.id())
            .field("sequenced", &self.sequencer.is_some())
            .finish_non_exhaustive()
    }
}

/// [`Writer::flush`]'s future.
enum Flush<'a, W> {
    /// The first write, tried when first polled.
    First {
        writer: &'a mut Writer<W>,
        bytes: &'a [u8],
    },
    /// What the socket did not take at once.
    Rest(Pin<Box<dyn Future<Output = bool> + Send + 'a>>),
    /// Polled to its end.
    Done,
}

impl<W: AsyncWrite + AbortiveClose + Unpin + Send> Future for Flush<'_, W> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<bool> {
        let this = &mut *self;
        if let Flush::Rest(rest) = this {
            let done = std::task::ready!(rest.as_mut().poll(cx));
            *this = Flush::Done;
            return Poll::Ready(done);
        }
        let Flush::First { writer, bytes } = std::mem::replace(this, Flush::Done) else {
            panic!("Flush polled after it completed");
        };
        let written = match Pin::new(&mut writer.io).poll_write(cx, bytes) {
            Poll::Ready(Ok(n)) if n == bytes.len() => return Poll::Ready(true),
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => {
                debug!(connection = writer.sub.id(), error = %e, "write failed");
                writer.count(&writer.sub.stats().write_errors);
                return Poll::Ready(false);
            }
            Poll::Pending => 0,
        };
        let mut rest = Box::pin(writer.flush_rest(&bytes[written..]));
        match rest.as_mut().poll(cx) {
            Poll::Ready(done) => Poll::Ready(done),
            Poll::Pending => {
                *this = Flush::Rest(rest);
                Poll::Pending
            }
        }
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

impl<W: AsyncWrite + AbortiveClose + Unpin + Send> Writer<W> {
    /// A writer of `io` with `config`, taking its batches from the
    /// connection's outbox.
    pub fn new(
        io: W,
        config: WriterConfig,
        sub: Subscriber,
        sequencer: Option<Box<dyn Sequencer>>,
    ) -> Self {
        Writer {
            io,
            config,
            sub,
            buf: BytesMut::new(),
            sequencer,
            started: false,
            meter: None,
            timed: 0,
        }
    }

    /// Counts the messages and bytes of every write on `meter`, and the
    /// time from the fan-out to the write in its latency histograms.
    #[must_use]
    pub fn metered(mut self, meter: Arc<Meter>) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Counts one write of `messages` data messages in `bytes` bytes, the
    /// oldest of which entered the fan-out at `oldest`.
    fn counted(&mut self, messages: usize, bytes: usize, oldest: Option<std::time::Instant>) {
        if let Some(meter) = &self.meter {
            meter.wrote(messages as u64, bytes as u64);
            if let Some(at) = oldest {
                // The first timed write, then one in SAMPLE_WRITES.
                if self.timed % SAMPLE_WRITES == 0 {
                    meter.latencies().publish_to_write.observe(at.elapsed());
                }
                self.timed = self.timed.wrapping_add(1);
            }
        }
    }

    /// Runs until a close frame is written, the connection fails, or the
    /// reader goes away.
    pub async fn run(mut self) -> WriterExit {
        let exit = self.run_in_place().await;
        if exit == WriterExit::ReaderGone {
            self.sub.outbox().writer_gone();
        }
        exit
    }

    /// [`run`](Writer::run), for a caller that keeps the writer in its own
    /// state (the session does: its future then holds the writer once), and
    /// that closes the queue itself ([`Outbox::writer_gone`]) when the
    /// writer ended because the reader did.
    pub(crate) async fn run_in_place(&mut self) -> WriterExit {
        let exit = self.serve().await;
        match exit {
            // The session takes what is queued, then calls `writer_gone`.
            WriterExit::IoFailed => self.sub.outbox().writer_failed(),
            // The reader left first, so nobody waits for room. The queue
            // stays open until the session has let its protocol take what
            // came meanwhile ([`Protocol::on_close`], which may keep a
            // session whose transport vanished): the fan-out may offer at
            // any moment until then, and refusing here would lose what a
            // reliable session promised.
            //
            // [`Protocol::on_close`]: crate::session::Protocol::on_close
            WriterExit::ReaderGone => {}
            WriterExit::Failed | WriterExit::CloseSent => self.sub.outbox().writer_gone(),
        }
        exit
    }

    /// The writer waits on its outbox alone: pings ([`Outbox::ping`], from
    /// the session when its alarm rings) and the server's shutdown
    /// ([`Outbox::shut_down`], from [`Connections`](crate::Connections)) come
    /// through it, so a connection holds no timer and no shutdown waiter of
    /// its writer's own.
    async fn serve(&mut self) -> WriterExit {
        let mut batch = Batch::default();
        loop {
            self.sub.outbox().take(&mut batch).await;
            if batch.dropped {
                self.close_slow_consumer();
                return WriterExit::Failed;
            }
            if batch.abandoned {
                return self.failed();
            }
            if batch.reader_gone {
                return WriterExit::ReaderGone;
            }
            let (ping_due, shutting_down) = (batch.ping, batch.shutdown);
            let mut stop = false;
            // One queued frame and nothing else: write the shared bytes as they are.
            let single = (self.started
                && batch.ctrl.is_empty()
                && batch.data.len() == 1
                && !ping_due
                && !shutting_down)
                .then(|| match &batch.data[0].out {
                    Outbound::Frame(frame) => Some(frame.clone()),
                    Outbound::Sequenced(_) => None,
                })
                .flatten();
            if let Some(frame) = single {
                batch.data.clear();
                if !self.flush(&frame).await {
                    return self.failed();
                }
                self.counted(1, frame.len(), batch.oldest);
                Outbox::recycle(&mut batch);
                continue;
            }
            if shutting_down {
                stop = matches!(self.render(Work::Shutdown), After::Stop);
            }
            // Control items first: an ack goes before data of the group it confirmed.
            while let Some(c) = batch.ctrl.pop_front() {
                if stop {
                    break;
                }
                stop = matches!(self.render(Work::Ctrl(c)), After::Stop);
            }
            if !self.started {
                self.started = true;
                if let (Some(sequencer), false) = (self.sequencer.as_mut(), stop) {
                    if let Err(reason) = sequencer.resume(&mut self.buf) {
                        warn!(connection = self.sub.id(), reason, "closing");
                        put_close(&mut self.buf, close_code::POLICY, &reason);
                        stop = true;
                    }
                }
            }
            let mut messages = 0;
            while let Some(item) = batch.data.pop_front() {
                if stop {
                    break;
                }
                messages += 1;
                stop = matches!(self.render(Work::Data(item.out)), After::Stop);
            }
            let oldest = if messages > 0 { batch.oldest } else { None };
            if ping_due && !stop {
                stop = matches!(self.render(Work::Ping), After::Stop);
            }
            Outbox::recycle(&mut batch);
            if !self.buf.is_empty() {
                let buf = std::mem::take(&mut self.buf);
                if !self.flush(&buf).await {
                    return self.failed();
                }
                self.counted(messages, buf.len(), oldest);
            }
            if stop {
                // Half-close: the client sees our close frame, then EOF, and
                // may still send its own close frame to the reader.
                let shutdown = tokio::time::timeout(self.config.write_timeout, self.io.shutdown());
                let _ = Box::pin(shutdown).await;
                return WriterExit::CloseSent;
            }
        }
    }

    /// Writes `bytes` under the write timeout. Most writes complete at
    /// once: the timer is armed only when the socket pushes back.
    ///
    /// Not an `async fn`: its future is two words until the socket pushes
    /// back, and the wait (a timer, the write, the drop signal) is boxed
    /// then, so that no connection's state keeps room for it.
    fn flush<'a>(&'a mut self, bytes: &'a [u8]) -> Flush<'a, W> {
        Flush::First {
            writer: self,
            bytes,
        }
    }

    /// Writes what the socket did not take at once, under the write timeout
    /// or until the connection is dropped or abandoned.
    async fn flush_rest(&mut self, rest: &[u8]) -> bool {
        let write = tokio::time::timeout(self.config.write_timeout, self.io.write_all(rest));
        let outcome = tokio::select! {
            outcome = write => outcome,
            // The queue overflowed while the socket was full, or the client
            // came back on another connection while this one's socket was
            // full (a dead link): stop now, not after the write timeout. What
            // was numbered for this write is kept by its sequencer and
            // written again on the new connection.
            stop = self.sub.outbox().stopped() => {
                match stop {
                    Stop::Dropped => debug!(connection = self.sub.id(), "slow consumer: queue full while the socket is full"),
                    Stop::Abandoned => debug!(connection = self.sub.id(), "abandoned while the socket is full"),
                }
                self.io.abort_on_close();
                return false;
            }
        };
        match outcome {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                debug!(connection = self.sub.id(), error = %e, "write failed");
                self.count(&self.sub.stats().write_errors);
                false
            }
            Err(_) => {
                warn!(
                    connection = self.sub.id(),
                    timeout_secs = self.config.write_timeout.as_secs(),
                    "write timed out; dropping the client"
                );
                self.count(&self.sub.stats().write_timeouts);
                false
            }
        }
    }

    fn count(&self, counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops a client whose queue overflowed: a close frame (1008) if the
    /// socket takes it now, without waiting, then an abortive close.
    fn close_slow_consumer(&mut self) {
        let mut buf = BytesMut::new();
        put_close(&mut buf, close_code::POLICY, SLOW_CONSUMER_REASON);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let written = Pin::new(&mut self.io).poll_write(&mut cx, &buf);
        debug!(
            connection = self.sub.id(),
            close_written = matches!(written, Poll::Ready(Ok(n)) if n == buf.len()),
            "slow consumer: queue full, dropping the client"
        );
        self.io.abort_on_close();
    }

    /// The socket failed: a connection with a sequencer leaves what is
    /// queued to its protocol ([`WriterExit::IoFailed`]), any other is
    /// dropped.
    fn failed(&mut self) -> WriterExit {
        if self.sequencer.is_some() {
            WriterExit::IoFailed
        } else {
            self.sub.drop_connection();
            WriterExit::Failed
        }
    }

    /// Renders one item into the buffer.
    fn render(&mut self, work: Work) -> After {
        let op = self.config.reply_opcode;
        match work {
            Work::Data(Outbound::Frame(frame)) => {
                self.buf.extend_from_slice(&frame);
                After::Continue
            }
            Work::Data(Outbound::Sequenced(msg)) => {
                let Some(sequencer) = self.sequencer.as_mut() else {
                    warn!(
                        connection = self.sub.id(),
                        "sequenced message for a connection without a sequencer; skipped"
                    );
                    return After::Continue;
                };
                match sequencer.write(&msg, &mut self.buf) {
                    Ok(()) => After::Continue,
                    Err(reason) => {
                        warn!(connection = self.sub.id(), reason, "closing");
                        put_close(&mut self.buf, close_code::POLICY, &reason);
                        After::Stop
                    }
                }
            }
            Work::Ctrl(Control::Reply(bytes)) => {
                put_frame(&mut self.buf, op, &bytes);
                After::Continue
            }
            Work::Ctrl(Control::Pong(payload)) => {
                put_control(&mut self.buf, OpCode::Pong, &payload);
                After::Continue
            }
            Work::Ctrl(Control::Frame(frame)) => {
                self.buf.extend_from_slice(&frame);
                After::Continue
            }
            Work::Ctrl(Control::Ack(id)) => {
                if let Some(sequencer) = self.sequencer.as_mut() {
                    sequencer.ack(id);
                }
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
                put_control(&mut self.buf, OpCode::Close, &payload);
                After::Stop
            }
            Work::Ping => {
                put_frame(&mut self.buf, OpCode::Ping, b"");
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    use crate::outbox::{Pacer, SlowConsumer, SlowConsumerStats};
    use crate::subscriber::QueuePolicy;

    /// One write a [`Recorder`] took: when, and the bytes.
    type Write = (tokio::time::Instant, Vec<u8>);

    /// A socket that takes every write whole and records it with the time.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Write>>>, Arc<std::sync::atomic::AtomicBool>);

    impl AbortiveClose for Recorder {
        fn abort_on_close(&self) {
            self.1.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    impl Recorder {
        fn writes(&self) -> Vec<(Duration, Vec<u8>)> {
            let writes = self.0.lock().unwrap();
            let start = writes.first().map(|w| w.0);
            writes
                .iter()
                .map(|(at, bytes)| (*at - start.unwrap_or(*at), bytes.clone()))
                .collect()
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let now = tokio::time::Instant::now();
            self.0.lock().unwrap().push((now, buf.to_vec()));
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A writer over a [`Recorder`], its data paced in periods of
    /// `write_delay` (none when zero), and its subscriber.
    fn recorded_writer(write_delay: Duration) -> (Subscriber, Recorder) {
        recorded_writer_with(write_delay, None)
    }

    /// A recorded writer with `sequencer`.
    fn recorded_writer_with(
        write_delay: Duration,
        sequencer: Option<Box<dyn Sequencer>>,
    ) -> (Subscriber, Recorder) {
        let pacer = Pacer::start(write_delay);
        let sub = Subscriber::new(
            1,
            0,
            QueuePolicy {
                capacity: 16,
                slow_consumer: SlowConsumer::Disconnect,
                pacer: pacer.clone(),
            },
            Arc::new(SlowConsumerStats::default()),
        );
        let recorder = Recorder::default();
        let config = WriterConfig {
            reply_opcode: OpCode::Text,
            write_timeout: Duration::from_secs(10),
            goodbye: Some(Box::new(Bytes::from_static(b"bye"))),
        };
        let writer = Writer::new(recorder.clone(), config, sub.clone(), sequencer);
        tokio::spawn(async move {
            // The pacer lives as long as the writer, as the gateway's does.
            let _pacer = pacer;
            writer.run().await
        });
        (sub, recorder)
    }

    /// Lets the writer task run without moving the (paused) clock.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    async fn offer_at(sub: &Subscriber, after: Duration, text: &[u8]) {
        tokio::time::sleep(after).await;
        assert!(sub.offer(0, Outbound::text(text)));
        settle().await;
    }

    /// Queues the reply `r` and lets the writer run.
    async fn reply_r(sub: &Subscriber) {
        let reply = Control::Reply(Bytes::from_static(b"r"));
        assert!(sub.outbox().send_control(reply).await.is_ok());
        settle().await;
    }

    #[tokio::test(start_paused = true)]
    async fn data_in_a_period_already_written_waits_for_the_next_in_one_write() {
        let ms = Duration::from_millis;
        // Periods start at 0, 10, 20, ... ms.
        let (sub, recorder) = recorded_writer(ms(10));
        offer_at(&sub, ms(0), b"a").await;
        // 1 ms and 4 ms: the period of `a` had its write, both wait for 10 ms.
        offer_at(&sub, ms(1), b"b").await;
        offer_at(&sub, ms(3), b"c").await;
        assert_eq!(recorder.writes().len(), 1, "b and c wait");
        // At 12 ms: the period from 10 had its write (b and c), so 20 ms.
        offer_at(&sub, ms(8), b"e").await;
        // At 112 ms, in a period without a write: at once.
        offer_at(&sub, ms(100), b"d").await;
        let writes = recorder.writes();
        assert_eq!(
            writes,
            [
                (ms(0), b"\x81\x01a".to_vec()),
                (ms(10), b"\x81\x01b\x81\x01c".to_vec()),
                (ms(20), b"\x81\x01e".to_vec()),
                (ms(112), b"\x81\x01d".to_vec()),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_delay_every_batch_is_written_at_once() {
        let ms = Duration::from_millis;
        let (sub, recorder) = recorded_writer(Duration::ZERO);
        offer_at(&sub, ms(0), b"a").await;
        offer_at(&sub, ms(1), b"b").await;
        offer_at(&sub, ms(3), b"c").await;
        assert_eq!(
            recorder.writes(),
            [
                (ms(0), b"\x81\x01a".to_vec()),
                (ms(1), b"\x81\x01b".to_vec()),
                (ms(4), b"\x81\x01c".to_vec()),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn replies_do_not_wait_for_the_write_delay() {
        let ms = Duration::from_millis;
        let (sub, recorder) = recorded_writer(ms(50));
        offer_at(&sub, ms(0), b"a").await;
        tokio::time::sleep(ms(1)).await;
        reply_r(&sub).await;
        assert_eq!(
            recorder.writes(),
            [
                (ms(0), b"\x81\x01a".to_vec()),
                (ms(1), b"\x81\x01r".to_vec())
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_ping_goes_out_at_once_with_the_waiting_data_and_only_once() {
        let ms = Duration::from_millis;
        let (sub, recorder) = recorded_writer(ms(50));
        offer_at(&sub, ms(0), b"a").await;
        // Data of the same period waits for the next; a ping does not, and
        // takes the waiting data along (as a reply does).
        offer_at(&sub, ms(1), b"b").await;
        assert_eq!(recorder.writes().len(), 1);
        sub.outbox().ping();
        sub.outbox().ping();
        settle().await;
        let writes = recorder.writes();
        assert_eq!(
            writes,
            [
                (ms(0), b"\x81\x01a".to_vec()),
                (ms(1), b"\x81\x01b\x89\x00".to_vec()),
            ]
        );
        tokio::time::sleep(ms(100)).await;
        settle().await;
        assert_eq!(recorder.writes().len(), 2, "no second ping");
    }

    #[tokio::test(start_paused = true)]
    async fn the_shutdown_says_goodbye_and_closes_with_1001_instead_of_the_queue() {
        let ms = Duration::from_millis;
        let (sub, recorder) = recorded_writer(Duration::ZERO);
        offer_at(&sub, ms(0), b"a").await;
        // Queued with the shutdown: not written.
        assert!(sub.offer(0, Outbound::text(b"late")));
        sub.outbox().shut_down();
        settle().await;
        let writes = recorder.writes();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert_eq!(&writes[0].1[..], b"\x81\x01a");
        let last = &writes[1].1;
        assert!(
            last.starts_with(b"\x81\x03bye\x88"),
            "goodbye, then close: {last:?}"
        );
        assert_eq!(&last[7..9], &1001u16.to_be_bytes(), "{last:?}");
        assert!(!last.windows(4).any(|w| w == b"late"), "{last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_during_the_wait_goes_out_at_once_with_the_waiting_data() {
        let ms = Duration::from_millis;
        let (sub, recorder) = recorded_writer(ms(50));
        offer_at(&sub, ms(0), b"a").await;
        // Waits until 50 ms...
        offer_at(&sub, ms(1), b"b").await;
        tokio::time::sleep(ms(1)).await;
        // ...until a reply comes at 2 ms: both go then, the reply first.
        reply_r(&sub).await;
        assert_eq!(
            recorder.writes(),
            [
                (ms(0), b"\x81\x01a".to_vec()),
                (ms(2), b"\x81\x01r\x81\x01b".to_vec())
            ]
        );
    }

    /// A message that writes its sequence number as a text frame.
    #[derive(Debug)]
    struct Numbered;

    impl SequencedMessage for Numbered {
        fn write_frame(&self, sequence_id: u64, buf: &mut BytesMut) -> usize {
            let before = buf.len();
            put_frame(buf, OpCode::Text, sequence_id.to_string().as_bytes());
            buf.len() - before
        }
    }

    /// Numbers messages from 1 and refuses the one after `limit`; records
    /// the acks it gets.
    struct Limited {
        next: u64,
        limit: u64,
        acks: Arc<Mutex<Vec<u64>>>,
    }

    impl Sequencer for Limited {
        fn write(
            &mut self,
            msg: &Arc<dyn SequencedMessage>,
            buf: &mut BytesMut,
        ) -> Result<(), String> {
            if self.next > self.limit {
                return Err("too many unacknowledged messages".to_owned());
            }
            msg.write_frame(self.next, buf);
            self.next += 1;
            Ok(())
        }

        fn ack(&mut self, sequence_id: u64) {
            self.acks.lock().unwrap().push(sequence_id);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_sequencer_stamps_at_write_time_and_its_refusal_closes_with_1008() {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let sequencer = Limited {
            next: 1,
            limit: 2,
            acks: acks.clone(),
        };
        let (sub, recorder) = recorded_writer_with(Duration::ZERO, Some(Box::new(sequencer)));
        let msg: Arc<dyn SequencedMessage> = Arc::new(Numbered);
        for _ in 0..2 {
            assert!(sub.offer(0, Outbound::Sequenced(msg.clone())));
            settle().await;
        }
        assert!(sub.outbox().send_control(Control::Ack(2)).await.is_ok());
        settle().await;
        assert_eq!(*acks.lock().unwrap(), [2]);
        assert!(sub.offer(0, Outbound::Sequenced(msg)));
        settle().await;
        let written: Vec<Vec<u8>> = recorder.writes().into_iter().map(|(_, b)| b).collect();
        let mut close = BytesMut::new();
        put_close(
            &mut close,
            close_code::POLICY,
            "too many unacknowledged messages",
        );
        assert_eq!(
            written,
            [b"\x81\x011".to_vec(), b"\x81\x012".to_vec(), close.to_vec()]
        );
    }

    /// Numbers messages from 1; on resume writes a marker frame `resumed`.
    struct Resuming(u64);

    impl Sequencer for Resuming {
        fn write(
            &mut self,
            msg: &Arc<dyn SequencedMessage>,
            buf: &mut BytesMut,
        ) -> Result<(), String> {
            self.0 += 1;
            msg.write_frame(self.0, buf);
            Ok(())
        }

        fn ack(&mut self, _sequence_id: u64) {}

        fn resume(&mut self, buf: &mut BytesMut) -> Result<(), String> {
            put_frame(buf, OpCode::Text, b"resumed");
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_sequencer_resumes_once_after_the_opening_and_before_data() {
        let (sub, recorder) = recorded_writer_with(Duration::ZERO, Some(Box::new(Resuming(0))));
        // What a session queues before its writer starts: the opening, and
        // data that raced it.
        let msg: Arc<dyn SequencedMessage> = Arc::new(Numbered);
        assert!(sub.offer(0, Outbound::Sequenced(msg.clone())));
        assert!(
            sub.outbox()
                .send_control(Control::Reply(Bytes::from_static(b"hello")))
                .await
                .is_ok()
        );
        settle().await;
        assert!(sub.offer(0, Outbound::Sequenced(msg)));
        settle().await;
        let written: Vec<u8> = recorder.writes().into_iter().flat_map(|(_, b)| b).collect();
        assert_eq!(
            written,
            b"\x81\x05hello\x81\x07resumed\x81\x011\x81\x012".to_vec()
        );
    }

    /// A socket whose every write fails.
    struct Broken;

    impl AbortiveClose for Broken {}

    impl AsyncWrite for Broken {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()))
        }
        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A connection with a queue of `capacity` that disconnects when full,
    /// no pacing, and the writer settings of the tests.
    fn bare(capacity: usize) -> (Subscriber, WriterConfig) {
        let sub = Subscriber::new(
            1,
            0,
            QueuePolicy {
                capacity,
                slow_consumer: SlowConsumer::Disconnect,
                pacer: None,
            },
            Arc::new(SlowConsumerStats::default()),
        );
        let config = WriterConfig {
            reply_opcode: OpCode::Text,
            write_timeout: Duration::from_secs(10),
            goodbye: None,
        };
        (sub, config)
    }

    /// Runs a writer over a broken socket until it gives up.
    async fn broken_writer(sequencer: Option<Box<dyn Sequencer>>) -> (Subscriber, WriterExit) {
        let (sub, config) = bare(16);
        let writer = Writer::new(Broken, config, sub.clone(), sequencer);
        assert!(sub.offer(0, Outbound::text(b"lost on the wire")));
        (sub.clone(), writer.run().await)
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_socket_leaves_a_sequenced_connections_queue_to_its_protocol() {
        let (sub, exit) = broken_writer(Some(Box::new(Resuming(0)))).await;
        assert_eq!(exit, WriterExit::IoFailed);
        assert_eq!(
            sub.stats().counts().write_errors,
            1,
            "the failure is counted"
        );
        let outbox = sub.outbox();
        assert!(!outbox.is_dropped());
        // Data keeps being queued for the protocol to take; replies are refused.
        assert!(sub.offer(0, Outbound::text(b"after")));
        assert!(
            outbox
                .send_control(Control::Reply(Bytes::new()))
                .await
                .is_err()
        );
        let mut batch = Batch::default();
        outbox.take_now(&mut batch);
        assert_eq!(batch.data.len(), 1);
        outbox.writer_gone();
        assert!(!sub.offer(0, Outbound::text(b"too late")));

        // Without a sequencer the connection is dropped, as before.
        let (sub, exit) = broken_writer(None).await;
        assert_eq!(exit, WriterExit::Failed);
        assert!(sub.outbox().is_dropped());
        assert!(!sub.offer(0, Outbound::text(b"x")));
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_connection_ends_as_vanished_and_keeps_its_queue() {
        let (sub, config) = bare(16);
        let recorder = Recorder::default();
        let writer = Writer::new(
            recorder.clone(),
            config,
            sub.clone(),
            Some(Box::new(Resuming(0))),
        );
        let writer = tokio::spawn(writer.run());
        settle().await;
        sub.outbox().abandon();
        assert!(sub.offer(0, Outbound::text(b"kept")));
        assert_eq!(writer.await.unwrap(), WriterExit::IoFailed);
        assert!(recorder.writes().is_empty(), "nothing more is written");
        let mut batch = Batch::default();
        sub.outbox().take_now(&mut batch);
        assert_eq!(batch.data.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_consumer_gets_a_close_frame_and_an_abortive_close() {
        let (sub, recorder) = recorded_writer(Duration::ZERO);
        // More than the queue holds while the writer is not scheduled.
        let offered: Vec<bool> = (0..20)
            .map(|_| sub.offer(0, Outbound::text(b"x")))
            .collect();
        assert!(offered.contains(&false), "the queue overflowed");
        settle().await;
        let written: Vec<u8> = recorder.writes().into_iter().flat_map(|(_, b)| b).collect();
        let mut close = BytesMut::new();
        put_close(&mut close, close_code::POLICY, SLOW_CONSUMER_REASON);
        assert_eq!(written, close.to_vec(), "nothing but the close frame");
        assert!(
            recorder.1.load(std::sync::atomic::Ordering::Relaxed),
            "an abortive close"
        );
    }

    /// A socket whose buffer is full and stays full; it records an abortive close.
    #[derive(Clone, Default)]
    struct Stuck(Arc<std::sync::atomic::AtomicBool>);

    impl AbortiveClose for Stuck {
        fn abort_on_close(&self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    impl AsyncWrite for Stuck {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
        fn poll_shutdown(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
    }

    /// Asserts that `writer`, blocked on `socket`, ends as `exit` at once
    /// (on the paused clock: not after its write timeout), closing abortively.
    async fn ends_at_once(
        writer: tokio::task::JoinHandle<WriterExit>,
        socket: &Stuck,
        exit: WriterExit,
    ) {
        let started = tokio::time::Instant::now();
        assert_eq!(writer.await.unwrap(), exit);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "not after the write timeout"
        );
        assert!(
            socket.0.load(std::sync::atomic::Ordering::Relaxed),
            "an abortive close"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_stuck_on_a_dead_link_stops_at_once_when_its_client_comes_back() {
        let (sub, config) = bare(16);
        let socket = Stuck::default();
        let writer = tokio::spawn(
            Writer::new(
                socket.clone(),
                config,
                sub.clone(),
                Some(Box::new(Resuming(0))),
            )
            .run(),
        );
        assert!(sub.offer(0, Outbound::text(b"blocks the socket")));
        settle().await;
        assert!(!writer.is_finished(), "the write waits on the full socket");
        // The client reconnected elsewhere: the session takes this one over.
        sub.outbox().abandon();
        ends_at_once(writer, &socket, WriterExit::IoFailed).await;
        // What comes meanwhile stays queued for the session to keep.
        assert!(sub.offer(0, Outbound::text(b"kept")));
        let mut batch = Batch::default();
        sub.outbox().take_now(&mut batch);
        assert_eq!(batch.data.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_stuck_on_a_full_socket_drops_a_slow_consumer_at_once() {
        let (sub, config) = bare(4);
        let socket = Stuck::default();
        let writer = tokio::spawn(Writer::new(socket.clone(), config, sub.clone(), None).run());
        assert!(sub.offer(0, Outbound::text(b"blocks the socket")));
        settle().await;
        while sub.offer(0, Outbound::text(b"piles up")) {}
        ends_at_once(writer, &socket, WriterExit::Failed).await;
    }
}
