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
//! Instruments are forgotten when idle ([`Market::sweep`], every
//! `forget_instruments_after_secs`): one that no update named during a
//! whole period, that no adapter lists and that no client follows (each
//! endpoint says whom it follows through an [`Interest`]) leaves the table,
//! and the fan-out carries an [`Update::Forget`] so that every feed drops
//! what it keeps for it. A later update makes it known again.
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

/// The instrument of a JSON-feed topic of an instrument
/// (`ws:price:CRYPTO:BTC/USD`), `None` for any other name (the housekeeping
/// topics, another endpoint's).
pub fn instrument_of_topic(name: &str) -> Option<Instrument> {
    let rest = [
        Feed::WsPrice,
        Feed::WsBook,
        Feed::WsSignal,
        Feed::StreamPrice,
    ]
    .into_iter()
    .find_map(|feed| name.strip_prefix(feed.prefix()))?;
    let (exchange, symbol) = rest.split_once(':')?;
    (!exchange.is_empty() && !symbol.is_empty()).then(|| Instrument::new(symbol, exchange))
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
    shutdown: tokio::sync::watch::Receiver<bool>,
    mut encode: impl FnMut() -> Bytes,
) {
    tickwire_core::every(period, shutdown, || {
        let Some(topic) = feeds.lookup(name) else {
            return;
        };
        if feeds.subscriber_count(topic) > 0 {
            publish_text(feeds, topic, &encode(), Kind::Housekeeping);
        }
    })
    .await;
}

/// The first part of the fan-out: every instrument an update names becomes
/// known to the symbol table, and counts as updated in the table's current
/// period (the table's lock is taken once per instrument and period).
#[derive(Debug)]
pub struct Learn {
    market: Arc<Market>,
    /// Instruments and the last period they were marked in.
    seen: HashMap<Instrument, u64>,
    /// The period `seen` was last pruned in.
    period: u64,
}

impl Learn {
    /// A learner that adds what it sees to `market`.
    pub fn new(market: Arc<Market>) -> Learn {
        Learn {
            market,
            seen: HashMap::new(),
            period: 0,
        }
    }
}

impl UpdateFeed<Update> for Learn {
    fn on_update(&mut self, update: &Update) {
        if let Update::Forget(gone) = update {
            for instrument in gone.iter() {
                self.seen.remove(instrument);
            }
            return;
        }
        let Some(instrument) = update.instrument() else {
            return;
        };
        let period = self.market.period();
        if period != self.period {
            // What was not marked in the last period is no longer needed.
            self.seen.retain(|_, p| *p + 1 >= period);
            self.period = period;
        }
        if self.seen.get(instrument) == Some(&period) {
            return;
        }
        // Only what the table took: a refused one stays unremembered.
        if self.market.touch(instrument) {
            self.seen.insert(instrument.clone(), period);
        }
    }
}

/// Whether an endpoint's clients follow an instrument now (a subscription
/// of any kind): such an instrument is never forgotten. Registered with
/// [`Market::add_interest`] by whoever wires the endpoints.
pub type Interest = Box<dyn Fn(&Instrument) -> bool + Send + Sync>;

/// An [`Interest`] in the JSON feeds' topics of `feeds` (`/ws`'s three and
/// `/stream`'s).
pub fn json_feeds_interest(feeds: Arc<Index>) -> Interest {
    Box::new(move |instrument| {
        let mut name = String::new();
        [
            Feed::WsPrice,
            Feed::WsBook,
            Feed::WsSignal,
            Feed::StreamPrice,
        ]
        .into_iter()
        .any(|feed| {
            topic(&mut name, feed, instrument);
            feeds.lookup(&name).is_some()
        })
    })
}

/// Known instruments and the gateway's figures.
///
/// The table's lock is held for a map operation at a time, never across an
/// `.await`.
pub struct Market {
    table: RwLock<Table>,
    adapters: AtomicU64,
    started: Instant,
    /// Most instruments the table holds; new ones beyond are refused.
    limit: usize,
    /// Instruments refused because the table was full.
    refused: AtomicU64,
    /// The current period of [`Market::sweep`].
    period: AtomicU64,
    /// Instruments forgotten so far.
    forgotten: AtomicU64,
    /// Whom the endpoints' clients follow.
    interests: RwLock<Vec<Interest>>,
}

