//! The configuration of a tickwire gateway, read through figment: data only.
//!
//! This crate is a leaf: it depends on no other tickwire crate, and every
//! part of the gateway that is configured reads its section from here (the
//! core's transport settings, each endpoint's section, the key ring). The
//! adapters' sections (`[replay]`, `[synthetic]`, `[zmq]`) are kept as the
//! tables they were given ([`Section`]); each adapter's own crate defines
//! their meaning and the server's wiring reads them with it, so this crate
//! does not depend on any adapter either.
//!
//! Sources, later ones winning: the defaults below < a TOML file < the
//! environment (`TICKWIRE_` prefix, `__` between nested keys) < command-line
//! flags (merged by the binary). For example:
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! public_url = "https://gex.example.com"
//! prefix = "blue"
//!
//! [[api_keys]]
//! name = "alice"
//! key_sha256 = "4c2d…"            # hex SHA-256 of the key; or `key = "…"` in clear
//! roles = ["webpubsub.joinLeaveGroup"]
//! endpoints = ["pubsub", "ws", "stream", "proxy"]   # the default: all but "publish"
//! max_connections = 10            # open /stream, proxy (and keyed /ws) connections
//! rate_per_minute = 600           # connections and (un)subscribes, all connections together
//!
//! [transport]
//! ping_interval_secs = 54
//!
//! [ws]
//! subscription_limit = 100
//!
//! [stream]
//! max_symbols = 10
//!
//! [fastws]
//! heartbeat_secs = 30
//! lifespan_secs = 3600
//!
//! [proxy]
//! reply_style = "openalgo"
//! ```
//!
//! and `TICKWIRE_TRANSPORT__SEND_BUFFER=512` in the environment.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A configuration that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is wrong; the reason names it.
    #[error("invalid configuration: {reason}")]
    Invalid {
        /// What is wrong and where.
        reason: String,
    },
    /// The built-in demo key is enabled while listening on a non-loopback
    /// address.
    #[error("the demo API key is enabled on the non-loopback address {listen}")]
    DemoKeyOnPublicAddress {
        /// The configured listen address.
        listen: SocketAddr,
    },
}

impl ConfigError {
    fn invalid(reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            reason: reason.into(),
        }
    }
}

/// One adapter's section as it was given (a TOML table, environment
/// variables, flags): the adapter's own crate gives it its meaning.
pub type Section = Dict;

/// The adapters a gateway knows, by the name of their section.
pub const ADAPTER_NAMES: [&str; 3] = ["replay", "synthetic", "zmq"];

/// The name of the built-in demo key.
pub const DEMO_KEY_NAME: &str = "demo";
/// The built-in demo key: fine on a loopback address, refused anywhere else.
pub const DEMO_KEY: &str = "tickwire-demo-key";

/// The whole configuration of a gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Scheme and host clients reach the gateway at (`https://gex.example.com`),
    /// used for the URLs `/negotiate` hands out. Default: none, so the URLs are
    /// `ws://` plus the request's `Host` header.
    pub public_url: Option<String>,
    /// Prefix of every group name. Default `blue`.
    pub prefix: String,
    /// The API keys `/negotiate` accepts. Default: the demo key only.
    pub api_keys: Vec<ApiKey>,
    /// HS256 secret of the access tokens. Default: none, so 32 random bytes
    /// are drawn at start (tokens then do not survive a restart).
    pub token_secret: Option<String>,
    /// Lifetime of an access token in seconds. Default 600.
    pub token_ttl_secs: u64,
    /// zstd level of the record pipeline. Default 3.
    pub zstd_level: i32,
    /// Most distinct groups the gateway tracks; joins of new groups beyond are
    /// refused. Default 100000.
    pub max_groups: usize,
    /// Most instruments the gateway knows (each costs about 2 KiB with its
    /// topics); a publish request naming new ones beyond is refused with
    /// 422, and an adapter's are left out and counted. Default 100000.
    pub max_instruments: usize,
    /// An instrument that no update named for this long (between one and
    /// two times it), that no adapter lists and that no client follows is
    /// forgotten with what the endpoints keep for it (last values, bars);
    /// its next update makes it known again. 0: never. Default 600.
    pub forget_instruments_after_secs: u64,
    /// The JSONL replay the binary serves (`data_dir`, `date`, `interval_ms`,
    /// `mode`, `tickers`, `buffer`; the replay adapter's `ReplayConfig`).
    /// Default: `data_dir = "data/demo"` (relative to the working directory)
    /// and `mode = "rotation"`; the adapter's defaults for the rest (the
    /// latest date, one record per group per second, every ticker).
    pub replay: Section,
    /// The synthetic market the binary runs beside the replay (`enabled`,
    /// `seed`, `book_depth`, `book_interval_ms`, `signal_interval_ms`,
    /// `speed`, `buffer`, `universe`; the synthetic adapter's
    /// `SyntheticConfig`). Default: empty, the adapter's defaults (enabled,
    /// a universe of crypto pairs, US stocks and NSE instruments).
    pub synthetic: Section,
    /// WebSocket transport limits.
    pub transport: TransportConfig,
    /// The pubsub hubs (seed 000): session recovery of the reliable
    /// subprotocols.
    pub hubs: HubsConfig,
    /// The `/ws` JSON feed (seed 001).
    pub ws: WsConfig,
    /// The `/stream` JSON feed (seed 002).
    pub stream: StreamConfig,
    /// The publish API (`POST /api/v1/publish`).
    pub publish: PublishConfig,
    /// The FastWS envelope on `/api/v1/ws` (seed 004).
    pub fastws: FastWsConfig,
    /// The market-data proxy (seed 003).
    pub proxy: ProxyConfig,
    /// The ZeroMQ bus adapter (seed 003), when `adapters` lists `zmq` (the
    /// ZeroMQ adapter's `ZmqConfig`). Default: empty, the adapter's defaults.
    pub zmq: Section,
    /// The adapters the binary makes, by name, in this order: `replay`,
    /// `synthetic` (also needs `[synthetic] enabled`) and `zmq`. Default all three.
    pub adapters: Vec<String>,
    /// Adapters without which the gateway must not run, by name (the
    /// bundled ones are named as in `adapters`): one of them that fails to
    /// start stops the start. Any other that fails is left out, with its
    /// reason logged, and the others serve. A name that is not one of the
    /// adapters is refused. Default: none.
    pub required_adapters: Vec<String>,
    /// Membership of a cluster of nodes sharing one NATS bus. Default:
    /// none, a single node that needs no NATS.
    pub cluster: Option<ClusterConfig>,
    /// After a shutdown signal, how long the gateway goes on serving
    /// everything while `/readyz` answers 503, so that a load balancer
    /// stops sending it new clients before its connections are closed.
    /// Default 0: close at once.
    pub drain_delay_ms: u64,
    /// The web origins (`https://app.example.com`; `*` for any) whose pages
    /// may use the gateway from a browser: their WebSocket upgrades are
    /// accepted on the main listener and the proxy's own (one from any other
    /// origin is refused with 403; a client that sends no `Origin`, not a
    /// browser, is not concerned), and
    /// `/negotiate`, the last-value polls and the publish API answer their
    /// cross-origin requests (CORS, preflights included). Default `["*"]`.
    pub allowed_origins: Vec<String>,
    /// TLS on every listener (the main one and the proxy's own): clients
    /// then reach the gateway at `https://` and `wss://`. Default: none,
    /// plain TCP (behind a reverse proxy that terminates TLS, say).
    pub tls: Option<TlsConfig>,
}

