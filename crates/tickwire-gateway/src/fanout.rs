//! The fan-out: from adapter updates to every subscriber's queue.
//!
//! One task consumes the update streams of every adapter. For each record it
//! builds the group name into a reused buffer and looks the group up in the
//! subscription index; a group nobody is in costs that lookup and nothing
//! else. Otherwise the record is encoded once (JSON → protobuf → zstd, the
//! `Any` value), wrapped once per wire format actually present among the
//! subscribers, and every subscriber gets a clone (a reference-count bump) in
//! its bounded queue with `try_send`. A full queue drops that client (it is
//! too slow to keep up) and nobody else waits for it.
//!
//! Market events (ticks, books, signals) go to the JSON feeds' topics, one
//! per instrument and kind (`ws:price:CRYPTO:BTC/USD`, `stream:price:…`, see
//! [`crate::market`]): per topic with subscribers the event is encoded once
//! by `tickwire-json` and every subscriber's queue gets a clone of the same
//! `Bytes`. Raw payloads of the publish API go to their pubsub group as they
//! are. Every instrument an update names becomes known to the symbol table.
//!
//! The index's subscriber lists are walked under their read lock; the closure
//! does only non-blocking work (`try_send`, the lazy encode) and never awaits.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;

use futures_util::{FutureExt as _, StreamExt as _};
use tickwire_adapter::UpdateStream;
use tickwire_core::outbox::{SlowConsumerCounts, SlowConsumerStats};
use tickwire_core::{Index, Kind, publish_text};
use tickwire_model::{GexRecord, Instrument, RawDataType, RawGroupPayload, Update};
use tickwire_pubsub::{MessageData, MessageFrom};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::market::{self, Feed, Market};
use crate::pubsub::publish;

/// How often the fan-out logs what the slow-consumer policies did (when
/// anything changed).
const SLOW_CONSUMER_LOG: Duration = Duration::from_secs(10);

/// The most updates handled in one corked burst: enough to turn a publish
/// batch into one write per connection, few enough (well under a
/// millisecond of work) that the first update of a burst is not held back.
const BURST: usize = 128;

/// The fan-out task's state.
pub(crate) struct FanOut {
    index: Arc<Index>,
    feeds: Arc<Index>,
    market: Arc<Market>,
    prefix: String,
    zstd_level: i32,
    /// A reused buffer for group and topic names.
    name: String,
    /// Instruments already learnt, so that the market's lock is taken only
    /// for new ones.
    seen: HashSet<Instrument>,
    /// The OHLCV bars of `/api/v1/ws`, fed with every tick.
    bars: crate::fastws::BarFeed,
    /// The market-data proxy (seed 003), fed with every tick and book.
    proxy: Option<Arc<crate::proxy::Proxy>>,
    /// Most levels a side of a `/ws` `orderbook_update` (`[ws] book_depth`).
    ws_book_depth: usize,
}

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOut")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl FanOut {
    pub(crate) fn new(
        index: Arc<Index>,
        feeds: Arc<Index>,
        market: Arc<Market>,
        prefix: String,
        zstd_level: i32,
    ) -> Self {
        FanOut {
            index,
            feeds,
            market,
            prefix,
            zstd_level,
            name: String::with_capacity(64),
            seen: HashSet::new(),
            bars: crate::fastws::BarFeed::new(),
            proxy: None,
            ws_book_depth: usize::MAX,
        }
    }

    /// Cuts `/ws` `orderbook_update`s to `levels` a side.
    pub(crate) fn with_ws_book_depth(mut self, levels: usize) -> Self {
        self.ws_book_depth = levels;
        self
    }

    /// Feeds `proxy` with every tick and book too.
    pub(crate) fn with_proxy(mut self, proxy: Arc<crate::proxy::Proxy>) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Delivers one update.
    pub(crate) fn handle(&mut self, update: Update) {
        if let Some(instrument) = update.instrument() {
            if !self.seen.contains(instrument) {
                self.market.learn(instrument);
                self.seen.insert(instrument.clone());
            }
        }
        if let Some(proxy) = &self.proxy {
            proxy.on_update(&update);
        }
        match update {
            Update::Gex(record) => self.handle_gex(&record),
            Update::Tick(tick) => {
                self.deliver(Feed::WsPrice, &tick.instrument, || {
                    tickwire_json::ws::encode_tick(&tick)
                });
                self.deliver(Feed::StreamPrice, &tick.instrument, || {
                    tickwire_json::stream::encode_tick(&tick)
                });
                self.bars.on_tick(&self.feeds, &tick);
            }
            Update::Trade(trade) => {
                self.deliver(Feed::WsPrice, &trade.instrument, || {
                    tickwire_json::ws::encode_trade(&trade)
                });
                self.deliver(Feed::StreamPrice, &trade.instrument, || {
                    tickwire_json::stream::encode_trade(&trade)
                });
                self.bars.on_trade(&self.feeds, &trade);
            }
            Update::Book(book) => {
                let levels = self.ws_book_depth;
                self.deliver(Feed::WsBook, &book.instrument, || {
                    tickwire_json::ws::encode_book(&book, levels)
                });
            }
            Update::Signal(signal) => {
                self.deliver(Feed::WsSignal, &signal.instrument, || {
                    tickwire_json::ws::encode_signal(&signal)
                });
            }
            Update::Raw(raw) => self.handle_raw(&raw),
            other => debug!(update = ?other, "update kind not served; skipping"),
        }
    }

    /// Encodes a market event for `feed` once, if anybody is subscribed to
    /// its topic, and queues the same bytes to every subscriber.
    fn deliver(&mut self, feed: Feed, instrument: &Instrument, encode: impl FnOnce() -> Bytes) {
        market::topic(&mut self.name, feed, instrument);
        let Some(topic) = self.feeds.lookup(&self.name) else {
            return;
        };
        if self.feeds.subscriber_count(topic) == 0 {
            return;
        }
        publish_text(&self.feeds, topic, &encode(), Kind::Data);
    }

    fn handle_raw(&mut self, raw: &RawGroupPayload) {
        let Some(topic) = self.index.lookup(&raw.group) else {
            return;
        };
        if self.index.subscriber_count(topic) == 0 {
            return;
        }
        let data = match raw.data_type {
            RawDataType::Binary => MessageData::Binary(raw.data.clone()),
            RawDataType::Text | RawDataType::Json => {
                let text = String::from_utf8_lossy(&raw.data).into_owned();
                match raw.data_type {
                    RawDataType::Json => MessageData::Json(text),
                    _ => MessageData::Text(text),
                }
            }
        };
        let from = MessageFrom::group(raw.group.to_string());
        publish(&self.index, topic, &from, &data, None);
    }

    fn handle_gex(&mut self, record: &GexRecord) {
        self.name.clear();
        // Same form as `GexRecord::group`, without an allocation per record.
        let _ = write!(
            self.name,
            "{}_{}_{}_{}",
            self.prefix,
            record.ticker,
            record.hub.group_kind(),
            record.category
        );
        let Some(topic) = self.index.lookup(&self.name) else {
            return;
        };
        if self.index.subscriber_count(topic) == 0 {
            return;
        }
        let kind = record.hub.record_kind();
        let value = match tickwire_pipeline::encode_json(kind, &record.json, self.zstd_level) {
            Ok(value) => value,
            Err(e) => {
                warn!(group = %self.name, error = %e, "bad record; skipping");
                return;
            }
        };
        let data = MessageData::Protobuf {
            type_url: kind.type_url().to_owned(),
            value,
        };
        let from = MessageFrom::group(self.name.clone());
        publish(&self.index, topic, &from, &data, None);
    }
}

