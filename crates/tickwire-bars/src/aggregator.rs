//! Turning trades into OHLCV bars.

use std::collections::HashMap;

use tickwire_model::{Instrument, PriceTick};

use crate::Resolution;

/// One OHLCV bar: the trades of one instrument within one bucket of a [`Resolution`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// The bucket's start, milliseconds since the UNIX epoch (not the first trade's time).
    pub time: i64,
    /// The price of the bucket's earliest trade.
    pub open: f64,
    /// The highest traded price.
    pub high: f64,
    /// The lowest traded price.
    pub low: f64,
    /// The price of the bucket's latest trade.
    pub close: f64,
    /// The sum of the trades' quantities.
    pub volume: f64,
}

/// Counters of ticks the aggregator did not apply everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Ticks applied to at least one bar.
    pub applied: u64,
    /// (tick, resolution) pairs skipped because the tick belongs to a bucket that had
    /// already been closed by a later one (see [`BarAggregator`], "Late ticks").
    pub late: u64,
    /// Ticks ignored altogether: a price that is not finite, or a quantity that is
    /// negative or not finite.
    pub invalid: u64,
}

/// A bar with the exchange times of its earliest and latest trades, so that a late tick
/// within the bucket can still move the open or leave the close alone.
#[derive(Debug, Clone, Copy)]
struct Slot {
    bar: Bar,
    first_ts: i64,
    last_ts: i64,
}

impl Slot {
    fn new(time: i64, price: f64, qty: f64, ts: i64) -> Slot {
        Slot {
            bar: Bar {
                time,
                open: price,
                high: price,
                low: price,
                close: price,
                volume: qty,
            },
            first_ts: ts,
            last_ts: ts,
        }
    }

    fn apply(&mut self, price: f64, qty: f64, ts: i64) {
        let bar = &mut self.bar;
        bar.high = bar.high.max(price);
        bar.low = bar.low.min(price);
        bar.volume += qty;
        // Ties go to the tick that arrived last, as an exchange feed orders them.
        if ts >= self.last_ts {
            self.last_ts = ts;
            bar.close = price;
        }
        if ts < self.first_ts {
            self.first_ts = ts;
            bar.open = price;
        }
    }
}

/// The current bar of every resolution of one instrument.
#[derive(Debug)]
struct Series {
    slots: Vec<Option<Slot>>,
}

/// Aggregates an instrument's trades into the current OHLCV bar of every configured
/// [`Resolution`].
///
/// Each tick updates the current bar of each resolution and reports the bars it changed
/// ([`BarAggregator::on_tick`]), so that a publisher can encode each changed bar once and
/// send it to the subscribers of its topic. A bar's `time` is always its bucket's start
/// ([`Resolution::bucket_start`]), even when the bucket's first trade comes late in it: a
/// first trade at 10:07:42 opens the 5-minute bar of 10:05:00. Buckets with no trades
/// produce no bar.
///
/// # Late ticks
///
/// Ticks may arrive out of order. For each resolution, a tick is compared with the
/// current bar's bucket:
///
/// - a tick of the **current bucket** updates the bar, whenever it arrived: high, low and
///   volume always; the close only if no later trade of the bucket has been seen; the open
///   if it is earlier than every trade seen so far;
/// - a tick of a **later bucket** closes the current bar and opens a new one;
/// - a tick of an **earlier, already closed bucket** is dropped for that resolution and
///   counted in [`Stats::late`]: closed bars have been published and are never reopened.
///
/// So a tick 90 s late may be dropped by the 1-minute bars and still counted by the
/// 5-minute bar it belongs to.
///
/// # Bad input
///
/// A tick whose price is not finite, or whose quantity is negative or not finite, is
/// ignored and counted in [`Stats::invalid`]; it never poisons a bar with NaN.
///
/// ```
/// use tickwire_bars::{BarAggregator, Resolution};
/// use tickwire_model::Instrument;
///
/// let aapl = Instrument::new("AAPL", "NASDAQ");
/// let mut bars = BarAggregator::new(&[Resolution::Min1, Resolution::Min5]);
/// let t = 1_697_105_262_000; // 10:07:42 UTC
/// assert_eq!(bars.on_tick(&aapl, 150.0, 100.0, t).count(), 2);
/// let changed: Vec<_> = bars.on_tick(&aapl, 151.5, 50.0, t + 1_000).collect();
/// let (res, bar) = changed[1];
/// assert_eq!(res, Resolution::Min5);
/// assert_eq!(bar.time, 1_697_105_100_000); // 10:05:00
/// assert_eq!((bar.open, bar.high, bar.close, bar.volume), (150.0, 151.5, 151.5, 150.0));
/// ```
#[derive(Debug)]
pub struct BarAggregator {
    resolutions: Vec<Resolution>,
    series: HashMap<Instrument, Series>,
    stats: Stats,
}

