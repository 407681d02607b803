//! The instruments a synthetic market trades, and its default universe.

use serde::{Deserialize, Serialize};

use tickwire_model::Instrument;

use crate::config::MAX_BOOK_DEPTH;
use tickwire_adapter::AdapterError;

/// One instrument of a synthetic market and the figures its simulation follows.
///
/// Only `symbol`, `price` and `tick_size` are required in a config file; the
/// other fields have the defaults named on them.
///
/// ```
/// use tickwire_adapter_synthetic::InstrumentSpec;
///
/// let spec: InstrumentSpec = serde_json::from_str(
///     r#"{"symbol":"PEPE/USD","price":0.0000123,"tick_size":0.0000001,"volatility":1.5}"#,
/// ).unwrap();
/// assert_eq!(spec.exchange, "CRYPTO");
/// assert_eq!(spec.ticks_per_sec, 1.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentSpec {
    /// The canonical symbol: `BTC/USD` for a crypto pair, `RELIANCE`, `AAPL`.
    pub symbol: String,
    /// The exchange (default `CRYPTO`).
    #[serde(default = "crypto")]
    pub exchange: String,
    /// The reference price: where the market starts, and the level the price
    /// drifts back to over days (see the module docs).
    pub price: f64,
    /// Annualised volatility as a fraction: `0.6` is 60 % a year, over
    /// 365.25 days of round-the-clock trading (default 0.5).
    #[serde(default = "half")]
    pub volatility: f64,
    /// Mean number of trades a second (default 1); the times between trades
    /// are exponentially distributed around it.
    #[serde(default = "one")]
    pub ticks_per_sec: f64,
    /// The price grid: every price is a whole multiple of it.
    pub tick_size: f64,
    /// The quantity grid: every quantity is a whole multiple of it (default 1).
    #[serde(default = "one")]
    pub lot_size: f64,
    /// The typical volume of 24 hours, in the quote currency for a `BASE/QUOTE`
    /// pair and in units (shares) otherwise; `0` for an index, which reports
    /// no volume and trades no quantity (default 0).
    #[serde(default)]
    pub volume_24h: f64,
    /// The typical bid/ask spread in basis points of the price (default 2);
    /// it is never less than one tick.
    #[serde(default = "two")]
    pub spread_bps: f64,
    /// Levels a side of this instrument's order books, 1–30 (default: the
    /// market's [`book_depth`](crate::SyntheticConfig::book_depth)). The
    /// default universe gives its exchange-listed instruments 30, so that a
    /// proxy Depth subscription of 20 or 30 levels gets them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub book_depth: Option<usize>,
}

fn crypto() -> String {
    Instrument::CRYPTO.to_owned()
}

fn half() -> f64 {
    0.5
}

fn one() -> f64 {
    1.0
}

fn two() -> f64 {
    2.0
}

/// The largest reference price, tick and lot accepted, so that grids of
/// whole multiples stay exact in an `i64` and an `f64`.
const MAX_MAGNITUDE: f64 = 1e12;

/// The smallest tick and lot accepted: ten decimals.
const MIN_STEP: f64 = 1e-10;

impl InstrumentSpec {
    /// The instrument it names.
    pub fn instrument(&self) -> Instrument {
        Instrument::new(self.symbol.as_str(), self.exchange.as_str())
    }

    /// Whether volumes are counted in the quote currency (a `BASE/QUOTE` pair).
    pub(crate) fn volume_in_quote(&self) -> bool {
        self.symbol.contains('/')
    }

