//! The ZeroMQ SUB adapter: market data from a broker-adapter bus (seed 003, "ZeroMQ
//! Message Bus").
//!
//! Broker adapters publish two-frame messages `[topic, json]` on a PUB socket; the
//! topic is `EXCHANGE_SYMBOL_MODE` or `BROKER_EXCHANGE_SYMBOL_MODE` ([`parse_topic`]),
//! the JSON the adapter's standard fields ([`BusDecoder`]). [`ZmqAdapter`] holds the
//! SUB end: it binds (the default, `tcp://127.0.0.1:5555`, publishers connect to it)
//! or connects to a bound publisher, subscribes to every topic (or the configured
//! prefixes), and turns each message into an [`Update::Trade`] (an LTP-only message)
//! or an [`Update::Tick`] (a quote), and/or an [`Update::Book`], with the broker prefix
//! (else the configured name) as `source`. A malformed message
//! is logged at `warn` and skipped; account-event topics sharing the bus are skipped.
//!
//! It speaks ZMTP 3 through the pure-Rust `zeromq` crate, so no system libzmq is
//! needed.
//!
//! Connection: up to [`ZmqConfig::max_retries`] attempts to bind or connect, with
//! exponential backoff between them; then [`ZmqState::Failed`] and `connect` fails.
//! Once up, a publisher that goes away and comes back is taken up again without a
//! restart: a bound socket accepts the new connection, a connected one reconnects in
//! the background (state [`ZmqState::Reconnecting`] meanwhile). The state is
//! observable ([`ZmqAdapter::state`], [`ZmqAdapter::watch_state`]) and every change
//! is logged.
//!
//! Subscription keys are accepted and ignored: a bus carries whatever its publishers
//! send, so clients may subscribe to any instrument and get it from its first message.
//! The update stream is bounded by [`ZmqConfig::hwm`]: while it is full the receive
//! loop waits, TCP pushes back, and the publisher applies its own high-water mark
//! (ZeroMQ's PUB drops for a subscriber that lags), as with libzmq.
//!
//! Bad input: a bound endpoint is served through a size guard that skips messages
//! over [`ZmqConfig::max_message_bytes`] before the ZMTP codec buffers them (the
//! crate has no `ZMQ_MAXMSGSIZE`; a connected endpoint is a publisher the operator
//! chose, and is read without it). Malformed messages and values out of range
//! (a price of zero or less, a number beyond a double) are skipped and counted by
//! reason ([`ZmqAdapter::skipped`]); the log names the first of each stretch at
//! once and then at most one summary every ten seconds, so a flood of bad messages
//! cannot flood the log.

mod guard;
mod payload;
mod topic;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use zeromq::{Socket as _, SocketEvent, SocketOptions, SocketRecv as _, SubSocket};

use tickwire_model::Update;

use tickwire_adapter::{AdapterError, BoxFuture, BrokerAdapter, UpdateStream};

pub use payload::{BusDecoder, MAX_LEVELS, Skipped};
pub use topic::{BusMode, BusTopic, EXCHANGES, INDEX_EXCHANGES, parse_topic};

/// Configuration of a [`ZmqAdapter`]; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZmqConfig {
    /// The endpoint (default `tcp://127.0.0.1:5555`, the seed's bus).
    pub endpoint: String,
    /// Bind the endpoint (default `true`: publishers connect) or connect to it.
    pub bind: bool,
    /// How many updates wait for the gateway before the receive loop waits (default 1000,
    /// the seed's high-water mark).
    pub hwm: u32,
    /// Topic prefixes to subscribe to; empty (the default) subscribes to everything.
    pub topics: Vec<String>,
    /// Bind or connect attempts before giving up (default 5, as the seed says).
    pub max_retries: u32,
    /// Delay after the first failed attempt, doubled after each (default 500 ms).
    pub backoff_initial_ms: u64,
    /// The longest delay between attempts (default 8000 ms).
    pub backoff_max_ms: u64,
    /// How long one connect attempt may take (default 2000 ms).
    pub connect_timeout_ms: u64,
    /// The adapter's name and the `source` of updates whose topic has no broker
    /// prefix (default `zmq`).
    pub name: String,
    /// The longest message (all its frames) taken from a publisher of a bound
    /// endpoint; longer ones are skipped and counted (default 1 MiB).
    pub max_message_bytes: usize,
}

