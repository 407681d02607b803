//! The coordinator: runs the phases of a load test and builds the report.
//!
//! 1. Raise the open-file limit; learn the group prefix (pubsub: from
//!    every node, which must agree); publish sequence number 0 on every
//!    topic to the publish node (checks the publish key, makes the symbols
//!    known).
//! 2. Read the servers' resident memory (baseline, every `--server-pid`),
//!    start the workers and wait until each has tried all its connections;
//!    read the memory again.
//! 3. Publish for `duration` to the publish node, printing progress every
//!    second.
//! 4. Tell the workers the last sequence numbers; they wait for what is
//!    still on its way (`drain`), add what never came to the drops, and
//!    send their histograms and counters, which are merged into the report.
//!
//! Each worker gets a contiguous range of the global connection indices and
//! every node; connection `i` goes to node `i mod N` whichever worker opens
//! it ([`crate::cli::node_of`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::process::Child;
use tokio::sync::mpsc;

use crate::Error;
use crate::cli::{Settings, Target};
use crate::client;
use crate::net::HttpClient;
use crate::publisher::{Published, Publisher};
use crate::report::{
    self, ConnectTimes, ErrorSample, Latency, NodeConnections, Report, ServerProcess,
};
use crate::system;
use crate::worker::{self, Command, Counters, Event, WorkerPlan, WorkerReport};

