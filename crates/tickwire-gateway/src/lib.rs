//! The tickwire runtime: an Azure Web PubSub–compatible WebSocket gateway
//! that fans market-data updates out to subscribed clients.
//!
//! It serves, over HTTP/1.1 (hyper) and WebSocket (the sans-IO codec of
//! `tickwire-websocket`):
//!
//! - `GET /negotiate` (`Authorization: Basic <API_KEY>`): one access URL per
//!   hub, each with a short-lived HS256 access token, and the group prefix;
//! - `GET /ws/{hub}` and `GET /client/hubs/{hub}`: the WebSocket endpoints of
//!   the five GEX hubs, speaking the four Azure Web PubSub client
//!   subprotocols (`json`/`protobuf`, plain or `reliable`);
//! - `GET /ws`: the public JSON symbol feed (seed 001): price, order-book and
//!   signal updates per subscribed channel, `server_status`;
//! - `GET /stream`: the authenticated JSON price stream (seed 002), keyed by
//!   `Authorization: Bearer` or `?api_key=`;
//! - `POST /api/v1/publish`: injects ticks, books, signals and raw group
//!   payloads into the fan-out, as if an adapter had produced them;
//! - `GET /api/v1/ws`: the FastWS envelope (seed 004), live OHLCV bars per
//!   `bars:{SYMBOL}:{RESOLUTION}` topic, with its AsyncAPI document at
//!   `/api/v1/ws/asyncapi.json` and a page rendering it at `/api/v1/ws/asyncapi`;
//! - `GET /proxy`, and any path of the proxy's own listener ([`run_with`]):
//!   the broker-adapter market-data proxy (seed 003) with its LTP/Quote/Depth
//!   modes, and `GET /api/v1/{ltp,quote,depth}` polling its last-value cache;
//! - `GET /healthz`.
//!
//! Clients join groups (`{prefix}_{TICKER}_{kind}_{category}`) or subscribe
//! to instruments; every update a [`BrokerAdapter`] produces is encoded once
//! per topic and wire format and queued to every subscriber. One key ring
//! ([`ApiKey`]) serves every endpoint, with per-key endpoints, roles,
//! connection limit and request rate.
//!
//! # Design
//!
//! The connection machinery is `tickwire-core`'s (sessions over the sans-IO
//! codec of `tickwire-websocket`, the writer, bounded outboxes with the
//! [`SlowConsumer`] policies, corked and paced wake-ups, the dispatch of
//! updates) and knows no endpoint; `docs/architecture.md` follows an update
//! through it. This crate is the runtime: each endpoint's module holds its
//! handshake, its `Protocol` (what a connection's messages mean), its
//! `Feed` (what an update becomes for its topics) and its own state; the
//! router (`http.rs`) and [`run_with`] are the one place that knows them
//! all; the reliable subprotocols plug their sequence ids and unacked
//! buffer (1000 messages or 16 MB, then close 1008) into the core's
//! `Sequencer` hook. Shared state (the indexes, the symbol table, the key
//! ring, the proxy's cache) keeps its locks inside its methods and never
//! holds one across an `.await`.
//!
//! A reliable connection that drops without a close handshake keeps its
//! session for `[hubs] recovery_window_secs` (30 by default): its groups'
//! messages are numbered and kept meanwhile, and the client that comes back
//! with `awps_connection_id` and `awps_reconnection_token` gets every
//! message it has not acknowledged, then the live stream. A recovery that
//! cannot be honoured is answered with close code 1008, which tells the
//! client SDKs to start a new session.
//!
//! # Features
//!
//! Each endpoint and adapter is a cargo feature: `pubsub`, `ws`, `stream`,
//! `proxy`, `fastws`, `socketio` (with `proxy`), the adapters `replay`,
//! `synthetic` and `zmq`, and `cluster`, `metrics`, `tls`. The default,
//! `full`, is all of them. With none, the runtime serves the publish API,
//! `/healthz`, `/readyz`, the dashboard and the admin API, and runs the
//! adapters it is given. A configuration that needs a feature the build
//! lacks is refused at start, naming it. `docs/embedding.md` says what each
//! build pulls in.
//!
//! What it does not do: event handlers (upstream webhooks of Azure Web
//! PubSub).
//!
//! # Example
//!
//! A gateway fed by an in-memory adapter, asked whether it is alive, then
//! stopped:
//!
//! ```
//! use std::sync::Arc;
//!
//! use tickwire_adapter::{BrokerAdapter, MemoryAdapter};
//! use tickwire_gateway::Config;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let adapter: Arc<dyn BrokerAdapter> = Arc::new(MemoryAdapter::new("memory"));
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let shutdown = async { stopped.await.ok(); };
//! let gateway = tokio::spawn(tickwire_gateway::run(listener, Config::default(), vec![adapter], shutdown));
//!
//! let mut client = tokio::net::TcpStream::connect(addr).await?;
//! client.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n").await?;
//! let mut answer = String::new();
//! client.read_to_string(&mut answer).await?;
//! assert!(answer.starts_with("HTTP/1.1 200"));
//! assert!(answer.contains(r#""status":"ok""#));
//!
//! stop.send(()).ok();
//! gateway.await.expect("the gateway task")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tickwire_adapter::{AdapterError, BrokerAdapter};
use tickwire_config::PublicUrl;
#[cfg(feature = "cluster")]
use tickwire_core::dispatch::Ingest;
use tickwire_core::{ConnectionSettings, Connections, FanOut};
use tickwire_services::{Context, KeyRing, Learn, Market};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