    /// Checks that the figures make a market; the reason names what is wrong.
    pub(crate) fn check(&self) -> Result<(), AdapterError> {
        let bad = |reason| {
            Err(AdapterError::InvalidConfig {
                field: "universe",
                reason,
            })
        };
        let symbol_ok = |s: &str| {
            !s.is_empty()
                && !s.contains(':')
                && s.chars()
                    .all(|c| c.is_ascii_graphic() && c != '*' && c != '"' && c != '\\')
        };
        if !symbol_ok(&self.symbol) {
            return bad(
                "holds an instrument whose symbol is empty or has a `:`, `*`, space or non-ASCII character",
            );
        }
        if !symbol_ok(&self.exchange) {
            return bad(
                "holds an instrument whose exchange is empty or has a `:`, `*`, space or non-ASCII character",
            );
        }
        let in_range = |x: f64, min: f64| x.is_finite() && x >= min && x <= MAX_MAGNITUDE;
        if !in_range(self.tick_size, MIN_STEP) || decimals(self.tick_size).is_none() {
            return bad(
                "holds an instrument whose tick_size is not a positive step of at most 10 decimals",
            );
        }
        if !in_range(self.lot_size, MIN_STEP) || decimals(self.lot_size).is_none() {
            return bad(
                "holds an instrument whose lot_size is not a positive step of at most 10 decimals",
            );
        }
        if !in_range(self.price, 100.0 * self.tick_size) {
            return bad("holds an instrument whose price is not at least 100 ticks");
        }
        if !(self.volatility.is_finite() && (0.0..=10.0).contains(&self.volatility)) {
            return bad("holds an instrument whose volatility is not within 0–10 (0–1000 %)");
        }
        if !(self.ticks_per_sec.is_finite() && (0.001..=1000.0).contains(&self.ticks_per_sec)) {
            return bad("holds an instrument whose ticks_per_sec is not within 0.001–1000");
        }
        if !in_range(self.volume_24h, 0.0) {
            return bad("holds an instrument whose volume_24h is negative or not finite");
        }
        if !(self.spread_bps.is_finite() && (0.0..=1000.0).contains(&self.spread_bps)) {
            return bad("holds an instrument whose spread_bps is not within 0–1000");
        }
        if self
            .book_depth
            .is_some_and(|d| !(1..=MAX_BOOK_DEPTH).contains(&d))
        {
            return bad("holds an instrument whose book_depth is not within 1–30");
        }
        Ok(())
    }
}

/// The number of decimals of a grid step (`0.05` has 2), if it has at most 10.
pub(crate) fn decimals(step: f64) -> Option<u32> {
    (0..=10).find(|&d| {
        let scaled = step * 10f64.powi(d as i32);
        scaled.round() >= 1.0 && (scaled - scaled.round()).abs() < 1e-6
    })
}

/// A row of a table below: symbol, exchange, price, volatility, ticks a
/// second, tick size, lot size, 24-hour volume, spread in basis points.
type Row = (
    &'static str,
    &'static str,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
);

