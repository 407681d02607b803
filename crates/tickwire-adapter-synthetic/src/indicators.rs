//! Technical indicators over a series of closes, and the signals read from them.
//!
//! Pure arithmetic, no clock and no I/O: each indicator is a small `Copy`
//! state fed one close at a time with `update`, which returns the value once
//! the indicator has seen enough closes. `peek` gives the value the next
//! close would produce without committing it, so a live signal can use the
//! bar still forming.
//!
//! - [`Ema`]: the exponential moving average with the standard smoothing
//!   factor α = 2 / (n + 1), seeded with the simple average of the first n
//!   closes (as TA-Lib and most charting packages do).
//! - [`Rsi`]: J. Welles Wilder's Relative Strength Index (*New Concepts in
//!   Technical Trading Systems*, 1978): the first average gain and loss are
//!   simple averages of the first n changes, later ones Wilder-smoothed,
//!   `avg = (avg × (n − 1) + x) / n`; RSI = 100 − 100 / (1 + avg gain / avg loss).
//! - [`Macd`]: Gerald Appel's MACD: the fast EMA minus the slow EMA, its
//!   signal line (an EMA of it) and the histogram (MACD − signal); 12, 26, 9
//!   by default.
//!
//! ```
//! use tickwire_adapter_synthetic::indicators::{Ema, Rsi};
//!
//! let mut ema = Ema::new(3);
//! let values: Vec<_> = [2.0, 4.0, 6.0, 8.0].into_iter().map(|c| ema.update(c)).collect();
//! assert_eq!(values, [None, None, Some(4.0), Some(6.0)]);
//!
//! let mut rsi = Rsi::new(14);
//! let last = (0..30).map(|i| rsi.update(100.0 + f64::from(i))).last().flatten();
//! assert_eq!(last, Some(100.0)); // only gains
//! ```

use tickwire_model::SignalDirection;

/// An exponential moving average of period `n`: α = 2 / (n + 1), seeded with
/// the simple average of the first `n` values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ema {
    period: u32,
    alpha: f64,
    /// Values seen, up to `period`.
    seen: u32,
    /// The sum of the values while seeding, then the average.
    value: f64,
}

impl Ema {
    /// An EMA of `period` values (at least 1).
    pub fn new(period: u32) -> Self {
        let period = period.max(1);
        Ema {
            period,
            alpha: 2.0 / (f64::from(period) + 1.0),
            seen: 0,
            value: 0.0,
        }
    }

    /// The period.
    pub fn period(&self) -> u32 {
        self.period
    }

    /// Feeds one value; the average once `period` values were fed.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        if self.seen < self.period {
            self.seen += 1;
            self.value += x;
            if self.seen == self.period {
                self.value /= f64::from(self.period);
            }
        } else {
            self.value += self.alpha * (x - self.value);
        }
        self.value()
    }

    /// What [`update`](Self::update) would return for `x`, leaving `self` as it is.
    pub fn peek(&self, x: f64) -> Option<f64> {
        let mut next = *self;
        next.update(x)
    }

    /// The current average, once `period` values were fed.
    pub fn value(&self) -> Option<f64> {
        (self.seen == self.period).then_some(self.value)
    }
}

/// Wilder's Relative Strength Index of period `n`, 0–100.
///
/// A series that never falls reads 100, one that never rises 0, and a flat
/// one 50.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rsi {
    period: u32,
    prev: Option<f64>,
    /// Changes seen, up to `period`.
    seen: u32,
    /// Sums while seeding, then Wilder averages.
    gain: f64,
    loss: f64,
}

impl Rsi {
    /// An RSI of `period` changes (at least 1).
    pub fn new(period: u32) -> Self {
        Rsi {
            period: period.max(1),
            prev: None,
            seen: 0,
            gain: 0.0,
            loss: 0.0,
        }
    }

    /// Feeds one close; the RSI once `period` changes (`period + 1` closes) were fed.
    pub fn update(&mut self, close: f64) -> Option<f64> {
        let prev = self.prev.replace(close)?;
        let change = close - prev;
        let (gain, loss) = (change.max(0.0), (-change).max(0.0));
        let n = f64::from(self.period);
        if self.seen < self.period {
            self.seen += 1;
            self.gain += gain;
            self.loss += loss;
            if self.seen == self.period {
                self.gain /= n;
                self.loss /= n;
            }
        } else {
            self.gain = (self.gain * (n - 1.0) + gain) / n;
            self.loss = (self.loss * (n - 1.0) + loss) / n;
        }
        self.value()
    }

