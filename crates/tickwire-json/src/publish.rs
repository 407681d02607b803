//! The body of the publish API (`POST /api/v1/publish`): one item or an
//! array of items, each a tick, book, signal or raw group payload, turned
//! into [`Update`]s, or an error naming the item and field at fault (nothing
//! of a bad batch is taken).
//!
//! ```json
//! {"kind":"tick","symbol":"BTC/USD","exchange":"CRYPTO","price":67234.5,"bid":67234.0,"ask":67235.0,
//!  "volume":28500000000,"change_24h":2.34,"source":"desk","timestamp":1700000000000}
//! {"kind":"book","symbol":"BTC/USD","bids":[[67230.0,1.5]],"asks":[[67235.0,0.8]]}
//! {"kind":"signal","symbol":"BTC/USD","indicator":"rsi","signal":"buy","value":28.5,"confidence":0.85}
//! {"kind":"raw","group":"blue_SPX_state_gex_zero","data_type":"json","data":{"spot":1}}
//! ```
//!
//! Only `kind`, `symbol` and the figures that make an update (`price`;
//! `bids` and `asks`; `indicator`, `signal`, `value`) are required. `exchange`
//! defaults to the exchange of the known instrument of that symbol
//! ([`Context::known`]), else to `CRYPTO` for a `BASE/QUOTE` pair;
//! `timestamp` (milliseconds) to [`Context::now`]; `source` to `publish`. A
//! `raw` item goes to one pubsub group as it is (`data_type` `text`: a
//! string; `json`: any JSON value; `binary`: base64).
//!
//! [`parse`] reads a well-formed body in one pass; [`explain`] gives the
//! same result by a slower path that can say which item is wrong, and is
//! what [`parse`] falls back to.

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use tickwire_model::{
    GroupName, Hub, Instrument, Level, OrderBook, PriceTick, RawDataType, RawGroupPayload, Signal,
    SignalDirection, Update,
};

/// The source of published ticks and books that name none.
const DEFAULT_SOURCE: &str = "publish";

/// What parsing needs of the server.
pub struct Context<'a> {
    /// The pubsub group prefix (`blue`): a raw item's group must be one of the hubs'.
    pub prefix: &'a str,
    /// The known instrument of a symbol, whose exchange an item that names none takes.
    pub known: &'a dyn Fn(&str) -> Option<Instrument>,
    /// The default timestamp, milliseconds since the UNIX epoch.
    pub now: i64,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("prefix", &self.prefix)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Parses a body into updates, or says what is wrong with it.
///
/// A well-formed body is deserialized straight into typed items, in one pass;
/// only a body that fails goes through a [`serde_json::Value`] as well
/// ([`explain`]), to say which item is wrong and why.
pub fn parse(body: &[u8], cx: &Context<'_>) -> Result<Vec<Update>, String> {
    let typed = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Vec<Item>>(body)
            .ok()
            .filter(|items| !items.is_empty())
            .map(|items| (items, true)),
        Some(b'{') => serde_json::from_slice::<Item>(body)
            .ok()
            .map(|item| (vec![item], false)),
        _ => None,
    };
    let Some((items, batch)) = typed else {
        return explain(body, cx);
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            item.into_update(cx)
                .map_err(|e| if batch { format!("item {i}: {e}") } else { e })
        })
        .collect()
}

/// [`parse`] for a body that does not deserialize as it stands: the same
/// result, with an error naming the item at fault.
pub fn explain(body: &[u8], cx: &Context<'_>) -> Result<Vec<Update>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let item = |value: serde_json::Value| -> Result<Update, String> {
        let item: Item = serde_json::from_value(value).map_err(|e| e.to_string())?;
        item.into_update(cx)
    };
    match value {
        serde_json::Value::Array(items) => {
            if items.is_empty() {
                return Err("the batch is empty".to_owned());
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| item(v).map_err(|e| format!("item {i}: {e}")))
                .collect()
        }
        value @ serde_json::Value::Object(_) => Ok(vec![item(value)?]),
        _ => Err("the body must be a JSON object or an array of objects".to_owned()),
    }
}

