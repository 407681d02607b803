//! A worker: a share of the connections on one single-threaded runtime.
//!
//! Every connection of a worker is a task on one `current_thread` runtime,
//! so the statistics live in plain cells (no atomics, no locks on the
//! receive path). A run uses one worker in-process (`--workers 1`) or one
//! per child process, each a re-execution of the binary with `--worker`
//! that reads its [`WorkerPlan`] and [`Command`]s as JSON lines on stdin and
//! writes its [`Event`]s as JSON lines on stdout.
//!
//! Connection `i` (its index over all workers) goes to node
//! [`node_of`]`(i, N)` of the plan's [`WorkerPlan::targets`]. A pubsub
//! connection negotiates at that node (the worker keeps a hub URL per node
//! and key, renewed every second while connecting) and connects to the node
//! the hub URL names, which in a cluster may be another one. The worker
//! counts its subscribed connections by the address they connected to.
//!
//! The receive path of a connection, per WebSocket message: read the frame
//! (fastwebsockets, one buffer per connection), read the clock, find the
//! stamp by scanning bytes ([`crate::stamp`]), record the latency in the
//! worker's HDR histogram and the sequence number in the connection's
//! [`SeqTracker`]. A FastWS connection is split in two halves: its reader
//! never waits on a timer (reads are not cancel-safe), and a task of its own
//! sends the keepalive the server requires every 30 s.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, OpCode};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::Error;
use crate::cli::{self, Protocol, Target, node_of};
use crate::client::{self, HubUrl, Ws};
use crate::net::{self, HttpClient, Upgrade};
use crate::report::{self, ErrorSample, NodeConnections};
use crate::seq::{Observation, SeqTracker};
use crate::stamp;
use crate::topics::{self, Topics};

/// Distinct error messages kept per worker; others are counted as "other".
const MAX_ERROR_KINDS: usize = 16;
/// How often a worker reports its counters.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Hub URLs (and their access tokens) are negotiated again this often
/// while connecting: a cluster's nodes refresh the load they tell each
/// other (what `/negotiate` places new clients by) once a second, so the
/// connections of the next second follow the cluster's placement.
const RENEGOTIATE_EVERY: Duration = Duration::from_secs(1);
/// `/ws` closes connections that send nothing for 5 minutes: ping this often.
const WS_PING_EVERY_US: u64 = 60_000_000;
/// FastWS closes connections that send nothing for 30 s: repeat the
/// subscription (a harmless message) this often.
const FASTWS_HEARTBEAT: Duration = Duration::from_secs(10);
/// How often the drain checks whether everything arrived.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// What one worker is to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// The worker's index.
    pub worker: usize,
    /// The nodes (one for a single server); connection `i` goes to node
    /// [`node_of`]`(i, targets.len())`.
    pub targets: Vec<Target>,
    /// What the subscribers speak.
    pub protocol: Protocol,
    /// Topics of the run.
    pub topics: usize,
    /// Topics per connection.
    pub per_connection: usize,
    /// The first connection (global index) of this worker.
    pub first: usize,
    /// How many connections this worker opens.
    pub count: usize,
    /// Connections per second (this worker's share).
    pub connect_rate: f64,
    /// Handshakes in flight at once.
    pub connect_concurrency: usize,
    /// Milliseconds to connect and subscribe.
    pub connect_timeout_ms: u64,
    /// Subscribers' keys; connection `i` takes key `i % len`.
    pub api_keys: Vec<String>,
    /// Source addresses; connection `i` takes address `i % len` (see
    /// [`cli::source_for`]).
    pub source_ips: Vec<IpAddr>,
    /// The pubsub group prefix.
    pub prefix: String,
}

impl WorkerPlan {
    /// The node connection `index` (global) goes to.
    pub fn target_of(&self, index: usize) -> &Target {
        &self.targets[node_of(index, self.targets.len())]
    }
}

