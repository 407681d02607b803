//! The last-value cache of an instrument and the `market_data` encoders.

use bytes::{BufMut, Bytes, BytesMut};
use tickwire_model::{Instrument, Level, OrderBook, PriceTick, Trade, Update};

use crate::json::{put_int, put_key, put_price, put_qty, put_str};
use crate::{Depth, Mode, ReplyStyle, UpdateKind};

/// The latest price, quote and book of one instrument: the last-value cache.
///
/// The gateway keeps one per instrument, [`apply`](MarketState::apply)s every
/// update to it, and encodes each topic the update feeds from it with
/// [`encode_market_data`]. A new subscriber gets the current value from it at
/// once; the REST polls (`get_ltp`, `get_quote`, `get_depth`) answer from it.
///
/// Each update changes only what it carries (the merge rules):
///
/// - a [`Trade`] (an LTP-only update) sets the last price and merges the price and
///   time into the cached quote ([`PriceTick::apply_trade`]); bid/ask, OHLC, volume
///   and the book stay;
/// - a quote ([`PriceTick`]) replaces the cached quote and sets the last price; the
///   book stays;
/// - a book replaces the cached book; the quote and the last price stay.
///
/// A Depth message shows the last price with the book, so a trade or quote newer
/// than the book shows there too.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarketState {
    last: Option<Trade>,
    quote: Option<PriceTick>,
    book: Option<OrderBook>,
}

impl MarketState {
    /// Merges a trade, a quote or a book by the rules above and says which it was;
    /// other updates change nothing and give `None`.
    pub fn apply(&mut self, update: &Update) -> Option<UpdateKind> {
        match update {
            Update::Trade(trade) => {
                if let Some(quote) = &mut self.quote {
                    quote.apply_trade(trade);
                }
                self.last = Some(trade.clone());
                Some(UpdateKind::Trade)
            }
            Update::Tick(tick) => {
                self.last = Some(Trade::of_tick(tick));
                self.quote = Some(tick.clone());
                Some(UpdateKind::Tick)
            }
            Update::Book(book) => {
                self.book = Some(book.clone());
                Some(UpdateKind::Book)
            }
            _ => None,
        }
    }

    /// The last traded price, of the latest trade or quote, if any arrived.
    pub fn last(&self) -> Option<&Trade> {
        self.last.as_ref()
    }

    /// The latest quote with the price of later trades merged in, if a quote arrived.
    pub fn quote(&self) -> Option<&PriceTick> {
        self.quote.as_ref()
    }

    /// The latest order book, if any arrived.
    pub fn book(&self) -> Option<&OrderBook> {
        self.book.as_ref()
    }

    /// Whether the state holds what a `mode` message needs: a price for LTP, a
    /// quote for Quote (a trade alone is not one), a book for Depth.
    pub fn has(&self, mode: Mode) -> bool {
        match mode {
            Mode::Ltp => self.last.is_some(),
            Mode::Quote => self.quote.is_some(),
            Mode::Depth => self.book.is_some(),
        }
    }

    /// The broker that produced the data a `mode` message shows (the update's `source`).
    fn broker(&self, mode: Mode) -> &str {
        let last = self.last.as_ref().map(|t| &*t.source);
        let quote = self.quote.as_ref().map(|t| &*t.source);
        let book = self.book.as_ref().map(|b| &*b.source);
        match mode {
            Mode::Ltp => last.or(quote).or(book),
            Mode::Quote => quote.or(last).or(book),
            Mode::Depth => book.or(last).or(quote),
        }
        .unwrap_or_default()
    }
}