/// The group prefix when the protocol does not use groups.
const DEFAULT_PREFIX: &str = "blue";
/// How long workers get to report after the drain.
const REPORT_GRACE: Duration = Duration::from_secs(30);
/// How long a worker process gets to exit after its report.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// Runs one load test and returns its report.
///
/// With `settings.workers > 1` the connections are spread over that many
/// processes started from `settings.worker_exe` (this binary, with
/// `--worker`); with 1 they run on a thread of this process.
pub async fn run(settings: Settings) -> Result<Report, Error> {
    let nofile = system::raise_nofile_limit().unwrap_or(0);
    let per_process = settings.connections.div_ceil(settings.workers) as u64;
    if nofile > 0 && per_process + system::RESERVED_FDS > nofile {
        return Err(Error::invalid(format!(
            "{per_process} connections in one process need more open files than its limit \
             ({nofile}); use --workers {}",
            (settings.connections as u64)
                .div_ceil(nofile.saturating_sub(system::RESERVED_FDS).max(1))
        )));
    }
    let exe = match (&settings.worker_exe, settings.workers) {
        (_, 1) => None,
        (Some(exe), _) => Some(exe.clone()),
        (None, _) => {
            return Err(Error::invalid(
                "--workers above 1 needs the executable to start workers from",
            ));
        }
    };

    let prefix = if settings.protocol.is_pubsub() {
        group_prefix(&settings.nodes, &settings.api_keys[0]).await?
    } else {
        DEFAULT_PREFIX.to_owned()
    };
    let mut publisher = Publisher::new(
        settings.publish_target.clone(),
        &settings.publish_key,
        settings.protocol,
        settings.topics.count(),
        settings.payload,
        &prefix,
    );
    publisher.prime().await?;

    let rss = |pids: &[u32]| -> Vec<Option<u64>> {
        pids.iter()
            .map(|&pid| system::rss_bytes(pid).ok())
            .collect()
    };
    let baseline = rss(&settings.server_pids);
    let mut fleet = Fleet::start(&settings, &prefix, exe)?;
    let connect_start = Instant::now();
    let mut progress = Progress::new(&settings);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    while !fleet.all(|w| w.connected || w.ended) {
        tokio::select! {
            event = fleet.next() => fleet.apply(event)?,
            _ = ticker.tick() => progress.print(&fleet),
        }
    }
    let connect_phase = connect_start.elapsed();
    let connected = fleet.totals().connected;
    if connected == 0 {
        let samples = fleet
            .error_samples()
            .iter()
            .take(5)
            .map(|e| format!("{} x {}", e.count, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        fleet.stop().await;
        return Err(Error::NoConnections { samples });
    }
    let subscribed_rss = rss(&settings.server_pids);
    let host = HostWindow::open(&settings.server_pids);

    let published_count = Arc::new(AtomicU64::new(0));
    progress.start_publishing(published_count.clone());
    let mut publishing = tokio::spawn(publisher.run(
        settings.rate,
        settings.duration,
        settings.publish_interval,
        published_count,
    ));
    let published: Published = loop {
        tokio::select! {
            done = &mut publishing => break done.map_err(|e| Error::Worker {
                worker: 0,
                reason: format!("the publisher failed: {e}"),
            })?,
            event = fleet.next() => fleet.apply(event)?,
            _ = ticker.tick() => progress.print(&fleet),
        }
    };

    let host = host.close();
    fleet.send(&Command::Finish {
        last_seq: published.last_seq.clone(),
        drain_ms: u64::try_from(settings.drain.as_millis()).unwrap_or(u64::MAX),
    });
    let deadline = tokio::time::Instant::now() + settings.drain + REPORT_GRACE;
    while !fleet.all(|w| w.report.is_some() || w.ended) {
        tokio::select! {
            event = fleet.next() => fleet.apply(event)?,
            _ = ticker.tick() => progress.print(&fleet),
            () = tokio::time::sleep_until(deadline) => {
                return Err(Error::Worker {
                    worker: fleet.workers.iter().position(|w| w.report.is_none()).unwrap_or(0),
                    reason: "no report after the drain".into(),
                });
            }
        }
    }
    let end_rss = rss(&settings.server_pids);
    let reports = fleet.reports()?;
    fleet.stop().await;
    let (mut report, latency) = build_report(
        &settings,
        &reports,
        &published,
        connect_phase,
        [baseline, subscribed_rss, end_rss],
        nofile,
        host,
    );
    if let Some(path) = &settings.hgrm {
        std::fs::write(path, report::hgrm(&latency)).map_err(|e| Error::Io {
            what: format!("writing {}", path.display()),
            source: e,
        })?;
    }
    report.thresholds = settings.thresholds.check(&report);
    Ok(report)
}

/// The group prefix of the nodes, from `/negotiate` at each of them (each
/// address once): they must agree, or they are not one cluster.
async fn group_prefix(nodes: &[Target], key: &str) -> Result<String, Error> {
    let mut prefix: Option<(String, &Target)> = None;
    for (i, node) in nodes.iter().enumerate() {
        if nodes[..i].iter().any(|n| n.addr == node.addr) {
            continue;
        }
        let mut http = HttpClient::new(node.clone());
        let theirs = client::negotiate(&mut http, key).await?.prefix;
        match &prefix {
            None => prefix = Some((theirs, node)),
            Some((first, at)) if *first != theirs => {
                return Err(Error::invalid(format!(
                    "the nodes do not share a group prefix ({} has {first:?}, {} has {theirs:?}): \
                     --url names the nodes of one cluster",
                    at.addr, node.addr
                )));
            }
            Some(_) => {}
        }
    }
    prefix
        .map(|(p, _)| p)
        .ok_or_else(|| Error::invalid("--url names no node"))
}

/// The machine and the servers while publishing; each figure `None` when
/// `/proc` (or a server's pid) did not give it.
struct Host {
    /// Per `--server-pid`, in order.
    server_cpu_s: Vec<Option<f64>>,
    load_avg_1m: Option<f64>,
    host_steal_pct: Option<f64>,
}

/// What [`Host`] is measured from: the readings when publishing began.
struct HostWindow {
    server_pids: Vec<u32>,
    server_cpu: Vec<Option<f64>>,
    machine: Option<system::MachineCpu>,
    load_avg_1m: Option<f64>,
}

impl HostWindow {
    fn server_cpu(pids: &[u32]) -> Vec<Option<f64>> {
        pids.iter()
            .map(|&pid| system::cpu_seconds(pid).ok())
            .collect()
    }

    fn open(server_pids: &[u32]) -> HostWindow {
        HostWindow {
            server_pids: server_pids.to_vec(),
            server_cpu: Self::server_cpu(server_pids),
            machine: system::MachineCpu::now().ok(),
            load_avg_1m: system::load_average().ok(),
        }
    }

    /// What happened since [`HostWindow::open`].
    fn close(self) -> Host {
        let now = Self::server_cpu(&self.server_pids);
        let machine = self.machine.zip(system::MachineCpu::now().ok());
        Host {
            server_cpu_s: self
                .server_cpu
                .iter()
                .zip(now)
                .map(|(before, after)| {
                    before
                        .zip(after)
                        .map(|(before, after)| round(after - before, 3))
                })
                .collect(),
            load_avg_1m: self.load_avg_1m.map(|l| round(l, 2)),
            host_steal_pct: machine
                .and_then(|(before, after)| after.steal_pct_since(before))
                .map(|pct| round(pct, 2)),
        }
    }
}

/// The sum of `values`; `None` when there is none or one is missing.
fn sum_all<T: std::iter::Sum<T> + Copy>(values: &[Option<T>]) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    values.iter().copied().sum()
}

/// Subscribed connections by address: the nodes' addresses first (in
/// order, each once, 0 when none ended up there), then the others the
/// workers name, by address.
fn by_node(nodes: &[Target], reports: &[WorkerReport]) -> Vec<NodeConnections> {
    let mut out: Vec<NodeConnections> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let addr = node.addr.to_string();
        if !out.iter().any(|n| n.addr == addr) {
            out.push(NodeConnections { addr, connected: 0 });
        }
    }
    let known = out.len();
    for r in reports {
        for n in &r.nodes {
            match out.iter_mut().find(|o| o.addr == n.addr) {
                Some(o) => o.connected += n.connected,
                None => out.push(n.clone()),
            }
        }
    }
    out[known..].sort_by(|a, b| a.addr.cmp(&b.addr));
    out
}

