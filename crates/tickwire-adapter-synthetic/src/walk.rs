//! One instrument's market: the price walk, the quote, trades, the session,
//! the rolling 24 hours, one-minute bars and the indicators over them.

use std::collections::VecDeque;
use std::sync::Arc;

use rand::Rng;
use rand::rngs::StdRng;

use tickwire_model::{Instrument, OrderBook, PriceTick, Signal};

use crate::book::{BookScale, BookShape, Quote};
use crate::indicators::{self, Ema, Macd, Rsi};
use crate::universe::{InstrumentSpec, decimals};

/// Seconds in a year of round-the-clock trading (365.25 days), the unit of
/// the annualised volatilities.
const SECONDS_PER_YEAR: f64 = 365.25 * 86_400.0;

/// The half-life of the pull back to the reference price: weak enough to be
/// invisible within a day, strong enough that a market left running for
/// weeks stays near its reference (log price is an Ornstein–Uhlenbeck process).
const REVERSION_HALF_LIFE_SECS: f64 = 7.0 * 86_400.0;

/// Minutes in the rolling window (24 hours).
const WINDOW_MINUTES: i64 = 1_440;

const MS_PER_MINUTE: i64 = 60_000;
const MS_PER_DAY: i64 = 86_400_000;

/// Periods of the indicators the signals read (on one-minute bars).
const RSI_PERIOD: u32 = 14;
const EMA_FAST: u32 = 9;
const EMA_SLOW: u32 = 21;

/// A standard normal variate (Box–Muller).
pub(crate) fn normal(rng: &mut StdRng) -> f64 {
    // 1 − U lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A log-normal variate of mean 1 whose logarithm has deviation `sigma`.
pub(crate) fn lognormal(rng: &mut StdRng, sigma: f64) -> f64 {
    (sigma * normal(rng) - sigma * sigma / 2.0).exp()
}

/// An exponential variate of mean 1.
pub(crate) fn exponential(rng: &mut StdRng) -> f64 {
    -(1.0 - rng.random::<f64>()).ln()
}

/// A grid of whole multiples of a decimal step (a tick or a lot), whose
/// values print as the short decimals they are (`2900.05`, not
/// `2900.0500000000002`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Grid {
    step: f64,
    /// The step in units of `1 / scale`: a whole number.
    step_scaled: f64,
    /// 10^decimals of the step.
    scale: f64,
}

impl Grid {
    /// The grid of `step`, a positive decimal of at most 10 decimals (checked
    /// by the config; more decimals are cut to 10).
    pub(crate) fn new(step: f64) -> Self {
        let scale = 10f64.powi(decimals(step).unwrap_or(10) as i32);
        Grid {
            step,
            step_scaled: (step * scale).round().max(1.0),
            scale,
        }
    }

    /// The `n`th multiple of the step.
    pub(crate) fn value(&self, n: i64) -> f64 {
        n as f64 * self.step_scaled / self.scale
    }

    /// How many steps `x` is, rounded down (saturating).
    fn floor(&self, x: f64) -> i64 {
        (x / self.step + 1e-9).floor() as i64
    }

    /// How many steps `x` is, rounded up (saturating).
    fn ceil(&self, x: f64) -> i64 {
        (x / self.step - 1e-9).ceil() as i64
    }

    /// How many steps `x` is, rounded to the nearest (saturating).
    fn nearest(&self, x: f64) -> i64 {
        (x / self.step).round() as i64
    }

    /// A quantity of about `x` on the grid: at least one step.
    pub(crate) fn quantity(&self, x: f64) -> f64 {
        self.value(self.nearest(x).max(1))
    }
}

/// `x` rounded to `decimals` decimals.
fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// One minute of the rolling window.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Minutes since the UNIX epoch.
    minute: i64,
    /// The price when the minute began.
    open: f64,
    /// Volume traded in it (quote currency or units, as the instrument reports).
    volume: f64,
}

/// The shared strings the updates carry.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) source: Arc<str>,
    pub(crate) rsi: Arc<str>,
    pub(crate) ema_cross: Arc<str>,
    pub(crate) macd: Arc<str>,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            source: Arc::from("synthetic"),
            rsi: Arc::from("rsi"),
            ema_cross: Arc::from("ema_cross"),
            macd: Arc::from("macd"),
        }
    }
}

/// The state of one simulated instrument. Its randomness comes from its own
/// generator, so adding an instrument to a universe leaves the others' paths
/// as they were.
#[derive(Debug)]
pub(crate) struct InstrumentMarket {
    pub(crate) instrument: Instrument,
    rng: StdRng,

