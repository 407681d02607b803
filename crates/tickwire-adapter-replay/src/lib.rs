//! The JSONL replay adapter: a recorded GEX day played back on the wall clock
//! (seed 000), a [`BrokerAdapter`] of `tickwire-adapter`.
//!
//! [`JsonlReplay`] reads
//! `DATA_DIR/YYYY-MM-DD/TICKER/{classic|state|orderflow}/{category}.jsonl` once
//! at `connect` and emits one record per subscribed group per interval, on
//! ticks aligned to the wall clock, each as a `Bytes` slice of its file.
//! Failures to find or read the data are [`ReplayError`]s, carried by
//! [`AdapterError::Source`].

mod dataset;
mod error;

pub use error::ReplayError;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use tickwire_model::{GexRecord, Hub, Update};

use tickwire_adapter::{AdapterError, BoxFuture, BrokerAdapter, UpdateStream};

use crate::dataset::{Dataset, is_valid_ticker};

/// The name [`JsonlReplay`] reports.
const NAME: &str = "replay";

/// What a replay does when a group reaches its last record (seed 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayMode {
    /// `exhaust`: the group stops; the stream ends once every subscribed group has stopped.
    #[default]
    Exhaust,
    /// `rotation`: the group starts again from its first record.
    Rotation,
}

/// Configuration of a [`JsonlReplay`], embeddable in a larger (figment) config.
///
/// Every field has a default; unknown fields are rejected.
///
/// ```
/// # use std::time::Duration;
/// # use tickwire_adapter_replay::{ReplayConfig, ReplayMode};
/// let config = ReplayConfig {
///     data_dir: "recordings".into(),
///     interval: Duration::from_millis(250),
///     mode: ReplayMode::Rotation,
///     ..ReplayConfig::default()
/// };
/// assert_eq!(config.date, "latest");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// The folder holding one folder per date (default `data`).
    pub data_dir: PathBuf,
    /// `latest` (the newest folder named as a valid `YYYY-MM-DD` date; also
    /// when empty) or a `YYYY-MM-DD` date (default `latest`).
    pub date: String,
    /// Time between ticks; each tick emits one record per subscribed group.
    /// Ticks fall on whole multiples of it in UNIX time, so 1 s ticks on the
    /// whole second. Written `interval_ms` in config files (default 1000).
    #[serde(rename = "interval_ms", with = "millis")]
    pub interval: Duration,
    /// What to do at the end of a group (default `exhaust`).
    pub mode: ReplayMode,
    /// Load only these tickers (default: all).
    pub tickers: Option<Vec<String>>,
    /// How many updates the stream buffers before the replay waits for the
    /// reader (default 1024).
    pub buffer: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            data_dir: PathBuf::from("data"),
            date: "latest".to_owned(),
            interval: Duration::from_secs(1),
            mode: ReplayMode::Exhaust,
            tickers: None,
            buffer: 1024,
        }
    }
}

/// `Duration` as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The replay key of a group: `TICKER/folder/category`, e.g. `ES_SPX/state/gamma_zero`.
///
/// ```
/// use tickwire_adapter_replay::replay_key;
/// use tickwire_model::{GroupName, Hub};
///
/// let group = GroupName::parse("blue", Hub::StateGreeksZero, "blue_ES_SPX_state_gamma_zero").unwrap();
/// assert_eq!(replay_key(&group.ticker, group.hub, group.category), "ES_SPX/state/gamma_zero");
/// ```
pub fn replay_key(ticker: &str, hub: Hub, category: &str) -> String {
    format!("{ticker}/{}/{category}", hub.group_kind())
}

/// Checks a subscription key of the replay: `*` or `TICKER/folder/category`.
fn check_key(key: &str) -> Result<(), &'static str> {
    if key == "*" {
        return Ok(());
    }
    let mut parts = key.rsplitn(3, '/');
    let (Some(category), Some(folder), Some(ticker)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("expected `*` or TICKER/folder/category");
    };
    if !is_valid_ticker(ticker) {
        return Err(
            "the ticker is empty or holds characters other than A-Z, a-z, 0-9, `_`, `.`, `-`",
        );
    }
    if Hub::for_file(folder, category).is_none() {
        return Err("no hub has this folder and category");
    }
    Ok(())
}

