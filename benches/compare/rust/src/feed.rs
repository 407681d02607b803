//! The seed 001 price feed: who is subscribed to which symbol, the
//! `price_update` message of a published tick, and the publish request body.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Number;
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

/// A connection's identity in the registry.
pub type ConnId = u64;

/// The subscribers of one symbol: connection → its outgoing queue of the
/// server's messages `M`.
type Subscribers<M> = HashMap<ConnId, Sender<M>>;

/// The subscribers of every symbol.
#[derive(Debug)]
pub struct Registry<M> {
    topics: RwLock<HashMap<Box<str>, Subscribers<M>>>,
}

impl<M> Default for Registry<M> {
    fn default() -> Self {
        Registry {
            topics: RwLock::default(),
        }
    }
}

/// What one fan-out did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    /// Messages queued to a subscriber.
    pub queued: u64,
    /// Messages not queued because the subscriber's queue was full.
    pub dropped: u64,
}

impl<M: Clone> Registry<M> {
    /// Subscribes connection `id` (queue `tx`) to `symbol`.
    pub fn subscribe(&self, symbol: &str, id: ConnId, tx: &Sender<M>) {
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(symbol.into())
            .or_default()
            .insert(id, tx.clone());
    }

    /// Unsubscribes connection `id` from `symbol`.
    pub fn unsubscribe(&self, symbol: &str, id: ConnId) {
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if let Some(subscribers) = topics.get_mut(symbol) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                topics.remove(symbol);
            }
        }
    }

    /// Queues each `(symbol, message)` to every subscriber of its symbol.
    /// A message is built once; each subscriber gets a reference-counted
    /// clone. A full queue drops the message for that subscriber.
    pub fn publish<'a>(&self, updates: impl IntoIterator<Item = (&'a str, M)>) -> Fanout {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Fanout::default();
        for (symbol, message) in updates {
            let Some(subscribers) = topics.get(symbol) else {
                continue;
            };
            for tx in subscribers.values() {
                match tx.try_send(message.clone()) {
                    Ok(()) => out.queued += 1,
                    Err(TrySendError::Full(_)) => out.dropped += 1,
                    // The connection is closing and unsubscribes itself.
                    Err(TrySendError::Closed(_)) => {}
                }
            }
        }
        out
    }
}

/// The `/ws` spelling of a symbol, as a client sends it or as the publish
/// API names it: the base of a `BASE/QUOTE` pair, in lower case
/// (`LT0001/USD` → `lt0001`, `BTC` → `btc`).
pub fn symbol_key(symbol: &str) -> String {
    let base = symbol.split_once('/').map_or(symbol, |(base, _)| base);
    base.to_ascii_lowercase()
}

/// One item of a `POST /api/v1/publish` body. Only `kind: tick` items are
/// fanned out; the others are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct Item {
    kind: String,
    symbol: Option<String>,
    price: Option<Number>,
    volume: Option<Number>,
    change_24h: Option<Number>,
    timestamp: Option<Number>,
}

/// A publish body: one item or an array of items.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Body {
    Many(Vec<Item>),
    One(Item),
}

/// A tick ready to fan out: its `/ws` symbol and its `price_update`.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The `/ws` symbol of the tick.
    pub symbol: String,
    /// The `price_update` message (UTF-8).
    pub text: Bytes,
}

/// Parses a publish body into the updates to fan out and the number of
/// items accepted, or says what is wrong with it.
pub fn parse_publish(body: &[u8]) -> Result<(Vec<Update>, usize), String> {
    let items = match serde_json::from_slice::<Body>(body) {
        Ok(Body::Many(items)) => items,
        Ok(Body::One(item)) => vec![item],
        Err(e) => return Err(format!("invalid body: {e}")),
    };
    let accepted = items.len();
    let now = now_ms();
    let mut updates = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        if item.kind != "tick" {
            continue;
        }
        let (Some(symbol), Some(price)) = (item.symbol, item.price) else {
            return Err(format!("item {i}: a tick needs `symbol` and `price`"));
        };
        let symbol = symbol_key(&symbol);
        let text = price_update(
            &symbol,
            &price,
            item.change_24h.as_ref(),
            item.volume.as_ref(),
            item.timestamp.map_or(now, |t| t.as_i64().unwrap_or(now)),
        );
        updates.push(Update {
            symbol,
            text: text.into(),
        });
    }
    Ok((updates, accepted))
}