/// What the coordinator tells a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Publishing is over: wait up to `drain_ms` for the updates up to
    /// `last_seq` (per topic), then report.
    Finish {
        /// The last sequence number published on each topic.
        last_seq: Vec<u64>,
        /// The longest wait, milliseconds.
        drain_ms: u64,
    },
}

/// Counters of a worker, cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Connections opened and subscribed.
    pub connected: u64,
    /// Connections that failed to open or subscribe.
    pub failed: u64,
    /// Stamped updates received.
    pub delivered: u64,
    /// Updates never received (gaps; the tail is added at the end).
    pub drops: u64,
    /// Updates received twice or out of order.
    pub duplicates: u64,
    /// Subscribed connections lost during the run.
    pub disconnects: u64,
    /// Errors of every kind.
    pub errors: u64,
    /// Messages without a stamp (pongs, status, heartbeats).
    pub other: u64,
}

impl Counters {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Counters) {
        self.connected += other.connected;
        self.failed += other.failed;
        self.delivered += other.delivered;
        self.drops += other.drops;
        self.duplicates += other.duplicates;
        self.disconnects += other.disconnects;
        self.errors += other.errors;
        self.other += other.other;
    }
}

/// A worker's final figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The counters, tail drops included.
    pub counters: Counters,
    /// Deliveries the published updates called for on this worker's
    /// subscribed connections.
    pub expected: u64,
    /// Latency histogram buckets (µs, count).
    pub latency: Vec<(u64, u64)>,
    /// Connect-time histogram buckets (µs, count).
    pub connect: Vec<(u64, u64)>,
    /// Errors by message.
    pub errors: Vec<ErrorSample>,
    /// Subscribed connections by the server address they connected to.
    #[serde(default)]
    pub nodes: Vec<NodeConnections>,
}

/// What a worker tells the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Every connection has been tried: so many are subscribed.
    Connected {
        /// The counters then.
        counters: Counters,
        /// Errors so far by message.
        errors: Vec<ErrorSample>,
    },
    /// The counters, once a second.
    Progress {
        /// The counters now.
        counters: Counters,
    },
    /// The final figures; the worker stops after it.
    Report(WorkerReport),
}

/// The statistics of a worker.
struct Stats {
    counters: Counters,
    latency: Histogram<u64>,
    connect: Histogram<u64>,
    errors: HashMap<String, u64>,
}

impl Stats {
    fn error(&mut self, message: String) {
        self.counters.errors += 1;
        if self.errors.len() < MAX_ERROR_KINDS || self.errors.contains_key(&message) {
            *self.errors.entry(message).or_insert(0) += 1;
        } else {
            *self.errors.entry("other errors".to_owned()).or_insert(0) += 1;
        }
    }

    fn error_samples(&self) -> Vec<ErrorSample> {
        let mut samples: Vec<ErrorSample> = self
            .errors
            .iter()
            .map(|(message, &count)| ErrorSample {
                message: message.clone(),
                count,
            })
            .collect();
        samples.sort_by(|a, b| b.count.cmp(&a.count).then(a.message.cmp(&b.message)));
        samples
    }
}

/// One subscribed connection, as the worker sees it.
struct Conn {
    index: usize,
    tracker: RefCell<SeqTracker>,
    alive: Cell<bool>,
}

/// The state of a worker, shared by its tasks.
struct Worker {
    plan: WorkerPlan,
    topics: Topics,
    stats: RefCell<Stats>,
    conns: RefCell<Vec<Rc<Conn>>>,
    /// Set once publishing is over: closes after it are not disconnects.
    finishing: Cell<bool>,
    /// Per node, per key: the hub URL with its token, or why there is none
    /// (pubsub).
    hubs: RefCell<Vec<Vec<Result<HubUrl, String>>>>,
    /// Subscribed connections by the address they connected to.
    by_node: RefCell<Vec<(SocketAddr, u64)>>,
    /// Connection attempts not yet finished.
    pending: Cell<usize>,
    attempts_done: Notify,
}

