//! Bus payloads: the broker adapters' JSON, mapped to canonical ticks and books.
//!
//! The keys follow the reference broker adapters (`ltp`, `open`/`high`/`low`/`close`
//! or an `ohlc` object, `volume`, `last_trade_quantity`, `bid`/`ask` and their
//! quantities, `depth: {buy: [{price, quantity, orders}], sell: [...]}`, `ltt`,
//! `timestamp`), with the common aliases of the individual brokers (`last_price`,
//! `volume_traded`, `ltq`, `qty`, ...). Numbers may be JSON numbers or numeric strings.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use tickwire_model::{Instrument, Level, OrderBook, PriceTick, Trade, Update};

use crate::topic::{BusMode, BusTopic, parse_topic};

/// The most levels a side of a book keeps; deeper levels are ignored.
pub const MAX_LEVELS: usize = 50;

/// Why a bus message produced no update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// An account-event or cache-control topic sharing the bus: skipped quietly.
    NotMarketData,
    /// A malformed message (log it): bad topic, bad JSON, no price nor book.
    Malformed(&'static str),
}

/// Turns bus messages into [`Update`]s. Sans-IO: the caller passes the receive time
/// for payloads without one.
///
/// An update says what the message carried:
///
/// - a message on an `_LTP` topic, or one that carries a price and no quote figure
///   (no OHLC, volume, bid/ask or their quantities), is an [`Update::Trade`]: the
///   price, the trade's quantity if given, and the time. Consumers merge it into the
///   quote they hold; it never becomes a quote of zeros;
/// - a message with quote figures is an [`Update::Tick`]. The decoder keeps each
///   instrument's last quote from the bus, so a message carrying only some figures
///   updates those and keeps the rest; figures the bus never sent are 0 (the model's
///   "unknown"), and the change is computed from the previous close when there is one;
/// - a `depth` object on a `_QUOTE` or `_DEPTH` topic is also an [`Update::Book`]
///   (after the tick or trade); its best levels stand in for a missing bid/ask.
#[derive(Debug, Default)]
pub struct BusDecoder {
    /// The source of updates from topics without a broker prefix.
    default_source: Arc<str>,
    ticks: HashMap<Instrument, PriceTick>,
    sources: HashMap<String, Arc<str>>,
}

impl BusDecoder {
    /// A decoder labelling updates from unprefixed topics with `default_source`.
    pub fn new(default_source: impl Into<Arc<str>>) -> Self {
        BusDecoder {
            default_source: default_source.into(),
            ..BusDecoder::default()
        }
    }

    /// Maps one two-frame message. A message with both price figures and a book gives
    /// a tick followed by a book.
    pub fn decode(
        &mut self,
        topic: &[u8],
        payload: &[u8],
        now_ms: i64,
    ) -> Result<Vec<Update>, Skipped> {
        let topic =
            std::str::from_utf8(topic).map_err(|_| Skipped::Malformed("topic is not UTF-8"))?;
        let topic = parse_topic(topic).map_err(|why| match why {
            "control topic" => Skipped::NotMarketData,
            why => Skipped::Malformed(why),
        })?;
        let Value::Object(data) = serde_json::from_slice::<Value>(payload).map_err(|e| {
            if e.to_string().starts_with("number out of range") {
                Skipped::Malformed("a number is out of the range of a double (as 1e309)")
            } else {
                Skipped::Malformed("payload is not JSON")
            }
        })?
        else {
            return Err(Skipped::Malformed("payload is not a JSON object"));
        };
        self.map(&topic, &data, now_ms)
    }

    fn source(&mut self, topic: &BusTopic) -> Arc<str> {
        match &topic.broker {
            None => Arc::clone(&self.default_source),
            Some(broker) => Arc::clone(
                self.sources
                    .entry(broker.clone())
                    .or_insert_with(|| Arc::from(broker.as_str())),
            ),
        }
    }

