//! The size guard in front of a bound SUB socket.
//!
//! The ZMTP codec of the `zeromq` crate takes a frame's length from its
//! header and reserves that much before the frame arrives, with no limit: a
//! publisher that sends (or merely announces) a 64 MiB frame makes the
//! adapter allocate 64 MiB, and the buffer keeps its capacity afterwards.
//! libzmq's `ZMQ_MAXMSGSIZE` is the usual answer; the crate has no such
//! option. So when the adapter binds, the SUB socket binds a loopback port
//! of its own and the configured endpoint is served by this guard: it
//! accepts each publisher, opens a connection to the SUB socket for it, and
//! relays the bytes both ways, reading the publisher's ZMTP framing as it
//! goes ([`FrameFilter`]). A message (all its frames) longer than
//! `max_message_bytes` is never passed on: its bytes are skipped as they
//! arrive, it is counted, and the publisher's connection carries on with its
//! next message. What the guard holds per connection is at most one message
//! of the limit.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

/// How often at most a relay logs a skipped message.
const LOG_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

/// The length of a ZMTP 3 greeting.
const GREETING: usize = 64;

/// What the guard has done, for the adapter's figures.
#[derive(Debug, Default)]
pub(crate) struct GuardStats {
    /// Messages over the limit, skipped.
    pub(crate) oversized: AtomicU64,
}

/// Where the filter is in the publisher's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the greeting: this many bytes of it still to pass.
    Greeting(usize),
    /// Before a frame's flags byte.
    Flags,
    /// Reading a frame's length (1 or 8 bytes) after `flags`.
    Length { flags: u8 },
    /// In a frame's body: `left` bytes still to come.
    Body { flags: u8, left: u64 },
}

/// Reads a publisher's ZMTP stream and passes on only messages within the
/// limit (sans-IO: bytes in, bytes out).
#[derive(Debug)]
pub(crate) struct FrameFilter {
    max: u64,
    state: State,
    /// The message being read (frames, headers included), while within the
    /// limit.
    pending: BytesMut,
    /// Body bytes of the message so far.
    message_len: u64,
    /// The message is over the limit: its bytes are skipped.
    skipping: bool,
    /// A partial length field.
    length: [u8; 8],
    length_have: usize,
}

/// What [`FrameFilter::feed`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Filtered {
    /// Messages skipped for their size, each with its size so far.
    pub(crate) oversized: Vec<u64>,
}

impl FrameFilter {
    pub(crate) fn new(max: usize) -> FrameFilter {
        FrameFilter {
            max: max as u64,
            state: State::Greeting(GREETING),
            pending: BytesMut::new(),
            message_len: 0,
            skipping: false,
            length: [0; 8],
            length_have: 0,
        }
    }

