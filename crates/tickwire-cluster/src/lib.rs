//! A cluster of tickwire gateways on one NATS bus.
//!
//! Each node of a cluster delivers what it ingests (its adapters' updates and
//! its publish API's) to its own clients at once, and publishes it once to
//! NATS, on a subject named by feed and topic ([`codec::subject`]), in the
//! model's compact binary form (`proto/cluster.proto`, versioned). A node
//! takes from NATS only the instruments and groups its clients follow
//! ([`interest`]: one subscription per topic, made on the first local
//! follower, dropped a grace after the last), and delivers them through its
//! own fan-out, encoding once per topic and wire format as a single node
//! does. So a client of any node receives what any node ingested, a node
//! receives nothing of what none of its clients follows, and nothing is
//! clustered by hand: NATS carries the updates, routes them by interest and
//! reconnects on its own.
//!
//! What the nodes share besides the updates ([`Cluster::serve`]): the
//! instruments each knows (announced on `{prefix}_known`, and asked for by a
//! starting node), so every node resolves every symbol; the last tick and
//! book of each instrument a node ingested, asked for on
//! `{prefix}_last.…` by a node that starts following it or whose connection
//! to NATS came back; and the node registry ([`registry`]), which
//! `/negotiate` reads to send new clients to the least-loaded node.
//!
//! ```no_run
//! # async fn run() -> Result<(), tickwire_cluster::ClusterError> {
//! use std::time::Duration;
//! use tickwire_cluster::interest::BusTopic;
//! use tickwire_config::ClusterConfig;
//! use tickwire_model::Instrument;
//!
//! let config = ClusterConfig::new("nats://127.0.0.1:4222", "a");
//! let (stop, shutdown) = tokio::sync::watch::channel(false);
//! let cluster = tickwire_cluster::Cluster::connect(&config, "blue", shutdown.clone()).await?;
//! let (interest, mut updates) = cluster.follow(Duration::from_secs(2), shutdown);
//! interest.want(BusTopic::Instrument(Instrument::crypto("BTC/USD")));
//! while let Some(update) = updates.recv().await {
//!     // hand it to the local fan-out
//! #   let _ = (&update, &stop);
//! }
//! # Ok(()) }
//! ```

pub mod codec;
pub mod interest;
pub mod registry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use tickwire_config::ClusterConfig;
use tickwire_model::{BarSeed, Instrument, Update};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::interest::Interest;

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
    /// Topics this node subscribes to on the bus now (wanted, or released
    /// and in their grace).
    pub subscriptions: AtomicU64,
    /// Last values taken from other nodes (when a topic is first followed,
    /// and after NATS came back).
    pub last_values: AtomicU64,
    /// Updates of this node's adapters not published: the queue to the bus
    /// was full (NATS away for long). Its own clients had them.
    pub dropped: AtomicU64,
    /// When the last unreadable message was logged.
    last_unreadable_warning: Mutex<Option<Instant>>,
    /// When the last drop was logged.
    last_drop_warning: Mutex<Option<Instant>>,
}

impl BridgeStats {
    /// Counts a bus message (`what`) that could not be read and skips it,
    /// logging at most one line per ten seconds (the count says how many).
    pub(crate) fn skip_unreadable(&self, what: &str, error: &dyn std::fmt::Display) {
        let skipped = self.unreadable.fetch_add(1, Ordering::Relaxed) + 1;
        if due(&self.last_unreadable_warning) {
            warn!(error = %error, skipped, "unreadable {what} skipped");
        }
    }

    /// Counts an update of this node's dropped from a full queue to the bus,
    /// logging at most one line per ten seconds.
    fn drop_from_queue(&self) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if due(&self.last_drop_warning) {
            warn!(
                dropped,
                "the queue to the cluster's bus is full (NATS away?): updates of this node's adapters reach only its own clients"
            );
        }
    }
}

/// Whether a warning last logged at `last` may be logged again (ten seconds
/// on); if so, now is the last time.
fn due(last: &Mutex<Option<Instant>>) -> bool {
    let mut last = lock(last);
    let now = Instant::now();
    if last.is_some_and(|t| now - t < Duration::from_secs(10)) {
        return false;
    }
    *last = Some(now);
    true
}

/// What a node knows of what it published itself.
#[derive(Debug, Default)]
struct Published {
    /// The last state update (tick, book) of each subject, as sent: what
    /// the node answers a `{prefix}_last` request with.
    last: HashMap<String, Bytes>,
    /// When each instrument was last announced on `{prefix}_known`.
    announced: HashMap<Instrument, Instant>,
}

