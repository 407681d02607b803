//! A connection's outbox: the bounded data queue the fan-out fills, the
//! control queue the reader fills, and the one waker of the writer task.
//!
//! It replaces two `tokio::sync::mpsc` channels with one mutex-protected pair
//! of `VecDeque`s, for three reasons:
//!
//! - **Memory.** An idle connection's outbox allocates nothing: the deques
//!   grow on first use, and the writer swaps them out whole, so their
//!   capacity is recycled between batches instead of a channel's fixed
//!   32-slot blocks per queue.
//! - **Wake-ups.** The writer is woken only when the outbox goes from empty
//!   to non-empty; every push while it is busy writing is a lock, a
//!   `push_back` and an unlock. It then takes *everything* queued under one
//!   lock ([`Outbox::take`]) and writes it with one `write`.
//! - **Slow consumers.** A full data queue applies the endpoint's
//!   [`SlowConsumer`] policy, which needs to reach into the queue: disconnect
//!   the client, drop its oldest queued update, or conflate (keep only the
//!   newest queued update of the topic).
//!
//! The lock is held for a few instructions and never across an `.await`.
//!
//! **Corking.** While the fan-out works through a burst of updates it runs
//! inside [`corked`]: the writers its offers would wake are collected and
//! woken once, when the burst is done, so a connection that gets five
//! updates of the burst is written once with all five (one `write` instead
//! of five), the way uWebSockets corks a socket. A lone update is a burst of
//! one, so corking adds no latency when the server is quiet.
//!
//! **Bursts are not slowness.** A burst can give one connection more
//! updates of one topic than its queue holds (a publish batch of 300 ticks
//! of one symbol) before its writer has had a chance to run. When the queue
//! is full, an update replaces the one of the same topic queued earlier in
//! the same burst (the connection gets the topic's latest value, counted as
//! `burst_conflated`) and the slow-consumer policy is applied only when
//! there is none: a client is slow when it falls behind between bursts, not
//! when one burst outruns its queue. Sequenced messages (a reliable
//! subprotocol's, each promised to the client) are never merged this way.
//!
//! **Fair wake-ups.** A burst that wakes many writers (more than
//! [`WAKE_HANDOFF`]) hands their wake-ups to a thread of its own instead of
//! waking them from the runtime worker that ran the fan-out. The reason is
//! the order in which tokio then runs them. A wake-up from a worker goes
//! into that worker's local queue, which holds 256 tasks and pushes the
//! overflow into the runtime's global queue; the worker keeps running its
//! local queue and looks at the global one only every few dozen tasks. When
//! the server is saturated, every burst wakes thousands of writers, so those
//! of the latest bursts, in the local queue, ran before the older ones
//! waiting in the global queue: some connections were written several times
//! per round while others waited several rounds, which is what set the
//! latency's tail. A wake-up from outside the workers goes to the global
//! queue, so writers run in the order they were woken, each once per round.
//! A burst that wakes few writers (the quiet case) wakes them at once, on
//! the spot, with no hop to another thread.
//!
//! **Pacing** (`transport.write_delay_ms`, off by default). Corking merges
//! the updates of one burst; a [`Pacer`] merges those of a time window. Time
//! is cut into periods of the write delay. A connection's data is taken
//! at most once per period: data that finds the connection already written
//! to in the current period waits for the next one, when one gateway-wide
//! timer wakes every writer that has data waiting, and everything queued by
//! then goes in one `write`. A connection that was not written to in the
//! current period is woken at once, so a quiet client sees no added latency;
//! a busy one gets one `write` per period instead of one per update, and at
//! most one period more latency. Control items (replies, pongs, closes)
//! never wait. There is no timer per connection: the cost of pacing is one
//! lock and one `Waker` clone per deferred wake-up.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use serde::{Deserialize, Serialize};

use crate::alarm::Alarm;

use crate::writer::{Control, Outbound};

/// Control items queued from reader to writer before the reader waits.
pub const CONTROL_QUEUE: usize = 32;

thread_local! {
    /// The writers to wake when the innermost [`corked`] call on this thread
    /// returns; `None` outside of one.
    static CORKED: RefCell<Option<Vec<Waker>>> = const { RefCell::new(None) };
    /// The id of the burst this thread is in ([`NO_BURST`] outside of one).
    static BURST_ID: Cell<u32> = const { Cell::new(NO_BURST) };
    /// When the burst this thread is in began: the moment its updates
    /// entered the fan-out.
    static BURST_AT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// When the update being offered entered the fan-out: the start of the
/// burst, or now outside of one.
fn offered_at() -> Instant {
    BURST_AT.with(Cell::get).unwrap_or_else(Instant::now)
}

/// The burst id of offers made outside of [`corked`].
const NO_BURST: u32 = 0;

/// The ids of bursts, unique across threads (until they wrap).
static NEXT_BURST: AtomicU32 = AtomicU32::new(1);

/// The id of the burst the calling thread is in.
fn current_burst() -> u32 {
    BURST_ID.with(Cell::get)
}

/// Runs `f` with the writer wake-ups of data offers deferred until it
/// returns (or unwinds): each writer woken inside is woken once, at the end.
///
/// `f` is synchronous, so the deferral cannot outlive the task that asked
/// for it even on a multi-threaded runtime. Nested calls join the outer one.
pub fn corked<R>(f: impl FnOnce() -> R) -> R {
    struct Uncork;
    impl Drop for Uncork {
        fn drop(&mut self) {
            let wakers = CORKED.with(|c| c.borrow_mut().take()).unwrap_or_default();
            wake_all(wakers);
        }
    }
    let outermost = CORKED.with(|c| {
        let mut c = c.borrow_mut();
        let outermost = c.is_none();
        if outermost {
            *c = Some(Vec::new());
        }
        outermost
    });
    // Not `then_some(Uncork)`: that builds (and so drops, uncorking) a guard
    // in the nested case too.
    let _uncork = if outermost { Some(Uncork) } else { None };
    burst(f)
}

/// Runs `f` as one burst of updates: a queue that the burst fills merges
/// the burst's updates per topic instead of applying the slow-consumer
/// policy (see the [module](self) docs). [`corked`] is a burst; a caller
/// that delivers one batch in several corked parts (to wake the writers
/// between them) wraps them all in one. Nested calls join the outer one.
pub fn burst<R>(f: impl FnOnce() -> R) -> R {
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            BURST_ID.with(|b| b.set(NO_BURST));
            BURST_AT.with(|b| b.set(None));
        }
    }
    if current_burst() != NO_BURST {
        return f();
    }
    let mut id = NEXT_BURST.fetch_add(1, Ordering::Relaxed);
    if id == NO_BURST {
        id = NEXT_BURST.fetch_add(1, Ordering::Relaxed);
    }
    BURST_ID.with(|b| b.set(id));
    BURST_AT.with(|b| b.set(Some(Instant::now())));
    let _end = End;
    f()
}

