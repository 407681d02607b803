//! The model's updates on the bus: `proto/cluster.proto`, version 1, one
//! update per NATS message, and the subject each is published on.
//!
//! Subjects name the feed and the topic: `{prefix}.i.{exchange}.{symbol}.{kind}`
//! for an instrument's tick, trade, book or signal, `{prefix}.g.{group}.{kind}`
//! for a pubsub group's GEX record or raw payload. Names are escaped into one
//! token each ([`token`]), so any symbol (`BRK.B`, `BTC/USD`) makes a valid
//! subject and a node can subscribe to exactly one instrument or group.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use tickwire_model::{
    BarSeed, GexRecord, Hub, Instrument, Level, OrderBook, PriceTick, RawDataType, RawGroupPayload,
    SeedBar, Signal, SignalDirection, Trade, Update,
};
use tickwire_proto::cluster as pb;

/// The version of the encoding this node writes and reads.
pub const VERSION: u32 = 1;

/// Why a bus message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a message of `proto/cluster.proto`.
    #[error("not a cluster message: {0}")]
    Protobuf(String),
    /// A version this node does not know (a newer node's?).
    #[error("cluster message version {0}; this node reads version {VERSION}")]
    Version(u32),
    /// No update, or one this node cannot represent.
    #[error("cluster message without a valid update: {0}")]
    Invalid(&'static str),
}

/// The subject of `update` under the subject prefix `prefix`, for a gateway
/// whose groups are named with `groups` (`blue`); `None` for an update that
/// never travels (a node's own forgetting).
pub fn subject(prefix: &str, groups: &str, update: &Update) -> Option<String> {
    let (instrument, kind) = match update {
        Update::Tick(t) => (&t.instrument, "tick"),
        Update::Trade(t) => (&t.instrument, "trade"),
        Update::Book(b) => (&b.instrument, "book"),
        Update::Signal(s) => (&s.instrument, "signal"),
        Update::Gex(g) => return Some(group_subject(prefix, &g.group(groups), "gex")),
        Update::Raw(r) => return Some(group_subject(prefix, &r.group, "raw")),
        _ => return None,
    };
    Some(instrument_subject(prefix, instrument, kind))
}

/// The subject of `instrument`'s updates of `kind` (`*` for every kind).
pub fn instrument_subject(prefix: &str, instrument: &Instrument, kind: &str) -> String {
    format!(
        "{prefix}.i.{}.{}.{kind}",
        token(&instrument.exchange),
        token(&instrument.symbol)
    )
}

/// The subject a node asks the others for `instrument`'s last values on
/// (outside the updates' root, so no node takes a request for an update).
pub fn last_values_subject(prefix: &str, instrument: &Instrument) -> String {
    format!(
        "{prefix}_last.i.{}.{}",
        token(&instrument.exchange),
        token(&instrument.symbol)
    )
}

/// The subject of `group`'s updates of `kind` (`*` for every kind).
pub fn group_subject(prefix: &str, group: &str, kind: &str) -> String {
    format!("{prefix}.g.{}.{kind}", token(group))
}