impl Default for ZmqConfig {
    fn default() -> Self {
        ZmqConfig {
            endpoint: "tcp://127.0.0.1:5555".into(),
            bind: true,
            hwm: 1000,
            topics: Vec::new(),
            max_retries: 5,
            backoff_initial_ms: 500,
            backoff_max_ms: 8000,
            connect_timeout_ms: 2000,
            name: "zmq".into(),
            max_message_bytes: 1024 * 1024,
        }
    }
}

impl ZmqConfig {
    fn validate(&self) -> Result<(), AdapterError> {
        let invalid = |field, reason| Err(AdapterError::InvalidConfig { field, reason });
        if !self.endpoint.starts_with("tcp://") {
            return invalid("endpoint", "must be a tcp:// endpoint");
        }
        if self.hwm == 0 {
            return invalid("hwm", "must be at least 1");
        }
        if self.max_message_bytes == 0 {
            return invalid("max_message_bytes", "must be at least 1");
        }
        if self.max_retries == 0 {
            return invalid("max_retries", "must be at least 1");
        }
        if self.name.is_empty() {
            return invalid("name", "must not be empty");
        }
        Ok(())
    }

    /// The delay before attempt `attempt + 1` after `attempt` failed (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        Duration::from_millis(
            self.backoff_initial_ms
                .saturating_mul(factor)
                .min(self.backoff_max_ms.max(self.backoff_initial_ms)),
        )
    }
}

/// The connection state of a [`ZmqAdapter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZmqState {
    /// Not connected yet.
    Idle,
    /// Binding or connecting: attempt `attempt` of `max_retries`.
    Connecting {
        /// The attempt under way, from 1.
        attempt: u32,
    },
    /// Attempt `attempt` failed; the next one starts after `delay_ms`.
    Retrying {
        /// The attempt that failed, from 1.
        attempt: u32,
        /// The backoff before the next attempt.
        delay_ms: u64,
    },
    /// Bound and listening, or connected to the publisher.
    Connected,
    /// Connected mode: the publisher went away; reconnecting in the background.
    Reconnecting,
    /// Every attempt failed; the adapter produces nothing.
    Failed,
    /// Disconnected for good.
    Stopped,
}

impl From<ZmqState> for &'static str {
    fn from(state: ZmqState) -> Self {
        state.as_str()
    }
}

impl ZmqState {
    /// A one-word name for logs and `get_broker_info`: `idle`, `connecting`,
    /// `retrying`, `connected`, `reconnecting`, `failed` or `stopped`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ZmqState::Idle => "idle",
            ZmqState::Connecting { .. } => "connecting",
            ZmqState::Retrying { .. } => "retrying",
            ZmqState::Connected => "connected",
            ZmqState::Reconnecting => "reconnecting",
            ZmqState::Failed => "failed",
            ZmqState::Stopped => "stopped",
        }
    }
}

/// A [`BrokerAdapter`] fed by a ZeroMQ SUB socket; see the [module docs](self).
///
/// ```no_run
/// use tickwire_adapter_zmq::{ZmqAdapter, ZmqConfig};
/// use tickwire_adapter::BrokerAdapter;
///
/// # async fn run() -> Result<(), tickwire_adapter::AdapterError> {
/// let adapter = ZmqAdapter::new(ZmqConfig::default())?;
/// let updates = adapter.updates()?;
/// adapter.connect().await?; // binds tcp://127.0.0.1:5555
/// assert_eq!(adapter.state().as_str(), "connected");
/// # drop(updates); Ok(()) }
/// ```
#[derive(Debug)]
pub struct ZmqAdapter {
    config: ZmqConfig,
    state: watch::Sender<ZmqState>,
    skips: Arc<Skips>,
    inner: Mutex<Inner>,
    /// Serializes `connect` calls.
    connecting: tokio::sync::Mutex<()>,
}

