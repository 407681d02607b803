//! The synthetic market as a broker adapter, driven on the wall clock.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use tickwire_model::{Instrument, Update};

use crate::config::SyntheticConfig;
use crate::sim::MarketSim;
use tickwire_adapter::{AdapterError, BoxFuture, BrokerAdapter, UpdateStream};

/// The name [`SyntheticMarket`] reports.
const NAME: &str = "synthetic";

/// Events due longer ago than this (the process stalled) move the market but
/// are not emitted: a live feed skips what it missed rather than replaying
/// stale prices.
const MAX_LAG: Duration = Duration::from_secs(5);

/// The most events run between two looks at the stop signal and the clock.
const BATCH: usize = 256;

/// The subscribed keys, shared with the market task. Never locked across an `.await`.
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
    /// Handed to the market task on connect.
    tx: Option<mpsc::Sender<Update>>,
    /// Handed out by `updates`.
    rx: Option<mpsc::Receiver<Update>>,
}

/// A live synthetic market: prices, quotes, order books and signals of a
/// configurable universe, moving like a market: the price feeds of seeds
/// 001 and 002, the exchange instruments of seed 003, the equities seed
/// 004's bars are made from.
///
/// **Prices.** Each instrument's fair price follows a geometric random walk:
/// at each trade the log price takes a normal step with deviation
/// σ·√Δt, σ being the annualised volatility over 365.25 days of
/// round-the-clock trading and Δt the time since the previous trade, with a
/// pull back towards the reference price of half-life seven days. Trades
/// come at exponentially distributed intervals around the instrument's
/// rate. The quote is drawn around the fair price with a spread of about
/// the configured basis points (at least one tick, so bid < ask); a trade of
/// a pair or stock hits the bid or lifts the offer, so its price lies within
/// the quote, and has a log-normal quantity whose mean makes the configured
/// 24-hour volume; an index (`volume_24h` 0) prints its fair value and no
/// volume. Every price is a whole multiple of the tick size and every
/// quantity of the lot size.
///
/// **Session and 24 hours.** The session is the UTC day: open, high, low,
/// previous close and session volume reset at midnight UTC (the market
/// trades round the clock, stocks included). The 24-hour change and volume
/// come from a window of one-minute buckets. At start each instrument gets
/// 24 hours of made-up one-minute history ending at its reference price,
/// so the 24-hour figures, the session and the indicators are realistic
/// from the first tick.
///
/// **Books.** Every `book_interval` each instrument emits an
/// [`Update::Book`] of `book_depth` levels a side (the instrument's own
/// `book_depth` if its spec has one; 30 for the default universe's
/// exchange-listed instruments): the best levels are the
/// current quote, deeper bids strictly lower and asks strictly higher,
/// quantities growing with the distance and changing smoothly, with order
/// counts.
///
/// **Signals.** Every `signal_interval` (10 s by default) each instrument
/// emits three [`Update::Signal`]s computed from its own one-minute closes
/// (the current minute closing at the last price), see
/// [`indicators`](crate::indicators): `rsi` (RSI(14): buy below 30, sell
/// above 70, value the RSI), `ema_cross` (EMA 9 against EMA 21: buy while
/// the fast one is above, value their spread in percent of the slow one),
/// and `macd` (MACD(12, 26, 9): buy while the histogram is positive, value
/// the histogram).
///
/// **Emission.** [`connect`](BrokerAdapter::connect) starts one task that
/// runs a [`MarketSim`] on the wall clock. Subscription keys are `*` (every
/// instrument) or `EXCHANGE:SYMBOL` as [`Instrument`] displays it
/// (`CRYPTO:BTC/USD`, `NSE:RELIANCE`, `NSE_INDEX:NIFTY`); a well-formed key
/// that names no instrument of the universe is accepted and emits nothing.
/// Instruments nobody subscribed keep moving, so their prices stay
/// continuous, but emit nothing. The stream is bounded
/// ([`SyntheticConfig::buffer`]) and the market never waits for its
/// reader: when the stream is full, new updates are dropped and counted
/// ([`dropped`](Self::dropped)), as a live feed conflates.
///
/// Under a fixed [`seed`](SyntheticConfig::seed) the market moves the same
/// way on every run; only the timestamps follow the start time.
///
/// ```
/// use std::sync::Arc;
///
/// use futures_util::StreamExt;
/// use tickwire_adapter::BrokerAdapter;
/// use tickwire_adapter_synthetic::{SyntheticConfig, SyntheticMarket};
/// use tickwire_model::Update;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let config = SyntheticConfig { seed: Some(1), speed: 20.0, ..SyntheticConfig::default() };
/// let adapter: Arc<dyn BrokerAdapter> = Arc::new(SyntheticMarket::new(config)?);
/// assert!(adapter.instruments().iter().any(|i| i.to_string() == "CRYPTO:BTC/USD"));
///
/// let mut updates = adapter.updates()?;
/// adapter.subscribe(&["CRYPTO:BTC/USD".to_owned()]).await?;
/// adapter.connect().await?;
/// while let Some(update) = updates.next().await {
///     if let Update::Tick(tick) = update {
///         assert_eq!(&*tick.instrument.symbol, "BTC/USD");
///         assert!(tick.bid < tick.ask);
///         break;
///     }
/// }
/// adapter.disconnect().await?;
/// # Ok::<(), tickwire_adapter::AdapterError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct SyntheticMarket {
    config: SyntheticConfig,
    seed: u64,
    instruments: Vec<Instrument>,
    subscriptions: Arc<Mutex<Subscriptions>>,
    dropped: Arc<AtomicU64>,
    state: Mutex<State>,
}