/// Each server process's figures. Which connections a pid holds: all of
/// them when it is the only pid; with as many pids as nodes, pid `k` is
/// node `k`'s and holds the connections subscribed at its address (unless
/// another node has the same address); otherwise unknown.
fn server_processes(
    settings: &Settings,
    by_node: &[NodeConnections],
    connected: u64,
    [baseline, subscribed, end]: [&[Option<u64>]; 3],
    cpu: &[Option<f64>],
) -> Vec<ServerProcess> {
    let pids = &settings.server_pids;
    let paired = pids.len() == settings.nodes.len();
    pids.iter()
        .enumerate()
        .map(|(k, &pid)| {
            let node = settings.nodes.get(k).filter(|_| paired);
            let connections = if pids.len() == 1 {
                Some(connected)
            } else {
                node.filter(|n| settings.nodes.iter().filter(|o| o.addr == n.addr).count() == 1)
                    .map(|n| {
                        let addr = n.addr.to_string();
                        by_node
                            .iter()
                            .find(|b| b.addr == addr)
                            .map_or(0, |b| b.connected)
                    })
            };
            let (before, after) = (baseline[k], subscribed[k]);
            ServerProcess {
                pid,
                url: node.map(|_| settings.urls[k].clone()),
                connections,
                rss_per_conn_bytes: match (before, after, connections) {
                    (Some(before), Some(after), Some(c)) if c > 0 => {
                        Some(after.saturating_sub(before) / c)
                    }
                    _ => None,
                },
                rss_bytes: after,
                rss_baseline_bytes: before,
                rss_end_bytes: end[k],
                cpu_s: cpu[k],
            }
        })
        .collect()
}

