//! The fan-out of updates: every endpoint's [`Feed`] sees every update, in
//! order, and turns it into messages for its own topics.
//!
//! Whoever has updates delivers them itself, under one lock: the adapters'
//! task ([`run`]) for the adapters' streams, a request's own task for a
//! publish API ([`deliver_all`]), so a published update reaches the writers
//! without a hop through another task. Updates that arrive together (a
//! publish batch, or what the streams hold already) are delivered as one
//! [corked](crate::corked) burst of at most [`BURST`]: each writer is woken
//! once, at the end, for everything the burst gave it.
//!
//! The update type is the caller's (`tickwire_model::Update` in the
//! gateway): the core knows neither the updates nor the endpoints, only the
//! order in which feeds see them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::Stream;
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::watch;
use tracing::info;

use crate::connections::shutdown_started;
use crate::meter::Latencies;
use crate::outbox::{SlowConsumerCounts, SlowConsumerStats};

/// The most updates handled in one corked burst: enough to turn a publish
/// batch into one write per connection, few enough (well under a
/// millisecond of work) that the first update of a burst is not held back.
pub const BURST: usize = 128;

/// How often [`run`] logs what the slow-consumer policies did (when
/// anything changed).
const SLOW_CONSUMER_LOG: Duration = Duration::from_secs(10);

/// What one endpoint turns updates into.
///
/// Called for every update, under the fan-out's lock: it must not block or
/// await. A feed looks up the topics the update feeds in its own index, and
/// encodes for a topic only when it has subscribers.
pub trait Feed<U>: Send {
    /// Delivers `update` to the feed's subscribers.
    fn on_update(&mut self, update: &U);
}

/// The feeds of a server, in the order they see each update.
pub struct FanOut<U> {
    feeds: Vec<(&'static str, Box<dyn Feed<U>>)>,
    /// Where the time each update takes is recorded.
    latencies: Option<Arc<Latencies>>,
}

impl<U> fmt::Debug for FanOut<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut")
            .field(
                "feeds",
                &self.feeds.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<U> Default for FanOut<U> {
    fn default() -> Self {
        FanOut {
            feeds: Vec::new(),
            latencies: None,
        }
    }
}

impl<U> FanOut<U> {
    /// No feeds yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `feed`, named `name` (for logs), after the others.
    pub fn with(mut self, name: &'static str, feed: impl Feed<U> + 'static) -> Self {
        self.feeds.push((name, Box::new(feed)));
        self
    }

    /// Records the time each update takes to reach every feed in
    /// `latencies` ([`Latencies::fan_out`]).
    #[must_use]
    pub fn metered(mut self, latencies: Arc<Latencies>) -> Self {
        self.latencies = Some(latencies);
        self
    }

    /// Hands `update` to every feed, in order.
    pub fn handle(&mut self, update: &U) {
        let start = self.latencies.as_ref().map(|_| std::time::Instant::now());
        for (_, feed) in &mut self.feeds {
            feed.on_update(update);
        }
        if let (Some(latencies), Some(start)) = (&self.latencies, start) {
            latencies.fan_out.observe(start.elapsed());
        }
    }
}

/// A fan-out shared by whoever delivers updates (see the [module](self) docs).
pub type SharedFanOut<U> = Mutex<FanOut<U>>;

/// Delivers `updates` in corked bursts of at most [`BURST`], taking the
/// lock once a burst; for the queues, the whole batch is one
/// [burst](crate::outbox::burst).
pub fn deliver_all<U>(fan_out: &SharedFanOut<U>, updates: impl IntoIterator<Item = U>) {
    let mut updates = updates.into_iter().peekable();
    // One batch is one burst for the queues, however many corked parts.
    crate::outbox::burst(|| {
        while updates.peek().is_some() {
            // `handle` leaves the state consistent between updates; a panic
            // in one update must not stop every later one.
            let mut fan_out = crate::lock(fan_out);
            crate::corked(|| {
                for update in updates.by_ref().take(BURST) {
                    fan_out.handle(&update);
                }
            });
        }
    });
}

/// Where a batch of updates from outside the adapters (a publish request's)
/// enters: a single node's fan-out delivers them at once; a cluster's bus
/// carries them to every node. The future completes once they are delivered
/// (locally) or the bus has them; `Err` says why neither happened.
pub trait Ingest<U>: Send + Sync {
    /// Takes `updates`, in order.
    fn ingest(
        &self,
        updates: Vec<U>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

impl<U: Send> Ingest<U> for SharedFanOut<U> {
    /// Delivers on the caller's task ([`deliver_all`]): done when it returns.
    fn ingest(
        &self,
        updates: Vec<U>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        deliver_all(self, updates);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A stream of updates (one adapter's).
pub type Updates<U> = Pin<Box<dyn Stream<Item = U> + Send>>;

/// Consumes every stream of `streams` until `shutdown` is set, delivering
/// each update together with every other one already waiting in the
/// streams (at most [`BURST`]) as one corked burst, and logs what the
/// slow-consumer policies of `stats` did every ten seconds.
pub async fn run<U: Send + 'static>(
    fan_out: Arc<SharedFanOut<U>>,
    streams: Vec<Updates<U>>,
    stats: Arc<SlowConsumerStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut streams_done = streams.is_empty();
    if streams_done {
        info!("no update streams; serving published updates only");
    }
    let mut updates = futures_util::stream::select_all(streams);
    let mut report = tokio::time::interval(SLOW_CONSUMER_LOG);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = SlowConsumerCounts::default();
    loop {
        tokio::select! {
            biased;
            () = shutdown_started(&mut shutdown) => break,
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
            next = updates.next(), if !streams_done => match next {
                Some(first) => {
                    // What the streams hold already; `now_or_never` polls
                    // them without waiting.
                    let mut more = std::iter::from_fn(|| updates.next().now_or_never().flatten());
                    deliver_all(&fan_out, std::iter::once(first).chain(more.by_ref().take(BURST - 1)));
                }
                None => {
                    info!("every update stream ended");
                    streams_done = true;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it saw, and whether it was inside a cork.
    struct Log(Arc<Mutex<Vec<(&'static str, u32)>>>, &'static str);

    impl Feed<u32> for Log {
        fn on_update(&mut self, update: &u32) {
            self.0.lock().unwrap().push((self.1, *update));
        }
    }

    #[test]
    fn every_feed_sees_every_update_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fan_out = Mutex::new(
            FanOut::new()
                .with("a", Log(seen.clone(), "a"))
                .with("b", Log(seen.clone(), "b")),
        );
        deliver_all(&fan_out, [1, 2]);
        assert_eq!(
            *seen.lock().unwrap(),
            [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
        );
        assert!(format!("{:?}", fan_out.lock().unwrap()).contains("[\"a\", \"b\"]"));
    }

    #[tokio::test]
    async fn the_task_drains_every_stream_until_shutdown() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fan_out = Arc::new(Mutex::new(
            FanOut::new().with("log", Log(seen.clone(), "log")),
        ));
        let streams: Vec<Updates<u32>> = vec![
            Box::pin(futures_util::stream::iter([1, 2, 3])),
            Box::pin(futures_util::stream::iter([10])),
        ];
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run(fan_out, streams, Arc::default(), shutdown));
        tokio::time::timeout(Duration::from_secs(5), async {
            while seen.lock().unwrap().len() < 4 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        stop.send(true).unwrap();
        task.await.unwrap();
        let mut got: Vec<u32> = seen.lock().unwrap().iter().map(|(_, n)| *n).collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2, 3, 10]);
    }
}