    // Figures from the spec.
    ticks: Grid,
    lots: Grid,
    /// Volatility of the log price per √second.
    sigma_per_sec: f64,
    /// Log of the reference price.
    anchor: f64,
    /// Mean trades a second (the spec's rate times the speed).
    trade_rate: f64,
    /// Mean trade quantity; 0 for an index.
    trade_quantity: f64,
    /// Typical half spread as a fraction of the price.
    half_spread: f64,
    volume_in_quote: bool,
    trades_volume: bool,
    book: BookScale,
    shape: BookShape,

    // The walk and the quote.
    log_fair: f64,
    /// When the walk last stepped, nanoseconds after the start.
    walked_at: u64,
    quote: Quote,
    last: i64,

    // The session (a UTC day).
    session_day: i64,
    session_fresh: bool,
    open: i64,
    high: i64,
    low: i64,
    prev_close: i64,
    session_volume: f64,

    // The rolling 24 hours and the bars.
    window: VecDeque<Bucket>,
    window_volume: f64,
    rsi: Rsi,
    ema_fast: Ema,
    ema_slow: Ema,
    macd: Macd,
}

impl InstrumentMarket {
    /// The market of `spec` (already checked) at `start_ms`, with 24 hours of
    /// made-up history: one-minute closes walking back from the reference
    /// price, volumes adding up to about the spec's 24-hour volume, and the
    /// session and indicators computed from them.
    pub(crate) fn new(
        spec: &InstrumentSpec,
        mut rng: StdRng,
        start_ms: i64,
        depth: usize,
        speed: f64,
    ) -> Self {
        let ticks = Grid::new(spec.tick_size);
        let lots = Grid::new(spec.lot_size);
        let sigma_per_sec = spec.volatility / SECONDS_PER_YEAR.sqrt();
        let sigma_minute = sigma_per_sec * 60f64.sqrt();
        let trade_rate = spec.ticks_per_sec * speed;
        let volume_in_quote = spec.volume_in_quote();
        let trades_volume = spec.volume_24h > 0.0;
        let trade_quantity = if trades_volume {
            let per_trade = spec.volume_24h / (86_400.0 * trade_rate);
            let units = if volume_in_quote {
                per_trade / spec.price
            } else {
                per_trade
            };
            units.max(spec.lot_size)
        } else {
            0.0
        };
        let half_spread = spec.spread_bps / 2.0 / 10_000.0;
        let level_gap = ((spec.price * half_spread / spec.tick_size).round() as i64).max(1);
        let order_quantity = if trades_volume {
            trade_quantity
        } else {
            2.0 * spec.lot_size
        };
        let book = BookScale {
            ticks,
            lots,
            level_gap,
            level_quantity: 4.0 * order_quantity,
            order_quantity,
        };
        let shape = BookShape::new(depth, &mut rng);

        // History: 1440 closed minutes before the current one, the last
        // closing at the reference price.
        let start_minute = start_ms.div_euclid(MS_PER_MINUTE);
        let n = WINDOW_MINUTES as usize;
        let mut log_closes = vec![spec.price.ln(); n];
        for k in (0..n - 1).rev() {
            log_closes[k] = log_closes[k + 1] - sigma_minute * normal(&mut rng);
        }
        let first_open = log_closes[0] - sigma_minute * normal(&mut rng);
        let on_grid = |log: f64| ticks.nearest(log.exp()).max(1);
        let closes: Vec<i64> = log_closes.iter().map(|&l| on_grid(l)).collect();
        let weights: Vec<f64> = (0..n).map(|_| lognormal(&mut rng, 0.6)).collect();
        let total = spec.volume_24h * rng.random_range(0.85..1.15);
        let weight_sum: f64 = weights.iter().sum();

        let day_start_minute = start_ms.div_euclid(MS_PER_DAY) * (MS_PER_DAY / MS_PER_MINUTE);
        let last = closes[n - 1];
        let mut market = InstrumentMarket {
            instrument: spec.instrument(),
            ticks,
            lots,
            sigma_per_sec,
            anchor: spec.price.ln(),
            trade_rate,
            trade_quantity,
            half_spread,
            volume_in_quote,
            trades_volume,
            book,
            shape,
            log_fair: spec.price.ln(),
            walked_at: 0,
            quote: Quote {
                bid: last - level_gap,
                ask: last + level_gap,
                bid_quantity: 0.0,
                ask_quantity: 0.0,
            },
            last,
            session_day: start_ms.div_euclid(MS_PER_DAY),
            session_fresh: true,
            open: last,
            high: last,
            low: last,
            prev_close: last,
            session_volume: 0.0,
            window: VecDeque::with_capacity(n + 1),
            window_volume: 0.0,
            rsi: Rsi::new(RSI_PERIOD),
            ema_fast: Ema::new(EMA_FAST),
            ema_slow: Ema::new(EMA_SLOW),
            macd: Macd::standard(),
            rng,
        };
        for k in 0..n {
            let minute = start_minute - WINDOW_MINUTES + k as i64;
            let open = if k == 0 {
                on_grid(first_open)
            } else {
                closes[k - 1]
            };
            let close = closes[k];
            let volume = if weight_sum > 0.0 {
                total * weights[k] / weight_sum
            } else {
                0.0
            };
            if minute == day_start_minute - 1 {
                market.prev_close = close;
            }
            if minute >= day_start_minute {
                let wick = |rng: &mut StdRng| (sigma_minute * normal(rng).abs() / 2.0).exp();
                let high = ticks.nearest(ticks.value(open.max(close)) * wick(&mut market.rng));
                let low = ticks.nearest(ticks.value(open.min(close)) / wick(&mut market.rng));
                if market.session_fresh {
                    market.session_fresh = false;
                    (market.open, market.high, market.low) = (open, high, low.max(1));
                }
                market.high = market.high.max(high);
                market.low = market.low.min(low.max(1));
                market.session_volume += volume;
            }
            // The window holds the current minute and the 1439 before it.
            if k > 0 {
                market.window.push_back(Bucket {
                    minute,
                    open: ticks.value(open),
                    volume,
                });
            }
            market.close_bar(ticks.value(close));
        }
        market.window.push_back(Bucket {
            minute: start_minute,
            open: ticks.value(last),
            volume: 0.0,
        });
        market.window_volume = market.window.iter().map(|b| b.volume).sum();
        market.quote = market.draw_quote();
        market
    }