/// Merges the workers' reports.
fn build_report(
    settings: &Settings,
    reports: &[WorkerReport],
    published: &Published,
    connect_phase: Duration,
    [baseline, subscribed, end]: [Vec<Option<u64>>; 3],
    nofile: u64,
    host: Host,
) -> (Report, hdrhistogram::Histogram<u64>) {
    let mut counters = Counters::default();
    let mut latency = report::new_histogram();
    let mut connect = report::new_histogram();
    let mut expected = 0;
    let mut errors: Vec<ErrorSample> = Vec::new();
    for r in reports {
        counters.add(&r.counters);
        report::add_buckets(&mut latency, &r.latency);
        report::add_buckets(&mut connect, &r.connect);
        expected += r.expected;
        merge_errors(&mut errors, &r.errors);
    }
    if let Some(first) = &published.first_error {
        merge_errors(
            &mut errors,
            &[ErrorSample {
                message: first.clone(),
                count: published.failed,
            }],
        );
    }
    errors.sort_by(|a, b| b.count.cmp(&a.count).then(a.message.cmp(&b.message)));
    let secs = published.elapsed.as_secs_f64().max(1e-9);
    let connected_by_node = by_node(&settings.nodes, reports);
    let servers = server_processes(
        settings,
        &connected_by_node,
        counters.connected,
        [&baseline, &subscribed, &end],
        &host.server_cpu_s,
    );
    let (baseline, subscribed, end) = (sum_all(&baseline), sum_all(&subscribed), sum_all(&end));
    let rss_per_conn = match (baseline, subscribed) {
        (Some(before), Some(after)) if counters.connected > 0 => {
            Some(after.saturating_sub(before) / counters.connected)
        }
        _ => None,
    };
    let report = Report {
        protocol: settings.protocol.name().to_owned(),
        server: settings
            .nodes
            .iter()
            .map(|n| n.addr.to_string())
            .collect::<Vec<_>>()
            .join(","),
        nodes: settings.nodes.len(),
        urls: settings.urls.clone(),
        publish_url: settings.publish_url.clone(),
        connected_by_node,
        connections: settings.connections,
        connected: counters.connected,
        connect_failures: counters.failed,
        topics: settings.topics.count(),
        subscriptions_per_conn: settings.topics.per_connection(),
        rate_per_topic: settings.rate,
        payload_bytes: settings.payload,
        workers: settings.workers,
        connect_phase_s: round(connect_phase.as_secs_f64(), 3),
        duration_s: round(secs, 3),
        published: published.accepted,
        published_per_sec: round(published.accepted as f64 / secs, 1),
        publish_errors: published.failed,
        expected,
        delivered: counters.delivered,
        delivered_per_sec: round(counters.delivered as f64 / secs, 1),
        latency_us: Latency::of(&latency),
        drops: counters.drops,
        duplicates: counters.duplicates,
        disconnects: counters.disconnects,
        errors: counters.errors + u64::from(published.failed > 0),
        error_samples: errors,
        connect_ms: ConnectTimes::of(&connect),
        rss_per_conn_bytes: rss_per_conn,
        server_rss_bytes: subscribed,
        server_rss_baseline_bytes: baseline,
        server_rss_end_bytes: end,
        client_nofile_limit: nofile,
        server_cpu_s: sum_all(&host.server_cpu_s).map(|s| round(s, 3)),
        load_avg_1m: host.load_avg_1m,
        host_steal_pct: host.host_steal_pct,
        servers,
        thresholds: Vec::new(),
    };
    (report, latency)
}