/// `[tls]`: the certificate and key of every listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM: the server's certificate first, then
    /// the intermediates.
    pub cert: std::path::PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// `[cluster]`: this node is one of several that share a NATS bus
/// (`TICKWIRE_CLUSTER__NATS_URL=nats://127.0.0.1:4222`,
/// `TICKWIRE_CLUSTER__NODE_NAME=a`). Updates ingested on any node are
/// published once to NATS and every node delivers them to its own clients;
/// the node's `public_url` is the address the others hand out for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS servers: one URL or a list (`nats://host:4222`,
    /// `tls://host:4222`).
    #[serde(deserialize_with = "one_or_many")]
    pub nats_url: Vec<String>,
    /// This node's name, unique in the cluster (letters, digits, `-`, `_`).
    pub node_name: String,
    /// The first token of every subject the cluster uses. Default `tickwire`.
    #[serde(default = "ClusterConfig::default_subject_prefix")]
    pub subject_prefix: String,
    /// Whether this node runs its adapters (`adapters`) at all; their
    /// updates reach every node through NATS. Default true.
    #[serde(default = "default_true")]
    pub run_adapters: bool,
    /// The adapters that run once per cluster, not once per node: those that
    /// make a market of their own (the demo's synthetic market, the replay),
    /// which every node would otherwise make again. Of the live nodes that
    /// run adapters, the one up the longest holds the lease (through the
    /// node registry) and only its leased adapters' updates are delivered;
    /// the others keep theirs ready and take over within a few seconds of its
    /// going. Adapters not listed (an ingress such as the ZeroMQ bus, which
    /// takes what is sent to this node) run on every node. Default
    /// `["synthetic", "replay"]`.
    #[serde(default = "ClusterConfig::default_leased_adapters")]
    pub leased_adapters: Vec<String>,
    /// A NATS credentials file (JWT and NKey seed), if the server wants one.
    #[serde(default)]
    pub credentials_file: Option<std::path::PathBuf>,
    /// A user and password, if the server wants them.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    /// The password of `user`.
    pub password: Option<String>,
    /// A token, if the server wants one.
    #[serde(default)]
    pub token: Option<String>,
    /// Insist on TLS to the NATS servers. Default false (TLS when a URL says
    /// `tls://`).
    #[serde(default)]
    pub tls_required: bool,
    /// A PEM file of root certificates the NATS servers' certificates are
    /// checked against.
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl ClusterConfig {
    fn default_subject_prefix() -> String {
        "tickwire".to_owned()
    }

    fn default_leased_adapters() -> Vec<String> {
        vec!["synthetic".to_owned(), "replay".to_owned()]
    }

    /// A cluster member of `node_name` on the NATS server `nats_url`.
    pub fn new(nats_url: impl Into<String>, node_name: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            nats_url: vec![nats_url.into()],
            node_name: node_name.into(),
            subject_prefix: ClusterConfig::default_subject_prefix(),
            run_adapters: true,
            leased_adapters: ClusterConfig::default_leased_adapters(),
            credentials_file: None,
            user: None,
            password: None,
            token: None,
            tls_required: false,
            tls_ca_file: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// One string or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(url) => url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect(),
        OneOrMany::Many(urls) => urls,
    })
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            prefix: "blue".to_owned(),
            api_keys: vec![ApiKey::demo()],
            token_secret: None,
            token_ttl_secs: 600,
            zstd_level: 3,
            max_groups: 100_000,
            max_instruments: 100_000,
            forget_instruments_after_secs: 600,
            replay: Dict::from([
                ("data_dir".to_owned(), Value::from("data/demo")),
                ("mode".to_owned(), Value::from("rotation")),
            ]),
            synthetic: Dict::new(),
            transport: TransportConfig::default(),
            hubs: HubsConfig::default(),
            ws: WsConfig::default(),
            stream: StreamConfig::default(),
            publish: PublishConfig::default(),
            fastws: FastWsConfig::default(),
            proxy: ProxyConfig::default(),
            zmq: Dict::new(),
            adapters: ADAPTER_NAMES.map(String::from).to_vec(),
            required_adapters: Vec::new(),
            cluster: None,
            drain_delay_ms: 0,
            allowed_origins: vec!["*".to_owned()],
            tls: None,
        }
    }
}

/// The role that lets a key use the publish API.
pub const ROLE_PUBLISH: &str = "publish";

/// The role that lets a key use the admin API (`/admin/...`): list the
/// connections and topics, disconnect a connection.
pub const ROLE_ADMIN: &str = "admin";