    /// The time to this instrument's next trade, in seconds.
    pub(crate) fn next_trade_gap(&mut self) -> f64 {
        exponential(&mut self.rng) / self.trade_rate
    }

    /// Feeds one closed one-minute bar to the indicators.
    fn close_bar(&mut self, close: f64) {
        self.rsi.update(close);
        self.ema_fast.update(close);
        self.ema_slow.update(close);
        self.macd.update(close);
    }

    /// Brings the session, the bars and the window up to `now_ms`.
    fn roll(&mut self, now_ms: i64) {
        let day = now_ms.div_euclid(MS_PER_DAY);
        if day > self.session_day {
            self.session_day = day;
            self.session_fresh = true;
            self.prev_close = self.last;
            (self.open, self.high, self.low) = (self.last, self.last, self.last);
            self.session_volume = 0.0;
        }
        let minute = now_ms.div_euclid(MS_PER_MINUTE);
        let Some(current) = self.window.back().map(|b| b.minute) else {
            return;
        };
        if minute <= current {
            return;
        }
        let last = self.ticks.value(self.last);
        // Minutes without trades close at the last price; after a gap longer
        // than the window, only the window's worth is replayed.
        let first = (current + 1).max(minute - WINDOW_MINUTES);
        self.close_bar(last);
        for m in first..=minute {
            if m < minute {
                self.close_bar(last);
            }
            self.window.push_back(Bucket {
                minute: m,
                open: last,
                volume: 0.0,
            });
        }
        while self
            .window
            .front()
            .is_some_and(|b| b.minute <= minute - WINDOW_MINUTES)
        {
            self.window.pop_front();
        }
        // Summed afresh once a minute, so rounding errors cannot pile up.
        self.window_volume = self.window.iter().map(|b| b.volume).sum();
    }

    /// A fresh quote around the fair price: a spread of about the spec's,
    /// at least one tick, and quantities of a few trades.
    fn draw_quote(&mut self) -> Quote {
        let fair = self.log_fair.exp();
        let half =
            (fair * self.half_spread * self.rng.random_range(0.6..1.4)).max(self.ticks.step / 2.0);
        let bid = self.ticks.floor(fair - half).max(1);
        let ask = self.ticks.ceil(fair + half).max(bid + 1);
        let size = self.book.level_quantity;
        Quote {
            bid,
            ask,
            bid_quantity: self.lots.quantity(size * lognormal(&mut self.rng, 0.5)),
            ask_quantity: self.lots.quantity(size * lognormal(&mut self.rng, 0.5)),
        }
    }

