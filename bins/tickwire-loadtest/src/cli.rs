//! The command line and the validated settings of a run.
//!
//! A run targets one server or the nodes of a cluster: `--url` takes a
//! comma-separated list, connection `i` goes to node `i mod N`
//! ([`node_of`]), the publish requests go to `--publish-url` (the first
//! node by default), and `--server-pid` takes one pid per server process
//! (any number of them: see [`Settings::server_pids`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::thresholds::Thresholds;
use crate::topics::Topics;

/// The key of the server's default configuration.
pub const DEMO_KEY: &str = "tickwire-demo-key";

/// Connections one source address serves before the next one is added
/// (a source address has about 28,000 ephemeral ports).
const CONNECTIONS_PER_SOURCE: usize = 10_000;

/// What the subscribers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// `GET /negotiate`, then the `state_gex` hub at the URL it names (its
    /// node may be another than the one asked), with
    /// `protobuf.webpubsub.azure.v1`, joining groups.
    PubsubProtobuf,
    /// As `pubsub-protobuf` with `json.webpubsub.azure.v1`.
    PubsubJson,
    /// The public JSON feed `/ws`, subscribing to symbols (`lt0001`).
    Ws,
    /// The keyed JSON feed `/stream`, subscribing to symbols (`LT0001/USD`).
    Stream,
    /// The broker-adapter proxy protocol at `/proxy`: `authenticate` with the
    /// key, then `subscribe` to instruments (`LT0001/USD` on `CRYPTO`) in
    /// Quote mode.
    Proxy,
    /// The FastWS envelope at `/api/v1/ws`: `bars.subscribe` to the
    /// 1-minute bars of one symbol (`LT0001/USD`).
    Fastws,
    /// Socket.IO (Engine.IO v4 over WebSocket) at `/socket.io/`, namespace
    /// `/market`: connect with the key in the `auth` payload, then
    /// `subscribe` to instruments (`LT0001/USD` on `CRYPTO`) in Quote mode,
    /// answering the server's heartbeat pings.
    Socketio,
    /// Socket.IO as the standard clients connect by default: an Engine.IO
    /// session opened on long-polling, `/market` joined there (the key in
    /// `Authorization` and in the `auth` payload), then the upgrade to a
    /// WebSocket (`2probe`, `3probe`, `5`) and, on it, the `subscribe` of
    /// `socketio`.
    SocketioPolling,
}

impl Protocol {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::PubsubProtobuf => "pubsub-protobuf",
            Protocol::PubsubJson => "pubsub-json",
            Protocol::Ws => "ws",
            Protocol::Stream => "stream",
            Protocol::Proxy => "proxy",
            Protocol::Fastws => "fastws",
            Protocol::Socketio => "socketio",
            Protocol::SocketioPolling => "socketio-polling",
        }
    }

    /// Whether updates are raw pubsub group payloads (else ticks).
    pub fn is_pubsub(self) -> bool {
        matches!(self, Protocol::PubsubProtobuf | Protocol::PubsubJson)
    }

    /// Whether updates are the proxy's `market_data` quotes (publishes name
    /// the exchange).
    pub fn is_quotes(self) -> bool {
        matches!(
            self,
            Protocol::Proxy | Protocol::Socketio | Protocol::SocketioPolling
        )
    }
}

