//! The node registry: who is up, where clients reach it and how busy it is.
//!
//! Each node publishes its entry ([`NodeInfo`]: public URL, open
//! connections, CPU) every second on `{subject_prefix}_nodes.{name}` (a root of
//! its own, apart from the updates under `{subject_prefix}.>`), and an
//! empty one when it stops; every node subscribes to them all and forgets an
//! entry not refreshed for [`STALE`] (a node that died). So each knows the
//! live nodes without asking, and [`Registry::least_loaded`] is a local read
//! (what `/negotiate` uses to spread clients).
//!
//! The registry also holds the adapters' lease: of the live nodes that may
//! run the cluster's leased adapters (those that make a market of their own,
//! run once per cluster), the one up the longest holds it
//! ([`Registry::holds_lease`]). A node takes it only after watching the
//! registry for [`LEASE_AFTER`], so a node that starts never takes it from
//! one that runs; when the holder stops (its empty entry) or dies (its entry
//! goes stale), the next takes over within [`STALE`].
//!
//! Core NATS, not a JetStream key-value bucket: the entries are refreshed
//! every second anyway, and the JetStream answers of Debian's `nats-server`
//! 2.9 do not parse with the current Rust client (the bucket cannot even be
//! created), so a bucket would tie the cluster to a newer server for no gain
//! here.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::{Cluster, ClusterError};

/// How often a node refreshes its entry.
pub const REFRESH: Duration = Duration::from_secs(1);
/// An entry not refreshed for this long is not offered to clients.
pub const STALE: Duration = Duration::from_secs(3);
/// How long `/negotiate` waits for a node it would hand out to answer.
pub const PING_WAIT: Duration = Duration::from_millis(250);
/// How long a node watches the registry before it may hold the lease.
pub const LEASE_AFTER: Duration = Duration::from_secs(2);

/// One node's entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// Where clients reach it (`http://host:port`).
    pub url: String,
    /// Its open WebSocket connections.
    pub connections: u64,
    /// Its CPU use over the last second, in percent of one core.
    pub cpu_percent: f64,
    /// When it started (Unix milliseconds): the oldest candidate holds the
    /// lease.
    pub started_ms: u64,
    /// Whether it may run the cluster's leased adapters.
    pub candidate: bool,
    /// Its open connections by API key name (keys with none left out).
    pub keys: Vec<(String, u64)>,
}

/// What a node tells the registry of itself, and takes from the others'
/// entries.
pub trait Local: Send + Sync + 'static {
    /// Its open WebSocket connections.
    fn connections(&self) -> u64;
    /// Its open connections by API key name (keys with none left out).
    fn connections_by_key(&self) -> Vec<(String, u64)>;
    /// The other live nodes' connections by key name, summed; called each
    /// time an entry arrives and every [`REFRESH`].
    fn elsewhere(&self, by_key: &HashMap<String, u64>);
}

impl NodeInfo {
    fn encode(&self) -> Bytes {
        let mut text = format!(
            "{}\n{}\n{:.1}\n{}\n{}",
            self.url,
            self.connections,
            self.cpu_percent,
            self.started_ms,
            u8::from(self.candidate)
        );
        for (key, open) in &self.keys {
            let _ = write!(text, "\nk {} {open}", crate::codec::token(key));
        }
        Bytes::from(text)
    }

    /// An entry; one of an earlier node (three lines) is no candidate and
    /// holds no key's connections.
    fn decode(value: &[u8]) -> Option<NodeInfo> {
        let text = std::str::from_utf8(value).ok()?;
        let mut lines = text.lines();
        Some(NodeInfo {
            url: lines.next()?.to_owned(),
            connections: lines.next()?.parse().ok()?,
            cpu_percent: lines.next()?.parse().ok()?,
            started_ms: lines
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or(u64::MAX),
            candidate: lines.next() == Some("1"),
            keys: lines
                .filter_map(|line| {
                    let (key, open) = line.strip_prefix("k ")?.split_once(' ')?;
                    Some((crate::codec::untoken(key)?, open.parse().ok()?))
                })
                .collect(),
        })
    }
}

