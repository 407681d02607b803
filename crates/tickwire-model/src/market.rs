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

impl PriceTick {
    /// Merges a [`Trade`] of the same instrument: the price, the time and, when the
    /// trade carries one, the last quantity change; the quote and session figures
    /// (bid/ask, open/high/low, volumes) and the source stay as they are. The 24-hour
    /// change follows the new price when the previous close is known.
    ///
    /// This is how a last-value cache takes an LTP-only update: the quote it holds
    /// keeps describing the book and the session, with the latest traded price.
    ///
    /// ```
    /// # use tickwire_model::{Instrument, PriceTick, Trade};
    /// # let mut tick = PriceTick {
    /// #     instrument: Instrument::new("TCS", "NSE"), price: 4100.0, last_quantity: 5.0,
    /// #     bid: 4099.95, bid_quantity: 10.0, ask: 4100.05, ask_quantity: 7.0, open: 4050.0,
    /// #     high: 4120.0, low: 4040.0, prev_close: 4000.0, change_24h_pct: 2.5,
    /// #     volume_24h: None, session_volume: 1000.0, source: "synthetic".into(),
    /// #     timestamp_ms: 1,
    /// # };
    /// tick.apply_trade(&Trade {
    ///     instrument: tick.instrument.clone(), price: 4200.0, quantity: None,
    ///     source: "zmq".into(), timestamp_ms: 2,
    /// });
    /// assert_eq!((tick.price, tick.timestamp_ms), (4200.0, 2));
    /// assert_eq!((tick.bid, tick.open), (4099.95, 4050.0));
    /// assert_eq!((tick.last_quantity, tick.change_24h_pct), (5.0, 5.0));
    /// assert_eq!(&*tick.source, "synthetic");
    /// ```
    pub fn apply_trade(&mut self, trade: &Trade) {
        self.price = trade.price;
        self.timestamp_ms = trade.timestamp_ms;
        if let Some(quantity) = trade.quantity {
            self.last_quantity = quantity;
        }
        if self.prev_close != 0.0 && self.prev_close.is_finite() {
            self.change_24h_pct = (self.price - self.prev_close) / self.prev_close * 100.0;
        }
    }
}

/// A last traded price of one instrument and nothing else: what a source that sends
/// no quote with its trades produces (a bus message of seed 003's LTP mode).
///
/// It says only what it carries. Consumers that keep a quote merge it with
/// [`PriceTick::apply_trade`] instead of replacing the quote, so a trade never
/// blanks the bid/ask, OHLC or volume they hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    /// The instrument traded.
    pub instrument: Instrument,
    /// Last traded price.
    pub price: f64,
    /// Quantity of the trade, when the source sends it.
    pub quantity: Option<f64>,
    /// Where the trade came from: `zmq`, a broker name, ...
    pub source: Arc<str>,
    /// Exchange time of the trade, milliseconds since the UNIX epoch.
    pub timestamp_ms: i64,
}

impl Trade {
    /// The trade a full tick implies: its price, last quantity, source and time.
    pub fn of_tick(tick: &PriceTick) -> Trade {
        Trade {
            instrument: tick.instrument.clone(),
            price: tick.price,
            quantity: Some(tick.last_quantity),
            source: Arc::clone(&tick.source),
            timestamp_ms: tick.timestamp_ms,
        }
    }
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

    fn tick() -> PriceTick {
        PriceTick {
            instrument: Instrument::new("INFY", "NSE"),
            price: 1900.0,
            last_quantity: 3.0,
            bid: 1899.95,
            bid_quantity: 40.0,
            ask: 1900.05,
            ask_quantity: 60.0,
            open: 1880.0,
            high: 1910.0,
            low: 1875.0,
            prev_close: 0.0,
            change_24h_pct: 1.25,
            volume_24h: Some(7.0e6),
            session_volume: 120_000.0,
            source: "synthetic".into(),
            timestamp_ms: 1_000,
        }
    }

    #[test]
    fn a_trade_changes_only_price_time_and_quantity() {
        let mut merged = tick();
        let trade = Trade {
            instrument: merged.instrument.clone(),
            price: 777.5,
            quantity: None,
            source: "zmq".into(),
            timestamp_ms: 2_000,
        };
        merged.apply_trade(&trade);
        let expected = PriceTick {
            price: 777.5,
            timestamp_ms: 2_000,
            ..tick()
        };
        // No previous close: the change is left as the source gave it.
        assert_eq!(merged, expected);

        merged.apply_trade(&Trade {
            quantity: Some(9.0),
            ..trade
        });
        assert_eq!(merged.last_quantity, 9.0);
        assert_eq!(
            Trade::of_tick(&merged),
            Trade {
                instrument: merged.instrument.clone(),
                price: 777.5,
                quantity: Some(9.0),
                source: "synthetic".into(),
                timestamp_ms: 2_000,
            }
        );
    }

    #[test]
    fn directions_spell_as_the_dialects_do() {
        assert_eq!(SignalDirection::Buy.as_str(), "buy");
        assert_eq!(SignalDirection::Sell.as_str(), "sell");
        assert_eq!(SignalDirection::Neutral.as_str(), "neutral");
    }
}