    /// What [`update`](Self::update) would return for `close`, leaving `self` as it is.
    pub fn peek(&self, close: f64) -> Option<f64> {
        let mut next = *self;
        next.update(close)
    }

    /// The current RSI, once `period` changes were fed.
    pub fn value(&self) -> Option<f64> {
        if self.seen < self.period {
            return None;
        }
        Some(if self.loss == 0.0 {
            if self.gain == 0.0 { 50.0 } else { 100.0 }
        } else {
            100.0 - 100.0 / (1.0 + self.gain / self.loss)
        })
    }
}

/// The three lines of a MACD at one close.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MacdValue {
    /// Fast EMA − slow EMA.
    pub macd: f64,
    /// The EMA of the MACD line.
    pub signal: f64,
    /// MACD − signal.
    pub histogram: f64,
}

/// Moving Average Convergence/Divergence: 12, 26, 9 by [`Macd::standard`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Macd {
    fast: Ema,
    slow: Ema,
    signal: Ema,
}

impl Macd {
    /// A MACD of the given EMA periods.
    pub fn new(fast: u32, slow: u32, signal: u32) -> Self {
        Macd {
            fast: Ema::new(fast),
            slow: Ema::new(slow),
            signal: Ema::new(signal),
        }
    }

    /// The standard MACD(12, 26, 9).
    pub fn standard() -> Self {
        Macd::new(12, 26, 9)
    }

    /// Feeds one close; the lines once the signal line is seeded (after
    /// `slow + signal − 1` closes).
    pub fn update(&mut self, close: f64) -> Option<MacdValue> {
        let fast = self.fast.update(close);
        let slow = self.slow.update(close);
        let (Some(fast), Some(slow)) = (fast, slow) else {
            return None;
        };
        let macd = fast - slow;
        let signal = self.signal.update(macd)?;
        Some(MacdValue {
            macd,
            signal,
            histogram: macd - signal,
        })
    }

    /// What [`update`](Self::update) would return for `close`, leaving `self` as it is.
    pub fn peek(&self, close: f64) -> Option<MacdValue> {
        let mut next = *self;
        next.update(close)
    }
}

/// The RSI levels below which a market reads oversold (buy) and above which
/// overbought (sell).
pub const RSI_OVERSOLD: f64 = 30.0;
/// See [`RSI_OVERSOLD`].
pub const RSI_OVERBOUGHT: f64 = 70.0;

/// The advice of an RSI reading and the confidence in it, 0–1.
///
/// Below 30: buy, with confidence from 0.5 at 30 to 1 at 0. Above 70: sell,
/// from 0.5 at 70 to 1 at 100. Between: neutral, with confidence 1 at 50
/// falling to 0 at 30 and 70.
pub fn rsi_signal(rsi: f64) -> (SignalDirection, f64) {
    let rsi = rsi.clamp(0.0, 100.0);
    if rsi < RSI_OVERSOLD {
        let depth = (RSI_OVERSOLD - rsi) / RSI_OVERSOLD;
        (SignalDirection::Buy, 0.5 + 0.5 * depth)
    } else if rsi > RSI_OVERBOUGHT {
        let depth = (rsi - RSI_OVERBOUGHT) / (100.0 - RSI_OVERBOUGHT);
        (SignalDirection::Sell, 0.5 + 0.5 * depth)
    } else {
        let half_band = (RSI_OVERBOUGHT - RSI_OVERSOLD) / 2.0;
        (
            SignalDirection::Neutral,
            1.0 - (rsi - 50.0).abs() / half_band,
        )
    }
}

/// Distances within this many `scale`s of zero advise nothing.
const DEAD_BAND: f64 = 0.1;

/// The advice of an EMA crossover and the confidence in it, 0–1.
///
/// Buy while the fast EMA is above the slow one (the last cross was upward),
/// sell while it is below, neutral while they are within a tenth of `scale`
/// of each other. `scale` is the instrument's typical price move over one bar;
/// with `z = |fast − slow| / scale` the confidence is `z / (z + 1)`.
pub fn ema_cross_signal(fast: f64, slow: f64, scale: f64) -> (SignalDirection, f64) {
    let z = normalised(fast - slow, scale);
    let direction = if z < DEAD_BAND {
        SignalDirection::Neutral
    } else if fast > slow {
        SignalDirection::Buy
    } else {
        SignalDirection::Sell
    };
    (direction, z / (z + 1.0))
}