/// An endpoint an API key may be allowed to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET /negotiate` and, through its tokens, the pubsub hubs (`negotiate`
    /// is accepted as an alias).
    #[serde(alias = "negotiate")]
    Pubsub,
    /// The `/ws` JSON feed, when it requires a key.
    Ws,
    /// The `/stream` JSON feed.
    Stream,
    /// `POST /api/v1/publish` (the key also needs the role `publish`).
    Publish,
    /// The market-data proxy (seed 003): its `authenticate` message and the
    /// `/api/v1/{ltp,quote,depth}` polls.
    Proxy,
}

impl Endpoint {
    /// The endpoints of a key that does not list its own: all but `publish`.
    pub const DEFAULT: [Endpoint; 4] = [
        Endpoint::Pubsub,
        Endpoint::Ws,
        Endpoint::Stream,
        Endpoint::Proxy,
    ];

    /// The endpoint's name in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Endpoint::Pubsub => "pubsub",
            Endpoint::Ws => "ws",
            Endpoint::Stream => "stream",
            Endpoint::Publish => "publish",
            Endpoint::Proxy => "proxy",
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One API key, shared by every endpoint that takes keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The key's name; the user id of the tokens it obtains.
    pub name: String,
    /// The key in clear. Give this or `key_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The hex SHA-256 of the key (`printf %s KEY | sha256sum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sha256: Option<String>,
    /// Roles: those written into the key's pubsub tokens
    /// (`webpubsub.joinLeaveGroup`, `webpubsub.sendToGroup.<group>`,
    /// `webpubsub.event`), [`ROLE_PUBLISH`] for the publish API, and
    /// [`ROLE_ADMIN`] for the admin API.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The endpoints the key may use. Default (absent): every endpoint but
    /// `publish`, plus `publish` when the key has the role `publish`. A list
    /// given here is taken as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<Endpoint>>,
    /// Most connections the key may hold open at once on the endpoints that
    /// take keys directly (`/stream`, the proxy once authenticated, and `/ws`
    /// when it requires a key); one more is refused. Default 10 (seed 002).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Requests per minute: connection establishments and subscribe and
    /// unsubscribe messages, counted over all the key's connections
    /// together (seed 002 "Rate Limiting"); a token bucket that holds a
    /// minute's worth. Default 600.
    #[serde(default = "default_rate_per_minute")]
    pub rate_per_minute: u32,
}

fn default_max_connections() -> usize {
    10
}

fn default_rate_per_minute() -> u32 {
    600
}

impl ApiKey {
    /// A key named `name` given in clear, with the default roles (none),
    /// endpoints and limits.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> ApiKey {
        ApiKey {
            name: name.into(),
            key: Some(key.into()),
            key_sha256: None,
            roles: Vec::new(),
            endpoints: None,
            max_connections: default_max_connections(),
            rate_per_minute: default_rate_per_minute(),
        }
    }

    /// The built-in demo key: name `demo`, key `tickwire-demo-key`, may join and
    /// leave every group, and use every endpoint but `publish`.
    pub fn demo() -> ApiKey {
        ApiKey {
            roles: vec!["webpubsub.joinLeaveGroup".to_owned()],
            ..ApiKey::new(DEMO_KEY_NAME, DEMO_KEY)
        }
    }

    /// Whether the key may use `endpoint` (see [`endpoints`](Self::endpoints)).
    pub fn allows(&self, endpoint: Endpoint) -> bool {
        match &self.endpoints {
            Some(list) => list.contains(&endpoint),
            None => {
                Endpoint::DEFAULT.contains(&endpoint)
                    || (endpoint == Endpoint::Publish && self.has_role(ROLE_PUBLISH))
            }
        }
    }

    /// Whether the key has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The SHA-256 of the key, from whichever form the configuration gives.
    pub fn digest(&self) -> Result<[u8; 32], ConfigError> {
        let invalid =
            |reason: &str| ConfigError::invalid(format!("api key {:?}: {reason}", self.name));
        match (&self.key, &self.key_sha256) {
            (Some(key), None) if key.is_empty() => Err(invalid("`key` is empty")),
            (Some(key), None) => Ok(Sha256::digest(key.as_bytes()).into()),
            (None, Some(hex)) => {
                parse_hex32(hex).ok_or_else(|| invalid("`key_sha256` is not 64 hex digits"))
            }
            (Some(_), Some(_)) => Err(invalid("give `key` or `key_sha256`, not both")),
            (None, None) => Err(invalid("give `key` or `key_sha256`")),
        }
    }

    /// Whether this is the built-in demo key (in whichever form).
    pub fn is_demo(&self) -> bool {
        let demo: [u8; 32] = Sha256::digest(DEMO_KEY.as_bytes()).into();
        self.digest().is_ok_and(|d| d == demo)
    }
}

/// Largest [`TransportConfig::write_delay_ms`].
const MAX_WRITE_DELAY_MS: u64 = 1000;

/// WebSocket transport limits (seed 000: "Keepalive" and "Buffer Limits").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// Seconds between two WebSocket pings the server sends. Default 54.
    pub ping_interval_secs: u64,
    /// Seconds without any frame from the client after which the connection is
    /// closed. Default 60.
    pub pong_timeout_secs: u64,
    /// Largest message a client may send, in bytes; larger ones close the
    /// connection with 1009. Default 524288 (512 KB).
    pub max_message_bytes: usize,
    /// What happens to a client whose send buffer is full: `disconnect`
    /// (default, the seed's behaviour), `drop_oldest` or `conflate` (keep the
    /// newest update per topic). Each endpoint may override it.
    pub slow_consumer: SlowConsumer,
    /// Messages queued per client; a client whose queue is full is dropped.
    /// Default 256.
    pub send_buffer: usize,
    /// Seconds one socket write may take before the client is dropped. Default 10.
    pub write_timeout_secs: u64,
    /// Write pacing, in milliseconds (at most 1000): time is cut into
    /// periods of this length and each connection gets at most one data
    /// write per period. An update to a connection already written to in
    /// the current period waits for the next one, and everything queued for
    /// the connection by then goes out in the same `write`: one system call
    /// per period for a busy connection instead of one per update, at most
    /// one period more latency for it. An update to a connection not written
    /// to in the current period goes out at once; replies, pongs and closes
    /// never wait. One timer serves the whole gateway. 0 turns it off.
    /// Default 0.
    pub write_delay_ms: u64,
    /// Groups one connection may be in at once; joins beyond are refused.
    /// Default 1000.
    pub max_groups_per_connection: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            ping_interval_secs: 54,
            pong_timeout_secs: 60,
            max_message_bytes: 512 * 1024,
            slow_consumer: SlowConsumer::Disconnect,
            send_buffer: 256,
            write_timeout_secs: 10,
            write_delay_ms: 0,
            max_groups_per_connection: 1000,
        }
    }
}