/// The live nodes of the cluster, as this node sees them.
pub struct Registry {
    me: String,
    nodes: Mutex<HashMap<String, (NodeInfo, Instant)>>,
    /// When this node started watching.
    since: Instant,
    /// Whether this node may hold the lease.
    candidate: bool,
    /// Whether it holds it, as last worked out (read on every update of a
    /// leased adapter).
    lease: AtomicBool,
    /// Whether this node's connection to NATS is up now.
    connected: Box<dyn Fn() -> bool + Send + Sync>,
    /// For asking a node whether it is up (none in unit tests).
    client: Option<async_nats::Client>,
    /// `{prefix}_nodes_ping.`
    ping_prefix: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("me", &self.me)
            .field("lease", &self.holds_lease())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Joins the registry of `cluster` as a node reached at `url`, whose
    /// open connections `connections` counts: writes this node's entry
    /// every [`REFRESH`] until `shutdown` (then deletes it), and watches
    /// everyone's.
    pub async fn start(
        cluster: &Cluster,
        url: String,
        candidate: bool,
        local: Arc<dyn Local>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Registry>, ClusterError> {
        let client = cluster.client().clone();
        // Not under `{prefix}.>`, where every node reads updates.
        let prefix = format!("{}_nodes.", cluster.subjects);
        let mut entries = client
            .subscribe(format!("{prefix}*"))
            .await
            .map_err(|e| ClusterError::Subscribe(format!("{prefix}*: {e}")))?;
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let registry = Arc::new(Registry {
            me: cluster.node().to_owned(),
            nodes: Mutex::new(HashMap::new()),
            since: Instant::now(),
            candidate,
            lease: AtomicBool::new(false),
            client: Some(client.clone()),
            ping_prefix: format!("{}_nodes_ping.", cluster.subjects),
            connected: {
                let client = client.clone();
                Box::new(move || {
                    client.connection_state() == async_nats::connection::State::Connected
                })
            },
        });
        // Every node answers a ping on `{prefix}_nodes_ping.{name}`: a node
        // about to be handed out is asked first, and NATS says at once when
        // nobody listens there any more (a node that died).
        let mut pings = client
            .subscribe(format!(
                "{}_nodes_ping.{}",
                cluster.subjects,
                cluster.node()
            ))
            .await
            .map_err(|e| ClusterError::Subscribe(format!("node ping: {e}")))?;
        let answering = client.clone();
        let mut stop_answering = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let ping = tokio::select! {
                    () = crate::stopped(&mut stop_answering) => return,
                    ping = pings.next() => ping,
                };
                let Some(ping) = ping else { return };
                if let Some(reply) = ping.reply {
                    let _ = answering.publish(reply, Bytes::new()).await;
                }
            }
        });
        let watching = registry.clone();
        let watching_local = local.clone();
        let mut stop = shutdown.clone();
        let names = prefix.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = stop.wait_for(|&s| s) => return,
                    message = entries.next() => message,
                };
                let Some(message) = message else { return };
                let Some(node) = message.subject.strip_prefix(names.as_str()) else {
                    continue;
                };
                watching.seen(node, &message.payload);
                watching.update_lease();
                watching_local.elsewhere(&watching.elsewhere());
            }
        });
        let me = cluster.node().to_owned();
        let subject = format!("{prefix}{me}");
        let mut stop = shutdown;
        let refreshing = registry.clone();
        tokio::spawn(async move {
            let mut cpu = CpuClock::new();
            let mut ticks = tokio::time::interval(REFRESH);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.wait_for(|&s| s) => break,
                    _ = ticks.tick() => {}
                }
                let info = NodeInfo {
                    url: url.clone(),
                    connections: local.connections(),
                    cpu_percent: cpu.percent(),
                    started_ms,
                    candidate,
                    keys: local.connections_by_key(),
                };
                let entry = info.encode();
                // This node's own entry, which NATS does not echo back.
                refreshing.seen(&me, &entry);
                refreshing.update_lease();
                local.elsewhere(&refreshing.elsewhere());
                if let Err(e) = client.publish(subject.clone(), entry).await {
                    debug!(error = %e, "node registry refresh failed");
                }
            }
            if refreshing.lease.swap(false, Ordering::Relaxed) {
                info!(node = %me, "stopping: the adapters' lease passes to another node");
            }
            // An empty entry: this node leaves.
            let left = match client.publish(subject, Bytes::new()).await {
                Ok(()) => client.flush().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match left {
                Ok(()) => info!(node = %me, "left the node registry"),
                Err(e) => warn!(node = %me, error = %e, "could not leave the node registry"),
            }
        });
        Ok(registry)
    }

    /// An entry of `node` arrived: its state, or (empty) its leaving.
    fn seen(&self, node: &str, value: &[u8]) {
        let mut nodes = crate::lock(&self.nodes);
        if value.is_empty() {
            if nodes.remove(node).is_some() {
                info!(node, "node left");
            }
            return;
        }
        match NodeInfo::decode(value) {
            Some(info) => {
                if !nodes.contains_key(node) {
                    info!(node, url = %info.url, "node up");
                }
                nodes.insert(node.to_owned(), (info, Instant::now()));
            }
            None => warn!(node, "unreadable node registry entry"),
        }
    }

    /// The other live nodes' connections by API key name, summed.
    pub fn elsewhere(&self) -> HashMap<String, u64> {
        let mut sums = HashMap::new();
        for (name, info) in self.live() {
            if name == self.me {
                continue;
            }
            for (key, open) in info.keys {
                *sums.entry(key).or_insert(0) += open;
            }
        }
        sums
    }

    /// Whether this node holds the adapters' lease now: it may hold it, it
    /// has watched the registry for [`LEASE_AFTER`], and of the live nodes
    /// that may, it is the one up the longest (then the first by name).
    pub fn holds_lease(&self) -> bool {
        self.lease.load(Ordering::Relaxed)
    }

    /// Works out whether this node holds the lease, and says when that
    /// changes. While its connection to NATS is down, a node keeps what it
    /// had: the holder goes on feeding its own clients, and no other takes
    /// the lease on the strength of not hearing from anyone.
    fn update_lease(&self) {
        let oldest = || {
            self.live()
                .into_iter()
                .filter(|(_, info)| info.candidate)
                .min_by(|(an, a), (bn, b)| a.started_ms.cmp(&b.started_ms).then(an.cmp(bn)))
                .is_some_and(|(name, _)| name == self.me)
        };
        let holds = self.candidate
            && self.since.elapsed() >= LEASE_AFTER
            && if (self.connected)() {
                oldest()
            } else {
                self.holds_lease()
            };
        if self.lease.swap(holds, Ordering::Relaxed) != holds {
            if holds {
                info!(node = %self.me, "this node holds the adapters' lease: its leased adapters feed the cluster");
            } else {
                info!(node = %self.me, "another node holds the adapters' lease: this node's leased adapters stand by");
            }
        }
    }

    /// The live nodes (refreshed within [`STALE`]), this one included, by
    /// name.
    pub fn live(&self) -> Vec<(String, NodeInfo)> {
        let now = Instant::now();
        let mut live: Vec<(String, NodeInfo)> = crate::lock(&self.nodes)
            .iter()
            .filter(|(_, (_, seen))| now - *seen < STALE)
            .map(|(name, (info, _))| (name.clone(), info.clone()))
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        live
    }

    /// The live node with the fewest connections, as
    /// [`least_loaded`](Self::least_loaded), that answers a ping through NATS
    /// within [`PING_WAIT`] (this node needs none). A node that does not
    /// (NATS answers at once when nobody listens on its ping subject any
    /// more: a node killed a moment ago, whose entry is not stale yet) is
    /// forgotten and the next is asked. `None` when none answers.
    pub async fn least_loaded_alive(&self) -> Option<(String, NodeInfo)> {
        loop {
            let (name, info) = self.least_loaded()?;
            let Some(client) = self.client.as_ref().filter(|_| name != self.me) else {
                return Some((name, info));
            };
            let ping = client.request(format!("{}{name}", self.ping_prefix), Bytes::new());
            match tokio::time::timeout(PING_WAIT, ping).await {
                Ok(Ok(_)) => return Some((name, info)),
                Ok(Err(e)) => {
                    info!(node = %name, error = %e, "node does not answer: not handed out")
                }
                Err(_) => info!(node = %name, "node does not answer in time: not handed out"),
            }
            crate::lock(&self.nodes).remove(&name);
        }
    }

    /// The live node with the fewest connections (then the least CPU, then
    /// this node, then by name): where a new client should go. `None` until
    /// the registry has seen any node.
    pub fn least_loaded(&self) -> Option<(String, NodeInfo)> {
        self.live().into_iter().min_by(|(an, a), (bn, b)| {
            a.connections
                .cmp(&b.connections)
                .then(a.cpu_percent.total_cmp(&b.cpu_percent))
                .then((*an != self.me).cmp(&(*bn != self.me)))
                .then(an.cmp(bn))
        })
    }
}