fn merge_errors(into: &mut Vec<ErrorSample>, from: &[ErrorSample]) {
    for sample in from {
        match into.iter_mut().find(|e| e.message == sample.message) {
            Some(e) => e.count += sample.count,
            None => into.push(sample.clone()),
        }
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// A worker as the coordinator follows it.
#[derive(Debug, Default)]
struct WorkerState {
    counters: Counters,
    errors: Vec<ErrorSample>,
    connected: bool,
    report: Option<WorkerReport>,
    ended: bool,
}

/// How a worker runs.
#[derive(Debug)]
enum Running {
    Thread(std::thread::JoinHandle<Result<(), Error>>),
    Process(Child),
}

/// The workers of a run.
#[derive(Debug)]
struct Fleet {
    workers: Vec<WorkerState>,
    commands: Vec<mpsc::UnboundedSender<Command>>,
    running: Vec<Running>,
    events: mpsc::UnboundedReceiver<(usize, Option<Event>)>,
}

impl Fleet {
    /// Starts the workers of [`plans`].
    fn start(settings: &Settings, prefix: &str, exe: Option<PathBuf>) -> Result<Fleet, Error> {
        let (merged, events) = mpsc::unbounded_channel();
        let n = settings.workers;
        let mut fleet = Fleet {
            workers: (0..n).map(|_| WorkerState::default()).collect(),
            commands: Vec::with_capacity(n),
            running: Vec::with_capacity(n),
            events,
        };
        for plan in plans(settings, prefix) {
            let (command_tx, command_rx) = mpsc::unbounded_channel();
            let running = match &exe {
                None => spawn_thread(plan, command_rx, merged.clone())?,
                Some(exe) => spawn_process(exe, &plan, command_rx, merged.clone())?,
            };
            fleet.commands.push(command_tx);
            fleet.running.push(running);
        }
        Ok(fleet)
    }

    async fn next(&mut self) -> Option<(usize, Option<Event>)> {
        self.events.recv().await
    }

    /// Takes in one event (`None`: every worker link is gone).
    fn apply(&mut self, event: Option<(usize, Option<Event>)>) -> Result<(), Error> {
        let Some((w, event)) = event else {
            for state in &mut self.workers {
                state.ended = true;
            }
            return Ok(());
        };
        let Some(state) = self.workers.get_mut(w) else {
            return Ok(());
        };
        match event {
            Some(Event::Progress { counters }) => state.counters = counters,
            Some(Event::Connected { counters, errors }) => {
                state.counters = counters;
                state.errors = errors;
                state.connected = true;
            }
            Some(Event::Report(report)) => {
                state.counters = report.counters;
                state.report = Some(report);
            }
            None => {
                state.ended = true;
                if state.report.is_none() {
                    return Err(Error::Worker {
                        worker: w,
                        reason: "ended without a report (see its messages above)".into(),
                    });
                }
            }
        }
        Ok(())
    }

    fn all(&self, f: impl Fn(&WorkerState) -> bool) -> bool {
        self.workers.iter().all(f)
    }

    fn totals(&self) -> Counters {
        let mut total = Counters::default();
        for w in &self.workers {
            total.add(&w.counters);
        }
        total
    }

    fn error_samples(&self) -> Vec<ErrorSample> {
        let mut errors = Vec::new();
        for w in &self.workers {
            merge_errors(&mut errors, &w.errors);
        }
        errors.sort_by_key(|e| std::cmp::Reverse(e.count));
        errors
    }

    fn send(&self, command: &Command) {
        for commands in &self.commands {
            let _ = commands.send(command.clone());
        }
    }

    fn reports(&self) -> Result<Vec<WorkerReport>, Error> {
        self.workers
            .iter()
            .enumerate()
            .map(|(worker, w)| {
                w.report.clone().ok_or_else(|| Error::Worker {
                    worker,
                    reason: "no report".into(),
                })
            })
            .collect()
    }

    /// Closes the command links (workers that have not reported stop) and
    /// waits for every worker to end.
    async fn stop(self) {
        drop(self.commands);
        for running in self.running {
            match running {
                Running::Thread(handle) => {
                    let _ = tokio::task::spawn_blocking(move || handle.join()).await;
                }
                Running::Process(mut child) => {
                    if tokio::time::timeout(EXIT_GRACE, child.wait())
                        .await
                        .is_err()
                    {
                        let _ = child.kill().await;
                    }
                }
            }
        }
    }
}

/// The workers' plans: the connections split in contiguous ranges of their
/// global indices, every plan with every node (connection `i` goes to node
/// `i mod N`, whichever worker opens it).
fn plans(settings: &Settings, prefix: &str) -> Vec<WorkerPlan> {
    let n = settings.workers;
    let mut first = 0;
    (0..n)
        .map(|w| {
            let count = settings.connections / n + usize::from(w < settings.connections % n);
            let plan = WorkerPlan {
                worker: w,
                targets: settings.nodes.clone(),
                protocol: settings.protocol,
                topics: settings.topics.count(),
                per_connection: settings.topics.per_connection(),
                first,
                count,
                connect_rate: settings.connect_rate / n as f64,
                connect_concurrency: settings.connect_concurrency,
                connect_timeout_ms: u64::try_from(settings.connect_timeout.as_millis())
                    .unwrap_or(u64::MAX),
                api_keys: settings.api_keys.clone(),
                source_ips: settings.source_ips.clone(),
                prefix: prefix.to_owned(),
            };
            first += count;
            plan
        })
        .collect()
}

fn spawn_thread(
    plan: WorkerPlan,
    commands: mpsc::UnboundedReceiver<Command>,
    merged: mpsc::UnboundedSender<(usize, Option<Event>)>,
) -> Result<Running, Error> {
    let w = plan.worker;
    let (event_tx, mut event_rx) = mpsc::unbounded_channel();
    let handle = std::thread::Builder::new()
        .name(format!("loadtest-worker-{w}"))
        .spawn(move || worker::run_blocking(plan, commands, event_tx))
        .map_err(|e| Error::io("starting a worker thread", e))?;
    tokio::spawn(async move {
        while let Some(event) = event_rx.recv().await {
            let _ = merged.send((w, Some(event)));
        }
        let _ = merged.send((w, None));
    });
    Ok(Running::Thread(handle))
}

fn spawn_process(
    exe: &PathBuf,
    plan: &WorkerPlan,
    mut commands: mpsc::UnboundedReceiver<Command>,
    merged: mpsc::UnboundedSender<(usize, Option<Event>)>,
) -> Result<Running, Error> {
    let w = plan.worker;
    let mut child = tokio::process::Command::new(exe)
        .arg("--worker")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io(format!("starting worker process {}", exe.display()), e))?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(Error::Worker {
            worker: w,
            reason: "no pipes to the worker process".into(),
        });
    };
    let mut plan_line = serde_json::to_vec(plan).map_err(|e| Error::Worker {
        worker: w,
        reason: format!("plan: {e}"),
    })?;
    plan_line.push(b'\n');
    tokio::spawn(async move {
        if stdin.write_all(&plan_line).await.is_err() {
            return;
        }
        while let Some(command) = commands.recv().await {
            let mut line = serde_json::to_vec(&command).unwrap_or_default();
            line.push(b'\n');
            if stdin.write_all(&line).await.is_err() {
                return;
            }
        }
        // Dropping stdin tells the worker to stop.
    });
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Event>(&line) {
                Ok(event) => {
                    let _ = merged.send((w, Some(event)));
                }
                Err(e) => eprintln!("tickwire-loadtest: worker {w} said something odd: {e}"),
            }
        }
        let _ = merged.send((w, None));
    });
    Ok(Running::Process(child))
}