impl std::fmt::Debug for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Market")
            .field("instruments", &self.symbols_tracked())
            .field("limit", &self.limit)
            .field("period", &self.period())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Table {
    all: HashSet<Instrument>,
    /// Listed by an adapter: never forgotten.
    pinned: HashSet<Instrument>,
    /// Named by an update in the current period.
    recent: HashSet<Instrument>,
    /// `/ws` spelling → instrument.
    ws: HashMap<String, Instrument>,
    /// `/stream` spelling → instrument.
    stream: HashMap<String, Instrument>,
    /// Canonical symbol → the first instrument of that symbol (publish API).
    by_symbol: HashMap<String, Instrument>,
}

impl Table {
    /// Adds `instrument` to the table and to each dialect's map.
    fn insert(&mut self, instrument: &Instrument) {
        self.all.insert(instrument.clone());
        self.index(instrument);
    }

    /// Makes `instrument` (known) what each dialect's spelling of it means,
    /// unless another instrument has that spelling and is preferred.
    fn index(&mut self, instrument: &Instrument) {
        let ws_key = ws::symbol_of(instrument).into_owned();
        let preferred = |i: &Instrument| {
            i.exchange.as_ref() == Instrument::CRYPTO && i.quote() == Some(ws::DEFAULT_QUOTE)
        };
        match self.ws.get(&ws_key) {
            Some(existing) if !preferred(instrument) || preferred(existing) => {}
            _ => {
                self.ws.insert(ws_key, instrument.clone());
            }
        }
        self.stream
            .entry(stream::symbol_of(instrument).to_owned())
            .or_insert_with(|| instrument.clone());
        self.by_symbol
            .entry(instrument.symbol.to_string())
            .or_insert_with(|| instrument.clone());
    }