impl BarAggregator {
    /// An aggregator keeping bars at `resolutions` (duplicates are ignored; the order is
    /// the order in which [`BarAggregator::on_tick`] reports changed bars).
    pub fn new(resolutions: &[Resolution]) -> BarAggregator {
        let mut unique = Vec::with_capacity(resolutions.len());
        for &r in resolutions {
            if !unique.contains(&r) {
                unique.push(r);
            }
        }
        BarAggregator {
            resolutions: unique,
            series: HashMap::new(),
            stats: Stats::default(),
        }
    }

    /// An aggregator keeping bars at every resolution ([`Resolution::ALL`]).
    pub fn all() -> BarAggregator {
        BarAggregator::new(&Resolution::ALL)
    }

    /// Drops the bars of `instrument` (an instrument nobody follows any
    /// more); its next tick starts new ones.
    pub fn forget(&mut self, instrument: &Instrument) {
        self.series.remove(instrument);
    }

    /// The resolutions kept, in reporting order.
    pub fn resolutions(&self) -> &[Resolution] {
        &self.resolutions
    }

    /// Applies one trade of `instrument` at `price` for `quantity`, at exchange time
    /// `ts_ms` (ms since the epoch), and returns the bars it changed, one per resolution
    /// at most, in the order of [`BarAggregator::resolutions`].
    ///
    /// The iterator is empty for an invalid tick, and skips the resolutions for which the
    /// tick is late (see "Late ticks" above).
    pub fn on_tick(
        &mut self,
        instrument: &Instrument,
        price: f64,
        quantity: f64,
        ts_ms: i64,
    ) -> Changed<'_> {
        if !price.is_finite() || !quantity.is_finite() || quantity < 0.0 {
            self.stats.invalid += 1;
            return Changed::empty(&self.resolutions);
        }
        let n = self.resolutions.len();
        if !self.series.contains_key(instrument) {
            // Cloned once per instrument, not per tick.
            self.series.insert(
                instrument.clone(),
                Series {
                    slots: vec![None; n],
                },
            );
        }
        let Some(series) = self.series.get_mut(instrument) else {
            return Changed::empty(&self.resolutions);
        };
        let mut mask = 0u16;
        for (i, (&res, slot)) in self.resolutions.iter().zip(&mut series.slots).enumerate() {
            let start = res.bucket_start(ts_ms);
            match slot {
                Some(current) if start == current.bar.time => {
                    current.apply(price, quantity, ts_ms);
                }
                Some(current) if start < current.bar.time => {
                    self.stats.late += 1;
                    continue;
                }
                _ => *slot = Some(Slot::new(start, price, quantity, ts_ms)),
            }
            mask |= 1 << i;
        }
        if mask != 0 {
            self.stats.applied += 1;
        }
        Changed {
            resolutions: &self.resolutions,
            slots: &series.slots,
            mask,
        }
    }

    /// Applies a [`PriceTick`]: its last price, last quantity and exchange timestamp.
    pub fn on_price_tick(&mut self, tick: &PriceTick) -> Changed<'_> {
        self.on_tick(
            &tick.instrument,
            tick.price,
            tick.last_quantity,
            tick.timestamp_ms,
        )
    }

    /// The current (latest) bar of `instrument` at `resolution`, if it has traded and the
    /// resolution is kept.
    pub fn current(&self, instrument: &Instrument, resolution: Resolution) -> Option<Bar> {
        let i = self.resolutions.iter().position(|&r| r == resolution)?;
        let slot = self.series.get(instrument)?.slots.get(i)?.as_ref()?;
        Some(slot.bar)
    }

    /// The current bar of `instrument` at every resolution kept that has
    /// one, with the exchange times of its earliest and latest trades: what
    /// another aggregator needs to go on from there ([`BarAggregator::seed`]).
    pub fn export(&self, instrument: &Instrument) -> Vec<(Resolution, Bar, i64, i64)> {
        let Some(series) = self.series.get(instrument) else {
            return Vec::new();
        };
        self.resolutions
            .iter()
            .zip(&series.slots)
            .filter_map(|(&r, slot)| slot.map(|s| (r, s.bar, s.first_ts, s.last_ts)))
            .collect()
    }

    /// Takes `bar` (whose trades' earliest and latest exchange times are
    /// `first_ts` and `last_ts`) as the current bar of `instrument` at
    /// `resolution`, in place of the one kept, unless the one kept is of a
    /// later bucket (then the seed is stale) or is that very bar already.
    /// Returns whether it was taken.
    /// A resolution not kept, or a bar whose figures are not finite, is not.
    pub fn seed(
        &mut self,
        instrument: &Instrument,
        resolution: Resolution,
        bar: Bar,
        first_ts: i64,
        last_ts: i64,
    ) -> bool {
        let Some(i) = self.resolutions.iter().position(|&r| r == resolution) else {
            return false;
        };
        let finite = [bar.open, bar.high, bar.low, bar.close, bar.volume]
            .iter()
            .all(|v| v.is_finite());
        if !finite || bar.time != resolution.bucket_start(bar.time) {
            return false;
        }
        let n = self.resolutions.len();
        let series = self
            .series
            .entry(instrument.clone())
            .or_insert_with(|| Series {
                slots: vec![None; n],
            });
        let slot = &mut series.slots[i];
        let seeded = Slot {
            bar,
            first_ts,
            last_ts,
        };
        // A later bucket's bar is newer; the same bar again (a seed asked
        // for twice) changes nothing.
        if slot.is_some_and(|s| {
            s.bar.time > bar.time
                || (s.bar == bar && s.first_ts == first_ts && s.last_ts == last_ts)
        }) {
            return false;
        }
        *slot = Some(seeded);
        true
    }

    /// The instruments that have traded.
    pub fn instruments(&self) -> impl Iterator<Item = &Instrument> {
        self.series.keys()
    }

    /// Counters of applied, late and invalid ticks.
    pub fn stats(&self) -> Stats {
        self.stats
    }
}