impl TransportConfig {
    /// [`ping_interval_secs`](Self::ping_interval_secs) as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    /// [`pong_timeout_secs`](Self::pong_timeout_secs) as a duration.
    pub fn pong_timeout(&self) -> Duration {
        Duration::from_secs(self.pong_timeout_secs)
    }

    /// [`write_timeout_secs`](Self::write_timeout_secs) as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }

    /// [`write_delay_ms`](Self::write_delay_ms) as a duration.
    pub fn write_delay(&self) -> Duration {
        Duration::from_millis(self.write_delay_ms)
    }
}

/// The pubsub hubs (seed 000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubsConfig {
    /// Seconds a reliable connection's session outlives its transport: a
    /// client that comes back within them (`awps_connection_id` and
    /// `awps_reconnection_token`) resumes it, with every message it has not
    /// acknowledged, and the messages of its groups are kept meanwhile (up
    /// to 1000 messages or 16 MB). 0 turns recovery off. Default 30.
    pub recovery_window_secs: u64,
    /// Most distinct groups the connections of one API key (one user of
    /// the tokens it negotiated) may hold at once, so that no key takes
    /// the whole group table (`max_groups`) from the others. Default 10000.
    pub max_groups_per_key: usize,
    /// Most reliable sessions of one key kept for recovery at once (each
    /// holds up to 1000 messages or 16 MB while it waits); a connection of
    /// a key at its limit that vanishes ends its session. Default 100.
    pub max_parked_per_key: usize,
}

impl Default for HubsConfig {
    fn default() -> Self {
        HubsConfig {
            recovery_window_secs: 30,
            max_groups_per_key: 10_000,
            max_parked_per_key: 100,
        }
    }
}

impl HubsConfig {
    /// [`recovery_window_secs`](Self::recovery_window_secs) as a duration.
    pub fn recovery_window(&self) -> Duration {
        Duration::from_secs(self.recovery_window_secs)
    }
}

/// The `/ws` JSON feed (seed 001, "Rate Limits").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// Whether a connection needs an API key (`Authorization: Bearer` or
    /// `?api_key=`) allowed on the `ws` endpoint. Default false: the seed's
    /// feed is public.
    pub require_key: bool,
    /// Symbols one connection may be subscribed to; a subscribe that would
    /// pass it is refused whole (`subscription_limit`). Default 100.
    pub subscription_limit: usize,
    /// Messages a client may send per second; more are answered with
    /// `rate_limited` and not applied. Default 10.
    pub messages_per_second: u32,
    /// Consecutive seconds over the message rate after which the client is
    /// closed (1008). Default 3.
    pub flood_close_secs: u32,
    /// Seconds without a client message (a `ping` included) after which the
    /// connection is closed (1000). Default 300.
    pub idle_timeout_secs: u64,
    /// Seconds between two `server_status` messages. Default 10.
    pub status_interval_secs: u64,
    /// Largest client message, in bytes; larger ones close with 1009.
    /// Default 65536.
    pub max_message_bytes: usize,
    /// Most levels a side of an `orderbook_update`; deeper levels of a book
    /// (the synthetic market's exchange-listed instruments keep 30 for the
    /// proxy's Depth mode) are left out. Default 10.
    pub book_depth: usize,
    /// This endpoint's slow-consumer policy; default `transport.slow_consumer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_consumer: Option<SlowConsumer>,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            require_key: false,
            subscription_limit: 100,
            messages_per_second: 10,
            flood_close_secs: 3,
            idle_timeout_secs: 300,
            status_interval_secs: 10,
            max_message_bytes: 64 * 1024,
            book_depth: 10,
            slow_consumer: None,
        }
    }
}

/// The `/stream` JSON feed (seed 002, "Connection Limits"). Connections per
/// key and the request rate are the key's own limits ([`ApiKey`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Symbols one connection may be subscribed to; a subscribe that would
    /// pass it is refused whole (`SUBSCRIPTION_LIMIT`). Default 10.
    pub max_symbols: usize,
    /// Seconds without a message either way (the automatic heartbeat aside)
    /// after which the connection is closed (1000). Default 300.
    pub idle_timeout_secs: u64,
    /// Seconds between two automatic `pong` heartbeats. Default 30.
    pub heartbeat_secs: u64,
    /// Largest client message, in bytes; larger ones close with 1009.
    /// Default 1048576 (1 MB).
    pub max_message_bytes: usize,
    /// This endpoint's slow-consumer policy; default `transport.slow_consumer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_consumer: Option<SlowConsumer>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_symbols: 10,
            idle_timeout_secs: 300,
            heartbeat_secs: 30,
            max_message_bytes: 1024 * 1024,
            slow_consumer: None,
        }
    }
}

/// The FastWS envelope on `/api/v1/ws` (seed 004, "Connection Management").
/// Both limits close the connection with 1003 and a reason that names them:
/// `Connection timed out. Heartbeat interval 30.0. Max connection lifespan 3600.0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FastWsConfig {
    /// Seconds a client may go without sending a message (any data message
    /// counts; WebSocket pings and the server's messages do not). Default 30.
    pub heartbeat_secs: u64,
    /// Seconds a connection may live at most, however active. Default 3600.
    pub lifespan_secs: u64,
    /// Largest client message, in bytes; larger ones close with 1009.
    /// Default 65536.
    pub max_message_bytes: usize,
    /// This endpoint's slow-consumer policy; default `transport.slow_consumer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_consumer: Option<SlowConsumer>,
}

impl Default for FastWsConfig {
    fn default() -> Self {
        FastWsConfig {
            heartbeat_secs: 30,
            lifespan_secs: 3600,
            max_message_bytes: 64 * 1024,
            slow_consumer: None,
        }
    }
}

