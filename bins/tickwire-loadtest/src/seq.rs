//! Gap detection: per connection, the next sequence number expected on each
//! of its subscriptions.
//!
//! The publisher numbers each topic's updates 1, 2, 3, … and starts only
//! once every connection is subscribed, so a connection expects 1 first. A
//! higher number means the ones skipped were dropped on the way; a lower one
//! is a duplicate or out of order (the server promises order per topic and
//! connection, so it should never happen). When the run ends, every number
//! the publisher sent past the last one received is missing too.

/// What one received sequence number says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The expected one.
    InOrder,
    /// The expected one and this many after it never arrived.
    Gap(u64),
    /// One already seen, or older: a duplicate or a reordering.
    Stale,
}

/// The next sequence number expected on each slot of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqTracker {
    next: Box<[u64]>,
}

impl SeqTracker {
    /// A tracker of `slots` subscriptions, each expecting 1.
    pub fn new(slots: usize) -> SeqTracker {
        SeqTracker {
            next: vec![1; slots].into_boxed_slice(),
        }
    }

    /// Records `seq` received on `slot` (`None` for a slot out of range).
    pub fn observe(&mut self, slot: usize, seq: u64) -> Option<Observation> {
        let next = self.next.get_mut(slot)?;
        Some(if seq == *next {
            *next += 1;
            Observation::InOrder
        } else if seq > *next {
            let missed = seq - *next;
            *next = seq + 1;
            Observation::Gap(missed)
        } else {
            Observation::Stale
        })
    }

    /// How many sequence numbers up to `last(slot)` (the last one the
    /// publisher sent on the slot's topic) have not arrived past the last
    /// one received, summed over the slots.
    pub fn missing_tail(&self, mut last: impl FnMut(usize) -> u64) -> u64 {
        self.next
            .iter()
            .enumerate()
            .map(|(slot, &next)| last(slot).saturating_sub(next - 1))
            .sum()
    }

    /// How many updates the connection received in order or after a gap,
    /// summed over the slots: the highest sequence number seen per slot.
    pub fn highest_seen(&self) -> u64 {
        self.next.iter().map(|&next| next - 1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_stale_numbers() {
        let mut t = SeqTracker::new(2);
        assert_eq!(t.observe(0, 1), Some(Observation::InOrder));
        assert_eq!(t.observe(0, 2), Some(Observation::InOrder));
        assert_eq!(t.observe(0, 5), Some(Observation::Gap(2)));
        assert_eq!(t.observe(0, 6), Some(Observation::InOrder));
        assert_eq!(t.observe(0, 4), Some(Observation::Stale));
        assert_eq!(t.observe(0, 6), Some(Observation::Stale));
        assert_eq!(t.observe(1, 3), Some(Observation::Gap(2)));
        assert_eq!(t.observe(2, 1), None);
        assert_eq!(t.highest_seen(), 6 + 3);
    }

    #[test]
    fn the_tail_counts_what_never_came() {
        let mut t = SeqTracker::new(3);
        for seq in 1..=4 {
            t.observe(0, seq);
        }
        t.observe(1, 1);
        // Slot 0 got everything, slot 1 lost 3 at the end, slot 2 all 4.
        assert_eq!(t.missing_tail(|_| 4), 3 + 4);
        // A publisher that sent less than was seen adds nothing.
        assert_eq!(t.missing_tail(|_| 0), 0);
    }
}
