//! What a node takes from the bus: only the topics its clients follow.
//!
//! The node's endpoints say which instruments and groups their clients
//! follow ([`Interest::want`] on a topic's first local subscriber,
//! [`Interest::release`] after its last); each wanted [`BusTopic`] is one
//! NATS subscription (`{prefix}.i.{exchange}.{symbol}.*`,
//! `{prefix}.g.{group}.*`), made on the first want and dropped after the
//! last release plus a grace (so a client that reconnects, or a topic that
//! flaps between one subscriber and none, costs no unsubscribe and
//! resubscribe). A node whose clients follow nothing of an instrument
//! receives none of its traffic: NATS sends each update only to the nodes
//! that want it.
//!
//! A node that starts following an instrument has missed its earlier
//! updates, so it asks every node for the instrument's last values
//! (`{prefix}_last.i.{exchange}.{symbol}`). Each node that ingests it
//! answers with a seed ([`codec::Seed`], see [`crate::Cluster::serve`]):
//! the last tick and book it published, and its current bars. The seed
//! comes on the instrument's own subject, so it arrives in order with that
//! node's updates: the follower delivers the last values newer than what it
//! delivered (never one older, never one twice), and the bars
//! ([`Update::Bars`]) take the place of those it began from the middle of
//! their buckets, so bars are aggregated by the ingesting node and counted
//! once. It asks again after the connection to NATS comes back, so that no
//! client stays on a price from before an outage. Groups carry events, not
//! state: nothing is asked for them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use tickwire_model::{Instrument, Update};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::{BridgeStats, codec};

/// Something a node's clients follow, as the bus carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BusTopic {
    /// Every update of an instrument (ticks, trades, books, signals).
    Instrument(Instrument),
    /// Every payload of a pubsub group (GEX records, raw payloads), by the
    /// group's full name.
    Group(Arc<str>),
}

/// The handle endpoints tell what their clients follow. Cheap to clone;
/// never blocks.
#[derive(Debug, Clone)]
pub struct Interest {
    changes: mpsc::UnboundedSender<(BusTopic, bool)>,
}

impl Interest {
    /// One more local follower of `topic`: the node subscribes to it now if
    /// it did not.
    pub fn want(&self, topic: BusTopic) {
        let _ = self.changes.send((topic, true));
    }

    /// One follower fewer: after the last, the node unsubscribes once the
    /// grace has passed with none back.
    pub fn release(&self, topic: BusTopic) {
        let _ = self.changes.send((topic, false));
    }
}

/// One topic's subscription.
struct Followed {
    wanted: usize,
    /// Since when nobody wants it.
    idle_since: Option<Instant>,
    /// Reads the subscription; aborting it drops the subscription (the
    /// client unsubscribes on drop).
    task: JoinHandle<()>,
}

/// What the follow task needs.
pub(crate) struct Bus {
    pub client: async_nats::Client,
    /// This node's name: the seeds for it.
    pub node: Arc<str>,
    pub subjects: Arc<str>,
    pub groups: Arc<str>,
    pub stats: Arc<BridgeStats>,
}

/// Starts following: returns the handle and the stream of what the wanted
/// topics carry, until `shutdown`. `reconnected` changes each time the
/// connection to NATS comes back.
pub(crate) fn start(
    bus: Bus,
    grace: Duration,
    reconnected: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) -> (Interest, mpsc::Receiver<Update>) {
    let (changes, mut rx) = mpsc::unbounded_channel::<(BusTopic, bool)>();
    // Bounded: a fan-out that cannot keep up holds the subscriptions' own
    // buffers rather than memory without end (NATS reports a slow consumer).
    let (out, updates) = mpsc::channel::<Update>(4096);
    let interest = Interest { changes };
    let stats = bus.stats.clone();
    let bus = Arc::new(bus);
    tokio::spawn(async move {
        let mut followed: HashMap<BusTopic, Followed> = HashMap::new();
        let mut sweep = tokio::time::interval((grace / 2).max(Duration::from_millis(50)));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                change = rx.recv() => {
                    let Some((topic, up)) = change else { break };
                    if up {
                        let entry = followed.entry(topic.clone()).or_insert_with(|| {
                            stats.subscriptions.fetch_add(1, Ordering::Relaxed);
                            Followed {
                                wanted: 0,
                                idle_since: None,
                                task: tokio::spawn(follow(
                                    bus.clone(),
                                    topic,
                                    out.clone(),
                                    reconnected.clone(),
                                )),
                            }
                        });
                        entry.wanted += 1;
                        entry.idle_since = None;
                    } else if let Some(entry) = followed.get_mut(&topic) {
                        entry.wanted = entry.wanted.saturating_sub(1);
                        if entry.wanted == 0 {
                            entry.idle_since = Some(Instant::now());
                        }
                    }
                }
                _ = sweep.tick() => {
                    let now = Instant::now();
                    followed.retain(|topic, entry| {
                        let keep = entry.idle_since.is_none_or(|t| now - t < grace);
                        if !keep {
                            debug!(?topic, "no local follower: unsubscribed from the bus");
                            entry.task.abort();
                            stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
                        }
                        keep
                    });
                }
                () = crate::stopped(&mut shutdown) => break,
            }
        }
        for entry in followed.values() {
            entry.task.abort();
        }
    });
    (interest, updates)
}