/// Runs a worker to its end: connects, reports progress, and on
/// [`Command::Finish`] drains and reports. Must run inside a
/// [`tokio::task::LocalSet`] on a current-thread runtime.
pub async fn run(
    plan: WorkerPlan,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let topics = match Topics::new(plan.topics, plan.per_connection) {
        Ok(topics) => topics,
        Err(e) => {
            // The coordinator checked the shape; report what is left.
            let _ = events.send(Event::Report(WorkerReport {
                counters: Counters {
                    errors: 1,
                    ..Counters::default()
                },
                expected: 0,
                latency: Vec::new(),
                connect: Vec::new(),
                errors: vec![ErrorSample {
                    message: e.to_string(),
                    count: 1,
                }],
                nodes: Vec::new(),
            }));
            return;
        }
    };
    let worker = Rc::new(Worker {
        topics,
        stats: RefCell::new(Stats {
            counters: Counters::default(),
            latency: report::new_histogram(),
            connect: report::new_histogram(),
            errors: HashMap::new(),
        }),
        conns: RefCell::new(Vec::with_capacity(plan.count)),
        finishing: Cell::new(false),
        hubs: RefCell::new(Vec::new()),
        by_node: RefCell::new(Vec::new()),
        pending: Cell::new(plan.count),
        attempts_done: Notify::new(),
        plan,
    });
    tokio::task::spawn_local(connect_all(worker.clone(), events.clone()));
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Finish { last_seq, drain_ms }) => {
                    let report = finish(&worker, &last_seq, Duration::from_millis(drain_ms)).await;
                    let _ = events.send(Event::Report(report));
                    return;
                }
                // The coordinator is gone.
                None => return,
            },
            _ = progress.tick() => {
                let counters = worker.stats.borrow().counters;
                if events.send(Event::Progress { counters }).is_err() {
                    return;
                }
            }
        }
    }
}

/// Opens every connection of the worker at the planned rate, then sends
/// [`Event::Connected`].
async fn connect_all(worker: Rc<Worker>, events: mpsc::UnboundedSender<Event>) {
    let plan = &worker.plan;
    let mut negotiated_at = None;
    let mut http: Vec<HttpClient> = if plan.protocol.is_pubsub() {
        plan.targets.iter().cloned().map(HttpClient::new).collect()
    } else {
        Vec::new()
    };
    let start = tokio::time::Instant::now();
    let gate = Arc::new(Semaphore::new(plan.connect_concurrency));
    for i in 0..plan.count {
        if plan.protocol.is_pubsub()
            && negotiated_at.is_none_or(|at: Instant| at.elapsed() >= RENEGOTIATE_EVERY)
        {
            negotiate_all(&worker, &mut http).await;
            negotiated_at = Some(Instant::now());
        }
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / plan.connect_rate))
            .await;
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let worker = worker.clone();
        tokio::task::spawn_local(connection(worker, i, permit));
    }
    while worker.pending.get() > 0 {
        worker.attempts_done.notified().await;
    }
    let stats = worker.stats.borrow();
    let _ = events.send(Event::Connected {
        counters: stats.counters,
        errors: stats.error_samples(),
    });
}

