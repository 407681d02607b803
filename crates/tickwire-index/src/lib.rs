//! The subscription index of a fan-out server: which subscribers are in which
//! topic, and which topics each subscriber is in.
//!
//! A topic is any string (for tickwire, a group name such as
//! `blue_SPX_state_gex_zero`). It is interned into a [`TopicId`] that indexes
//! a table whose slots never move, so the fan-out path finds a topic's
//! subscribers without hashing its name. A topic lives while it has
//! subscribers: when the last one leaves, its name and its set are freed and
//! its slot is reused for a later topic under a new generation, so an id kept
//! from before finds nothing rather than another topic's subscribers, and the
//! index holds memory for the topics in use, not for every name ever seen. Each topic keeps its
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
//! A caller that must follow those changes as they happen (a cluster node
//! subscribing upstream to what its clients want) installs a
//! [`watch`](SubscriptionIndex::watch): it is told of each topic's first
//! subscriber and of its last one leaving, in order for each topic, whoever
//! made the change.
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
//! assert_eq!(index.lookup("blue_SPX_state_gex_zero"), None); // freed
//! assert_eq!(index.subscriber_count(first.topic), 0);
//! ```

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use indexmap::IndexSet;
use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;

/// The id of a live topic: a slot of the topic table and the generation of
/// the slot when the topic was interned. Slots are dense (0, 1, 2, ...) and
/// reused once their topic is freed; the generation tells the topics of one
/// slot apart, so an id of a freed topic finds nothing. An id means nothing
/// to another index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId {
    slot: u32,
    generation: u32,
}

impl TopicId {
    /// The id's slot as a dense index, e.g. for a side table kept by the
    /// caller. Two topics alive at once never share it; a topic interned
    /// after another was freed may get the freed one's.
    pub const fn index(self) -> usize {
        self.slot as usize
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
    /// The subscriber was the topic's last one: the topic just became empty
    /// (and was freed).
    pub last: bool,
}

/// A topic left by [`SubscriptionIndex::unsubscribe_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    /// The topic's id.
    pub topic: TopicId,
    /// The topic's name.
    pub name: Arc<str>,
    /// The subscriber was the topic's last one: the topic just became empty
    /// (and was freed).
    pub now_empty: bool,
}

/// One slot of the topic table: the topic living in it, if any, and its
/// subscribers.
struct Slot<S> {
    /// Bumped each time the slot's topic is freed.
    generation: u32,
    /// The topic's name; `None` while the slot is free.
    name: Option<Arc<str>>,
    subscribers: IndexSet<S>,
}

impl<S> Slot<S> {
    /// Whether the slot holds the topic `id`.
    fn holds(&self, id: TopicId) -> bool {
        self.generation == id.generation && self.name.is_some()
    }
}

/// Size of the first chunk of the topic table, as a power of two.
const FIRST_CHUNK_BITS: u32 = 5;
/// Chunk `c` holds `2^(c + FIRST_CHUNK_BITS)` slots; this many chunks cover every `u32` slot.
const CHUNKS: usize = (33 - FIRST_CHUNK_BITS) as usize;

/// A table of topic slots indexed by [`TopicId::index`], found without locks.
///
/// Chunks double in size and are allocated on first use, so a slot never
/// moves and `&RwLock<Slot>` borrows stay valid while slots are added.
struct TopicTable<S> {
    chunks: [OnceLock<Chunk<S>>; CHUNKS],
}

/// A fixed-size run of slots.
type Chunk<S> = Box<[RwLock<Slot<S>>]>;