    fn map(
        &mut self,
        topic: &BusTopic,
        data: &Map<String, Value>,
        now_ms: i64,
    ) -> Result<Vec<Update>, Skipped> {
        let source = self.source(topic);
        let timestamp_ms = ["ltt", "exchange_timestamp", "last_trade_time", "timestamp"]
            .iter()
            .find_map(|k| data.get(*k).and_then(millis))
            .unwrap_or(now_ms);
        let book = match data.get("depth").and_then(Value::as_object) {
            Some(depth) => {
                let side = |key| depth.get(key).map_or(Ok(Vec::new()), levels);
                Some(OrderBook {
                    instrument: topic.instrument.clone(),
                    bids: side("buy")?,
                    asks: side("sell")?,
                    source: Arc::clone(&source),
                    timestamp_ms,
                })
            }
            None => None,
        };

        let ohlc = data.get("ohlc").and_then(Value::as_object);
        let get = |keys: &[&str]| keys.iter().find_map(|k| data.get(*k).and_then(number));
        let get_ohlc = |key: &str| get(&[key]).or_else(|| ohlc?.get(key).and_then(number));
        let ltp = get(&["ltp", "last_price", "lp"]);
        let fields = TickFields {
            open: get_ohlc("open"),
            high: get_ohlc("high"),
            low: get_ohlc("low"),
            close: get_ohlc("close"),
            volume: get(&["volume", "volume_traded", "vol"]),
            last_quantity: get(&[
                "last_trade_quantity",
                "last_traded_quantity",
                "ltq",
                "last_quantity",
            ]),
            bid: get(&["bid", "best_bid_price", "bid_price"])
                .or_else(|| book.as_ref()?.bids.first().map(|l| l.price)),
            bid_quantity: get(&["bid_qty", "bid_quantity", "best_bid_quantity"])
                .or_else(|| book.as_ref()?.bids.first().map(|l| l.quantity)),
            ask: get(&["ask", "best_ask_price", "ask_price"])
                .or_else(|| book.as_ref()?.asks.first().map(|l| l.price)),
            ask_quantity: get(&["ask_qty", "ask_quantity", "best_ask_quantity"])
                .or_else(|| book.as_ref()?.asks.first().map(|l| l.quantity)),
        };

        fields.check(ltp)?;

        let mut updates = Vec::with_capacity(2);
        let instrument = &topic.instrument;
        if topic.mode == BusMode::Ltp || !fields.any_quote() {
            // Only a price (an LTP topic carries nothing else): a trade, which the
            // consumers merge into the quote they hold, never a quote of zeros.
            if let Some(price) = ltp {
                let trade = Trade {
                    instrument: instrument.clone(),
                    price,
                    quantity: fields.last_quantity,
                    source: Arc::clone(&source),
                    timestamp_ms,
                };
                if let Some(last) = self.ticks.get_mut(instrument) {
                    last.apply_trade(&trade);
                }
                updates.push(Update::Trade(trade));
            }
        } else {
            // A quote: it changes the figures it carries and keeps the others.
            let tick = match self.ticks.get_mut(instrument) {
                Some(last) => {
                    fields.apply(last, ltp, timestamp_ms, &source);
                    Some(last.clone())
                }
                None => ltp.map(|price| {
                    let mut tick = PriceTick {
                        instrument: instrument.clone(),
                        price,
                        last_quantity: 0.0,
                        bid: 0.0,
                        bid_quantity: 0.0,
                        ask: 0.0,
                        ask_quantity: 0.0,
                        open: 0.0,
                        high: 0.0,
                        low: 0.0,
                        prev_close: 0.0,
                        change_24h_pct: 0.0,
                        volume_24h: None,
                        session_volume: 0.0,
                        source: Arc::clone(&source),
                        timestamp_ms,
                    };
                    fields.apply(&mut tick, Some(price), timestamp_ms, &source);
                    self.ticks.insert(instrument.clone(), tick.clone());
                    tick
                }),
            };
            updates.extend(tick.map(Update::Tick));
        }
        // An LTP topic carries no book; the others do when they have a `depth`.
        if let Some(book) = book.filter(|_| topic.mode != BusMode::Ltp) {
            updates.push(Update::Book(book));
        }
        if updates.is_empty() {
            return Err(Skipped::Malformed("no price and no depth"));
        }
        Ok(updates)
    }
}

#[derive(Debug, Clone, Copy)]
struct TickFields {
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    close: Option<f64>,
    volume: Option<f64>,
    last_quantity: Option<f64>,
    bid: Option<f64>,
    bid_quantity: Option<f64>,
    ask: Option<f64>,
    ask_quantity: Option<f64>,
}

impl TickFields {
    /// Refuses values no market has: a last price of zero or less, negative
    /// prices or quantities (zero is the model's "unknown").
    fn check(&self, ltp: Option<f64>) -> Result<(), Skipped> {
        if ltp.is_some_and(|p| p <= 0.0) {
            return Err(Skipped::Malformed("ltp must be greater than zero"));
        }
        let prices = [
            self.open, self.high, self.low, self.close, self.bid, self.ask,
        ];
        if prices.iter().flatten().any(|p| *p < 0.0) {
            return Err(Skipped::Malformed("a price is negative"));
        }
        let quantities = [
            self.volume,
            self.last_quantity,
            self.bid_quantity,
            self.ask_quantity,
        ];
        if quantities.iter().flatten().any(|q| *q < 0.0) {
            return Err(Skipped::Malformed("a volume or quantity is negative"));
        }
        Ok(())
    }