/// The UNIX time of the first tick strictly after `unix_now`: the next whole
/// multiple of `interval` (seed 000: "aligned to the whole second" for 1 s).
///
/// A zero interval returns `unix_now`.
///
/// ```
/// use std::time::Duration;
/// use tickwire_adapter_replay::next_tick_after;
///
/// let now = Duration::from_millis(1_700_000_000_250);
/// assert_eq!(next_tick_after(now, Duration::from_secs(1)), Duration::from_secs(1_700_000_001));
/// ```
pub fn next_tick_after(unix_now: Duration, interval: Duration) -> Duration {
    const NANOS: u128 = 1_000_000_000;
    let step = interval.as_nanos();
    if step == 0 {
        return unix_now;
    }
    let next = (unix_now.as_nanos() / step + 1) * step;
    let secs = u64::try_from(next / NANOS).unwrap_or(u64::MAX);
    // The remainder is below 10^9 and fits.
    Duration::new(secs, (next % NANOS) as u32)
}

/// What was loaded by [`JsonlReplay::connect`](BrokerAdapter::connect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    /// The date folder's name.
    pub date: String,
    /// The date folder.
    pub dir: PathBuf,
    /// The groups, sorted by key.
    pub groups: Vec<ReplayGroup>,
}

/// One loaded group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayGroup {
    /// Its replay key, `TICKER/folder/category`.
    pub key: String,
    /// The hub whose groups carry its records.
    pub hub: Hub,
    /// How many records it holds.
    pub records: usize,
}

impl ReplaySummary {
    fn of(dataset: &Dataset) -> Self {
        ReplaySummary {
            date: dataset.date.clone(),
            dir: dataset.dir.clone(),
            groups: dataset
                .groups
                .iter()
                .map(|g| ReplayGroup {
                    key: g.key.clone(),
                    hub: g.hub,
                    records: g.records.len(),
                })
                .collect(),
        }
    }
}

/// The subscribed keys, shared with the replay task. Never locked across an `.await`.
#[derive(Debug, Default)]
struct Subscriptions {
    /// `*` is subscribed.
    all: bool,
    keys: HashSet<String>,
    /// Bumped on every change, so the task recomputes its view only then.
    version: u64,
}

/// Where the adapter is in its life.
#[derive(Debug)]
enum Phase {
    Idle,
    Running {
        stop: oneshot::Sender<()>,
        task: JoinHandle<()>,
    },
    Stopped,
}

/// Adapter state. Never locked across an `.await`.
#[derive(Debug)]
struct State {
    phase: Phase,
    /// Handed to the replay task on connect.
    tx: Option<mpsc::Sender<Update>>,
    /// Handed out by `updates`.
    rx: Option<mpsc::Receiver<Update>>,
    summary: Option<ReplaySummary>,
}

/// Replays a recorded day of GEX records (seed 000).
///
/// [`connect`](BrokerAdapter::connect) loads the day selected by the
/// [`ReplayConfig`] from `DATA_DIR/YYYY-MM-DD/TICKER/{classic|state|orderflow}/{category}.jsonl`:
/// each file is read once and its lines are kept as `Bytes` slices of it.
/// Files no hub claims (`Hub::for_file`) and lines that are not JSON objects
/// are skipped with a warning; blank lines silently.
///
/// Then, on every tick (a whole multiple of the interval in UNIX time), it
/// emits the next record of every subscribed group as
/// [`Update::Gex`], groups in key order. A group's position moves only while
/// it is subscribed: it starts at its first record and keeps its place across
/// unsubscribe and resubscribe. At a group's end, [`ReplayMode::Rotation`]
/// starts it again; [`ReplayMode::Exhaust`] stops it, and the stream ends once
/// every subscribed group with data has stopped.
///
/// Subscription keys are `*` (every group) or `TICKER/folder/category` as
/// built by [`replay_key`], e.g. `ES_SPX/state/gamma_zero`. A valid key with
/// no data in the loaded day is accepted and emits nothing.
///
/// The stream is bounded ([`ReplayConfig::buffer`]): while it is full the
/// replay waits, and ticks missed meanwhile are skipped, not caught up.
#[derive(Debug)]
pub struct JsonlReplay {
    config: ReplayConfig,
    subscriptions: Arc<Mutex<Subscriptions>>,
    state: Mutex<State>,
}