impl<S> TopicTable<S> {
    fn new() -> Self {
        TopicTable {
            chunks: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The chunk and the offset in it of slot `slot`.
    fn locate(slot: u32) -> (usize, usize) {
        let n = u64::from(slot) + (1 << FIRST_CHUNK_BITS);
        let bit = 63 - n.leading_zeros();
        let chunk = (bit - FIRST_CHUNK_BITS) as usize;
        let offset = (n - (1 << bit)) as usize;
        (chunk, offset)
    }

    /// The slot `slot`, if its chunk exists.
    fn get(&self, slot: u32) -> Option<&RwLock<Slot<S>>> {
        let (chunk, offset) = Self::locate(slot);
        self.chunks[chunk].get()?.get(offset)
    }

    /// The slot `slot`, allocating its chunk on first use.
    fn slot(&self, slot: u32) -> &RwLock<Slot<S>> {
        let (chunk, offset) = Self::locate(slot);
        let slots = self.chunks[chunk].get_or_init(|| {
            (0..1usize << (chunk as u32 + FIRST_CHUNK_BITS))
                .map(|_| {
                    RwLock::new(Slot {
                        generation: 0,
                        name: None,
                        subscribers: IndexSet::new(),
                    })
                })
                .collect()
        });
        &slots[offset]
    }
}

/// The topics one subscriber is in: sorted, and inline while they are one
/// or two, which is most connections (a hash set each cost a connection
/// about 200 bytes of its own). Looked up by binary search; a subscriber of
/// thousands of topics moves a few kilobytes on each change.
#[derive(Debug, Default)]
struct Topics(SmallVec<[TopicId; 2]>);

impl Topics {
    fn contains(&self, id: &TopicId) -> bool {
        self.0.binary_search(id).is_ok()
    }

    /// Adds `id`: `false` if it was there.
    fn insert(&mut self, id: TopicId) -> bool {
        match self.0.binary_search(&id) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, id);
                true
            }
        }
    }

    /// Removes `id`: `false` if it was not there. Back to two topics, the
    /// subscriber gives up the heap memory of its busiest moment.
    fn remove(&mut self, id: TopicId) -> bool {
        let Ok(at) = self.0.binary_search(&id) else {
            return false;
        };
        self.0.remove(at);
        if self.0.spilled() && self.0.len() <= self.0.inline_size() {
            self.0.shrink_to_fit();
        }
        true
    }

    fn iter(&self) -> impl Iterator<Item = &TopicId> {
        self.0.iter()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<'a> IntoIterator for &'a Topics {
    type Item = &'a TopicId;
    type IntoIter = std::slice::Iter<'a, TopicId>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The concurrent subscription index: topic → subscribers and subscriber → topics.
///
/// All methods take `&self`; share the index behind an `Arc`.
///
/// # Locking
///
/// - Topic names map to ids in a [`DashMap`]; the slot of an id is found
///   without locks.
/// - Each slot (a topic and its subscriber set) sits behind its own
///   `parking_lot::RwLock`.
/// - Subscriber → topics is a [`DashMap`] keyed by subscriber.
///
/// A change always takes the subscriber's map shard first and then the
/// slot's lock, and interning or freeing a topic takes the name's shard and
/// then the slot's lock, never the other way round, so concurrent changes
/// cannot deadlock and both directions always agree.
/// [`for_each_subscriber`](Self::for_each_subscriber) holds only the slot's
/// read lock while it calls its closure, which therefore must neither block
/// nor call back into the index. Every lock is released before a method
/// returns: nothing here can be held across an `.await`, and callers must
/// never hold the closure of `for_each_subscriber` open across one either
/// (collect with [`subscribers`](Self::subscribers) when the work must
/// await).
pub struct SubscriptionIndex<S> {
    names: DashMap<Arc<str>, TopicId>,
    table: TopicTable<S>,
    /// Slots ever used; the next new one.
    next_slot: AtomicU64,
    /// Slots whose topic was freed, for reuse.
    free: Mutex<Vec<u32>>,
    /// Live topics.
    live: AtomicUsize,
    by_subscriber: DashMap<S, Topics>,
    /// Told of each topic's first subscriber and last leaving.
    watch: OnceLock<Watch>,
}

/// A [`SubscriptionIndex::watch`] callback: the topic, and whether it just
/// got its first subscriber (`true`) or lost its last (`false`).
pub type Watch = Box<dyn Fn(&Arc<str>, bool) + Send + Sync>;

/// [`SubscriptionIndex::watch`] was called before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyWatched;

impl fmt::Display for AlreadyWatched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the index is watched already")
    }
}

impl std::error::Error for AlreadyWatched {}

