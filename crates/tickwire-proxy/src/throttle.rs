//! The LTP throttle: a steppable, conflating rate limiter.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Limits each key to one value per window, conflating instead of dropping
/// (seed 003, "Message Throttling": LTP at most every 50 ms).
///
/// The first value of a quiet key is sent at once and opens a window; values offered
/// within the window replace one another, and the latest is delivered by
/// [`poll_due`](Throttle::poll_due) when the window ends (which opens the next
/// window). So the last value of a burst always arrives, at most one window late, and
/// a key goes quiet again after a window with nothing new. Sans-IO: the caller passes
/// the time and arms a timer for [`next_deadline`](Throttle::next_deadline).
///
/// ```
/// use std::time::{Duration, Instant};
/// use tickwire_proxy::Throttle;
///
/// let mut throttle = Throttle::new(Duration::from_millis(50));
/// let t0 = Instant::now();
/// assert_eq!(throttle.offer("NSE:TCS", 1, t0), Some(1)); // sent at once
/// assert_eq!(throttle.offer("NSE:TCS", 2, t0 + Duration::from_millis(10)), None);
/// assert_eq!(throttle.offer("NSE:TCS", 3, t0 + Duration::from_millis(20)), None);
/// assert_eq!(throttle.next_deadline(), Some(t0 + Duration::from_millis(50)));
/// assert!(throttle.poll_due(t0 + Duration::from_millis(49)).is_empty());
/// assert_eq!(throttle.poll_due(t0 + Duration::from_millis(50)), [("NSE:TCS", 3)]);
/// ```
#[derive(Debug, Clone)]
pub struct Throttle<K, V> {
    window: Duration,
    slots: HashMap<K, Slot<V>>,
}

#[derive(Debug, Clone)]
struct Slot<V> {
    /// When the current window ends.
    until: Instant,
    /// The latest value offered within the window, not yet delivered.
    pending: Option<V>,
}

impl<K: Hash + Eq + Clone, V> Throttle<K, V> {
    /// A throttle with `window` between two values of a key (zero: no throttling).
    pub fn new(window: Duration) -> Self {
        Throttle {
            window,
            slots: HashMap::new(),
        }
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Offers `value` for `key` at `now`: returns it when it is to be sent now, else
    /// keeps it (replacing an older pending value) for [`poll_due`](Throttle::poll_due).
    pub fn offer(&mut self, key: K, value: V, now: Instant) -> Option<V> {
        if self.window.is_zero() {
            return Some(value);
        }
        match self.slots.get_mut(&key) {
            Some(slot) if now < slot.until => {
                slot.pending = Some(value);
                None
            }
            // A quiet key, or a window that ended without `poll_due` being called:
            // this value supersedes any overdue one and opens a new window.
            _ => {
                self.slots.insert(
                    key,
                    Slot {
                        until: now + self.window,
                        pending: None,
                    },
                );
                Some(value)
            }
        }
    }

    /// Takes the values whose window has ended by `now`, each the latest offered for
    /// its key; each delivery opens a new window. Keys whose window ended with nothing
    /// pending are forgotten.
    pub fn poll_due(&mut self, now: Instant) -> Vec<(K, V)> {
        let window = self.window;
        let mut due = Vec::new();
        self.slots.retain(|key, slot| {
            if now < slot.until {
                return true;
            }
            match slot.pending.take() {
                Some(value) => {
                    due.push((key.clone(), value));
                    slot.until = now + window;
                    true
                }
                None => false,
            }
        });
        due
    }

    /// When [`poll_due`](Throttle::poll_due) next has something to deliver.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|slot| slot.pending.is_some())
            .map(|slot| slot.until)
            .min()
    }

    /// Forgets `key` and any value pending for it (its last subscriber left).
    pub fn remove(&mut self, key: &K) {
        self.slots.remove(key);
    }

    /// The number of keys within a window.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no key is within a window.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn burst_conflates_to_the_last_value_at_the_window_end() {
        let mut t = Throttle::new(50 * MS);
        let t0 = Instant::now();
        assert_eq!(t.offer("a", 0, t0), Some(0));
        for i in 1..=100 {
            assert_eq!(t.offer("a", i, t0 + MS * (i as u32 % 50)), None);
        }
        assert_eq!(t.next_deadline(), Some(t0 + 50 * MS));
        assert_eq!(t.poll_due(t0 + 49 * MS), []);
        assert_eq!(t.poll_due(t0 + 50 * MS), [("a", 100)]);
        // The delivery opened a new window: a tick within it waits for its end.
        assert_eq!(t.offer("a", 101, t0 + 60 * MS), None);
        assert_eq!(t.poll_due(t0 + 99 * MS), []);
        assert_eq!(t.poll_due(t0 + 100 * MS), [("a", 101)]);
        // Idle: the window ends with nothing, the key is forgotten, nothing is sent.
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.poll_due(t0 + 150 * MS), []);
        assert!(t.is_empty());
        // The next tick of a quiet key goes at once.
        assert_eq!(t.offer("a", 102, t0 + 500 * MS), Some(102));
    }

    #[test]
    fn keys_are_independent() {
        let mut t = Throttle::new(50 * MS);
        let t0 = Instant::now();
        assert_eq!(t.offer("a", 1, t0), Some(1));
        assert_eq!(t.offer("b", 1, t0 + 10 * MS), Some(1));
        assert_eq!(t.offer("a", 2, t0 + 20 * MS), None);
        assert_eq!(t.offer("b", 2, t0 + 30 * MS), None);
        assert_eq!(t.next_deadline(), Some(t0 + 50 * MS));
        assert_eq!(t.poll_due(t0 + 55 * MS), [("a", 2)]);
        assert_eq!(t.next_deadline(), Some(t0 + 60 * MS));
        assert_eq!(t.poll_due(t0 + 60 * MS), [("b", 2)]);
        assert_eq!(t.len(), 2);
        t.remove(&"a");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn overdue_value_is_superseded_not_lost_order() {
        let mut t = Throttle::new(50 * MS);
        let t0 = Instant::now();
        assert_eq!(t.offer("a", 1, t0), Some(1));
        assert_eq!(t.offer("a", 2, t0 + 10 * MS), None);
        // poll_due was not called in time: the newer value goes at once instead.
        assert_eq!(t.offer("a", 3, t0 + 80 * MS), Some(3));
        assert_eq!(t.poll_due(t0 + 90 * MS), []);
    }

    #[test]
    fn zero_window_passes_everything() {
        let mut t = Throttle::new(Duration::ZERO);
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(t.offer("a", i, t0), Some(i));
        }
        assert!(t.is_empty());
        assert_eq!(t.window(), Duration::ZERO);
    }
}
