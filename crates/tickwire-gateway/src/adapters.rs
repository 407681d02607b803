//! The server's wiring of adapters: each adapter's configuration read from
//! its section of [`Config`] with the adapter's own type, the adapters made
//! by name, and the optional parts of a gateway beyond [`run`](crate::run)'s:
//! the proxy's own listener and the adapter states the proxy reports.

use std::sync::Arc;
#[cfg(feature = "zmq")]
use std::sync::Mutex;

use std::path::{Path, PathBuf};

use figment::Figment;
#[cfg(any(feature = "replay", feature = "synthetic", feature = "zmq"))]
use figment::providers::Serialized;
#[cfg(any(feature = "replay", feature = "synthetic", feature = "zmq"))]
use serde::{Deserialize, Serialize};
#[cfg(any(feature = "synthetic", feature = "zmq"))]
use tickwire_adapter::AdapterError;
use tickwire_adapter::{AdapterStates, BrokerAdapter};
#[cfg(feature = "zmq")]
use tickwire_adapter::{BoxFuture, UpdateStream};
#[cfg(feature = "replay")]
use tickwire_adapter_replay::{JsonlReplay, ReplayConfig};
#[cfg(feature = "synthetic")]
use tickwire_adapter_synthetic::{SyntheticConfig, SyntheticMarket};
#[cfg(feature = "zmq")]
use tickwire_adapter_zmq::{ZmqAdapter, ZmqConfig};
#[cfg(any(feature = "replay", feature = "synthetic", feature = "zmq"))]
use tickwire_config::Section;
#[cfg(feature = "zmq")]
use tickwire_model::Instrument;
use tokio::net::TcpListener;
#[cfg(feature = "zmq")]
use tokio::task::JoinHandle;
#[cfg(feature = "zmq")]
use tracing::warn;

use crate::{Config, GatewayError};

/// Reads `section` (named `name`) as a `T`, over `T`'s defaults.
#[cfg(any(feature = "replay", feature = "synthetic", feature = "zmq"))]
fn read_section<T>(name: &str, section: &Section) -> Result<T, GatewayError>
where
    T: Serialize + for<'de> Deserialize<'de> + Default,
{
    Figment::from(Serialized::defaults(T::default()))
        .merge(Serialized::defaults(section))
        .extract()
        .map_err(|e| GatewayError::InvalidConfig {
            reason: format!("[{name}]: {e}"),
        })
}

/// Resolves a relative `[replay] data_dir` so that the server finds its data
/// from any working directory, and returns where it points now:
///
/// - set in a configuration file: relative to that file's directory;
/// - otherwise relative to the working directory when it is there, else to
///   the nearest ancestor of the working directory, then of the running
///   binary, that holds it (the bundled `data/demo` of the repository a
///   binary was built in, from a subdirectory or from `target/release`).
///
/// An absolute `data_dir` is left as it is, and so is one found nowhere (the
/// replay adapter then says what is missing).
pub fn locate_replay_data(figment: &Figment, config: &mut Config) -> Option<PathBuf> {
    let dir = PathBuf::from(config.replay.get("data_dir")?.as_str()?);
    if dir.is_absolute() {
        return Some(dir);
    }
    let from_file = figment
        .find_metadata("replay.data_dir")
        .and_then(|m| m.source.as_ref())
        .and_then(|source| source.file_path())
        .and_then(Path::parent)
        .map(|base| base.join(&dir));
    let found = from_file.or_else(|| {
        if dir.is_dir() {
            return None;
        }
        let cwd = std::env::current_dir().ok();
        let exe = std::env::current_exe().ok();
        let bases = cwd.iter().chain(exe.iter()).flat_map(|p| p.ancestors());
        bases.map(|base| base.join(&dir)).find(|p| p.is_dir())
    });
    match found {
        Some(path) => {
            let shown = path.display().to_string();
            config
                .replay
                .insert("data_dir".to_owned(), figment::value::Value::from(shown));
            Some(path)
        }
        None => Some(dir),
    }
}

/// The replay adapter's configuration, from `[replay]`.
#[cfg(feature = "replay")]
pub fn replay_config(config: &Config) -> Result<ReplayConfig, GatewayError> {
    read_section("replay", &config.replay)
}

/// The synthetic market's configuration, from `[synthetic]`, checked.
#[cfg(feature = "synthetic")]
pub fn synthetic_config(config: &Config) -> Result<SyntheticConfig, GatewayError> {
    let synthetic: SyntheticConfig = read_section("synthetic", &config.synthetic)?;
    if synthetic.enabled {
        synthetic
            .validate()
            .map_err(|e| GatewayError::InvalidConfig {
                reason: format!("synthetic: {e}"),
            })?;
    }
    Ok(synthetic)
}