/// The progress line on stderr.
#[derive(Debug)]
struct Progress {
    enabled: bool,
    connections: usize,
    start: Instant,
    published: Option<Arc<AtomicU64>>,
    last: (Instant, u64, u64),
}

impl Progress {
    fn new(settings: &Settings) -> Progress {
        let now = Instant::now();
        Progress {
            enabled: settings.progress,
            connections: settings.connections,
            start: now,
            published: None,
            last: (now, 0, 0),
        }
    }

    fn start_publishing(&mut self, published: Arc<AtomicU64>) {
        self.published = Some(published);
    }

    fn print(&mut self, fleet: &Fleet) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let t = fleet.totals();
        let published = self
            .published
            .as_ref()
            .map_or(0, |p| p.load(Ordering::Relaxed));
        let dt = now.duration_since(self.last.0).as_secs_f64().max(1e-3);
        let pub_rate = (published - self.last.1.min(published)) as f64 / dt;
        let del_rate = (t.delivered - self.last.2.min(t.delivered)) as f64 / dt;
        self.last = (now, published, t.delivered);
        eprintln!(
            "[{:6.1}s] connected {}/{} ({} failed) | published {} ({:.0}/s) | delivered {} ({:.0}/s) | drops {} | disconnects {} | errors {}",
            now.duration_since(self.start).as_secs_f64(),
            t.connected,
            self.connections,
            t.failed,
            published,
            pub_rate,
            t.delivered,
            del_rate,
            t.drops,
            t.disconnects,
            t.errors,
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Args, node_of};

