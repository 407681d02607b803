//! Configuration of the synthetic market.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::universe::{InstrumentSpec, default_universe};
use tickwire_adapter::AdapterError;

/// The deepest book a synthetic market builds (seed 003's Depth mode asks for 5, 20 or 30).
pub const MAX_BOOK_DEPTH: usize = 30;

/// Configuration of a [`SyntheticMarket`](crate::SyntheticMarket), embeddable
/// in a larger (figment) config, e.g. as `[synthetic]`.
///
/// Every field has a default; unknown fields are rejected. A `universe` given
/// in a config file replaces the default one whole.
///
/// ```
/// # use std::time::Duration;
/// # use tickwire_adapter_synthetic::SyntheticConfig;
/// let config: SyntheticConfig = serde_json::from_str(
///     r#"{"seed":7,"book_depth":20,"signal_interval_ms":5000}"#,
/// ).unwrap();
/// assert_eq!(config.seed, Some(7));
/// assert_eq!(config.signal_interval, Duration::from_secs(5));
/// assert_eq!(config.book_interval, Duration::from_secs(1));
/// assert!(config.universe.len() >= 24);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Whether the host runs the synthetic market at all (default `true`).
    /// The adapter itself does not read it.
    pub enabled: bool,
    /// The seed of every random draw; the same seed gives the same market
    /// (default: none, a random seed, which
    /// [`SyntheticMarket::seed`](crate::SyntheticMarket::seed) reports).
    pub seed: Option<u64>,
    /// Levels a side of the order books, 1–30 (default 10), for the
    /// instruments whose spec names no `book_depth` of its own.
    pub book_depth: usize,
    /// Time between two order-book snapshots of one instrument. Written
    /// `book_interval_ms` in config files (default 1000).
    #[serde(rename = "book_interval_ms", with = "millis")]
    pub book_interval: Duration,
    /// Time between two rounds of signals of one instrument (one signal per
    /// indicator each round). Written `signal_interval_ms` in config files
    /// (default 10 000).
    #[serde(rename = "signal_interval_ms", with = "millis")]
    pub signal_interval: Duration,
    /// Multiplies every instrument's trade rate, for demos and load tests,
    /// keeping volatility and volume per unit of time as they are: at `10`,
    /// ten times the ticks, each a tenth of the size. 0.01–1000 (default 1).
    pub speed: f64,
    /// How many updates the stream buffers; when it is full, new updates are
    /// dropped rather than the market waiting (default 4096).
    pub buffer: usize,
    /// The instruments (default [`default_universe`]).
    pub universe: Vec<InstrumentSpec>,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            enabled: true,
            seed: None,
            book_depth: 10,
            book_interval: Duration::from_secs(1),
            signal_interval: Duration::from_secs(10),
            speed: 1.0,
            buffer: 4096,
            universe: default_universe(),
        }
    }
}

impl SyntheticConfig {
    /// Checks every field: [`AdapterError::InvalidConfig`] names the first bad one.
    pub fn validate(&self) -> Result<(), AdapterError> {
        let bad = |field, reason| Err(AdapterError::InvalidConfig { field, reason });
        if !(1..=MAX_BOOK_DEPTH).contains(&self.book_depth) {
            return bad("book_depth", "must be within 1–30");
        }
        let ms = Duration::from_millis;
        if !(ms(1)..=ms(86_400_000)).contains(&self.book_interval) {
            return bad("book_interval_ms", "must be within 1–86400000");
        }
        if !(ms(1)..=ms(86_400_000)).contains(&self.signal_interval) {
            return bad("signal_interval_ms", "must be within 1–86400000");
        }
        if !(self.speed.is_finite() && (0.01..=1000.0).contains(&self.speed)) {
            return bad("speed", "must be within 0.01–1000");
        }
        if self.buffer == 0 {
            return bad("buffer", "must be at least 1");
        }
        if self.universe.is_empty() {
            return bad("universe", "must hold at least one instrument");
        }
        let mut seen = HashSet::new();
        for spec in &self.universe {
            spec.check()?;
            if !seen.insert((spec.symbol.as_str(), spec.exchange.as_str())) {
                return bad("universe", "holds an instrument twice");
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_with_defaults() {
        let config: SyntheticConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, SyntheticConfig::default());
        assert!(config.enabled);
        assert_eq!(config.seed, None);
        assert_eq!(config.book_depth, 10);
        assert_eq!(config.speed, 1.0);
        config.validate().unwrap();

        let config: SyntheticConfig = serde_json::from_str(
            r#"{"enabled":false,"seed":1,"book_depth":30,"book_interval_ms":250,
                "signal_interval_ms":1000,"speed":2.5,"buffer":16,
                "universe":[{"symbol":"BTC/USD","price":60000,"tick_size":0.5}]}"#,
        )
        .unwrap();
        assert!(!config.enabled);
        assert_eq!(config.book_interval, Duration::from_millis(250));
        assert_eq!(config.universe.len(), 1);
        assert_eq!(config.universe[0].exchange, "CRYPTO");
        config.validate().unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["signal_interval_ms"], 1000);

        assert!(serde_json::from_str::<SyntheticConfig>(r#"{"depth":5}"#).is_err());
        assert!(
            serde_json::from_str::<SyntheticConfig>(r#"{"universe":[{"symbol":"X"}]}"#).is_err()
        );
    }

    #[test]
    fn bad_values_are_named() {
        let field = |config: SyntheticConfig| match config.validate() {
            Err(AdapterError::InvalidConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let base = SyntheticConfig::default;
        assert_eq!(
            field(SyntheticConfig {
                book_depth: 31,
                ..base()
            }),
            "book_depth"
        );
        assert_eq!(
            field(SyntheticConfig {
                book_depth: 0,
                ..base()
            }),
            "book_depth"
        );
        assert_eq!(
            field(SyntheticConfig {
                book_interval: Duration::ZERO,
                ..base()
            }),
            "book_interval_ms"
        );
        assert_eq!(
            field(SyntheticConfig {
                signal_interval: Duration::from_micros(10),
                ..base()
            }),
            "signal_interval_ms"
        );
        assert_eq!(
            field(SyntheticConfig {
                speed: 0.0,
                ..base()
            }),
            "speed"
        );
        assert_eq!(
            field(SyntheticConfig {
                buffer: 0,
                ..base()
            }),
            "buffer"
        );
        assert_eq!(
            field(SyntheticConfig {
                universe: Vec::new(),
                ..base()
            }),
            "universe"
        );
        let mut twice = base();
        twice.universe.push(twice.universe[0].clone());
        assert_eq!(field(twice), "universe");
    }
}