/// Encodes the `market_data` message of one topic from the instrument's state, once
/// for every subscriber of the topic; `None` when the state lacks the data the mode
/// needs (no price yet for LTP, no quote yet for Quote, no book yet for Depth).
///
/// `{"type":"market_data","symbol":S,"exchange":E,"mode":N,"data":{...}}` with, in
/// the openalgo style, `"broker"` last (the update's `source`). `data` is:
///
/// - LTP: `{"ltp","timestamp"}` (openalgo: `{"ltp","ltt","timestamp"}`);
/// - Quote: the seed's `{"ltp","open","high","low","close","volume","bid","ask",
///   "bid_qty","ask_qty"}` and `"timestamp"`; openalgo adds `"last_trade_quantity"`,
///   `"change"` and `"change_percent"` before `"timestamp"`, which its SDK reads;
/// - Depth: `{"ltp","depth":{"buy":[{"price","quantity","orders"}],"sell":[...]},
///   "timestamp"}` with at most `depth` levels a side (`ltp` only once a price arrived).
///
/// `close` is the previous session's close, as brokers report it; timestamps are
/// milliseconds since the epoch; prices print as `serde_json` does, quantities as
/// integers when whole; a non-finite number prints as `null`.
pub fn encode_market_data(
    style: ReplyStyle,
    instrument: &Instrument,
    mode: Mode,
    depth: Depth,
    state: &MarketState,
) -> Option<Bytes> {
    if !state.has(mode) {
        return None;
    }
    let levels = depth.levels();
    let mut out = BytesMut::with_capacity(match mode {
        Mode::Ltp => 160,
        Mode::Quote => 384,
        Mode::Depth => 224 + 96 * levels,
    });
    out.extend_from_slice(br#"{"type":"market_data","symbol":"#);
    put_str(&mut out, &instrument.symbol);
    out.extend_from_slice(b",\"exchange\":");
    put_str(&mut out, &instrument.exchange);
    out.extend_from_slice(b",\"mode\":");
    put_int(&mut out, mode.number());
    out.extend_from_slice(b",\"data\":{");
    match (mode, &state.last, &state.quote, &state.book) {
        (Mode::Ltp, Some(last), _, _) => ltp_data(&mut out, style, last),
        (Mode::Quote, _, Some(quote), _) => quote_data(&mut out, style, quote),
        (Mode::Depth, last, _, Some(book)) => depth_data(&mut out, last.as_ref(), book, levels),
        // `has` checked above.
        _ => return None,
    }
    out.put_u8(b'}');
    if style == ReplyStyle::Openalgo {
        out.extend_from_slice(b",\"broker\":");
        put_str(&mut out, state.broker(mode));
    }
    out.put_u8(b'}');
    Some(out.freeze())
}

fn field(out: &mut BytesMut, key: &str, first: bool) {
    if !first {
        out.put_u8(b',');
    }
    put_key(out, key);
}

fn ltp_data(out: &mut BytesMut, style: ReplyStyle, last: &Trade) {
    field(out, "ltp", true);
    put_price(out, last.price);
    if style == ReplyStyle::Openalgo {
        field(out, "ltt", false);
        put_int(out, last.timestamp_ms);
    }
    field(out, "timestamp", false);
    put_int(out, last.timestamp_ms);
}

fn quote_data(out: &mut BytesMut, style: ReplyStyle, tick: &PriceTick) {
    field(out, "ltp", true);
    put_price(out, tick.price);
    for (key, v) in [
        ("open", tick.open),
        ("high", tick.high),
        ("low", tick.low),
        ("close", tick.prev_close),
    ] {
        field(out, key, false);
        put_price(out, v);
    }
    field(out, "volume", false);
    put_qty(out, tick.session_volume);
    field(out, "bid", false);
    put_price(out, tick.bid);
    field(out, "ask", false);
    put_price(out, tick.ask);
    field(out, "bid_qty", false);
    put_qty(out, tick.bid_quantity);
    field(out, "ask_qty", false);
    put_qty(out, tick.ask_quantity);
    if style == ReplyStyle::Openalgo {
        field(out, "last_trade_quantity", false);
        put_qty(out, tick.last_quantity);
        let (change, percent) = change(tick);
        field(out, "change", false);
        put_price(out, change);
        field(out, "change_percent", false);
        put_price(out, percent);
    }
    field(out, "timestamp", false);
    put_int(out, tick.timestamp_ms);
}

/// The change from the previous close and in percent of it, rounded to 1e-4 (0 when
/// the close is unknown).
fn change(tick: &PriceTick) -> (f64, f64) {
    if tick.prev_close == 0.0 || !tick.prev_close.is_finite() {
        return (0.0, 0.0);
    }
    let round = |v: f64| (v * 10_000.0).round() / 10_000.0;
    let change = tick.price - tick.prev_close;
    (round(change), round(change / tick.prev_close * 100.0))
}

fn depth_data(out: &mut BytesMut, last: Option<&Trade>, book: &OrderBook, levels: usize) {
    if let Some(last) = last {
        put_key(out, "ltp");
        put_price(out, last.price);
        out.put_u8(b',');
    }
    out.extend_from_slice(br#""depth":{"buy":"#);
    put_levels(out, &book.bids, levels);
    out.extend_from_slice(b",\"sell\":");
    put_levels(out, &book.asks, levels);
    out.extend_from_slice(b"},\"timestamp\":");
    put_int(out, book.timestamp_ms);
}

fn put_levels(out: &mut BytesMut, side: &[Level], levels: usize) {
    out.put_u8(b'[');
    for (i, level) in side.iter().take(levels).enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.extend_from_slice(b"{\"price\":");
        put_price(out, level.price);
        out.extend_from_slice(b",\"quantity\":");
        put_qty(out, level.quantity);
        out.extend_from_slice(b",\"orders\":");
        put_int(out, level.orders);
        out.put_u8(b'}');
    }
    out.put_u8(b']');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;

    fn infy() -> Instrument {
        Instrument::new("INFY", "NSE")
    }

    fn quote() -> PriceTick {
        PriceTick {
            instrument: infy(),
            price: 1900.0,
            last_quantity: 3.0,
            bid: 1899.95,
            bid_quantity: 40.0,
            ask: 1900.05,
            ask_quantity: 60.0,
            open: 1880.0,
            high: 1910.0,
            low: 1875.0,
            prev_close: 1890.0,
            change_24h_pct: 0.53,
            volume_24h: None,
            session_volume: 120_000.0,
            source: "synthetic".into(),
            timestamp_ms: 1_000,
        }
    }

    fn trade(price: f64, timestamp_ms: i64) -> Trade {
        Trade {
            instrument: infy(),
            price,
            quantity: None,
            source: Arc::from("zmq"),
            timestamp_ms,
        }
    }

    fn book(best_bid: f64, timestamp_ms: i64) -> OrderBook {
        let level = |price| Level {
            price,
            quantity: 10.0,
            orders: 1,
        };
        OrderBook {
            instrument: infy(),
            bids: vec![level(best_bid), level(best_bid - 0.05)],
            asks: vec![level(best_bid + 0.1), level(best_bid + 0.15)],
            source: "synthetic".into(),
            timestamp_ms,
        }
    }

    /// The `data` object of the `mode` message, parsed.
    fn data(state: &MarketState, mode: Mode) -> Option<Value> {
        let bytes = encode_market_data(ReplyStyle::Openalgo, &infy(), mode, Depth::Five, state)?;
        let mut msg: Value = serde_json::from_slice(&bytes).unwrap();
        Some(msg["data"].take())
    }

    #[test]
    fn a_trade_alone_serves_ltp_and_nothing_else() {
        let mut state = MarketState::default();
        let kind = state.apply(&Update::Trade(trade(777.0, 2_000)));
        assert_eq!(kind, Some(UpdateKind::Trade));
        assert!(state.has(Mode::Ltp));
        // A price is not a quote: no quote of zeros is made up from it.
        assert!(!state.has(Mode::Quote) && state.quote().is_none());
        assert!(!state.has(Mode::Depth));
        assert_eq!(data(&state, Mode::Quote), None);
        let ltp = data(&state, Mode::Ltp).unwrap();
        assert_eq!(ltp["ltp"], 777.0);
        assert_eq!(ltp["timestamp"], 2_000);
    }

    #[test]
    fn a_trade_merges_its_price_into_the_cached_quote() {
        let mut state = MarketState::default();
        state.apply(&Update::Tick(quote()));
        state.apply(&Update::Trade(trade(1905.5, 2_000)));
        let q = state.quote().unwrap();
        assert_eq!((q.price, q.timestamp_ms), (1905.5, 2_000));
        // Everything else is the quote's.
        assert_eq!(
            (q.bid, q.ask, q.open, q.high, q.low, q.prev_close),
            (1899.95, 1900.05, 1880.0, 1910.0, 1875.0, 1890.0)
        );
        assert_eq!((q.session_volume, q.last_quantity), (120_000.0, 3.0));
        let data = data(&state, Mode::Quote).unwrap();
        assert_eq!(data["ltp"], 1905.5);
        assert_eq!(data["bid"], 1899.95);
        assert_eq!(data["volume"], 120_000);
        assert_eq!(data["change"], 15.5);
        assert_eq!(state.last().unwrap().price, 1905.5);
        // The quote keeps its broker; the LTP names the trade's.
        assert_eq!(state.broker(Mode::Quote), "synthetic");
        assert_eq!(state.broker(Mode::Ltp), "zmq");
    }

    #[test]
    fn a_quote_replaces_the_quote_and_keeps_the_book() {
        let mut state = MarketState::default();
        state.apply(&Update::Book(book(1899.9, 500)));
        let kind = state.apply(&Update::Tick(quote()));
        assert_eq!(kind, Some(UpdateKind::Tick));
        assert_eq!(state.book(), Some(&book(1899.9, 500)));
        assert_eq!(state.last(), Some(&Trade::of_tick(&quote())));
        let depth = data(&state, Mode::Depth).unwrap();
        assert_eq!(depth["ltp"], 1900.0);
        assert_eq!(depth["depth"]["buy"][0]["price"], 1899.9);
        assert_eq!(depth["timestamp"], 500);
    }

    #[test]
    fn a_trade_keeps_the_book_and_shows_in_depth() {
        let mut state = MarketState::default();
        state.apply(&Update::Book(book(1899.9, 500)));
        // A book without any price yet: no `ltp`.
        let depth = data(&state, Mode::Depth).unwrap();
        assert!(depth.get("ltp").is_none());
        state.apply(&Update::Trade(trade(1901.0, 2_000)));
        assert_eq!(state.book(), Some(&book(1899.9, 500)));
        let depth = data(&state, Mode::Depth).unwrap();
        assert_eq!(depth["ltp"], 1901.0);
        assert_eq!(depth["depth"]["sell"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_book_keeps_the_quote_and_the_last_price() {
        let mut state = MarketState::default();
        state.apply(&Update::Tick(quote()));
        state.apply(&Update::Trade(trade(1902.0, 2_000)));
        let kind = state.apply(&Update::Book(book(1901.9, 3_000)));
        assert_eq!(kind, Some(UpdateKind::Book));
        assert_eq!(state.quote().unwrap().price, 1902.0);
        assert_eq!(state.quote().unwrap().bid, 1899.95);
        assert_eq!(state.last().unwrap().price, 1902.0);
    }

    #[test]
    fn a_new_quote_wins_over_merged_trades() {
        let mut state = MarketState::default();
        state.apply(&Update::Tick(quote()));
        state.apply(&Update::Trade(trade(1950.0, 2_000)));
        let newer = PriceTick {
            price: 1899.0,
            bid: 1898.95,
            timestamp_ms: 3_000,
            ..quote()
        };
        state.apply(&Update::Tick(newer.clone()));
        assert_eq!(state.quote(), Some(&newer));
        assert_eq!(state.last().unwrap().price, 1899.0);
        assert_eq!(state.broker(Mode::Ltp), "synthetic");
    }

    #[test]
    fn other_updates_change_nothing() {
        let mut state = MarketState::default();
        let signal = Update::Signal(tickwire_model::Signal {
            instrument: infy(),
            indicator: "rsi".into(),
            direction: tickwire_model::SignalDirection::Buy,
            value: 25.0,
            confidence: 0.8,
            timestamp_ms: 1,
        });
        assert_eq!(state.apply(&signal), None);
        assert_eq!(state, MarketState::default());
    }
}