impl<S> SubscriptionIndex<S>
where
    S: Clone + Eq + Hash + Send + Sync,
{
    /// An empty index.
    pub fn new() -> Self {
        SubscriptionIndex {
            names: DashMap::new(),
            table: TopicTable::new(),
            next_slot: AtomicU64::new(0),
            free: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
            by_subscriber: DashMap::new(),
            watch: OnceLock::new(),
        }
    }

    /// Calls `watch` from now on each time a topic gets its first subscriber
    /// (`true`) and each time its last one leaves (`false`). For one topic the
    /// calls alternate, in the order the changes happened: each is made under
    /// the topic's lock, by the thread that made the change. So `watch` must
    /// be quick and must neither block nor call into the index (hand the
    /// change to a channel). One watch per index.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tickwire_index::SubscriptionIndex;
    ///
    /// let index = SubscriptionIndex::<u64>::new();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// index
    ///     .watch(Box::new(move |topic, live| log.lock().unwrap().push((topic.to_string(), live))))
    ///     .unwrap();
    /// index.subscribe("btc", 1);
    /// index.subscribe("btc", 2); // not the first: nothing said
    /// index.unsubscribe("btc", &1);
    /// index.unsubscribe_all(&2);
    /// assert_eq!(*seen.lock().unwrap(), [("btc".into(), true), ("btc".into(), false)]);
    /// ```
    ///
    /// # Errors
    ///
    /// [`AlreadyWatched`] when the index has a watch already.
    pub fn watch(&self, watch: Watch) -> Result<(), AlreadyWatched> {
        self.watch.set(watch).map_err(|_| AlreadyWatched)
    }

    /// Tells the watch, if any, that `name` became live or empty.
    fn tell(&self, name: Option<&Arc<str>>, live: bool) {
        if let (Some(watch), Some(name)) = (self.watch.get(), name) {
            watch(name, live);
        }
    }

    /// The id of `topic`, interning it on first use.
    ///
    /// A topic interned this way lives until a subscriber has joined it and
    /// the last one has left; callers intern only names they have
    /// validated ([`subscribe`](Self::subscribe) interns by itself).
    ///
    /// # Panics
    ///
    /// When more than `u32::MAX + 1` topics live at once (memory runs out
    /// long before).
    pub fn intern(&self, topic: &str) -> TopicId {
        self.intern_topic(topic)
    }

    /// The id of `topic`, if it lives.
    pub fn lookup(&self, topic: &str) -> Option<TopicId> {
        self.names.get(topic).map(|id| *id)
    }

    /// The name of the topic `id`, if it lives.
    pub fn topic_name(&self, id: TopicId) -> Option<Arc<str>> {
        let slot = self.table.get(id.slot)?.read();
        if slot.generation == id.generation {
            slot.name.clone()
        } else {
            None
        }
    }

    /// Adds `sub` to `topic` (interning it). Subscribing twice is a no-op that
    /// reports `added: false`.
    ///
    /// `first` is true when `sub` is now the topic's only subscriber. Changes to
    /// one topic are serialized, so its `first` and `last` flags alternate.
    pub fn subscribe(&self, topic: &str, sub: S) -> Subscribed {
        loop {
            let id = self.intern_topic(topic);
            let mut topics = self.by_subscriber.entry(sub.clone()).or_default();
            if topics.contains(&id) {
                return Subscribed {
                    topic: id,
                    added: false,
                    first: false,
                };
            }
            let mut slot = self.table.slot(id.slot).write();
            if !slot.holds(id) {
                // Freed by its last subscriber since it was looked up: a
                // new topic of the same name is interned on the next turn.
                drop(slot);
                let empty = topics.is_empty();
                drop(topics);
                if empty {
                    self.by_subscriber.remove_if(&sub, |_, t| t.is_empty());
                }
                continue;
            }
            topics.insert(id);
            slot.subscribers.insert(sub);
            let first = slot.subscribers.len() == 1;
            if first {
                self.tell(slot.name.as_ref(), true);
            }
            return Subscribed {
                topic: id,
                added: true,
                first,
            };
        }
    }

    /// Removes `sub` from `topic`.
    ///
    /// `removed` is false when it was not subscribed; `last` is true when the
    /// topic has no subscribers left (it is freed).
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
        if !topics.get_mut().remove(id) {
            return UNCHANGED;
        }
        let last = match self.table.get(id.slot) {
            Some(slot) => {
                let mut slot = slot.write();
                slot.subscribers.swap_remove(sub);
                let last = slot.subscribers.is_empty();
                if last {
                    self.tell(slot.name.as_ref(), false);
                }
                last
            }
            None => false,
        };
        if topics.get().is_empty() {
            topics.remove();
        } else {
            drop(topics);
        }
        if last {
            self.free_if_empty(id, topic);
        }
        Unsubscribed {
            removed: true,
            last,
        }
    }

    /// Removes every subscription of `sub`, as on a disconnect.
    ///
    /// Returns the topics it was in, in no particular order, each saying
    /// whether it became empty (and was freed).
    pub fn unsubscribe_all(&self, sub: &S) -> Vec<Left> {
        let Entry::Occupied(topics) = self.by_subscriber.entry(sub.clone()) else {
            return Vec::new();
        };
        let left: Vec<Left> = topics
            .get()
            .iter()
            .filter_map(|&id| {
                let mut slot = self.table.get(id.slot)?.write();
                slot.subscribers.swap_remove(sub);
                let now_empty = slot.subscribers.is_empty();
                if now_empty {
                    self.tell(slot.name.as_ref(), false);
                }
                Some(Left {
                    topic: id,
                    name: slot.name.clone()?,
                    now_empty,
                })
            })
            .collect();
        topics.remove();
        for gone in left.iter().filter(|l| l.now_empty) {
            self.free_if_empty(gone.topic, &gone.name);
        }
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
            let Some(slot) = self.table.get(id.slot) else {
                continue;
            };
            let mut slot = slot.write();
            // `old` was in it, so it lives.
            slot.subscribers.swap_remove(old);
            slot.subscribers.insert(new.clone());
            topics.insert(id);
        }
        moved.len()
    }

    /// Calls `f` for each subscriber of `topic` and returns how many there were.
    ///
    /// Holds only the topic's read lock meanwhile: `f` must not block, await
    /// or call into this index. Subscribers are visited in a stable order
    /// between changes (insertion order, until a removal moves the last one
    /// into the gap). A freed topic's id has no subscribers.
    pub fn for_each_subscriber(&self, topic: TopicId, mut f: impl FnMut(&S)) -> usize {
        let Some(slot) = self.table.get(topic.slot) else {
            return 0;
        };
        let slot = slot.read();
        if slot.generation != topic.generation {
            return 0;
        }
        slot.subscribers.iter().for_each(&mut f);
        slot.subscribers.len()
    }

    /// A snapshot of the subscribers of `topic`, for work that must await.
    pub fn subscribers(&self, topic: TopicId) -> Vec<S> {
        let mut all = Vec::new();
        self.for_each_subscriber(topic, |s| all.push(s.clone()));
        all
    }

    /// How many subscribers `topic` has.
    pub fn subscriber_count(&self, topic: TopicId) -> usize {
        self.table.get(topic.slot).map_or(0, |slot| {
            let slot = slot.read();
            if slot.generation == topic.generation {
                slot.subscribers.len()
            } else {
                0
            }
        })
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

    /// Every live topic with its subscriber count, by name (a snapshot for
    /// operators: it visits every topic).
    ///
    /// ```
    /// use tickwire_index::SubscriptionIndex;
    ///
    /// let index = SubscriptionIndex::<u64>::new();
    /// index.subscribe("btc", 1);
    /// index.subscribe("btc", 2);
    /// index.subscribe("eth", 1);
    /// assert_eq!(index.topics(), [("btc".into(), 2), ("eth".into(), 1)]);
    /// ```
    pub fn topics(&self) -> Vec<(Arc<str>, usize)> {
        let mut topics: Vec<(Arc<str>, usize)> = self
            .names
            .iter()
            .map(|entry| {
                let count = self.subscriber_count(*entry.value());
                (entry.key().clone(), count)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        topics.sort();
        topics
    }

    /// How many topics live now (interned and not freed).
    pub fn topic_count(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// How many distinct subscribers hold at least one subscription.
    pub fn subscriber_total(&self) -> usize {
        self.by_subscriber.len()
    }

    /// Interns `name` and returns its id.
    fn intern_topic(&self, name: &str) -> TopicId {
        if let Some(id) = self.lookup(name) {
            return id;
        }
        match self.names.entry(Arc::from(name)) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                // Under the shard lock of `name`: one id per name.
                let reused = self.free.lock().pop();
                let slot_no = reused.unwrap_or_else(|| {
                    let raw = self.next_slot.fetch_add(1, Ordering::AcqRel);
                    u32::try_from(raw).expect("topic slots exhausted")
                });
                let mut slot = self.table.slot(slot_no).write();
                debug_assert!(slot.name.is_none() && slot.subscribers.is_empty());
                slot.name = Some(e.key().clone());
                let id = TopicId {
                    slot: slot_no,
                    generation: slot.generation,
                };
                drop(slot);
                e.insert(id);
                self.live.fetch_add(1, Ordering::AcqRel);
                id
            }
        }
    }

    /// Frees the topic `id` (named `name`) if it still has no subscriber:
    /// its name leaves the map, its slot gets a new generation and goes to
    /// the free list. A subscriber that joined meanwhile keeps it alive.
    fn free_if_empty(&self, id: TopicId, name: &str) {
        let freed = self
            .names
            .remove_if(name, |_, &current| {
                if current != id {
                    return false;
                }
                let Some(slot) = self.table.get(id.slot) else {
                    return false;
                };
                let mut slot = slot.write();
                if !slot.holds(id) || !slot.subscribers.is_empty() {
                    return false;
                }
                slot.generation = slot.generation.wrapping_add(1);
                slot.name = None;
                slot.subscribers = IndexSet::new();
                true
            })
            .is_some();
        if freed {
            self.free.lock().push(id.slot);
            self.live.fetch_sub(1, Ordering::AcqRel);
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
    use std::collections::HashSet;
    use std::sync::atomic::AtomicI64;
    use std::thread;

    use super::*;

    #[test]
    fn a_subscribers_topics_live_inline_while_few_and_give_back_the_heap() {
        let id = |slot| TopicId {
            slot,
            generation: 0,
        };
        let mut topics = Topics::default();
        assert!(topics.insert(id(7)));
        assert!(topics.insert(id(3)));
        assert!(!topics.insert(id(7)), "once each");
        assert!(!topics.0.spilled(), "two topics, no allocation");
        for slot in 10..20 {
            assert!(topics.insert(id(slot)));
        }
        assert!(topics.0.spilled());
        assert!(topics.contains(&id(15)) && !topics.contains(&id(5)));
        let slots: Vec<u32> = topics.iter().map(|t| t.slot).collect();
        assert!(slots.windows(2).all(|w| w[0] < w[1]), "sorted: {slots:?}");
        for slot in 10..20 {
            assert!(topics.remove(id(slot)));
        }
        assert!(!topics.remove(id(10)));
        assert_eq!(topics.len(), 2);
        assert!(!topics.0.spilled(), "back to two, the heap is given back");
        assert!(topics.remove(id(3)) && topics.remove(id(7)) && topics.is_empty());
    }

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

    /// Checks that both directions of the index agree.
    fn assert_consistent<S: Clone + Eq + Hash + Send + Sync + fmt::Debug>(
        index: &SubscriptionIndex<S>,
    ) {
        let mut pairs = HashSet::new();
        assert_eq!(index.names.len(), index.topic_count());
        for item in &index.names {
            let (name, id) = (item.key().clone(), *item.value());
            assert_eq!(index.topic_name(id), Some(name.clone()));
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

    /// The watch hears, for each topic, first and last alternately, and
    /// ends on what the topic is: with threads joining and leaving a few
    /// topics at once, each one's last leaving racing the next first.
    #[test]
    fn watch_alternates_per_topic_under_races() {
        let index = Arc::new(SubscriptionIndex::<u64>::new());
        let live: Arc<DashMap<String, i64>> = Arc::new(DashMap::new());
        let broken = Arc::new(AtomicUsize::new(0));
        let (l, b) = (live.clone(), broken.clone());
        index
            .watch(Box::new(move |topic, up| {
                let mut n = l.entry(topic.to_string()).or_insert(0);
                *n += if up { 1 } else { -1 };
                if !(0..=1).contains(&*n) {
                    b.fetch_add(1, Ordering::Relaxed);
                }
            }))
            .unwrap();
        assert_eq!(index.watch(Box::new(|_, _| {})), Err(AlreadyWatched));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let index = index.clone();
                thread::spawn(move || {
                    for round in 0..2_000u64 {
                        let topic = format!("t{}", round % 3);
                        let sub = t * 10_000 + round;
                        index.subscribe(&topic, sub);
                        if round % 2 == 0 {
                            index.unsubscribe(&topic, &sub);
                        } else {
                            index.unsubscribe_all(&sub);
                        }
                    }
                    // Each thread keeps one subscription to t0.
                    index.subscribe("t0", t);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(broken.load(Ordering::Relaxed), 0, "first/last out of turn");
        assert_eq!(live.get("t0").map(|n| *n), Some(1));
        assert_eq!(live.get("t1").map(|n| *n), Some(0));
        assert_eq!(live.get("t2").map(|n| *n), Some(0));
        assert_eq!(index.topic_count(), 1);
    }

    #[test]
    fn locate_covers_every_id_without_overlap() {
        assert_eq!(TopicTable::<u8>::locate(0), (0, 0));
        assert_eq!(TopicTable::<u8>::locate(31), (0, 31));
        assert_eq!(TopicTable::<u8>::locate(32), (1, 0));
        assert_eq!(TopicTable::<u8>::locate(95), (1, 63));
        assert_eq!(TopicTable::<u8>::locate(96), (2, 0));
        let (chunk, offset) = TopicTable::<u8>::locate(u32::MAX);
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
        let nowhere = TopicId {
            slot: 1_000_000,
            generation: 0,
        };
        assert_eq!(index.topic_name(nowhere), None);
        assert_eq!(index.subscriber_count(nowhere), 0);
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
        // The topic is freed; subscribing again is a new first, in the same
        // slot under a new generation.
        assert_eq!(index.lookup("t"), None);
        assert_eq!(index.topic_count(), 0);
        let again = index.subscribe("t", 2);
        assert!(again.first);
        assert_eq!(again.topic.index(), id.index());
        assert_ne!(again.topic, id);
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
                            if let Some(id) = index.lookup(topic) {
                                let mut n = 0;
                                assert_eq!(index.for_each_subscriber(id, |_| n += 1), n);
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }

        assert_consistent(&index);
        let live = topics.iter().filter(|t| index.lookup(t).is_some()).count();
        assert_eq!(index.topic_count(), live);
        for (t, name) in topics.iter().enumerate() {
            let count = index
                .lookup(name)
                .map_or(0, |id| index.subscriber_count(id));
            assert_eq!(
                count > 0,
                index.lookup(name).is_some(),
                "{name}: empty but alive"
            );
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

    #[test]
    fn a_freed_slot_is_reused_and_old_ids_find_nothing() {
        let index = SubscriptionIndex::<u32>::new();
        let a = index.subscribe("a", 1).topic;
        index.subscribe("b", 1);
        assert!(index.unsubscribe("a", &1).last);
        assert_eq!(index.topic_count(), 1);
        assert_eq!(index.lookup("a"), None);
        let c = index.subscribe("c", 2).topic;
        assert_eq!(c.index(), a.index(), "the freed slot is reused");
        assert_ne!(c, a);
        assert_eq!(index.for_each_subscriber(a, |_| panic!("a is gone")), 0);
        assert_eq!(index.subscriber_count(a), 0);
        assert_eq!(index.topic_name(a), None);
        assert!(index.subscribers(a).is_empty());
        assert_eq!(index.subscribers(c), vec![2]);
        assert_eq!(index.topic_name(c).as_deref(), Some("c"));
        // Leaving everything frees everything.
        index.unsubscribe_all(&1);
        index.unsubscribe_all(&2);
        assert_eq!(index.topic_count(), 0);
        assert_consistent(&index);
    }

    #[test]
    fn churning_names_do_not_grow_the_table() {
        let index = SubscriptionIndex::<u32>::new();
        index.subscribe("kept", 0);
        for i in 0..100_000 {
            let name = format!("made-up-{i}");
            assert!(index.subscribe(&name, i % 7 + 1).first);
            assert!(index.unsubscribe(&name, &(i % 7 + 1)).last);
        }
        assert_eq!(index.topic_count(), 1);
        assert_eq!(index.names.len(), 1);
        assert_eq!(
            index.next_slot.load(Ordering::Relaxed),
            2,
            "two slots ever used"
        );
        assert_consistent(&index);
    }

    #[test]
    fn a_reused_slot_never_shows_one_topic_the_other_topics_subscribers() {
        const WRITERS: u32 = 3;
        const NAMES: u32 = 8;
        let index = Arc::new(SubscriptionIndex::<u32>::new());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Subscriber `w * 1000 + n` only ever joins topic `w-n`, so a
        // subscriber seen under another name is a stale id reaching a
        // reused slot.
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let index = Arc::clone(&index);
                thread::spawn(move || {
                    for round in 0..20_000u32 {
                        let n = round % NAMES;
                        let name = format!("{w}-{n}");
                        index.subscribe(&name, w * 1000 + n);
                        index.unsubscribe(&name, &(w * 1000 + n));
                    }
                })
            })
            .collect();
        let reader = {
            let (index, stop) = (Arc::clone(&index), Arc::clone(&stop));
            thread::spawn(move || {
                let mut seen = 0u64;
                let mut rng = 7u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = xorshift(&mut rng);
                    let (w, n) = (
                        (r % u64::from(WRITERS)) as u32,
                        ((r >> 8) % u64::from(NAMES)) as u32,
                    );
                    if let Some(id) = index.lookup(&format!("{w}-{n}")) {
                        index.for_each_subscriber(id, |&s| {
                            assert_eq!(s, w * 1000 + n, "topic {w}-{n} showed {s}");
                            seen += 1;
                        });
                    }
                }
                seen
            })
        };
        for writer in writers {
            writer.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        assert_eq!(index.topic_count(), 0);
        assert_consistent(&index);
    }
}
