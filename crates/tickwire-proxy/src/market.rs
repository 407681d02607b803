//! The last-value cache of an instrument and the `market_data` encoders.

use bytes::{BufMut, Bytes, BytesMut};
use tickwire_model::{Instrument, Level, OrderBook, PriceTick, Update};

use crate::json::{put_int, put_key, put_price, put_qty, put_str};
use crate::{Depth, Mode, ReplyStyle, UpdateKind};

/// The latest tick and book of one instrument: the last-value cache.
///
/// The gateway keeps one per instrument, [`apply`](MarketState::apply)s every
/// update to it, and encodes each topic the update feeds from it with
/// [`encode_market_data`]. A new subscriber gets the current value from it at
/// once; the REST polls (`get_ltp`, `get_quote`, `get_depth`) answer from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarketState {
    /// The latest price tick, if any arrived.
    pub tick: Option<PriceTick>,
    /// The latest order book, if any arrived.
    pub book: Option<OrderBook>,
}

impl MarketState {
    /// Stores a tick or a book and says which it was; other updates change nothing
    /// and give `None`.
    pub fn apply(&mut self, update: &Update) -> Option<UpdateKind> {
        match update {
            Update::Tick(tick) => {
                self.tick = Some(tick.clone());
                Some(UpdateKind::Tick)
            }
            Update::Book(book) => {
                self.book = Some(book.clone());
                Some(UpdateKind::Book)
            }
            _ => None,
        }
    }

    /// Whether the state holds what a `mode` message needs: a tick for LTP and
    /// Quote, a book for Depth.
    pub fn has(&self, mode: Mode) -> bool {
        match mode {
            Mode::Ltp | Mode::Quote => self.tick.is_some(),
            Mode::Depth => self.book.is_some(),
        }
    }

    /// The broker that produced the data a `mode` message shows (the update's `source`).
    fn broker(&self, mode: Mode) -> &str {
        let tick = self.tick.as_ref().map(|t| &*t.source);
        let book = self.book.as_ref().map(|b| &*b.source);
        match mode {
            Mode::Ltp | Mode::Quote => tick.or(book),
            Mode::Depth => book.or(tick),
        }
        .unwrap_or_default()
    }
}

/// Encodes the `market_data` message of one topic from the instrument's state, once
/// for every subscriber of the topic; `None` when the state lacks the data the mode
/// needs (no tick yet for LTP/Quote, no book yet for Depth).
///
/// `{"type":"market_data","symbol":S,"exchange":E,"mode":N,"data":{...}}` with, in
/// the openalgo style, `"broker"` last (the update's `source`). `data` is:
///
/// - LTP: `{"ltp","timestamp"}` (openalgo: `{"ltp","ltt","timestamp"}`);
/// - Quote: the seed's `{"ltp","open","high","low","close","volume","bid","ask",
///   "bid_qty","ask_qty"}` and `"timestamp"`; openalgo adds `"last_trade_quantity"`,
///   `"change"` and `"change_percent"` before `"timestamp"`, which its SDK reads;
/// - Depth: `{"ltp","depth":{"buy":[{"price","quantity","orders"}],"sell":[...]},
///   "timestamp"}` with at most `depth` levels a side (`ltp` only once a tick arrived).
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
    match (mode, &state.tick, &state.book) {
        (Mode::Ltp, Some(tick), _) => ltp_data(&mut out, style, tick),
        (Mode::Quote, Some(tick), _) => quote_data(&mut out, style, tick),
        (Mode::Depth, tick, Some(book)) => depth_data(&mut out, tick.as_ref(), book, levels),
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

fn ltp_data(out: &mut BytesMut, style: ReplyStyle, tick: &PriceTick) {
    field(out, "ltp", true);
    put_price(out, tick.price);
    if style == ReplyStyle::Openalgo {
        field(out, "ltt", false);
        put_int(out, tick.timestamp_ms);
    }
    field(out, "timestamp", false);
    put_int(out, tick.timestamp_ms);
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

fn depth_data(out: &mut BytesMut, tick: Option<&PriceTick>, book: &OrderBook, levels: usize) {
    if let Some(tick) = tick {
        put_key(out, "ltp");
        put_price(out, tick.price);
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
