//! `tickwire-server`: the tickwire gateway serving a JSONL replay of GEX
//! records (the pubsub hubs) and, unless `[synthetic] enabled = false`, a
//! synthetic market (the `/ws` and `/stream` JSON feeds), plus the ZeroMQ bus
//! of broker adapters feeding the market-data proxy (on its own listener,
//! `127.0.0.1:8765` by default, and at `/proxy`). The adapters are made by
//! name from `adapters` in the configuration.
//!
//! ```text
//! tickwire-server [--config FILE] [--listen ADDR] [--proxy-listen ADDR] [--zmq-bind ENDPOINT]
//! tickwire-server --check-config FILE [--listen ADDR] …
//! ```
//!
//! `--check-config FILE` loads and checks the configuration as a start
//! would (every section refuses unknown keys, the adapters check theirs)
//! and exits 0 when it is valid, 2 with the reason when not.
//!
//! A proxy listener that cannot be bound is logged as an error and the proxy
//! stays reachable at `/proxy`; a bus that cannot be bound retries with
//! backoff, then shows as `failed`, without stopping the server.
//!
//! At start it raises its soft open-file limit to the hard one and logs how
//! many connections that allows; its listeners use an accept backlog of
//! [`LISTEN_BACKLOG`] (the kernel caps it at `net.core.somaxconn`), so that
//! bursts of connects are queued rather than dropped.
//!
//! Configuration: defaults < `--config` TOML file < `TICKWIRE_*` environment
//! (`__` between nested keys) < command-line flags. Logs go to stderr, in
//! colour only on a terminal, or as JSON lines with `--log-format json`;
//! set `RUST_LOG` (default `info`). SIGINT and SIGTERM shut the server down
//! gracefully and it exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tickwire_gateway::{
    Config, DEMO_KEY, GatewayError, RunOptions, adapters_from_config, locate_replay_data,
};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// jemalloc, not the system allocator: a connection is a dozen small
/// allocations made and freed on different threads, which jemalloc packs in
/// size classes without a header each (about 120 to 300 bytes less per idle
/// connection) and serves from per-thread caches (about 4% less server CPU
/// per delivery at 2 M/s); docs/benchmarks.md, "The allocator".
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Pending connections the listeners queue before the server accepts them.
const LISTEN_BACKLOG: u32 = 4096;
/// File descriptors kept for everything but client connections (listeners,
/// the data files of the replay, the bus, logs).
const RESERVED_FDS: u64 = 64;

/// The tickwire market-data WebSocket gateway.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Configuration: defaults < --config FILE (TOML) < TICKWIRE_* environment variables \
(`__` between nested keys: TICKWIRE_WS__SUBSCRIPTION_LIMIT=50, TICKWIRE_CLUSTER__NODE_NAME=a) \
< these flags. Unknown keys are refused. Logs: RUST_LOG (default info). \
Every option: tickwire.example.toml; the reference: docs/configuration.md."
)]
struct Args {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the configuration).
    #[arg(long, value_name = "ADDR", env = "TICKWIRE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of the market-data proxy's own listener (overrides `proxy.listen`).
    #[arg(long, value_name = "ADDR")]
    proxy_listen: Option<SocketAddr>,
    /// ZeroMQ endpoint the bus adapter binds, e.g. `tcp://127.0.0.1:5555`
    /// (overrides `zmq.endpoint` and sets `zmq.bind`).
    #[arg(long, value_name = "ENDPOINT")]
    zmq_bind: Option<String>,
    /// Check the configuration FILE (with the environment and the flags
    /// above on top, the adapters' sections included) and exit without
    /// starting anything: 0 when it is valid, 2 with the reason when not.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Print the effective configuration (defaults < --config FILE <
    /// environment < flags) as TOML and exit; keys given in clear are
    /// shown as their `key_sha256`, other secrets as `(redacted)`.
    #[arg(long, conflicts_with = "check_config")]
    print_config: bool,
    /// How log lines are written to stderr: `text` (colours only when
    /// stderr is a terminal) or `json` (one object a line, for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The form of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// For people: one line each, coloured on a terminal only.
    Text,
    /// For machines: one JSON object each.
    Json,
}

/// Where the replay's data is by default (relative): the repository's demo.
const DEFAULT_DATA_DIR: &str = "data/demo";

/// The repository's `data/demo`, packed by `build.rs` (empty when the binary
/// was built outside the repository).
static DEMO_ARCHIVE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo.tar.zst"));

