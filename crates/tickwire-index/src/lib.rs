//! The subscription index of a fan-out server: which subscribers are in which
//! topic, and which topics each subscriber is in.
//!
//! A topic is any string (for tickwire, a group name such as
//! `blue_SPX_state_gex_zero`). It is interned once into a [`TopicId`]; the id
//! never changes and indexes an append-only table, so the fan-out path finds a
//! topic's subscribers without hashing its name. Each topic keeps its
//! subscribers in a contiguous, insertion-ordered set ([`indexmap::IndexSet`])
//! with O(1) insert and (swap-)remove, so iterating 10,000 subscribers of a
//! topic for every update walks one dense array.
//!
//! The index also keeps the reverse direction, subscriber to topics, so a
//! disconnect ([`SubscriptionIndex::unsubscribe_all`]) costs only the topics the
//! subscriber was in. Every change reports whether it made a topic go from no
//! subscribers to one ([`Subscribed::first`]) or from one to none
//! ([`Unsubscribed::last`], [`Left::now_empty`]), which is what a caller needs
//! to reference-count subscriptions at an upstream broker.
//!
//! What it does not do: it does not send anything, hold queues or know what a
//! subscriber is. The subscriber type `S` is typically an `Arc` of the
//! connection whose `Eq` and `Hash` are its connection id, so the fan-out gets
//! the connection itself and needs no second lookup.
//!
//! ```
//! use tickwire_index::SubscriptionIndex;
//!
//! let index = SubscriptionIndex::<u64>::new();
//! let first = index.subscribe("blue_SPX_state_gex_zero", 7);
//! assert!(first.added && first.first); // subscribe upstream now
//! let second = index.subscribe("blue_SPX_state_gex_zero", 8);
//! assert!(second.added && !second.first);
//!
//! let mut seen = Vec::new();
//! let n = index.for_each_subscriber(first.topic, |s| seen.push(*s));
//! assert_eq!((n, seen), (2, vec![7, 8]));
//!
//! assert!(!index.unsubscribe("blue_SPX_state_gex_zero", &7).last);
//! let left = index.unsubscribe_all(&8); // connection 8 went away
//! assert!(left[0].now_empty); // unsubscribe upstream now
//! ```

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use indexmap::IndexSet;
use parking_lot::RwLock;

/// The interned id of a topic. Ids are dense (0, 1, 2, ...) and stable for the
/// life of the index that issued them; an id means nothing to another index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(u32);

impl TopicId {
    /// The id as a dense index, e.g. for a side table kept by the caller.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// What [`SubscriptionIndex::subscribe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    /// The topic's id.
    pub topic: TopicId,
    /// `false` when the subscriber was already in the topic (nothing changed).
    pub added: bool,
    /// The subscriber is the topic's only one: the topic just became non-empty.
    pub first: bool,
}

/// What [`SubscriptionIndex::unsubscribe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribed {
    /// `false` when the subscriber was not in the topic (nothing changed).
    pub removed: bool,
    /// The subscriber was the topic's last one: the topic just became empty.
    pub last: bool,
}

/// A topic left by [`SubscriptionIndex::unsubscribe_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    /// The topic's id.
    pub topic: TopicId,
    /// The topic's name.
    pub name: Arc<str>,
    /// The subscriber was the topic's last one: the topic just became empty.
    pub now_empty: bool,
}

/// One interned topic: its name and its subscribers.
struct Topic<S> {
    name: Arc<str>,
    subscribers: RwLock<IndexSet<S>>,
}

/// Size of the first chunk of the topic table, as a power of two.
const FIRST_CHUNK_BITS: u32 = 5;
/// Chunk `c` holds `2^(c + FIRST_CHUNK_BITS)` topics; this many chunks cover every `u32` id.
const CHUNKS: usize = (33 - FIRST_CHUNK_BITS) as usize;

/// An append-only table of topics indexed by [`TopicId`], readable without locks.
///
/// Chunks double in size and are allocated on first use, so a slot never moves
/// and `&Topic` borrows stay valid while new topics are added.
struct TopicTable<S> {
    chunks: [OnceLock<Chunk<S>>; CHUNKS],
}

/// A fixed-size run of topic slots, each set once.
type Chunk<S> = Box<[OnceLock<Topic<S>>]>;

