//! Sans-IO aggregation of trades into OHLCV bars at charting resolutions.
//!
//! A [`BarAggregator`] takes trades (price, quantity, exchange time) per
//! [`Instrument`](tickwire_model::Instrument) and keeps the current bar of every
//! [`Resolution`]: `1`, `5`, `15`, `30`, `60` minutes, `D`, `W` and `M`. Buckets are UTC:
//! minute buckets are aligned to the UNIX epoch, days start at 00:00 UTC, weeks on Monday
//! 00:00 UTC, months on the 1st at 00:00 UTC (see [`Resolution`]). A bar's `time` is its
//! bucket's start. Every tick reports the bars it changed, so a publisher can encode each
//! changed bar once per topic and fan it out.
//!
//! What it does not do: no I/O, no clocks (times come with the ticks), no history (only
//! the current bar of each resolution is kept; closed bars are gone), no exchange trading
//! sessions or holidays (a bucket is a calendar interval, traded or not), no time zones.
//!
//! ```
//! use tickwire_bars::{BarAggregator, Resolution};
//! use tickwire_model::Instrument;
//!
//! let aapl = Instrument::new("AAPL", "NASDAQ");
//! let mut bars = BarAggregator::all();
//! let noon = 1_697_112_000_000; // 2023-10-12 12:00:00 UTC
//! for (resolution, bar) in bars.on_tick(&aapl, 150.0, 100.0, noon + 42_000) {
//!     // Encode `bar` once for the topic `bars:AAPL:{resolution}` and fan it out.
//!     assert_eq!(bar.time, resolution.bucket_start(noon + 42_000));
//! }
//! let minute = bars.current(&aapl, Resolution::Min1).unwrap();
//! assert_eq!((minute.time, minute.open, minute.volume), (noon, 150.0, 100.0));
//! ```

mod aggregator;
mod calendar;
mod error;
mod resolution;

pub use aggregator::{Bar, BarAggregator, Changed, Stats};
pub use error::Error;
pub use resolution::Resolution;
