//! The pure, steppable core of the synthetic market.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use tickwire_model::{Instrument, Update};

use crate::config::SyntheticConfig;
use crate::walk::{InstrumentMarket, Names};
use tickwire_adapter::AdapterError;

/// What a scheduled event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Trade,
    Book,
    Signals,
}

/// One scheduled event; ordered by time, then by scheduling order, so the
/// sequence is total and reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    /// Nanoseconds after the start.
    at: u64,
    seq: u64,
    kind: Kind,
    index: usize,
}

/// A whole synthetic market as a pure state machine: no clock, no tasks, no I/O.
///
/// Every instrument of the universe has its own random walk, quote, session,
/// rolling 24 hours and indicators, as [`SyntheticMarket`](crate::SyntheticMarket) describes.
/// A binary heap orders the next event of every instrument: its next trade
/// (exponentially distributed gaps around its trade rate), its next book
/// snapshot (every `book_interval`) and its next signals (every
/// `signal_interval`, one [`Signal`](tickwire_model::Signal) per indicator).
/// Each [`step`](Self::step) takes the earliest event and returns its offset
/// from the start and its updates, timestamped `start_ms` plus the offset.
///
/// The same config, seed and start give the same sequence of updates, so
/// tests step it without waiting; the [`SyntheticMarket`](crate::SyntheticMarket)
/// adapter drives one on the wall clock.
///
/// ```
/// use tickwire_adapter_synthetic::{MarketSim, SyntheticConfig};
/// use tickwire_model::Update;
///
/// let config = SyntheticConfig::default();
/// let mut sim = MarketSim::new(&config, 42, 1_717_237_800_000).unwrap();
/// let mut ticks = 0;
/// while ticks < 100 {
///     let (offset, updates) = sim.step();
///     for update in updates {
///         if let Update::Tick(tick) = update {
///             assert!(tick.bid < tick.ask);
///             assert_eq!(tick.timestamp_ms, 1_717_237_800_000 + offset.as_millis() as i64);
///             ticks += 1;
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct MarketSim {
    start_ms: i64,
    book_interval: u64,
    signal_interval: u64,
    markets: Vec<InstrumentMarket>,
    instruments: Vec<Instrument>,
    heap: BinaryHeap<Reverse<Event>>,
    seq: u64,
    names: Names,
    signals: Vec<tickwire_model::Signal>,
}

/// Whole nanoseconds of `d`, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl MarketSim {
    /// The market of `config` seeded with `seed`, starting at `start_ms`
    /// (milliseconds since the UNIX epoch) with 24 hours of made-up history
    /// behind it. `config.seed` is not read: the caller chooses.
    ///
    /// Errors: [`AdapterError::InvalidConfig`] when the config does not
    /// [validate](SyntheticConfig::validate).
    pub fn new(config: &SyntheticConfig, seed: u64, start_ms: i64) -> Result<Self, AdapterError> {
        config.validate()?;
        let mut master = StdRng::seed_from_u64(seed);
        let markets: Vec<InstrumentMarket> = config
            .universe
            .iter()
            .map(|spec| {
                let rng = StdRng::seed_from_u64(master.random());
                let depth = spec.book_depth.unwrap_or(config.book_depth);
                InstrumentMarket::new(spec, rng, start_ms, depth, config.speed)
            })
            .collect();
        let mut sim = MarketSim {
            start_ms,
            book_interval: nanos(config.book_interval),
            signal_interval: nanos(config.signal_interval),
            instruments: markets.iter().map(|m| m.instrument.clone()).collect(),
            markets,
            heap: BinaryHeap::new(),
            seq: 0,
            names: Names::default(),
            signals: Vec::with_capacity(3),
        };
        // Books and signals of different instruments are spread over their
        // intervals rather than bunched together.
        for index in 0..sim.markets.len() {
            let gap = sim.markets[index].next_trade_gap();
            sim.schedule(secs_to_nanos(gap), Kind::Trade, index);
            let phase = master.random_range(0..sim.book_interval);
            sim.schedule(phase, Kind::Book, index);
            let phase = master.random_range(0..sim.signal_interval);
            sim.schedule(phase, Kind::Signals, index);
        }
        Ok(sim)
    }

    /// The instruments, in universe order: [`step_into`](Self::step_into)
    /// names an instrument by its position here.
    pub fn instruments(&self) -> &[Instrument] {
        &self.instruments
    }

    /// The start, milliseconds since the UNIX epoch.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// The offset from the start of the next event.
    pub fn next_offset(&self) -> Duration {
        self.heap
            .peek()
            .map_or(Duration::ZERO, |Reverse(e)| Duration::from_nanos(e.at))
    }

    /// Runs the next event: its offset from the start and its updates (one
    /// tick, one book, or one signal per indicator of one instrument).
    pub fn step(&mut self) -> (Duration, Vec<Update>) {
        let mut out = Vec::with_capacity(3);
        let (offset, _) = self.step_into(&mut out);
        (offset, out)
    }

    /// Runs the next event, appending its updates to `out`: its offset from
    /// the start and the position of its instrument in
    /// [`instruments`](Self::instruments).
    pub fn step_into(&mut self, out: &mut Vec<Update>) -> (Duration, usize) {
        let Some(Reverse(event)) = self.heap.pop() else {
            // Every instrument always has its next events scheduled, and a
            // config with no instrument does not validate.
            return (Duration::ZERO, 0);
        };
        let offset = Duration::from_nanos(event.at);
        let now_ms = self
            .start_ms
            .saturating_add(i64::try_from(offset.as_millis()).unwrap_or(i64::MAX));
        let market = &mut self.markets[event.index];
        let next = match event.kind {
            Kind::Trade => {
                let gap = market.next_trade_gap();
                out.push(Update::Tick(market.trade(now_ms, event.at, &self.names)));
                secs_to_nanos(gap)
            }
            Kind::Book => {
                out.push(Update::Book(market.book(now_ms, &self.names)));
                self.book_interval
            }
            Kind::Signals => {
                market.signals(now_ms, &self.names, &mut self.signals);
                out.extend(self.signals.drain(..).map(Update::Signal));
                self.signal_interval
            }
        };
        self.schedule(event.at.saturating_add(next), event.kind, event.index);
        (offset, event.index)
    }

    fn schedule(&mut self, at: u64, kind: Kind, index: usize) {
        self.seq += 1;
        self.heap.push(Reverse(Event {
            at,
            seq: self.seq,
            kind,
            index,
        }));
    }
}

/// Seconds as whole nanoseconds, at least one (saturating).
fn secs_to_nanos(secs: f64) -> u64 {
    ((secs * 1e9) as u64).max(1)
}