/// One item of a publish request.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Item {
    Tick(TickItem),
    Book(BookItem),
    Signal(SignalItem),
    Raw(RawItem),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TickItem {
    symbol: String,
    exchange: Option<String>,
    price: f64,
    bid: Option<f64>,
    ask: Option<f64>,
    volume: Option<f64>,
    change_24h: Option<f64>,
    source: Option<String>,
    timestamp: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BookItem {
    symbol: String,
    exchange: Option<String>,
    bids: Vec<(f64, f64)>,
    asks: Vec<(f64, f64)>,
    source: Option<String>,
    timestamp: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalItem {
    symbol: String,
    exchange: Option<String>,
    indicator: String,
    signal: Direction,
    value: f64,
    confidence: Option<f64>,
    timestamp: Option<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Direction {
    Buy,
    Sell,
    Neutral,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    group: String,
    #[serde(alias = "dataType")]
    data_type: DataType,
    data: serde_json::Value,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DataType {
    Text,
    Json,
    Binary,
}

impl Item {
    fn into_update(self, cx: &Context<'_>) -> Result<Update, String> {
        let now = cx.now;
        match self {
            Item::Tick(t) => {
                let instrument = instrument(cx, t.symbol, t.exchange)?;
                let price = non_negative("price", t.price)?;
                let bid = non_negative("bid", t.bid.unwrap_or(price))?;
                let ask = non_negative("ask", t.ask.unwrap_or(price))?;
                if bid > ask {
                    return Err(format!("`bid` ({bid}) must not be above `ask` ({ask})"));
                }
                let volume = t.volume.map(|v| non_negative("volume", v)).transpose()?;
                Ok(Update::Tick(PriceTick {
                    instrument,
                    price,
                    last_quantity: 0.0,
                    bid,
                    bid_quantity: 0.0,
                    ask,
                    ask_quantity: 0.0,
                    open: price,
                    high: price,
                    low: price,
                    prev_close: price,
                    change_24h_pct: t.change_24h.unwrap_or(0.0),
                    volume_24h: volume,
                    session_volume: volume.unwrap_or(0.0),
                    source: t.source.as_deref().unwrap_or(DEFAULT_SOURCE).into(),
                    timestamp_ms: t.timestamp.unwrap_or(now),
                }))
            }
            Item::Book(b) => {
                let instrument = instrument(cx, b.symbol, b.exchange)?;
                let mut bids = levels("bids", &b.bids)?;
                let mut asks = levels("asks", &b.asks)?;
                // Best first: bids highest, asks lowest.
                bids.sort_by(|x, y| y.price.total_cmp(&x.price));
                asks.sort_by(|x, y| x.price.total_cmp(&y.price));
                Ok(Update::Book(OrderBook {
                    instrument,
                    bids,
                    asks,
                    source: b.source.as_deref().unwrap_or(DEFAULT_SOURCE).into(),
                    timestamp_ms: b.timestamp.unwrap_or(now),
                }))
            }
            Item::Signal(s) => {
                let instrument = instrument(cx, s.symbol, s.exchange)?;
                let indicator = s.indicator.trim().to_ascii_lowercase();
                if indicator.is_empty() || indicator.len() > 64 {
                    return Err("`indicator` must be 1 to 64 characters".to_owned());
                }
                let confidence = s.confidence.unwrap_or(1.0);
                if !(0.0..=1.0).contains(&confidence) {
                    return Err(format!(
                        "`confidence` ({confidence}) must be within 0 and 1"
                    ));
                }
                Ok(Update::Signal(Signal {
                    instrument,
                    indicator: indicator.into(),
                    direction: match s.signal {
                        Direction::Buy => SignalDirection::Buy,
                        Direction::Sell => SignalDirection::Sell,
                        Direction::Neutral => SignalDirection::Neutral,
                    },
                    value: s.value,
                    confidence,
                    timestamp_ms: s.timestamp.unwrap_or(now),
                }))
            }
            Item::Raw(r) => raw(cx, r),
        }
    }
}

/// The instrument `symbol` on `exchange`, or on the exchange of the known
/// instrument of that symbol, or `CRYPTO` for a pair.
fn instrument(
    cx: &Context<'_>,
    symbol: String,
    exchange: Option<String>,
) -> Result<Instrument, String> {
    let symbol = symbol.trim();
    if symbol.is_empty() || symbol.len() > 64 || symbol.contains(char::is_whitespace) {
        return Err("`symbol` must be 1 to 64 characters without spaces".to_owned());
    }
    match exchange {
        Some(exchange) => {
            let exchange = exchange.trim();
            if exchange.is_empty() || exchange.len() > 32 || exchange.contains([':', ' ']) {
                return Err(
                    "`exchange` must be 1 to 32 characters without spaces or ':'".to_owned(),
                );
            }
            Ok(Instrument::new(symbol, exchange))
        }
        None => match (cx.known)(symbol) {
            Some(known) => Ok(known),
            None if symbol.contains('/') => Ok(Instrument::crypto(symbol)),
            None => Err(format!(
                "missing field `exchange`: {symbol:?} is not a known instrument"
            )),
        },
    }
}

fn non_negative(field: &str, value: f64) -> Result<f64, String> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(format!("`{field}` must be a non-negative number"))
    }
}

fn levels(field: &str, levels: &[(f64, f64)]) -> Result<Vec<Level>, String> {
    levels
        .iter()
        .map(|&(price, quantity)| {
            Ok(Level {
                price: non_negative(field, price)?,
                quantity: non_negative(field, quantity)?,
                orders: 0,
            })
        })
        .collect()
}

fn raw(cx: &Context<'_>, r: RawItem) -> Result<Update, String> {
    let prefix = cx.prefix;
    if !Hub::ALL
        .into_iter()
        .any(|hub| GroupName::parse(prefix, hub, &r.group).is_some())
    {
        return Err(format!(
            "`group` {:?} is not a group of any hub ({prefix}_{{TICKER}}_{{kind}}_{{category}})",
            r.group
        ));
    }
    let (data, data_type) = match (r.data_type, r.data) {
        (DataType::Text, serde_json::Value::String(text)) => (Bytes::from(text), RawDataType::Text),
        (DataType::Text, _) => return Err("`data` of data_type text must be a string".to_owned()),
        (DataType::Json, value) => (
            Bytes::from(serde_json::to_vec(&value).map_err(|e| e.to_string())?),
            RawDataType::Json,
        ),
        (DataType::Binary, serde_json::Value::String(b64)) => (
            base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map(Bytes::from)
                .map_err(|e| format!("`data` of data_type binary is not base64: {e}"))?,
            RawDataType::Binary,
        ),
        (DataType::Binary, _) => {
            return Err("`data` of data_type binary must be a base64 string".to_owned());
        }
    };
    Ok(Update::Raw(RawGroupPayload {
        group: r.group.into(),
        data,
        data_type,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symbol table of `instruments` (the first of a symbol wins).
    #[derive(Default)]
    struct Market(Vec<Instrument>);

    impl Market {
        fn new() -> Market {
            Market::default()
        }

        fn learn(&mut self, instrument: &Instrument) {
            self.0.push(instrument.clone());
        }

        fn by_symbol(&self, symbol: &str) -> Option<Instrument> {
            self.0.iter().find(|i| &*i.symbol == symbol).cloned()
        }
    }

    fn parse_with(body: &str, market: &Market) -> Result<Vec<Update>, String> {
        let known = |s: &str| market.by_symbol(s);
        let cx = Context {
            prefix: "blue",
            known: &known,
            now: 1_700_000_000_000,
        };
        parse(body.as_bytes(), &cx)
    }

    #[test]
    fn the_one_pass_parse_and_the_explaining_one_agree() {
        let known = |_: &str| None;
        let cx = Context {
            prefix: "blue",
            known: &known,
            now: 1_700_000_000_000,
        };
        for body in [
            r#"{"kind":"tick","symbol":"BTC/USD","price":10.5,"volume":7}"#,
            r#" [{"kind":"tick","symbol":"ETH/USD","price":1,"bid":0.5,"ask":1.5},
                 {"kind":"book","symbol":"ETH/USD","bids":[[1,2]],"asks":[[3,4]]},
                 {"kind":"signal","symbol":"ETH/USD","indicator":"RSI","signal":"buy","value":28.5},
                 {"kind":"raw","group":"blue_SPX_state_gex_zero","data_type":"text","data":"x"}]"#,
            r#"[{"kind":"tick","symbol":"BTC/USD","price":1,"bid":2,"ask":1}]"#,
            r#"{"kind":"tick","symbol":"BTC/USD","price":1,"bid":2,"ask":1}"#,
            r#"[{"kind":"tick","symbol":"BTC/USD","price":1},{"kind":"tick"}]"#,
            "[]",
        ] {
            let one_pass = parse(body.as_bytes(), &cx);
            let explained = explain(body.as_bytes(), &cx);
            assert_eq!(format!("{one_pass:?}"), format!("{explained:?}"), "{body}");
        }
    }

    #[test]
    fn a_tick_gets_its_defaults() {
        let market = Market::new();
        let updates = parse_with(
            r#"{"kind":"tick","symbol":"BTC/USD","price":10.5}"#,
            &market,
        )
        .unwrap();
        let [Update::Tick(t)] = &updates[..] else {
            panic!("{updates:?}");
        };
        assert_eq!(t.instrument, Instrument::crypto("BTC/USD"));
        assert_eq!((t.price, t.bid, t.ask), (10.5, 10.5, 10.5));
        assert_eq!(t.volume_24h, None);
        assert_eq!(&*t.source, "publish");
        assert_eq!(t.timestamp_ms, 1_700_000_000_000);
    }

    #[test]
    fn a_known_symbol_lends_its_exchange() {
        let mut market = Market::new();
        assert!(
            parse_with(r#"{"kind":"tick","symbol":"AAPL","price":1}"#, &market)
                .unwrap_err()
                .contains("`exchange`")
        );
        market.learn(&Instrument::new("AAPL", "NASDAQ"));
        let updates = parse_with(r#"{"kind":"tick","symbol":"AAPL","price":1}"#, &market).unwrap();
        assert_eq!(
            updates[0].instrument(),
            Some(&Instrument::new("AAPL", "NASDAQ"))
        );
    }

    #[test]
    fn books_are_sorted_best_first_and_batches_are_all_or_nothing() {
        let market = Market::new();
        let body = r#"[{"kind":"book","symbol":"ETH/USD","bids":[[1,1],[3,1],[2,1]],"asks":[[9,1],[7,1]]},
                       {"kind":"signal","symbol":"ETH/USD","indicator":"RSI","signal":"sell","value":80}]"#;
        let updates = parse_with(body, &market).unwrap();
        let Update::Book(b) = &updates[0] else {
            panic!()
        };
        let bids: Vec<f64> = b.bids.iter().map(|l| l.price).collect();
        let asks: Vec<f64> = b.asks.iter().map(|l| l.price).collect();
        assert_eq!((bids, asks), (vec![3.0, 2.0, 1.0], vec![7.0, 9.0]));
        let Update::Signal(s) = &updates[1] else {
            panic!()
        };
        assert_eq!((&*s.indicator, s.direction), ("rsi", SignalDirection::Sell));

        let bad = r#"[{"kind":"tick","symbol":"A/B","price":1},{"kind":"tick","symbol":"A/B"}]"#;
        assert_eq!(
            parse_with(bad, &market).unwrap_err(),
            "item 1: missing field `price`"
        );
    }

    #[test]
    fn raw_payloads_of_each_data_type() {
        let market = Market::new();
        let body = r#"[{"kind":"raw","group":"blue_SPX_state_gex_zero","data_type":"text","data":"hi"},
                       {"kind":"raw","group":"blue_SPX_state_gex_zero","dataType":"json","data":{"a":[1]}},
                       {"kind":"raw","group":"blue_SPX_classic_gex_full","data_type":"binary","data":"AAEC"}]"#;
        let updates = parse_with(body, &market).unwrap();
        let data: Vec<(&[u8], RawDataType)> = updates
            .iter()
            .map(|u| match u {
                Update::Raw(r) => (&r.data[..], r.data_type),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            data,
            [
                (&b"hi"[..], RawDataType::Text),
                (&br#"{"a":[1]}"#[..], RawDataType::Json),
                (&[0u8, 1, 2][..], RawDataType::Binary),
            ]
        );
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let market = Market::new();
        for (body, expected) in [
            ("nope", "the body is not JSON"),
            ("[]", "the batch is empty"),
            ("3", "must be a JSON object"),
            (r#"{"symbol":"A/B"}"#, "missing field `kind`"),
            (r#"{"kind":"trade"}"#, "unknown variant `trade`"),
            (
                r#"{"kind":"tick","symbol":"A/B","price":"1"}"#,
                "invalid type: string",
            ),
            (
                r#"{"kind":"tick","symbol":"A/B","price":-1}"#,
                "`price` must be",
            ),
            (
                r#"{"kind":"tick","symbol":"A/B","price":1,"prise":2}"#,
                "unknown field `prise`",
            ),
            (
                r#"{"kind":"tick","symbol":"A/B","price":1,"bid":3,"ask":2}"#,
                "`bid` (3)",
            ),
            (
                r#"{"kind":"tick","symbol":"","price":1}"#,
                "`symbol` must be",
            ),
            (
                r#"{"kind":"signal","symbol":"A/B","indicator":"rsi","signal":"up","value":1}"#,
                "unknown variant `up`",
            ),
            (
                r#"{"kind":"signal","symbol":"A/B","indicator":"rsi","signal":"buy","value":1,"confidence":2}"#,
                "`confidence`",
            ),
            (
                r#"{"kind":"raw","group":"red_SPX_state_gex_zero","data_type":"text","data":"x"}"#,
                "`group`",
            ),
            (
                r#"{"kind":"raw","group":"blue_SPX_state_gex_zero","data_type":"text","data":1}"#,
                "must be a string",
            ),
            (
                r#"{"kind":"raw","group":"blue_SPX_state_gex_zero","data_type":"binary","data":"!!"}"#,
                "not base64",
            ),
        ] {
            let err = parse_with(body, &market).unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }
}