impl FastWsConfig {
    /// [`heartbeat_secs`](Self::heartbeat_secs) as a duration.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    /// [`lifespan_secs`](Self::lifespan_secs) as a duration.
    pub fn lifespan(&self) -> Duration {
        Duration::from_secs(self.lifespan_secs)
    }
}

/// The publish API (`POST /api/v1/publish`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Largest request body, in bytes; larger ones get 413. Default 1048576.
    pub max_body_bytes: usize,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// What happens to a client whose data queue (`send_buffer`) is full: the
/// configuration's name of the core's policy of the same name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Close the connection (the seed's behaviour).
    #[default]
    Disconnect,
    /// Keep the connection and discard its oldest queued update.
    DropOldest,
    /// Keep the connection and, per topic, only the newest queued update.
    Conflate,
}

/// Reply names and shapes of the market-data proxy (seed 003).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ReplyStyle {
    /// `documented` (the default): as the seed document shows.
    #[default]
    Documented,
    /// `openalgo`: as the reference server sends, for its SDK.
    Openalgo,
}

/// The market-data proxy (seed 003): `[proxy]` in the configuration.
///
/// ```toml
/// [proxy]
/// listen = "127.0.0.1:8765"
/// reply_style = "openalgo"
/// ltp_throttle_ms = 50
/// snapshot_on_subscribe = true
/// brokers = ["zerodha"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// The proxy's own listener, where every path upgrades to the proxy
    /// protocol (the binary binds it). Default `127.0.0.1:8765`, the seed's
    /// port.
    pub listen: SocketAddr,
    /// Reply names and shapes: `documented` (the default, as the seed shows)
    /// or `openalgo` (as the reference server sends, for its Python SDK).
    pub reply_style: ReplyStyle,
    /// Milliseconds between two LTP messages of one instrument; ticks in
    /// between are conflated, the latest delivered at the window's end.
    /// `0` sends every tick. Default 50.
    pub ltp_throttle_ms: u64,
    /// Whether a new subscriber gets the instrument's current value from the
    /// cache right after the subscribe reply. Default true.
    pub snapshot_on_subscribe: bool,
    /// Broker names `get_supported_brokers` lists; the first is the broker
    /// replies name. Default: none, so replies name `tickwire` and
    /// `get_supported_brokers` lists the adapters.
    pub brokers: Vec<String>,
    /// Largest client message, in bytes; larger ones close with 1009.
    /// Default 65536.
    pub max_message_bytes: usize,
    /// Subscriptions (instrument × mode × depth) one connection may hold;
    /// instruments of a subscribe beyond are refused. Default 1000.
    pub max_subscriptions: usize,
    /// Seconds a connection may stay without a successful `authenticate`;
    /// then it is closed (1008). Default 10.
    pub auth_timeout_secs: u64,
    /// This endpoint's slow-consumer policy; default `transport.slow_consumer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_consumer: Option<SlowConsumer>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8765)),
            reply_style: ReplyStyle::Documented,
            ltp_throttle_ms: 50,
            snapshot_on_subscribe: true,
            brokers: Vec::new(),
            max_message_bytes: 64 * 1024,
            max_subscriptions: 1000,
            auth_timeout_secs: 10,
            slow_consumer: None,
        }
    }
}

impl ProxyConfig {
    /// Checks the section against the gateway's own `listen`.
    pub fn validate(&self, main_listen: SocketAddr) -> Result<(), ConfigError> {
        let invalid = |reason: &str| Err(ConfigError::invalid(format!("proxy.{reason}")));
        if self.max_message_bytes == 0 {
            return invalid("max_message_bytes must be greater than zero");
        }
        if self.max_subscriptions == 0 || self.auth_timeout_secs == 0 {
            return invalid("max_subscriptions and auth_timeout_secs must be greater than zero");
        }
        if self.brokers.iter().any(String::is_empty) {
            return invalid("brokers must not hold an empty name");
        }
        if self.listen == main_listen && self.listen.port() != 0 {
            return invalid("listen must differ from listen of the gateway");
        }
        Ok(())
    }

    /// [`ltp_throttle_ms`](Self::ltp_throttle_ms) as a duration.
    pub fn ltp_throttle(&self) -> Duration {
        Duration::from_millis(self.ltp_throttle_ms)
    }
}

/// Checks [`Config::adapters`]: known names ([`ADAPTER_NAMES`]), each at
/// most once.
pub fn validate_adapter_names(names: &[String]) -> Result<(), ConfigError> {
    for (i, name) in names.iter().enumerate() {
        if !ADAPTER_NAMES.contains(&name.as_str()) {
            return Err(ConfigError::invalid(format!(
                "adapters: unknown adapter {name:?}; expected one of {}",
                ADAPTER_NAMES.join(", ")
            )));
        }
        if names[..i].contains(name) {
            return Err(ConfigError::invalid(format!(
                "adapters: {name:?} is listed twice"
            )));
        }
    }
    Ok(())
}

/// What [`Config::redacted`] shows in place of a secret.
pub const REDACTED: &str = "(redacted)";

/// The prefix of the environment variables that configure the gateway.
pub const ENV_PREFIX: &str = "TICKWIRE_";

/// The top-level keys of [`Config`], as the file and the environment name
/// them.
pub const KEYS: [&str; 26] = [
    "listen",
    "public_url",
    "prefix",
    "api_keys",
    "token_secret",
    "token_ttl_secs",
    "zstd_level",
    "max_groups",
    "max_instruments",
    "forget_instruments_after_secs",
    "replay",
    "synthetic",
    "transport",
    "hubs",
    "ws",
    "stream",
    "publish",
    "fastws",
    "proxy",
    "zmq",
    "adapters",
    "required_adapters",
    "cluster",
    "drain_delay_ms",
    "allowed_origins",
    "tls",
];

/// Whether the dotted `key` (`ws.subscription_limit`) is in a top-level
/// key of [`Config`].
fn is_key(key: &str) -> bool {
    let first = key.split('.').next().unwrap_or_default();
    KEYS.iter().any(|k| k.eq_ignore_ascii_case(first))
}