/// Never held across an `.await`.
#[derive(Debug)]
struct Inner {
    tx: Option<mpsc::Sender<Update>>,
    rx: Option<mpsc::Receiver<Update>>,
    task: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    disconnected: bool,
    /// The endpoint bound or connected to (a bound port 0 resolved).
    local: Option<String>,
}

impl ZmqAdapter {
    /// An adapter with `config`, not connected yet. Errors:
    /// [`AdapterError::InvalidConfig`] for a non-`tcp://` endpoint, a zero `hwm` or
    /// `max_retries`, or an empty name.
    pub fn new(config: ZmqConfig) -> Result<Self, AdapterError> {
        config.validate()?;
        let capacity = usize::try_from(config.hwm).unwrap_or(usize::MAX);
        let (tx, rx) = mpsc::channel(capacity);
        Ok(ZmqAdapter {
            config,
            state: watch::Sender::new(ZmqState::Idle),
            skips: Arc::new(Skips::default()),
            inner: Mutex::new(Inner {
                tx: Some(tx),
                rx: Some(rx),
                task: None,
                disconnected: false,
                local: None,
            }),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ZmqConfig {
        &self.config
    }

    /// The endpoint in use once connected: for a bind, the address actually bound
    /// (`tcp://127.0.0.1:0` resolves to the port chosen).
    pub fn local_endpoint(&self) -> Option<String> {
        self.inner.lock().local.clone()
    }

    /// Messages skipped so far, by reason (a malformed message, a value out of
    /// range, a message over `max_message_bytes`, ...).
    pub fn skipped(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = self.skips.by_reason.lock().clone();
        let oversized = self.skips.guard.oversized.load(Ordering::Relaxed);
        if oversized > 0 {
            counts.insert(OVERSIZED, oversized);
        }
        counts
    }

    /// The connection state now.
    pub fn state(&self) -> ZmqState {
        *self.state.borrow()
    }

    /// A receiver of state changes (for health reporting and tests).
    pub fn watch_state(&self) -> watch::Receiver<ZmqState> {
        self.state.subscribe()
    }

    fn set_state(&self, state: ZmqState) {
        set_state(&self.state, &self.config, state);
    }

    fn disconnected(&self) -> AdapterError {
        AdapterError::Disconnected {
            adapter: self.config.name.clone(),
        }
    }

    /// One bind or connect attempt: a subscribed socket, its monitor, the
    /// endpoint in use and, for a bind, the size guard serving it.
    async fn attempt(&self) -> Result<Attempted, zeromq::ZmqError> {
        let mut options = SocketOptions::default();
        options.connect_timeout(Duration::from_millis(self.config.connect_timeout_ms.max(1)));
        let mut socket = SubSocket::with_options(options);
        let monitor = socket.monitor().boxed();
        // Subscribe first: the socket remembers and sends them to every peer that comes.
        if self.config.topics.is_empty() {
            socket.subscribe("").await?;
        }
        for prefix in &self.config.topics {
            socket.subscribe(prefix).await?;
        }
        let (local, guard) = if self.config.bind {
            // The socket on a loopback port of its own, the endpoint served
            // by the guard (see the module docs).
            let inner = socket.bind("tcp://127.0.0.1:0").await?.to_string();
            let inner: std::net::SocketAddr = inner
                .strip_prefix("tcp://")
                .and_then(|a| a.parse().ok())
                .ok_or(zeromq::ZmqError::Other("the socket bound no TCP address"))?;
            let guard = guard::Guard::bind(
                &self.config.endpoint,
                inner,
                self.config.max_message_bytes,
                self.skips.guard.clone(),
                self.config.name.clone(),
            )
            .await?;
            (format!("tcp://{}", guard.local_addr()), Some(guard))
        } else {
            socket.connect(&self.config.endpoint).await?;
            (self.config.endpoint.clone(), None)
        };
        Ok(Attempted {
            socket,
            monitor,
            local,
            guard,
        })
    }
}

/// A successful bind or connect.
struct Attempted {
    socket: SubSocket,
    monitor: BoxStream<'static, SocketEvent>,
    local: String,
    guard: Option<guard::Guard>,
}

/// The reason counted for messages over `max_message_bytes`.
const OVERSIZED: &str = "message over max_message_bytes";

/// How often at most the receive loop logs skipped messages.
const SKIP_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Skipped messages, counted by reason.
#[derive(Debug, Default)]
struct Skips {
    by_reason: Mutex<BTreeMap<&'static str, u64>>,
    guard: Arc<guard::GuardStats>,
}

/// The receive loop's log of skipped messages: the first of a stretch at
/// once, then one summary per [`SKIP_LOG_PERIOD`] at most.
#[derive(Debug, Default)]
struct SkipLog {
    last: Option<std::time::Instant>,
    /// Skipped since the last line, by reason.
    unreported: BTreeMap<&'static str, u64>,
}

impl SkipLog {
    /// Counts one skipped message; logs it when the last line is old enough.
    fn skipped(&mut self, skips: &Skips, adapter: &str, reason: &'static str, topic: &[u8]) {
        *skips.by_reason.lock().entry(reason).or_default() += 1;
        let now = std::time::Instant::now();
        if self.last.is_some_and(|last| now - last < SKIP_LOG_PERIOD) {
            *self.unreported.entry(reason).or_default() += 1;
            return;
        }
        self.flush(adapter);
        self.last = Some(now);
        let topic = String::from_utf8_lossy(&topic[..topic.len().min(128)]);
        warn!(adapter, %topic, reason, "zmq message skipped");
    }

    /// Logs what was skipped since the last line, if anything.
    fn flush(&mut self, adapter: &str) {
        if self.unreported.is_empty() {
            return;
        }
        let total: u64 = self.unreported.values().sum();
        let reasons = format!("{:?}", self.unreported);
        warn!(adapter, skipped = total, %reasons, "zmq messages skipped since the last report");
        self.unreported.clear();
        self.last = Some(std::time::Instant::now());
    }
}

fn set_state(sender: &watch::Sender<ZmqState>, config: &ZmqConfig, state: ZmqState) {
    let old = sender.send_replace(state);
    if old == state {
        return;
    }
    let endpoint = &config.endpoint;
    let adapter = &config.name;
    match state {
        ZmqState::Idle | ZmqState::Stopped => {
            info!(adapter, endpoint, state = state.as_str(), "zmq adapter")
        }
        ZmqState::Connecting { attempt } => {
            info!(
                adapter,
                endpoint,
                attempt,
                max = config.max_retries,
                bind = config.bind,
                "zmq adapter connecting"
            )
        }
        ZmqState::Retrying { attempt, delay_ms } => {
            warn!(
                adapter,
                endpoint,
                attempt,
                max = config.max_retries,
                delay_ms,
                "zmq adapter retrying"
            )
        }
        ZmqState::Connected => info!(
            adapter,
            endpoint,
            bind = config.bind,
            "zmq adapter connected"
        ),
        ZmqState::Reconnecting => warn!(adapter, endpoint, "zmq publisher lost; reconnecting"),
        ZmqState::Failed => error!(
            adapter,
            endpoint,
            attempts = config.max_retries,
            "zmq adapter failed"
        ),
    }
}

/// The receive loop: messages to updates, monitor events to states, until stopped.
async fn receive(
    up: Attempted,
    mut stop: oneshot::Receiver<()>,
    tx: mpsc::Sender<Update>,
    state: watch::Sender<ZmqState>,
    config: ZmqConfig,
    skips: Arc<Skips>,
) {
    let Attempted {
        mut socket,
        mut monitor,
        guard,
        ..
    } = up;
    let mut decoder = BusDecoder::new(config.name.as_str());
    let adapter = config.name.as_str();
    let mut log = SkipLog::default();
    let mut report = tokio::time::interval(SKIP_LOG_PERIOD);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = report.tick() => log.flush(adapter),
            event = monitor.next() => match event {
                Some(SocketEvent::Accepted(endpoint, _)) => {
                    info!(adapter, %endpoint, "zmq publisher connected");
                }
                Some(SocketEvent::Connected(endpoint, _)) => {
                    info!(adapter, %endpoint, "zmq connected to publisher");
                    set_state(&state, &config, ZmqState::Connected);
                }
                Some(SocketEvent::Disconnected(_)) => {
                    if config.bind {
                        info!(adapter, "zmq publisher disconnected; waiting for it to come back");
                    } else {
                        set_state(&state, &config, ZmqState::Reconnecting);
                    }
                }
                Some(_) => {}
                // The monitor is gone (the socket is shutting down): keep receiving.
                None => monitor = futures_util::stream::pending().boxed(),
            },
            message = socket.recv() => match message {
                Ok(message) => {
                    let (Some(topic), Some(payload), 2) = (message.get(0), message.get(1), message.len()) else {
                        let topic = message.get(0).map_or(&[][..], |t| &t[..]);
                        log.skipped(&skips, adapter, "expected two frames [topic, json]", topic);
                        continue;
                    };
                    match decoder.decode(topic, payload, tickwire_model::now_millis()) {
                        Ok(updates) => {
                            for update in updates {
                                if tx.send(update).await.is_err() {
                                    debug!(adapter, "zmq update stream dropped; stopping");
                                    return;
                                }
                            }
                        }
                        Err(Skipped::NotMarketData) => {
                            debug!(adapter, topic = %String::from_utf8_lossy(topic), "zmq control topic skipped");
                        }
                        Err(Skipped::Malformed(reason)) => {
                            log.skipped(&skips, adapter, reason, topic);
                        }
                    }
                }
                Err(e) => {
                    // A peer went away mid-message; the socket carries on with the others.
                    debug!(adapter, error = %e, "zmq receive error");
                    tokio::task::yield_now().await;
                }
            },
        }
    }
    log.flush(adapter);
    // Dropping the guard stops its relays; the socket, its accept loop and
    // reconnect tasks.
    drop(guard);
    drop(socket);
}

impl BrokerAdapter for ZmqAdapter {
    fn name(&self) -> &str {
        &self.config.name
    }