    /// Drops the spellings of instruments no longer in the table, and gives
    /// each to another instrument of that spelling, if one is known.
    fn reindex(&mut self) {
        let all = &self.all;
        let before = self.ws.len() + self.stream.len() + self.by_symbol.len();
        self.ws.retain(|_, i| all.contains(i));
        self.stream.retain(|_, i| all.contains(i));
        self.by_symbol.retain(|_, i| all.contains(i));
        if self.ws.len() + self.stream.len() + self.by_symbol.len() == before {
            return;
        }
        // Spellings shared with a remaining instrument find it again.
        let remaining: Vec<Instrument> = self.all.iter().cloned().collect();
        for instrument in &remaining {
            self.index(instrument);
        }
    }
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
            period: AtomicU64::new(0),
            forgotten: AtomicU64::new(0),
            interests: RwLock::new(Vec::new()),
        }
    }

    /// Every instrument known now, in no particular order.
    pub fn instruments(&self) -> Vec<Instrument> {
        self.read().all.iter().cloned().collect()
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
        table.insert(instrument);
        true
    }

    /// Learns `instrument` if it is new and marks it as updated in the
    /// current period; false when the table is full and refused it.
    pub fn touch(&self, instrument: &Instrument) -> bool {
        {
            // The common cases under the read lock: marked already, or
            // refused (a flood of a full table's refused instruments must
            // not take the write lock per update).
            let table = self.read();
            let known = table.all.contains(instrument);
            if known && table.recent.contains(instrument) {
                return true;
            }
            if !known && table.all.len() >= self.limit {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        let mut table = self.write();
        if !table.all.contains(instrument) {
            if table.all.len() >= self.limit {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            table.insert(instrument);
        }
        if !table.recent.contains(instrument) {
            table.recent.insert(instrument.clone());
        }
        true
    }

    /// Learns every instrument of `instruments` (an adapter's list) and
    /// keeps them for good.
    pub fn learn_all(&self, instruments: &[Instrument]) {
        for instrument in instruments {
            if self.learn(instrument) || self.contains(instrument) {
                self.write().pinned.insert(instrument.clone());
            }
        }
    }

    /// Adds whom an endpoint's clients follow to what [`sweep`](Self::sweep)
    /// keeps.
    pub fn add_interest(&self, interest: Interest) {
        self.interests
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(interest);
    }

    /// The current period of [`sweep`](Self::sweep).
    pub fn period(&self) -> u64 {
        self.period.load(Ordering::Acquire)
    }

    /// Instruments forgotten so far.
    pub fn forgotten(&self) -> u64 {
        self.forgotten.load(Ordering::Relaxed)
    }

    /// Ends the current period: forgets (and returns) every instrument that
    /// no update named since the last sweep, that no adapter lists and
    /// that no [`Interest`] follows, then starts a new period. Called every
    /// `forget_instruments_after_secs`, so an idle instrument goes after
    /// one to two of them; the caller tells the feeds
    /// ([`Update::Forget`]).
    pub fn sweep(&self) -> Vec<Instrument> {
        let candidates: Vec<Instrument> = {
            let table = self.read();
            table
                .all
                .iter()
                .filter(|i| !table.pinned.contains(*i) && !table.recent.contains(*i))
                .cloned()
                .collect()
        };
        // The interests take their own locks: not under the table's.
        let idle: Vec<Instrument> = {
            let interests = self
                .interests
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            candidates
                .into_iter()
                .filter(|i| !interests.iter().any(|followed| followed(i)))
                .collect()
        };
        let mut table = self.write();
        // Updated meanwhile: kept.
        let gone: Vec<Instrument> = idle
            .into_iter()
            .filter(|i| !table.recent.contains(i) && table.all.remove(i))
            .collect();
        if !gone.is_empty() {
            table.reindex();
        }
        table.recent.clear();
        self.period.fetch_add(1, Ordering::AcqRel);
        drop(table);
        self.forgotten
            .fetch_add(gone.len() as u64, Ordering::Relaxed);
        gone
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
    fn topics_name_their_instrument_back() {
        for feed in [
            Feed::WsPrice,
            Feed::WsBook,
            Feed::WsSignal,
            Feed::StreamPrice,
        ] {
            for instrument in [
                Instrument::crypto("BTC/USD"),
                Instrument::new("BRK.B", "NYSE"),
                Instrument::new("A:B", "X"),
            ] {
                let name = topic_of(feed, &instrument);
                assert_eq!(instrument_of_topic(&name), Some(instrument), "{name}");
            }
        }
        assert_eq!(instrument_of_topic(WS_STATUS), None);
        assert_eq!(instrument_of_topic(STREAM_HEARTBEAT), None);
        assert_eq!(instrument_of_topic("ws:price:CRYPTO"), None);
        assert_eq!(instrument_of_topic("fastws:bars:NASDAQ:AAPL:1"), None);
    }

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

    fn trade(symbol: &str) -> Update {
        Update::Trade(tickwire_model::Trade {
            instrument: Instrument::crypto(symbol),
            price: 1.0,
            quantity: None,
            source: Arc::from("test"),
            timestamp_ms: 0,
        })
    }

    #[test]
    fn idle_instruments_nobody_follows_are_forgotten_and_come_back() {
        let market = Arc::new(Market::new());
        // Listed by an adapter: kept for good.
        market.learn_all(&[Instrument::crypto("BTC/USD")]);
        let followed = Instrument::crypto("ETH/USD");
        let watched = followed.clone();
        market.add_interest(Box::new(move |i| *i == watched));
        let mut learn = Learn::new(market.clone());
        for symbol in ["ETH/USD", "DOGE/USD", "SOL/USD", "SOL/EUR"] {
            learn.on_update(&trade(symbol));
        }
        assert_eq!(market.symbols_tracked(), 5);
        // Updated in this period: nothing goes yet.
        assert!(market.sweep().is_empty());
        // SOL/USD keeps trading; the others go quiet for a period.
        learn.on_update(&trade("SOL/USD"));
        let mut gone = market.sweep();
        gone.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        assert_eq!(
            gone,
            [
                Instrument::crypto("DOGE/USD"),
                Instrument::crypto("SOL/EUR")
            ]
        );
        assert_eq!((market.symbols_tracked(), market.forgotten()), (3, 2));
        assert!(market.contains(&followed), "a client follows it");
        assert_eq!(market.stream_symbol("DOGE/USD"), None);
        assert_eq!(market.ws_symbol("doge"), None);
        assert_eq!(market.ws_symbol("sol"), Some(Instrument::crypto("SOL/USD")));
        // The fan-out tells the learner; the next update makes it known again.
        learn.on_update(&Update::Forget(gone.into()));
        learn.on_update(&trade("DOGE/USD"));
        assert_eq!(
            market.stream_symbol("DOGE/USD"),
            Some(Instrument::crypto("DOGE/USD"))
        );
        // SOL/USD's spelling `sol` passes to SOL/EUR when SOL/USD goes.
        learn.on_update(&trade("SOL/EUR"));
        assert_eq!(market.sweep(), [Instrument::crypto("SOL/USD")]);
        assert_eq!(market.ws_symbol("sol"), Some(Instrument::crypto("SOL/EUR")));
        assert_eq!(market.by_symbol("SOL/USD"), None);
    }

    #[test]
    fn the_learner_remembers_no_more_than_two_periods() {
        let market = Arc::new(Market::new());
        let mut learn = Learn::new(market.clone());
        for i in 0..100 {
            learn.on_update(&trade(&format!("C{i}/USD")));
        }
        market.sweep();
        market.sweep();
        learn.on_update(&trade("BTC/USD"));
        assert_eq!(learn.seen.len(), 1, "the forgotten ones are not kept");
    }
}