/// The crypto pairs of the default universe, quoted in USD (24-hour volume in USD).
const PAIRS: [Row; 22] = [
    (
        "BTC/USD", "CRYPTO", 67_000.0, 0.60, 5.0, 0.01, 0.0001, 28.5e9, 1.0,
    ),
    (
        "ETH/USD", "CRYPTO", 3_500.0, 0.70, 4.0, 0.01, 0.001, 15.0e9, 1.5,
    ),
    (
        "SOL/USD", "CRYPTO", 150.0, 0.95, 3.0, 0.01, 0.01, 2.5e9, 2.0,
    ),
    (
        "BNB/USD", "CRYPTO", 580.0, 0.60, 2.0, 0.01, 0.001, 1.5e9, 2.0,
    ),
    (
        "XRP/USD", "CRYPTO", 0.52, 0.85, 2.5, 0.0001, 1.0, 1.2e9, 3.0,
    ),
    (
        "ADA/USD", "CRYPTO", 0.45, 0.85, 1.5, 0.0001, 1.0, 0.40e9, 3.0,
    ),
    (
        "DOGE/USD", "CRYPTO", 0.15, 1.10, 2.0, 0.00001, 1.0, 1.0e9, 3.0,
    ),
    (
        "AVAX/USD", "CRYPTO", 35.0, 1.00, 1.5, 0.01, 0.01, 0.35e9, 4.0,
    ),
    ("DOT/USD", "CRYPTO", 7.0, 0.85, 1.2, 0.001, 0.1, 0.20e9, 4.0),
    (
        "LINK/USD", "CRYPTO", 15.0, 0.90, 1.5, 0.001, 0.01, 0.35e9, 3.0,
    ),
    (
        "MATIC/USD",
        "CRYPTO",
        0.70,
        0.95,
        1.2,
        0.0001,
        1.0,
        0.25e9,
        4.0,
    ),
    (
        "LTC/USD", "CRYPTO", 80.0, 0.75, 1.5, 0.01, 0.001, 0.35e9, 3.0,
    ),
    (
        "BCH/USD", "CRYPTO", 450.0, 0.80, 1.2, 0.01, 0.001, 0.30e9, 3.0,
    ),
    (
        "ATOM/USD", "CRYPTO", 8.5, 0.85, 1.0, 0.001, 0.01, 0.15e9, 5.0,
    ),
    (
        "UNI/USD", "CRYPTO", 10.0, 0.95, 1.0, 0.001, 0.01, 0.15e9, 5.0,
    ),
    (
        "XLM/USD", "CRYPTO", 0.11, 0.80, 1.0, 0.00001, 1.0, 0.08e9, 5.0,
    ),
    (
        "NEAR/USD", "CRYPTO", 6.5, 1.00, 1.2, 0.001, 0.1, 0.30e9, 4.0,
    ),
    (
        "APT/USD", "CRYPTO", 9.0, 1.05, 1.0, 0.001, 0.01, 0.15e9, 5.0,
    ),
    (
        "ARB/USD", "CRYPTO", 1.0, 1.05, 1.2, 0.0001, 0.1, 0.25e9, 4.0,
    ),
    ("OP/USD", "CRYPTO", 2.3, 1.05, 1.0, 0.001, 0.1, 0.20e9, 5.0),
    ("FIL/USD", "CRYPTO", 5.8, 1.00, 1.0, 0.001, 0.1, 0.20e9, 5.0),
    (
        "ETC/USD", "CRYPTO", 27.0, 0.85, 1.0, 0.01, 0.01, 0.25e9, 4.0,
    ),
];

/// The exchange-listed instruments of the default universe (24-hour volume in units).
const LISTED: [Row; 8] = [
    ("AAPL", "NASDAQ", 190.0, 0.25, 3.0, 0.01, 1.0, 55e6, 1.0),
    ("GOOGL", "NASDAQ", 175.0, 0.30, 2.0, 0.01, 1.0, 25e6, 1.0),
    ("MSFT", "NASDAQ", 420.0, 0.25, 2.0, 0.01, 1.0, 20e6, 1.0),
    ("TSLA", "NASDAQ", 180.0, 0.55, 3.0, 0.01, 1.0, 95e6, 1.5),
    ("RELIANCE", "NSE", 2_900.0, 0.22, 2.0, 0.05, 1.0, 6.0e6, 1.0),
    ("TCS", "NSE", 4_100.0, 0.20, 1.5, 0.05, 1.0, 2.5e6, 1.0),
    ("INFY", "NSE", 1_900.0, 0.25, 1.5, 0.05, 1.0, 7.0e6, 1.0),
    // An index: no volume; quantities count lots of its futures contract.
    (
        "NIFTY",
        "NSE_INDEX",
        24_500.0,
        0.14,
        1.0,
        0.05,
        25.0,
        0.0,
        0.5,
    ),
];