    /// One trade at `now_ms`, `at_ns` nanoseconds after the start.
    ///
    /// The fair price takes a step of the walk over the time since the
    /// previous trade (σ scaled to it); the quote is drawn around it;
    /// a trade of a pair or stock hits the bid or lifts the offer (buyers
    /// more likely after a rise), so its price always lies within the quote;
    /// an index just prints its fair value on the grid.
    pub(crate) fn trade(&mut self, now_ms: i64, at_ns: u64, names: &Names) -> PriceTick {
        self.roll(now_ms);
        let dt = at_ns.saturating_sub(self.walked_at) as f64 / 1e9;
        self.walked_at = self.walked_at.max(at_ns);
        let kappa = std::f64::consts::LN_2 / REVERSION_HALF_LIFE_SECS;
        let step = -kappa * (self.log_fair - self.anchor) * dt
            + self.sigma_per_sec * dt.sqrt() * normal(&mut self.rng);
        self.log_fair += step;
        self.quote = self.draw_quote();

        let (price, quantity) = if self.trades_volume {
            let buy_odds = if step > 0.0 { 0.65 } else { 0.35 };
            let price = if self.rng.random_bool(buy_odds) {
                self.quote.ask
            } else {
                self.quote.bid
            };
            let quantity = self
                .lots
                .quantity(self.trade_quantity * lognormal(&mut self.rng, 0.9));
            (price, quantity)
        } else {
            let fair = self.ticks.nearest(self.log_fair.exp());
            (fair.clamp(self.quote.bid, self.quote.ask), 0.0)
        };
        self.last = price;
        if self.session_fresh {
            self.session_fresh = false;
            (self.open, self.high, self.low) = (price, price, price);
        }
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        let price_value = self.ticks.value(price);
        let volume = if self.volume_in_quote {
            quantity * price_value
        } else {
            quantity
        };
        self.session_volume += volume;
        self.window_volume += volume;
        if let Some(bucket) = self.window.back_mut() {
            bucket.volume += volume;
        }
        let reference = self.window.front().map_or(price_value, |b| b.open);

        PriceTick {
            instrument: self.instrument.clone(),
            price: price_value,
            last_quantity: quantity,
            bid: self.ticks.value(self.quote.bid),
            bid_quantity: self.quote.bid_quantity,
            ask: self.ticks.value(self.quote.ask),
            ask_quantity: self.quote.ask_quantity,
            open: self.ticks.value(self.open),
            high: self.ticks.value(self.high),
            low: self.ticks.value(self.low),
            prev_close: self.ticks.value(self.prev_close),
            change_24h_pct: round_to((price_value / reference - 1.0) * 100.0, 4),
            volume_24h: self
                .trades_volume
                .then(|| round_to(self.window_volume.max(0.0), 2)),
            session_volume: round_to(self.session_volume, 2),
            source: Arc::clone(&names.source),
            timestamp_ms: now_ms,
        }
    }

    /// A snapshot of the book around the current quote.
    pub(crate) fn book(&mut self, now_ms: i64, names: &Names) -> OrderBook {
        let (bids, asks) = self.shape.build(&self.quote, &self.book, &mut self.rng);
        OrderBook {
            instrument: self.instrument.clone(),
            bids,
            asks,
            source: Arc::clone(&names.source),
            timestamp_ms: now_ms,
        }
    }