/// `tickwire-loadtest`: opens many subscriber connections to a tickwire
/// server (or to the nodes of a tickwire cluster), publishes stamped
/// updates through its publish API and measures what arrives: latency
/// (publish to receive), delivered messages per second, drops,
/// disconnects, connect time and the server's memory per connection.
#[derive(Debug, Clone, Parser)]
#[command(name = "tickwire-loadtest", version)]
pub struct Args {
    /// The server: `http://HOST:PORT` (or `ws://`, or `HOST:PORT`); for a
    /// cluster, its nodes, comma-separated
    /// (`http://127.0.0.1:8081,http://127.0.0.1:8082`): connection i goes to
    /// node i mod N, across all workers. Pubsub connections negotiate at
    /// their node and connect where `/negotiate` sends them (in a cluster,
    /// the least-loaded node).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The node that receives the publish requests (`POST /api/v1/publish`);
    /// default: the first `--url`. In a cluster an update published to one
    /// node reaches the subscribers of every node.
    #[arg(long)]
    pub publish_url: Option<String>,
    /// What the subscribers speak.
    #[arg(long, value_enum, required_unless_present = "worker")]
    pub protocol: Option<Protocol>,
    /// Subscriber connections to open.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Topics (synthetic symbols or groups) to publish to.
    #[arg(long, default_value_t = 10)]
    pub topics: usize,
    /// Topics each connection subscribes to.
    #[arg(long, default_value_t = 1)]
    pub subscriptions_per_conn: usize,
    /// Updates per second published on each topic.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Payload bytes of each update: the raw group payload (pubsub) or the
    /// `source` field of a tick (`/stream`); `/ws` ticks have a fixed size.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Seconds to publish for.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// The server's process id: report its resident memory per connection and its
    /// CPU time while publishing. For a cluster, the nodes' pids,
    /// comma-separated: the report sums them and gives each. Any number of
    /// pids is accepted; when there are as many as `--url`s, pid k is taken
    /// to be the k-th node's, and its memory per connection is over the
    /// connections that ended up at that node's address.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Connections opened per second.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Most handshakes in flight at once (per worker).
    #[arg(long, default_value_t = 512)]
    pub connect_concurrency: usize,
    /// Seconds a connection may take to connect and subscribe.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// API keys of the subscribers (comma-separated; connections take them in
    /// turn): `/negotiate` for pubsub, `Authorization: Bearer` for `/stream`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = DEMO_KEY,
        env = "TICKWIRE_LOADTEST_API_KEY"
    )]
    pub api_key: Vec<String>,
    /// API key with the role `publish` for `POST /api/v1/publish` (default:
    /// the first `--api-key`).
    #[arg(long, env = "TICKWIRE_LOADTEST_PUBLISH_KEY")]
    pub publish_key: Option<String>,
    /// Processes to spread the connections over (1: all in this process).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Source addresses to bind connections to, in turn (comma-separated),
    /// whatever the node; each must be of the nodes' address family.
    /// Default when every node is on an IPv4 loopback address: 127.0.0.1,
    /// 127.0.0.2, … one per 10,000 connections (all nodes together) and at
    /// least two. A loopback source is not used for a non-loopback node
    /// (one `/negotiate` sent the connection to).
    #[arg(long, value_delimiter = ',')]
    pub source_ips: Vec<IpAddr>,
    /// Milliseconds between two publish requests (each carries every update
    /// due by then).
    #[arg(long, default_value_t = 5)]
    pub publish_interval_ms: u64,
    /// Seconds to wait after the last publish for updates still on the way.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Do not print the progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Fail (exit status 3) if the p50 latency is above this many ms.
    #[arg(long, value_name = "MS")]
    pub max_p50_ms: Option<f64>,
    /// Fail (exit status 3) if the p99 latency is above this many ms.
    #[arg(long, value_name = "MS")]
    pub max_p99_ms: Option<f64>,
    /// Fail (exit status 3) if the p99.9 latency is above this many ms.
    #[arg(long, value_name = "MS")]
    pub max_p999_ms: Option<f64>,
    /// Fail (exit status 3) if more updates than this were lost.
    #[arg(long, value_name = "N")]
    pub max_drops: Option<u64>,
    /// Fail (exit status 3) if the server closed more connections than this.
    #[arg(long, value_name = "N")]
    pub max_disconnects: Option<u64>,
    /// Fail (exit status 3) if more connections or publish requests failed.
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,
    /// Fail (exit status 3) if fewer updates a second were delivered.
    #[arg(long, value_name = "PER_S")]
    pub min_delivered_per_sec: Option<f64>,
    /// Write the latencies to FILE as an HdrHistogram percentile
    /// distribution (`.hgrm`, milliseconds), for HdrHistogram's plotter.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Run as a worker process (internal: the plan comes on stdin).
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// Where a server (a node) is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The address connected to.
    pub addr: SocketAddr,
    /// The `Host` header (`127.0.0.1:8080`).
    pub host: String,
}