/// How often a node announces again an instrument it keeps ingesting, so
/// that the other nodes' tables keep it (they forget instruments idle for
/// a whole `forget_instruments_after_secs`).
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(60);

/// The longest a poll waits for other nodes' last values.
pub const LAST_VALUES_WAIT: Duration = Duration::from_millis(250);
/// How long it waits for more once a node answered.
const LAST_VALUES_AFTER_REPLY: Duration = Duration::from_millis(20);

/// Instruments per `Known` message in answer to a catalogue request.
const CATALOGUE_CHUNK: usize = 1000;

/// A node's connection to the cluster's bus.
#[derive(Debug, Clone)]
pub struct Cluster {
    client: async_nats::Client,
    node: Arc<str>,
    subjects: Arc<str>,
    groups: Arc<str>,
    stats: Arc<BridgeStats>,
    published: Arc<Mutex<Published>>,
    /// Changes each time the connection to NATS comes back.
    reconnected: watch::Receiver<u64>,
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
        let (reconnects, reconnected) = watch::channel(0u64);
        let reconnects = Arc::new(reconnects);
        let client = loop {
            attempt += 1;
            let options = options(config, &node, reconnects.clone()).await?;
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
            published: Arc::default(),
            reconnected,
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

    /// Publishes `update` once for every node that follows its topic (an
    /// update that never travels is left out; a forgetting drops what the
    /// node kept of the instruments). Keeps the last tick and book of each
    /// instrument for the nodes that start following it, and announces an
    /// instrument the node has not announced for [`ANNOUNCE_EVERY`]. Waits
    /// only while the client's buffer is full.
    pub async fn publish(&self, update: &Update) -> Result<(), ClusterError> {
        if let Update::Forget(gone) = update {
            let mut published = lock(&self.published);
            for instrument in gone.iter() {
                published.announced.remove(instrument);
                for kind in ["tick", "book"] {
                    published.last.remove(&codec::instrument_subject(
                        &self.subjects,
                        instrument,
                        kind,
                    ));
                }
            }
            return Ok(());
        }
        let (Some(subject), Some(payload)) = (
            codec::subject(&self.subjects, &self.groups, update),
            codec::encode(update, &self.node),
        ) else {
            return Ok(());
        };
        let announce = {
            let mut published = lock(&self.published);
            if codec::is_state(update) {
                published.last.insert(subject.clone(), payload.clone());
            }
            update.instrument().filter(|i| {
                let now = Instant::now();
                match published.announced.get_mut(*i) {
                    Some(at) if now - *at < ANNOUNCE_EVERY => false,
                    Some(at) => {
                        *at = now;
                        true
                    }
                    None => {
                        published.announced.insert((*i).clone(), now);
                        true
                    }
                }
            })
        };
        if let Some(instrument) = announce {
            // Before the update, so a node that sees the update knows it.
            self.client
                .publish(
                    format!("{}_known", self.subjects),
                    codec::encode_known(std::slice::from_ref(instrument), &self.node),
                )
                .await
                .map_err(|e| ClusterError::Publish(e.to_string()))?;
        }
        self.client
            .publish(subject, payload)
            .await
            .map_err(|e| ClusterError::Publish(e.to_string()))?;
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Announces `instruments` (an adapter's list) to every node now.
    pub async fn announce(&self, instruments: &[Instrument]) -> Result<(), ClusterError> {
        for chunk in instruments.chunks(CATALOGUE_CHUNK) {
            self.client
                .publish(
                    format!("{}_known", self.subjects),
                    codec::encode_known(chunk, &self.node),
                )
                .await
                .map_err(|e| ClusterError::Publish(e.to_string()))?;
        }
        Ok(())
    }

    /// A queue of at most `capacity` updates to the bus, published in order
    /// by a task of its own, so that whoever offers them (an adapter's
    /// stream, on its way to this node's own clients) never waits for NATS.
    /// When NATS is away long enough for the queue to fill, further updates
    /// are dropped from the bus (this node's clients still have them),
    /// counted in [`BridgeStats::dropped`] and logged.
    pub fn publisher(&self, capacity: usize) -> Publisher {
        let (tx, mut rx) = mpsc::channel::<Update>(capacity);
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u64;
            while let Some(update) = rx.recv().await {
                if let Err(e) = cluster.publish(&update).await {
                    failures += 1;
                    if failures.is_power_of_two() {
                        warn!(error = %e, failures, "an update could not be published to the cluster");
                    }
                }
            }
        });
        Publisher {
            tx,
            stats: self.stats.clone(),
        }
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

    /// Starts taking from the bus what this node's clients follow: the
    /// [`Interest`] the endpoints tell, and the updates of every topic they
    /// want, in the order the bus delivers each topic's, until `shutdown`.
    /// A topic's subscription outlives its last follower by `grace`.
    pub fn follow(
        &self,
        grace: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> (Interest, mpsc::Receiver<Update>) {
        interest::start(
            interest::Bus {
                client: self.client.clone(),
                node: self.node.clone(),
                subjects: self.subjects.clone(),
                groups: self.groups.clone(),
                stats: self.stats.clone(),
            },
            grace,
            self.reconnected.clone(),
            shutdown,
        )
    }

    /// Serves what this node shares with the others, until `shutdown`:
    /// answers a request for an instrument's last values with the last tick
    /// and book this node published of it (and, to a node that starts
    /// following it, with the bars `bars` gives: a seed); answers a starting
    /// node's request for the catalogue with the instruments `known` lists;
    /// and hands every instrument another node announces (and those of the
    /// catalogue this node asks for at once) to `learn`.
    pub async fn serve(
        &self,
        known: impl Fn() -> Vec<Instrument> + Send + Sync + 'static,
        learn: impl Fn(&[Instrument]) + Send + Sync + 'static,
        bars: impl Fn(&Instrument) -> Option<BarSeed> + Send + Sync + 'static,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<JoinHandle<()>, ClusterError> {
        let subscribe = |subject: String| {
            let client = self.client.clone();
            async move {
                client
                    .subscribe(subject)
                    .await
                    .map_err(|e| ClusterError::Subscribe(e.to_string()))
            }
        };
        let prefix = self.subjects.clone();
        let mut last_requests = subscribe(format!("{prefix}_last.>")).await?;
        let mut catalogue_requests = subscribe(format!("{prefix}_catalogue")).await?;
        let mut announcements = subscribe(format!("{prefix}_known")).await?;
        let inbox = self.client.new_inbox();
        let mut catalogue = subscribe(inbox.clone()).await?;
        self.client
            .publish_with_reply(format!("{prefix}_catalogue"), inbox, Bytes::new())
            .await
            .map_err(|e| ClusterError::Publish(e.to_string()))?;
        let cluster = self.clone();
        Ok(tokio::spawn(async move {
            let learn_from = |payload: &[u8]| match codec::decode_known(payload) {
                Ok((instruments, origin)) => {
                    debug!(origin, count = instruments.len(), "instruments announced");
                    learn(&instruments);
                }
                Err(e) => cluster.stats.skip_unreadable("instrument list", &e),
            };
            loop {
                tokio::select! {
                    Some(request) = last_requests.next() => cluster.answer_last(&request, &bars).await,
                    Some(request) = catalogue_requests.next() => {
                        let Some(reply) = request.reply else { continue };
                        let all = known();
                        for chunk in all.chunks(CATALOGUE_CHUNK) {
                            let payload = codec::encode_known(chunk, &cluster.node);
                            if let Err(e) = cluster.client.publish(reply.clone(), payload).await {
                                warn!(error = %e, "cannot answer a catalogue request");
                                break;
                            }
                        }
                    }
                    Some(message) = announcements.next() => learn_from(&message.payload),
                    // A status (no responders: no other node is up) is no list.
                    Some(message) = catalogue.next() => if message.status.is_none() {
                        learn_from(&message.payload);
                    },
                    () = stopped(&mut shutdown) => break,
                    else => break,
                }
            }
        }))
    }

    /// The newest tick and book of `instrument` that this node or any other
    /// published, for a node whose clients do not follow it (a poll of the
    /// last-value cache): this node's own, and those the others answer
    /// within [`LAST_VALUES_WAIT`] (waiting a little more after each).
    pub async fn last_values(&self, instrument: &Instrument) -> Vec<Update> {
        let mut newest: HashMap<String, (i64, Update)> = HashMap::new();
        let mut keep = |update: Update| {
            if update.instrument() != Some(instrument) || !codec::is_state(&update) {
                return;
            }
            let Some(subject) = codec::subject(&self.subjects, &self.groups, &update) else {
                return;
            };
            let at = codec::timestamp_ms(&update).unwrap_or(i64::MIN);
            if newest.get(&subject).is_none_or(|(t, _)| *t < at) {
                newest.insert(subject, (at, update));
            }
        };
        let own: Vec<Bytes> = {
            let published = lock(&self.published);
            ["tick", "book"]
                .iter()
                .filter_map(|kind| {
                    let subject = codec::instrument_subject(&self.subjects, instrument, kind);
                    published.last.get(&subject).cloned()
                })
                .collect()
        };
        for payload in own {
            if let Ok((update, _)) = codec::decode(&payload) {
                keep(update);
            }
        }
        let inbox = self.client.new_inbox();
        if let Ok(mut replies) = self.client.subscribe(inbox.clone()).await {
            let asked = self
                .client
                .publish_with_reply(
                    codec::last_values_subject(&self.subjects, instrument),
                    inbox,
                    Bytes::new(),
                )
                .await;
            if asked.is_ok() {
                let deadline = tokio::time::Instant::now() + LAST_VALUES_WAIT;
                let mut until = deadline;
                while let Ok(Some(reply)) = tokio::time::timeout_at(until, replies.next()).await {
                    if reply.status.is_some() {
                        // No responders: no other node is up.
                        break;
                    }
                    if let Ok((update, _)) = codec::decode(&reply.payload) {
                        keep(update);
                    }
                    until = deadline.min(tokio::time::Instant::now() + LAST_VALUES_AFTER_REPLY);
                }
            }
        }
        newest.into_values().map(|(_, update)| update).collect()
    }

    /// Answers a request on `{prefix}_last.i.{exchange}.{symbol}` with the
    /// last tick and book this node published of the instrument, if it
    /// published any: one message each to an inbox (a poll), or one seed
    /// with the instrument's bars as well when the request names the node
    /// that asks (a node that starts following the instrument; the reply
    /// subject is then the instrument's seed subject).
    async fn answer_last(
        &self,
        request: &async_nats::Message,
        bars: &(impl Fn(&Instrument) -> Option<BarSeed> + Send + Sync),
    ) {
        let Some(reply) = &request.reply else { return };
        let Some(topic) = request
            .subject
            .as_str()
            .strip_prefix(&format!("{}_last.", self.subjects))
        else {
            return;
        };
        let found: Vec<Bytes> = {
            let published = lock(&self.published);
            ["tick", "book"]
                .iter()
                .filter_map(|kind| {
                    let key = format!("{}.{topic}.{kind}", self.subjects);
                    published.last.get(&key).cloned()
                })
                .collect()
        };
        if found.is_empty() {
            // This node does not ingest it: others answer.
            return;
        }
        let asking = std::str::from_utf8(&request.payload).unwrap_or_default();
        let answers = if asking.is_empty() {
            found
        } else {
            let instrument = topic
                .strip_prefix("i.")
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(exchange, symbol)| {
                    Some(Instrument::new(
                        codec::untoken(symbol)?,
                        codec::untoken(exchange)?,
                    ))
                });
            let seed_bars = instrument.as_ref().and_then(bars);
            vec![codec::encode_seed(
                &self.node,
                asking,
                found,
                seed_bars.as_ref(),
            )]
        };
        for payload in answers {
            if let Err(e) = self.client.publish(reply.clone(), payload).await {
                warn!(error = %e, "cannot answer a last-values request");
                return;
            }
        }
    }
}

/// A queue to the bus that never waits ([`Cluster::publisher`]).
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Update>,
    stats: Arc<BridgeStats>,
}

impl Publisher {
    /// Queues `update` for the bus, or drops it (counted, and logged at
    /// most once per ten seconds) when the queue is full.
    pub fn offer(&self, update: Update) {
        if self.tx.try_send(update).is_err() {
            self.stats.drop_from_queue();
        }
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
    reconnects: Arc<watch::Sender<u64>>,
) -> Result<async_nats::ConnectOptions, ClusterError> {
    // No echo: the node delivers what it ingests itself, at once; the bus
    // brings it only what other nodes ingested.
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("tickwire-{node}"))
        .no_echo()
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
        let reconnects = reconnects.clone();
        async move {
            match event {
                async_nats::Event::Connected => {
                    info!(node = %node, "NATS connection up");
                    reconnects.send_modify(|n| *n += 1);
                }
                async_nats::Event::Disconnected => {
                    warn!(node = %node, "NATS connection lost; reconnecting")
                }
                other => warn!(node = %node, event = %other, "NATS"),
            }
        }
    }))
}

/// Completes once `shutdown` turns true (or its sender is gone), holding no
/// borrow of the channel when it does.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&s| s).await;
}