/// Negotiates a hub URL for every node and key, at every node at once;
/// `http` holds a client per node, kept from one round to the next.
async fn negotiate_all(worker: &Worker, http: &mut [HttpClient]) {
    let rounds: Vec<_> = http
        .iter_mut()
        .map(|client| {
            let fresh = HttpClient::new(client.target().clone());
            let mut client = std::mem::replace(client, fresh);
            let keys = worker.plan.api_keys.clone();
            tokio::task::spawn_local(async move {
                let mut hubs = Vec::with_capacity(keys.len());
                for key in &keys {
                    hubs.push(
                        client::negotiate(&mut client, key)
                            .await
                            .map(|n| n.hub)
                            .map_err(|e| e.to_string()),
                    );
                }
                (client, hubs)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(rounds.len());
    for (slot, round) in http.iter_mut().zip(rounds) {
        match round.await {
            Ok((client, hubs)) => {
                *slot = client;
                all.push(hubs);
            }
            Err(e) => all.push(vec![
                Err(format!("negotiate failed: {e}"));
                worker.plan.api_keys.len()
            ]),
        }
    }
    *worker.hubs.borrow_mut() = all;
}

/// One connection, from its handshake to its end.
async fn connection(worker: Rc<Worker>, local: usize, permit: tokio::sync::OwnedSemaphorePermit) {
    let index = worker.plan.first + local;
    let began = Instant::now();
    let timeout = Duration::from_millis(worker.plan.connect_timeout_ms);
    let opened = tokio::time::timeout(timeout, open(&worker, index)).await;
    drop(permit);
    let ws = match opened {
        Ok(Ok(ws)) => Some(ws),
        Ok(Err(why)) => {
            let mut stats = worker.stats.borrow_mut();
            stats.counters.failed += 1;
            stats.error(why);
            None
        }
        Err(_) => {
            let mut stats = worker.stats.borrow_mut();
            stats.counters.failed += 1;
            stats.error(format!(
                "connect and subscribe took longer than {} ms",
                timeout.as_millis()
            ));
            None
        }
    };
    let conn = ws.map(|(ws, addr)| {
        {
            let mut by_node = worker.by_node.borrow_mut();
            match by_node.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, n)) => *n += 1,
                None => by_node.push((addr, 1)),
            }
        }
        let conn = Rc::new(Conn {
            index,
            tracker: RefCell::new(SeqTracker::new(worker.topics.per_connection())),
            alive: Cell::new(true),
        });
        worker.conns.borrow_mut().push(conn.clone());
        let mut stats = worker.stats.borrow_mut();
        stats.counters.connected += 1;
        let us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats.connect.saturating_record(us);
        (conn, ws)
    });
    worker.pending.set(worker.pending.get() - 1);
    if worker.pending.get() == 0 {
        worker.attempts_done.notify_one();
    }
    let Some((conn, ws)) = conn else {
        return;
    };
    let ended = receive(&worker, &conn, ws).await;
    conn.alive.set(false);
    if !worker.finishing.get() {
        let mut stats = worker.stats.borrow_mut();
        stats.counters.disconnects += 1;
        stats.error(format!("disconnected: {ended}"));
    }
}

/// Connects connection `index` and subscribes it to its topics; returns
/// the WebSocket and the server address it connected to.
async fn open(worker: &Worker, index: usize) -> Result<(Ws, SocketAddr), String> {
    let plan = &worker.plan;
    let key = index % plan.api_keys.len();
    // Pubsub: where the node's `/negotiate` sent this key.
    let hub = if plan.protocol.is_pubsub() {
        let node = node_of(index, plan.targets.len());
        Some(
            worker
                .hubs
                .borrow()
                .get(node)
                .and_then(|keys| keys.get(key))
                .cloned()
                .unwrap_or_else(|| Err("not negotiated".to_owned()))?,
        )
    } else {
        None
    };
    let dest = hub.as_ref().map_or(plan.target_of(index), |h| &h.target);
    // Socket.IO as its clients connect by default: a session opened and
    // joined on long-polling first, upgraded by the WebSocket that names it.
    let source = cli::source_for(&plan.source_ips, index, dest.addr);
    let polling_path = if plan.protocol == Protocol::SocketioPolling {
        let mut http = net::HttpClient::from_source(dest.clone(), source);
        let sid = client::socketio_polling_join(&mut http, &plan.api_keys[key]).await?;
        Some(format!("{}&sid={sid}", client::SOCKETIO_PATH))
    } else {
        None
    };
    let stream = net::connect_tcp(dest.addr, source)
        .await
        .map_err(|e| format!("connect to {}: {e}", dest.addr))?;
    let topics = worker.topics.of_connection(index);
    let host = dest.host.as_str();
    let (upgrade, protobuf) = match plan.protocol {
        Protocol::PubsubProtobuf | Protocol::PubsubJson => {
            let path = hub.as_ref().map_or("", |h| h.path.as_str());
            let protobuf = plan.protocol == Protocol::PubsubProtobuf;
            let upgrade = Upgrade {
                host,
                path,
                subprotocol: Some(if protobuf {
                    client::PROTOBUF_SUBPROTOCOL
                } else {
                    client::JSON_SUBPROTOCOL
                }),
                bearer: None,
            };
            (upgrade, protobuf)
        }
        Protocol::Ws => (
            Upgrade {
                host,
                path: "/ws",
                subprotocol: None,
                bearer: None,
            },
            false,
        ),
        Protocol::Stream => (
            Upgrade {
                host,
                path: "/stream",
                subprotocol: None,
                bearer: Some(&plan.api_keys[key]),
            },
            false,
        ),
        Protocol::Proxy => (
            Upgrade {
                host,
                path: "/proxy",
                subprotocol: None,
                bearer: None,
            },
            false,
        ),
        Protocol::Fastws => (
            Upgrade {
                host,
                path: "/api/v1/ws",
                subprotocol: None,
                bearer: None,
            },
            false,
        ),
        Protocol::Socketio | Protocol::SocketioPolling => (
            Upgrade {
                host,
                path: polling_path.as_deref().unwrap_or(client::SOCKETIO_PATH),
                subprotocol: None,
                bearer: None,
            },
            false,
        ),
    };
    let mut ws = net::handshake(stream, upgrade)
        .await
        .map_err(|e| e.to_string())?;
    match plan.protocol {
        Protocol::PubsubProtobuf | Protocol::PubsubJson => {
            let groups: Vec<String> = topics.map(|t| topics::group(&plan.prefix, t)).collect();
            client::join_groups(&mut ws, protobuf, &groups).await?;
        }
        Protocol::Ws => {
            let symbols: Vec<String> = topics.map(topics::ws_symbol).collect();
            client::subscribe_ws(&mut ws, &symbols).await?;
        }
        Protocol::Stream => {
            let symbols: Vec<String> = topics.map(topics::stream_symbol).collect();
            client::subscribe_stream(&mut ws, &symbols).await?;
        }
        Protocol::Proxy => {
            let symbols: Vec<String> = topics.map(topics::stream_symbol).collect();
            client::subscribe_proxy(&mut ws, &plan.api_keys[key], &symbols).await?;
        }
        Protocol::Socketio => {
            let symbols: Vec<String> = topics.map(topics::stream_symbol).collect();
            client::subscribe_socketio(&mut ws, &plan.api_keys[key], &symbols).await?;
        }
        Protocol::SocketioPolling => {
            let symbols: Vec<String> = topics.map(topics::stream_symbol).collect();
            client::upgrade_socketio(&mut ws, &symbols).await?;
        }
        Protocol::Fastws => {
            // One topic per connection (checked with the settings).
            for topic in topics {
                client::subscribe_fastws(&mut ws, &topics::stream_symbol(topic)).await?;
            }
        }
    }
    Ok((ws, dest.addr))
}

/// Reads updates until the connection ends; returns why it ended.
async fn receive(worker: &Worker, conn: &Conn, mut ws: Ws) -> String {
    let protocol = worker.plan.protocol;
    if protocol == Protocol::Fastws {
        return receive_fastws(worker, conn, ws).await;
    }
    let pings = protocol == Protocol::Ws;
    let mut last_ping_us = stamp::now_us();
    loop {
        let frame = match ws.read_frame().await {
            Ok(frame) => frame,
            Err(e) => return e.to_string(),
        };
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                let now_us = stamp::now_us();
                let found = match protocol {
                    Protocol::PubsubProtobuf | Protocol::PubsubJson => {
                        stamp::find_raw(&frame.payload)
                    }
                    Protocol::Ws | Protocol::Stream => stamp::find_tick(&frame.payload),
                    Protocol::Proxy => stamp::find_quote(&frame.payload),
                    Protocol::Socketio | Protocol::SocketioPolling => {
                        if frame.payload.as_ref() == client::ENGINEIO_PING {
                            // Engine.IO's heartbeat, answered at once.
                            if let Err(e) = ws.write_frame(client::engineio_pong()).await {
                                return e.to_string();
                            }
                            continue;
                        }
                        stamp::find_socketio_quote(&frame.payload)
                    }
                    Protocol::Fastws => None,
                };
                record(worker, conn, found, now_us);
                if pings && now_us.saturating_sub(last_ping_us) >= WS_PING_EVERY_US {
                    last_ping_us = now_us;
                    if let Err(e) = ws.write_frame(client::ws_ping()).await {
                        return e.to_string();
                    }
                }
            }
            OpCode::Close => return format!("closed {}", client::close_reason(&frame.payload)),
            _ => {}
        }
    }
}

