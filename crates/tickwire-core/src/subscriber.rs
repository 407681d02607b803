//! A connection as the fan-out sees it, and delivering one update to every
//! subscriber of a topic.
//!
//! A [`Subscriber`] is a connection's id, its *variant* and its
//! [outbox](crate::outbox). The variant is a small number the endpoint
//! chooses per connection for the encodings it must tell apart (the pubsub
//! hubs use it for the wire format and whether messages are sequenced); the
//! core never interprets it. [`publish`] asks the endpoint for the message
//! of each variant present among a topic's subscribers, at most once each,
//! and queues the same [`Outbound`] (a reference count) to all of them;
//! [`publish_text`] is the common case of one text frame for everyone.
//!
//! The index's subscriber lists are walked under their read lock; the
//! closures do only non-blocking work (`try`-style offers, the lazy encode)
//! and never await.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickwire_index::{SubscriptionIndex, TopicId};
use tracing::{info, warn};

use crate::outbox::{Item, NO_TOPIC, Offered, Outbox, Pacer, SlowConsumer, SlowConsumerStats};
use crate::writer::Outbound;

/// A subscription index of connections.
pub type Index = SubscriptionIndex<Subscriber>;

/// How many variants [`publish`] tells apart.
pub const VARIANTS: usize = 8;

/// A connection as the index and the fan-out see it: its id, variant and
/// [`Outbox`]. Equal and hashed by connection id; cloning is a reference
/// count.
#[derive(Clone)]
pub struct Subscriber(Arc<SubscriberInner>);

struct SubscriberInner {
    id: u64,
    variant: u8,
    outbox: Outbox,
    /// The gateway's counts of slow-consumer decisions.
    stats: Arc<SlowConsumerStats>,
    /// Whether a slow-consumer decision was logged for this connection.
    trimmed: AtomicBool,
    /// [`clock_ms`] of the last data message queued.
    last_data_ms: AtomicU64,
    /// Topics the connection follows, as its endpoint reports them.
    subscriptions: AtomicU32,
    /// The API key's name (or the user) the endpoint authenticated.
    principal: std::sync::Mutex<Option<Arc<str>>>,
    /// Where each offer goes first, for a subscriber that relays.
    relay: Option<Arc<dyn Relay>>,
}

/// Where a relaying [`Subscriber`] hands each update it is offered: on the
/// offering thread, at the moment of the offer, instead of through a queue
/// and a task of its own. An endpoint that feeds on another's fan-out uses
/// one to pass updates on to its own subscribers without a second hop: the
/// Socket.IO namespace's rooms, which are members of the proxy's keys, are.
///
/// [`relay`](Relay::relay) runs where the offer is made: inside the
/// offerer's lock (an index's read lock, or the endpoint's own) and its
/// [corked](crate::corked) burst. So it must not block or await, must do
/// bounded work, and must not subscribe to or unsubscribe from the index
/// that offers to it. Publishing to another index is what it is for; the
/// wake-ups it causes join the offerer's burst.
pub trait Relay: Send + Sync {
    /// Hands on `msg`, an update of `topic` (a conflation key, or
    /// [`NO_TOPIC`]). Returns the message when the subscriber's own queue
    /// should take it as well (for a consumer that does need a task), or
    /// `None` when relaying was all.
    fn relay(&self, topic: u32, msg: Outbound) -> Option<Outbound>;
}

/// What a connection's queue is, does when full, and how its data writes
/// are paced.
#[derive(Debug, Clone)]
pub struct QueuePolicy {
    /// Data items queued at most (`send_buffer`).
    pub capacity: usize,
    /// What a full queue does.
    pub slow_consumer: SlowConsumer,
    /// The gateway's write pacing (`write_delay_ms`), when on.
    pub pacer: Option<Arc<Pacer>>,
}

impl Subscriber {
    /// A connection `id` of `variant` (below [`VARIANTS`]) with a queue of
    /// `queue`, counting its slow-consumer decisions in `stats`.
    pub fn new(id: u64, variant: u8, queue: QueuePolicy, stats: Arc<SlowConsumerStats>) -> Self {
        Self::build(id, variant, queue, stats, None)
    }