mod adapters;
mod admin;
#[cfg(feature = "metrics")]
mod counts;
mod dashboard;
mod features;
mod http;
#[cfg(feature = "metrics")]
mod metrics;

#[cfg(feature = "replay")]
pub use adapters::replay_config;
#[cfg(feature = "synthetic")]
pub use adapters::synthetic_config;
#[cfg(feature = "zmq")]
pub use adapters::zmq_config;
pub use adapters::{Adapters, RunOptions, adapters_from_config, locate_replay_data};
pub use tickwire_adapter::AdapterStates;
#[cfg(feature = "replay")]
pub use tickwire_adapter_replay::{ReplayConfig, ReplayMode};
#[cfg(feature = "synthetic")]
pub use tickwire_adapter_synthetic::SyntheticConfig;
#[cfg(feature = "zmq")]
pub use tickwire_adapter_zmq::{ZmqConfig, ZmqState};
pub use tickwire_config::{
    ADAPTER_NAMES, ApiKey, ClusterConfig, Config, ConfigError, DEMO_KEY, DEMO_KEY_NAME, Endpoint,
    FastWsConfig, HubsConfig, ProxyConfig, PublishConfig, ROLE_ADMIN, ROLE_PUBLISH, ReplyStyle,
    Section, SlowConsumer, StreamConfig, TlsConfig, TransportConfig, WsConfig,
};
#[cfg(feature = "pubsub")]
pub use tickwire_endpoint_hubs::{Claims, ROLE_EVENT, ROLE_JOIN_LEAVE, ROLE_SEND};
#[cfg(feature = "tls")]
pub use tickwire_services::tls::Tls;

/// How long connections get to say goodbye after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything that can stop the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration is unusable; fix the named setting.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong and where.
        reason: String,
    },

    /// The built-in demo key is enabled while listening on a non-loopback
    /// address; configure real keys or listen on 127.0.0.1.
    #[error(
        "refusing to listen on {listen} with the demo API key enabled: anyone could use it.\n\
         Configure your own keys, in the config file:\n\
         \n    [[api_keys]]\n    name = \"alice\"\n    key_sha256 = \"<hex SHA-256 of the key>\"   # printf %s KEY | sha256sum\n    roles = [\"webpubsub.joinLeaveGroup\"]\n\n\
         or in the environment:\n\
         \n    TICKWIRE_API_KEYS='[{{name=\"alice\",key=\"<key>\",roles=[\"webpubsub.joinLeaveGroup\"]}}]'\n\n\
         or listen on a loopback address (--listen 127.0.0.1:8080)."
    )]
    DemoKeyOnPublicAddress {
        /// The configured listen address.
        listen: std::net::SocketAddr,
    },

    /// An adapter failed to start; see its error (the source).
    #[error("adapter {adapter} failed to start")]
    Adapter {
        /// The adapter's name.
        adapter: String,
        /// What it reported.
        #[source]
        source: AdapterError,
    },

    /// A socket operation failed (for example binding the listener).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The cluster's bus (NATS) could not be used.
    #[cfg(feature = "cluster")]
    #[error("cluster: {0}")]
    Cluster(#[from] tickwire_cluster::ClusterError),
}

impl From<ConfigError> for GatewayError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::DemoKeyOnPublicAddress { listen } => {
                GatewayError::DemoKeyOnPublicAddress { listen }
            }
            ConfigError::Invalid { reason } => GatewayError::InvalidConfig { reason },
            other => GatewayError::InvalidConfig {
                reason: other.to_string(),
            },
        }
    }
}