/// Bursts that wake more writers than this wake them from the wake-up
/// thread, in order (see the [module](self) docs); smaller ones wake them at
/// once. Well under the 256 tasks of a tokio worker's local queue.
pub const WAKE_HANDOFF: usize = 64;

/// The name of the thread that wakes the writers of large bursts.
pub const WAKE_THREAD: &str = "tickwire-wake";

/// Wakes every writer of `wakers`: at once when they are few, else from the
/// wake-up thread, so that the runtime runs them in this order (see the
/// [module](self) docs). Falls back to waking them here when that thread
/// cannot be had.
fn wake_all(wakers: Vec<Waker>) {
    let here = match wake_thread() {
        Some(tx) if wakers.len() > WAKE_HANDOFF => match tx.send(wakers) {
            Ok(()) => return,
            Err(mpsc::SendError(wakers)) => wakers,
        },
        _ => wakers,
    };
    here.into_iter().for_each(Waker::wake);
}

/// The wake-up thread's queue, started on first use and kept for the life
/// of the process (it sleeps while there is nothing to wake); `None` when
/// the thread could not be started.
fn wake_thread() -> Option<&'static mpsc::Sender<Vec<Waker>>> {
    static TX: OnceLock<Option<mpsc::Sender<Vec<Waker>>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Vec<Waker>>();
        let spawned = std::thread::Builder::new()
            .name(WAKE_THREAD.to_owned())
            .spawn(move || {
                for wakers in rx {
                    wakers.into_iter().for_each(Waker::wake);
                }
            });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the wake-up thread; waking in place");
                None
            }
        }
    })
    .as_ref()
}

/// Wakes `waker` now, or at the end of the current [`corked`] call.
fn wake_data(waker: Waker) {
    let deferred = CORKED.with(|c| match c.borrow_mut().as_mut() {
        Some(wakers) => {
            wakers.push(waker);
            None
        }
        None => Some(waker),
    });
    if let Some(waker) = deferred {
        waker.wake();
    }
}

/// What happens to a client whose data queue (`send_buffer`) is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Close the connection (the seed's behaviour): the client reconnects and
    /// starts again from fresh data.
    #[default]
    Disconnect,
    /// Keep the connection and discard its oldest queued update to make room
    /// for the new one: the client sees a gap, then the newest updates.
    DropOldest,
    /// Keep the connection and, per topic, only the newest queued update: the
    /// client skips intermediate values but always gets each topic's latest
    /// (what market-data servers do). When every queued update is of another
    /// topic the oldest is dropped.
    Conflate,
}

impl SlowConsumer {
    /// The policy's name in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            SlowConsumer::Disconnect => "disconnect",
            SlowConsumer::DropOldest => "drop_oldest",
            SlowConsumer::Conflate => "conflate",
        }
    }
}

impl std::fmt::Display for SlowConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Gateway-wide counts of what the slow-consumer policies did.
#[derive(Debug, Default)]
pub struct SlowConsumerStats {
    disconnected: AtomicU64,
    dropped_oldest: AtomicU64,
    conflated: AtomicU64,
    burst_conflated: AtomicU64,
    pub(crate) write_timeouts: AtomicU64,
    pub(crate) write_errors: AtomicU64,
}

/// A snapshot of [`SlowConsumerStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SlowConsumerCounts {
    /// Clients disconnected because their queue was full (`disconnect`).
    pub disconnected: u64,
    /// Queued updates discarded to make room (`drop_oldest`, and `conflate`
    /// when no update of the same topic was queued).
    pub dropped_oldest: u64,
    /// Queued updates replaced by a newer one of the same topic (`conflate`).
    pub conflated: u64,
    /// Updates replaced by a newer one of the same topic and the same burst
    /// because one burst gave a connection more than its queue holds,
    /// whatever the policy (see the [module](self) docs): not slowness.
    pub burst_conflated: u64,
    /// Clients dropped because one write took longer than `write_timeout`
    /// (whatever the policy: a client that stopped reading altogether).
    pub write_timeouts: u64,
    /// Connections whose socket refused a write (reset, broken pipe): the
    /// client went away without a close handshake.
    pub write_errors: u64,
}

impl SlowConsumerStats {
    /// The counts so far.
    pub fn counts(&self) -> SlowConsumerCounts {
        SlowConsumerCounts {
            disconnected: self.disconnected.load(Ordering::Relaxed),
            dropped_oldest: self.dropped_oldest.load(Ordering::Relaxed),
            conflated: self.conflated.load(Ordering::Relaxed),
            burst_conflated: self.burst_conflated.load(Ordering::Relaxed),
            write_timeouts: self.write_timeouts.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
        }
    }
}

/// The write pacing of a gateway (see the [module](self) docs): a period
/// counter and the writers to wake when the next period starts.
#[derive(Debug)]
pub struct Pacer {
    period: Duration,
    /// The current period. Written only under the `due` lock, so a writer
    /// registered for "the next period" can never miss its tick.
    epoch: AtomicU64,
    /// The writers with data waiting for the next period.
    due: Mutex<Vec<Waker>>,
}

impl Pacer {
    /// A pacer with periods of `period` (not zero), ticked by hand with
    /// [`tick`](Pacer::tick); [`Pacer::start`] makes one that ticks itself.
    pub fn new(period: Duration) -> Arc<Self> {
        debug_assert!(!period.is_zero());
        Arc::new(Pacer {
            period,
            epoch: AtomicU64::new(0),
            due: Mutex::new(Vec::new()),
        })
    }

