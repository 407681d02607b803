//! The command line and the validated settings of a run.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::Error;
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
    /// `GET /negotiate`, then a `state_gex` hub with `protobuf.webpubsub.azure.v1`, joining groups.
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
        }
    }

    /// Whether updates are raw pubsub group payloads (else ticks).
    pub fn is_pubsub(self) -> bool {
        matches!(self, Protocol::PubsubProtobuf | Protocol::PubsubJson)
    }
}

/// `tickwire-loadtest`: opens many subscriber connections to a tickwire
/// server, publishes stamped updates through its publish API and measures
/// what arrives: latency (publish to receive), delivered messages per
/// second, drops, disconnects, connect time and the server's memory per
/// connection.
#[derive(Debug, Clone, Parser)]
#[command(name = "tickwire-loadtest", version)]
pub struct Args {
    /// The server: `http://HOST:PORT` (or `ws://`, or `HOST:PORT`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
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
    /// CPU time while publishing.
    #[arg(long)]
    pub server_pid: Option<u32>,
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
    /// Source addresses to bind connections to, in turn (comma-separated).
    /// Default for a loopback server: 127.0.0.1, 127.0.0.2, … one per 10,000
    /// connections and at least two.
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
    /// Run as a worker process (internal: the plan comes on stdin).
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// Where the server is.
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
        let rest = match url.split_once("://") {
            Some(("http" | "ws", rest)) => rest,
            Some((scheme, _)) => {
                return Err(Error::invalid(format!(
                    "--url: scheme {scheme:?} is not supported (use http:// or ws://; no TLS)"
                )));
            }
            None => url,
        };
        let host = rest.split(['/', '?']).next().unwrap_or_default();
        if host.is_empty() {
            return Err(Error::invalid(format!("--url {url:?} names no host")));
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
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| Error::invalid(format!("--url {url:?}: {e}")))?
            .next()
            .ok_or_else(|| Error::invalid(format!("--url {url:?} resolves to nothing")))?;
        Ok(Target {
            addr,
            host: host.to_owned(),
        })
    }
}

/// A run, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server.
    pub target: Target,
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
    /// The server's pid, for its memory.
    pub server_pid: Option<u32>,
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
}

impl Settings {
    /// Checks `args` and fills in the defaults that depend on others.
    pub fn from_args(args: &Args) -> Result<Settings, Error> {
        let protocol = args
            .protocol
            .ok_or_else(|| Error::invalid("--protocol is required"))?;
        let target = Target::parse(&args.url)?;
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
            default_sources(target.addr.ip(), args.connections)
        };
        if let Some(bad) = source_ips
            .iter()
            .find(|ip| ip.is_ipv4() != target.addr.is_ipv4())
        {
            return Err(Error::invalid(format!(
                "--source-ips: {bad} is not of the server's address family"
            )));
        }
        Ok(Settings {
            target,
            protocol,
            connections: args.connections,
            topics,
            rate,
            payload: args.payload,
            duration,
            server_pid: args.server_pid,
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
        })
    }
}

/// 127.0.0.1, 127.0.0.2, … for a server on an IPv4 loopback address: one
/// per [`CONNECTIONS_PER_SOURCE`] connections and at least two. None (the
/// kernel's choice) otherwise.
fn default_sources(server: IpAddr, connections: usize) -> Vec<IpAddr> {
    match server {
        IpAddr::V4(v4) if v4.is_loopback() => {
            let n = connections.div_ceil(CONNECTIONS_PER_SOURCE).clamp(2, 254);
            (1..=n)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
                .collect()
        }
        _ => Vec::new(),
    }
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
        assert_eq!(s.target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.target.host, "127.0.0.1:8080");
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
        assert_eq!(s.target.addr.port(), 9000);
        assert_eq!(s.connections, 25_000);
        assert_eq!((s.topics.count(), s.topics.per_connection()), (100, 3));
        assert_eq!(s.duration, Duration::from_millis(2500));
        assert_eq!(s.api_keys, ["a", "b"]);
        assert_eq!(s.publish_key, "p");
        assert_eq!(s.server_pid, Some(42));
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
}