/// The demo data this binary carries, unpacked once into the user's cache
/// (`$XDG_CACHE_HOME`, else `~/.cache`, else the temporary directory), in a
/// folder named by the version and the archive's size; `None` when the
/// binary carries none. Unpacked beside and renamed into place, so that two
/// servers starting at once never read half a folder.
fn carried_demo() -> anyhow::Result<Option<PathBuf>> {
    if DEMO_ARCHIVE.is_empty() {
        return Ok(None);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("tickwire");
    let dir = cache.join(format!(
        "demo-{}-{}",
        env!("CARGO_PKG_VERSION"),
        DEMO_ARCHIVE.len()
    ));
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let staging = cache.join(format!(".unpacking-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let decoder = zstd::Decoder::new(DEMO_ARCHIVE).context("reading the archive")?;
    tar::Archive::new(decoder)
        .unpack(&staging)
        .with_context(|| format!("unpacking into {}", staging.display()))?;
    if let Err(e) = std::fs::rename(&staging, &dir) {
        let _ = std::fs::remove_dir_all(&staging);
        // Another server unpacked it meanwhile.
        if !dir.is_dir() {
            return Err(e).with_context(|| format!("moving it to {}", dir.display()));
        }
    }
    Ok(Some(dir))
}

/// The exit status of a configuration that is not valid.
const INVALID_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        // No colour codes in a file or a pipe.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(file) = args.check_config.clone() {
        return runtime.block_on(check_config(&file, &args));
    }
    if args.print_config {
        return print_config(&args);
    }
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config FILE`: loads and validates everything a start would,
/// makes the adapters (which check their sections) and starts nothing.
async fn check_config(file: &std::path::Path, args: &Args) -> ExitCode {
    let figment = figment_of(Some(file), args);
    let checked = Config::from_figment(&figment)
        .map_err(GatewayError::from)
        .and_then(|mut config| {
            locate_replay_data(&figment, &mut config);
            adapters_from_config(&config)?;
            // The certificate and key are read and matched as at start.
            match &config.tls {
                Some(tls) => tickwire_gateway::Tls::load(tls)
                    .map(|_| ())
                    .map_err(|reason| GatewayError::InvalidConfig { reason }),
                None => Ok(()),
            }
        });
    match checked {
        Ok(()) => {
            #[allow(clippy::print_stdout)]
            {
                println!("{}: valid", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{}: {e}", file.display());
            }
            ExitCode::from(INVALID_CONFIG)
        }
    }
}

/// `--print-config`: the effective configuration as TOML on stdout.
fn print_config(args: &Args) -> ExitCode {
    let printed = Config::from_figment(&figment_of(args.config.as_deref(), args))
        .map_err(|e| e.to_string())
        .and_then(|config| toml::to_string_pretty(&config.redacted()).map_err(|e| e.to_string()));
    match printed {
        Ok(text) => {
            #[allow(clippy::print_stdout)]
            {
                print!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{e}");
            }
            ExitCode::from(INVALID_CONFIG)
        }
    }
}

/// The configuration's sources: defaults, `file`, the environment, the
/// flags.
fn figment_of(file: Option<&std::path::Path>, args: &Args) -> figment::Figment {
    let mut figment = Config::figment(file);
    if let Some(listen) = args.listen {
        figment = figment.merge(figment::providers::Serialized::default("listen", listen));
    }
    if let Some(listen) = args.proxy_listen {
        figment = figment.merge(figment::providers::Serialized::default(
            "proxy.listen",
            listen,
        ));
    }
    if let Some(endpoint) = &args.zmq_bind {
        figment = figment
            .merge(figment::providers::Serialized::default(
                "zmq.endpoint",
                endpoint,
            ))
            .merge(figment::providers::Serialized::default("zmq.bind", true));
    }
    figment
}

async fn serve(args: Args) -> anyhow::Result<()> {
    for name in Config::stray_env() {
        warn!(
            variable = %name,
            "{name} names no configuration key (see --help); ignored"
        );
    }
    let figment = figment_of(args.config.as_deref(), &args);
    let mut config = match Config::from_figment(&figment).map_err(GatewayError::from) {
        Ok(config) => config,
        Err(e @ GatewayError::DemoKeyOnPublicAddress { .. }) => return Err(e.into()),
        Err(e) => return Err(e).context("loading the configuration"),
    };
    match locate_replay_data(&figment, &mut config) {
        Some(dir) if dir.is_dir() => info!(data_dir = %dir.display(), "replay data"),
        Some(dir) if dir == std::path::Path::new(DEFAULT_DATA_DIR) => match carried_demo() {
            Ok(Some(unpacked)) => {
                info!(
                    data_dir = %unpacked.display(),
                    "replay data: the demo this binary carries (no {DEFAULT_DATA_DIR} here)"
                );
                config.replay.insert(
                    "data_dir".to_owned(),
                    figment::value::Value::from(unpacked.display().to_string()),
                );
            }
            Ok(None) => {}
            Err(e) => warn!("cannot unpack the demo data this binary carries: {e:#}"),
        },
        _ => {}
    }
    raise_open_file_limit();
    let listener = listen(config.listen).with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr()?;
    // With [tls], every listener speaks https:// and wss://.
    let (http, ws) = if config.tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    info!(listen = %local, "tickwire listening");
    if config.api_keys.iter().any(|k| k.is_demo()) {
        info!(
            "demo key enabled; try: curl -H 'Authorization: Basic {DEMO_KEY}' {http}://{local}/negotiate"
        );
    }
    let adapters = adapters_from_config(&config).context("making the adapters")?;
    for adapter in &adapters.list {
        info!(adapter = adapter.name(), "adapter configured");
    }
    if adapters.list.iter().any(|a| a.name() == "synthetic") {
        info!(
            "synthetic market enabled; feeds on {ws}://{local}/ws and {ws}://{local}/stream?api_key=<key>"
        );
    }
    let proxy_listener = match listen(config.proxy.listen) {
        Ok(l) => Some(l),
        Err(e) => {
            error!(
                listen = %config.proxy.listen,
                "cannot bind the proxy listener ({e}); the proxy stays reachable at {ws}://{local}/proxy"
            );
            None
        }
    };
    let proxy_addr = proxy_listener.as_ref().and_then(|l| l.local_addr().ok());
    let bus = adapters
        .list
        .iter()
        .any(|a| a.name() == "zmq")
        .then(|| tickwire_gateway::zmq_config(&config).ok())
        .flatten();
    announce_endpoints(local, (http, ws), proxy_addr, bus.as_ref());
    let options = RunOptions {
        proxy_listener,
        adapter_states: adapters.states,
    };
    tickwire_gateway::run_with(listener, options, config, adapters.list, shutdown_signal()).await?;
    Ok(())
}

/// Logs one line per endpoint with the URL it is reached at.
fn announce_endpoints(
    local: SocketAddr,
    (http, ws): (&str, &str),
    proxy: Option<SocketAddr>,
    bus: Option<&tickwire_gateway::ZmqConfig>,
) {
    let endpoints = [
        (
            format!("{http}://{local}/negotiate"),
            "pubsub: access URLs and tokens (seed 000)",
        ),
        (
            format!(
                "{ws}://{local}/client/hubs/{{classic|state_gex|orderflow|state_greeks_zero|state_greeks_one}}"
            ),
            "pubsub hubs (also /ws/{hub})",
        ),
        (format!("{ws}://{local}/ws"), "JSON symbol feed (seed 001)"),
        (
            format!("{ws}://{local}/stream"),
            "keyed JSON stream (seed 002)",
        ),
        (
            format!("{ws}://{local}/proxy"),
            "market-data proxy (seed 003)",
        ),
        (
            format!("{ws}://{local}/api/v1/ws"),
            "FastWS bars (seed 004)",
        ),
        (
            format!("{http}://{local}/api/v1/ws/asyncapi"),
            "FastWS AsyncAPI document",
        ),
        (format!("{http}://{local}/api/v1/publish"), "publish API"),
        (
            format!("{http}://{local}/api/v1/{{ltp|quote|depth}}"),
            "last-value polls",
        ),
        (format!("{http}://{local}/healthz"), "liveness"),
        (format!("{http}://{local}/readyz"), "readiness"),
        (
            format!("{http}://{local}/socket.io/"),
            "Socket.IO, namespace /market (seed 003)",
        ),
        (
            format!("{http}://{local}/watchlist"),
            "watchlist page over Socket.IO",
        ),
        (format!("{http}://{local}/metrics"), "Prometheus metrics"),
        (format!("{http}://{local}/dashboard"), "live dashboard"),
        (
            format!("{http}://{local}/admin/{{connections|topics}}"),
            "admin API (a key with the admin role)",
        ),
    ];
    for (url, what) in endpoints {
        info!(%url, "endpoint: {what}");
    }
    if let Some(proxy) = proxy {
        info!(url = %format!("{ws}://{proxy}"), "endpoint: market-data proxy, its own listener");
    }
    if let Some(bus) = bus {
        info!(
            url = %bus.endpoint,
            bind = bus.bind,
            "endpoint: ZeroMQ bus of broker adapters"
        );
    }
}

/// Binds `addr` with an accept backlog of [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // A restarted server rebinds at once, as `TcpListener::bind` would.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the soft open-file limit to the hard one and logs how many
/// connections it allows.
fn raise_open_file_limit() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(
            open_files = limit,
            raised_from = before.unwrap_or(limit),
            max_connections = limit.saturating_sub(RESERVED_FDS),
            "open-file limit: about {} connections",
            limit.saturating_sub(RESERVED_FDS)
        ),
        Err(e) => warn!("cannot read or raise the open-file limit: {e}"),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("SIGINT received"),
        () = term => info!("SIGTERM received"),
    }
}