#[cfg(test)]
mod seed_tests {
    use super::*;

    #[test]
    fn a_seed_replaces_the_current_bar_and_aggregation_goes_on_from_it() {
        let aapl = Instrument::new("AAPL", "NASDAQ");
        let t = 1_697_105_262_000; // 10:07:42 UTC
        let mut full = BarAggregator::new(&[Resolution::Min1, Resolution::Min5]);
        for (n, price) in [150.0, 152.0, 149.0].into_iter().enumerate() {
            let _ = full.on_tick(&aapl, price, 10.0, t + n as i64 * 1000);
        }
        // A late follower saw only the last trade.
        let mut late = BarAggregator::new(&[Resolution::Min1, Resolution::Min5]);
        let _ = late.on_tick(&aapl, 149.0, 10.0, t + 2000);
        for (r, bar, first, last) in full.export(&aapl) {
            assert!(late.seed(&aapl, r, bar, first, last));
            assert!(
                !late.seed(&aapl, r, bar, first, last),
                "the same seed twice"
            );
        }
        let _ = full.on_tick(&aapl, 151.0, 5.0, t + 3000);
        let _ = late.on_tick(&aapl, 151.0, 5.0, t + 3000);
        for r in [Resolution::Min1, Resolution::Min5] {
            assert_eq!(late.current(&aapl, r), full.current(&aapl, r), "{r:?}");
        }
        let bar = late.current(&aapl, Resolution::Min5).unwrap();
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.volume),
            (150.0, 152.0, 149.0, 35.0)
        );
        // A seed of an earlier bucket than the one kept is stale.
        let old = Bar {
            time: Resolution::Min5.bucket_start(t - 600_000),
            ..bar
        };
        assert!(!late.seed(&aapl, Resolution::Min5, old, 0, 0));
        // Not a bucket start, or not finite: refused.
        assert!(!late.seed(&aapl, Resolution::Min5, Bar { time: t, ..bar }, 0, 0));
        assert!(!late.seed(
            &aapl,
            Resolution::Min5,
            Bar {
                volume: f64::NAN,
                ..bar
            },
            0,
            0
        ));
        assert_eq!(late.export(&Instrument::crypto("NONE/USD")), Vec::new());
    }
}

