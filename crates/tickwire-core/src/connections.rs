//! What every connection of a server shares: its settings, its counters, its
//! write pacing and its shutdown signal, and the tracker the server waits on
//! when it stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::meter::{Latencies, Meters, Roster};
use crate::outbox::{Pacer, SlowConsumerCounts, SlowConsumerStats};

/// The transport settings every connection of a server shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// Data items queued per connection (`send_buffer`).
    pub send_buffer: usize,
    /// Time between two WebSocket pings the server sends.
    pub ping_interval: Duration,
    /// Longest a single socket write may take before the client is dropped.
    pub write_timeout: Duration,
    /// Write pacing: at most one data write per connection per period
    /// (zero: off; see [`Pacer`]).
    pub write_delay: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            send_buffer: 256,
            ping_interval: Duration::from_secs(54),
            write_timeout: Duration::from_secs(10),
            write_delay: Duration::ZERO,
        }
    }
}

/// The connections of one server (see the [module](self) docs).
///
/// Holds no lock; the counters are atomics.
#[derive(Debug)]
pub struct Connections {
    settings: ConnectionSettings,
    pacer: Option<Arc<Pacer>>,
    slow_consumers: Arc<SlowConsumerStats>,
    next_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
    meters: Meters,
    roster: Arc<Roster>,
    latencies: Arc<Latencies>,
}