    /// Consumes `input`, appending to `out` what may pass: the greeting,
    /// commands, and whole messages within the limit.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut BytesMut) -> Filtered {
        let mut filtered = Filtered::default();
        while !input.is_empty() {
            match self.state {
                State::Greeting(left) => {
                    let n = left.min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input.advance(n);
                    self.state = if n == left {
                        State::Flags
                    } else {
                        State::Greeting(left - n)
                    };
                }
                State::Flags => {
                    let flags = input[0];
                    input.advance(1);
                    self.length_have = 0;
                    self.state = State::Length { flags };
                }
                State::Length { flags } => {
                    let need = if flags & 0x02 != 0 { 8 } else { 1 };
                    let n = (need - self.length_have).min(input.len());
                    self.length[self.length_have..self.length_have + n]
                        .copy_from_slice(&input[..n]);
                    self.length_have += n;
                    input.advance(n);
                    if self.length_have < need {
                        continue;
                    }
                    let len = if need == 8 {
                        u64::from_be_bytes(self.length)
                    } else {
                        u64::from(self.length[0])
                    };
                    self.begin_frame(flags, len, &mut filtered);
                    if len == 0 {
                        self.end_frame(flags, out);
                    } else {
                        self.state = State::Body { flags, left: len };
                    }
                }
                State::Body { flags, left } => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    if !self.skipping {
                        self.pending.extend_from_slice(&input[..n]);
                    }
                    input.advance(n);
                    let left = left - n as u64;
                    if left == 0 {
                        self.end_frame(flags, out);
                    } else {
                        self.state = State::Body { flags, left };
                    }
                }
            }
        }
        filtered
    }

    /// A frame of `len` body bytes starts: keep its header, or start
    /// skipping the message it makes too long.
    fn begin_frame(&mut self, flags: u8, len: u64, filtered: &mut Filtered) {
        let command = flags & 0x04 != 0;
        if !command {
            self.message_len = self.message_len.saturating_add(len);
        }
        let too_long = if command {
            len > self.max
        } else {
            self.message_len > self.max
        };
        if too_long && !self.skipping {
            self.skipping = true;
            self.pending.clear();
            filtered
                .oversized
                .push(if command { len } else { self.message_len });
        }
        if !self.skipping {
            self.pending.extend_from_slice(&[flags]);
            if flags & 0x02 != 0 {
                self.pending.extend_from_slice(&len.to_be_bytes());
            } else {
                // A short frame's length fits a byte.
                self.pending.extend_from_slice(&[len as u8]);
            }
        }
    }

    /// A frame ended: a command, or the last frame of a message, is passed
    /// on (or its skipping ends).
    fn end_frame(&mut self, flags: u8, out: &mut BytesMut) {
        self.state = State::Flags;
        let command = flags & 0x04 != 0;
        let more = flags & 0x01 != 0;
        if !command && more {
            return;
        }
        if !self.skipping {
            out.extend_from_slice(&self.pending);
        }
        self.pending.clear();
        if self.pending.capacity() > 64 * 1024 {
            // Do not keep the capacity of a large message.
            self.pending = BytesMut::new();
        }
        self.skipping = false;
        if !command {
            self.message_len = 0;
        }
    }
}

/// The guard's listener and the relays of its publishers; dropping it
/// stops them all.
#[derive(Debug)]
pub(crate) struct Guard {
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Guard {
    /// Listens on `endpoint` (`tcp://host:port`, `*` for every address) and
    /// relays each publisher to the SUB socket at `sub`.
    pub(crate) async fn bind(
        endpoint: &str,
        sub: SocketAddr,
        max_message_bytes: usize,
        stats: Arc<GuardStats>,
        adapter: String,
    ) -> io::Result<Guard> {
        let address = endpoint.strip_prefix("tcp://").unwrap_or(endpoint);
        let address = match address.strip_prefix("*:") {
            Some(port) => format!("0.0.0.0:{port}"),
            None => address.to_owned(),
        };
        let listener = TcpListener::bind(&address).await?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut relays = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((publisher, peer)) => {
                            relays.spawn(relay(publisher, peer, sub, max_message_bytes, stats.clone(), adapter.clone()));
                        }
                        Err(e) => {
                            warn!(adapter, error = %e, "zmq accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    },
                    Some(_) = relays.join_next(), if !relays.is_empty() => {}
                }
            }
        });
        Ok(Guard { local, task })
    }

    /// The address the guard listens on (a port 0 resolved).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Relays one publisher to the SUB socket, filtering what it sends.