    /// The length of a period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The current period.
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn due(&self) -> MutexGuard<'_, Vec<Waker>> {
        crate::lock(&self.due)
    }

    /// Has `waker` woken when the period after `epoch` starts; gives it
    /// back when that period has already started.
    fn defer(&self, waker: Waker, epoch: u64) -> Result<(), Waker> {
        let mut due = self.due();
        if self.epoch() != epoch {
            return Err(waker);
        }
        due.push(waker);
        Ok(())
    }

    /// Starts the next period: wakes every writer whose data waited for it
    /// (many from the wake-up thread, see the [module](self) docs).
    pub fn tick(&self) {
        let wakers = {
            let mut due = self.due();
            self.epoch.fetch_add(1, Ordering::AcqRel);
            std::mem::take(&mut *due)
        };
        wake_all(wakers);
    }

    /// A pacer with periods of `period`, ticked by a task of its own until
    /// it is dropped; `None` for a zero period (pacing off).
    pub fn start(period: Duration) -> Option<Arc<Self>> {
        if period.is_zero() {
            return None;
        }
        let pacer = Pacer::new(period);
        // Ticks every period until the pacer is dropped.
        tokio::spawn(crate::connections::every_while_alive(
            period,
            Arc::downgrade(&pacer),
            Pacer::tick,
        ));
        Some(pacer)
    }
}

/// The conflation key of an item that belongs to no topic.
pub const NO_TOPIC: u32 = u32::MAX;

/// One queued data item and the topic it updates (for conflation).
#[derive(Debug)]
pub struct Item {
    /// The interned topic the item updates ([`NO_TOPIC`] if none): a newer
    /// item of the same topic replaces it under conflation.
    pub topic: u32,
    /// The encoded message to write.
    pub out: Outbound,
    /// The burst that offered it ([`NO_BURST`] outside of one).
    burst: u32,
}

impl Item {
    /// An item of `topic` ([`NO_TOPIC`] for none).
    pub fn new(topic: u32, out: Outbound) -> Item {
        Item {
            topic,
            out,
            burst: NO_BURST,
        }
    }
}

/// Removes the item of `item`'s topic that the same burst queued last, if
/// there is one and `item` may replace it (see the [module](self) docs).
fn burst_conflate(data: &mut VecDeque<Item>, item: &Item) -> bool {
    if item.burst == NO_BURST
        || item.topic == NO_TOPIC
        || matches!(item.out, Outbound::Sequenced(_))
    {
        return false;
    }
    // A scan of a full queue, only when it is full.
    let found = data
        .iter()
        .rposition(|queued| queued.burst == item.burst && queued.topic == item.topic);
    found.and_then(|at| data.remove(at)).is_some()
}

/// Keeps only the newest queued item of each topic (items of no topic stay),
/// in queue order.
fn compact(data: &mut VecDeque<Item>) {
    let mut seen = HashSet::with_capacity(data.len());
    let keep: Vec<bool> = data
        .iter()
        .rev()
        .map(|item| item.topic == NO_TOPIC || seen.insert(item.topic))
        .collect();
    let mut newest_first = keep.into_iter().rev();
    data.retain(|_| newest_first.next().unwrap_or(true));
}

/// What [`Outbox::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Queued.
    Queued,
    /// Queued after the policy made room (dropped or conflated older items).
    Trimmed,
    /// Not queued: the queue was full and the policy is `disconnect`.
    Full,
    /// Not queued: the connection is closing.
    Closed,
}

#[derive(Debug)]
struct State {
    data: VecDeque<Item>,
    ctrl: VecDeque<Control>,
    /// The writer, when it waits for work.
    waker: Option<Waker>,
    /// The pacer's period in which data was last taken (pacing only;
    /// `u64::MAX`: never).
    taken_epoch: u64,
    /// The writer is registered with the pacer for the next period: data
    /// needs no wake-up of its own.
    paced: bool,
    /// The reader side finished: no more control items will come.
    reader_gone: bool,
    /// The writer stopped: nothing queued will be written.
    writer_gone: bool,
    /// The writer's socket failed; its data stays queued for the connection's
    /// protocol to account for (see [`Outbox::writer_failed`]).
    writer_failed: bool,
    /// The connection is to be dropped (full queue, failed write).
    dropped: bool,
    /// The connection is to end as if its transport vanished.
    abandoned: bool,
    /// A ping is due ([`Outbox::ping`]), not yet taken.
    ping: bool,
    /// The server shuts down ([`Outbox::shut_down`]), not yet taken.
    shutdown: bool,
    /// When the oldest queued data item entered the fan-out.
    oldest: Option<Instant>,
}

impl Default for State {
    fn default() -> Self {
        State {
            data: VecDeque::new(),
            ctrl: VecDeque::new(),
            waker: None,
            taken_epoch: u64::MAX,
            paced: false,
            reader_gone: false,
            writer_gone: false,
            writer_failed: false,
            dropped: false,
            abandoned: false,
            ping: false,
            shutdown: false,
            oldest: None,
        }
    }
}

/// Wakes the writer (after the lock is released), if it was waiting.
fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Keeps the waker of `cx` in `slot` (unless the one there wakes the same task).
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The queues of one connection (see the [module](self) docs).
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// The connection's reader, when it waits: for room in the control
    /// queue (the writer took items from a full one, or stopped), or for
    /// its [alarm](crate::alarm). One reader waits at a time.
    reader: AtomicWaker,
    /// The write pacing, when on.
    pacer: Option<Arc<Pacer>>,
    /// Data items queued at most (at least one).
    capacity: u32,
    /// When the reader is next to be woken.
    alarm: Alarm,
    policy: SlowConsumer,
}

/// The largest data deque (in items) that a writer with nothing to take
/// gives up: the smallest one allocated, which a connection receiving a few
/// items a batch uses. Busier connections keep theirs.
const QUIET_DEQUE: usize = 4;

/// Why a writer blocked on a full socket stops ([`Outbox::stopped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The connection is dropped: its queue overflowed under `disconnect`.
    Dropped,
    /// The connection is abandoned: its client came back on another one.
    Abandoned,
}

