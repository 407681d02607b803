//! A cluster of tickwire gateways on one NATS bus.
//!
//! Each node of a cluster publishes what it ingests (its adapters' updates and
//! its publish API's) once to NATS, on a subject named by feed and topic
//! ([`codec::subject`]), in the model's compact binary form
//! (`proto/cluster.proto`, versioned); every node, the ingesting one included,
//! takes the updates from NATS ([`Cluster::updates`]) and delivers them to its
//! own clients through its own fan-out, encoding once per topic and wire format
//! as a single node does. So a client of any node receives what any node
//! ingested, in the order the bus carried it, and nothing is clustered by hand:
//! NATS carries the updates and reconnects on its own. The nodes find each
//! other in a key-value bucket ([`registry`]), which `/negotiate` reads to
//! send new clients to the least-loaded node.
//!
//! ```no_run
//! # async fn run() -> Result<(), tickwire_cluster::ClusterError> {
//! use futures_util::StreamExt as _;
//! use tickwire_config::ClusterConfig;
//!
//! let config = ClusterConfig::new("nats://127.0.0.1:4222", "a");
//! let (stop, shutdown) = tokio::sync::watch::channel(false);
//! let cluster = tickwire_cluster::Cluster::connect(&config, "blue", shutdown).await?;
//! let mut updates = cluster.updates().await?;
//! while let Some(update) = updates.next().await {
//!     // hand it to the local fan-out
//! #   let _ = (&update, &stop);
//! }
//! # Ok(()) }
//! ```

pub mod codec;
pub mod registry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use tickwire_config::ClusterConfig;
use tickwire_model::Update;
use tokio::sync::watch;
use tracing::{info, warn};

/// Why the cluster's bus failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configuration names something NATS cannot use.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// The node stopped before it could reach NATS.
    #[error("stopped before NATS could be reached")]
    Stopped,
    /// Publishing to NATS failed.
    #[error("publishing to NATS failed: {0}")]
    Publish(String),
    /// Subscribing on NATS failed.
    #[error("subscribing on NATS failed: {0}")]
    Subscribe(String),
}

/// What the bridge has done, since the start.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Updates published to NATS.
    pub published: AtomicU64,
    /// Updates taken from NATS.
    pub received: AtomicU64,
    /// Messages from NATS that could not be read (skipped, logged).
    pub unreadable: AtomicU64,
}

/// A node's connection to the cluster's bus.
#[derive(Debug, Clone)]
pub struct Cluster {
    client: async_nats::Client,
    node: Arc<str>,
    subjects: Arc<str>,
    groups: Arc<str>,
    stats: Arc<BridgeStats>,
}

/// The longest wait between two attempts to reach NATS at start.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Cluster {
    /// Connects to the NATS servers of `config` for a gateway whose groups
    /// are named with `group_prefix`. A node that cannot reach NATS says so
    /// (a warning per attempt, naming the servers and the error) and tries
    /// again, with a growing pause, until it can or `shutdown` turns true.
    /// Once connected, NATS reconnects by itself and every change is logged.
    pub async fn connect(
        config: &ClusterConfig,
        group_prefix: &str,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Cluster, ClusterError> {
        let servers: Vec<async_nats::ServerAddr> = config
            .nats_url
            .iter()
            .map(|url| {
                url.parse()
                    .map_err(|e| ClusterError::Config(format!("nats_url {url:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let node: Arc<str> = Arc::from(config.node_name.as_str());
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u32;
        let client = loop {
            attempt += 1;
            let options = options(config, &node).await?;
            match options.connect(servers.clone()).await {
                Ok(client) => break client,
                Err(e) => {
                    warn!(
                        node = %node,
                        servers = ?config.nats_url,
                        attempt,
                        retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                        error = %e,
                        "cannot reach NATS; the node waits for it and tries again"
                    );
                }
            }
            tokio::select! {
                _ = shutdown.wait_for(|&s| s) => return Err(ClusterError::Stopped),
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        info!(node = %node, servers = ?config.nats_url, "connected to the cluster's NATS");
        Ok(Cluster {
            client,
            node,
            subjects: Arc::from(config.subject_prefix.as_str()),
            groups: Arc::from(group_prefix),
            stats: Arc::new(BridgeStats::default()),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// What the bridge has done.
    pub fn stats(&self) -> &BridgeStats {
        &self.stats
    }

    /// The NATS client, for what else the node shares through NATS.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Publishes `update` once for every node (an update that never travels
    /// is left out). Waits only while the client's buffer is full.
    pub async fn publish(&self, update: &Update) -> Result<(), ClusterError> {
        let (Some(subject), Some(payload)) = (
            codec::subject(&self.subjects, &self.groups, update),
            codec::encode(update, &self.node),
        ) else {
            return Ok(());
        };
        self.client
            .publish(subject, payload)
            .await
            .map_err(|e| ClusterError::Publish(e.to_string()))?;
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Publishes `updates` in order and waits until the NATS server has
    /// them (a publish request's answer means the bus took them).
    pub async fn publish_all(&self, updates: &[Update]) -> Result<(), ClusterError> {
        for update in updates {
            self.publish(update).await?;
        }
        self.client
            .flush()
            .await
            .map_err(|e| ClusterError::Publish(e.to_string()))
    }

    /// Every update any node publishes, this node's included, in the order
    /// the bus delivers them (everything under `{subject_prefix}.>`, which
    /// carries updates only: the registry has a root of its own). A message that cannot be read is skipped,
    /// counted and logged (at most one line per ten seconds).
    pub async fn updates(&self) -> Result<BoxStream<'static, Update>, ClusterError> {
        let subscriber = self
            .client
            .subscribe(format!("{}.>", self.subjects))
            .await
            .map_err(|e| ClusterError::Subscribe(e.to_string()))?;
        let stats = self.stats.clone();
        let mut last_warning: Option<Instant> = None;
        Ok(subscriber
            .filter_map(move |message| {
                let update = match codec::decode(&message.payload) {
                    Ok((update, _origin)) => {
                        stats.received.fetch_add(1, Ordering::Relaxed);
                        Some(update)
                    }
                    Err(e) => {
                        let skipped = stats.unreadable.fetch_add(1, Ordering::Relaxed) + 1;
                        let now = Instant::now();
                        if last_warning.is_none_or(|t| now - t >= Duration::from_secs(10)) {
                            last_warning = Some(now);
                            warn!(subject = %message.subject, error = %e, skipped, "unreadable cluster message skipped");
                        }
                        None
                    }
                };
                std::future::ready(update)
            })
            .boxed())
    }
}

/// Locks `mutex`, whether or not a holder panicked (every lock here guards
/// a map that is consistent between operations).
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The connection options of `config`.
async fn options(
    config: &ClusterConfig,
    node: &Arc<str>,
) -> Result<async_nats::ConnectOptions, ClusterError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("tickwire-{node}"))
        .connection_timeout(Duration::from_secs(2))
        .require_tls(config.tls_required);
    if let Some(file) = &config.credentials_file {
        options = options.credentials_file(file).await.map_err(|e| {
            ClusterError::Config(format!("credentials_file {}: {e}", file.display()))
        })?;
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    let node = node.clone();
    Ok(options.event_callback(move |event| {
        let node = node.clone();
        async move {
            match event {
                async_nats::Event::Connected => info!(node = %node, "NATS connection up"),
                async_nats::Event::Disconnected => {
                    warn!(node = %node, "NATS connection lost; reconnecting")
                }
                other => warn!(node = %node, event = %other, "NATS"),
            }
        }
    }))
}