impl Default for BarAggregator {
    fn default() -> BarAggregator {
        BarAggregator::all()
    }
}

/// The bars one tick changed, as `(resolution, bar)` pairs; see [`BarAggregator::on_tick`].
#[derive(Debug, Clone)]
pub struct Changed<'a> {
    resolutions: &'a [Resolution],
    slots: &'a [Option<Slot>],
    /// Bit `i` set: the bar of `resolutions[i]` changed. Eight resolutions at most.
    mask: u16,
}

impl<'a> Changed<'a> {
    fn empty(resolutions: &'a [Resolution]) -> Changed<'a> {
        Changed {
            resolutions,
            slots: &[],
            mask: 0,
        }
    }
}

impl<'a> Iterator for Changed<'a> {
    type Item = (Resolution, &'a Bar);

    fn next(&mut self) -> Option<(Resolution, &'a Bar)> {
        while self.mask != 0 {
            let i = self.mask.trailing_zeros() as usize;
            self.mask &= self.mask - 1;
            if let (Some(&res), Some(Some(slot))) = (self.resolutions.get(i), self.slots.get(i)) {
                return Some((res, &slot.bar));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.mask.count_ones() as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Changed<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_ignored() {
        let agg = BarAggregator::new(&[Resolution::Day, Resolution::Min1, Resolution::Day]);
        assert_eq!(agg.resolutions(), &[Resolution::Day, Resolution::Min1]);
        assert_eq!(BarAggregator::default().resolutions(), &Resolution::ALL);
    }

    #[test]
    fn invalid_ticks_are_counted_not_applied() {
        let x = Instrument::new("X", "T");
        let mut agg = BarAggregator::all();
        assert_eq!(agg.on_tick(&x, f64::NAN, 1.0, 0).count(), 0);
        assert_eq!(agg.on_tick(&x, f64::INFINITY, 1.0, 0).count(), 0);
        assert_eq!(agg.on_tick(&x, 1.0, -1.0, 0).count(), 0);
        assert_eq!(agg.on_tick(&x, 1.0, f64::NAN, 0).count(), 0);
        assert_eq!(agg.current(&x, Resolution::Min1), None);
        assert_eq!(
            agg.stats(),
            Stats {
                applied: 0,
                late: 0,
                invalid: 4
            }
        );
        assert_eq!(agg.instruments().count(), 0);
    }

    #[test]
    fn size_hint_is_exact() {
        let x = Instrument::new("X", "T");
        let mut agg = BarAggregator::all();
        let changed = agg.on_tick(&x, 1.0, 1.0, 0);
        assert_eq!(changed.len(), 8);
        assert_eq!(changed.count(), 8);
    }
}