impl Target {
    /// Parses `http://HOST:PORT`, `ws://HOST:PORT` or `HOST:PORT` (port 80
    /// when absent) and resolves it.
    pub fn parse(url: &str) -> Result<Target, Error> {
        Self::parse_option("--url", url)
    }

    /// [`Target::parse`], its errors naming `option`.
    fn parse_option(option: &str, url: &str) -> Result<Target, Error> {
        let bad = |why: String| Error::invalid(format!("{option} {url:?}: {why}"));
        let (host, with_port) = authority(url).map_err(bad)?;
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| bad(e.to_string()))?
            .next()
            .ok_or_else(|| bad("resolves to nothing".into()))?;
        Ok(Target {
            addr,
            host: host.to_owned(),
        })
    }

    /// Parses a URL as [`Target::parse`] does (`ws://HOST:PORT/path…`, the
    /// path ignored) and resolves it without blocking; of its addresses,
    /// the first of `family`'s address family (IPv4 or not) if any. What
    /// `/negotiate` answers is read with this.
    pub async fn resolve(url: &str, family: SocketAddr) -> Result<Target, String> {
        let (host, with_port) = authority(url)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| format!("{with_port}: {e}"))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4() == family.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("{with_port} resolves to nothing"))?;
        Ok(Target {
            addr,
            host: host.to_owned(),
        })
    }
}

/// The host of a URL as written (`127.0.0.1:8080`, the `Host` header) and
/// with a port (`HOST:80` when it has none), to resolve. `http`, `ws` or no
/// scheme.
fn authority(url: &str) -> Result<(&str, String), String> {
    let rest = match url.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") =>
        {
            rest
        }
        Some((scheme, _)) => {
            return Err(format!(
                "scheme {scheme:?} is not supported (use http:// or ws://; no TLS)"
            ));
        }
        None => url,
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() {
        return Err("names no host".into());
    }
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !host.ends_with(']')
    {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    Ok((host, with_port))
}

/// A comma-separated list of URLs (`--url`): each element trimmed, none
/// empty, each parsed and resolved by [`Target::parse`]. Returns the
/// elements as written with their targets, in order.
pub fn parse_url_list(option: &str, list: &str) -> Result<Vec<(String, Target)>, Error> {
    let elements: Vec<&str> = list.split(',').map(str::trim).collect();
    let mut out = Vec::with_capacity(elements.len());
    for (i, url) in elements.into_iter().enumerate() {
        if url.is_empty() {
            return Err(Error::invalid(format!(
                "{option} {list:?}: element {} is empty",
                i + 1
            )));
        }
        out.push((url.to_owned(), Target::parse_option(option, url)?));
    }
    Ok(out)
}

/// The node connection `index` goes to, of `nodes`: round-robin over the
/// global connection index, so it holds whichever worker opens the
/// connection.
pub fn node_of(index: usize, nodes: usize) -> usize {
    index % nodes.max(1)
}

/// The source address connection `index` binds to when it connects to
/// `dest`: the next of `sources` in turn, unless it cannot reach `dest` (of
/// another address family, or a loopback source and a non-loopback
/// destination); `None` leaves the choice to the kernel.
pub fn source_for(sources: &[IpAddr], index: usize, dest: SocketAddr) -> Option<IpAddr> {
    if sources.is_empty() {
        return None;
    }
    let ip = sources[index % sources.len()];
    let usable = ip.is_ipv4() == dest.is_ipv4() && (!ip.is_loopback() || dest.ip().is_loopback());
    usable.then_some(ip)
}

/// A run, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The nodes (one for a single server), in `--url` order; connection
    /// `i` goes to node [`node_of`]`(i, N)`.
    pub nodes: Vec<Target>,
    /// The `--url` elements as written, one per node.
    pub urls: Vec<String>,
    /// Where the publish requests go.
    pub publish_target: Target,
    /// `--publish-url` as written, or the first `--url`.
    pub publish_url: String,
    /// What the subscribers speak.
    pub protocol: Protocol,
    /// Connections to open.
    pub connections: usize,
    /// The topics and their assignment.
    pub topics: Topics,
    /// Updates per second per topic.
    pub rate: f64,
    /// Payload bytes per update.
    pub payload: usize,
    /// How long to publish.
    pub duration: Duration,
    /// The server processes' pids, for their memory and CPU time (none,
    /// one, or one per node; no pid twice). Any number: with as many as
    /// nodes, pid `k` is taken to be node `k`'s.
    pub server_pids: Vec<u32>,
    /// Connections per second.
    pub connect_rate: f64,
    /// Handshakes in flight per worker.
    pub connect_concurrency: usize,
    /// Time to connect and subscribe.
    pub connect_timeout: Duration,
    /// Subscribers' keys.
    pub api_keys: Vec<String>,
    /// The publisher's key.
    pub publish_key: String,
    /// Worker processes (1: in this process).
    pub workers: usize,
    /// Source addresses, empty for the kernel's choice.
    pub source_ips: Vec<IpAddr>,
    /// Time between publish requests.
    pub publish_interval: Duration,
    /// Time to wait for updates in flight at the end.
    pub drain: Duration,
    /// Print progress on stderr.
    pub progress: bool,
    /// The executable started for worker processes (this binary).
    pub worker_exe: Option<PathBuf>,
    /// The limits the run must stay within.
    pub thresholds: Thresholds,
    /// Where to write the latencies' percentile distribution.
    pub hgrm: Option<PathBuf>,
}

