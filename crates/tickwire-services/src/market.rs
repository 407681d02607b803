//! The instruments the gateway knows, how each JSON dialect names them, the
//! fan-out topics of their events, and the figures of `server_status`.
//!
//! An instrument is known once an adapter lists it in
//! `instruments` (of the adapter trait) or an update
//! about it arrives (from an adapter or the publish API). Each dialect looks
//! symbols up in its own map: `/ws` by the lower-case base asset (`btc`,
//! `aapl`; of several pairs of one base, the one quoted in
//! [`DEFAULT_QUOTE`](tickwire_json::ws::DEFAULT_QUOTE) wins, else the first
//! known), `/stream` by the canonical symbol (`BTC/USD`, exact).
//!
//! Topics of the JSON feeds, one per instrument and kind of message:
//! `ws:price:CRYPTO:BTC/USD`, `ws:book:…`, `ws:signal:…`, `stream:price:…`,
//! plus `ws:status` and `stream:heartbeat`, which every connection of the
//! endpoint is in.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use tickwire_core::{Feed as UpdateFeed, Index, Kind, publish_text};
use tickwire_json::{stream, ws};
use tickwire_model::{Instrument, ServerStatus, Update};

/// The topic every `/ws` connection is in, for `server_status`.
pub const WS_STATUS: &str = "ws:status";
/// The topic every `/stream` connection is in, for the heartbeat `pong`.
pub const STREAM_HEARTBEAT: &str = "stream:heartbeat";

/// One kind of JSON-feed topic of an instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feed {
    /// `/ws` `price_update`.
    WsPrice,
    /// `/ws` `orderbook_update`.
    WsBook,
    /// `/ws` `signal_update`.
    WsSignal,
    /// `/stream` `price_update`.
    StreamPrice,
}

impl Feed {
    fn prefix(self) -> &'static str {
        match self {
            Feed::WsPrice => "ws:price:",
            Feed::WsBook => "ws:book:",
            Feed::WsSignal => "ws:signal:",
            Feed::StreamPrice => "stream:price:",
        }
    }

    /// The `/ws` topic of `channel`.
    pub fn of_channel(channel: ws::Channel) -> Feed {
        match channel {
            ws::Channel::Price => Feed::WsPrice,
            ws::Channel::OrderBook => Feed::WsBook,
            ws::Channel::Signal => Feed::WsSignal,
        }
    }
}

/// Writes the topic of `feed` for `instrument` into `buf` (cleared first).
pub fn topic(buf: &mut String, feed: Feed, instrument: &Instrument) {
    buf.clear();
    let _ = write!(
        buf,
        "{}{}:{}",
        feed.prefix(),
        instrument.exchange,
        instrument.symbol
    );
}

/// The topic of `feed` for `instrument`.
pub fn topic_of(feed: Feed, instrument: &Instrument) -> String {
    let mut buf = String::new();
    topic(&mut buf, feed, instrument);
    buf
}

/// Encodes a market event for the topic of `feed` and `instrument` once, if
/// anybody is subscribed to it in `feeds`, and queues the same bytes to every
/// subscriber; `name` is a reused buffer for the topic's name.
pub fn deliver(
    feeds: &Index,
    name: &mut String,
    feed: Feed,
    instrument: &Instrument,
    encode: impl FnOnce() -> Bytes,
) {
    topic(name, feed, instrument);
    let Some(topic) = feeds.lookup(name) else {
        return;
    };
    if feeds.subscriber_count(topic) == 0 {
        return;
    }
    publish_text(feeds, topic, &encode(), Kind::Data);
}

/// Every `period` until `shutdown` turns true, sends what `encode` makes to
/// every connection in the housekeeping topic `name` of `feeds` (encoded
/// once, and only when the topic has connections): `/ws`'s
/// `server_status`, `/stream`'s heartbeat `pong`.
pub async fn housekeeping(
    feeds: &Index,
    name: &str,
    period: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut encode: impl FnMut() -> Bytes,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = tickwire_core::shutdown_started(&mut shutdown) => return,
            _ = ticks.tick() => {}
        }
        let Some(topic) = feeds.lookup(name) else {
            continue;
        };
        if feeds.subscriber_count(topic) > 0 {
            publish_text(feeds, topic, &encode(), Kind::Housekeeping);
        }
    }
}

/// The first part of the fan-out: every instrument an update names becomes
/// known to the symbol table (the table's lock is taken only for new ones).
#[derive(Debug)]
pub struct Learn {
    market: Arc<Market>,
    seen: HashSet<Instrument>,
}

