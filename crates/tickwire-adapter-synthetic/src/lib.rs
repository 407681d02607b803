//! The synthetic market: a broker adapter producing a live market from a
//! seeded simulation, for the price feeds of seeds 001 and 002, the exchange
//! instruments of seed 003 and the equities seed 004's bars are made from.
//!
//! - `universe`: [`InstrumentSpec`] and the default universe;
//! - `config`: [`SyntheticConfig`];
//! - `walk`: one instrument's price walk, quote, session, rolling 24 hours
//!   and one-minute indicators;
//! - `book`: order books around the quote;
//! - `indicators`: RSI, EMA and MACD, pure arithmetic;
//! - `sim`: [`MarketSim`], the steppable core with its event schedule;
//! - `adapter`: [`SyntheticMarket`], the [`BrokerAdapter`](tickwire_adapter::BrokerAdapter)
//!   driving a `MarketSim` on the wall clock.

mod adapter;
mod book;
mod config;
pub mod indicators;
mod sim;
mod universe;
mod walk;

pub use adapter::SyntheticMarket;
pub use config::{MAX_BOOK_DEPTH, SyntheticConfig};
pub use sim::MarketSim;
pub use universe::{InstrumentSpec, default_universe};