/// A limit given as a number of milliseconds or a rate: finite and not
/// negative.
fn limit(name: &str, value: Option<f64>) -> Result<Option<f64>, Error> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => Err(Error::invalid(format!(
            "{name} must be a number of at least 0"
        ))),
        other => Ok(other),
    }
}

impl Settings {
    /// Checks `args` and fills in the defaults that depend on others.
    pub fn from_args(args: &Args) -> Result<Settings, Error> {
        let protocol = args
            .protocol
            .ok_or_else(|| Error::invalid("--protocol is required"))?;
        let (urls, nodes): (Vec<String>, Vec<Target>) =
            parse_url_list("--url", &args.url)?.into_iter().unzip();
        let (publish_url, publish_target) = match &args.publish_url {
            Some(url) if !url.trim().is_empty() => (
                url.trim().to_owned(),
                Target::parse_option("--publish-url", url.trim())?,
            ),
            Some(_) => return Err(Error::invalid("--publish-url is empty")),
            None => (urls[0].clone(), nodes[0].clone()),
        };
        let mut server_pids: Vec<u32> = Vec::with_capacity(args.server_pid.len());
        for &pid in &args.server_pid {
            if server_pids.contains(&pid) {
                return Err(Error::invalid(format!("--server-pid names {pid} twice")));
            }
            server_pids.push(pid);
        }
        let topics = Topics::new(args.topics, args.subscriptions_per_conn)?;
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(Error::invalid(format!("{name} must be a positive number")))
            }
        };
        let rate = positive("--rate", args.rate)?;
        let duration = Duration::from_secs_f64(positive("--duration", args.duration)?);
        let connect_rate = positive("--connect-rate", args.connect_rate)?;
        let connect_timeout =
            Duration::from_secs_f64(positive("--connect-timeout", args.connect_timeout)?);
        if !(args.drain.is_finite() && args.drain >= 0.0) {
            return Err(Error::invalid("--drain must be zero or more"));
        }
        if args.connections == 0 {
            return Err(Error::invalid("--connections must be at least 1"));
        }
        if args.workers == 0 || args.workers > args.connections {
            return Err(Error::invalid(
                "--workers must be between 1 and --connections",
            ));
        }
        if args.connect_concurrency == 0 {
            return Err(Error::invalid("--connect-concurrency must be at least 1"));
        }
        if args.publish_interval_ms == 0 {
            return Err(Error::invalid("--publish-interval-ms must be at least 1"));
        }
        let api_keys: Vec<String> = args
            .api_key
            .iter()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect();
        if api_keys.is_empty() {
            return Err(Error::invalid("--api-key names no key"));
        }
        let publish_key = args
            .publish_key
            .clone()
            .filter(|k| !k.trim().is_empty())
            .unwrap_or_else(|| api_keys[0].clone());
        match protocol {
            Protocol::Ws if args.subscriptions_per_conn > 100 => {
                return Err(Error::invalid(
                    "/ws allows 100 symbols per connection by default (ws.subscription_limit)",
                ));
            }
            // A bar update names no symbol: a connection's updates are all
            // of its one topic.
            Protocol::Fastws if args.subscriptions_per_conn != 1 => {
                return Err(Error::invalid(
                    "fastws: bar updates do not name their symbol, so each connection \
                     subscribes to one topic (--subscriptions-per-conn 1)",
                ));
            }
            // Each topic gets about rate × duration updates; the bar price
            // carries sequence numbers up to BAR_MAX_SEQ.
            Protocol::Fastws
                if rate * duration.as_secs_f64() >= crate::stamp::BAR_MAX_SEQ as f64 =>
            {
                return Err(Error::invalid(format!(
                    "fastws: bar prices carry at most {} updates per topic (--rate × --duration)",
                    crate::stamp::BAR_MAX_SEQ
                )));
            }
            _ => {}
        }
        let source_ips = if !args.source_ips.is_empty() {
            args.source_ips.clone()
        } else {
            default_sources(&nodes, args.connections)
        };
        for node in &nodes {
            if let Some(bad) = source_ips
                .iter()
                .find(|ip| ip.is_ipv4() != node.addr.is_ipv4())
            {
                return Err(Error::invalid(format!(
                    "--source-ips: {bad} is not of the address family of the server {}",
                    node.addr
                )));
            }
            if let Some(bad) = source_ips
                .iter()
                .find(|ip| ip.is_loopback() && !node.addr.ip().is_loopback())
            {
                return Err(Error::invalid(format!(
                    "--source-ips: {bad} is a loopback address, which cannot reach the server {}",
                    node.addr
                )));
            }
        }
        Ok(Settings {
            nodes,
            urls,
            publish_target,
            publish_url,
            protocol,
            connections: args.connections,
            topics,
            rate,
            payload: args.payload,
            duration,
            server_pids,
            connect_rate,
            connect_concurrency: args.connect_concurrency,
            connect_timeout,
            api_keys,
            publish_key,
            workers: args.workers,
            source_ips,
            publish_interval: Duration::from_millis(args.publish_interval_ms),
            drain: Duration::from_secs_f64(args.drain),
            progress: !args.quiet,
            worker_exe: None,
            thresholds: Thresholds {
                max_p50_ms: limit("--max-p50-ms", args.max_p50_ms)?,
                max_p99_ms: limit("--max-p99-ms", args.max_p99_ms)?,
                max_p999_ms: limit("--max-p999-ms", args.max_p999_ms)?,
                max_drops: args.max_drops,
                max_disconnects: args.max_disconnects,
                max_errors: args.max_errors,
                min_delivered_per_sec: limit(
                    "--min-delivered-per-sec",
                    args.min_delivered_per_sec,
                )?,
            },
            hgrm: args.hgrm.clone(),
        })
    }
}