    fn settings(extra: &[&str]) -> Settings {
        let mut argv = vec!["tickwire-loadtest", "--protocol", "ws"];
        argv.extend_from_slice(extra);
        Settings::from_args(&Args::try_parse_from(argv).unwrap()).unwrap()
    }

    const THREE: &str = "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083";

    /// (global index, the port of the node it goes to) of every connection
    /// of every plan, in the order the workers open them.
    fn assignment(plans: &[WorkerPlan]) -> Vec<(usize, u16)> {
        plans
            .iter()
            .flat_map(|p| {
                (p.first..p.first + p.count).map(move |i| (i, p.target_of(i).addr.port()))
            })
            .collect()
    }

    #[test]
    fn connections_go_round_robin_over_the_nodes_across_workers() {
        for workers in ["1", "2", "3", "4"] {
            let s = settings(&["--url", THREE, "--connections", "10", "--workers", workers]);
            let plans = plans(&s, "blue");
            assert_eq!(plans.len(), s.workers);
            for plan in &plans {
                assert_eq!(plan.targets, s.nodes, "every worker knows every node");
            }
            let got = assignment(&plans);
            // Every connection once, in order, to node i mod 3.
            let want: Vec<(usize, u16)> = (0..10).map(|i| (i, [8081, 8082, 8083][i % 3])).collect();
            assert_eq!(got, want, "{workers} workers");
            for (i, port) in got {
                assert_eq!(s.nodes[node_of(i, 3)].addr.port(), port);
            }
        }
        // 3 workers of 10 connections: 4, 3, 3, the middle one starting at
        // node 1 (connection 4), the last at node 1 too (connection 7).
        let s = settings(&["--url", THREE, "--connections", "10", "--workers", "3"]);
        let plans = plans(&s, "blue");
        let firsts: Vec<(usize, usize, u16)> = plans
            .iter()
            .map(|p| (p.first, p.count, p.target_of(p.first).addr.port()))
            .collect();
        assert_eq!(firsts, [(0, 4, 8081), (4, 3, 8082), (7, 3, 8082)]);
    }

    #[test]
    fn a_single_url_sends_every_connection_to_it() {
        let s = settings(&["--connections", "5", "--workers", "2"]);
        let plans = plans(&s, "blue");
        assert!(assignment(&plans).iter().all(|&(_, port)| port == 8080));
    }

    #[test]
    fn plans_cross_the_pipe_to_worker_processes_intact() {
        let s = settings(&["--url", THREE, "--connections", "10", "--workers", "2"]);
        for plan in plans(&s, "blue") {
            let line = serde_json::to_string(&plan).unwrap();
            assert!(!line.contains('\n'));
            let back: WorkerPlan = serde_json::from_str(&line).unwrap();
            assert_eq!(back, plan);
            assert_eq!(back.targets.len(), 3);
            assert_eq!(back.target_of(back.first), plan.target_of(plan.first));
        }
    }

    fn worker_report(nodes: &[(&str, u64)]) -> WorkerReport {
        WorkerReport {
            counters: Counters::default(),
            expected: 0,
            latency: Vec::new(),
            connect: Vec::new(),
            errors: Vec::new(),
            nodes: nodes
                .iter()
                .map(|&(addr, connected)| NodeConnections {
                    addr: addr.into(),
                    connected,
                })
                .collect(),
        }
    }