/// What the router hands out: the shared services and every endpoint's own
/// state. The one place, with [`run_with`], that knows every endpoint.
struct Shared {
    context: Context,
    /// The hubs' groups (empty without the `pubsub` feature).
    groups: Arc<tickwire_core::Index>,
    #[cfg(feature = "pubsub")]
    hubs: tickwire_endpoint_hubs::HubRoutes,
    #[cfg(feature = "ws")]
    ws: Arc<tickwire_endpoint_ws::Ws>,
    #[cfg(feature = "stream")]
    stream: Arc<tickwire_endpoint_stream::Stream>,
    #[cfg(feature = "fastws")]
    fastws: Arc<tickwire_endpoint_fastws::FastWs>,
    #[cfg(feature = "proxy")]
    proxy: Arc<tickwire_endpoint_proxy::Proxy>,
    publish: tickwire_endpoint_publish::Publish,
    /// Socket.IO's `/market` namespace.
    #[cfg(feature = "socketio")]
    socketio: tickwire_endpoint_socketio::Market,
    /// This node's bus, when it is a cluster member.
    #[cfg(feature = "cluster")]
    cluster: Option<tickwire_cluster::Cluster>,
    /// Set once shutdown is signalled: `/readyz` answers 503 from then on.
    draining: std::sync::atomic::AtomicBool,
    /// The adapters without which the gateway is not ready, and their
    /// watched states.
    required: Vec<String>,
    /// Every adapter started, by name.
    adapter_names: Vec<String>,
    adapter_states: tickwire_adapter::AdapterStates,
    /// Updates taken from each adapter.
    #[cfg(feature = "metrics")]
    ingested: counts::Ingested,
    /// The publish API's answers, by status.
    #[cfg(feature = "metrics")]
    publish_statuses: counts::Statuses,
}

#[cfg(all(feature = "cluster", feature = "pubsub"))]
/// A cluster member's `/negotiate`: new clients go to the least-loaded live
/// node of the registry.
#[derive(Debug)]
struct LeastLoaded(Arc<tickwire_cluster::registry::Registry>);

#[cfg(all(feature = "cluster", feature = "pubsub"))]
impl tickwire_endpoint_hubs::Placement for LeastLoaded {
    fn pick(&self) -> std::pin::Pin<Box<dyn Future<Output = Option<PublicUrl>> + Send + '_>> {
        Box::pin(async move {
            let (_, node) = self.0.least_loaded_alive().await?;
            PublicUrl::parse(&node.url).ok()
        })
    }
}

#[cfg(feature = "cluster")]
/// A cluster member's publish API: the updates reach this node's own
/// clients at once, then the bus, which brings them to the nodes that
/// follow their topics; answered once NATS has them.
struct BusIngest {
    cluster: tickwire_cluster::Cluster,
    local: Arc<tickwire_core::dispatch::SharedFanOut<tickwire_model::Update>>,
}

#[cfg(feature = "cluster")]
impl Ingest<tickwire_model::Update> for BusIngest {
    fn ingest(
        &self,
        updates: Vec<tickwire_model::Update>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            tickwire_core::dispatch::deliver_all(&self.local, updates.iter().cloned());
            self.cluster
                .publish_all(&updates)
                .await
                .map_err(|e| format!("delivered on this node only: {e}"))
        })
    }
}

#[cfg(feature = "cluster")]
/// What a cluster member tells the registry, and takes from it: its
/// connections, in all and by key, and the keys' connections elsewhere.
struct NodeLocal {
    connections: Arc<Connections>,
    keys: Arc<KeyRing>,
}

#[cfg(feature = "cluster")]
impl tickwire_cluster::registry::Local for NodeLocal {
    fn connections(&self) -> u64 {
        self.connections.open()
    }

    fn connections_by_key(&self) -> Vec<(String, u64)> {
        self.keys.connections_by_key()
    }

    fn elsewhere(&self, by_key: &std::collections::HashMap<String, u64>) {
        self.keys.set_elsewhere(by_key);
    }
}

#[cfg(all(feature = "cluster", feature = "proxy"))]
/// A cluster member's proxy polls: the last values of the nodes that ingest
/// an instrument.
struct ClusterLastValues(tickwire_cluster::Cluster);

#[cfg(all(feature = "cluster", feature = "proxy"))]
impl tickwire_endpoint_proxy::LastValues for ClusterLastValues {
    fn fetch(
        &self,
        instrument: &tickwire_model::Instrument,
    ) -> std::pin::Pin<Box<dyn Future<Output = Vec<tickwire_model::Update>> + Send>> {
        let (cluster, instrument) = (self.0.clone(), instrument.clone());
        Box::pin(async move { cluster.last_values(&instrument).await })
    }
}

#[cfg(feature = "cluster")]
/// How long a node keeps a topic's bus subscription after its last local
/// follower left.
const FOLLOW_GRACE: Duration = Duration::from_secs(2);

#[cfg(feature = "cluster")]
/// Updates of this node's adapters waiting for the bus (NATS away) before
/// further ones reach only this node's clients.
const BUS_QUEUE: usize = 65_536;