    /// Binds or connects, retrying with exponential backoff up to `max_retries`
    /// attempts, then starts the receive loop. Errors: [`AdapterError::Upstream`]
    /// when every attempt failed (state [`ZmqState::Failed`]),
    /// [`AdapterError::Disconnected`] after `disconnect`.
    fn connect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        Box::pin(async move {
            let _serial = self.connecting.lock().await;
            {
                let inner = self.inner.lock();
                if inner.disconnected {
                    return Err(self.disconnected());
                }
                if inner.task.is_some() {
                    return Ok(());
                }
            }
            let mut attempt = 0;
            let up = loop {
                attempt += 1;
                self.set_state(ZmqState::Connecting { attempt });
                match self.attempt().await {
                    Ok(up) => break up,
                    Err(e) if attempt >= self.config.max_retries => {
                        self.set_state(ZmqState::Failed);
                        return Err(AdapterError::Upstream {
                            adapter: self.config.name.clone(),
                            message: format!(
                                "cannot {} {} after {attempt} attempts: {e}",
                                if self.config.bind {
                                    "bind"
                                } else {
                                    "connect to"
                                },
                                self.config.endpoint
                            ),
                        });
                    }
                    Err(e) => {
                        let delay = self.config.backoff(attempt);
                        warn!(adapter = %self.config.name, attempt, error = %e, "zmq attempt failed");
                        self.set_state(ZmqState::Retrying {
                            attempt,
                            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        });
                        tokio::time::sleep(delay).await;
                    }
                }
            };
            let mut inner = self.inner.lock();
            let tx = match (&inner.tx, inner.disconnected) {
                (Some(tx), false) => tx.clone(),
                _ => return Err(self.disconnected()),
            };
            let (stop_tx, stop_rx) = oneshot::channel();
            let local = up.local.clone();
            let task = tokio::spawn(receive(
                up,
                stop_rx,
                tx,
                self.state.clone(),
                self.config.clone(),
                self.skips.clone(),
            ));
            inner.task = Some((stop_tx, task));
            inner.local = Some(local);
            drop(inner);
            self.set_state(ZmqState::Connected);
            Ok(())
        })
    }