/// The ZeroMQ adapter's configuration, from `[zmq]`.
#[cfg(feature = "zmq")]
pub fn zmq_config(config: &Config) -> Result<ZmqConfig, GatewayError> {
    read_section("zmq", &config.zmq)
}

/// The adapters of [`Config::adapters`], made by [`adapters_from_config`].
#[derive(Default)]
pub struct Adapters {
    /// The adapters, in configuration order.
    pub list: Vec<Arc<dyn BrokerAdapter>>,
    /// The connection states of those that report one (the ZeroMQ bus).
    pub states: AdapterStates,
}

impl std::fmt::Debug for Adapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapters")
            .field(
                "list",
                &self.list.iter().map(|a| a.name()).collect::<Vec<_>>(),
            )
            .field("states", &self.states)
            .finish()
    }
}

/// Makes the adapters [`Config::adapters`] names, in that order:
///
/// - `replay`: a [`JsonlReplay`] of `[replay]`;
/// - `synthetic`: a [`SyntheticMarket`] of `[synthetic]`, unless its
///   `enabled` is false;
/// - `zmq`: a [`ZmqAdapter`] of `[zmq]`. The gateway does not wait for it:
///   its binds or connects (with their retries and backoff) run in the
///   background, so a bus that is down shows as `retrying` or `failed` in
///   the logs and the proxy's `get_broker_info` instead of stopping the
///   gateway; its state is watched through [`Adapters::states`].
///
/// Errors: [`GatewayError::InvalidConfig`] for an unknown or repeated name
/// or an adapter configuration the adapter refuses.
pub fn adapters_from_config(config: &Config) -> Result<Adapters, GatewayError> {
    tickwire_config::validate_adapter_names(&config.adapters)?;
    #[cfg(any(feature = "synthetic", feature = "zmq"))]
    let invalid = |name: &str, e: AdapterError| GatewayError::InvalidConfig {
        reason: format!("{name}: {e}"),
    };
    #[cfg_attr(
        not(any(feature = "replay", feature = "synthetic", feature = "zmq")),
        allow(unused_mut)
    )]
    let mut out = Adapters::default();
    #[cfg_attr(
        not(any(feature = "replay", feature = "synthetic", feature = "zmq")),
        allow(clippy::never_loop)
    )]
    for name in &config.adapters {
        match name.as_str() {
            #[cfg(feature = "replay")]
            "replay" => out
                .list
                .push(Arc::new(JsonlReplay::new(replay_config(config)?))),
            #[cfg(feature = "synthetic")]
            "synthetic" => {
                let synthetic = synthetic_config(config)?;
                if synthetic.enabled {
                    let market =
                        SyntheticMarket::new(synthetic).map_err(|e| invalid("synthetic", e))?;
                    out.list.push(Arc::new(market));
                }
            }
            #[cfg(feature = "zmq")]
            "zmq" => {
                let zmq = ZmqAdapter::new(zmq_config(config)?).map_err(|e| invalid("zmq", e))?;
                out.states
                    .watch(zmq.config().name.clone(), zmq.watch_state());
                out.list.push(Arc::new(InBackground::new(zmq)));
            }
            other => {
                return Err(GatewayError::InvalidConfig {
                    reason: format!(
                        "adapters names {other:?}, which this build does not have (the `{other}` feature)"
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// What [`run_with`](crate::run_with) serves beyond [`run`](crate::run)'s.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// The proxy protocol's own listener, where every path upgrades (bind it
    /// at [`ProxyConfig::listen`](crate::ProxyConfig::listen)). Without it
    /// the proxy is served at `/proxy` on the main listener only.
    pub proxy_listener: Option<TcpListener>,
    /// Adapter states the proxy's `get_broker_info` reports (from
    /// [`Adapters::states`]).
    pub adapter_states: AdapterStates,
}

/// A [`ZmqAdapter`] whose `connect` runs in the background: the gateway
/// starts at once, and the bus comes up (or fails) on its own.
#[cfg(feature = "zmq")]
struct InBackground {
    inner: Arc<ZmqAdapter>,
    /// The background connect, aborted on disconnect.
    task: Mutex<Option<JoinHandle<()>>>,
}

#[cfg(feature = "zmq")]
impl InBackground {
    fn new(inner: ZmqAdapter) -> Self {
        InBackground {
            inner: Arc::new(inner),
            task: Mutex::new(None),
        }
    }
}

#[cfg(feature = "zmq")]
impl BrokerAdapter for InBackground {
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Starts the adapter's own connect (binds or connects, retrying with
    /// backoff) in a task and returns at once.
    fn connect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        let mut task = tickwire_core::lock(&self.task);
        if task.is_none() {
            let inner = self.inner.clone();
            *task = Some(tokio::spawn(async move {
                if let Err(e) = inner.connect().await {
                    warn!(adapter = inner.name(), error = %e, "adapter gave up connecting");
                }
            }));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn subscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.inner.subscribe(keys)
    }

    fn unsubscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.inner.unsubscribe(keys)
    }

    fn disconnect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        let task = tickwire_core::lock(&self.task).take();
        if let Some(task) = task {
            // Dropping a connect under way leaves the adapter unconnected.
            task.abort();
        }
        self.inner.disconnect()
    }

    fn updates(&self) -> Result<UpdateStream, AdapterError> {
        self.inner.updates()
    }

    fn instruments(&self) -> Vec<Instrument> {
        self.inner.instruments()
    }
}

#[cfg(all(test, feature = "synthetic", feature = "zmq", feature = "replay"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_factory_makes_what_is_listed() {
        let config = Config {
            adapters: vec!["synthetic".into(), "zmq".into()],
            zmq: section(&[("endpoint", "tcp://127.0.0.1:0".into())]),
            ..Config::default()
        };
        let adapters = adapters_from_config(&config).unwrap();
        let names: Vec<&str> = adapters.list.iter().map(|a| a.name()).collect();
        assert_eq!(names, ["synthetic", "zmq"]);
        assert_eq!(adapters.states.get("zmq"), Some("idle"));
        assert_eq!(adapters.states.get("synthetic"), None);

        let disabled = Config {
            adapters: vec!["synthetic".into()],
            synthetic: section(&[("enabled", false.into())]),
            ..Config::default()
        };
        assert!(adapters_from_config(&disabled).unwrap().list.is_empty());
    }

    fn section(entries: &[(&str, figment::value::Value)]) -> Section {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    // `Jail::expect_with` closures return figment's (large) error type.
    #[allow(clippy::result_large_err)]
    fn a_relative_data_dir_is_found_from_anywhere() {
        figment::Jail::expect_with(|jail| {
            let root = jail.directory().to_owned();
            for dir in ["data/demo", "conf/recordings", "deep/below"] {
                std::fs::create_dir_all(root.join(dir)).unwrap();
            }

            // The default, from a subdirectory: found in an ancestor.
            std::env::set_current_dir(root.join("deep/below")).unwrap();
            let figment = Config::figment(None);
            let mut config = Config::from_figment(&figment).unwrap();
            let found = locate_replay_data(&figment, &mut config).unwrap();
            assert_eq!(found, root.join("data/demo"));
            assert_eq!(replay_config(&config).unwrap().data_dir, found);

            // Set in a file: relative to the file, wherever the server runs.
            let file = root.join("conf/tickwire.toml");
            std::fs::write(&file, "[replay]\ndata_dir = \"recordings\"\n").unwrap();
            let figment = Config::figment(Some(&file));
            let mut config = Config::from_figment(&figment).unwrap();
            let found = locate_replay_data(&figment, &mut config).unwrap();
            assert_eq!(found, root.join("conf/recordings"));

            // Found nowhere: left for the adapter to report.
            jail.set_env("TICKWIRE_REPLAY__DATA_DIR", "nowhere/at/all");
            let figment = Config::figment(None);
            let mut config = Config::from_figment(&figment).unwrap();
            let found = locate_replay_data(&figment, &mut config).unwrap();
            assert_eq!(found, Path::new("nowhere/at/all"));
            Ok(())
        });
    }

    #[test]
    fn sections_are_read_with_the_adapters_types() {
        let config = Config::default();
        let replay = replay_config(&config).unwrap();
        assert_eq!(replay.data_dir, std::path::Path::new("data/demo"));
        assert_eq!(replay.mode, tickwire_adapter_replay::ReplayMode::Rotation);
        assert_eq!(replay.date, "latest", "the adapter's default");
        assert_eq!(zmq_config(&config).unwrap(), ZmqConfig::default());
        assert!(synthetic_config(&config).unwrap().enabled);

        let bad = Config {
            zmq: section(&[("hwm", "lots".into())]),
            ..Config::default()
        };
        let err = zmq_config(&bad).unwrap_err().to_string();
        assert!(err.contains("[zmq]") && err.contains("hwm"), "{err}");
        let bad = Config {
            synthetic: section(&[("book_depth", 0.into())]),
            ..Config::default()
        };
        assert!(synthetic_config(&bad).is_err());
    }
}
