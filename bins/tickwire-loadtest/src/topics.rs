//! The load test's own topics and which connection subscribes to which.
//!
//! Topic `i` (0-based) is the synthetic instrument `LT{i+1:04}/USD`: on `/ws`
//! the symbol `lt0001`, on `/stream` and `/api/v1/ws` `LT0001/USD`, on
//! `/proxy` the symbol `LT0001/USD` of the exchange `CRYPTO` (where the
//! publish API puts a `BASE/QUOTE` pair), and on the pubsub hubs the group
//! `{prefix}_LT0001_state_gex_zero` of the `state_gex` hub. None of them
//! exists in a fresh server; the load test creates them by publishing.
//!
//! Connection `c` subscribes to the `K` consecutive topics starting at
//! `c * K` (modulo `T`), so the `N * K` subscriptions cycle through the
//! topics in order and every topic gets `N * K / T` subscribers, give or take
//! one.

use std::fmt::Write as _;

use crate::Error;

/// The hub whose groups the pubsub protocols join.
pub const PUBSUB_HUB: &str = "state_gex";

/// The exchange of every topic's instrument, as `/proxy` names it.
pub const EXCHANGE: &str = "CRYPTO";

/// The topics of a run and their assignment to connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topics {
    count: usize,
    per_connection: usize,
}

impl Topics {
    /// `count` topics, `per_connection` of them for each connection.
    pub fn new(count: usize, per_connection: usize) -> Result<Topics, Error> {
        if count == 0 || per_connection == 0 {
            return Err(Error::invalid(
                "--topics and --subscriptions-per-conn must be at least 1",
            ));
        }
        if per_connection > count {
            return Err(Error::invalid(format!(
                "--subscriptions-per-conn ({per_connection}) cannot exceed --topics ({count})"
            )));
        }
        if u32::try_from(count).is_err() {
            return Err(Error::invalid("--topics is too large"));
        }
        Ok(Topics {
            count,
            per_connection,
        })
    }

    /// How many topics there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// How many topics each connection subscribes to.
    pub fn per_connection(&self) -> usize {
        self.per_connection
    }

    /// The topic of connection `conn`'s subscription `slot` (`slot < K`).
    pub fn topic(&self, conn: usize, slot: usize) -> usize {
        (self.first(conn) + slot) % self.count
    }

    /// The topics of connection `conn`, in slot order.
    pub fn of_connection(&self, conn: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.per_connection).map(move |slot| self.topic(conn, slot))
    }

    /// The slot of `topic` on connection `conn`, or `None` when the
    /// connection is not subscribed to it.
    pub fn slot(&self, conn: usize, topic: usize) -> Option<usize> {
        if topic >= self.count {
            return None;
        }
        let slot = (topic + self.count - self.first(conn)) % self.count;
        (slot < self.per_connection).then_some(slot)
    }

    /// How many of `connections` connections subscribe to each topic.
    pub fn subscribers(&self, connections: usize) -> Vec<u64> {
        let total = connections as u128 * self.per_connection as u128;
        let count = self.count as u128;
        (0..count)
            .map(|t| {
                u64::try_from(total / count + u128::from(t < total % count)).unwrap_or(u64::MAX)
            })
            .collect()
    }

    fn first(&self, conn: usize) -> usize {
        ((conn as u128 * self.per_connection as u128) % self.count as u128) as usize
    }
}

/// Appends the ticker of `topic`: `LT0001` for topic 0.
pub fn push_ticker(out: &mut String, topic: usize) {
    let _ = write!(out, "LT{:04}", topic + 1);
}

/// The `/stream` (and publish API) symbol of `topic`: `LT0001/USD`.
pub fn stream_symbol(topic: usize) -> String {
    let mut s = String::with_capacity(12);
    push_ticker(&mut s, topic);
    s.push_str("/USD");
    s
}

/// The `/ws` symbol of `topic`: `lt0001`.
pub fn ws_symbol(topic: usize) -> String {
    let mut s = String::with_capacity(8);
    push_ticker(&mut s, topic);
    s.make_ascii_lowercase();
    s
}

/// The pubsub group of `topic`: `{prefix}_LT0001_state_gex_zero`.
pub fn group(prefix: &str, topic: usize) -> String {
    let mut s = String::with_capacity(prefix.len() + 24);
    s.push_str(prefix);
    s.push('_');
    push_ticker(&mut s, topic);
    s.push_str("_state_gex_zero");
    s
}

/// The topic named by the digits of a ticker that follow `LT`/`lt`
/// (`0001` is topic 0); `None` for anything else.
pub fn parse_ticker_digits(digits: &[u8]) -> Option<usize> {
    let n = crate::stamp::parse_u64(digits)?;
    usize::try_from(n).ok()?.checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(stream_symbol(0), "LT0001/USD");
        assert_eq!(ws_symbol(41), "lt0042");
        assert_eq!(group("blue", 9999), "blue_LT10000_state_gex_zero");
        assert_eq!(parse_ticker_digits(b"0001"), Some(0));
        assert_eq!(parse_ticker_digits(b"10000"), Some(9999));
        assert_eq!(parse_ticker_digits(b"0000"), None);
        assert_eq!(parse_ticker_digits(b""), None);
    }

    #[test]
    fn assignment_is_even_and_slots_invert_it() {
        for (n, t, k) in [
            (20, 5, 1),
            (20, 5, 3),
            (7, 3, 3),
            (1000, 100, 10),
            (3, 10, 4),
        ] {
            let topics = Topics::new(t, k).unwrap();
            let mut counts = vec![0u64; t];
            for conn in 0..n {
                let mine: Vec<usize> = topics.of_connection(conn).collect();
                let mut distinct = mine.clone();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), k, "conn {conn} has duplicate topics");
                for (slot, &topic) in mine.iter().enumerate() {
                    counts[topic] += 1;
                    assert_eq!(topics.slot(conn, topic), Some(slot));
                }
                let others = (0..t).filter(|topic| !mine.contains(topic));
                for topic in others {
                    assert_eq!(topics.slot(conn, topic), None);
                }
            }
            assert_eq!(counts, topics.subscribers(n), "n={n} t={t} k={k}");
            let (min, max) = (counts.iter().min(), counts.iter().max());
            assert!(max.unwrap() - min.unwrap() <= 1, "{counts:?}");
        }
        assert_eq!(Topics::new(5, 1).unwrap().slot(0, 5), None);
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(Topics::new(0, 1).is_err());
        assert!(Topics::new(3, 0).is_err());
        assert!(Topics::new(3, 4).is_err());
    }
}