async fn relay(
    publisher: TcpStream,
    peer: SocketAddr,
    sub: SocketAddr,
    max: usize,
    stats: Arc<GuardStats>,
    adapter: String,
) {
    let inner = match TcpStream::connect(sub).await {
        Ok(inner) => inner,
        Err(e) => {
            warn!(adapter, %peer, error = %e, "zmq guard cannot reach its socket");
            return;
        }
    };
    let _ = publisher.set_nodelay(true);
    let _ = inner.set_nodelay(true);
    let (mut from_publisher, mut to_publisher) = publisher.into_split();
    let (mut from_sub, mut to_sub) = inner.into_split();
    // Subscriptions and handshake, SUB → publisher, as they are.
    let back = async {
        let _ = tokio::io::copy(&mut from_sub, &mut to_publisher).await;
        let _ = to_publisher.shutdown().await;
    };
    let forth = async {
        let mut filter = FrameFilter::new(max);
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = BytesMut::with_capacity(64 * 1024);
        // One line per ten seconds at most, with what it stands for.
        let mut last_line: Option<std::time::Instant> = None;
        let mut unlogged = 0u64;
        loop {
            let n = match from_publisher.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let filtered = filter.feed(&buf[..n], &mut out);
            for size in filtered.oversized {
                stats.oversized.fetch_add(1, Ordering::Relaxed);
                let now = std::time::Instant::now();
                if last_line.is_some_and(|t| now - t < LOG_PERIOD) {
                    unlogged += 1;
                    continue;
                }
                last_line = Some(now);
                warn!(
                    adapter,
                    %peer,
                    size,
                    max_message_bytes = max,
                    skipped_since_last_line = unlogged,
                    "zmq message over max_message_bytes skipped"
                );
                unlogged = 0;
            }
            if !out.is_empty() {
                if to_sub.write_all(&out).await.is_err() {
                    break;
                }
                out.clear();
            }
        }
        let _ = to_sub.shutdown().await;
    };
    tokio::join!(back, forth);
    debug!(adapter, %peer, "zmq publisher relay ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame: flags, length (short or long), body.
    fn frame(more: bool, command: bool, body: &[u8]) -> Vec<u8> {
        let long = body.len() > 255;
        let flags = u8::from(more) | (u8::from(long) << 1) | (u8::from(command) << 2);
        let mut f = vec![flags];
        if long {
            f.extend_from_slice(&(body.len() as u64).to_be_bytes());
        } else {
            f.push(body.len() as u8);
        }
        f.extend_from_slice(body);
        f
    }

    fn message(topic: &[u8], payload: &[u8]) -> Vec<u8> {
        [frame(true, false, topic), frame(false, false, payload)].concat()
    }

    /// Feeds `stream` in pieces of `step` bytes.
    fn run(filter: &mut FrameFilter, stream: &[u8], step: usize) -> (Vec<u8>, Vec<u64>) {
        let mut out = BytesMut::new();
        let mut oversized = Vec::new();
        for piece in stream.chunks(step) {
            oversized.extend(filter.feed(piece, &mut out).oversized);
        }
        (out.to_vec(), oversized)
    }

    #[test]
    fn messages_within_the_limit_pass_whole_and_larger_ones_are_skipped() {
        let greeting = [7u8; GREETING];
        let ready = frame(false, true, b"\x05READY");
        let small = message(b"NSE_INFY_LTP", br#"{"ltp":1}"#);
        let big = message(b"NSE_INFY_LTP", &vec![b'x'; 5000]);
        let after = message(b"NSE_TCS_LTP", br#"{"ltp":2}"#);
        let stream = [&greeting[..], &ready, &small, &big, &after].concat();
        let expected = [&greeting[..], &ready, &small, &after].concat();
        for step in [1, 3, 64, 1000, stream.len()] {
            let mut filter = FrameFilter::new(1000);
            let (out, oversized) = run(&mut filter, &stream, step);
            assert_eq!(out, expected, "pieces of {step}");
            assert_eq!(oversized, [12 + 5000], "pieces of {step}");
        }
    }

    #[test]
    fn a_lying_length_is_skipped_without_reserving_it() {
        let mut filter = FrameFilter::new(1024);
        let mut out = BytesMut::new();
        filter.feed(&[0u8; GREETING], &mut out);
        // A frame announcing 2^62 bytes, of which a few arrive.
        let mut header = vec![0x02];
        header.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let found = filter.feed(&header, &mut out);
        assert_eq!(found.oversized, [1 << 62]);
        filter.feed(&[1u8; 100_000], &mut out);
        assert_eq!(out.len(), GREETING, "nothing of it passed");
        assert!(filter.pending.capacity() < 1024 * 1024);
    }

    #[test]
    fn a_message_of_many_small_frames_counts_them_all() {
        let mut filter = FrameFilter::new(100);
        let frames: Vec<u8> = (0..5)
            .flat_map(|i| frame(i < 4, false, &[b'a'; 30]))
            .collect();
        let next = message(b"T", b"{}");
        let stream = [&[0u8; GREETING][..], &frames, &next].concat();
        let (out, oversized) = run(&mut filter, &stream, 7);
        assert_eq!(oversized, [120]);
        assert_eq!(out, [&[0u8; GREETING][..], &next].concat());
    }
}