impl SyntheticMarket {
    /// A market of `config`; nothing runs before [`connect`](BrokerAdapter::connect).
    ///
    /// Errors: [`AdapterError::InvalidConfig`] when the config does not
    /// [validate](SyntheticConfig::validate).
    pub fn new(config: SyntheticConfig) -> Result<Self, AdapterError> {
        config.validate()?;
        let seed = config.seed.unwrap_or_else(rand::random);
        let instruments = config
            .universe
            .iter()
            .map(|spec| spec.instrument())
            .collect();
        let (tx, rx) = mpsc::channel(config.buffer);
        Ok(SyntheticMarket {
            config,
            seed,
            instruments,
            subscriptions: Arc::default(),
            dropped: Arc::default(),
            state: Mutex::new(State {
                phase: Phase::Idle,
                tx: Some(tx),
                rx: Some(rx),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }

    /// The seed in use: the configured one, or the one drawn at construction.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many updates were dropped because the stream was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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

    fn connect_now(&self) -> Result<(), AdapterError> {
        let mut state = self.state.lock();
        match state.phase {
            Phase::Idle => {}
            Phase::Running { .. } => return Ok(()),
            Phase::Stopped => return Err(Self::disconnected()),
        }
        let Some(tx) = state.tx.take() else {
            return Err(Self::disconnected());
        };
        let start_ms = tickwire_model::now_millis();
        let sim = MarketSim::new(&self.config, self.seed, start_ms)?;
        tracing::info!(
            instruments = self.instruments.len(),
            seed = self.seed,
            "synthetic market started"
        );
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(
            sim,
            Instant::now(),
            Arc::clone(&self.subscriptions),
            tx,
            stopped,
            Arc::clone(&self.dropped),
        ));
        state.phase = Phase::Running { stop, task };
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
            for key in keys.iter().filter(|k| *k != "*") {
                if !self.instruments.iter().any(|i| i.to_string() == *key) {
                    tracing::debug!(%key, "subscribed key names no synthetic instrument");
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

/// Checks a subscription key: `*` or `EXCHANGE:SYMBOL`.
fn check_key(key: &str) -> Result<(), &'static str> {
    if key == "*" {
        return Ok(());
    }
    match key.split_once(':') {
        Some((exchange, symbol))
            if !exchange.is_empty() && !symbol.is_empty() && !key.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err("expected `*` or EXCHANGE:SYMBOL, such as CRYPTO:BTC/USD"),
    }
}

impl BrokerAdapter for SyntheticMarket {
    /// `synthetic`.
    fn name(&self) -> &str {
        NAME
    }

    /// Builds the market (24 hours of history per instrument) and starts its
    /// task. Errors: [`AdapterError::Disconnected`].
    fn connect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        Box::pin(async move { self.connect_now() })
    }

    /// Validates every key first; a malformed one fails the call and nothing
    /// is subscribed. Takes effect at the next event.
    fn subscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(std::future::ready(self.change(keys, true)))
    }

    /// Unsubscribing `*` leaves keys subscribed by name in place. Takes
    /// effect at the next event.
    fn unsubscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(std::future::ready(self.change(keys, false)))
    }

    /// Stops the market task at once (also when the future is never
    /// polled); awaiting the future waits for the task to finish.
    fn disconnect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        let phase = {
            let mut state = self.state.lock();
            state.tx = None;
            std::mem::replace(&mut state.phase, Phase::Stopped)
        };
        let task = match phase {
            Phase::Running { stop, task } => {
                // The task may already have ended (its stream dropped).
                let _ = stop.send(());
                Some(task)
            }
            Phase::Idle | Phase::Stopped => None,
        };
        Box::pin(async move {
            if let Some(task) = task {
                if let Err(e) = task.await {
                    if e.is_panic() {
                        tracing::error!("the synthetic market task panicked");
                    }
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

    /// The universe, in configuration order.
    fn instruments(&self) -> Vec<Instrument> {
        self.instruments.clone()
    }
}

/// The market task: steps `sim` on the wall clock (its start is `anchor`)
/// and sends the updates of subscribed instruments, until stopped or the
/// stream is dropped.
async fn run(
    mut sim: MarketSim,
    anchor: Instant,
    subscriptions: Arc<Mutex<Subscriptions>>,
    tx: mpsc::Sender<Update>,
    mut stop: oneshot::Receiver<()>,
    dropped: Arc<AtomicU64>,
) {
    let keys: Vec<String> = sim.instruments().iter().map(ToString::to_string).collect();
    let mut active = vec![false; keys.len()];
    let mut seen = None;
    let mut full = false;
    let mut stale = false;
    let mut out = Vec::with_capacity(3);
    loop {
        if tx.is_closed() {
            tracing::debug!("synthetic stream dropped; stopping");
            return;
        }
        tokio::select! {
            biased;
            _ = &mut stop => return,
            () = tokio::time::sleep_until(anchor + sim.next_offset()) => {}
        }
        let now = Instant::now();
        for _ in 0..BATCH {
            let due = anchor + sim.next_offset();
            if due > now {
                break;
            }
            out.clear();
            let (_, index) = sim.step_into(&mut out);
            {
                let subscriptions = subscriptions.lock();
                if seen != Some(subscriptions.version) {
                    seen = Some(subscriptions.version);
                    for (on, key) in active.iter_mut().zip(&keys) {
                        *on = subscriptions.all || subscriptions.keys.contains(key);
                    }
                }
            }
            if !active.get(index).copied().unwrap_or(false) {
                continue;
            }
            if now.saturating_duration_since(due) > MAX_LAG {
                if !stale {
                    stale = true;
                    tracing::debug!("synthetic market behind the clock; skipping stale updates");
                }
                continue;
            }
            stale = false;
            for update in out.drain(..) {
                match tx.try_send(update) {
                    Ok(()) => full = false,
                    Err(TrySendError::Full(_)) => {
                        let total = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        if !full {
                            full = true;
                            tracing::debug!(
                                dropped = total,
                                "synthetic stream full; dropping updates"
                            );
                        }
                    }
                    Err(TrySendError::Closed(_)) => {
                        tracing::debug!("synthetic stream dropped; stopping");
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for ok in [
            "*",
            "CRYPTO:BTC/USD",
            "NSE:RELIANCE",
            "NSE_INDEX:NIFTY",
            "X:Y",
        ] {
            assert_eq!(check_key(ok), Ok(()), "{ok}");
        }
        for bad in ["", "BTC/USD", ":BTC", "CRYPTO:", "CRYPTO: BTC", "**"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