/// [`receive`] for FastWS: the reader on one half of the socket, the
/// keepalive (the subscription, repeated) on the other, from a task of its
/// own. Bar updates name no topic: they are of the connection's only one.
async fn receive_fastws(worker: &Worker, conn: &Conn, ws: Ws) -> String {
    let topic = worker.topics.topic(conn.index, 0);
    let (mut reader, writer) = ws.split(tokio::io::split);
    let writer = Rc::new(tokio::sync::Mutex::new(writer));
    let keepalive = tokio::task::spawn_local({
        let writer = writer.clone();
        let subscribe = client::fastws_subscribe(&topics::stream_symbol(topic));
        async move {
            let start = tokio::time::Instant::now() + FASTWS_HEARTBEAT;
            let mut every = tokio::time::interval_at(start, FASTWS_HEARTBEAT);
            loop {
                every.tick().await;
                let frame = client::text(subscribe.clone());
                if writer.lock().await.write_frame(frame).await.is_err() {
                    // The reader sees the connection end.
                    return;
                }
            }
        }
    });
    // Pongs and the close reply the reader owes go out on the writer.
    let mut obligated = |frame: Frame<'static>| {
        let writer = writer.clone();
        async move { writer.lock().await.write_frame(frame).await }
    };
    let ended = loop {
        let frame = match reader.read_frame(&mut obligated).await {
            Ok(frame) => frame,
            Err(e) => break e.to_string(),
        };
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                let now_us = stamp::now_us();
                record(
                    worker,
                    conn,
                    stamp::find_bar(&frame.payload, topic, now_us),
                    now_us,
                );
            }
            OpCode::Close => break format!("closed {}", client::close_reason(&frame.payload)),
            _ => {}
        }
    };
    keepalive.abort();
    ended
}