impl Config {
    /// The figment of the defaults, then `file` (TOML) if given, then the
    /// `TICKWIRE_*` environment (`__` separates nested keys:
    /// `TICKWIRE_TRANSPORT__SEND_BUFFER`). Merge command-line flags on top and
    /// `extract()` a [`Config`].
    ///
    /// Every section refuses keys it does not know (naming the key, the
    /// section and where it came from), so a typo in the file or in a
    /// variable of a known section fails the start. Variables whose first
    /// part names no top-level key (`TICKWIRE_BIN`, a tool's own) are not
    /// configuration and are left out; [`Config::stray_env`] lists them.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(
            Env::prefixed(ENV_PREFIX)
                .split("__")
                .filter(|key| is_key(key.as_str())),
        )
    }

    /// This configuration with its secrets out, to be shown: keys given in
    /// clear become their `key_sha256` (so it still configures the same
    /// keys), and `token_secret` and the cluster's password and token
    /// read `(redacted)`.
    pub fn redacted(&self) -> Config {
        let mut shown = self.clone();
        for key in &mut shown.api_keys {
            if key.key_sha256.is_none() {
                if let Ok(digest) = key.digest() {
                    key.key = None;
                    key.key_sha256 = Some(digest.iter().map(|b| format!("{b:02x}")).collect());
                }
            }
        }
        let hide = |secret: &mut Option<String>| {
            if secret.is_some() {
                *secret = Some(REDACTED.to_owned());
            }
        };
        hide(&mut shown.token_secret);
        if let Some(cluster) = &mut shown.cluster {
            hide(&mut cluster.password);
            hide(&mut cluster.token);
        }
        shown
    }

    /// The `TICKWIRE_*` variables of the environment that configure
    /// nothing (their first part names no top-level key): left out of the
    /// configuration, worth a warning (a misspelt one would otherwise go
    /// unnoticed).
    pub fn stray_env() -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .filter(|name| {
                name.strip_prefix(ENV_PREFIX)
                    .is_some_and(|rest| !is_key(&rest.replace("__", ".")))
            })
            .collect()
    }

    /// Reads the configuration from `figment` and [validates](Config::validate) it.
    pub fn from_figment(figment: &Figment) -> Result<Config, ConfigError> {
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the configuration for mistakes that would make the gateway
    /// unsafe or unusable: no API key, malformed keys, zero limits, a bad
    /// `public_url`, and above all the demo key on a non-loopback address.
    /// The adapters' sections are checked by the adapters that read them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| Err(ConfigError::Invalid { reason });
        for origin in &self.allowed_origins {
            let ok = origin == "*"
                || origin.split_once("://").is_some_and(|(scheme, host)| {
                    matches!(scheme, "http" | "https")
                        && !host.is_empty()
                        && !host.contains(['/', '?', '#', ' '])
                });
            if !ok {
                return invalid(format!(
                    "allowed_origins: {origin:?} is not an origin: \"*\", or a scheme and host \
                     (and port) such as \"https://app.example.com\", without a path"
                ));
            }
        }
        if let Some(cluster) = &self.cluster {
            if self.token_secret.is_none() {
                return invalid(
                    "a cluster's nodes must share token_secret (a long random string), so that a token one node issues is good on every node".into(),
                );
            }
            if cluster.nats_url.is_empty() {
                return invalid("cluster.nats_url names no NATS server".into());
            }
            let name_ok = |n: &str| {
                !n.is_empty()
                    && n.len() <= 64
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if !name_ok(&cluster.node_name) {
                return invalid(format!(
                    "cluster.node_name {:?} must be 1 to 64 letters, digits, `-` or `_`",
                    cluster.node_name
                ));
            }
            if !name_ok(&cluster.subject_prefix) {
                return invalid(format!(
                    "cluster.subject_prefix {:?} must be 1 to 64 letters, digits, `-` or `_`",
                    cluster.subject_prefix
                ));
            }
        }
        if self.api_keys.is_empty() {
            return invalid("no api key is configured; add one under [[api_keys]]".into());
        }
        let mut digests = std::collections::HashSet::new();
        for key in &self.api_keys {
            if !digests.insert(key.digest()?) {
                return invalid(format!("api key {:?} is configured twice", key.name));
            }
            if key.name.is_empty() {
                return invalid("an api key has an empty `name`".into());
            }
            if key.max_connections == 0 || key.rate_per_minute == 0 {
                return invalid(format!(
                    "api key {:?}: max_connections and rate_per_minute must be greater than zero",
                    key.name
                ));
            }
        }
        if !self.listen.ip().is_loopback() && self.api_keys.iter().any(ApiKey::is_demo) {
            return Err(ConfigError::DemoKeyOnPublicAddress {
                listen: self.listen,
            });
        }
        if self.prefix.is_empty() || !self.prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return invalid(format!(
                "prefix {:?} must be non-empty ASCII letters and digits",
                self.prefix
            ));
        }
        match &self.public_url {
            Some(url) => {
                PublicUrl::parse(url)?;
            }
            None if !self.listen.ip().is_loopback() => {
                return invalid(format!(
                    "public_url is required when listening on {}: without it /negotiate would \
                     build its URLs, and the tokens' audience, from the Host header the client \
                     sends; set it to the scheme and host clients reach the gateway at",
                    self.listen
                ));
            }
            None => {}
        }
        self.proxy.validate(self.listen)?;
        validate_adapter_names(&self.adapters)?;
        if self.token_secret.as_deref().is_some_and(str::is_empty) {
            return invalid("token_secret is empty; remove it or set a long random value".into());
        }
        let t = &self.transport;
        if t.write_delay_ms > MAX_WRITE_DELAY_MS {
            return invalid(format!(
                "transport.write_delay_ms is {}; at most {MAX_WRITE_DELAY_MS}",
                t.write_delay_ms
            ));
        }
        for (name, value) in [
            ("token_ttl_secs", self.token_ttl_secs),
            ("transport.ping_interval_secs", t.ping_interval_secs),
            ("transport.pong_timeout_secs", t.pong_timeout_secs),
            ("transport.write_timeout_secs", t.write_timeout_secs),
            ("transport.max_message_bytes", t.max_message_bytes as u64),
            ("transport.send_buffer", t.send_buffer as u64),
            ("max_groups", self.max_groups as u64),
            (
                "hubs.max_groups_per_key",
                self.hubs.max_groups_per_key as u64,
            ),
            ("max_instruments", self.max_instruments as u64),
            (
                "transport.max_groups_per_connection",
                t.max_groups_per_connection as u64,
            ),
            ("ws.subscription_limit", self.ws.subscription_limit as u64),
            (
                "ws.messages_per_second",
                u64::from(self.ws.messages_per_second),
            ),
            ("ws.flood_close_secs", u64::from(self.ws.flood_close_secs)),
            ("ws.idle_timeout_secs", self.ws.idle_timeout_secs),
            ("ws.status_interval_secs", self.ws.status_interval_secs),
            ("ws.max_message_bytes", self.ws.max_message_bytes as u64),
            ("ws.book_depth", self.ws.book_depth as u64),
            ("stream.max_symbols", self.stream.max_symbols as u64),
            ("stream.idle_timeout_secs", self.stream.idle_timeout_secs),
            ("stream.heartbeat_secs", self.stream.heartbeat_secs),
            (
                "stream.max_message_bytes",
                self.stream.max_message_bytes as u64,
            ),
            ("publish.max_body_bytes", self.publish.max_body_bytes as u64),
            ("fastws.heartbeat_secs", self.fastws.heartbeat_secs),
            ("fastws.lifespan_secs", self.fastws.lifespan_secs),
            (
                "fastws.max_message_bytes",
                self.fastws.max_message_bytes as u64,
            ),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be greater than zero"));
            }
        }
        Ok(())
    }
}