impl Learn {
    pub fn new(market: Arc<Market>) -> Learn {
        Learn {
            market,
            seen: HashSet::new(),
        }
    }
}

impl UpdateFeed<Update> for Learn {
    fn on_update(&mut self, update: &Update) {
        if let Some(instrument) = update.instrument() {
            if !self.seen.contains(instrument)
                && (self.market.learn(instrument) || self.market.contains(instrument))
            {
                // Only what the table took: a refused one stays unremembered.
                self.seen.insert(instrument.clone());
            }
        }
    }
}

/// Known instruments and the gateway's figures.
///
/// The table's lock is held for a map operation at a time, never across an
/// `.await`.
#[derive(Debug)]
pub struct Market {
    table: RwLock<Table>,
    adapters: AtomicU64,
    started: Instant,
    /// Most instruments the table holds; new ones beyond are refused.
    limit: usize,
    /// Instruments refused because the table was full.
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    all: HashSet<Instrument>,
    /// `/ws` spelling → instrument.
    ws: HashMap<String, Instrument>,
    /// `/stream` spelling → instrument.
    stream: HashMap<String, Instrument>,
    /// Canonical symbol → the first instrument of that symbol (publish API).
    by_symbol: HashMap<String, Instrument>,
}

impl Default for Market {
    fn default() -> Self {
        Market::new()
    }
}

impl Market {
    /// An empty table, no adapter counted, with no bound but memory.
    pub fn new() -> Market {
        Market::with_limit(usize::MAX)
    }

    /// An empty table that holds at most `limit` instruments.
    pub fn with_limit(limit: usize) -> Market {
        Market {
            table: RwLock::new(Table::default()),
            adapters: AtomicU64::new(0),
            started: Instant::now(),
            limit,
            refused: AtomicU64::new(0),
        }
    }

    /// Learns `instrument`; returns whether it was new. A new instrument
    /// is refused (and counted) when the table holds its limit already.
    pub fn learn(&self, instrument: &Instrument) -> bool {
        if self.read().all.contains(instrument) {
            return false;
        }
        let mut table = self.write();
        if table.all.contains(instrument) {
            return false;
        }
        if table.all.len() >= self.limit {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        table.all.insert(instrument.clone());
        let ws_key = ws::symbol_of(instrument).into_owned();
        let preferred = instrument.exchange.as_ref() == Instrument::CRYPTO
            && instrument.quote() == Some(ws::DEFAULT_QUOTE);
        match table.ws.get(&ws_key) {
            Some(existing)
                if !preferred
                    || (existing.exchange.as_ref() == Instrument::CRYPTO
                        && existing.quote() == Some(ws::DEFAULT_QUOTE)) => {}
            _ => {
                table.ws.insert(ws_key, instrument.clone());
            }
        }
        table
            .stream
            .entry(stream::symbol_of(instrument).to_owned())
            .or_insert_with(|| instrument.clone());
        table
            .by_symbol
            .entry(instrument.symbol.to_string())
            .or_insert_with(|| instrument.clone());
        true
    }

    /// Learns every instrument of `instruments`.
    pub fn learn_all(&self, instruments: &[Instrument]) {
        for instrument in instruments {
            self.learn(instrument);
        }
    }

    /// The instrument a `/ws` client means by `symbol` (case-insensitive).
    pub fn ws_symbol(&self, symbol: &str) -> Option<Instrument> {
        self.read().ws.get(ws::symbol_key(symbol).as_ref()).cloned()
    }

    /// The instrument a `/stream` client means by `symbol` (exact).
    pub fn stream_symbol(&self, symbol: &str) -> Option<Instrument> {
        let key = stream::symbol_key(symbol)?;
        self.read().stream.get(key).cloned()
    }

    /// The first known instrument whose canonical symbol is `symbol`.
    pub fn by_symbol(&self, symbol: &str) -> Option<Instrument> {
        self.read().by_symbol.get(symbol).cloned()
    }

    /// Whether `instrument` is known.
    pub fn contains(&self, instrument: &Instrument) -> bool {
        self.read().all.contains(instrument)
    }

    /// How many new instruments the table can still take.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.read().all.len())
    }

    /// The most instruments the table holds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// New instruments refused so far because the table was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// How many instruments are known.
    pub fn symbols_tracked(&self) -> usize {
        self.read().all.len()
    }