/// The advice of a MACD and the confidence in it, 0–1.
///
/// Buy while the histogram is positive (MACD above its signal line), sell
/// while it is negative, neutral within a tenth of `scale` of zero. With
/// `z = |histogram| / scale`, the confidence is `0.75 × z / (z + 0.5)`, plus
/// 0.25 when the MACD line agrees (is on the same side of zero).
pub fn macd_signal(value: MacdValue, scale: f64) -> (SignalDirection, f64) {
    let z = normalised(value.histogram, scale);
    if z < DEAD_BAND {
        return (SignalDirection::Neutral, 1.0 - z / DEAD_BAND);
    }
    let direction = if value.histogram > 0.0 {
        SignalDirection::Buy
    } else {
        SignalDirection::Sell
    };
    let agrees = value.macd.signum() == value.histogram.signum();
    let confidence = 0.75 * z / (z + 0.5) + if agrees { 0.25 } else { 0.0 };
    (direction, confidence)
}

/// `|x| / scale`, 0 for a degenerate scale or a non-finite ratio.
fn normalised(x: f64, scale: f64) -> f64 {
    let z = x.abs() / scale;
    if scale > 0.0 && z.is_finite() { z } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn ema_seeds_with_the_average_then_smooths() {
        // α = 2 / (3 + 1) = 0.5; seed (2 + 4 + 6) / 3 = 4; then 4 + 0.5 (8 − 4) = 6;
        // 6 + 0.5 (3 − 6) = 4.5.
        let mut ema = Ema::new(3);
        let out: Vec<_> = [2.0, 4.0, 6.0, 8.0, 3.0]
            .into_iter()
            .map(|x| ema.update(x))
            .collect();
        assert_eq!(out, [None, None, Some(4.0), Some(6.0), Some(4.5)]);
        assert_eq!(ema.value(), Some(4.5));
        assert_eq!(ema.peek(10.5), Some(7.5));
        assert_eq!(ema.value(), Some(4.5), "peek commits nothing");
        assert_eq!(ema.period(), 3);

        // α = 2 / 10 = 0.2 for EMA(9): 10 after seeding on 10s, then 10 + 0.2 × 10 = 12.
        let mut ema9 = Ema::new(9);
        for _ in 0..9 {
            ema9.update(10.0);
        }
        assert!(close(ema9.update(20.0).unwrap(), 12.0));
        // A period of 0 is taken as 1: the EMA is the last value.
        let mut one = Ema::new(0);
        assert_eq!(one.update(5.0), Some(5.0));
        assert_eq!(one.update(7.0), Some(7.0));
    }

    #[test]
    fn rsi_follows_wilder() {
        // Closes 10, 11, 10.5, 11.5, 12, 11: changes +1, −0.5, +1, +0.5, −1.
        // RSI(3): first averages gain 2/3, loss 1/6 → RS 4 → 80.
        // Then gain (2/3 × 2 + 0.5) / 3 = 11/18, loss (1/6 × 2) / 3 = 1/9 → RS 5.5 → 84.6153…
        // Then gain (11/18 × 2) / 3 = 11/27, loss (1/9 × 2 + 1) / 3 = 11/27 → 50.
        let mut rsi = Rsi::new(3);
        let out: Vec<_> = [10.0, 11.0, 10.5, 11.5, 12.0, 11.0]
            .into_iter()
            .map(|c| rsi.update(c))
            .collect();
        assert_eq!(&out[..3], [None, None, None]);
        assert!(close(out[3].unwrap(), 80.0));
        assert!(close(out[4].unwrap(), 100.0 - 100.0 / 6.5));
        assert!(close(out[5].unwrap(), 50.0));
        assert!(close(rsi.peek(11.0).unwrap(), 50.0));
        assert!(close(rsi.value().unwrap(), 50.0));

        let mut falling = Rsi::new(2);
        let last = [5.0, 4.0, 3.0, 2.0].map(|c| falling.update(c))[3];
        assert_eq!(last, Some(0.0));
        let mut flat = Rsi::new(2);
        let last = [5.0, 5.0, 5.0].map(|c| flat.update(c))[2];
        assert_eq!(last, Some(50.0));
    }

    #[test]
    fn macd_is_fast_minus_slow_with_its_signal_line() {
        // MACD(2, 3, 2) over 1, 3, 2, 6, 4.
        // EMA(2), α 2/3: 2, 2, 14/3, 38/9 from the 2nd close on.
        // EMA(3), α 1/2: 2, 4, 4 from the 3rd close on.
        // MACD: 0, 2/3, 2/9; signal EMA(2): 1/3, then 2/3 × 2/9 + 1/3 × 1/3 = 7/27.
        // Histogram: 1/3, −1/27.
        let mut macd = Macd::new(2, 3, 2);
        let out: Vec<_> = [1.0, 3.0, 2.0, 6.0, 4.0]
            .into_iter()
            .map(|c| macd.update(c))
            .collect();
        assert_eq!(&out[..3], [None, None, None]);
        let v = out[3].unwrap();
        assert!(close(v.macd, 2.0 / 3.0));
        assert!(close(v.signal, 1.0 / 3.0));
        assert!(close(v.histogram, 1.0 / 3.0));
        let v = out[4].unwrap();
        assert!(close(v.macd, 2.0 / 9.0));
        assert!(close(v.signal, 7.0 / 27.0));
        assert!(close(v.histogram, -1.0 / 27.0));

        // The standard MACD is ready after 26 + 9 − 1 = 34 closes.
        let mut standard = Macd::standard();
        let out: Vec<_> = (0..40).map(|i| standard.update(f64::from(i))).collect();
        let ready = out.iter().position(Option::is_some);
        assert_eq!(ready, Some(33));
        // On a straight line the EMAs lag by fixed amounts: (26 − 12) / 2 = 7 steps
        // apart, and the signal line has caught up.
        let v = standard.peek(40.0).unwrap();
        assert!((v.macd - 7.0).abs() < 1e-6, "{v:?}");
        assert!(v.histogram.abs() < 1e-3, "{v:?}");
    }

    #[test]
    fn rsi_advice() {
        assert_eq!(rsi_signal(0.0), (SignalDirection::Buy, 1.0));
        assert_eq!(rsi_signal(15.0), (SignalDirection::Buy, 0.75));
        assert_eq!(rsi_signal(30.0), (SignalDirection::Neutral, 0.0));
        assert_eq!(rsi_signal(50.0), (SignalDirection::Neutral, 1.0));
        assert_eq!(rsi_signal(60.0), (SignalDirection::Neutral, 0.5));
        assert_eq!(rsi_signal(85.0), (SignalDirection::Sell, 0.75));
        assert_eq!(rsi_signal(100.0), (SignalDirection::Sell, 1.0));
    }

    #[test]
    fn ema_cross_advice() {
        assert_eq!(
            ema_cross_signal(101.0, 100.0, 1.0),
            (SignalDirection::Buy, 0.5)
        );
        assert_eq!(
            ema_cross_signal(97.0, 100.0, 1.0),
            (SignalDirection::Sell, 0.75)
        );
        let (direction, confidence) = ema_cross_signal(100.05, 100.0, 1.0);
        assert_eq!(direction, SignalDirection::Neutral);
        assert!(confidence < 0.1);
        assert_eq!(
            ema_cross_signal(101.0, 100.0, 0.0),
            (SignalDirection::Neutral, 0.0)
        );
    }

    #[test]
    fn macd_advice() {
        let v = |macd, histogram| MacdValue {
            macd,
            signal: macd - histogram,
            histogram,
        };
        // z = 0.5: 0.75 × 0.5 / 1 = 0.375, + 0.25 as the MACD line agrees.
        assert_eq!(macd_signal(v(2.0, 0.5), 1.0), (SignalDirection::Buy, 0.625));
        assert_eq!(
            macd_signal(v(2.0, -0.5), 1.0),
            (SignalDirection::Sell, 0.375)
        );
        assert_eq!(
            macd_signal(v(1.0, 0.0), 1.0),
            (SignalDirection::Neutral, 1.0)
        );
        let (direction, confidence) = macd_signal(v(-1e9, -1e9), 1.0);
        assert_eq!(direction, SignalDirection::Sell);
        assert!(confidence <= 1.0);
    }
}