#[cfg(feature = "cluster")]
/// Tells `interest` what this node's clients follow, as each endpoint's
/// topics gain their first subscriber and lose their last: the hub groups
/// by name, the JSON feeds' and FastWS bars' topics and the proxy's keys by
/// instrument (the interest counts the several topics of one instrument).
fn follow_local_interest(
    groups: &tickwire_core::Index,
    feeds: &tickwire_core::Index,
    #[cfg(feature = "proxy")] proxy: &tickwire_endpoint_proxy::Proxy,
    interest: &tickwire_cluster::interest::Interest,
) {
    use tickwire_cluster::interest::BusTopic;
    let tell = |interest: &tickwire_cluster::interest::Interest, topic, live| {
        if live {
            interest.want(topic);
        } else {
            interest.release(topic);
        }
    };
    let to_groups = interest.clone();
    let groups_watched = groups.watch(Box::new(move |name, live| {
        tell(&to_groups, BusTopic::Group(name.clone()), live);
    }));
    let to_feeds = interest.clone();
    let feeds_watched = feeds.watch(Box::new(move |name, live| {
        let instrument = tickwire_services::market::instrument_of_topic(name);
        #[cfg(feature = "fastws")]
        let instrument = instrument.or_else(|| tickwire_endpoint_fastws::instrument_of_topic(name));
        if let Some(instrument) = instrument {
            tell(&to_feeds, BusTopic::Instrument(instrument), live);
        }
    }));
    debug_assert!(groups_watched.is_ok() && feeds_watched.is_ok());
    #[cfg(feature = "proxy")]
    {
        let to_proxy = interest.clone();
        let proxy_watched = proxy.watch(Box::new(move |instrument, live| {
            tell(&to_proxy, BusTopic::Instrument(instrument.clone()), live);
        }));
        debug_assert!(proxy_watched);
    }
}

/// Every `period` (none when zero) until shutdown: forgets the idle
/// instruments of `market` ([`Market::sweep`]) and tells every feed, in
/// order with the data ([`tickwire_model::Update::Forget`]).
async fn forget_idle_instruments(
    market: Arc<Market>,
    fan_out: Arc<tickwire_core::dispatch::SharedFanOut<tickwire_model::Update>>,
    bus: Option<Bus>,
    period: Duration,
    shutdown: watch::Receiver<bool>,
) {
    if period.is_zero() {
        return;
    }
    tickwire_core::every(period, shutdown, || {
        let gone = market.sweep();
        if gone.is_empty() {
            return;
        }
        info!(
            forgotten = gone.len(),
            known = market.symbols_tracked(),
            idle_secs = period.as_secs(),
            "forgot idle instruments"
        );
        let forget = tickwire_model::Update::Forget(gone.into());
        if let Some(bus) = &bus {
            // What the node keeps for the other nodes goes too.
            bus.offer(forget.clone());
        }
        tickwire_core::dispatch::deliver_all(&fan_out, [forget]);
    })
    .await;
}

/// Where a cluster member offers what its adapters ingest.
#[cfg(feature = "cluster")]
type Bus = tickwire_cluster::Publisher;

/// Built without clusters: there is never a bus.
#[cfg(not(feature = "cluster"))]
#[derive(Debug)]
enum Bus {}

#[cfg(not(feature = "cluster"))]
impl Bus {
    fn offer(&self, _: tickwire_model::Update) {
        match *self {}
    }
}