    /// A subscriber `id` that hands every update to `relay` as it is
    /// offered (see [`Relay`]), and queues to its own outbox (of `queue`)
    /// only what `relay` gives back.
    pub fn relaying(
        id: u64,
        queue: QueuePolicy,
        stats: Arc<SlowConsumerStats>,
        relay: Arc<dyn Relay>,
    ) -> Self {
        Self::build(id, 0, queue, stats, Some(relay))
    }

    fn build(
        id: u64,
        variant: u8,
        queue: QueuePolicy,
        stats: Arc<SlowConsumerStats>,
        relay: Option<Arc<dyn Relay>>,
    ) -> Self {
        debug_assert!(usize::from(variant) < VARIANTS);
        Subscriber(Arc::new(SubscriberInner {
            id,
            variant,
            outbox: Outbox::new(queue.capacity, queue.slow_consumer, queue.pacer),
            stats,
            trimmed: AtomicBool::new(false),
            last_data_ms: AtomicU64::new(clock_ms()),
            subscriptions: AtomicU32::new(0),
            principal: std::sync::Mutex::new(None),
            relay,
        }))
    }

    /// The connection id.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The endpoint's variant of this connection.
    pub fn variant(&self) -> u8 {
        self.0.variant
    }

    /// Where the connection's drops are counted.
    pub(crate) fn stats(&self) -> &SlowConsumerStats {
        &self.0.stats
    }

    /// Records that the connection follows `n` topics now (its endpoint's
    /// count, for the operators' view of connections).
    pub fn set_subscriptions(&self, n: usize) {
        self.0
            .subscriptions
            .store(u32::try_from(n).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// Records who the client is once its endpoint authenticated it: the
    /// API key's name, or the user of its access token.
    pub fn set_principal(&self, name: &str) {
        *crate::lock(&self.0.principal) = Some(Arc::from(name));
    }

    /// Who the client is, once known.
    pub fn principal(&self) -> Option<Arc<str>> {
        crate::lock(&self.0.principal).clone()
    }

    /// The topics the connection follows, as last recorded.
    pub fn subscriptions(&self) -> u32 {
        self.0.subscriptions.load(Ordering::Relaxed)
    }

    /// The connection's queues.
    pub fn outbox(&self) -> &Outbox {
        &self.0.outbox
    }

    /// When a data message (not a heartbeat or status) was last queued for
    /// this connection.
    pub fn last_data(&self) -> Instant {
        clock_origin() + Duration::from_millis(self.0.last_data_ms.load(Ordering::Relaxed))
    }

    /// Queues `msg`, an update of `topic` ([`NO_TOPIC`] for none); a full
    /// queue applies the slow-consumer policy. A relaying subscriber hands
    /// it to its [`Relay`] first, and queues only what that gives back.
    /// Returns whether the queue (or the relay) took it.
    pub fn offer(&self, topic: u32, msg: Outbound) -> bool {
        let msg = match &self.0.relay {
            None => msg,
            Some(relay) => match relay.relay(topic, msg) {
                None => return true,
                Some(msg) => msg,
            },
        };
        match self.0.outbox.offer(Item::new(topic, msg), &self.0.stats) {
            Offered::Queued => true,
            Offered::Trimmed => {
                if !self.0.trimmed.swap(true, Ordering::Relaxed) {
                    info!(
                        connection = self.id(),
                        policy = %self.0.outbox.policy(),
                        "send buffer full; the slow client skips updates from now on"
                    );
                }
                true
            }
            Offered::Full => {
                warn!(
                    connection = self.id(),
                    capacity = self.0.outbox.capacity(),
                    "send buffer full; dropping the slow client"
                );
                false
            }
            Offered::Closed => false,
        }
    }

    /// Marks the connection for dropping; the writer stops at once. Returns
    /// whether this call was the first to do so.
    pub fn drop_connection(&self) -> bool {
        self.0.outbox.drop_connection()
    }
}

impl PartialEq for Subscriber {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Subscriber {}

impl Hash for Subscriber {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.0.id)
            .field("variant", &self.0.variant)
            .finish_non_exhaustive()
    }
}

/// The conflation key of `topic`.
pub fn topic_key(topic: TopicId) -> u32 {
    u32::try_from(topic.index()).unwrap_or(NO_TOPIC)
}

/// Delivers one update to every subscriber of `topic` (but the connection
/// `except`): `encode(variant)` gives the message of each variant present,
/// and is called at most once per variant. Returns how many queues took it.
pub fn publish(
    index: &Index,
    topic: TopicId,
    except: Option<u64>,
    mut encode: impl FnMut(u8) -> Outbound,
) -> usize {
    let mut encoded: [Option<Outbound>; VARIANTS] = Default::default();
    let key = topic_key(topic);
    let mut delivered = 0;
    index.for_each_subscriber(topic, |sub| {
        if Some(sub.id()) == except {
            return;
        }
        let variant = sub.variant();
        let slot = usize::from(variant) % VARIANTS;
        let out = encoded[slot].get_or_insert_with(|| encode(variant)).clone();
        if sub.offer(key, out) {
            delivered += 1;
        }
    });
    delivered
}

/// Whether a message is data (it counts as activity of the connection, see
/// [`Subscriber::last_data`], and conflates with its topic's) or
/// housekeeping (heartbeats, status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Market data.
    Data,
    /// A heartbeat or status message.
    Housekeeping,
}

