//! Canonical market events: what every adapter produces and every codec renders.
//!
//! Prices and quantities are `f64`, as the JSON dialects carry them; timestamps are
//! milliseconds since the UNIX epoch. An [`Instrument`] is named once, canonically
//! (`BTC/USD` on exchange `CRYPTO`, `RELIANCE` on `NSE`, `AAPL` on `NASDAQ`); each
//! dialect derives its own spelling from it (`btc` on `/ws`, `BTC/USD` on `/stream`).

use std::fmt;
use std::sync::Arc;

/// One tradable instrument: a symbol on an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instrument {
    /// The canonical symbol: `BTC/USD` for a crypto pair, `RELIANCE`, `NIFTY`, `AAPL`.
    pub symbol: Arc<str>,
    /// The exchange: `CRYPTO` for crypto pairs, `NSE`, `NSE_INDEX`, `BSE`, `NASDAQ`, ...
    pub exchange: Arc<str>,
}

impl Instrument {
    /// The exchange name of crypto pairs.
    pub const CRYPTO: &'static str = "CRYPTO";

    /// An instrument from its parts.
    pub fn new(symbol: impl Into<Arc<str>>, exchange: impl Into<Arc<str>>) -> Instrument {
        Instrument {
            symbol: symbol.into(),
            exchange: exchange.into(),
        }
    }

    /// A crypto pair such as `BTC/USD`.
    pub fn crypto(pair: impl Into<Arc<str>>) -> Instrument {
        Instrument::new(pair, Instrument::CRYPTO)
    }

    /// The base asset of a `BASE/QUOTE` pair (`BTC` of `BTC/USD`), else the symbol.
    pub fn base(&self) -> &str {
        self.symbol.split_once('/').map_or(&self.symbol, |(b, _)| b)
    }

    /// The quote asset of a `BASE/QUOTE` pair (`USD` of `BTC/USD`).
    pub fn quote(&self) -> Option<&str> {
        self.symbol.split_once('/').map(|(_, q)| q)
    }
}

impl fmt::Display for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.exchange, self.symbol)
    }
}

/// A trade of one instrument with the quote and session figures around it.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTick {
    /// The instrument traded.
    pub instrument: Instrument,
    /// Last traded price.
    pub price: f64,
    /// Quantity of the last trade.
    pub last_quantity: f64,
    /// Best bid price.
    pub bid: f64,
    /// Quantity at the best bid.
    pub bid_quantity: f64,
    /// Best ask price.
    pub ask: f64,
    /// Quantity at the best ask.
    pub ask_quantity: f64,
    /// Session open price.
    pub open: f64,
    /// Session high.
    pub high: f64,
    /// Session low.
    pub low: f64,
    /// Previous session close.
    pub prev_close: f64,
    /// Price change over the rolling 24 hours, in percent.
    pub change_24h_pct: f64,
    /// Traded volume over the rolling 24 hours (quote currency for crypto pairs,
    /// shares or contracts otherwise); `None` when the source does not know it.
    pub volume_24h: Option<f64>,
    /// Cumulative volume of the session.
    pub session_volume: f64,
    /// Where the tick came from: an exchange name, `synthetic`, `zmq`, `publish`.
    pub source: Arc<str>,
    /// Exchange time of the tick, milliseconds since the UNIX epoch.
    pub timestamp_ms: i64,
}

/// One price level of an order book.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// The level's price.
    pub price: f64,
    /// The quantity resting at it.
    pub quantity: f64,
    /// The number of orders at it (0 when unknown).
    pub orders: u32,
}

/// An order-book snapshot: bids best (highest) first, asks best (lowest) first.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBook {
    /// The instrument.
    pub instrument: Instrument,
    /// Bid levels, highest price first.
    pub bids: Vec<Level>,
    /// Ask levels, lowest price first.
    pub asks: Vec<Level>,
    /// Where the book came from.
    pub source: Arc<str>,
    /// Time of the snapshot, milliseconds since the UNIX epoch.
    pub timestamp_ms: i64,
}

/// What a signal advises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalDirection {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
    /// Neither.
    Neutral,
}

impl SignalDirection {
    /// `buy`, `sell` or `neutral`, as the JSON dialects spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            SignalDirection::Buy => "buy",
            SignalDirection::Sell => "sell",
            SignalDirection::Neutral => "neutral",
        }
    }
}

/// A trading signal computed from an instrument's prices.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The instrument.
    pub instrument: Instrument,
    /// The indicator, lower case: `rsi`, `ema_cross`, `macd`, ...
    pub indicator: Arc<str>,
    /// What it advises.
    pub direction: SignalDirection,
    /// The indicator's value (RSI 0–100, the MACD histogram, the EMA spread, ...).
    pub value: f64,
    /// Confidence in the advice, 0–1.
    pub confidence: f64,
    /// When it was computed, milliseconds since the UNIX epoch.
    pub timestamp_ms: i64,
}

/// Figures of the running server, as `/ws`'s `server_status` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStatus {
    /// Open client connections, all endpoints together.
    pub connected_peers: u64,
    /// Connected adapters.
    pub active_sources: u64,
    /// Instruments with data.
    pub symbols_tracked: u64,
    /// Seconds since the server started.
    pub uptime_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_into_base_and_quote() {
        let btc = Instrument::crypto("BTC/USD");
        assert_eq!(btc.base(), "BTC");
        assert_eq!(btc.quote(), Some("USD"));
        assert_eq!(btc.to_string(), "CRYPTO:BTC/USD");
        let reliance = Instrument::new("RELIANCE", "NSE");
        assert_eq!(reliance.base(), "RELIANCE");
        assert_eq!(reliance.quote(), None);
    }

    #[test]
    fn directions_spell_as_the_dialects_do() {
        assert_eq!(SignalDirection::Buy.as_str(), "buy");
        assert_eq!(SignalDirection::Sell.as_str(), "sell");
        assert_eq!(SignalDirection::Neutral.as_str(), "neutral");
    }
}