impl<S> TopicTable<S> {
    fn new() -> Self {
        TopicTable {
            chunks: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The chunk and the offset in it of `id`.
    fn locate(id: TopicId) -> (usize, usize) {
        let n = u64::from(id.0) + (1 << FIRST_CHUNK_BITS);
        let bit = 63 - n.leading_zeros();
        let chunk = (bit - FIRST_CHUNK_BITS) as usize;
        let offset = (n - (1 << bit)) as usize;
        (chunk, offset)
    }

    fn get(&self, id: TopicId) -> Option<&Topic<S>> {
        let (chunk, offset) = Self::locate(id);
        self.chunks[chunk].get()?.get(offset)?.get()
    }

    /// Stores the topic of a freshly allocated id.
    fn install(&self, id: TopicId, topic: Topic<S>) -> &Topic<S> {
        let (chunk, offset) = Self::locate(id);
        let slots = self.chunks[chunk].get_or_init(|| {
            (0..1usize << (chunk as u32 + FIRST_CHUNK_BITS))
                .map(|_| OnceLock::new())
                .collect()
        });
        // Ids are handed out once, so the slot is empty; `get_or_init` keeps
        // that an invariant rather than a panic.
        slots[offset].get_or_init(|| topic)
    }
}

/// The concurrent subscription index: topic → subscribers and subscriber → topics.
///
/// All methods take `&self`; share the index behind an `Arc`.
///
/// # Locking
///
/// - Topic names map to ids in a [`DashMap`]; the topic table itself is read
///   without locks.
/// - Each topic's subscriber set sits behind its own `parking_lot::RwLock`.
/// - Subscriber → topics is a [`DashMap`] keyed by subscriber.
///
/// A change always takes the subscriber's map shard first and then the topic's
/// lock, never the other way round, and does both under the shard lock, so the
/// two directions always agree and concurrent changes cannot deadlock.
/// [`for_each_subscriber`](Self::for_each_subscriber) holds only the topic's
/// read lock while it calls its closure, which therefore must neither block nor
/// call back into the index. Every lock is released before a method returns:
/// nothing here can be held across an `.await`, and callers must never hold
/// the closure of `for_each_subscriber` open across one either (collect with
/// [`subscribers`](Self::subscribers) when the work must await).
pub struct SubscriptionIndex<S> {
    names: DashMap<Arc<str>, TopicId>,
    table: TopicTable<S>,
    next_id: AtomicU64,
    by_subscriber: DashMap<S, IndexSet<TopicId>>,
}

impl<S> SubscriptionIndex<S>
where
    S: Clone + Eq + Hash + Send + Sync,
{
    /// An empty index.
    pub fn new() -> Self {
        SubscriptionIndex {
            names: DashMap::new(),
            table: TopicTable::new(),
            next_id: AtomicU64::new(0),
            by_subscriber: DashMap::new(),
        }
    }

    /// The id of `topic`, interning it on first use.
    ///
    /// Interned topics are never removed, even when their last subscriber
    /// leaves: callers intern only names they have validated.
    ///
    /// # Panics
    ///
    /// When more than `u32::MAX + 1` distinct topics are interned (memory runs
    /// out long before).
    pub fn intern(&self, topic: &str) -> TopicId {
        self.intern_topic(topic).0
    }

    /// The id of `topic`, if it has been interned.
    pub fn lookup(&self, topic: &str) -> Option<TopicId> {
        self.names.get(topic).map(|id| *id)
    }

    /// The name of the topic `id`, if this index issued it.
    pub fn topic_name(&self, id: TopicId) -> Option<Arc<str>> {
        self.table.get(id).map(|t| t.name.clone())
    }

    /// Adds `sub` to `topic` (interning it). Subscribing twice is a no-op that
    /// reports `added: false`.
    ///
    /// `first` is true when `sub` is now the topic's only subscriber. Changes to
    /// one topic are serialized, so its `first` and `last` flags alternate.
    pub fn subscribe(&self, topic: &str, sub: S) -> Subscribed {
        let (id, entry) = self.intern_topic(topic);
        let mut topics = self.by_subscriber.entry(sub.clone()).or_default();
        if !topics.insert(id) {
            return Subscribed {
                topic: id,
                added: false,
                first: false,
            };
        }
        let mut subscribers = entry.subscribers.write();
        subscribers.insert(sub);
        Subscribed {
            topic: id,
            added: true,
            first: subscribers.len() == 1,
        }
    }

    /// Removes `sub` from `topic`.
    ///
    /// `removed` is false when it was not subscribed; `last` is true when the
    /// topic has no subscribers left.
    pub fn unsubscribe(&self, topic: &str, sub: &S) -> Unsubscribed {
        const UNCHANGED: Unsubscribed = Unsubscribed {
            removed: false,
            last: false,
        };
        let Some(id) = self.lookup(topic) else {
            return UNCHANGED;
        };
        let Entry::Occupied(mut topics) = self.by_subscriber.entry(sub.clone()) else {
            return UNCHANGED;
        };
        if !topics.get_mut().swap_remove(&id) {
            return UNCHANGED;
        }
        let last = match self.table.get(id) {
            Some(entry) => {
                let mut subscribers = entry.subscribers.write();
                subscribers.swap_remove(sub);
                subscribers.is_empty()
            }
            None => false,
        };
        if topics.get().is_empty() {
            topics.remove();
        }
        Unsubscribed {
            removed: true,
            last,
        }
    }

    /// Removes every subscription of `sub`, as on a disconnect.
    ///
    /// Returns the topics it was in, in no particular order, each saying
    /// whether it became empty.
    pub fn unsubscribe_all(&self, sub: &S) -> Vec<Left> {
        let Entry::Occupied(topics) = self.by_subscriber.entry(sub.clone()) else {
            return Vec::new();
        };
        let left = topics
            .get()
            .iter()
            .filter_map(|&id| {
                let entry = self.table.get(id)?;
                let mut subscribers = entry.subscribers.write();
                subscribers.swap_remove(sub);
                Some(Left {
                    topic: id,
                    name: entry.name.clone(),
                    now_empty: subscribers.is_empty(),
                })
            })
            .collect();
        topics.remove();
        left
    }

    /// Moves every subscription of `old` to `new` (a connection handing its
    /// topics to another, as when a session is resumed on a new transport),
    /// and returns how many topics moved.
    ///
    /// Each topic changes under its own lock in one step: a concurrent
    /// [`for_each_subscriber`](Self::for_each_subscriber) of a topic sees
    /// either `old` or `new` in it, never both and never neither. Topics
    /// `new` was already in keep it once.
    pub fn replace(&self, old: &S, new: S) -> usize {
        let Some((_, moved)) = self.by_subscriber.remove(old) else {
            return 0;
        };
        let mut topics = self.by_subscriber.entry(new.clone()).or_default();
        for &id in &moved {
            let Some(entry) = self.table.get(id) else {
                continue;
            };
            let mut subscribers = entry.subscribers.write();
            subscribers.swap_remove(old);
            subscribers.insert(new.clone());
            topics.insert(id);
        }
        moved.len()
    }

    /// Calls `f` for each subscriber of `topic` and returns how many there were.
    ///
    /// Holds only the topic's read lock meanwhile: `f` must not block, await
    /// or call into this index. Subscribers are visited in a stable order
    /// between changes (insertion order, until a removal moves the last one
    /// into the gap).
    pub fn for_each_subscriber(&self, topic: TopicId, mut f: impl FnMut(&S)) -> usize {
        let Some(entry) = self.table.get(topic) else {
            return 0;
        };
        let subscribers = entry.subscribers.read();
        subscribers.iter().for_each(&mut f);
        subscribers.len()
    }

    /// A snapshot of the subscribers of `topic`, for work that must await.
    pub fn subscribers(&self, topic: TopicId) -> Vec<S> {
        self.table
            .get(topic)
            .map(|t| t.subscribers.read().iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many subscribers `topic` has.
    pub fn subscriber_count(&self, topic: TopicId) -> usize {
        self.table
            .get(topic)
            .map_or(0, |t| t.subscribers.read().len())
    }

    /// Whether `sub` is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str, sub: &S) -> bool {
        self.lookup(topic).is_some_and(|id| {
            self.by_subscriber
                .get(sub)
                .is_some_and(|topics| topics.contains(&id))
        })
    }

    /// The names of the topics `sub` is subscribed to.
    pub fn topics_of(&self, sub: &S) -> Vec<Arc<str>> {
        self.by_subscriber
            .get(sub)
            .map(|topics| {
                topics
                    .iter()
                    .filter_map(|&id| self.topic_name(id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many topics have been interned (with or without subscribers).
    pub fn topic_count(&self) -> usize {
        // Ids are dense; one being interned right now may already be counted.
        usize::try_from(self.next_id.load(Ordering::Acquire)).unwrap_or(usize::MAX)
    }

    /// How many distinct subscribers hold at least one subscription.
    pub fn subscriber_total(&self) -> usize {
        self.by_subscriber.len()
    }

    /// Interns `name` and returns its id and entry.
    fn intern_topic(&self, name: &str) -> (TopicId, &Topic<S>) {
        if let Some(id) = self.lookup(name) {
            if let Some(entry) = self.table.get(id) {
                return (id, entry);
            }
        }
        match self.names.entry(Arc::from(name)) {
            Entry::Occupied(e) => {
                let id = *e.get();
                // An id is installed in the table before it is published in
                // `names`, under the same shard lock.
                let entry = self.table.get(id).unwrap_or_else(|| unreachable!());
                (id, entry)
            }
            Entry::Vacant(e) => {
                // Allocated under the shard lock of `name`: one id per name.
                let raw = self.next_id.fetch_add(1, Ordering::AcqRel);
                let id = TopicId(u32::try_from(raw).expect("topic ids exhausted"));
                let entry = self.table.install(
                    id,
                    Topic {
                        name: e.key().clone(),
                        subscribers: RwLock::new(IndexSet::new()),
                    },
                );
                e.insert(id);
                (id, entry)
            }
        }
    }
}

impl<S> Default for SubscriptionIndex<S>
where
    S: Clone + Eq + Hash + Send + Sync,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<S> fmt::Debug for SubscriptionIndex<S>
where
    S: Clone + Eq + Hash + Send + Sync,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionIndex")
            .field("topics", &self.topic_count())
            .field("subscribers", &self.subscriber_total())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replace_moves_every_topic_at_once() {
        let index = SubscriptionIndex::<u64>::new();
        let a = index.subscribe("a", 1).topic;
        let b = index.subscribe("b", 1).topic;
        index.subscribe("b", 2);
        index.subscribe("c", 3);
        assert_eq!(index.replace(&1, 2), 2);
        assert_eq!(index.subscribers(a), vec![2]);
        assert_eq!(index.subscribers(b), vec![2], "2 was in b already: once");
        let mut of_two = index.topics_of(&2);
        of_two.sort();
        assert_eq!(of_two, vec![Arc::from("a"), Arc::from("b")]);
        assert!(index.topics_of(&1).is_empty());
        assert_eq!(index.replace(&1, 4), 0, "1 is in nothing now");
        assert_eq!(index.unsubscribe_all(&2).len(), 2);
        assert_eq!(index.subscriber_total(), 1);
    }

    use std::collections::HashSet;
    use std::sync::atomic::AtomicI64;
    use std::thread;

    use super::*;

    /// Checks that both directions of the index agree.
    fn assert_consistent<S: Clone + Eq + Hash + Send + Sync + fmt::Debug>(
        index: &SubscriptionIndex<S>,
    ) {
        let mut pairs = HashSet::new();
        for raw in 0..index.topic_count() {
            let id = TopicId(u32::try_from(raw).unwrap());
            let name = index.topic_name(id).unwrap();
            assert_eq!(index.lookup(&name), Some(id));
            let mut n = 0;
            let count = index.for_each_subscriber(id, |s| {
                n += 1;
                assert!(
                    index.by_subscriber.get(s).is_some_and(|t| t.contains(&id)),
                    "{s:?} in {name} but not the reverse"
                );
                assert!(pairs.insert((id, s.clone())), "{s:?} twice in {name}");
            });
            assert_eq!(count, n);
        }
        let mut reverse = 0;
        for item in &index.by_subscriber {
            assert!(!item.value().is_empty(), "empty entry for {:?}", item.key());
            for &id in item.value() {
                assert!(
                    pairs.contains(&(id, item.key().clone())),
                    "{:?} lists topic {id:?} which does not list it",
                    item.key()
                );
                reverse += 1;
            }
        }
        assert_eq!(reverse, pairs.len());
    }

    #[test]
    fn locate_covers_every_id_without_overlap() {
        assert_eq!(TopicTable::<u8>::locate(TopicId(0)), (0, 0));
        assert_eq!(TopicTable::<u8>::locate(TopicId(31)), (0, 31));
        assert_eq!(TopicTable::<u8>::locate(TopicId(32)), (1, 0));
        assert_eq!(TopicTable::<u8>::locate(TopicId(95)), (1, 63));
        assert_eq!(TopicTable::<u8>::locate(TopicId(96)), (2, 0));
        let (chunk, offset) = TopicTable::<u8>::locate(TopicId(u32::MAX));
        assert_eq!(chunk, CHUNKS - 1);
        assert!(offset < 1 << (chunk as u32 + FIRST_CHUNK_BITS));
    }

    #[test]
    fn interning_is_stable() {
        let index = SubscriptionIndex::<u32>::new();
        assert_eq!(index.lookup("a"), None);
        let ids: Vec<_> = (0..200).map(|i| index.intern(&format!("t{i}"))).collect();
        assert_eq!(index.topic_count(), 200);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(id.index(), i);
            assert_eq!(index.intern(&format!("t{i}")), *id);
            assert_eq!(index.lookup(&format!("t{i}")), Some(*id));
            assert_eq!(index.topic_name(*id).as_deref(), Some(&*format!("t{i}")));
        }
        assert_eq!(index.topic_count(), 200);
        assert_eq!(index.topic_name(TopicId(200)), None);
        assert_eq!(index.subscriber_count(TopicId(1_000_000)), 0);
    }

    #[test]
    fn subscribe_reports_first_and_is_idempotent() {
        let index = SubscriptionIndex::<u32>::new();
        let a = index.subscribe("t", 1);
        assert_eq!((a.added, a.first), (true, true));
        let again = index.subscribe("t", 1);
        assert_eq!((again.added, again.first), (false, false));
        assert_eq!(again.topic, a.topic);
        let b = index.subscribe("t", 2);
        assert_eq!((b.added, b.first), (true, false));
        assert_eq!(index.subscriber_count(a.topic), 2);
        assert!(index.is_subscribed("t", &1));
        assert!(!index.is_subscribed("t", &3));
        assert!(!index.is_subscribed("u", &1));
        assert_consistent(&index);
    }

    #[test]
    fn unsubscribe_reports_last() {
        let index = SubscriptionIndex::<u32>::new();
        let id = index.subscribe("t", 1).topic;
        index.subscribe("t", 2);
        let not = index.unsubscribe("t", &3);
        assert_eq!((not.removed, not.last), (false, false));
        let unknown = index.unsubscribe("nope", &1);
        assert_eq!((unknown.removed, unknown.last), (false, false));
        let one = index.unsubscribe("t", &1);
        assert_eq!((one.removed, one.last), (true, false));
        let twice = index.unsubscribe("t", &1);
        assert_eq!((twice.removed, twice.last), (false, false));
        let two = index.unsubscribe("t", &2);
        assert_eq!((two.removed, two.last), (true, true));
        assert_eq!(index.subscriber_count(id), 0);
        assert_eq!(index.subscriber_total(), 0);
        // The topic stays interned; subscribing again is a new first.
        assert_eq!(index.lookup("t"), Some(id));
        assert!(index.subscribe("t", 2).first);
        assert_consistent(&index);
    }

    #[test]
    fn unsubscribe_all_leaves_every_topic() {
        let index = SubscriptionIndex::<u32>::new();
        for t in ["a", "b", "c"] {
            index.subscribe(t, 1);
        }
        index.subscribe("b", 2);
        let mut topics: Vec<_> = index.topics_of(&1).iter().map(|t| t.to_string()).collect();
        topics.sort();
        assert_eq!(topics, ["a", "b", "c"]);

        let mut left = index.unsubscribe_all(&1);
        left.sort_by(|x, y| x.name.cmp(&y.name));
        let summary: Vec<_> = left.iter().map(|l| (&*l.name, l.now_empty)).collect();
        assert_eq!(summary, [("a", true), ("b", false), ("c", true)]);
        assert_eq!(left[1].topic, index.lookup("b").unwrap());
        assert!(index.topics_of(&1).is_empty());
        assert!(index.unsubscribe_all(&1).is_empty());
        assert_eq!(index.subscribers(index.lookup("b").unwrap()), vec![2]);
        assert_eq!(index.subscriber_total(), 1);
        assert_consistent(&index);
    }

    #[test]
    fn iteration_sees_each_subscriber_once_after_removals() {
        let index = SubscriptionIndex::<u32>::new();
        let id = index.intern("t");
        for s in 0..100 {
            index.subscribe("t", s);
        }
        for s in (0..100).step_by(3) {
            assert!(index.unsubscribe("t", &s).removed);
        }
        let mut seen = Vec::new();
        assert_eq!(index.for_each_subscriber(id, |s| seen.push(*s)), 66);
        seen.sort_unstable();
        let expected: Vec<u32> = (0..100).filter(|s| s % 3 != 0).collect();
        assert_eq!(seen, expected);
        assert_consistent(&index);
    }

    #[test]
    fn arc_subscribers_compare_by_identity_key() {
        #[derive(Debug)]
        struct Conn {
            id: u64,
        }
        impl PartialEq for Conn {
            fn eq(&self, other: &Self) -> bool {
                self.id == other.id
            }
        }
        impl Eq for Conn {}
        impl Hash for Conn {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.id.hash(state);
            }
        }
        let index = SubscriptionIndex::<Arc<Conn>>::new();
        let conn = Arc::new(Conn { id: 9 });
        let id = index.subscribe("t", conn.clone()).topic;
        let mut got = None;
        index.for_each_subscriber(id, |c| got = Some(c.clone()));
        assert!(Arc::ptr_eq(&got.unwrap(), &conn));
        assert!(index.unsubscribe("t", &Arc::new(Conn { id: 9 })).last);
    }

    /// A small deterministic generator for the stress test.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn concurrent_changes_stay_consistent() {
        const THREADS: u64 = 4;
        const TOPICS: usize = 16;
        const SUBSCRIBERS: u64 = 32;
        const STEPS: usize = 20_000;

        let index = Arc::new(SubscriptionIndex::<u64>::new());
        let topics: Vec<String> = (0..TOPICS).map(|t| format!("topic{t}")).collect();
        // Upstream reference counts driven only by the first/last flags.
        let upstream: Arc<Vec<AtomicI64>> = Arc::new((0..TOPICS).map(|_| 0.into()).collect());

        let workers: Vec<_> = (0..THREADS)
            .map(|seed| {
                let index = Arc::clone(&index);
                let topics = topics.clone();
                let upstream = Arc::clone(&upstream);
                thread::spawn(move || {
                    let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (seed + 1);
                    let slot = |name: &str| name[5..].parse::<usize>().unwrap();
                    for _ in 0..STEPS {
                        let r = xorshift(&mut rng);
                        let topic = &topics[(r % TOPICS as u64) as usize];
                        // Subscribers are shared between threads on purpose.
                        let sub = (r >> 8) % SUBSCRIBERS;
                        match (r >> 16) % 10 {
                            0..=4 => {
                                if index.subscribe(topic, sub).first {
                                    upstream[slot(topic)].fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            5..=8 => {
                                if index.unsubscribe(topic, &sub).last {
                                    upstream[slot(topic)].fetch_sub(1, Ordering::SeqCst);
                                }
                            }
                            _ => {
                                for left in index.unsubscribe_all(&sub) {
                                    if left.now_empty {
                                        upstream[slot(&left.name)].fetch_sub(1, Ordering::SeqCst);
                                    }
                                }
                            }
                        }
                        if r % 97 == 0 {
                            let id = index.lookup(topic).unwrap();
                            let mut n = 0;
                            assert_eq!(index.for_each_subscriber(id, |_| n += 1), n);
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }

        assert_consistent(&index);
        assert_eq!(index.topic_count(), TOPICS);
        for (t, name) in topics.iter().enumerate() {
            let count = index.subscriber_count(index.lookup(name).unwrap());
            assert_eq!(
                upstream[t].load(Ordering::SeqCst),
                i64::from(count > 0),
                "{name}: first/last flags out of step with {count} subscribers"
            );
        }
    }

    #[test]
    fn concurrent_interning_gives_one_id_per_name() {
        let index = Arc::new(SubscriptionIndex::<u8>::new());
        let results: Vec<Vec<TopicId>> = (0..4)
            .map(|_| {
                let index = Arc::clone(&index);
                thread::spawn(move || (0..500).map(|i| index.intern(&format!("n{i}"))).collect())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(index.topic_count(), 500);
        let distinct: HashSet<_> = results[0].iter().collect();
        assert_eq!(distinct.len(), 500);
    }
}