/// Counts one message of `conn`.
fn record(worker: &Worker, conn: &Conn, found: Option<stamp::Stamp>, now_us: u64) {
    let mut stats = worker.stats.borrow_mut();
    // Sequence number 0 is the priming update, which a subscription's
    // snapshot (`/proxy`) may repeat: not part of the measurement.
    let Some(stamp) = found.filter(|s| s.seq > 0) else {
        stats.counters.other += 1;
        return;
    };
    let Some(slot) = worker.topics.slot(conn.index, stamp.topic) else {
        stats.error(format!(
            "an update of topic {} was not subscribed",
            stamp.topic
        ));
        return;
    };
    stats
        .latency
        .saturating_record(now_us.saturating_sub(stamp.sent_us));
    stats.counters.delivered += 1;
    match conn.tracker.borrow_mut().observe(slot, stamp.seq) {
        Some(Observation::InOrder) | None => {}
        Some(Observation::Gap(n)) => stats.counters.drops += n,
        Some(Observation::Stale) => stats.counters.duplicates += 1,
    }
}

/// Waits for the updates still on their way (up to `drain`), then adds
/// the missing tails to the drops and builds the report.
async fn finish(worker: &Worker, last_seq: &[u64], drain: Duration) -> WorkerReport {
    let deadline = Instant::now() + drain;
    let missing = || -> u64 {
        worker
            .conns
            .borrow()
            .iter()
            .filter(|c| c.alive.get())
            .map(|c| {
                c.tracker.borrow().missing_tail(|slot| {
                    last_seq
                        .get(worker.topics.topic(c.index, slot))
                        .copied()
                        .unwrap_or(0)
                })
            })
            .sum()
    };
    while missing() > 0 && Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    worker.finishing.set(true);
    let tail = missing();
    let expected = worker
        .conns
        .borrow()
        .iter()
        .map(|c| {
            worker
                .topics
                .of_connection(c.index)
                .map(|t| last_seq.get(t).copied().unwrap_or(0))
                .sum::<u64>()
        })
        .sum();
    let mut stats = worker.stats.borrow_mut();
    stats.counters.drops += tail;
    WorkerReport {
        counters: stats.counters,
        expected,
        latency: report::to_buckets(&stats.latency),
        connect: report::to_buckets(&stats.connect),
        errors: stats.error_samples(),
        nodes: worker
            .by_node
            .borrow()
            .iter()
            .map(|&(addr, connected)| NodeConnections {
                addr: addr.to_string(),
                connected,
            })
            .collect(),
    }
}

