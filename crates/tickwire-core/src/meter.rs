//! What a server counts for its operators, without knowing any metrics
//! library: plain atomics that an exporter reads when it is scraped.
//!
//! - [`Meter`]: one endpoint's and wire format's connections, and the
//!   messages and bytes written to them; a connection finds its meter by
//!   the labels of its [`Transport`](crate::Transport) ([`Meters::get`]);
//! - [`Histogram`]: a latency histogram of fixed buckets, one atomic add
//!   per observation (no lock on the hot path);
//! - [`Roster`]: the connections open now, each with what an operator asks
//!   of it (endpoint, key, remote address, subscriptions, queue depth, age)
//!   and the way to drop it.
//!
//! The hot path pays two relaxed atomic adds per socket write, not per
//! message: a writer counts the messages and bytes of each write. The
//! counters are striped by thread ([`STRIPES`] cache-line-sized slots), so
//! the runtime's workers never contend for one cache line; a scrape adds
//! the stripes up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::subscriber::Subscriber;

/// Slots of a striped counter: more than the runtime's workers, so that two
/// threads rarely share one.
pub const STRIPES: usize = 8;

/// The stripe of the calling thread: threads take the stripes in turn as
/// they first count.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// One thread's share of a meter's write counters, alone on its cache
/// lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Written {
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// The counters of one endpoint and wire format.
#[derive(Debug)]
pub struct Meter {
    endpoint: &'static str,
    format: &'static str,
    /// The server's latency histograms, which its writes sample.
    latencies: Arc<Latencies>,
    accepted: AtomicU64,
    open: AtomicU64,
    written: [Written; STRIPES],
}

/// A snapshot of a [`Meter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterCounts {
    /// The endpoint (`ws`, `stream`, `hubs`, ...).
    pub endpoint: &'static str,
    /// The wire format (`json`, `protobuf`, ...).
    pub format: &'static str,
    /// Connections accepted since the start.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Data messages written.
    pub messages: u64,
    /// Bytes written, every frame counted (data, replies, pings, closes).
    pub bytes: u64,
}

impl Meter {
    fn new(endpoint: &'static str, format: &'static str, latencies: Arc<Latencies>) -> Meter {
        Meter {
            endpoint,
            format,
            latencies,
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
            written: Default::default(),
        }
    }

    /// The latency histograms the writes of its connections sample.
    pub fn latencies(&self) -> &Latencies {
        &self.latencies
    }

    /// Counts one write of `messages` data messages in `bytes` bytes.
    pub fn wrote(&self, messages: u64, bytes: u64) {
        let mine = &self.written[stripe()];
        if messages > 0 {
            mine.messages.fetch_add(messages, Ordering::Relaxed);
        }
        mine.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a connection as accepted and open until the guard is dropped.
    pub fn opened(self: &Arc<Self>) -> OpenGuard {
        self.count_open();
        OpenGuard(self.clone())
    }

    /// One more connection accepted and open: what [`OpenGuard`] and the
    /// [`Roster`]'s [`Listed`] hold until they are dropped.
    fn count_open(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// One connection fewer open.
    fn count_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn counts(&self) -> MeterCounts {
        MeterCounts {
            endpoint: self.endpoint,
            format: self.format,
            accepted: self.accepted.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            messages: self
                .written
                .iter()
                .map(|w| w.messages.load(Ordering::Relaxed))
                .sum(),
            bytes: self
                .written
                .iter()
                .map(|w| w.bytes.load(Ordering::Relaxed))
                .sum(),
        }
    }
}

/// One connection counted open on its [`Meter`] until dropped.
#[derive(Debug)]
pub struct OpenGuard(Arc<Meter>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.count_closed();
    }
}

/// The meters of a server, one per endpoint and format, made when first
/// asked for.
#[derive(Debug, Default)]
pub struct Meters {
    meters: Mutex<Vec<Arc<Meter>>>,
    latencies: Arc<Latencies>,
}

impl Meters {
    /// Meters whose writes sample `latencies`.
    pub fn new(latencies: Arc<Latencies>) -> Meters {
        Meters {
            meters: Mutex::default(),
            latencies,
        }
    }

    /// The meter of `endpoint` and `format` (looked up once per connection).
    pub fn get(&self, endpoint: &'static str, format: &'static str) -> Arc<Meter> {
        let mut meters = crate::lock(&self.meters);
        if let Some(m) = meters
            .iter()
            .find(|m| m.endpoint == endpoint && m.format == format)
        {
            return m.clone();
        }
        let meter = Arc::new(Meter::new(endpoint, format, self.latencies.clone()));
        meters.push(meter.clone());
        meter
    }

    /// Every meter's counts, in the order they were made.
    pub fn counts(&self) -> Vec<MeterCounts> {
        crate::lock(&self.meters)
            .iter()
            .map(|m| m.counts())
            .collect()
    }
}

/// The upper bounds of the latency buckets, in seconds: 50 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// A latency histogram over [`LATENCY_BUCKETS`] (and `+Inf`): two atomic
/// adds per observation (its bucket and the sum), on the calling thread's
/// stripe, no lock. The count is the buckets' total.
#[derive(Debug, Default)]
pub struct Histogram {
    stripes: [Observed; STRIPES],
}

/// One thread's share of a histogram, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Observed {
    /// Non-cumulative counts, one per bucket, the last for `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

/// A snapshot of a [`Histogram`], in the exposition's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramCounts {
    /// `(upper bound in seconds, observations at most that)`, cumulative,
    /// for each of [`LATENCY_BUCKETS`].
    pub buckets: Vec<(f64, u64)>,
    /// The sum of the observations, in seconds.
    pub sum: f64,
    /// Observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let at = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        let mine = &self.stripes[stripe()];
        mine.buckets[at].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        mine.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn counts(&self) -> HistogramCounts {
        let mut own = [0u64; LATENCY_BUCKETS.len() + 1];
        let mut sum_ns = 0u64;
        for stripe in &self.stripes {
            for (n, b) in own.iter_mut().zip(&stripe.buckets) {
                *n += b.load(Ordering::Relaxed);
            }
            sum_ns = sum_ns.saturating_add(stripe.sum_ns.load(Ordering::Relaxed));
        }
        let mut total = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(own)
            .map(|(&bound, n)| {
                total += n;
                (bound, total)
            })
            .collect();
        HistogramCounts {
            buckets,
            sum: Duration::from_nanos(sum_ns).as_secs_f64(),
            count: own.iter().sum(),
        }
    }
}

