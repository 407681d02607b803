//! `tickwire-server`: the tickwire gateway serving a JSONL replay of GEX
//! records (the pubsub hubs) and, unless `[synthetic] enabled = false`, a
//! synthetic market (the `/ws` and `/stream` JSON feeds).
//!
//! ```text
//! tickwire-server [--config FILE] [--listen ADDR]
//! ```
//!
//! Configuration: defaults < `--config` TOML file < `TICKWIRE_*` environment
//! (`__` between nested keys) < command-line flags. Logs go to stderr; set
//! `RUST_LOG` (default `info`). SIGINT and SIGTERM shut the server down
//! gracefully and it exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use tickwire_adapter::{BrokerAdapter, JsonlReplay, SyntheticMarket};
use tickwire_gateway::{Config, DEMO_KEY, GatewayError};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

/// The tickwire market-data WebSocket gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the configuration).
    #[arg(long, value_name = "ADDR", env = "TICKWIRE_LISTEN")]
    listen: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let mut figment = Config::figment(args.config.as_deref());
    if let Some(listen) = args.listen {
        figment = figment.merge(figment::providers::Serialized::default("listen", listen));
    }
    let config = match Config::from_figment(&figment) {
        Ok(config) => config,
        Err(e @ GatewayError::DemoKeyOnPublicAddress { .. }) => return Err(e.into()),
        Err(e) => return Err(e).context("loading the configuration"),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr()?;
    info!(listen = %local, "tickwire listening");
    if config.api_keys.iter().any(|k| k.is_demo()) {
        info!(
            "demo key enabled; try: curl -H 'Authorization: Basic {DEMO_KEY}' http://{local}/negotiate"
        );
    }
    let replay = JsonlReplay::new(config.replay.clone());
    let mut adapters: Vec<Arc<dyn BrokerAdapter>> = vec![Arc::new(replay)];
    if config.synthetic.enabled {
        let market = SyntheticMarket::new(config.synthetic.clone())
            .context("starting the synthetic market")?;
        info!(
            seed = market.seed(),
            instruments = config.synthetic.universe.len(),
            "synthetic market enabled; feeds on ws://{local}/ws and ws://{local}/stream?api_key=<key>"
        );
        adapters.push(Arc::new(market));
    }
    tickwire_gateway::run(listener, config, adapters, shutdown_signal()).await?;
    Ok(())
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