impl Connections {
    /// The connections of a server that shuts down when `shutdown` becomes
    /// `true` (or its sender is dropped).
    ///
    /// Starts two tasks, so that no connection keeps a waiter or a timer of
    /// its own: one waits for the shutdown and then tells every connection's
    /// writer ([`Outbox::shut_down`](crate::outbox::Outbox::shut_down)); one
    /// wakes, every half second, the connections whose deadlines passed
    /// (idle timeouts, pings, close lingers). With a write delay, also the
    /// pacer's timer task. It must be called within a tokio runtime.
    pub fn new(settings: ConnectionSettings, shutdown: watch::Receiver<bool>) -> Arc<Connections> {
        let pacer = Pacer::start(settings.write_delay);
        let roster: Arc<Roster> = Arc::default();
        let latencies: Arc<Latencies> = Arc::default();
        tokio::spawn(tell_on_shutdown(shutdown.clone(), Arc::downgrade(&roster)));
        tokio::spawn(crate::alarm::sweep(Arc::downgrade(&roster)));
        Arc::new(Connections {
            settings,
            pacer,
            slow_consumers: Arc::new(SlowConsumerStats::default()),
            next_id: AtomicU64::new(1),
            shutdown,
            meters: Meters::new(latencies.clone()),
            roster,
            latencies,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &ConnectionSettings {
        &self.settings
    }

    /// Connections open now (those on the [roster](Self::roster)).
    pub fn open(&self) -> u64 {
        self.roster.len() as u64
    }

    /// What the slow-consumer policies did so far, all connections together.
    pub fn slow_consumers(&self) -> SlowConsumerCounts {
        self.slow_consumers.counts()
    }

    /// The counters the slow-consumer policies update.
    pub fn slow_consumer_stats(&self) -> &Arc<SlowConsumerStats> {
        &self.slow_consumers
    }

    /// The counters of each endpoint and format.
    pub fn meters(&self) -> &Meters {
        &self.meters
    }

    /// The connections open now.
    pub fn roster(&self) -> &Arc<Roster> {
        &self.roster
    }

    /// The fan-out and write latencies.
    pub fn latencies(&self) -> &Arc<Latencies> {
        &self.latencies
    }

    /// The write pacing, when on.
    pub fn pacer(&self) -> Option<&Arc<Pacer>> {
        self.pacer.as_ref()
    }

    /// A receiver of the shutdown signal.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// A new connection id, unique within the server.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Held by every connection task; [`Drained::wait`] returns once all of
/// them are dropped.
#[derive(Debug, Clone)]
pub struct Tracker(#[allow(dead_code)] mpsc::Sender<()>);

/// The other end of the [`Tracker`]s.
#[derive(Debug)]
pub struct Drained(mpsc::Receiver<()>);

/// A tracker and the way to wait for all of its clones to be dropped.
pub fn tracker() -> (Tracker, Drained) {
    let (tx, rx) = mpsc::channel(1);
    (Tracker(tx), Drained(rx))
}

impl Drained {
    /// Returns once every [`Tracker`] is dropped.
    pub async fn wait(&mut self) {
        // `recv` returns `None` once every sender is gone; none ever sends.
        while self.0.recv().await.is_some() {}
    }
}

/// Waits for the shutdown, then tells every connection on `roster` (one
/// that opens later sees the signal itself when it is set up).
async fn tell_on_shutdown(mut shutdown: watch::Receiver<bool>, roster: std::sync::Weak<Roster>) {
    shutdown_started(&mut shutdown).await;
    if let Some(roster) = roster.upgrade() {
        for card in roster.cards() {
            card.sub.outbox().shut_down();
        }
    }
}

/// Completes once `rx` says the server shuts down (or its sender is gone).
pub async fn shutdown_started(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = rx.wait_for(|&s| s).await.map(|_| ());
}

/// Calls `tick` every `period`, the first time one period from now, until
/// `shutdown` says the server shuts down (late ticks are not made up): the
/// loop of a gateway's housekeeping tasks.
pub async fn every(
    period: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
    mut tick: impl FnMut(),
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown_started(&mut shutdown) => return,
            _ = ticks.tick() => tick(),
        }
    }
}

/// Calls `tick` with `target` every `period` (late ticks are not made up),
/// the first time one period from now, until `target` is dropped: the loop
/// of the tasks that serve every connection (the alarms' sweep, the write
/// pacer), which end with what they serve.
pub(crate) async fn every_while_alive<T>(
    period: std::time::Duration,
    target: std::sync::Weak<T>,
    mut tick: impl FnMut(&T),
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(target) = target.upgrade() else {
            return;
        };
        tick(&target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_ticks_each_period_until_shutdown() {
        let (tx, rx) = watch::channel(false);
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = ticks.clone();
        let task = tokio::spawn(every(std::time::Duration::from_secs(1), rx, move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }));
        tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
        assert_eq!(ticks.load(std::sync::atomic::Ordering::Relaxed), 3);
        tx.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn every_while_alive_ticks_until_its_target_is_dropped() {
        let target = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn(every_while_alive(
            Duration::from_secs(1),
            Arc::downgrade(&target),
            |t: &std::sync::atomic::AtomicUsize| {
                t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
        ));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(target.load(std::sync::atomic::Ordering::Relaxed), 3);
        drop(target);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the loop ends with its target")
            .unwrap();
    }

    #[tokio::test]
    async fn counts_open_connections_and_waits_for_trackers() {
        let (_tx, rx) = watch::channel(false);
        let connections = Connections::new(ConnectionSettings::default(), rx);
        let meter = connections.meters().get("ws", "json");
        let enter = |id| {
            let queue = crate::subscriber::QueuePolicy {
                capacity: 4,
                slow_consumer: crate::SlowConsumer::Disconnect,
                pacer: None,
            };
            connections.roster().enter(crate::meter::Card {
                meter: meter.clone(),
                peer: crate::Peer { remote: None },
                opened_at: std::time::SystemTime::now(),
                sub: crate::Subscriber::new(id, 0, queue, Arc::default()),
            })
        };
        let a = enter(1);
        let b = enter(2);
        assert_eq!(connections.open(), 2);
        assert_eq!((meter.counts().accepted, meter.counts().open), (2, 2));
        drop(a);
        assert_eq!(connections.open(), 1);
        assert_eq!((meter.counts().accepted, meter.counts().open), (2, 1));
        drop(b);
        assert_eq!(connections.open(), 0);
        assert_eq!(meter.counts().open, 0);
        assert_ne!(connections.next_id(), connections.next_id());

        let (tracker, mut drained) = tracker();
        let held = tracker.clone();
        drop(tracker);
        let waited = tokio::spawn(async move { drained.wait().await });
        tokio::task::yield_now().await;
        assert!(!waited.is_finished());
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waited)
            .await
            .unwrap()
            .unwrap();
    }
}