/// Serves the proxy protocol on its own listener (every path upgrades)
/// until shutdown, when the listener closes.
#[cfg(feature = "proxy")]
async fn serve_proxy_listener(
    listener: TcpListener,
    proxy: Arc<tickwire_endpoint_proxy::Proxy>,
    context: Context,
    tls: Option<features::Tls>,
    tracker: tickwire_core::Tracker,
) {
    let mut shutdown = context.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                debug!(%peer, "accepted on the proxy listener");
                let (proxy, context, tracker) = (proxy.clone(), context.clone(), tracker.clone());
                match tls.clone() {
                    None => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(tickwire_endpoint_proxy::serve(
                            stream, peer, proxy, context, tracker,
                        ));
                    }
                    Some(tls) => {
                        tokio::spawn(async move {
                            match tls.accept(stream).await {
                                Ok(stream) => {
                                    tickwire_endpoint_proxy::serve(
                                        stream, peer, proxy, context, tracker,
                                    )
                                    .await
                                }
                                Err(e) => {
                                    debug!(%peer, error = %e, "TLS handshake failed on the proxy listener")
                                }
                            }
                        });
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Takes every adapter's stream, as the adapter contract asks, then connects
/// each and subscribes it to everything (`*`). An adapter that fails is left
/// out, with its reason logged, unless `required` names it: then the gateway
/// does not start. Returns the adapters that started and their streams.
async fn start_adapters(
    adapters: Vec<Arc<dyn BrokerAdapter>>,
    required: &[String],
    market: &Market,
    #[cfg(feature = "metrics")] ingested: &counts::Ingested,
) -> Result<
    (
        Vec<Arc<dyn BrokerAdapter>>,
        Vec<tickwire_adapter::UpdateStream>,
    ),
    GatewayError,
> {
    if let Some(missing) = required
        .iter()
        .find(|name| !adapters.iter().any(|a| a.name() == name.as_str()))
    {
        return Err(GatewayError::InvalidConfig {
            reason: format!(
                "required_adapters names {missing:?}, which is not one of the adapters ({})",
                adapters
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let mut taken = Vec::with_capacity(adapters.len());
    for adapter in adapters {
        match adapter.updates() {
            Ok(stream) => {
                #[cfg(feature = "metrics")]
                let stream: tickwire_adapter::UpdateStream = {
                    use futures_util::StreamExt as _;
                    let counted = ingested.counter(adapter.name());
                    Box::pin(stream.inspect(move |_| {
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }))
                };
                taken.push((adapter, stream));
            }
            Err(source) => left_out(&adapter, source, required)?,
        }
    }
    let mut started = (
        Vec::with_capacity(taken.len()),
        Vec::with_capacity(taken.len()),
    );
    for (adapter, stream) in taken {
        let start = async {
            adapter.connect().await?;
            adapter.subscribe(&["*".to_owned()]).await
        };
        if let Err(source) = start.await {
            let _ = adapter.disconnect().await;
            left_out(&adapter, source, required)?;
            continue;
        }
        let instruments = adapter.instruments();
        market.learn_all(&instruments);
        market.adapter_connected();
        info!(
            adapter = adapter.name(),
            instruments = instruments.len(),
            "adapter connected"
        );
        started.0.push(adapter);
        started.1.push(stream);
    }
    Ok(started)
}

/// An adapter that failed to start: an error when it is required, else a
/// logged refusal and the gateway goes on without it.
fn left_out(
    adapter: &Arc<dyn BrokerAdapter>,
    source: AdapterError,
    required: &[String],
) -> Result<(), GatewayError> {
    let name = adapter.name().to_owned();
    if required.contains(&name) {
        return Err(GatewayError::Adapter {
            adapter: name,
            source,
        });
    }
    let mut reason = source.to_string();
    let mut cause = std::error::Error::source(&source);
    while let Some(e) = cause {
        reason.push_str(": ");
        reason.push_str(&e.to_string());
        cause = e.source();
    }
    tracing::error!(
        adapter = %name,
        %reason,
        "adapter failed to start; serving without it (list it in `required_adapters` to stop instead)"
    );
    Ok(())
}

/// Serves `listener` until `shutdown` completes.
///
/// Validates `config`, connects every adapter and subscribes it to everything
/// (`*`), then accepts connections. When `shutdown` completes it stops
/// accepting, sends every WebSocket client the `disconnected` message and a
/// close frame (1001), gives connections a few seconds to finish, disconnects
/// the adapters and returns `Ok`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    adapters: Vec<Arc<dyn BrokerAdapter>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GatewayError> {
    run_with(listener, RunOptions::default(), config, adapters, shutdown).await
}

/// Serves `listener`, and what `options` adds, until `shutdown` completes,
/// as [`run`] does: with [`RunOptions::proxy_listener`], the market-data
/// proxy on its own listener too (every path upgrades); with
/// [`RunOptions::adapter_states`], the adapter states its `get_broker_info`
/// reports.
pub async fn run_with(
    listener: TcpListener,
    options: RunOptions,
    config: Config,
    adapters: Vec<Arc<dyn BrokerAdapter>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GatewayError> {
    config.validate()?;
    features::check(&config, &options)?;
    let tls = config
        .tls
        .as_ref()
        .map(features::Tls::load)
        .transpose()
        .map_err(|reason| GatewayError::InvalidConfig { reason })?;
    let keys = Arc::new(KeyRing::new(&config.api_keys)?);
    let public_url = config
        .public_url
        .as_deref()
        .map(PublicUrl::parse)
        .transpose()?;
    // Checked in every build; only the hubs' URLs use it.
    #[cfg(not(feature = "pubsub"))]
    let _ = public_url;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let groups = Arc::new(tickwire_core::Index::new());
    let feeds = Arc::new(tickwire_core::Index::new());
    let market = Arc::new(Market::with_limit(config.max_instruments));
    let connections = Connections::new(
        ConnectionSettings {
            send_buffer: config.transport.send_buffer,
            ping_interval: config.transport.ping_interval(),
            write_timeout: config.transport.write_timeout(),
            write_delay: config.transport.write_delay(),
        },
        shutdown_rx.clone(),
    );
    let context = Context {
        keys: keys.clone(),
        market: market.clone(),
        feeds: feeds.clone(),
        connections,
        shutdown: shutdown_rx.clone(),
        slow_consumer: tickwire_services::slow_consumer(config.transport.slow_consumer),
        origins: Arc::new(tickwire_services::http::Origins::new(
            &config.allowed_origins,
        )),
    };

    // A cluster member takes every update from the bus; one that waits for
    // NATS at start says so and retries (`Cluster::connect`).
    #[cfg(feature = "cluster")]
    let cluster = match &config.cluster {
        Some(cluster) => Some(
            tickwire_cluster::Cluster::connect(cluster, &config.prefix, shutdown_rx.clone())
                .await?,
        ),
        None => None,
    };
    // The node registry: where this node is, how busy, and who else is up.
    #[cfg(feature = "cluster")]
    let registry = match &cluster {
        Some(cluster) => {
            let url = match &config.public_url {
                Some(url) => url.clone(),
                None if config.tls.is_some() => format!("https://{}", listener.local_addr()?),
                None => format!("http://{}", listener.local_addr()?),
            };
            Some(
                tickwire_cluster::registry::Registry::start(
                    cluster,
                    url,
                    config.cluster.as_ref().is_some_and(|c| c.run_adapters),
                    Arc::new(NodeLocal {
                        connections: context.connections.clone(),
                        keys: context.keys.clone(),
                    }),
                    shutdown_rx.clone(),
                )
                .await?,
            )
        }
        None => None,
    };
    let adapters = if config.cluster.as_ref().is_some_and(|c| !c.run_adapters) {
        info!(
            "cluster.run_adapters is false: this node runs no adapter, the bus brings the updates"
        );
        Vec::new()
    } else {
        adapters
    };
    #[cfg(feature = "metrics")]
    let ingested = counts::Ingested::default();
    let (adapters, streams) = start_adapters(
        adapters,
        &config.required_adapters,
        &market,
        #[cfg(feature = "metrics")]
        &ingested,
    )
    .await?;
    let adapter_states = options.adapter_states;
    #[cfg(feature = "proxy")]
    let proxy = Arc::new(tickwire_endpoint_proxy::Proxy::new(
        &config.proxy,
        &adapters,
        adapter_states.clone(),
        keys,
        config.transport.pong_timeout(),
    ));
    #[cfg(not(feature = "proxy"))]
    drop(keys);

    // The one place that knows every endpoint's part of the fan-out, in the
    // order each update reaches them.
    let fan_out = FanOut::new()
        .metered(context.connections.latencies().clone())
        .with("market", Learn::new(market.clone()));
    #[cfg(feature = "proxy")]
    let fan_out = fan_out.with("proxy", tickwire_endpoint_proxy::ProxyFeed(proxy.clone()));
    #[cfg(feature = "pubsub")]
    let fan_out = fan_out.with(
        "pubsub",
        tickwire_endpoint_hubs::GexFeed::new(
            groups.clone(),
            config.prefix.clone(),
            config.zstd_level,
        ),
    );
    #[cfg(feature = "ws")]
    let fan_out = fan_out.with(
        "ws",
        tickwire_endpoint_ws::WsFeed::new(feeds.clone(), config.ws.book_depth),
    );
    #[cfg(feature = "stream")]
    let fan_out = fan_out.with(
        "stream",
        tickwire_endpoint_stream::StreamFeed::new(feeds.clone()),
    );
    #[cfg(feature = "fastws")]
    let fastws = Arc::new(tickwire_endpoint_fastws::FastWs::new(
        config.fastws.clone(),
        market.clone(),
        feeds.clone(),
    ));
    // The endpoint's own feed: it knows which instruments its clients follow.
    #[cfg(feature = "fastws")]
    let bar_feed = fastws.bar_feed();
    // What a cluster member tells the others of the bars it makes.
    #[cfg(all(feature = "fastws", feature = "cluster"))]
    let bar_state = bar_feed.state();
    #[cfg(feature = "fastws")]
    let fan_out = fan_out.with("fastws", bar_feed);
    let fan_out = Arc::new(std::sync::Mutex::new(fan_out));
    // Whom each endpoint's clients follow: never forgotten.
    market.add_interest(tickwire_services::market::json_feeds_interest(
        feeds.clone(),
    ));
    #[cfg(feature = "fastws")]
    market.add_interest(fastws.interest());
    #[cfg(feature = "proxy")]
    market.add_interest({
        let proxy = proxy.clone();
        Box::new(move |instrument| proxy.follows(instrument))
    });
    // Single node: the adapters' streams feed the fan-out. Cluster member:
    // they feed its fan-out and the bus, and the bus brings what other
    // nodes ingest of the topics this node's clients follow.
    #[cfg(feature = "cluster")]
    let (streams, bus, serving, ingest): (_, _, _, Arc<dyn Ingest<tickwire_model::Update>>) =
        match &cluster {
            Some(cluster) => {
                use futures_util::StreamExt as _;
                let (interest, from_bus) = cluster.follow(FOLLOW_GRACE, shutdown_rx.clone());
                #[cfg(feature = "proxy")]
                {
                    follow_local_interest(&groups, &feeds, &proxy, &interest);
                    proxy.last_values_from(Arc::new(ClusterLastValues(cluster.clone())));
                }
                #[cfg(not(feature = "proxy"))]
                follow_local_interest(&groups, &feeds, &interest);
                // What a node starting to follow an instrument's bars is
                // given of the current ones by the node that ingests it.
                #[cfg(feature = "fastws")]
                let bars =
                    move |instrument: &tickwire_model::Instrument| bar_state.seed_of(instrument);
                #[cfg(not(feature = "fastws"))]
                let bars = |_: &tickwire_model::Instrument| None;
                let serving = cluster
                    .serve(
                        {
                            let market = market.clone();
                            move || market.instruments()
                        },
                        {
                            let market = market.clone();
                            move |instruments: &[tickwire_model::Instrument]| {
                                for instrument in instruments {
                                    market.touch(instrument);
                                }
                            }
                        },
                        bars,
                        shutdown_rx.clone(),
                    )
                    .await?;
                let listed: Vec<_> = adapters.iter().flat_map(|a| a.instruments()).collect();
                cluster.announce(&listed).await?;
                let publisher = cluster.publisher(BUS_QUEUE);
                let leased = config
                    .cluster
                    .as_ref()
                    .map(|c| c.leased_adapters.clone())
                    .unwrap_or_default();
                let registry = registry.clone();
                // Each update of an adapter reaches this node's clients and
                // the bus; a leased adapter's, only while this node holds
                // the lease (the others' stand by).
                let mut streams: Vec<tickwire_core::dispatch::Updates<tickwire_model::Update>> =
                    streams
                        .into_iter()
                        .zip(&adapters)
                        .map(|(stream, adapter)| {
                            let publisher = publisher.clone();
                            let lease = registry
                                .clone()
                                .filter(|_| leased.iter().any(|name| name == adapter.name()));
                            Box::pin(stream.filter_map(move |update| {
                                let live = lease.as_ref().is_none_or(|r| r.holds_lease());
                                if live {
                                    publisher.offer(update.clone());
                                }
                                std::future::ready(live.then_some(update))
                            })) as tickwire_core::dispatch::Updates<_>
                        })
                        .collect();
                streams.push(Box::pin(futures_util::stream::unfold(
                    from_bus,
                    |mut rx| async move { rx.recv().await.map(|u| (u, rx)) },
                )));
                (
                    streams,
                    Some(publisher),
                    Some(serving),
                    Arc::new(BusIngest {
                        cluster: cluster.clone(),
                        local: fan_out.clone(),
                    }),
                )
            }
            None => (streams, None, None, fan_out.clone()),
        };
    #[cfg(not(feature = "cluster"))]
    let (bus, serving, ingest): (Option<Bus>, Option<tokio::task::JoinHandle<()>>, _) =
        (None, None, fan_out.clone());
    let forgetting = tokio::spawn(forget_idle_instruments(
        market.clone(),
        fan_out.clone(),
        bus,
        Duration::from_secs(config.forget_instruments_after_secs),
        shutdown_rx.clone(),
    ));
    let adapters_task = tokio::spawn(tickwire_core::dispatch::run(
        fan_out.clone(),
        streams,
        context.connections.slow_consumer_stats().clone(),
        shutdown_rx.clone(),
    ));

    // The endpoints' own periodic work, each ending with the shutdown.
    #[cfg_attr(
        not(any(feature = "ws", feature = "stream", feature = "proxy")),
        allow(unused_mut)
    )]
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    #[cfg(feature = "ws")]
    let ws = Arc::new(tickwire_endpoint_ws::Ws {
        config: config.ws.clone(),
        market: market.clone(),
        feeds: feeds.clone(),
    });
    #[cfg(feature = "ws")]
    tasks.push(tokio::spawn(tickwire_endpoint_ws::status_task(
        ws.clone(),
        context.clone(),
    )));
    #[cfg(feature = "stream")]
    let stream = Arc::new(tickwire_endpoint_stream::Stream {
        config: config.stream.clone(),
        market: market.clone(),
        feeds: feeds.clone(),
    });
    #[cfg(feature = "stream")]
    tasks.push(tokio::spawn(tickwire_endpoint_stream::heartbeat_task(
        stream.clone(),
        context.clone(),
    )));
    #[cfg(feature = "proxy")]
    tasks.push(tokio::spawn(tickwire_endpoint_proxy::throttle_task(
        proxy.clone(),
        shutdown_rx.clone(),
    )));
    #[cfg(feature = "socketio")]
    let socketio = tickwire_endpoint_socketio::Market::new(&context, proxy.clone());
    let shared = Arc::new(Shared {
        groups: groups.clone(),
        #[cfg(feature = "pubsub")]
        hubs: tickwire_endpoint_hubs::HubRoutes {
            hubs: Arc::new(tickwire_endpoint_hubs::Hubs {
                index: groups,
                prefix: config.prefix.clone(),
                max_groups: config.max_groups,
                max_groups_per_connection: config.transport.max_groups_per_connection,
                pong_timeout: config.transport.pong_timeout(),
                max_message_bytes: config.transport.max_message_bytes,
                slow_consumer: context.slow_consumer,
                recovery_window: config.hubs.recovery_window(),
                parked: tickwire_endpoint_hubs::ParkedSessions::with_limit(
                    config.hubs.max_parked_per_key,
                ),
                shares: Arc::new(tickwire_endpoint_hubs::GroupShares::new(
                    config.hubs.max_groups_per_key,
                )),
            }),
            tokens: tickwire_endpoint_hubs::Tokens::new(
                config.token_secret.as_deref(),
                config.token_ttl_secs,
                public_url.as_ref(),
            ),
            public_url,
            listen: config.listen,
            tls: config.tls.is_some(),
            #[cfg(feature = "cluster")]
            placement: registry.map(|registry| {
                Arc::new(LeastLoaded(registry)) as Arc<dyn tickwire_endpoint_hubs::Placement>
            }),
            #[cfg(not(feature = "cluster"))]
            placement: None,
        },
        #[cfg(feature = "ws")]
        ws,
        #[cfg(feature = "stream")]
        stream,
        #[cfg(feature = "fastws")]
        fastws,
        #[cfg(feature = "proxy")]
        proxy: proxy.clone(),
        publish: tickwire_endpoint_publish::Publish {
            config: config.publish.clone(),
            prefix: config.prefix.clone(),
            ingest,
        },
        #[cfg(feature = "socketio")]
        socketio,
        #[cfg(feature = "cluster")]
        cluster: cluster.clone(),
        draining: std::sync::atomic::AtomicBool::new(false),
        required: config.required_adapters.clone(),
        adapter_names: adapters.iter().map(|a| a.name().to_owned()).collect(),
        adapter_states,
        #[cfg(feature = "metrics")]
        ingested,
        #[cfg(feature = "metrics")]
        publish_statuses: counts::Statuses::default(),
        context,
    });
    let config_drain_delay_ms = config.drain_delay_ms;
    let (tracker, mut drained) = tickwire_core::tracker();
    #[cfg(feature = "proxy")]
    if let Some(listener) = options.proxy_listener {
        if let Ok(addr) = listener.local_addr() {
            info!(listen = %addr, "proxy listening");
        }
        tasks.push(tokio::spawn(serve_proxy_listener(
            listener,
            proxy.clone(),
            shared.context.clone(),
            tls.clone(),
            tracker.clone(),
        )));
    }

    tokio::pin!(shutdown);
    // After the shutdown signal: unready (`/readyz` 503) and still serving
    // until this instant, then closing.
    let mut draining_until: Option<tokio::time::Instant> = None;
    let drain_delay = Duration::from_millis(config_drain_delay_ms);
    loop {
        let drained_at = async {
            match draining_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown, if draining_until.is_none() => {
                shared.draining.store(true, std::sync::atomic::Ordering::Release);
                if drain_delay.is_zero() {
                    break;
                }
                info!(
                    drain_delay_ms = config_drain_delay_ms,
                    "shutdown signalled: unready, serving on for the drain delay"
                );
                draining_until = Some(tokio::time::Instant::now() + drain_delay);
            }
            () = drained_at => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    debug!(%peer, "accepted");
                    let (shared, tracker) = (shared.clone(), tracker.clone());
                    match tls.clone() {
                        None => {
                            let _ = stream.set_nodelay(true);
                            tokio::spawn(http::serve(stream, peer, shared, tracker));
                        }
                        Some(tls) => {
                            tokio::spawn(async move {
                                match tls.accept(stream).await {
                                    Ok(stream) => http::serve(stream, peer, shared, tracker).await,
                                    Err(e) => debug!(%peer, error = %e, "TLS handshake failed"),
                                }
                            });
                        }
                    }
                }
                Err(e) => {
                    // Usually out of file descriptors: back off a little.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }

    info!("shutting down");
    drop(listener);
    let _ = shutdown_tx.send(true);
    drop(tracker);
    drop(shared);
    if tokio::time::timeout(SHUTDOWN_GRACE, drained.wait())
        .await
        .is_err()
    {
        warn!("connections still open after the grace period; closing them");
    }
    for adapter in &adapters {
        if let Err(e) = adapter.disconnect().await {
            warn!(adapter = adapter.name(), error = %e, "adapter failed to disconnect");
        }
        market.adapter_disconnected();
    }
    let _ = adapters_task.await;
    for task in tasks {
        let _ = task.await;
    }
    let _ = forgetting.await;
    if let Some(serving) = serving {
        let _ = serving.await;
    }
    info!("stopped");
    Ok(())
}