/// This process's CPU use between two readings (Linux `/proc/self/stat`;
/// 0 elsewhere).
struct CpuClock {
    last: Option<(Instant, u64)>,
}

impl CpuClock {
    fn new() -> CpuClock {
        CpuClock {
            last: Self::ticks().map(|t| (Instant::now(), t)),
        }
    }

    /// User and system time so far, in clock ticks (100 per second).
    fn ticks() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command name, which may hold spaces.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }

    fn percent(&mut self) -> f64 {
        let Some(now_ticks) = Self::ticks() else {
            return 0.0;
        };
        let now = Instant::now();
        let percent = match self.last {
            Some((then, ticks)) => {
                let secs = (now - then).as_secs_f64();
                if secs > 0.0 {
                    (now_ticks.saturating_sub(ticks)) as f64 / 100.0 / secs * 100.0
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, now_ticks));
        percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry of node `me`, which watched it long enough; its own
    /// start is in its own entry.
    fn registry(me: &str, candidate: bool) -> Registry {
        Registry {
            me: me.into(),
            nodes: Mutex::new(HashMap::new()),
            since: Instant::now() - LEASE_AFTER,
            candidate,
            lease: AtomicBool::new(false),
            connected: Box::new(|| true),
            client: None,
            ping_prefix: String::new(),
        }
    }

    fn candidate(started_ms: u64, candidate: bool) -> Bytes {
        NodeInfo {
            url: "http://x".into(),
            connections: 0,
            cpu_percent: 0.0,
            started_ms,
            candidate,
            keys: Vec::new(),
        }
        .encode()
    }

    #[test]
    fn the_oldest_live_candidate_holds_the_lease() {
        let b = registry("b", true);
        b.seen("b", &candidate(200, true));
        b.seen("a", &candidate(100, true));
        b.seen("old", &candidate(50, false));
        b.update_lease();
        assert!(!b.holds_lease(), "a is older");
        // A younger candidate changes nothing.
        b.seen("c", &candidate(300, true));
        b.update_lease();
        assert!(!b.holds_lease());
        // a dies (its entry goes stale): b, the oldest left that may,
        // takes it; so it does when a leaves.
        crate::lock(&b.nodes).get_mut("a").unwrap().1 = Instant::now() - STALE;
        b.update_lease();
        assert!(b.holds_lease());
        b.seen("a", &candidate(100, true));
        b.update_lease();
        assert!(!b.holds_lease(), "a is back");
        b.seen("a", b"");
        b.update_lease();
        assert!(b.holds_lease());
        // a is back, but a's entry says it started later now.
        b.seen("a", &candidate(400, true));
        b.update_lease();
        assert!(b.holds_lease());
        // An entry of an earlier node (three lines) is no candidate.
        b.seen("d", b"http://d\n0\n0.0");
        b.update_lease();
        assert!(b.holds_lease());
        // NATS away: the holder keeps it, and a node that did not hold it
        // does not take it for hearing nobody.
        let away = Registry {
            connected: Box::new(|| false),
            ..registry("b", true)
        };
        away.seen("b", &candidate(200, true));
        away.update_lease();
        assert!(!away.holds_lease());
        away.lease.store(true, Ordering::Relaxed);
        away.seen("a", &candidate(100, true));
        away.update_lease();
        assert!(away.holds_lease());
        // A node that may not hold it never does; a new one waits.
        let never = registry("n", false);
        never.seen("n", &candidate(0, false));
        never.update_lease();
        assert!(!never.holds_lease());
        let fresh = Registry {
            since: Instant::now(),
            ..registry("f", true)
        };
        fresh.seen("f", &candidate(0, true));
        fresh.update_lease();
        assert!(!fresh.holds_lease(), "watches for LEASE_AFTER first");
    }

    #[test]
    fn entries_read_back_and_the_least_loaded_wins() {
        let info = NodeInfo {
            url: "http://127.0.0.1:8081".into(),
            connections: 12,
            cpu_percent: 3.5,
            started_ms: 1_700_000_000_000,
            candidate: true,
            keys: vec![("demo".into(), 3), ("a key. with*dots".into(), 1)],
        };
        assert_eq!(NodeInfo::decode(&info.encode()), Some(info.clone()));
        assert_eq!(NodeInfo::decode(b"no"), None);
        let registry = registry("a", true);
        let entry = |url: &str, connections: u64, cpu: f64| {
            NodeInfo {
                url: url.into(),
                connections,
                cpu_percent: cpu,
                started_ms: 0,
                candidate: false,
                keys: vec![("demo".into(), connections)],
            }
            .encode()
        };
        registry.seen("a", &entry("http://a", 5, 1.0));
        registry.seen("b", &entry("http://b", 2, 9.0));
        registry.seen("c", &entry("http://c", 2, 3.0));
        assert_eq!(
            registry.least_loaded().unwrap().0,
            "c",
            "fewest connections, then CPU"
        );
        // Every node but this one, by key.
        assert_eq!(registry.elsewhere(), HashMap::from([("demo".into(), 4)]));
        registry.seen("c", b"");
        assert_eq!(registry.least_loaded().unwrap().0, "b");
        assert_eq!(registry.live().len(), 2);
        // An entry not refreshed for a while is not offered.
        crate::lock(&registry.nodes).get_mut("b").unwrap().1 = Instant::now() - STALE;
        assert_eq!(registry.least_loaded().unwrap().0, "a");
    }
}
