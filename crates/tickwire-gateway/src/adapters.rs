//! Adapters made by name from the configuration, and the optional parts of
//! a gateway beyond [`run`](crate::run)'s: the proxy's own listener and the
//! adapter states the proxy reports.

use std::sync::{Arc, Mutex};

use tickwire_adapter::{AdapterError, BoxFuture, BrokerAdapter, UpdateStream};
use tickwire_adapter_replay::JsonlReplay;
use tickwire_adapter_synthetic::SyntheticMarket;
use tickwire_adapter_zmq::{ZmqAdapter, ZmqState};
use tickwire_model::Instrument;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::{Config, GatewayError};

/// The adapter names [`Config::adapters`] may list.
pub const ADAPTER_NAMES: [&str; 3] = ["replay", "synthetic", "zmq"];

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
    validate_names(&config.adapters)?;
    let invalid = |name: &str, e: AdapterError| GatewayError::InvalidConfig {
        reason: format!("{name}: {e}"),
    };
    let mut out = Adapters::default();
    for name in &config.adapters {
        match name.as_str() {
            "replay" => out
                .list
                .push(Arc::new(JsonlReplay::new(config.replay.clone()))),
            "synthetic" if config.synthetic.enabled => {
                let market = SyntheticMarket::new(config.synthetic.clone())
                    .map_err(|e| invalid("synthetic", e))?;
                out.list.push(Arc::new(market));
            }
            "synthetic" => {}
            _ => {
                let zmq = ZmqAdapter::new(config.zmq.clone()).map_err(|e| invalid("zmq", e))?;
                out.states
                    .watch(zmq.config().name.clone(), zmq.watch_state());
                out.list.push(Arc::new(InBackground::new(zmq)));
            }
        }
    }
    Ok(out)
}

/// Checks [`Config::adapters`]: known names, each at most once.
pub(crate) fn validate_names(names: &[String]) -> Result<(), GatewayError> {
    for (i, name) in names.iter().enumerate() {
        if !ADAPTER_NAMES.contains(&name.as_str()) {
            return Err(GatewayError::InvalidConfig {
                reason: format!(
                    "adapters: unknown adapter {name:?}; expected one of {}",
                    ADAPTER_NAMES.join(", ")
                ),
            });
        }
        if names[..i].contains(name) {
            return Err(GatewayError::InvalidConfig {
                reason: format!("adapters: {name:?} is listed twice"),
            });
        }
    }
    Ok(())
}

/// Watched connection states of adapters, by adapter name; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AdapterStates(Vec<(String, watch::Receiver<ZmqState>)>);

impl AdapterStates {
    /// Watches the adapter `name` through `state` (from
    /// [`ZmqAdapter::watch_state`]).
    pub fn watch(&mut self, name: impl Into<String>, state: watch::Receiver<ZmqState>) {
        self.0.push((name.into(), state));
    }

    /// The state of the adapter `name` now, if it is watched.
    pub fn get(&self, name: &str) -> Option<ZmqState> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, rx)| *rx.borrow())
    }

    /// The state of the first watched adapter, as its one-word name.
    pub(crate) fn first_state(&self) -> Option<&'static str> {
        self.0.first().map(|(_, rx)| rx.borrow().as_str())
    }
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
struct InBackground {
    inner: Arc<ZmqAdapter>,
    /// The background connect, aborted on disconnect.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl InBackground {
    fn new(inner: ZmqAdapter) -> Self {
        InBackground {
            inner: Arc::new(inner),
            task: Mutex::new(None),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        validate_names(&names(&["replay", "synthetic", "zmq"])).unwrap();
        validate_names(&[]).unwrap();
        let err = validate_names(&names(&["kafka"])).unwrap_err();
        assert!(
            err.to_string().contains("unknown adapter \"kafka\""),
            "{err}"
        );
        let err = validate_names(&names(&["zmq", "zmq"])).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }

    #[tokio::test]
    async fn the_factory_makes_what_is_listed() {
        let config = Config {
            adapters: vec!["synthetic".into(), "zmq".into()],
            zmq: tickwire_adapter_zmq::ZmqConfig {
                endpoint: "tcp://127.0.0.1:0".into(),
                ..Default::default()
            },
            ..Config::default()
        };
        let adapters = adapters_from_config(&config).unwrap();
        let names: Vec<&str> = adapters.list.iter().map(|a| a.name()).collect();
        assert_eq!(names, ["synthetic", "zmq"]);
        assert_eq!(adapters.states.get("zmq"), Some(ZmqState::Idle));
        assert_eq!(adapters.states.get("synthetic"), None);

        let disabled = Config {
            adapters: vec!["synthetic".into()],
            synthetic: tickwire_adapter_synthetic::SyntheticConfig {
                enabled: false,
                ..Default::default()
            },
            ..Config::default()
        };
        assert!(adapters_from_config(&disabled).unwrap().list.is_empty());
    }
}