impl JsonlReplay {
    /// A replay of `config`; nothing is read before [`connect`](BrokerAdapter::connect).
    pub fn new(config: ReplayConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        JsonlReplay {
            config,
            subscriptions: Arc::default(),
            state: Mutex::new(State {
                phase: Phase::Idle,
                tx: Some(tx),
                rx: Some(rx),
                summary: None,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ReplayConfig {
        &self.config
    }

    /// What was loaded, once connected.
    pub fn summary(&self) -> Option<ReplaySummary> {
        self.state.lock().summary.clone()
    }

    fn disconnected() -> AdapterError {
        AdapterError::Disconnected {
            adapter: NAME.to_owned(),
        }
    }

    /// Fails once disconnected; `Ok(true)` when running.
    fn check_phase(&self) -> Result<bool, AdapterError> {
        match self.state.lock().phase {
            Phase::Idle => Ok(false),
            Phase::Running { .. } => Ok(true),
            Phase::Stopped => Err(Self::disconnected()),
        }
    }

    async fn connect_inner(&self) -> Result<(), AdapterError> {
        if self.check_phase()? {
            return Ok(());
        }
        if self.config.interval.is_zero() {
            return Err(AdapterError::InvalidConfig {
                field: "interval_ms",
                reason: "must be at least 1",
            });
        }
        let config = self.config.clone();
        let dataset = match tokio::task::spawn_blocking(move || dataset::load(&config)).await {
            Ok(loaded) => loaded.map_err(|e| AdapterError::Source {
                adapter: NAME.to_owned(),
                error: Box::new(e),
            })?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => return Err(Self::disconnected()),
        };
        let summary = ReplaySummary::of(&dataset);
        tracing::info!(
            date = %summary.date,
            groups = summary.groups.len(),
            records = summary.groups.iter().map(|g| g.records).sum::<usize>(),
            "replay data loaded"
        );

        let mut state = self.state.lock();
        match state.phase {
            Phase::Idle => {}
            // Another connect won the race.
            Phase::Running { .. } => return Ok(()),
            Phase::Stopped => return Err(Self::disconnected()),
        }
        let Some(tx) = state.tx.take() else {
            return Err(Self::disconnected());
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(
            dataset,
            Arc::clone(&self.subscriptions),
            tx,
            stopped,
            self.config.interval,
            self.config.mode,
        ));
        state.phase = Phase::Running { stop, task };
        state.summary = Some(summary);
        Ok(())
    }

    fn change(&self, keys: &[String], add: bool) -> Result<(), AdapterError> {
        self.check_phase()?;
        if add {
            for key in keys {
                check_key(key).map_err(|reason| AdapterError::InvalidKey {
                    key: key.clone(),
                    reason,
                })?;
            }
            if let Some(summary) = &self.state.lock().summary {
                for key in keys.iter().filter(|k| *k != "*") {
                    if !summary.groups.iter().any(|g| &g.key == key) {
                        tracing::debug!(%key, "subscribed key has no data in the replayed day");
                    }
                }
            }
        }
        let mut subscriptions = self.subscriptions.lock();
        for key in keys {
            match (&**key, add) {
                ("*", _) => subscriptions.all = add,
                (_, true) => {
                    subscriptions.keys.insert(key.clone());
                }
                (_, false) => {
                    subscriptions.keys.remove(key);
                }
            }
        }
        subscriptions.version += 1;
        Ok(())
    }
}

impl BrokerAdapter for JsonlReplay {
    /// `replay`.
    fn name(&self) -> &str {
        NAME
    }

    /// Loads and validates the day (on the blocking pool), then starts the
    /// replay task. Errors: [`AdapterError::Source`] with a [`ReplayError`]
    /// (the data cannot be found or read), [`AdapterError::InvalidConfig`],
    /// [`AdapterError::Disconnected`].
    fn connect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        Box::pin(self.connect_inner())
    }

    /// Validates every key first; an invalid one fails the call and nothing
    /// is subscribed. Takes effect at the next tick.
    fn subscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(std::future::ready(self.change(keys, true)))
    }

    /// Unsubscribing `*` leaves keys subscribed by name in place. Takes effect
    /// at the next tick.
    fn unsubscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(std::future::ready(self.change(keys, false)))
    }

    /// Stops the replay task at once (also when the future is never polled);
    /// awaiting the future waits for the task to finish.
    fn disconnect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        let phase = {
            let mut state = self.state.lock();
            state.tx = None;
            std::mem::replace(&mut state.phase, Phase::Stopped)
        };
        let task = match phase {
            Phase::Running { stop, task } => {
                // The task may already have ended (exhausted) and dropped its receiver.
                let _ = stop.send(());
                Some(task)
            }
            Phase::Idle | Phase::Stopped => None,
        };
        Box::pin(async move {
            if let Some(Err(e)) = match task {
                Some(task) => Some(task.await),
                None => None,
            } {
                if e.is_panic() {
                    tracing::error!("the replay task panicked");
                }
            }
            Ok(())
        })
    }