/// Delivers one encoded text message to every subscriber of `topic`: the
/// text frame is built once and each queue gets a clone of the same
/// `Bytes`. Returns how many took it.
pub fn publish_text(index: &Index, topic: TopicId, text: &Bytes, kind: Kind) -> usize {
    let now = (kind == Kind::Data).then(clock_ms);
    let key = match kind {
        Kind::Data => topic_key(topic),
        // Never conflated with (or instead of) the topic's data.
        Kind::Housekeeping => NO_TOPIC,
    };
    let mut frame: Option<Outbound> = None;
    let mut delivered = 0;
    index.for_each_subscriber(topic, |sub| {
        let out = frame.get_or_insert_with(|| Outbound::text(text)).clone();
        if sub.offer(key, out) {
            delivered += 1;
            if let Some(now) = now {
                sub.0.last_data_ms.store(now, Ordering::Relaxed);
            }
        }
    });
    delivered
}

/// The instant [`clock_ms`] counts from.
fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since [`clock_origin`]: a monotonic stamp that fits an atomic.
fn clock_ms() -> u64 {
    u64::try_from(clock_origin().elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriber(id: u64, variant: u8) -> Subscriber {
        let queue = QueuePolicy {
            capacity: 4,
            slow_consumer: SlowConsumer::Disconnect,
            pacer: None,
        };
        Subscriber::new(id, variant, queue, Arc::new(SlowConsumerStats::default()))
    }

    fn queued(sub: &Subscriber) -> Vec<Outbound> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut batch = crate::outbox::Batch::default();
        let _ = sub.outbox().poll_take(&mut cx, &mut batch);
        batch.data.into_iter().map(|item| item.out).collect()
    }

    #[test]
    fn each_variant_is_encoded_once_and_shared() {
        let index = Index::new();
        let subs = [
            subscriber(1, 0),
            subscriber(2, 1),
            subscriber(3, 0),
            subscriber(4, 1),
        ];
        for sub in &subs {
            index.subscribe("t", sub.clone());
        }
        let topic = index.lookup("t").unwrap();
        let mut calls = Vec::new();
        let delivered = publish(&index, topic, Some(3), |variant| {
            calls.push(variant);
            Outbound::text(&[b'a' + variant])
        });
        assert_eq!(delivered, 3, "all but the excepted one");
        calls.sort_unstable();
        assert_eq!(calls, [0, 1]);
        let frames: Vec<Bytes> = subs
            .iter()
            .flat_map(queued)
            .map(|out| match out {
                Outbound::Frame(bytes) => bytes,
                Outbound::Sequenced(_) => panic!("a frame was queued"),
            })
            .collect();
        assert_eq!(frames.len(), 3);
        // The same bytes, not copies, for one variant.
        let a: Vec<&Bytes> = frames.iter().filter(|f| f[2] == b'a').collect();
        assert_eq!(a.len(), 1);
        let b: Vec<&Bytes> = frames.iter().filter(|f| f[2] == b'b').collect();
        assert_eq!((b.len(), b[0].as_ptr()), (2, b[1].as_ptr()));
    }

    #[test]
    fn text_is_framed_once_and_data_marks_activity() {
        let index = Index::new();
        let subs = [subscriber(1, 0), subscriber(2, 0)];
        for sub in &subs {
            index.subscribe("t", sub.clone());
        }
        let topic = index.lookup("t").unwrap();
        let before = subs[0].last_data();
        std::thread::sleep(Duration::from_millis(5));
        publish_text(
            &index,
            topic,
            &Bytes::from_static(b"hb"),
            Kind::Housekeeping,
        );
        assert_eq!(subs[0].last_data(), before, "housekeeping is not activity");
        assert_eq!(
            publish_text(&index, topic, &Bytes::from_static(b"x"), Kind::Data),
            2
        );
        assert!(subs[0].last_data() > before);
        let ptrs: Vec<*const u8> = subs
            .iter()
            .flat_map(queued)
            .filter_map(|out| match out {
                Outbound::Frame(bytes) if bytes.ends_with(b"x") => Some(bytes.as_ptr()),
                _ => None,
            })
            .collect();
        assert_eq!(ptrs.len(), 2);
        assert_eq!(ptrs[0], ptrs[1]);
    }

    /// Passes each update of its topic on to `onward`'s topic `to`, and
    /// gives back the ones `keep` says its own queue takes too.
    struct Onward {
        onward: Arc<Index>,
        to: &'static str,
        keep: fn(&Bytes) -> bool,
    }

    impl Relay for Onward {
        fn relay(&self, _topic: u32, msg: Outbound) -> Option<Outbound> {
            let Outbound::Frame(frame) = &msg else {
                return Some(msg);
            };
            let text = Bytes::copy_from_slice(&frame[2..]);
            if let Some(topic) = self.onward.lookup(self.to) {
                publish_text(&self.onward, topic, &text, Kind::Data);
            }
            (self.keep)(&text).then_some(msg)
        }
    }

    /// A waker that counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_relay_passes_updates_on_at_the_offer_within_the_offerers_burst() {
        let upstream = Index::new();
        let onward = Arc::new(Index::new());
        let queue = QueuePolicy {
            capacity: 4,
            slow_consumer: SlowConsumer::Disconnect,
            pacer: None,
        };
        let relay = Subscriber::relaying(
            9,
            queue,
            Arc::new(SlowConsumerStats::default()),
            Arc::new(Onward {
                onward: onward.clone(),
                to: "room",
                keep: |text| text.starts_with(b"keep"),
            }),
        );
        upstream.subscribe("t", relay.clone());
        let members = [subscriber(1, 0), subscriber(2, 0)];
        for member in &members {
            onward.subscribe("room", member.clone());
        }
        // A member's writer waits for data.
        let count = Arc::new(Count(Default::default()));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut batch = crate::outbox::Batch::default();
        assert!(
            members[0]
                .outbox()
                .poll_take(&mut cx, &mut batch)
                .is_pending()
        );

        let topic = upstream.lookup("t").unwrap();
        crate::corked(|| {
            for text in [&b"one"[..], b"keep two", b"three"] {
                let delivered = publish_text(&upstream, topic, &Bytes::from(text), Kind::Data);
                assert_eq!(delivered, 1, "the relay took it");
            }
            // Passed on at the offer, with no task between: the members'
            // queues hold them already, and their writers are not woken
            // inside the offerer's burst.
            assert_eq!(count.0.load(Ordering::Relaxed), 0);
        });
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "woken once, at the end");
        for member in &members {
            let texts: Vec<Bytes> = queued(member)
                .into_iter()
                .map(|out| match out {
                    Outbound::Frame(frame) => frame.slice(2..),
                    Outbound::Sequenced(_) => panic!("a frame was queued"),
                })
                .collect();
            assert_eq!(texts, [&b"one"[..], b"keep two", b"three"]);
        }
        // The relay's own queue took only what it gave back.
        let kept: Vec<Outbound> = queued(&relay);
        assert_eq!(kept.len(), 1);
        assert!(matches!(&kept[0], Outbound::Frame(f) if f.ends_with(b"keep two")));
    }
}