/// The latencies a server measures: how long one update takes to reach every
/// queue ([`fan_out`](Latencies::fan_out)), and from the moment an update
/// entered the fan-out to the write that carried it to a client
/// ([`publish_to_write`](Latencies::publish_to_write), measured on the
/// oldest message of a write: the one that waited longest; each
/// connection's first write and one in [`SAMPLE_WRITES`] after it).
#[derive(Debug, Default)]
pub struct Latencies {
    /// Time to hand one update to every endpoint's feed (encoding and queueing).
    pub fan_out: Histogram,
    /// Time from an update entering the fan-out to the socket write.
    pub publish_to_write: Histogram,
}

/// A connection's writes are timed one in this many (the first included):
/// reading the clock on every write would cost more than the rest of the
/// metering.
pub const SAMPLE_WRITES: u32 = 8;

/// Who is on the other end of a connection, as the transport knows it (the
/// key it presented is the endpoint's to say, once it knows:
/// [`Subscriber::set_principal`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    /// The client's address.
    pub remote: Option<SocketAddr>,
}

/// One open connection in the [`Roster`]: only what cannot be derived (its
/// id is its subscriber's, its endpoint and format its meter's), so that
/// the roster costs each connection little.
#[derive(Debug, Clone)]
pub struct Card {
    /// Its meter: the endpoint and wire format.
    pub meter: Arc<Meter>,
    /// Who it is.
    pub peer: Peer,
    /// When it opened.
    pub opened_at: SystemTime,
    /// The connection itself: its id, queue and subscription count.
    pub sub: Subscriber,
}

impl Card {
    /// The connection id.
    pub fn id(&self) -> u64 {
        self.sub.id()
    }

    /// Its endpoint's name.
    pub fn endpoint(&self) -> &'static str {
        self.meter.endpoint
    }

    /// Its wire format.
    pub fn format(&self) -> &'static str {
        self.meter.format
    }
}

/// The connections open now (see the [module](self) docs).
#[derive(Debug, Default)]
pub struct Roster {
    cards: Mutex<HashMap<u64, Card>>,
}

impl Roster {
    /// Lists `card` until the returned guard is dropped, counting it
    /// accepted and open on its meter meanwhile.
    pub fn enter(self: &Arc<Self>, card: Card) -> Listed {
        let id = card.id();
        card.meter.count_open();
        crate::lock(&self.cards).insert(id, card);
        Listed {
            roster: self.clone(),
            id,
        }
    }

    /// How many connections are listed.
    pub fn len(&self) -> usize {
        crate::lock(&self.cards).len()
    }

    /// Whether no connection is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every connection open now, oldest first.
    pub fn cards(&self) -> Vec<Card> {
        let mut cards: Vec<Card> = crate::lock(&self.cards).values().cloned().collect();
        cards.sort_by_key(Card::id);
        cards
    }

    /// The open connection `id`.
    pub fn card(&self, id: u64) -> Option<Card> {
        crate::lock(&self.cards).get(&id).cloned()
    }

    /// Folds over the connections open now, without copying them (a scrape's
    /// sums).
    pub fn fold<T>(&self, init: T, f: impl FnMut(T, &Card) -> T) -> T {
        crate::lock(&self.cards).values().fold(init, f)
    }
}

/// A connection listed in the [`Roster`] (and counted open on its meter)
/// until dropped.
#[derive(Debug)]
pub struct Listed {
    roster: Arc<Roster>,
    id: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        let card = crate::lock(&self.roster.cards).remove(&self.id);
        if let Some(card) = card {
            card.meter.count_closed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_per_endpoint_and_format_counts_opens_and_writes() {
        let meters = Meters::default();
        let ws = meters.get("ws", "json");
        assert!(Arc::ptr_eq(&ws, &meters.get("ws", "json")));
        let hubs = meters.get("hubs", "protobuf");
        let a = ws.opened();
        let b = ws.opened();
        drop(a);
        ws.wrote(3, 120);
        ws.wrote(0, 2);
        hubs.wrote(1, 10);
        let counts = meters.counts();
        assert_eq!(counts.len(), 2);
        assert_eq!(
            (
                counts[0].accepted,
                counts[0].open,
                counts[0].messages,
                counts[0].bytes
            ),
            (2, 1, 3, 122)
        );
        assert_eq!((counts[1].endpoint, counts[1].messages), ("hubs", 1));
        drop(b);
        assert_eq!(meters.counts()[0].open, 0);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(40));
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_secs(20));
        let c = h.counts();
        assert_eq!(c.count, 3);
        assert_eq!(c.buckets[0], (0.000_05, 1));
        // 700 µs is in the 1 ms bucket and every later one.
        assert_eq!(c.buckets[3], (0.000_5, 1));
        assert_eq!(c.buckets[4], (0.001, 2));
        // 20 s is above every bound: only in `+Inf` (the count).
        assert_eq!(c.buckets.last().map(|b| b.1), Some(2));
        assert!((c.sum - 20.000_74).abs() < 1e-9);
    }
}