    /// Accepts any keys: the bus carries whatever is published.
    fn subscribe<'a>(&'a self, _keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        let result = if self.inner.lock().disconnected {
            Err(self.disconnected())
        } else {
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }

    fn unsubscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.subscribe(keys)
    }

    fn disconnect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        let task = {
            let mut inner = self.inner.lock();
            inner.disconnected = true;
            inner.tx = None;
            inner.task.take()
        };
        self.set_state(ZmqState::Stopped);
        Box::pin(async move {
            if let Some((stop, task)) = task {
                let _ = stop.send(());
                let _ = task.await;
            }
            Ok(())
        })
    }

    fn updates(&self) -> Result<UpdateStream, AdapterError> {
        let rx = self.inner.lock().rx.take();
        let Some(mut rx) = rx else {
            return Err(AdapterError::UpdatesTaken {
                adapter: self.config.name.clone(),
            });
        };
        Ok(Box::pin(futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_serde() {
        let config: ZmqConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, ZmqConfig::default());
        assert_eq!(config.endpoint, "tcp://127.0.0.1:5555");
        assert!(config.bind);
        assert_eq!((config.hwm, config.max_retries), (1000, 5));
        let config: ZmqConfig = serde_json::from_str(
            r#"{"endpoint":"tcp://127.0.0.1:6000","bind":false,"hwm":10,"topics":["NSE_"],"max_retries":2}"#,
        )
        .unwrap();
        assert!(!config.bind);
        assert_eq!(config.topics, ["NSE_"]);
        assert!(serde_json::from_str::<ZmqConfig>(r#"{"port":1}"#).is_err());
        for bad in [
            ZmqConfig {
                endpoint: "ipc:///tmp/x".into(),
                ..ZmqConfig::default()
            },
            ZmqConfig {
                hwm: 0,
                ..ZmqConfig::default()
            },
            ZmqConfig {
                max_retries: 0,
                ..ZmqConfig::default()
            },
            ZmqConfig {
                name: String::new(),
                ..ZmqConfig::default()
            },
        ] {
            assert!(matches!(
                ZmqAdapter::new(bad),
                Err(AdapterError::InvalidConfig { .. })
            ));
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = ZmqConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            ..ZmqConfig::default()
        };
        let delays: Vec<u128> = (1..=6).map(|a| config.backoff(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(config.backoff(u32::MAX).as_millis(), 1000);
    }

    #[test]
    fn states_have_names() {
        assert_eq!(
            ZmqState::Retrying {
                attempt: 1,
                delay_ms: 5
            }
            .as_str(),
            "retrying"
        );
        assert_eq!(ZmqState::Connected.as_str(), "connected");
        assert_eq!(ZmqState::Reconnecting.as_str(), "reconnecting");
    }
}