/// The fan-out state, shared by the adapters' task ([`run`]) and the publish
/// API ([`deliver_all`]): whoever has updates delivers them itself, under
/// this lock, so a published update reaches the writers without a hop
/// through another task.
pub(crate) type SharedFanOut = Mutex<FanOut>;

fn lock(fan_out: &SharedFanOut) -> MutexGuard<'_, FanOut> {
    // `handle` leaves the state consistent between updates; a panic in one
    // update must not stop every later one.
    fan_out.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Delivers `updates` in corked bursts of at most [`BURST`], taking the
/// lock once a burst: each writer is woken once for all the frames a burst
/// gave it (see [`tickwire_core::corked`]), and the adapters' task is never
/// kept waiting longer than one burst.
pub(crate) fn deliver_all(fan_out: &SharedFanOut, updates: impl IntoIterator<Item = Update>) {
    let mut updates = updates.into_iter().peekable();
    while updates.peek().is_some() {
        let mut fan_out = lock(fan_out);
        tickwire_core::corked(|| {
            for update in updates.by_ref().take(BURST) {
                fan_out.handle(update);
            }
        });
    }
}

/// Consumes every adapter's update stream until `shutdown` is set, and logs
/// what the slow-consumer policies did every [`SLOW_CONSUMER_LOG`].
///
/// An update is delivered together with every other one already waiting
/// in the streams (at most [`BURST`]), as one corked burst.
pub(crate) async fn run(
    fan_out: Arc<SharedFanOut>,
    streams: Vec<UpdateStream>,
    stats: Arc<SlowConsumerStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut adapters_done = streams.is_empty();
    if adapters_done {
        info!("no adapter update streams; serving published updates only");
    }
    let mut updates = futures_util::stream::select_all(streams);
    let mut report = tokio::time::interval(SLOW_CONSUMER_LOG);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = SlowConsumerCounts::default();
    loop {
        tokio::select! {
            biased;
            () = tickwire_core::shutdown_started(&mut shutdown) => break,
            _ = report.tick() => {
                let now = stats.counts();
                if now != reported {
                    info!(
                        disconnected = now.disconnected - reported.disconnected,
                        dropped_oldest = now.dropped_oldest - reported.dropped_oldest,
                        conflated = now.conflated - reported.conflated,
                        total_disconnected = now.disconnected,
                        total_dropped_oldest = now.dropped_oldest,
                        total_conflated = now.conflated,
                        "slow consumers since the last report"
                    );
                    reported = now;
                }
            }
            next = updates.next(), if !adapters_done => match next {
                Some(first) => {
                    // What the streams hold already; `now_or_never` polls
                    // them without waiting.
                    let mut more = std::iter::from_fn(|| updates.next().now_or_never().flatten());
                    deliver_all(&fan_out, std::iter::once(first).chain(more.by_ref().take(BURST - 1)));
                }
                None => {
                    info!("every adapter's update stream ended");
                    adapters_done = true;
                }
            },
        }
    }
}