/// `name` as one subject token: bytes outside `[A-Za-z0-9_-/:]` become
/// `%XX` (so `.`, `*`, `>`, spaces and `%` itself never reach the subject).
pub fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/' | b':') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// The name [`token`] escaped; `None` for a token it could not have made.
pub fn untoken(token: &str) -> Option<String> {
    if token == "%00" {
        return Some(String::new());
    }
    let mut out = Vec::with_capacity(token.len());
    let mut bytes = token.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

fn instrument(i: &Instrument) -> Option<pb::Instrument> {
    Some(pb::Instrument {
        symbol: i.symbol.to_string(),
        exchange: i.exchange.to_string(),
    })
}

fn levels(levels: &[Level]) -> Vec<pb::Level> {
    levels
        .iter()
        .map(|l| pb::Level {
            price: l.price,
            quantity: l.quantity,
            orders: l.orders,
        })
        .collect()
}

/// Encodes `update`, ingested by node `origin`; `None` for an update that
/// never travels.
pub fn encode(update: &Update, origin: &str) -> Option<Bytes> {
    use pb::envelope::Update as U;
    let body = match update {
        Update::Tick(t) => U::Tick(pb::Tick {
            instrument: instrument(&t.instrument),
            price: t.price,
            last_quantity: t.last_quantity,
            bid: t.bid,
            bid_quantity: t.bid_quantity,
            ask: t.ask,
            ask_quantity: t.ask_quantity,
            open: t.open,
            high: t.high,
            low: t.low,
            prev_close: t.prev_close,
            change_24h_pct: t.change_24h_pct,
            volume_24h: t.volume_24h,
            session_volume: t.session_volume,
            source: t.source.to_string(),
            timestamp_ms: t.timestamp_ms,
        }),
        Update::Trade(t) => U::Trade(pb::Trade {
            instrument: instrument(&t.instrument),
            price: t.price,
            quantity: t.quantity,
            source: t.source.to_string(),
            timestamp_ms: t.timestamp_ms,
        }),
        Update::Book(b) => U::Book(pb::Book {
            instrument: instrument(&b.instrument),
            bids: levels(&b.bids),
            asks: levels(&b.asks),
            source: b.source.to_string(),
            timestamp_ms: b.timestamp_ms,
        }),
        Update::Signal(s) => U::Signal(pb::Signal {
            instrument: instrument(&s.instrument),
            indicator: s.indicator.to_string(),
            direction: s.direction.as_str().to_owned(),
            value: s.value,
            confidence: s.confidence,
            timestamp_ms: s.timestamp_ms,
        }),
        Update::Gex(g) => U::Gex(pb::Gex {
            hub: g.hub.name().to_owned(),
            ticker: g.ticker.to_string(),
            category: g.category.to_owned(),
            json: g.json.clone(),
        }),
        Update::Raw(r) => U::Raw(pb::Raw {
            group: r.group.to_string(),
            data: r.data.clone(),
            data_type: match r.data_type {
                RawDataType::Text => "text",
                RawDataType::Json => "json",
                RawDataType::Binary => "binary",
            }
            .to_owned(),
        }),
        _ => return None,
    };
    let envelope = pb::Envelope {
        version: VERSION,
        origin: origin.to_owned(),
        update: Some(body),
    };
    Some(Bytes::from(envelope.encode_to_vec()))
}

fn from_instrument(i: Option<pb::Instrument>) -> Result<Instrument, DecodeError> {
    let i = i.ok_or(DecodeError::Invalid("no instrument"))?;
    if i.symbol.is_empty() || i.exchange.is_empty() {
        return Err(DecodeError::Invalid("an empty symbol or exchange"));
    }
    Ok(Instrument::new(i.symbol, i.exchange))
}

fn from_levels(levels: Vec<pb::Level>) -> Vec<Level> {
    levels
        .into_iter()
        .map(|l| Level {
            price: l.price,
            quantity: l.quantity,
            orders: l.orders,
        })
        .collect()
}

/// Encodes a list of known instruments ([`pb::Known`]), from node `origin`.
pub fn encode_known(instruments: &[Instrument], origin: &str) -> Bytes {
    let known = pb::Known {
        version: VERSION,
        origin: origin.to_owned(),
        instruments: instruments.iter().filter_map(instrument).collect(),
    };
    Bytes::from(known.encode_to_vec())
}

/// Decodes a list of known instruments: them, and the node that sent them.
/// An instrument without a symbol or exchange is skipped.
pub fn decode_known(payload: &[u8]) -> Result<(Vec<Instrument>, String), DecodeError> {
    let known = pb::Known::decode(payload).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    if known.version != VERSION {
        return Err(DecodeError::Version(known.version));
    }
    let instruments = known
        .instruments
        .into_iter()
        .filter_map(|i| from_instrument(Some(i)).ok())
        .collect();
    Ok((instruments, known.origin))
}

/// The subject of `instrument`'s seeds ([`pb::Seed`]): one of its own, so
/// that a seed reaches a follower in order with the instrument's updates.
pub fn seed_subject(prefix: &str, instrument: &Instrument) -> String {
    instrument_subject(prefix, instrument, SEED)
}

/// The last token of a seed's subject.
pub const SEED: &str = "seed";

/// Encodes a seed from node `origin` for node `for_node`: `updates` (each
/// an encoded [`pb::Envelope`]) and `bars`.
pub fn encode_seed(
    origin: &str,
    for_node: &str,
    updates: Vec<Bytes>,
    bars: Option<&BarSeed>,
) -> Bytes {
    let seed = pb::Seed {
        version: VERSION,
        origin: origin.to_owned(),
        for_node: for_node.to_owned(),
        updates,
        instrument: bars.and_then(|b| instrument(&b.instrument)),
        bars: bars
            .map(|b| {
                b.bars
                    .iter()
                    .map(|bar| pb::Bar {
                        resolution: bar.resolution.to_string(),
                        time: bar.time,
                        open: bar.open,
                        high: bar.high,
                        low: bar.low,
                        close: bar.close,
                        volume: bar.volume,
                        first_ts: bar.first_ts,
                        last_ts: bar.last_ts,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    Bytes::from(seed.encode_to_vec())
}

/// A seed, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Seed {
    /// The node that asked for it.
    pub for_node: String,
    /// The updates it carries, each with its bytes as published (to tell a
    /// repeat of one already delivered).
    pub updates: Vec<(Update, Bytes)>,
    /// The bars, if the sender keeps any of the instrument.
    pub bars: Option<BarSeed>,
}

/// Decodes a seed; an update in it that cannot be read is skipped.
pub fn decode_seed(payload: &[u8]) -> Result<Seed, DecodeError> {
    let seed = pb::Seed::decode(payload).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    if seed.version != VERSION {
        return Err(DecodeError::Version(seed.version));
    }
    let updates = seed
        .updates
        .into_iter()
        .filter_map(|raw| decode(&raw).ok().map(|(update, _)| (update, raw)))
        .collect();
    let bars = if seed.bars.is_empty() {
        None
    } else {
        Some(BarSeed {
            instrument: from_instrument(seed.instrument)?,
            bars: seed
                .bars
                .into_iter()
                .map(|b| SeedBar {
                    resolution: Arc::from(b.resolution),
                    time: b.time,
                    open: b.open,
                    high: b.high,
                    low: b.low,
                    close: b.close,
                    volume: b.volume,
                    first_ts: b.first_ts,
                    last_ts: b.last_ts,
                })
                .collect(),
        })
    };
    Ok(Seed {
        for_node: seed.for_node,
        updates,
        bars,
    })
}

/// Whether updates of `update`'s kind restate an instrument's state (its
/// price, its book): the last of each is what a node that starts following
/// the instrument is sent first ([`crate::Cluster`]'s last values). Trades,
/// signals and group payloads are events: a late follower has missed them.
pub fn is_state(update: &Update) -> bool {
    matches!(update, Update::Tick(_) | Update::Book(_))
}

/// When `update` happened, by its source's clock, for telling a last value
/// from a newer one (`None` for updates without a time).
pub fn timestamp_ms(update: &Update) -> Option<i64> {
    match update {
        Update::Tick(t) => Some(t.timestamp_ms),
        Update::Book(b) => Some(b.timestamp_ms),
        Update::Trade(t) => Some(t.timestamp_ms),
        Update::Signal(s) => Some(s.timestamp_ms),
        _ => None,
    }
}

/// Decodes a bus message: the update and the node that ingested it.
pub fn decode(payload: &[u8]) -> Result<(Update, String), DecodeError> {
    use pb::envelope::Update as U;
    let envelope =
        pb::Envelope::decode(payload).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    if envelope.version != VERSION {
        return Err(DecodeError::Version(envelope.version));
    }
    let update = match envelope.update.ok_or(DecodeError::Invalid("no update"))? {
        U::Tick(t) => Update::Tick(PriceTick {
            instrument: from_instrument(t.instrument)?,
            price: t.price,
            last_quantity: t.last_quantity,
            bid: t.bid,
            bid_quantity: t.bid_quantity,
            ask: t.ask,
            ask_quantity: t.ask_quantity,
            open: t.open,
            high: t.high,
            low: t.low,
            prev_close: t.prev_close,
            change_24h_pct: t.change_24h_pct,
            volume_24h: t.volume_24h,
            session_volume: t.session_volume,
            source: Arc::from(t.source),
            timestamp_ms: t.timestamp_ms,
        }),
        U::Trade(t) => Update::Trade(Trade {
            instrument: from_instrument(t.instrument)?,
            price: t.price,
            quantity: t.quantity,
            source: Arc::from(t.source),
            timestamp_ms: t.timestamp_ms,
        }),
        U::Book(b) => Update::Book(OrderBook {
            instrument: from_instrument(b.instrument)?,
            bids: from_levels(b.bids),
            asks: from_levels(b.asks),
            source: Arc::from(b.source),
            timestamp_ms: b.timestamp_ms,
        }),
        U::Signal(s) => Update::Signal(Signal {
            instrument: from_instrument(s.instrument)?,
            indicator: Arc::from(s.indicator),
            direction: match s.direction.as_str() {
                "buy" => SignalDirection::Buy,
                "sell" => SignalDirection::Sell,
                "neutral" => SignalDirection::Neutral,
                _ => return Err(DecodeError::Invalid("an unknown signal direction")),
            },
            value: s.value,
            confidence: s.confidence,
            timestamp_ms: s.timestamp_ms,
        }),
        U::Gex(g) => {
            let hub = Hub::from_name(&g.hub).ok_or(DecodeError::Invalid("an unknown hub"))?;
            let category = hub
                .categories()
                .iter()
                .copied()
                .find(|c| *c == g.category)
                .ok_or(DecodeError::Invalid("an unknown category"))?;
            Update::Gex(GexRecord {
                hub,
                ticker: Arc::from(g.ticker),
                category,
                json: g.json,
            })
        }
        U::Raw(r) => Update::Raw(RawGroupPayload {
            group: Arc::from(r.group),
            data: r.data,
            data_type: match r.data_type.as_str() {
                "text" => RawDataType::Text,
                "json" => RawDataType::Json,
                "binary" => RawDataType::Binary,
                _ => return Err(DecodeError::Invalid("an unknown data type")),
            },
        }),
    };
    Ok((update, envelope.origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btc() -> Instrument {
        Instrument::crypto("BTC/USD")
    }

    #[test]
    fn every_update_that_travels_reads_back_as_it_was() {
        let updates = [
            Update::Tick(PriceTick {
                instrument: btc(),
                price: 67_000.5,
                last_quantity: 0.25,
                bid: 66_999.0,
                bid_quantity: 1.0,
                ask: 67_001.0,
                ask_quantity: 2.0,
                open: 66_000.0,
                high: 67_500.0,
                low: 65_900.0,
                prev_close: 66_100.0,
                change_24h_pct: 1.36,
                volume_24h: Some(1e9),
                session_volume: 12.0,
                source: Arc::from("synthetic"),
                timestamp_ms: 1_700_000_000_000,
            }),
            Update::Trade(Trade {
                instrument: Instrument::new("RELIANCE", "NSE"),
                price: 2850.5,
                quantity: None,
                source: Arc::from("zerodha"),
                timestamp_ms: 1,
            }),
            Update::Book(OrderBook {
                instrument: btc(),
                bids: vec![Level {
                    price: 1.0,
                    quantity: 2.0,
                    orders: 3,
                }],
                asks: vec![],
                source: Arc::from("x"),
                timestamp_ms: 2,
            }),
            Update::Signal(Signal {
                instrument: btc(),
                indicator: Arc::from("macd"),
                direction: SignalDirection::Sell,
                value: -1.5,
                confidence: 0.5,
                timestamp_ms: 3,
            }),
            Update::Gex(GexRecord {
                hub: Hub::StateGex,
                ticker: Arc::from("SPX"),
                category: "gex_zero",
                json: Bytes::from_static(b"{\"spot\":1}"),
            }),
            Update::Raw(RawGroupPayload {
                group: Arc::from("blue_SPX_classic_gex_full"),
                data: Bytes::from_static(b"\x00\x01"),
                data_type: RawDataType::Binary,
            }),
        ];
        for update in updates {
            let bytes = encode(&update, "a").unwrap();
            assert_eq!(decode(&bytes), Ok((update, "a".to_owned())));
        }
        assert!(encode(&Update::Forget(Arc::from([btc()])), "a").is_none());
        assert!(subject("t", "blue", &Update::Forget(Arc::from([btc()]))).is_none());
    }

    #[test]
    fn seeds_read_back() {
        let tick = Update::Tick(PriceTick {
            instrument: btc(),
            price: 1.0,
            last_quantity: 1.0,
            bid: 1.0,
            bid_quantity: 1.0,
            ask: 1.0,
            ask_quantity: 1.0,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            prev_close: 1.0,
            change_24h_pct: 0.0,
            volume_24h: None,
            session_volume: 0.0,
            source: Arc::from("x"),
            timestamp_ms: 5,
        });
        let raw = encode(&tick, "a").unwrap();
        let bars = BarSeed {
            instrument: btc(),
            bars: vec![SeedBar {
                resolution: Arc::from("5"),
                time: 0,
                open: 1.0,
                high: 2.0,
                low: 0.5,
                close: 1.5,
                volume: 9.0,
                first_ts: 1,
                last_ts: 4,
            }],
        };
        let bytes = encode_seed(
            "a",
            "b",
            vec![raw.clone(), Bytes::from_static(b"\xff")],
            Some(&bars),
        );
        let seed = decode_seed(&bytes).unwrap();
        assert_eq!(seed.for_node, "b");
        assert_eq!(
            seed.updates,
            vec![(tick, raw)],
            "the unreadable one skipped"
        );
        assert_eq!(seed.bars, Some(bars));
        let empty = decode_seed(&encode_seed("a", "c", Vec::new(), None)).unwrap();
        assert_eq!((empty.updates.len(), empty.bars), (0, None));
        assert_eq!(
            seed_subject("t", &btc()),
            "t.i.CRYPTO.BTC/USD.seed".to_owned()
        );
    }

    #[test]
    fn tokens_read_back() {
        for name in ["BTC/USD", "BRK.B", "a b*>%", "", "ключ"] {
            let escaped = token(name);
            assert!(!escaped.contains(['.', ' ', '*', '>']), "{escaped}");
            assert_eq!(untoken(&escaped).as_deref(), Some(name));
        }
        assert_eq!(untoken("%4"), None);
        assert_eq!(untoken("%zz"), None);
    }

    #[test]
    fn known_instruments_read_back_and_skip_the_empty() {
        let list = [btc(), Instrument::new("BRK.B", "NYSE")];
        let bytes = encode_known(&list, "b");
        assert_eq!(decode_known(&bytes), Ok((list.to_vec(), "b".to_owned())));
        let with_empty = pb::Known {
            version: VERSION,
            origin: "c".into(),
            instruments: vec![
                pb::Instrument {
                    symbol: String::new(),
                    exchange: "X".into(),
                },
                pb::Instrument {
                    symbol: "ETH/USD".into(),
                    exchange: "CRYPTO".into(),
                },
            ],
        };
        assert_eq!(
            decode_known(&with_empty.encode_to_vec()).map(|(i, _)| i),
            Ok(vec![Instrument::crypto("ETH/USD")])
        );
        let newer = pb::Known {
            version: VERSION + 1,
            ..with_empty
        };
        assert_eq!(
            decode_known(&newer.encode_to_vec()),
            Err(DecodeError::Version(VERSION + 1))
        );
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let newer = pb::Envelope {
            version: VERSION + 1,
            origin: "z".into(),
            update: None,
        };
        assert_eq!(
            decode(&newer.encode_to_vec()),
            Err(DecodeError::Version(VERSION + 1))
        );
        assert!(matches!(
            decode(b"\xff\xff\xff"),
            Err(DecodeError::Protobuf(_))
        ));
        let empty = pb::Envelope {
            version: VERSION,
            origin: "z".into(),
            update: None,
        };
        assert_eq!(
            decode(&empty.encode_to_vec()),
            Err(DecodeError::Invalid("no update"))
        );
    }

    #[test]
    fn subjects_name_feed_and_topic_in_safe_tokens() {
        let tick = Update::Trade(Trade {
            instrument: Instrument::new("BRK.B", "NYSE"),
            price: 1.0,
            quantity: None,
            source: Arc::from("x"),
            timestamp_ms: 0,
        });
        assert_eq!(
            subject("tickwire", "blue", &tick).as_deref(),
            Some("tickwire.i.NYSE.BRK%2EB.trade")
        );
        assert_eq!(token("a b*>%"), "a%20b%2A%3E%25");
        assert_eq!(token(""), "%00");
        assert_eq!(token("BTC/USD"), "BTC/USD");
        let gex = Update::Gex(GexRecord {
            hub: Hub::Classic,
            ticker: Arc::from("ES_SPX"),
            category: "gex_full",
            json: Bytes::new(),
        });
        assert_eq!(
            subject("tickwire", "blue", &gex).as_deref(),
            Some("tickwire.g.blue_ES_SPX_classic_gex_full.gex")
        );
    }
}