/// The seed 001 `price_update`, keys in the document's order; numbers as
/// published (an integer stays an integer).
pub fn price_update(
    symbol: &str,
    price: &Number,
    change_24h: Option<&Number>,
    volume_24h: Option<&Number>,
    timestamp_ms: i64,
) -> String {
    let symbol = serde_json::Value::from(symbol);
    let change = change_24h.map_or_else(|| "0".to_owned(), Number::to_string);
    let volume = volume_24h.map_or_else(|| "null".to_owned(), Number::to_string);
    format!(
        r#"{{"type":"price_update","symbol":{symbol},"price":{price},"change_24h":{change},"volume_24h":{volume},"timestamp":{timestamp_ms}}}"#
    )
}

/// Milliseconds since the UNIX epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[test]
    fn symbols_are_lower_case_bases() {
        assert_eq!(symbol_key("LT0001/USD"), "lt0001");
        assert_eq!(symbol_key("BTC"), "btc");
        assert_eq!(symbol_key("eth"), "eth");
    }

    #[test]
    fn ticks_become_price_updates() {
        let body = br#"[{"kind":"tick","symbol":"LT0042/USD","price":7,"volume":1763787704123456},
            {"kind":"raw","group":"g","data_type":"text","data":"x"}]"#;
        let (updates, accepted) = parse_publish(body).unwrap();
        assert_eq!(accepted, 2);
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].symbol, "lt0042");
        let text = std::str::from_utf8(&updates[0].text).unwrap();
        assert!(
            text.starts_with(
                r#"{"type":"price_update","symbol":"lt0042","price":7,"change_24h":0,"volume_24h":1763787704123456,"timestamp":"#
            ),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(value["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    }

    #[test]
    fn one_item_and_floats_are_kept() {
        let body = br#"{"kind":"tick","symbol":"BTC/USD","price":67234.56,"change_24h":2.34,"timestamp":1700000000000}"#;
        let (updates, _) = parse_publish(body).unwrap();
        assert_eq!(
            std::str::from_utf8(&updates[0].text).unwrap(),
            r#"{"type":"price_update","symbol":"btc","price":67234.56,"change_24h":2.34,"volume_24h":null,"timestamp":1700000000000}"#
        );
    }

    #[test]
    fn bad_bodies_are_refused() {
        assert!(parse_publish(b"not json").is_err());
        assert!(parse_publish(br#"[{"kind":"tick","symbol":"A/B"}]"#).is_err());
        assert!(parse_publish(br#"[{"symbol":"A/B","price":1}]"#).is_err());
    }

    #[test]
    fn publish_reaches_subscribers_and_drops_when_full() {
        let registry = Registry::default();
        let (tx1, mut rx1) = mpsc::channel(1);
        let (tx2, mut rx2) = mpsc::channel(8);
        registry.subscribe("btc", 1, &tx1);
        registry.subscribe("btc", 2, &tx2);
        registry.subscribe("eth", 2, &tx2);
        let message = |s: &str| s.to_owned();
        let out = registry.publish([("btc", message("a")), ("btc", message("b"))]);
        assert_eq!(
            out,
            Fanout {
                queued: 3,
                dropped: 1
            }
        );
        assert_eq!(rx1.try_recv().unwrap(), message("a"));
        assert!(rx1.try_recv().is_err());
        assert_eq!(rx2.try_recv().unwrap(), message("a"));
        assert_eq!(rx2.try_recv().unwrap(), message("b"));
        registry.unsubscribe("btc", 2);
        let out = registry.publish([("btc", message("c")), ("eth", message("d"))]);
        assert_eq!(out.queued, 2);
        assert_eq!(rx1.try_recv().unwrap(), message("c"));
        assert_eq!(rx2.try_recv().unwrap(), message("d"));
        assert!(rx2.try_recv().is_err());
    }
}