    /// Fails with [`AdapterError::UpdatesTaken`] after the first call.
    fn updates(&self) -> Result<UpdateStream, AdapterError> {
        let rx = self.state.lock().rx.take();
        let Some(mut rx) = rx else {
            return Err(AdapterError::UpdatesTaken {
                adapter: NAME.to_owned(),
            });
        };
        Ok(Box::pin(futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}

/// The replay task: one record per subscribed group per tick, until stopped,
/// exhausted or the stream is dropped.
async fn run(
    dataset: Dataset,
    subscriptions: Arc<Mutex<Subscriptions>>,
    tx: mpsc::Sender<Update>,
    mut stop: oneshot::Receiver<()>,
    interval: Duration,
    mode: ReplayMode,
) {
    let groups = dataset.groups;
    let mut cursors = vec![0usize; groups.len()];
    let mut active = vec![false; groups.len()];
    let mut seen = None;
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let wait = next_tick_after(now, interval).saturating_sub(now);
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }

        {
            let subscriptions = subscriptions.lock();
            if seen != Some(subscriptions.version) {
                seen = Some(subscriptions.version);
                for (on, group) in active.iter_mut().zip(&groups) {
                    *on = subscriptions.all || subscriptions.keys.contains(&group.key);
                }
            }
        }

        for (i, group) in groups.iter().enumerate() {
            if !active[i] {
                continue;
            }
            let Some(json) = group.records.get(cursors[i]) else {
                continue;
            };
            cursors[i] += 1;
            if mode == ReplayMode::Rotation && cursors[i] == group.records.len() {
                cursors[i] = 0;
            }
            let update = Update::Gex(GexRecord {
                hub: group.hub,
                ticker: Arc::clone(&group.ticker),
                category: group.category,
                json: json.clone(),
            });
            tokio::select! {
                biased;
                _ = &mut stop => return,
                sent = tx.send(update) => if sent.is_err() {
                    tracing::debug!("replay stream dropped; stopping");
                    return;
                },
            }
        }

        if mode == ReplayMode::Exhaust {
            let mut subscribed = groups
                .iter()
                .zip(&cursors)
                .zip(&active)
                .filter(|(_, on)| **on);
            let any = subscribed.clone().next().is_some();
            if any && subscribed.all(|((g, &c), _)| c >= g.records.len()) {
                tracing::info!("every subscribed replay group is exhausted; ending the stream");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fall_on_whole_multiples_of_the_interval() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(next_tick_after(ms(12_300), s(1)), s(13));
        // Strictly after: a tick exactly now is already past.
        assert_eq!(next_tick_after(s(13), s(1)), s(14));
        assert_eq!(next_tick_after(ms(12_999), s(1)), s(13));
        assert_eq!(next_tick_after(ms(1_010), ms(20)), ms(1_020));
        assert_eq!(next_tick_after(ms(1_019), ms(250)), ms(1_250));
        assert_eq!(next_tick_after(s(0), s(5)), s(5));
        assert_eq!(
            next_tick_after(Duration::new(1_764_300_000, 999_999_999), s(1)),
            s(1_764_300_001)
        );
        assert_eq!(next_tick_after(ms(7), Duration::ZERO), ms(7));
        // Not a divisor of a second: multiples of 300 ms since the epoch.
        assert_eq!(next_tick_after(ms(1_000), ms(300)), ms(1_200));
    }

    #[test]
    fn keys_are_checked() {
        for ok in [
            "*",
            "SPX/state/gamma_zero",
            "ES_SPX/state/gamma_zero",
            "NDX/classic/gex_full",
            "SPX/orderflow/orderflow",
        ] {
            assert_eq!(check_key(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "SPX",
            "SPX/state",
            "/state/gamma_zero",
            "S/PX/state/gamma_zero",
            "SPX/state/gex",
            "SPX/classic/delta_zero",
            "SPX/orderflow/gex_zero",
            "**",
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_reads_with_defaults() {
        let config: ReplayConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, ReplayConfig::default());
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.mode, ReplayMode::Exhaust);

        let config: ReplayConfig = serde_json::from_str(
            r#"{"data_dir":"/srv/gex","date":"2025-11-28","interval_ms":250,
                "mode":"rotation","tickers":["SPX","ES_SPX"],"buffer":8}"#,
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/gex"));
        assert_eq!(config.date, "2025-11-28");
        assert_eq!(config.interval, Duration::from_millis(250));
        assert_eq!(config.mode, ReplayMode::Rotation);
        assert_eq!(
            config.tickers.as_deref(),
            Some(&["SPX".into(), "ES_SPX".into()][..])
        );
        assert_eq!(config.buffer, 8);

        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["interval_ms"], 250);
        assert!(serde_json::from_str::<ReplayConfig>(r#"{"interval":5}"#).is_err());
        assert!(serde_json::from_str::<ReplayConfig>(r#"{"mode":"loop"}"#).is_err());
    }

    #[test]
    fn keys_match_group_names() {
        let group =
            tickwire_model::GroupName::parse("blue", Hub::Classic, "blue_ES_SPX_classic_gex_one")
                .unwrap();
        let key = replay_key(&group.ticker, group.hub, group.category);
        assert_eq!(key, "ES_SPX/classic/gex_one");
        assert_eq!(check_key(&key), Ok(()));
    }
}
