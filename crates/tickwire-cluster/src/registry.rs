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
//! Core NATS, not a JetStream key-value bucket: the entries are refreshed
//! every second anyway, and the JetStream answers of Debian's `nats-server`
//! 2.9 do not parse with the current Rust client (the bucket cannot even be
//! created), so a bucket would tie the cluster to a newer server for no gain
//! here.

use std::collections::HashMap;
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

/// One node's entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// Where clients reach it (`http://host:port`).
    pub url: String,
    /// Its open WebSocket connections.
    pub connections: u64,
    /// Its CPU use over the last second, in percent of one core.
    pub cpu_percent: f64,
}

impl NodeInfo {
    fn encode(&self) -> Bytes {
        Bytes::from(format!(
            "{}\n{}\n{:.1}",
            self.url, self.connections, self.cpu_percent
        ))
    }

    fn decode(value: &[u8]) -> Option<NodeInfo> {
        let text = std::str::from_utf8(value).ok()?;
        let mut lines = text.lines();
        Some(NodeInfo {
            url: lines.next()?.to_owned(),
            connections: lines.next()?.parse().ok()?,
            cpu_percent: lines.next()?.parse().ok()?,
        })
    }
}

/// The live nodes of the cluster, as this node sees them.
#[derive(Debug)]
pub struct Registry {
    me: String,
    nodes: Mutex<HashMap<String, (NodeInfo, Instant)>>,
}

impl Registry {
    /// Joins the registry of `cluster` as a node reached at `url`, whose
    /// open connections `connections` counts: writes this node's entry
    /// every [`REFRESH`] until `shutdown` (then deletes it), and watches
    /// everyone's.
    pub async fn start(
        cluster: &Cluster,
        url: String,
        connections: impl Fn() -> u64 + Send + Sync + 'static,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Registry>, ClusterError> {
        let client = cluster.client().clone();
        // Not under `{prefix}.>`, where every node reads updates.
        let prefix = format!("{}_nodes.", cluster.subjects);
        let mut entries = client
            .subscribe(format!("{prefix}*"))
            .await
            .map_err(|e| ClusterError::Subscribe(format!("{prefix}*: {e}")))?;
        let registry = Arc::new(Registry {
            me: cluster.node().to_owned(),
            nodes: Mutex::new(HashMap::new()),
        });
        let watching = registry.clone();
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
            }
        });
        let me = cluster.node().to_owned();
        let subject = format!("{prefix}{me}");
        let mut stop = shutdown;
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
                    connections: connections(),
                    cpu_percent: cpu.percent(),
                };
                if let Err(e) = client.publish(subject.clone(), info.encode()).await {
                    debug!(error = %e, "node registry refresh failed");
                }
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

    #[test]
    fn entries_read_back_and_the_least_loaded_wins() {
        let info = NodeInfo {
            url: "http://127.0.0.1:8081".into(),
            connections: 12,
            cpu_percent: 3.5,
        };
        assert_eq!(NodeInfo::decode(&info.encode()), Some(info.clone()));
        assert_eq!(NodeInfo::decode(b"no"), None);
        let registry = Registry {
            me: "a".into(),
            nodes: Mutex::new(HashMap::new()),
        };
        let entry = |url: &str, connections: u64, cpu: f64| {
            NodeInfo {
                url: url.into(),
                connections,
                cpu_percent: cpu,
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
        registry.seen("c", b"");
        assert_eq!(registry.least_loaded().unwrap().0, "b");
        assert_eq!(registry.live().len(), 2);
        // An entry not refreshed for a while is not offered.
        crate::lock(&registry.nodes).get_mut("b").unwrap().1 = Instant::now() - STALE;
        assert_eq!(registry.least_loaded().unwrap().0, "a");
    }
}