    /// Whether the message carries a quote figure (the last quantity belongs to the
    /// trade, not to the quote).
    fn any_quote(&self) -> bool {
        [
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.bid,
            self.bid_quantity,
            self.ask,
            self.ask_quantity,
        ]
        .iter()
        .any(Option::is_some)
    }

    fn apply(&self, tick: &mut PriceTick, ltp: Option<f64>, timestamp_ms: i64, source: &Arc<str>) {
        let set = |slot: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut tick.price, ltp);
        set(&mut tick.open, self.open);
        set(&mut tick.high, self.high);
        set(&mut tick.low, self.low);
        set(&mut tick.prev_close, self.close);
        set(&mut tick.session_volume, self.volume);
        set(&mut tick.last_quantity, self.last_quantity);
        set(&mut tick.bid, self.bid);
        set(&mut tick.bid_quantity, self.bid_quantity);
        set(&mut tick.ask, self.ask);
        set(&mut tick.ask_quantity, self.ask_quantity);
        if tick.prev_close != 0.0 {
            tick.change_24h_pct = (tick.price - tick.prev_close) / tick.prev_close * 100.0;
        }
        tick.timestamp_ms = timestamp_ms;
        if !Arc::ptr_eq(&tick.source, source) {
            tick.source = Arc::clone(source);
        }
    }
}

/// A finite number, from a JSON number or a numeric string.
fn number(v: &Value) -> Option<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// Milliseconds since the epoch from seconds, milliseconds or microseconds.
fn millis(v: &Value) -> Option<i64> {
    let n = number(v)?;
    let ms = if n.abs() < 1e11 {
        n * 1000.0
    } else if n.abs() < 1e14 {
        n
    } else {
        n / 1000.0
    };
    // In range by the checks: at most ~1e17 / 1000 after the last division... or 1e14.
    (ms.abs() < 9.0e15).then_some(ms as i64)
}

