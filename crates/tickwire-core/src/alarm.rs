//! The connections' one clock: a connection posts when it next needs to be
//! woken (its idle deadline, its next ping, the end of a close's linger) on
//! its [`Alarm`], and one task of the server ([`sweep`]) looks at every
//! listed connection's alarm each [`TICK`] and wakes those that are due.
//!
//! This replaces a tokio timer in every connection's future: a `Sleep` is
//! 112 bytes of state (an entry of the runtime's timer wheel) that every
//! idle connection kept, and every wait for a read re-armed it. An alarm is
//! a number and a waker in the connection's [`Subscriber`], set with one
//! atomic store. The price is precision: an alarm rings up to one tick
//! late, never early, which the deadlines it serves (seconds of idleness,
//! pings tens of seconds apart) do not notice. High-performance servers keep
//! idle timeouts the same way (uWebSockets sweeps its sockets every four
//! seconds).
//!
//! [`Subscriber`]: crate::Subscriber

use std::sync::Weak;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use crate::meter::Roster;

/// How often the alarms are looked at: how late one may ring.
pub(crate) const TICK: Duration = Duration::from_millis(500);

/// No alarm set.
const UNSET: u32 = 0;
/// The alarm rang and was not set again.
const RANG: u32 = 1;
/// The furthest ahead an alarm is set, in milliseconds (about 12 days):
/// times are kept in 32 bits and compared as distances, which holds within
/// half their range. A later deadline rings at this one; the session finds
/// it not yet due and sets the alarm again.
const FURTHEST_MS: u32 = 1 << 30;

/// When one connection's reader is next to be woken (see the
/// [module](self) docs): four bytes in its outbox, beside the reader's
/// waker, which the alarm shares with the reader's wait for room.
#[derive(Debug)]
pub(crate) struct Alarm {
    /// Milliseconds since [`origin`], wrapping ([`UNSET`], [`RANG`]).
    at: AtomicU32,
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm {
            at: AtomicU32::new(UNSET),
        }
    }
}

impl Alarm {
    /// Sets the alarm to ring at `at` (replacing the one set before).
    pub(crate) fn set(&self, at: Instant) {
        let now = Instant::now();
        let ahead = at.saturating_duration_since(now);
        let ahead = u32::try_from(ahead.as_millis()).map_or(FURTHEST_MS, |ms| ms.min(FURTHEST_MS));
        let mut stamp = stamp(now).wrapping_add(ahead);
        // The two sentinels are not times: ring a millisecond or two early
        // (the session checks what is due when it wakes).
        if stamp == UNSET || stamp == RANG {
            stamp = RANG + 1;
        }
        self.at.store(stamp, Ordering::Release);
    }

    /// Ready once the alarm rang; otherwise registers the task with `waker`
    /// to be woken when it does.
    pub(crate) fn poll_rang(&self, waker: &AtomicWaker, cx: &mut Context<'_>) -> Poll<()> {
        if self.at.load(Ordering::Acquire) == RANG {
            return Poll::Ready(());
        }
        waker.register(cx.waker());
        if self.at.load(Ordering::Acquire) == RANG {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Unsets the alarm and lets go of the task `waker` would wake (the
    /// connection ended; its outbox may outlive its task).
    pub(crate) fn clear(&self, waker: &AtomicWaker) {
        self.at.store(UNSET, Ordering::Release);
        drop(waker.take());
    }

    /// Rings the alarm through `waker` if it is due at `now` (a [`stamp`]):
    /// `true` if it rang.
    pub(crate) fn ring_if_due(&self, waker: &AtomicWaker, now: u32) -> bool {
        let at = self.at.load(Ordering::Acquire);
        if at == UNSET || at == RANG || !reached(now, at) {
            return false;
        }
        // Set again meanwhile: the new time stands.
        if self
            .at
            .compare_exchange(at, RANG, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        waker.wake();
        true
    }
}

/// Whether `now` is at or past `at`, both wrapping stamps less than half
/// their range apart.
fn reached(now: u32, at: u32) -> bool {
    now.wrapping_sub(at) < (1 << 31)
}

/// Milliseconds from a process-wide origin to `at`, wrapping (tokio's
/// clock, so that alarms follow a paused test clock too).
fn stamp(at: Instant) -> u32 {
    // Truncation is the wrapping.
    #[allow(clippy::cast_possible_truncation)]
    let ms = at.saturating_duration_since(origin()).as_millis() as u32;
    ms
}

/// The instant alarms count from.
fn origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    Instant::from_std(*ORIGIN.get_or_init(std::time::Instant::now))
}

/// Rings every listed connection's alarm that is due, each [`TICK`], until
/// the roster is gone (the server's connections were dropped). Not until
/// the server's shutdown: connections that close after it still linger for
/// their clients' close frames on their alarms.
pub(crate) async fn sweep(roster: Weak<Roster>) {
    crate::connections::every_while_alive(TICK, roster, |roster| {
        let now = stamp(Instant::now());
        roster.fold((), |(), card| {
            card.sub.outbox().ring_alarm_if_due(now);
        });
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn an_alarm_rings_once_when_due_never_before_and_not_after_it_is_cleared() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&task);
        let waker = AtomicWaker::new();
        let alarm = Alarm::default();
        let rang = || count.0.load(Ordering::Relaxed);
        let now = Instant::now();
        let at = |d: Duration| stamp(now + d);
        // Unset: nothing rings.
        assert!(alarm.poll_rang(&waker, &mut cx).is_pending());
        assert!(!alarm.ring_if_due(&waker, at(Duration::from_secs(3600))));

        alarm.set(now + Duration::from_secs(1));
        assert!(alarm.poll_rang(&waker, &mut cx).is_pending());
        assert!(!alarm.ring_if_due(&waker, at(Duration::from_millis(990))));
        assert_eq!(rang(), 0);
        assert!(alarm.ring_if_due(&waker, at(Duration::from_millis(1001))));
        assert_eq!(rang(), 1);
        assert!(alarm.poll_rang(&waker, &mut cx).is_ready());
        // Rung: not again until set again.
        assert!(!alarm.ring_if_due(&waker, at(Duration::from_secs(5))));
        assert_eq!(rang(), 1);

        alarm.set(now + Duration::from_secs(2));
        assert!(alarm.poll_rang(&waker, &mut cx).is_pending());
        alarm.clear(&waker);
        assert!(!alarm.ring_if_due(&waker, at(Duration::from_secs(5))));
        assert_eq!(rang(), 1);
        // Cleared, it holds no waker: the task it would wake is released.
        assert_eq!(Arc::strong_count(&count), 2, "the test's waker and count");
    }

    #[test]
    fn a_deadline_beyond_the_range_rings_early_and_times_compare_across_the_wrap() {
        let waker = AtomicWaker::new();
        let alarm = Alarm::default();
        let now = Instant::now();
        alarm.set(now + Duration::from_secs(100 * 24 * 3600));
        let far = stamp(now).wrapping_add(FURTHEST_MS);
        assert!(!alarm.ring_if_due(&waker, far.wrapping_sub(10)));
        assert!(alarm.ring_if_due(&waker, far.wrapping_add(10)));
        // Across the wrap of the 32-bit stamps.
        assert!(reached(5, u32::MAX - 5));
        assert!(!reached(u32::MAX - 5, 5));
        assert!(reached(7, 7));
    }
}