/// `public_url` split into what the negotiate URLs need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// Whether clients reach the gateway over TLS (`https`/`wss`).
    pub tls: bool,
    /// `host[:port]`, without a trailing slash.
    pub authority: String,
}

impl PublicUrl {
    /// Parses [`Config::public_url`].
    pub fn parse(url: &str) -> Result<PublicUrl, ConfigError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad_url(url))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            _ => return Err(bad_url(url)),
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', ' ']) {
            return Err(bad_url(url));
        }
        Ok(PublicUrl {
            tls,
            authority: authority.to_owned(),
        })
    }
}

fn bad_url(url: &str) -> ConfigError {
    ConfigError::invalid(format!(
        "public_url {url:?} must be a scheme and host such as `https://gex.example.com`"
    ))
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn demo_key_is_refused_on_a_public_address() {
        let config = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Config::default()
        };
        let err = config.validate().unwrap_err();
        assert!(matches!(err, ConfigError::DemoKeyOnPublicAddress { .. }));

        // The demo key given as a digest is still the demo key.
        let hashed = ApiKey {
            key: None,
            key_sha256: Some(hex(&Sha256::digest(DEMO_KEY.as_bytes()))),
            ..ApiKey::demo()
        };
        assert!(hashed.is_demo());
    }

    #[test]
    fn a_public_address_needs_a_public_url() {
        let config = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            api_keys: vec![ApiKey::new("alice", "s3cret")],
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("public_url is required"), "{err}");
        let config = Config {
            public_url: Some("https://gex.example.com".into()),
            ..config
        };
        config.validate().unwrap();
    }

    #[test]
    fn real_keys_are_fine_on_a_public_address() {
        let config = Config {
            public_url: Some("https://gex.example.com".into()),
            listen: "0.0.0.0:8080".parse().unwrap(),
            api_keys: vec![ApiKey {
                key: None,
                key_sha256: Some(hex(&Sha256::digest(b"s3cret"))),
                ..ApiKey::new("alice", "unused")
            }],
            ..Config::default()
        };
        config.validate().unwrap();
    }

    #[test]
    fn malformed_keys_are_refused() {
        for (key, sha) in [
            (None, None),
            (Some("k"), Some("00")),
            (None, Some("abc")),
            (Some(""), None),
        ] {
            let api = ApiKey {
                key: key.map(Into::into),
                key_sha256: sha.map(Into::into),
                ..ApiKey::new("x", "unused")
            };
            assert!(api.digest().is_err(), "{api:?}");
        }
    }

    #[test]
    fn public_urls_parse() {
        let url = PublicUrl::parse("https://gex.example.com/").unwrap();
        assert!(url.tls);
        assert_eq!(url.authority, "gex.example.com");
        assert!(!PublicUrl::parse("ws://h:1").unwrap().tls);
        for bad in ["gex.example.com", "ftp://x", "http://", "http://h/path"] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_default_to_all_but_publish() {
        let mut key = ApiKey::new("k", "secret");
        for e in Endpoint::DEFAULT {
            assert!(key.allows(e), "{e}");
        }
        assert!(!key.allows(Endpoint::Publish));
        key.roles.push(ROLE_PUBLISH.into());
        assert!(key.allows(Endpoint::Publish));
        key.endpoints = Some(vec![Endpoint::Stream]);
        assert!(key.allows(Endpoint::Stream));
        assert!(!key.allows(Endpoint::Publish));
        assert!(!key.allows(Endpoint::Ws));
    }

    #[test]
    fn duplicate_keys_and_zero_limits_are_refused() {
        let mut config = Config::default();
        config.api_keys.push(ApiKey::new("again", DEMO_KEY));
        assert!(config.validate().is_err());
        let mut config = Config::default();
        config.api_keys[0].max_connections = 0;
        assert!(config.validate().is_err());
        let mut config = Config::default();
        config.stream.max_symbols = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn write_delay_is_bounded() {
        let mut config = Config::default();
        config.transport.write_delay_ms = 1000;
        assert!(config.validate().is_ok());
        assert_eq!(config.transport.write_delay(), Duration::from_secs(1));
        config.transport.write_delay_ms = 1001;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("transport.write_delay_ms"), "{err}");
    }

    #[test]
    fn keys_are_every_top_level_field() {
        let config = Config {
            public_url: Some("http://x".into()),
            token_secret: Some("s".into()),
            cluster: Some(ClusterConfig::new("nats://x", "a")),
            ..Config::default()
        };
        let value = figment::value::Value::serialize(&config).unwrap();
        let mut fields: Vec<String> = value.into_dict().unwrap().into_keys().collect();
        fields.sort();
        let mut keys: Vec<String> = KEYS.iter().map(|k| (*k).to_owned()).collect();
        keys.sort();
        assert_eq!(fields, keys);
    }

    #[test]
    // `Jail::expect_with` closures return figment's (large) error type.
    #[allow(clippy::result_large_err)]
    fn unknown_keys_are_refused_in_every_section_naming_them() {
        figment::Jail::expect_with(|jail| {
            let cases = [
                ("listn = \"127.0.0.1:1\"\n", "listn"),
                ("[ws]\nsubscripton_limit = 5\n", "subscripton_limit"),
                ("[stream]\nheartbeat = 5\n", "heartbeat"),
                ("[transport]\nsend_bufer = 5\n", "send_bufer"),
                ("[hubs]\nrecovery = 5\n", "recovery"),
                ("[fastws]\nlifespan = 5\n", "lifespan"),
                ("[publish]\nmax_body = 5\n", "max_body"),
                ("[proxy]\nreply = \"x\"\n", "reply"),
                (
                    "[cluster]\nnats_url = \"nats://x\"\nnode_name = \"a\"\nnodename = \"b\"\n",
                    "nodename",
                ),
                (
                    "[[api_keys]]\nname = \"k\"\nkey = \"k-key\"\nrole = [\"publish\"]\n",
                    "role",
                ),
            ];
            for (toml, key) in cases {
                jail.create_file("bad.toml", toml)?;
                let err = Config::from_figment(&Config::figment(Some(Path::new("bad.toml"))))
                    .expect_err(key)
                    .to_string();
                assert!(
                    err.contains(&format!("unknown field: found `{key}`")),
                    "{key}: {err}"
                );
                assert!(err.contains("bad.toml"), "where it came from: {err}");
                assert!(err.contains("expected"), "where it is allowed: {err}");
            }
            // A misspelt variable of a known section fails the same way...
            jail.set_env("TICKWIRE_WS__SUBSCRIPTON_LIMIT", "5");
            let err = Config::from_figment(&Config::figment(None))
                .expect_err("a misspelt variable")
                .to_string();
            assert!(err.contains("subscripton_limit"), "{err}");
            // ...and one that names no key is no configuration at all.
            jail.clear_env();
            jail.set_env("TICKWIRE_BIN", "/bin/true");
            jail.set_env("TICKWIRE_LISTN", "127.0.0.1:1");
            assert!(Config::from_figment(&Config::figment(None)).is_ok());
            let mut stray = Config::stray_env();
            stray.sort();
            assert_eq!(stray, ["TICKWIRE_BIN", "TICKWIRE_LISTN"]);
            Ok(())
        });
    }

    #[test]
    // `Jail::expect_with` closures return figment's (large) error type.
    #[allow(clippy::result_large_err)]
    fn the_section_reads_from_toml_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "tickwire.toml",
                r#"
                adapters = ["synthetic", "zmq"]

                [proxy]
                listen = "127.0.0.1:9765"
                ltp_throttle_ms = 0
                brokers = ["zerodha", "angel"]

                [zmq]
                endpoint = "tcp://127.0.0.1:6555"
                bind = false
                "#,
            )?;
            jail.set_env("TICKWIRE_PROXY__REPLY_STYLE", "openalgo");
            let figment = Config::figment(Some(Path::new("tickwire.toml")));
            let config = Config::from_figment(&figment).expect("valid");
            assert_eq!(config.proxy.reply_style, ReplyStyle::Openalgo);
            assert_eq!(
                config.proxy.listen,
                SocketAddr::from(([127, 0, 0, 1], 9765))
            );
            assert_eq!(config.proxy.ltp_throttle(), Duration::ZERO);
            assert!(config.proxy.snapshot_on_subscribe);
            assert_eq!(config.adapters, ["synthetic", "zmq"]);
            assert_eq!(config.proxy.brokers, ["zerodha", "angel"]);
            // The adapter's section is kept as given, for the adapter to read.
            assert_eq!(
                config.zmq.get("endpoint").and_then(|v| v.as_str()),
                Some("tcp://127.0.0.1:6555")
            );
            assert_eq!(
                config.zmq.get("bind").and_then(|v| v.to_bool()),
                Some(false)
            );
            Ok(())
        });
    }

    #[test]
    fn defaults_and_bad_values() {
        let config = Config::default();
        assert_eq!(
            config.proxy.listen,
            SocketAddr::from(([127, 0, 0, 1], 8765))
        );
        assert_eq!(config.proxy.reply_style, ReplyStyle::Documented);
        assert_eq!(config.proxy.ltp_throttle(), Duration::from_millis(50));
        assert_eq!(config.adapters, ["replay", "synthetic", "zmq"]);
        assert!(config.zmq.is_empty(), "the adapter's own defaults");
        config.validate().unwrap();
        for (bad, reason) in [
            (
                ProxyConfig {
                    max_message_bytes: 0,
                    ..ProxyConfig::default()
                },
                "proxy.max_message_bytes",
            ),
            (
                ProxyConfig {
                    brokers: vec![String::new()],
                    ..ProxyConfig::default()
                },
                "proxy.brokers",
            ),
            (
                ProxyConfig {
                    listen: config.listen,
                    ..ProxyConfig::default()
                },
                "proxy.listen",
            ),
        ] {
            let config = Config {
                proxy: bad,
                ..Config::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(reason), "{err}");
        }
        let unknown = Config {
            adapters: vec!["kafka".into()],
            ..Config::default()
        };
        assert!(unknown.validate().is_err());
    }

    #[test]
    fn adapter_names_are_known_and_listed_once() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        validate_adapter_names(&names(&["zmq", "replay"])).unwrap();
        let err = validate_adapter_names(&names(&["kafka"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown adapter \"kafka\""), "{err}");
        let err = validate_adapter_names(&names(&["zmq", "zmq"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listed twice"), "{err}");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