/// Runs `plan` on a new current-thread runtime in this thread.
pub fn run_blocking(
    plan: WorkerPlan,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a worker runtime", e))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(plan, commands, events));
    Ok(())
}

/// The main of a worker process: the plan, then commands, as JSON lines on
/// stdin; events as JSON lines on stdout.
pub fn process_main() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a worker runtime", e))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let bad = |reason: String| Error::Worker { worker: 0, reason };
        let first = lines
            .next_line()
            .await
            .map_err(|e| Error::io("reading the plan", e))?
            .ok_or_else(|| bad("no plan on stdin".into()))?;
        let plan: WorkerPlan =
            serde_json::from_str(&first).map_err(|e| bad(format!("bad plan: {e}")))?;
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (event_tx, mut event_rx) = mpsc::unbounded_channel::<Event>();
        tokio::task::spawn_local(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Command>(&line) {
                    Ok(command) => {
                        if command_tx.send(command).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("tickwire-loadtest worker: bad command: {e}"),
                }
            }
        });
        let writer = tokio::task::spawn_local(async move {
            let mut stdout = tokio::io::stdout();
            while let Some(event) = event_rx.recv().await {
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                    break;
                }
            }
        });
        run(plan, command_rx, event_tx).await;
        let _ = writer.await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_json_lines() {
        let finish = Command::Finish {
            last_seq: vec![3, 4],
            drain_ms: 100,
        };
        let line = serde_json::to_string(&finish).unwrap();
        assert!(line.starts_with(r#"{"cmd":"finish""#), "{line}");
        assert_eq!(serde_json::from_str::<Command>(&line).unwrap(), finish);

        let report = Event::Report(WorkerReport {
            counters: Counters {
                delivered: 5,
                ..Counters::default()
            },
            expected: 5,
            latency: vec![(10, 5)],
            connect: vec![(1000, 1)],
            errors: Vec::new(),
            nodes: vec![NodeConnections {
                addr: "127.0.0.1:8081".into(),
                connected: 1,
            }],
        });
        let line = serde_json::to_string(&report).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), report);
    }

    #[test]
    fn counters_add_up() {
        let mut a = Counters {
            delivered: 1,
            drops: 2,
            ..Counters::default()
        };
        a.add(&Counters {
            delivered: 10,
            errors: 1,
            ..Counters::default()
        });
        assert_eq!((a.delivered, a.drops, a.errors), (11, 2, 1));
    }

    #[test]
    fn error_kinds_are_bounded() {
        let mut stats = Stats {
            counters: Counters::default(),
            latency: report::new_histogram(),
            connect: report::new_histogram(),
            errors: HashMap::new(),
        };
        for i in 0..100 {
            stats.error(format!("e{}", i % 40));
        }
        stats.error("e0".into());
        assert_eq!(stats.counters.errors, 101);
        let samples = stats.error_samples();
        assert_eq!(samples.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(samples.iter().map(|s| s.count).sum::<u64>(), 101);
        assert_eq!(samples[0].message, "other errors");
    }
}