/// The default universe: 22 crypto pairs quoted in USD on `CRYPTO`, AAPL,
/// GOOGL, MSFT and TSLA on `NASDAQ`, RELIANCE, TCS and INFY on `NSE` and the
/// NIFTY index on `NSE_INDEX`. The exchange-listed instruments have books of
/// [`MAX_BOOK_DEPTH`] (30) levels a side, the depth of seed 003's deepest
/// subscription; the crypto pairs the market's `book_depth`.
///
/// Prices, volatilities, trade rates, ticks and 24-hour volumes are of the
/// order of real markets (BTC/USD near 67 000 with 60 % volatility and five
/// trades a second, smaller coins more volatile and slower; the NSE
/// instruments in INR on a 0.05 tick).
///
/// ```
/// use tickwire_adapter_synthetic::default_universe;
///
/// let universe = default_universe();
/// assert!(universe.iter().filter(|s| s.exchange == "CRYPTO").count() >= 20);
/// assert!(universe.iter().any(|s| s.symbol == "NIFTY" && s.exchange == "NSE_INDEX"));
/// ```
pub fn default_universe() -> Vec<InstrumentSpec> {
    let pairs = PAIRS.iter().map(|row| (row, None));
    let listed = LISTED.iter().map(|row| (row, Some(MAX_BOOK_DEPTH)));
    pairs
        .chain(listed)
        .map(
            |(
                &(
                    symbol,
                    exchange,
                    price,
                    volatility,
                    ticks_per_sec,
                    tick_size,
                    lot_size,
                    volume_24h,
                    spread_bps,
                ),
                book_depth,
            )| {
                InstrumentSpec {
                    symbol: symbol.to_owned(),
                    exchange: exchange.to_owned(),
                    price,
                    volatility,
                    ticks_per_sec,
                    tick_size,
                    lot_size,
                    volume_24h,
                    spread_bps,
                    book_depth,
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_default_universe_is_valid_and_unique() {
        let universe = default_universe();
        let mut seen = HashSet::new();
        for spec in &universe {
            spec.check().unwrap();
            assert!(seen.insert(spec.instrument()), "{}", spec.symbol);
        }
        assert!(universe.iter().filter(|s| s.volume_in_quote()).count() >= 20);
        for name in ["NASDAQ:AAPL", "NSE:RELIANCE", "NSE:TCS", "NSE:INFY"] {
            assert!(seen.iter().any(|i| i.to_string() == name), "{name}");
        }
        let btc = universe.iter().find(|s| s.symbol == "BTC/USD").unwrap();
        assert_eq!(btc.price, 67_000.0);
        // Crypto books follow the market's depth; exchange-listed ones are 30 deep.
        assert_eq!(btc.book_depth, None);
        for spec in universe.iter().filter(|s| s.exchange != "CRYPTO") {
            assert_eq!(spec.book_depth, Some(MAX_BOOK_DEPTH), "{}", spec.symbol);
        }
    }

    #[test]
    fn decimals_of_steps() {
        assert_eq!(decimals(1.0), Some(0));
        assert_eq!(decimals(25.0), Some(0));
        assert_eq!(decimals(0.05), Some(2));
        assert_eq!(decimals(0.01), Some(2));
        assert_eq!(decimals(0.00001), Some(5));
        assert_eq!(decimals(0.0001), Some(4));
        assert_eq!(decimals(1e-10), Some(10));
        assert_eq!(decimals(std::f64::consts::PI), None);
    }

    #[test]
    fn bad_specs_are_refused() {
        let good = default_universe().remove(0);
        type Spoil = fn(&mut InstrumentSpec);
        let cases: [(&str, Spoil); 11] = [
            ("empty symbol", |s| s.symbol.clear()),
            ("colon", |s| s.symbol = "BTC:USD".into()),
            ("space", |s| s.exchange = "NEW YORK".into()),
            ("tick", |s| s.tick_size = 0.0),
            ("odd tick", |s| s.tick_size = std::f64::consts::PI),
            ("price", |s| s.price = 0.5),
            ("vol", |s| s.volatility = f64::NAN),
            ("rate", |s| s.ticks_per_sec = 0.0),
            ("volume", |s| s.volume_24h = -1.0),
            ("no depth", |s| s.book_depth = Some(0)),
            ("deep", |s| s.book_depth = Some(31)),
        ];
        for (what, spoil) in cases {
            let mut spec = good.clone();
            spoil(&mut spec);
            assert!(
                matches!(
                    spec.check(),
                    Err(AdapterError::InvalidConfig {
                        field: "universe",
                        ..
                    })
                ),
                "{what}"
            );
        }
    }
}