/// What the writer takes in one go.
#[derive(Debug, Default)]
pub struct Batch {
    /// Control items (pongs, replies, close), written before the data.
    pub ctrl: VecDeque<Control>,
    /// Data items, in the order they were queued.
    pub data: VecDeque<Item>,
    /// The connection is to be dropped: write nothing more.
    pub dropped: bool,
    /// The reader is gone and nothing is queued: stop.
    pub reader_gone: bool,
    /// The connection is to end as if its transport vanished
    /// ([`Outbox::abandon`]): write nothing more.
    pub abandoned: bool,
    /// A ping is due ([`Outbox::ping`]).
    pub ping: bool,
    /// The server shuts down ([`Outbox::shut_down`]): say goodbye and close.
    pub shutdown: bool,
    /// When the oldest data item of the batch entered the fan-out.
    pub oldest: Option<Instant>,
}

impl Batch {
    /// Whether the batch carries any item (a due ping or the shutdown
    /// included).
    pub fn is_empty(&self) -> bool {
        self.ctrl.is_empty() && self.data.is_empty() && !self.ping && !self.shutdown
    }
}

impl Outbox {
    /// An outbox of `capacity` data items that applies `policy` when full;
    /// with `pacer`, its wake-ups are paced by the write window.
    pub fn new(capacity: usize, policy: SlowConsumer, pacer: Option<Arc<Pacer>>) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            reader: AtomicWaker::new(),
            pacer,
            capacity: u32::try_from(capacity.max(1)).unwrap_or(u32::MAX),
            alarm: Alarm::default(),
            policy,
        }
    }

    /// The slow-consumer policy.
    pub fn policy(&self) -> SlowConsumer {
        self.policy
    }

    /// Data items queued at most.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Data items queued now.
    pub fn depth(&self) -> usize {
        self.lock().data.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// Queues a data item without waiting, applying the slow-consumer policy
    /// when the queue is full.
    pub fn offer(&self, mut item: Item, stats: &SlowConsumerStats) -> Offered {
        item.burst = current_burst();
        let mut state = self.lock();
        if state.dropped || state.writer_gone {
            return Offered::Closed;
        }
        let mut offered = Offered::Queued;
        if state.data.len() >= self.capacity() && burst_conflate(&mut state.data, &item) {
            stats.burst_conflated.fetch_add(1, Ordering::Relaxed);
        } else if state.data.len() >= self.capacity() {
            match self.policy {
                SlowConsumer::Disconnect => {
                    state.dropped = true;
                    let waker = state.waker.take();
                    drop(state);
                    stats.disconnected.fetch_add(1, Ordering::Relaxed);
                    wake(waker);
                    return Offered::Full;
                }
                SlowConsumer::Conflate => {
                    let before = state.data.len();
                    if item.topic != NO_TOPIC {
                        state.data.retain(|queued| queued.topic != item.topic);
                    }
                    if state.data.len() == before {
                        compact(&mut state.data);
                    }
                    let conflated = (before - state.data.len()) as u64;
                    stats.conflated.fetch_add(conflated, Ordering::Relaxed);
                    if state.data.len() >= self.capacity() {
                        // As many topics as places: nothing left to conflate.
                        state.data.pop_front();
                        stats.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                    }
                }
                SlowConsumer::DropOldest => {
                    state.data.pop_front();
                    stats.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                }
            }
            offered = Offered::Trimmed;
        }
        if state.data.is_empty() {
            state.oldest = Some(offered_at());
        }
        state.data.push_back(item);
        // Written to in this period already: the next one takes it, and the
        // waker stays for a control item that must not wait.
        let paced = state.paced
            || match (&self.pacer, &state.waker) {
                (Some(pacer), Some(w)) if state.taken_epoch == pacer.epoch() => {
                    pacer.defer(w.clone(), state.taken_epoch).is_ok()
                }
                _ => false,
            };
        if paced {
            state.paced = true;
            return offered;
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            wake_data(w);
        }
        offered
    }

    /// Queues a control item if there is room now (`Err` with the item when
    /// the control queue is full or the writer is gone): for the first item
    /// of a connection, which never waits.
    pub fn try_send_control(&self, item: Control) -> Result<(), Control> {
        let mut state = self.lock();
        if state.writer_gone || state.writer_failed || state.ctrl.len() >= CONTROL_QUEUE {
            return Err(item);
        }
        state.ctrl.push_back(item);
        let waker = state.waker.take();
        drop(state);
        wake(waker);
        Ok(())
    }

    /// Queues a control item, waiting while [`CONTROL_QUEUE`] items are
    /// queued (a client flooding requests without reading answers is slowed
    /// down). `Err` when the writer is gone.
    pub async fn send_control(&self, item: Control) -> Result<(), Control> {
        let mut item = Some(item);
        std::future::poll_fn(|cx| {
            // Registered before looking: room made after the look wakes it.
            self.reader.register(cx.waker());
            let mut state = self.lock();
            let Some(taken) = item.take() else {
                return Poll::Ready(Ok(()));
            };
            if state.writer_gone || state.writer_failed {
                return Poll::Ready(Err(taken));
            }
            if state.ctrl.len() < CONTROL_QUEUE {
                state.ctrl.push_back(taken);
                let waker = state.waker.take();
                drop(state);
                wake(waker);
                return Poll::Ready(Ok(()));
            }
            item = Some(taken);
            Poll::Pending
        })
        .await
    }

    /// Sets the reader's [alarm](crate::alarm) to ring at `at`.
    pub(crate) fn set_alarm(&self, at: tokio::time::Instant) {
        self.alarm.set(at);
    }

    /// Ready once the reader's alarm rang.
    pub(crate) fn poll_alarm(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.alarm.poll_rang(&self.reader, cx)
    }

    /// Unsets the alarm and lets go of the reader's task.
    pub(crate) fn clear_alarm(&self) {
        self.alarm.clear(&self.reader);
    }

    /// Rings the alarm if it is due at `now` (the sweep's clock).
    pub(crate) fn ring_alarm_if_due(&self, now: u32) -> bool {
        self.alarm.ring_if_due(&self.reader, now)
    }

    /// Marks the connection for dropping and wakes the writer. Returns
    /// whether this call was the first to do so.
    pub fn drop_connection(&self) -> bool {
        let mut state = self.lock();
        let first = !state.dropped;
        state.dropped = true;
        let waker = state.waker.take();
        drop(state);
        wake(waker);
        first
    }

    /// Whether the connection is being dropped: a full queue under the
    /// `disconnect` policy lost an item, or a write failed.
    pub fn is_dropped(&self) -> bool {
        self.lock().dropped
    }

    /// Whether the connection is being dropped.
    #[cfg(test)]
    pub(crate) fn is_dropped_for_tests(&self) -> bool {
        self.is_dropped()
    }

    /// The writer of a sequenced connection could not write: its socket is
    /// gone. Unlike [`drop_connection`](Self::drop_connection), data keeps
    /// being queued (under the queue's limit and policy) until
    /// [`writer_gone`](Self::writer_gone), so that the protocol can take
    /// every message the connection was given ([`take_now`](Self::take_now))
    /// and keep it for a resumed session; control items are refused at once.
    pub fn writer_failed(&self) {
        let mut state = self.lock();
        state.writer_failed = true;
        drop(state);
        self.reader.wake();
    }

    /// Waits until the connection is dropped (its queue overflowed under
    /// `disconnect`) or abandoned ([`abandon`](Self::abandon)), and says
    /// which: for a writer blocked on a full socket, which must not wait for
    /// its write to finish or time out first.
    pub async fn stopped(&self) -> Stop {
        std::future::poll_fn(|cx| {
            let mut state = self.lock();
            if state.dropped {
                return Poll::Ready(Stop::Dropped);
            }
            if state.abandoned {
                return Poll::Ready(Stop::Abandoned);
            }
            register(&mut state.waker, cx);
            Poll::Pending
        })
        .await
    }

    /// Changes the state with `set` and wakes the writer if it waits (after
    /// the lock is released).
    fn signal(&self, set: impl FnOnce(&mut State)) {
        let mut state = self.lock();
        set(&mut state);
        let waker = state.waker.take();
        drop(state);
        wake(waker);
    }

    /// Asks the writer for a ping frame (the connection's keep-alive), written
    /// with its next batch or at once if it waits; never paced and never
    /// refused for a full queue. A ping already due is not doubled.
    pub fn ping(&self) {
        self.signal(|state| state.ping = true);
    }

    /// Tells the writer that the server shuts down: it sends the protocol's
    /// goodbye and a close frame (1001) instead of what is queued.
    pub fn shut_down(&self) {
        self.signal(|state| state.shutdown = true);
    }

    /// Ends the connection as if its transport vanished: its client is
    /// known to be gone (it came back on another connection) though the
    /// socket did not say so yet. The writer writes nothing more and stops
    /// as after a failed write, and the session ends as
    /// [`Ending::Vanished`](crate::session::Ending::Vanished).
    pub fn abandon(&self) {
        self.signal(|state| state.abandoned = true);
    }

    /// Takes whatever is queued now into `batch`, without waiting and
    /// without pacing: for a protocol that takes over a connection's queue
    /// (its writer gone, or never started).
    pub fn take_now(&self, batch: &mut Batch) {
        let mut state = self.lock();
        batch.data.extend(state.data.drain(..));
        batch.oldest = batch.oldest.or(state.oldest.take());
        batch.ctrl.extend(state.ctrl.drain(..));
    }

    /// Puts what `taken` holds (taken from another connection's queue with
    /// [`take_now`](Self::take_now)) before everything queued here, in its
    /// order, and wakes the writer: for a session that moves to a new
    /// transport, whose old queue holds what is older than anything offered
    /// to the new one since. The queue may hold more than its capacity until
    /// the writer takes it. Nothing is put on a connection that is closing.
    pub fn put_first(&self, taken: &mut Batch) {
        let mut state = self.lock();
        if state.dropped || state.writer_gone || (taken.data.is_empty() && taken.ctrl.is_empty()) {
            return;
        }
        while let Some(item) = taken.data.pop_back() {
            state.data.push_front(item);
        }
        while let Some(item) = taken.ctrl.pop_back() {
            state.ctrl.push_front(item);
        }
        state.oldest = match (taken.oldest.take(), state.oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let waker = state.waker.take();
        drop(state);
        wake(waker);
    }

    /// Tells the writer that no more control items will come.
    pub fn reader_gone(&self) {
        self.signal(|state| state.reader_gone = true);
    }

    /// Marks the writer as stopped: queued and later items are discarded and
    /// a reader waiting for room is released.
    pub fn writer_gone(&self) {
        let mut state = self.lock();
        state.writer_gone = true;
        state.data = VecDeque::new();
        state.ctrl = VecDeque::new();
        drop(state);
        self.reader.wake();
    }

    /// Takes everything queued into `batch` (whose emptied deques are given
    /// to the outbox in exchange, so capacity is recycled), or registers the
    /// writer's waker and returns `Pending` when there is nothing to do.
    pub fn poll_take(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<()> {
        debug_assert!(batch.is_empty());
        let mut state = self.lock();
        batch.dropped = state.dropped;
        batch.abandoned = state.abandoned;
        // Signals the writer acts on at once, like control items.
        let signals = state.ping || state.shutdown;
        let nothing = state.ctrl.is_empty() && state.data.is_empty() && !signals;
        batch.reader_gone = state.reader_gone && nothing;
        if batch.dropped || batch.abandoned || batch.reader_gone {
            return Poll::Ready(());
        }
        if nothing {
            // A quiet connection waits holding one small data deque, not
            // two: the batch's goes back to the outbox (which gave its own
            // to the last batch) or is freed. The next update finds it there
            // and nothing is allocated; a busy connection's larger deques
            // are kept for its next batch.
            if batch.data.capacity() <= QUIET_DEQUE {
                if state.data.capacity() == 0 {
                    std::mem::swap(&mut state.data, &mut batch.data);
                } else {
                    batch.data = VecDeque::new();
                }
            }
            register(&mut state.waker, cx);
            return Poll::Pending;
        }
        if let Some(pacer) = &self.pacer {
            let mut epoch = pacer.epoch();
            if state.ctrl.is_empty() && !signals && state.taken_epoch == epoch {
                // Data only, and this period had its write: wait for the next.
                let same = matches!(&state.waker, Some(w) if w.will_wake(cx.waker()));
                register(&mut state.waker, cx);
                if (state.paced && same) || pacer.defer(cx.waker().clone(), epoch).is_ok() {
                    state.paced = true;
                    return Poll::Pending;
                }
                // The next period has just begun: take it now.
                epoch = pacer.epoch();
            }
            if !state.data.is_empty() {
                state.taken_epoch = epoch;
                state.paced = false;
            }
        }
        std::mem::swap(&mut state.data, &mut batch.data);
        batch.oldest = state.oldest.take();
        batch.ping = std::mem::take(&mut state.ping);
        batch.shutdown = std::mem::take(&mut state.shutdown);
        // Only a full queue has a reader waiting for room.
        let made_room = state.ctrl.len() >= CONTROL_QUEUE;
        std::mem::swap(&mut state.ctrl, &mut batch.ctrl);
        drop(state);
        if made_room {
            self.reader.wake();
        }
        Poll::Ready(())
    }

    /// Takes up to what is queued now (see [`poll_take`](Self::poll_take)).
    pub async fn take(&self, batch: &mut Batch) {
        std::future::poll_fn(|cx| self.poll_take(cx, batch)).await;
    }

    /// Gives back the deques of a written batch: the data deque keeps a
    /// small capacity for the next batch and frees a large one (an idle
    /// connection should not hold the memory of its busiest moment); the
    /// control deque is freed whenever it holds memory. Control items are
    /// rare (replies, pongs, a close), so a connection that answered once
    /// would otherwise hold their deque (four items, 256 bytes) for the rest
    /// of its life, and allocating one per reply costs nothing measurable.
    pub fn recycle(batch: &mut Batch) {
        const KEEP: usize = 64;
        batch.data.clear();
        batch.oldest = None;
        batch.ping = false;
        batch.shutdown = false;
        if batch.data.capacity() > KEEP {
            batch.data = VecDeque::new();
        }
        batch.ctrl = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn recycling_frees_the_control_deque_and_a_quiet_connection_holds_one_data_deque() {
        let stats = SlowConsumerStats::default();
        let outbox = Outbox::new(256, SlowConsumer::DropOldest, None);
        outbox
            .try_send_control(Control::Reply(Bytes::from_static(b"r")))
            .unwrap();
        outbox.offer(item(0, 1), &stats);
        let mut batch = Batch::default();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(outbox.poll_take(&mut cx, &mut batch).is_ready());
        assert_eq!(batch.ctrl.len(), 1);
        Outbox::recycle(&mut batch);
        assert_eq!(batch.ctrl.capacity(), 0, "the reply's deque is freed");
        assert!(batch.data.capacity() > 0, "a small data deque is kept");
        // With nothing more queued, the writer waits holding no deque: the
        // connection keeps one, in the outbox, where the next update uses it.
        assert!(outbox.poll_take(&mut cx, &mut batch).is_pending());
        assert_eq!(batch.data.capacity(), 0, "the batch's deque is given up");
        let kept = outbox.lock().data.capacity();
        assert!(
            kept > 0 && kept <= QUIET_DEQUE,
            "the outbox keeps one: {kept}"
        );
        // The next update goes into it, and the exchange goes on without
        // allocating: still one deque between them at rest.
        outbox.offer(item(0, 7), &stats);
        assert!(outbox.poll_take(&mut cx, &mut batch).is_ready());
        assert_eq!(batch.data.capacity(), kept);
        Outbox::recycle(&mut batch);
        assert!(outbox.poll_take(&mut cx, &mut batch).is_pending());
        assert_eq!(batch.data.capacity(), 0);
        assert_eq!(outbox.lock().data.capacity(), kept);
        // A busy connection keeps its larger deque while it waits.
        for n in 0..20 {
            outbox.offer(item(0, n), &stats);
        }
        assert!(outbox.poll_take(&mut cx, &mut batch).is_ready());
        Outbox::recycle(&mut batch);
        assert!(outbox.poll_take(&mut cx, &mut batch).is_pending());
        assert!(
            batch.data.capacity() >= 20,
            "a busy connection's deque is kept"
        );
        // A large data deque is freed too.
        for n in 0..100 {
            outbox.offer(item(0, n), &stats);
        }
        assert!(outbox.poll_take(&mut cx, &mut batch).is_ready());
        Outbox::recycle(&mut batch);
        assert_eq!(batch.data.capacity(), 0);
    }

    fn item(topic: u32, n: u8) -> Item {
        Item::new(topic, Outbound::Frame(Bytes::from(vec![n])))
    }

    fn payloads(batch: &Batch) -> Vec<(u32, u8)> {
        batch
            .data
            .iter()
            .map(|i| match &i.out {
                Outbound::Frame(b) => (i.topic, b[0]),
                Outbound::Sequenced(_) => (i.topic, 0),
            })
            .collect()
    }

    /// A waker that counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn take_now(outbox: &Outbox) -> Batch {
        let mut batch = Batch::default();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let _ = outbox.poll_take(&mut cx, &mut batch);
        batch
    }

    #[test]
    fn what_is_put_first_comes_before_what_was_queued_and_wakes_the_writer() {
        let stats = SlowConsumerStats::default();
        let old = Outbox::new(4, SlowConsumer::Disconnect, None);
        let new = Outbox::new(4, SlowConsumer::Disconnect, None);
        old.offer(item(1, 1), &stats);
        old.offer(item(2, 2), &stats);
        // An update reached the new queue before the old one was moved.
        new.offer(item(1, 3), &stats);
        let mut taken = Batch::default();
        old.take_now(&mut taken);
        new.put_first(&mut taken);
        assert!(taken.data.is_empty(), "the items are moved, not copied");
        assert_eq!(payloads(&take_now(&new)), [(1, 1), (2, 2), (1, 3)]);
        // A writer waiting on the new queue is woken by it.
        let woken = std::sync::Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut batch = Batch::default();
        assert!(new.poll_take(&mut cx, &mut batch).is_pending());
        old.offer(item(3, 4), &stats);
        let mut taken = Batch::default();
        old.take_now(&mut taken);
        new.put_first(&mut taken);
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        assert!(new.poll_take(&mut cx, &mut batch).is_ready());
        assert_eq!(payloads(&batch), [(3, 4)]);
        // A closing connection takes nothing.
        new.writer_gone();
        old.offer(item(3, 5), &stats);
        let mut taken = Batch::default();
        old.take_now(&mut taken);
        new.put_first(&mut taken);
        assert!(take_now(&new).data.is_empty());
    }

    #[test]
    fn disconnect_marks_the_connection_dropped() {
        let stats = SlowConsumerStats::default();
        let outbox = Outbox::new(2, SlowConsumer::Disconnect, None);
        assert_eq!(outbox.offer(item(1, 1), &stats), Offered::Queued);
        assert_eq!(outbox.offer(item(1, 2), &stats), Offered::Queued);
        assert_eq!(outbox.offer(item(1, 3), &stats), Offered::Full);
        assert!(outbox.is_dropped_for_tests());
        assert_eq!(outbox.offer(item(1, 4), &stats), Offered::Closed);
        assert!(take_now(&outbox).dropped);
        assert_eq!(stats.counts().disconnected, 1);
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let stats = SlowConsumerStats::default();
        let outbox = Outbox::new(3, SlowConsumer::DropOldest, None);
        for n in 1..=5 {
            outbox.offer(item(u32::from(n % 2), n), &stats);
        }
        assert_eq!(payloads(&take_now(&outbox)), [(1, 3), (0, 4), (1, 5)]);
        assert_eq!(stats.counts().dropped_oldest, 2);
    }

    #[test]
    fn one_burst_that_outruns_the_queue_is_merged_per_topic_not_dropped() {
        let stats = SlowConsumerStats::default();
        let outbox = Outbox::new(4, SlowConsumer::Disconnect, None);
        // An earlier burst left an update of topic 1 and one of topic 2.
        corked(|| {
            assert_eq!(outbox.offer(item(1, 0), &stats), Offered::Queued);
            assert_eq!(outbox.offer(item(2, 0), &stats), Offered::Queued);
        });
        // One burst of ten updates of topic 1: the queue (4) fills, then each
        // update replaces the burst's previous one; nothing of the earlier
        // burst is touched and the client is not dropped.
        corked(|| {
            for n in 1..=10 {
                assert_eq!(
                    outbox.offer(item(1, n), &stats),
                    Offered::Queued,
                    "update {n}"
                );
            }
        });
        assert!(!outbox.is_dropped());
        let counts = stats.counts();
        assert_eq!((counts.burst_conflated, counts.disconnected), (8, 0));
        let mut batch = Batch::default();
        outbox.take_now(&mut batch);
        assert_eq!(payloads(&batch), [(1, 0), (2, 0), (1, 1), (1, 10)]);
        // A full queue that the burst added nothing of that topic to: the
        // policy applies (the client is slow).
        corked(|| {
            for n in 0..4 {
                outbox.offer(item(n + 10, 0), &stats);
            }
        });
        corked(|| assert_eq!(outbox.offer(item(10, 1), &stats), Offered::Full));
        assert!(outbox.is_dropped());
        assert_eq!(stats.counts().disconnected, 1);
    }

    #[test]
    fn bursts_never_merge_offers_made_outside_of_them() {
        let stats = SlowConsumerStats::default();
        let outbox = Outbox::new(2, SlowConsumer::Disconnect, None);
        outbox.offer(item(1, 1), &stats);
        outbox.offer(item(1, 2), &stats);
        assert_eq!(outbox.offer(item(1, 3), &stats), Offered::Full);
        assert_eq!(stats.counts().burst_conflated, 0);
    }

    #[test]
    fn conflate_keeps_the_latest_per_topic() {
        let stats = SlowConsumerStats::default();
        let outbox = Outbox::new(3, SlowConsumer::Conflate, None);
        for (topic, n) in [(7, 1), (8, 2), (7, 3), (7, 4), (8, 5), (9, 6)] {
            outbox.offer(item(topic, n), &stats);
        }
        // Full at (7, 4): both queued 7s go. Full at (9, 6), no 9 queued:
        // the queue is compacted to the newest per topic, (8, 2) goes.
        assert_eq!(payloads(&take_now(&outbox)), [(7, 4), (8, 5), (9, 6)]);
        assert_eq!(stats.counts().conflated, 3);
        assert_eq!(stats.counts().dropped_oldest, 0);
        // As many topics as places: the oldest is dropped instead.
        let outbox = Outbox::new(2, SlowConsumer::Conflate, None);
        for (topic, n) in [(1, 1), (2, 2), (3, 3)] {
            outbox.offer(item(topic, n), &stats);
        }
        assert_eq!(payloads(&take_now(&outbox)), [(2, 2), (3, 3)]);
        assert_eq!(stats.counts().dropped_oldest, 1);
    }

    #[test]
    fn the_writer_is_woken_once_per_empty_to_full_transition() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let stats = SlowConsumerStats::default();
        let outbox = Outbox::new(16, SlowConsumer::Disconnect, None);
        let mut batch = Batch::default();
        assert!(outbox.poll_take(&mut cx, &mut batch).is_pending());
        for n in 0..10 {
            outbox.offer(item(0, n), &stats);
        }
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(outbox.poll_take(&mut cx, &mut batch).is_ready());
        assert_eq!(batch.data.len(), 10);
        Outbox::recycle(&mut batch);
        assert!(batch.data.capacity() >= 10);
        outbox.reader_gone();
        assert!(outbox.poll_take(&mut cx, &mut batch).is_ready());
        assert!(batch.reader_gone);
    }

    #[test]
    fn corked_offers_wake_each_writer_once_at_the_end() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;
        let stats = SlowConsumerStats::default();
        let counts: Vec<Arc<Count>> = (0..3)
            .map(|_| Arc::new(Count(AtomicUsize::new(0))))
            .collect();
        let outboxes: Vec<Outbox> = (0..3)
            .map(|_| Outbox::new(16, SlowConsumer::Disconnect, None))
            .collect();
        let arm = || {
            for (outbox, count) in outboxes.iter().zip(&counts) {
                let waker = Waker::from(count.clone());
                let mut batch = Batch::default();
                let pending = outbox.poll_take(&mut Context::from_waker(&waker), &mut batch);
                assert!(pending.is_pending());
            }
        };
        let woken = || {
            counts
                .iter()
                .map(|c| c.0.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        };

        arm();
        corked(|| {
            for n in 0..5 {
                for outbox in &outboxes {
                    outbox.offer(item(0, n), &stats);
                }
                // Nested corks join the outer one.
                corked(|| outboxes[0].offer(item(1, n), &stats));
            }
            assert_eq!(woken(), [0, 0, 0], "nobody is woken inside the cork");
        });
        assert_eq!(woken(), [1, 1, 1], "each writer is woken once at the end");
        let queued: Vec<usize> = outboxes.iter().map(|o| take_now(o).data.len()).collect();
        assert_eq!(queued, [10, 5, 5]);

        // Outside a cork an offer wakes at once.
        arm();
        outboxes[1].offer(item(0, 9), &stats);
        assert_eq!(woken(), [1, 2, 1]);
    }

    /// A waker that records the name of the thread that woke it.
    #[derive(Default)]
    struct WokenOn(Mutex<Vec<Option<String>>>);

    impl std::task::Wake for WokenOn {
        fn wake(self: Arc<Self>) {
            let name = std::thread::current().name().map(str::to_owned);
            self.0.lock().unwrap().push(name);
        }
    }

    impl WokenOn {
        /// The names of the threads that woke it, once it was woken `n` times.
        fn wait_for(&self, n: usize) -> Vec<Option<String>> {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while self.0.lock().unwrap().len() < n {
                assert!(std::time::Instant::now() < deadline, "writers not woken");
                std::thread::sleep(Duration::from_millis(1));
            }
            self.0.lock().unwrap().clone()
        }
    }

    /// Arms `n` writers, offers each one update inside one cork, and
    /// returns the names of the threads that woke them, once all are woken.
    fn burst_woken_on(n: usize) -> Vec<Option<String>> {
        let stats = SlowConsumerStats::default();
        let woken = Arc::new(WokenOn::default());
        let waker = Waker::from(woken.clone());
        let outboxes: Vec<Outbox> = (0..n)
            .map(|_| Outbox::new(4, SlowConsumer::Disconnect, None))
            .collect();
        for outbox in &outboxes {
            let mut batch = Batch::default();
            assert!(
                outbox
                    .poll_take(&mut Context::from_waker(&waker), &mut batch)
                    .is_pending()
            );
        }
        corked(|| {
            for outbox in &outboxes {
                outbox.offer(item(0, 1), &stats);
            }
        });
        woken.wait_for(n)
    }

    #[test]
    fn a_small_burst_wakes_its_writers_in_place() {
        let here = std::thread::current().name().map(str::to_owned);
        let woken = burst_woken_on(WAKE_HANDOFF);
        assert!(woken.iter().all(|name| *name == here), "{woken:?}");
    }

    #[test]
    fn a_large_burst_hands_its_wake_ups_to_the_wake_up_thread() {
        let woken = burst_woken_on(WAKE_HANDOFF + 1);
        assert_eq!(woken.len(), WAKE_HANDOFF + 1);
        assert!(
            woken
                .iter()
                .all(|name| name.as_deref() == Some(WAKE_THREAD)),
            "{woken:?}"
        );
    }

    #[test]
    fn a_pacer_tick_with_many_writers_wakes_them_from_the_wake_up_thread() {
        let woken = Arc::new(WokenOn::default());
        let pacer = Pacer::new(Duration::from_millis(10));
        for _ in 0..=WAKE_HANDOFF {
            let epoch = pacer.epoch();
            assert!(pacer.defer(Waker::from(woken.clone()), epoch).is_ok());
        }
        pacer.tick();
        let names = woken.wait_for(WAKE_HANDOFF + 1);
        assert!(
            names.iter().all(|n| n.as_deref() == Some(WAKE_THREAD)),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn paced_data_waits_for_the_next_period_and_control_does_not() {
        use std::sync::atomic::AtomicUsize;
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let woken = || count.0.load(Ordering::Relaxed);
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let stats = SlowConsumerStats::default();
        // Ticked by hand: the periods are whatever lies between two ticks.
        let pacer = Pacer::new(Duration::from_millis(10));
        let outbox = Outbox::new(16, SlowConsumer::Disconnect, Some(pacer.clone()));
        let mut batch = Batch::default();

        // Nothing written in this period: the first update wakes at once.
        assert!(outbox.poll_take(&mut cx, &mut batch).is_pending());
        outbox.offer(item(0, 1), &stats);
        assert_eq!(woken(), 1);
        assert!(outbox.poll_take(&mut cx, &mut batch).is_ready());
        Outbox::recycle(&mut batch);

        // Written in this period: later updates wait for the next one.
        assert!(outbox.poll_take(&mut cx, &mut batch).is_pending());
        outbox.offer(item(0, 2), &stats);
        outbox.offer(item(0, 3), &stats);
        assert_eq!(woken(), 1, "no wake-up within the period");
        assert!(
            outbox.poll_take(&mut cx, &mut batch).is_pending(),
            "a spurious poll takes nothing either"
        );
        pacer.tick();
        assert_eq!(woken(), 2, "one wake-up at the next period");
        assert!(outbox.poll_take(&mut cx, &mut batch).is_ready());
        assert_eq!(payloads(&batch), [(0, 2), (0, 3)]);
        Outbox::recycle(&mut batch);

        // Data waiting for the next period, then a reply: both go at once.
        outbox.offer(item(0, 4), &stats);
        assert_eq!(woken(), 2);
        assert!(outbox.poll_take(&mut cx, &mut batch).is_pending());
        outbox
            .send_control(Control::Reply(bytes::Bytes::from_static(b"r")))
            .await
            .unwrap();
        assert_eq!(woken(), 3, "a control item wakes at once");
        assert!(outbox.poll_take(&mut cx, &mut batch).is_ready());
        assert_eq!((batch.ctrl.len(), payloads(&batch)), (1, vec![(0, 4)]));
        Outbox::recycle(&mut batch);

        // A period with no write: the next update goes at once again.
        pacer.tick();
        pacer.tick();
        let before = woken();
        assert!(outbox.poll_take(&mut cx, &mut batch).is_pending());
        outbox.offer(item(0, 5), &stats);
        assert_eq!(woken(), before + 1);
    }
}