    /// Counts an adapter that connected.
    pub fn adapter_connected(&self) {
        self.adapters.fetch_add(1, Ordering::Relaxed);
    }

    /// Uncounts an adapter that was disconnected.
    pub fn adapter_disconnected(&self) {
        let _ = self
            .adapters
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// The figures of `server_status`, with `connections` open connections.
    pub fn status(&self, connections: u64) -> ServerStatus {
        ServerStatus {
            connected_peers: connections,
            active_sources: self.adapters.load(Ordering::Relaxed),
            symbols_tracked: self.symbols_tracked() as u64,
            uptime_seconds: self.started.elapsed().as_secs(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialect_finds_its_spelling() {
        let market = Market::new();
        assert!(market.learn(&Instrument::crypto("BTC/EUR")));
        assert!(market.learn(&Instrument::crypto("BTC/USD")));
        assert!(!market.learn(&Instrument::crypto("BTC/USD")));
        market.learn(&Instrument::new("AAPL", "NASDAQ"));
        market.learn(&Instrument::new("RELIANCE", "NSE"));
        market.learn(&Instrument::new("RELIANCE", "BSE"));
        // The USD pair wins `btc` though it came second.
        assert_eq!(market.ws_symbol("BTC"), Some(Instrument::crypto("BTC/USD")));
        assert_eq!(
            market.ws_symbol("aapl"),
            Some(Instrument::new("AAPL", "NASDAQ"))
        );
        assert_eq!(
            market.ws_symbol("reliance"),
            Some(Instrument::new("RELIANCE", "NSE"))
        );
        assert_eq!(market.ws_symbol("xyz"), None);
        assert_eq!(
            market.stream_symbol("BTC/EUR"),
            Some(Instrument::crypto("BTC/EUR"))
        );
        assert_eq!(market.stream_symbol("btc/usd"), None);
        assert_eq!(
            market.by_symbol("AAPL"),
            Some(Instrument::new("AAPL", "NASDAQ"))
        );
        assert_eq!(market.symbols_tracked(), 5);
    }

    #[test]
    fn topics_name_feed_exchange_and_symbol() {
        let btc = Instrument::crypto("BTC/USD");
        assert_eq!(topic_of(Feed::WsPrice, &btc), "ws:price:CRYPTO:BTC/USD");
        assert_eq!(
            topic_of(Feed::StreamPrice, &btc),
            "stream:price:CRYPTO:BTC/USD"
        );
        assert_eq!(
            topic_of(Feed::of_channel(ws::Channel::OrderBook), &btc),
            "ws:book:CRYPTO:BTC/USD"
        );
    }

    #[test]
    fn the_table_holds_its_limit_and_counts_the_refused() {
        let market = Market::with_limit(2);
        assert!(market.learn(&Instrument::crypto("BTC/USD")));
        assert!(market.learn(&Instrument::crypto("ETH/USD")));
        assert_eq!(market.room(), 0);
        assert!(!market.learn(&Instrument::crypto("SOL/USD")));
        assert!(!market.contains(&Instrument::crypto("SOL/USD")));
        assert_eq!(market.ws_symbol("sol"), None);
        assert!(
            !market.learn(&Instrument::crypto("BTC/USD")),
            "known: not new"
        );
        assert_eq!((market.symbols_tracked(), market.refused()), (2, 1));

        // The fan-out's learner does not remember what the table refused.
        let market = Arc::new(Market::with_limit(1));
        let mut learn = Learn::new(market.clone());
        for symbol in ["BTC/USD", "ETH/USD", "ETH/USD"] {
            learn.on_update(&Update::Trade(tickwire_model::Trade {
                instrument: Instrument::crypto(symbol),
                price: 1.0,
                quantity: None,
                source: Arc::from("test"),
                timestamp_ms: 0,
            }));
        }
        assert_eq!(learn.seen.len(), 1);
        assert_eq!(market.refused(), 2);
    }

    #[test]
    fn status_counts_adapters() {
        let market = Market::new();
        market.adapter_connected();
        market.adapter_connected();
        market.adapter_disconnected();
        market.learn(&Instrument::crypto("ETH/USD"));
        let status = market.status(7);
        assert_eq!(
            (
                status.connected_peers,
                status.active_sources,
                status.symbols_tracked
            ),
            (7, 1, 1)
        );
        market.adapter_disconnected();
        market.adapter_disconnected();
        assert_eq!(market.status(0).active_sources, 0);
    }
}