/// The subscription of `topic`, and for an instrument the subjects its last
/// values are asked on and come back on.
fn subjects(bus: &Bus, topic: &BusTopic) -> (String, Option<(String, String)>) {
    match topic {
        BusTopic::Instrument(i) => (
            codec::instrument_subject(&bus.subjects, i, "*"),
            Some((
                codec::last_values_subject(&bus.subjects, i),
                codec::seed_subject(&bus.subjects, i),
            )),
        ),
        BusTopic::Group(g) => (codec::group_subject(&bus.subjects, g, "*"), None),
    }
}

/// Reads `topic`'s subscription into `out` until aborted, with the last
/// values of an instrument asked for at the start and after each reconnect.
async fn follow(
    bus: Arc<Bus>,
    topic: BusTopic,
    out: mpsc::Sender<Update>,
    mut reconnected: watch::Receiver<u64>,
) {
    let (filter, seeding) = subjects(&bus, &topic);
    // Live first, so nothing published from now on is missed. The nodes
    // that ingest the instrument answer on its own subject (`….seed`), so
    // their seed comes in order with their updates: what it counts has
    // come before it, what it does not, after.
    let mut live = match bus.client.subscribe(filter.clone()).await {
        Ok(s) => s,
        Err(e) => {
            warn!(subject = %filter, error = %e, "cannot subscribe on the bus; this node's clients get nothing of it");
            return;
        }
    };
    if let Some((ask_on, answer_on)) = &seeding {
        ask(&bus, ask_on, answer_on).await;
    }
    reconnected.mark_unchanged();
    let mut last = LastDelivered::default();
    loop {
        tokio::select! {
            message = live.next() => {
                let Some(message) = message else { break };
                if message.subject.as_str().ends_with(SEED_SUFFIX) {
                    if message.status.is_some() {
                        // NATS saying that no node is up to answer.
                        continue;
                    }
                    for update in seeded(&bus, &message.payload, &mut last) {
                        bus.stats.last_values.fetch_add(1, Ordering::Relaxed);
                        if out.send(update).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                let Some(update) = read(&bus, &message.payload) else { continue };
                if codec::is_state(&update) && !last.live(message.subject.as_str(), &update, &message.payload) {
                    continue;
                }
                if out.send(update).await.is_err() {
                    break;
                }
            }
            changed = reconnected.changed() => {
                if changed.is_err() {
                    break;
                }
                if let Some((ask_on, answer_on)) = &seeding {
                    ask(&bus, ask_on, answer_on).await;
                }
            }
        }
    }
}

/// `.seed`: the last token of a seed's subject.
const SEED_SUFFIX: &str = ".seed";

/// What a seed for this node brings: its last values newer than what was
/// delivered (never one twice), then its bars. Nothing of a seed for
/// another node, or of one that cannot be read (counted, logged).
fn seeded(bus: &Bus, payload: &[u8], last: &mut LastDelivered) -> Vec<Update> {
    let seed = match codec::decode_seed(payload) {
        Ok(seed) => seed,
        Err(e) => {
            bus.stats.skip_unreadable("seed", &e);
            return Vec::new();
        }
    };
    if seed.for_node != *bus.node {
        return Vec::new();
    }
    let mut updates = Vec::with_capacity(seed.updates.len() + 1);
    for (update, bytes) in seed.updates {
        if !codec::is_state(&update) {
            continue;
        }
        let Some(subject) = codec::subject(&bus.subjects, &bus.groups, &update) else {
            continue;
        };
        if last.restated(&subject, &update, &bytes) {
            updates.push(update);
        }
    }
    if let Some(bars) = seed.bars {
        updates.push(Update::Bars(Arc::new(bars)));
    }
    updates
}

/// Asks every node for the last values on `subject`, answers on
/// `answer_on` (the instrument's seed subject), naming this node.
async fn ask(bus: &Bus, subject: &str, answer_on: &str) {
    if let Err(e) = bus
        .client
        .publish_with_reply(
            subject.to_owned(),
            answer_on.to_owned(),
            Bytes::from(bus.node.to_string()),
        )
        .await
    {
        warn!(subject, error = %e, "cannot ask for last values");
    }
}

/// Decodes a bus message, counting it (or its failure, logged at most
/// once per ten seconds).
fn read(bus: &Bus, payload: &[u8]) -> Option<Update> {
    match codec::decode(payload) {
        Ok((update, _origin)) => {
            bus.stats.received.fetch_add(1, Ordering::Relaxed);
            Some(update)
        }
        Err(e) => {
            bus.stats.skip_unreadable("cluster message", &e);
            None
        }
    }
}

/// The last state update delivered per subject (tick, book): a live one
/// equal to it is a repeat (the same update, also sent as a last value),
/// and a last value no newer than it is stale.
#[derive(Default)]
struct LastDelivered {
    by_subject: HashMap<String, (i64, Bytes)>,
}

impl LastDelivered {
    /// A live state update on `subject`: whether to deliver it (not a
    /// repeat of the one delivered last).
    fn live(&mut self, subject: &str, update: &Update, payload: &Bytes) -> bool {
        if self
            .by_subject
            .get(subject)
            .is_some_and(|(_, last)| last == payload)
        {
            return false;
        }
        self.set(subject, update, payload);
        true
    }

    /// A last value of `subject` from another node: whether to deliver it
    /// (newer than what was delivered, or the first).
    fn restated(&mut self, subject: &str, update: &Update, payload: &Bytes) -> bool {
        let at = codec::timestamp_ms(update).unwrap_or(i64::MIN);
        if self
            .by_subject
            .get(subject)
            .is_some_and(|(last_at, _)| *last_at >= at)
        {
            return false;
        }
        self.set(subject, update, payload);
        true
    }

    /// `update` (as `payload`) is the last delivered on `subject`.
    fn set(&mut self, subject: &str, update: &Update, payload: &Bytes) {
        let at = codec::timestamp_ms(update).unwrap_or(i64::MIN);
        match self.by_subject.get_mut(subject) {
            Some(entry) => *entry = (at, payload.clone()),
            None => {
                self.by_subject
                    .insert(subject.to_owned(), (at, payload.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_model::PriceTick;

    fn tick(price: f64, at: i64) -> (Update, Bytes) {
        let update = Update::Tick(PriceTick {
            instrument: Instrument::crypto("BTC/USD"),
            price,
            last_quantity: 1.0,
            bid: price,
            bid_quantity: 1.0,
            ask: price,
            ask_quantity: 1.0,
            open: price,
            high: price,
            low: price,
            prev_close: price,
            change_24h_pct: 0.0,
            volume_24h: None,
            session_volume: 0.0,
            source: Arc::from("test"),
            timestamp_ms: at,
        });
        let bytes = codec::encode(&update, "a").unwrap();
        (update, bytes)
    }

    #[test]
    fn last_values_never_go_back_nor_repeat() {
        let mut last = LastDelivered::default();
        let (old, old_bytes) = tick(1.0, 10);
        let (new, new_bytes) = tick(2.0, 20);
        // A last value first, then the same update live: once.
        assert!(last.restated("s", &old, &old_bytes));
        assert!(!last.live("s", &old, &old_bytes));
        // A newer live one, then a last value older than it: the old one
        // is not delivered after the new.
        assert!(last.live("s", &new, &new_bytes));
        assert!(!last.restated("s", &old, &old_bytes));
        assert!(!last.restated("s", &new, &new_bytes), "the same again");
        // Another subject is apart.
        assert!(last.restated("t", &old, &old_bytes));
        // After an outage: a newer last value than what was delivered.
        let (newer, newer_bytes) = tick(3.0, 30);
        assert!(last.restated("s", &newer, &newer_bytes));
        assert!(!last.live("s", &newer, &newer_bytes));
    }
}