    /// The RSI(14), EMA(9/21) crossover and MACD(12, 26, 9) signals on
    /// one-minute bars, the current minute's bar closing at the last price.
    pub(crate) fn signals(&mut self, now_ms: i64, names: &Names, out: &mut Vec<Signal>) {
        self.roll(now_ms);
        let last = self.ticks.value(self.last);
        // The typical move of the price over one bar.
        let scale = last * self.sigma_per_sec * 60f64.sqrt();
        let signal = |indicator: &Arc<str>, (direction, confidence): (_, f64), value| Signal {
            instrument: self.instrument.clone(),
            indicator: Arc::clone(indicator),
            direction,
            value,
            confidence: round_to(confidence.clamp(0.0, 1.0), 2),
            timestamp_ms: now_ms,
        };
        if let Some(rsi) = self.rsi.peek(last) {
            // Advice from the value as reported, so the two always agree.
            let rsi = round_to(rsi, 2);
            out.push(signal(&names.rsi, indicators::rsi_signal(rsi), rsi));
        }
        if let (Some(fast), Some(slow)) = (self.ema_fast.peek(last), self.ema_slow.peek(last)) {
            let spread_pct = (fast / slow - 1.0) * 100.0;
            out.push(signal(
                &names.ema_cross,
                indicators::ema_cross_signal(fast, slow, scale),
                round_to(spread_pct, 4),
            ));
        }
        if let Some(macd) = self.macd.peek(last) {
            let decimals = decimals(self.ticks.step).unwrap_or(10) as i32 + 3;
            out.push(signal(
                &names.macd,
                indicators::macd_signal(macd, scale),
                round_to(macd.histogram, decimals),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::universe::default_universe;

    #[test]
    fn grids_print_short_decimals() {
        let g = Grid::new(0.05);
        assert_eq!(g.value(58_001), 2900.05);
        assert_eq!(g.nearest(2900.049), 58_001);
        assert_eq!(g.floor(2900.05), 58_001);
        assert_eq!(g.ceil(2900.05), 58_001);
        assert_eq!(g.ceil(2900.051), 58_002);
        let g = Grid::new(0.0001);
        assert_eq!(g.value(5_201), 0.5201);
        assert_eq!(g.quantity(0.00001), 0.0001);
        assert_eq!(Grid::new(25.0).quantity(60.0), 50.0);
    }

    #[test]
    fn variates_have_their_means() {
        let mut rng = StdRng::seed_from_u64(3);
        let n = 200_000;
        let mean = |f: &mut dyn FnMut() -> f64| (0..n).map(|_| f()).sum::<f64>() / n as f64;
        assert!(mean(&mut || normal(&mut rng)).abs() < 0.01);
        assert!((mean(&mut || normal(&mut rng).powi(2)) - 1.0).abs() < 0.02);
        assert!((mean(&mut || lognormal(&mut rng, 0.5)) - 1.0).abs() < 0.01);
        assert!((mean(&mut || exponential(&mut rng)) - 1.0).abs() < 0.01);
    }

    #[test]
    fn history_makes_a_plausible_start() {
        let spec = &default_universe()[0];
        // 2024-06-01T10:30:00Z: ten and a half hours into the UTC day.
        let start = 1_717_237_800_000;
        let mut market = InstrumentMarket::new(spec, StdRng::seed_from_u64(9), start, 10, 1.0);
        let names = Names::default();
        let tick = market.trade(start + 100, 100_000_000, &names);
        assert_eq!(tick.instrument.to_string(), "CRYPTO:BTC/USD");
        let volume = tick.volume_24h.unwrap();
        assert!(volume > 0.8 * spec.volume_24h && volume < 1.2 * spec.volume_24h);
        assert!(tick.change_24h_pct.abs() < 30.0);
        assert!(tick.low <= tick.price && tick.price <= tick.high);
        assert!(tick.session_volume > 0.0 && tick.session_volume < volume);
        assert!((tick.price / spec.price - 1.0).abs() < 0.01);
        let mut signals = Vec::new();
        market.signals(start + 200, &names, &mut signals);
        let names: Vec<_> = signals.iter().map(|s| &*s.indicator).collect();
        assert_eq!(names, ["rsi", "ema_cross", "macd"]);
    }

    #[test]
    fn a_new_day_starts_a_new_session() {
        let spec = &default_universe()[0];
        let start = 1_717_286_340_000; // 23:59:00Z
        let mut market = InstrumentMarket::new(spec, StdRng::seed_from_u64(2), start, 10, 1.0);
        let names = Names::default();
        let before = market.trade(start + 59_000, 59_000_000_000, &names);
        let after = market.trade(start + 61_000, 61_000_000_000, &names);
        assert_eq!(after.prev_close, before.price);
        assert_eq!(after.open, after.price);
        assert_eq!(after.high, after.price);
        assert_eq!(
            after.session_volume,
            round_to(after.last_quantity * after.price, 2)
        );
        // The window still spans 24 hours.
        assert!(after.volume_24h.unwrap() > 0.5 * spec.volume_24h);
    }

    #[test]
    fn an_index_reports_no_volume() {
        let spec = default_universe()
            .into_iter()
            .find(|s| s.symbol == "NIFTY")
            .unwrap();
        let mut market =
            InstrumentMarket::new(&spec, StdRng::seed_from_u64(4), 1_717_237_800_000, 5, 1.0);
        let tick = market.trade(1_717_237_800_500, 500_000_000, &Names::default());
        assert_eq!(tick.volume_24h, None);
        assert_eq!(tick.last_quantity, 0.0);
        assert!(tick.bid <= tick.price && tick.price <= tick.ask);
    }
}