    #[test]
    fn connections_are_counted_by_node_nodes_first() {
        let s = settings(&["--url", "127.0.0.1:8082,127.0.0.1:8081,127.0.0.1:8082"]);
        let reports = [
            worker_report(&[("127.0.0.1:8081", 2), ("127.0.0.1:9999", 1)]),
            worker_report(&[("127.0.0.1:8081", 3), ("127.0.0.1:9000", 4)]),
        ];
        let got: Vec<(String, u64)> = by_node(&s.nodes, &reports)
            .into_iter()
            .map(|n| (n.addr, n.connected))
            .collect();
        assert_eq!(
            got,
            [
                ("127.0.0.1:8082".to_owned(), 0),
                ("127.0.0.1:8081".to_owned(), 5),
                ("127.0.0.1:9000".to_owned(), 4),
                ("127.0.0.1:9999".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn server_figures_per_pid_and_summed() {
        let by = |counts: &[(&str, u64)]| -> Vec<NodeConnections> { worker_report(counts).nodes };
        // As many pids as nodes: pid k is node k's.
        let s = settings(&[
            "--url",
            "127.0.0.1:8081,127.0.0.1:8082",
            "--server-pid",
            "7,8",
        ]);
        let nodes = by(&[("127.0.0.1:8081", 4), ("127.0.0.1:8082", 2)]);
        let servers = server_processes(
            &s,
            &nodes,
            6,
            [
                &[Some(1000), Some(2000)],
                &[Some(5000), None],
                &[None, Some(9)],
            ],
            &[Some(0.25), None],
        );
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].pid, 7);
        assert_eq!(servers[0].url.as_deref(), Some("127.0.0.1:8081"));
        assert_eq!(servers[0].connections, Some(4));
        assert_eq!(servers[0].rss_per_conn_bytes, Some(1000));
        assert_eq!(servers[0].cpu_s, Some(0.25));
        assert_eq!(servers[1].url.as_deref(), Some("127.0.0.1:8082"));
        assert_eq!(servers[1].connections, Some(2));
        // Not read once every connection was subscribed: no figure.
        assert_eq!(servers[1].rss_per_conn_bytes, None);
        assert_eq!(servers[1].rss_end_bytes, Some(9));
        // Summed only when every pid was read.
        assert_eq!(sum_all(&[Some(1000), Some(2000)]), Some(3000));
        assert_eq!(sum_all(&[Some(5000), None]), None);
        assert_eq!(sum_all::<f64>(&[]), None);

        // One pid: it holds every connection, whatever the nodes.
        let s = settings(&[
            "--url",
            "127.0.0.1:8081,127.0.0.1:8082",
            "--server-pid",
            "7",
        ]);
        let servers = server_processes(&s, &nodes, 6, [&[Some(0)], &[Some(600)], &[None]], &[None]);
        assert_eq!(servers[0].url, None);
        assert_eq!(servers[0].connections, Some(6));
        assert_eq!(servers[0].rss_per_conn_bytes, Some(100));

        // Pids and nodes not paired: no per-pid connections.
        let s = settings(&[
            "--url",
            "127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083",
            "--server-pid",
            "7,8",
        ]);
        let some = [Some(1), Some(2)];
        let servers = server_processes(&s, &nodes, 6, [&some, &some, &some], &[None, None]);
        assert!(
            servers.iter().all(|p| p.url.is_none()
                && p.connections.is_none()
                && p.rss_per_conn_bytes.is_none())
        );
        assert_eq!(servers[1].rss_bytes, Some(2));

        // The same address twice: which pid holds what is unknown.
        let s = settings(&[
            "--url",
            "127.0.0.1:8081,127.0.0.1:8081",
            "--server-pid",
            "7,8",
        ]);
        let servers = server_processes(&s, &nodes, 6, [&some, &some, &some], &[None, None]);
        assert!(servers.iter().all(|p| p.connections.is_none()));
        assert_eq!(servers[0].url.as_deref(), Some("127.0.0.1:8081"));
    }
}