/// 127.0.0.1, 127.0.0.2, … when every node is on an IPv4 loopback
/// address: one per [`CONNECTIONS_PER_SOURCE`] connections (all nodes
/// together: a bound source address's ephemeral ports are shared by every
/// destination) and at least two. None (the kernel's choice) otherwise.
fn default_sources(nodes: &[Target], connections: usize) -> Vec<IpAddr> {
    let loopback = |t: &Target| matches!(t.addr.ip(), IpAddr::V4(v4) if v4.is_loopback());
    if nodes.is_empty() || !nodes.iter().all(loopback) {
        return Vec::new();
    }
    let n = connections.div_ceil(CONNECTIONS_PER_SOURCE).clamp(2, 254);
    (1..=n)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Settings, Error> {
        let mut argv = vec!["tickwire-loadtest"];
        if !extra.contains(&"--protocol") {
            argv.extend_from_slice(&["--protocol", "ws"]);
        }
        argv.extend_from_slice(extra);
        let args = Args::try_parse_from(argv).map_err(|e| Error::invalid(e.to_string()))?;
        Settings::from_args(&args)
    }

    #[test]
    fn the_protocols_by_name() {
        for (name, protocol) in [
            ("pubsub-protobuf", Protocol::PubsubProtobuf),
            ("pubsub-json", Protocol::PubsubJson),
            ("ws", Protocol::Ws),
            ("stream", Protocol::Stream),
            ("proxy", Protocol::Proxy),
            ("socketio", Protocol::Socketio),
            ("socketio-polling", Protocol::SocketioPolling),
            ("fastws", Protocol::Fastws),
        ] {
            let s = args(&["--protocol", name]).unwrap();
            assert_eq!(s.protocol, protocol);
            assert_eq!(protocol.name(), name);
            assert_eq!(protocol.is_pubsub(), name.starts_with("pubsub"));
        }
        let proxy = args(&["--protocol", "proxy", "--subscriptions-per-conn", "5"]).unwrap();
        assert_eq!(proxy.topics.per_connection(), 5);
    }

    #[test]
    fn defaults() {
        let s = args(&[]).unwrap();
        assert_eq!(s.nodes.len(), 1);
        assert_eq!(s.nodes[0].addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.nodes[0].host, "127.0.0.1:8080");
        assert_eq!(s.urls, ["http://127.0.0.1:8080"]);
        assert_eq!(s.publish_target, s.nodes[0]);
        assert_eq!(s.publish_url, "http://127.0.0.1:8080");
        assert!(s.server_pids.is_empty());
        assert_eq!(s.api_keys, [DEMO_KEY]);
        assert_eq!(s.publish_key, DEMO_KEY);
        assert_eq!(s.source_ips.len(), 2);
        assert_eq!(s.workers, 1);
    }

    #[test]
    fn the_full_command_line() {
        let s = args(&[
            "--url",
            "ws://127.0.0.1:9000/ignored",
            "--connections",
            "25000",
            "--topics",
            "100",
            "--subscriptions-per-conn",
            "3",
            "--rate",
            "0.5",
            "--payload",
            "512",
            "--duration",
            "2.5",
            "--server-pid",
            "42",
            "--json",
            "--connect-rate",
            "500",
            "--api-key",
            "a,b",
            "--publish-key",
            "p",
            "--workers",
            "3",
        ])
        .unwrap();
        assert_eq!(s.nodes.len(), 1);
        assert_eq!(s.nodes[0].addr.port(), 9000);
        assert_eq!(s.nodes[0].host, "127.0.0.1:9000");
        assert_eq!(s.connections, 25_000);
        assert_eq!((s.topics.count(), s.topics.per_connection()), (100, 3));
        assert_eq!(s.duration, Duration::from_millis(2500));
        assert_eq!(s.api_keys, ["a", "b"]);
        assert_eq!(s.publish_key, "p");
        assert_eq!(s.server_pids, [42]);
        // 25,000 connections: three loopback sources.
        assert_eq!(
            s.source_ips,
            ["127.0.0.1", "127.0.0.2", "127.0.0.3"].map(|a| a.parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn impossible_runs_are_refused() {
        for bad in [
            &["--connections", "0"][..],
            &["--rate", "0"],
            &["--duration=-1"],
            &["--topics", "2", "--subscriptions-per-conn", "3"],
            &["--workers", "0"],
            &["--connections", "2", "--workers", "3"],
            &["--url", "https://127.0.0.1:1"],
            &["--subscriptions-per-conn", "101", "--topics", "200"],
            &["--source-ips", "::1"],
            &["--api-key", ","],
            &["--protocol", "fastws", "--subscriptions-per-conn", "2"],
            &[
                "--protocol",
                "fastws",
                "--rate",
                "1000",
                "--duration",
                "10000",
            ],
            &["--protocol", "smoke-signals"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_list_of_urls_is_the_nodes_of_a_cluster() {
        let s = args(&[
            "--url",
            "http://127.0.0.1:8081, ws://127.0.0.1:8082/ignored,127.0.0.1:8083",
        ])
        .unwrap();
        assert_eq!(
            s.urls,
            [
                "http://127.0.0.1:8081",
                "ws://127.0.0.1:8082/ignored",
                "127.0.0.1:8083"
            ]
        );
        let addrs: Vec<SocketAddr> = s.nodes.iter().map(|t| t.addr).collect();
        assert_eq!(
            addrs,
            [
                addr("127.0.0.1:8081"),
                addr("127.0.0.1:8082"),
                addr("127.0.0.1:8083")
            ]
        );
        let hosts: Vec<&str> = s.nodes.iter().map(|t| t.host.as_str()).collect();
        assert_eq!(
            hosts,
            ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"]
        );
        // Publishing goes to the first node unless told otherwise.
        assert_eq!(s.publish_url, "http://127.0.0.1:8081");
        assert_eq!(s.publish_target, s.nodes[0]);
        // All on loopback: the default sources, counted over all nodes.
        assert_eq!(s.source_ips.len(), 2);

        let s = args(&[
            "--url",
            "http://127.0.0.1:8081,http://127.0.0.1:8082",
            "--publish-url",
            " http://127.0.0.1:8082 ",
        ])
        .unwrap();
        assert_eq!(s.publish_url, "http://127.0.0.1:8082");
        assert_eq!(s.publish_target, s.nodes[1]);
        // The same server twice is two nodes.
        let s = args(&["--url", "127.0.0.1:8081,127.0.0.1:8081"]).unwrap();
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(s.nodes[0], s.nodes[1]);
    }

    #[test]
    fn bad_url_lists_are_refused_naming_the_option() {
        for (list, needle) in [
            ("", "element 1 is empty"),
            ("http://127.0.0.1:8081,", "element 2 is empty"),
            (
                "http://127.0.0.1:8081,,http://127.0.0.1:8083",
                "element 2 is empty",
            ),
            (" , http://127.0.0.1:8081", "element 1 is empty"),
            ("http://127.0.0.1:8081,https://127.0.0.1:8082", "no TLS"),
            ("http://127.0.0.1:8081,http://", "names no host"),
            ("http://127.0.0.1:8081,wss://h:1", "scheme \"wss\""),
        ] {
            let err = args(&["--url", list]).unwrap_err().to_string();
            assert!(err.contains("--url"), "{list:?}: {err}");
            assert!(err.contains(needle), "{list:?}: {err}");
        }
        for (url, needle) in [
            ("https://127.0.0.1:1", "no TLS"),
            ("", "--publish-url is empty"),
            ("http://", "names no host"),
        ] {
            let err = args(&["--publish-url", url]).unwrap_err().to_string();
            assert!(err.contains("--publish-url"), "{url:?}: {err}");
            assert!(err.contains(needle), "{url:?}: {err}");
        }
    }

    #[test]
    fn server_pids_are_a_list_of_any_length() {
        assert_eq!(args(&["--server-pid", "7"]).unwrap().server_pids, [7]);
        // Fewer, as many or more pids than nodes: all accepted.
        for (urls, pids) in [
            ("127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "7,8"),
            ("127.0.0.1:1,127.0.0.1:2", "7,8"),
            ("127.0.0.1:1", "7,8,9"),
        ] {
            let s = args(&["--url", urls, "--server-pid", pids]).unwrap();
            let want: Vec<u32> = pids.split(',').map(|p| p.parse().unwrap()).collect();
            assert_eq!(s.server_pids, want);
        }
        // Repeated, the option adds up.
        let s = args(&["--server-pid", "7", "--server-pid", "8,9"]).unwrap();
        assert_eq!(s.server_pids, [7, 8, 9]);
        for bad in ["7,,8", "7,", "x", "-1", "7,7"] {
            assert!(args(&["--server-pid", bad]).is_err(), "{bad}");
        }
        let err = args(&["--server-pid", "7,8,7"]).unwrap_err().to_string();
        assert!(err.contains("--server-pid names 7 twice"), "{err}");
    }

    #[test]
    fn connections_go_round_robin_over_the_nodes() {
        let nodes: Vec<usize> = (0..7).map(|i| node_of(i, 3)).collect();
        assert_eq!(nodes, [0, 1, 2, 0, 1, 2, 0]);
        assert!((0..5).all(|i| node_of(i, 1) == 0));
    }

    #[test]
    fn source_addresses_are_chosen_per_destination() {
        let sources: Vec<IpAddr> = ["127.0.0.1", "127.0.0.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let local = addr("127.0.0.1:8081");
        assert_eq!(source_for(&sources, 0, local), Some(sources[0]));
        assert_eq!(source_for(&sources, 3, local), Some(sources[1]));
        // A loopback source cannot reach another machine, nor an IPv4 one
        // an IPv6 node: the kernel chooses.
        assert_eq!(source_for(&sources, 0, addr("10.1.2.3:8081")), None);
        assert_eq!(source_for(&sources, 0, addr("[::1]:8081")), None);
        assert_eq!(source_for(&[], 0, local), None);
        let routable: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap()];
        assert_eq!(
            source_for(&routable, 1, addr("10.1.2.3:8081")),
            Some(routable[0])
        );

        // The loopback default only when every node is on loopback.
        let s = args(&["--url", "127.0.0.1:8081,127.0.0.2:8082"]).unwrap();
        assert_eq!(s.source_ips.len(), 2);
        let s = args(&["--url", "127.0.0.1:8081,[::1]:8082"]).unwrap();
        assert!(s.source_ips.is_empty());
        // Given sources must suit every node.
        let err = args(&[
            "--url",
            "127.0.0.1:8081,[::1]:8082",
            "--source-ips",
            "127.0.0.1",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("[::1]:8082"), "{err}");
        let err = args(&[
            "--url",
            "127.0.0.1:8081,10.1.2.3:8082",
            "--source-ips",
            "127.0.0.2",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cannot reach the server 10.1.2.3:8082"),
            "{err}"
        );
        // Not all on loopback: the kernel chooses.
        let s = args(&["--url", "127.0.0.1:8081,10.1.2.3:8082"]).unwrap();
        assert!(s.source_ips.is_empty());
    }

    #[tokio::test]
    async fn negotiated_urls_resolve_without_blocking() {
        let v4 = addr("127.0.0.1:1");
        let t = Target::resolve("ws://127.0.0.1:9001/ws/state_gex?access_token=x", v4)
            .await
            .unwrap();
        assert_eq!(t.addr, addr("127.0.0.1:9001"));
        assert_eq!(t.host, "127.0.0.1:9001");
        let t = Target::resolve("ws://[::1]:9002/ws/state_gex", v4)
            .await
            .unwrap();
        assert_eq!(
            (t.addr, t.host.as_str()),
            (addr("[::1]:9002"), "[::1]:9002")
        );
        assert!(
            Target::resolve("wss://127.0.0.1:9001/ws", v4)
                .await
                .is_err()
        );
        assert!(Target::resolve("ws:///ws", v4).await.is_err());
    }
}