/// The levels of one side of a `depth` object (items without a price, and
/// empty slots of price 0, as brokers send for a shallow book, are left
/// out); a negative price or quantity refuses the message.
fn levels(side: &Value) -> Result<Vec<Level>, Skipped> {
    let Some(items) = side.as_array() else {
        return Ok(Vec::new());
    };
    let levels: Vec<Level> = items
        .iter()
        .filter_map(|item| {
            let item = item.as_object()?;
            let price = item.get("price").and_then(number).filter(|p| *p != 0.0)?;
            let quantity = ["quantity", "qty"]
                .iter()
                .find_map(|k| item.get(*k).and_then(number))
                .unwrap_or(0.0);
            let orders = ["orders", "order_count", "no_of_orders"]
                .iter()
                .find_map(|k| item.get(*k).and_then(number))
                .filter(|n| *n >= 0.0 && *n <= f64::from(u32::MAX))
                // In range by the filter.
                .map_or(0, |n| n as u32);
            Some(Level {
                price,
                quantity,
                orders,
            })
        })
        .take(MAX_LEVELS)
        .collect();
    if levels.iter().any(|l| l.price < 0.0 || l.quantity < 0.0) {
        return Err(Skipped::Malformed(
            "a depth level's price or quantity is negative",
        ));
    }
    Ok(levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(d: &mut BusDecoder, topic: &str, json: &str) -> Result<Vec<Update>, Skipped> {
        d.decode(topic.as_bytes(), json.as_bytes(), 1_000_000_000_000)
    }

    fn tick(u: &Update) -> &PriceTick {
        match u {
            Update::Tick(t) => t,
            other => panic!("tick expected, got {other:?}"),
        }
    }

    #[test]
    fn quote_payload_maps_to_a_tick() {
        let mut d = BusDecoder::new("zmq");
        let updates = decode(
            &mut d,
            "NSE_RELIANCE_QUOTE",
            r#"{"ltp":2850.5,"open":2820,"high":2860,"low":2815,"close":2848.25,"volume":1500000,
                "bid":2850.45,"ask":2850.55,"bid_qty":500,"ask_qty":750,"last_trade_quantity":"25",
                "timestamp":1748353658856,"symbol":"RELIANCE","exchange":"NSE","mode":2}"#,
        )
        .unwrap();
        assert_eq!(updates.len(), 1);
        let t = tick(&updates[0]);
        assert_eq!(t.instrument, Instrument::new("RELIANCE", "NSE"));
        assert_eq!(
            (t.price, t.open, t.high, t.low, t.prev_close),
            (2850.5, 2820.0, 2860.0, 2815.0, 2848.25)
        );
        assert_eq!(
            (t.bid, t.ask, t.bid_quantity, t.ask_quantity),
            (2850.45, 2850.55, 500.0, 750.0)
        );
        assert_eq!((t.session_volume, t.last_quantity), (1_500_000.0, 25.0));
        assert_eq!(t.timestamp_ms, 1_748_353_658_856);
        assert_eq!(&*t.source, "zmq");
        assert!((t.change_24h_pct - 0.078_996).abs() < 1e-5);
    }

    fn trade(u: &Update) -> &Trade {
        match u {
            Update::Trade(t) => t,
            other => panic!("trade expected, got {other:?}"),
        }
    }

    #[test]
    fn ltp_messages_are_trades_not_quotes() {
        let mut d = BusDecoder::new("zmq");
        // The first message of an instrument: a price, never a quote of zeros.
        let updates = decode(
            &mut d,
            "zerodha_NSE_TCS_LTP",
            r#"{"last_price":"10.5","ltt":1748353658,"last_trade_quantity":4}"#,
        )
        .unwrap();
        assert_eq!(
            updates,
            [Update::Trade(Trade {
                instrument: Instrument::new("TCS", "NSE"),
                price: 10.5,
                quantity: Some(4.0),
                // The broker prefix is the source; seconds become milliseconds.
                source: "zerodha".into(),
                timestamp_ms: 1_748_353_658_000,
            })]
        );
        // An LTP topic is a trade whatever else the payload holds; no book either.
        let updates = decode(
            &mut d,
            "NSE_TCS_LTP",
            r#"{"ltp":11,"bid":10.9,"depth":{"buy":[{"price":10.9,"quantity":1}],"sell":[]}}"#,
        )
        .unwrap();
        assert_eq!(updates.len(), 1);
        let t = trade(&updates[0]);
        assert_eq!((t.price, t.quantity), (11.0, None));
        // No time in the payload: the receive time.
        assert_eq!(t.timestamp_ms, 1_000_000_000_000);
        // A price alone on a QUOTE topic is a trade too.
        let updates = decode(&mut d, "NSE_INFY_QUOTE", r#"{"ltp":1500.25}"#).unwrap();
        assert_eq!(trade(&updates[0]).price, 1500.25);
    }

    #[test]
    fn quotes_keep_the_figures_a_message_does_not_carry() {
        let mut d = BusDecoder::new("zmq");
        decode(
            &mut d,
            "NSE_TCS_QUOTE",
            r#"{"ltp":10,"ohlc":{"open":9,"high":11,"low":8,"close":9.5},"volume_traded":7}"#,
        )
        .unwrap();
        // A trade in between moves the kept quote's price.
        decode(&mut d, "NSE_TCS_LTP", r#"{"ltp":10.25}"#).unwrap();
        let updates = decode(&mut d, "NSE_TCS_QUOTE", r#"{"bid":10.2,"ask":10.3}"#).unwrap();
        let t = tick(&updates[0]);
        assert_eq!(
            (
                t.price,
                t.open,
                t.high,
                t.low,
                t.prev_close,
                t.session_volume
            ),
            (10.25, 9.0, 11.0, 8.0, 9.5, 7.0)
        );
        assert_eq!((t.bid, t.ask), (10.2, 10.3));
        // A quote without any price yet is nothing to show.
        assert_eq!(
            decode(&mut d, "NSE_X_QUOTE", r#"{"bid":1}"#),
            Err(Skipped::Malformed("no price and no depth"))
        );
    }

    #[test]
    fn depth_payload_maps_to_a_tick_and_a_book() {
        let mut d = BusDecoder::new("zmq");
        let updates = decode(
            &mut d,
            "NSE_INDEX_NIFTY_50_DEPTH",
            r#"{"ltp":24000.5,"depth":{"buy":[{"price":24000,"quantity":75,"orders":3},{"price":23999.5,"qty":"10"},{"quantity":5}],
                "sell":[{"price":24001,"quantity":50,"orders":-1}]},"timestamp":1748353658900123}"#,
        )
        .unwrap();
        assert_eq!(updates.len(), 2);
        let t = tick(&updates[0]);
        // Best bid and ask from the book when the payload has none.
        assert_eq!(
            (t.bid, t.bid_quantity, t.ask, t.ask_quantity),
            (24000.0, 75.0, 24001.0, 50.0)
        );
        let Update::Book(book) = &updates[1] else {
            panic!("book expected")
        };
        assert_eq!(book.instrument, Instrument::new("NIFTY_50", "NSE_INDEX"));
        assert_eq!(
            book.bids,
            [
                Level {
                    price: 24000.0,
                    quantity: 75.0,
                    orders: 3
                },
                Level {
                    price: 23999.5,
                    quantity: 10.0,
                    orders: 0
                }
            ]
        );
        assert_eq!(
            book.asks,
            [Level {
                price: 24001.0,
                quantity: 50.0,
                orders: 0
            }]
        );
        // Microseconds become milliseconds.
        assert_eq!(book.timestamp_ms, 1_748_353_658_900);

        // A book without any price yet: the book alone.
        let updates = decode(
            &mut d,
            "NSE_INFY_DEPTH",
            r#"{"depth":{"buy":[],"sell":[]}}"#,
        )
        .unwrap();
        assert!(matches!(updates.as_slice(), [Update::Book(_)]));
        let levels: Vec<String> = (0..80)
            .map(|i| format!(r#"{{"price":{},"quantity":1}}"#, i + 1))
            .collect();
        let json = format!(r#"{{"depth":{{"buy":[{}],"sell":[]}}}}"#, levels.join(","));
        let updates = decode(&mut d, "NSE_INFY_DEPTH", &json).unwrap();
        let Update::Book(book) = &updates[0] else {
            panic!("book expected")
        };
        assert_eq!(book.bids.len(), MAX_LEVELS);
    }

    #[test]
    fn malformed_messages_are_skipped() {
        let mut d = BusDecoder::new("zmq");
        for (topic, json, why) in [
            (
                "NSE_X_LTP",
                "not json",
                Skipped::Malformed("payload is not JSON"),
            ),
            (
                "NSE_X_LTP",
                "[1]",
                Skipped::Malformed("payload is not a JSON object"),
            ),
            (
                "NSE_X_LTP",
                "{}",
                Skipped::Malformed("no price and no depth"),
            ),
            (
                "NSE_X_LTP",
                r#"{"ltp":"abc"}"#,
                Skipped::Malformed("no price and no depth"),
            ),
            (
                "NSE_X_LTP",
                r#"{"ltp":null}"#,
                Skipped::Malformed("no price and no depth"),
            ),
            (
                "NSE_X_FULL",
                r#"{"ltp":1}"#,
                Skipped::Malformed("unknown mode (expected LTP, QUOTE or DEPTH)"),
            ),
            ("zerodha_orders", r#"{"order":1}"#, Skipped::NotMarketData),
            // Values no market has.
            (
                "NSE_X_LTP",
                r#"{"ltp":1e309}"#,
                Skipped::Malformed("a number is out of the range of a double (as 1e309)"),
            ),
            (
                "NSE_X_LTP",
                r#"{"ltp":0}"#,
                Skipped::Malformed("ltp must be greater than zero"),
            ),
            (
                "NSE_X_QUOTE",
                r#"{"ltp":-5,"volume":1}"#,
                Skipped::Malformed("ltp must be greater than zero"),
            ),
            (
                "NSE_X_QUOTE",
                r#"{"ltp":5,"bid":-1}"#,
                Skipped::Malformed("a price is negative"),
            ),
            (
                "NSE_X_QUOTE",
                r#"{"ltp":5,"volume":"-3"}"#,
                Skipped::Malformed("a volume or quantity is negative"),
            ),
            (
                "NSE_X_DEPTH",
                r#"{"depth":{"buy":[{"price":-1,"quantity":1}],"sell":[]}}"#,
                Skipped::Malformed("a depth level's price or quantity is negative"),
            ),
        ] {
            assert_eq!(decode(&mut d, topic, json), Err(why), "{topic} {json}");
        }
        assert_eq!(
            d.decode(&[0xff, b'_', b'X'], b"{}", 0),
            Err(Skipped::Malformed("topic is not UTF-8"))
        );
        // Empty slots of a shallow book (price 0) are left out.
        let updates = decode(
            &mut d,
            "NSE_Z_DEPTH",
            r#"{"depth":{"buy":[{"price":10,"quantity":1},{"price":0,"quantity":0}],"sell":[]}}"#,
        )
        .unwrap();
        let Update::Book(book) = &updates[0] else {
            panic!("book expected")
        };
        assert_eq!(book.bids.len(), 1);
        // Huge or odd numbers never panic.
        for json in [
            r#"{"ltp":1e308,"timestamp":1e308}"#,
            r#"{"ltp":1,"timestamp":-1e300}"#,
            r#"{"ltp":1,"depth":{"buy":[{"price":1,"orders":1e20}]}}"#,
        ] {
            assert!(decode(&mut d, "NSE_Y_QUOTE", json).is_ok(), "{json}");
        }
    }
}
