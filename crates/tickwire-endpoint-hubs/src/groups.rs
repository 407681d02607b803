//! Each key's share of the group table.
//!
//! The gateway holds at most `max_groups` groups, and a group lives while it
//! has members. Without a share per key, the connections of one key could
//! join made-up groups until the table is full and every other key is
//! refused a new group; with it, a key holds at most `max_groups_per_key`
//! distinct groups at once, across all its connections and the sessions
//! parked for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tickwire_core::lock;
use tickwire_index::TopicId;

/// How many members each key has in each group, bounded per key.
#[derive(Debug)]
pub struct GroupShares {
    max_per_key: usize,
    /// Key (a token's user) → group → members of the key's connections.
    by_key: Mutex<HashMap<Arc<str>, HashMap<TopicId, u32>>>,
}

impl GroupShares {
    /// Shares of at most `max_per_key` distinct groups per key.
    pub fn new(max_per_key: usize) -> GroupShares {
        GroupShares {
            max_per_key,
            by_key: Mutex::new(HashMap::new()),
        }
    }

    /// The most distinct groups one key may hold.
    pub fn max_per_key(&self) -> usize {
        self.max_per_key
    }

    /// How many distinct groups `key`'s connections are in now.
    pub fn held(&self, key: &str) -> usize {
        lock(&self.by_key).get(key).map_or(0, HashMap::len)
    }

    /// Counts one more member of `key` in `group`; false (and nothing
    /// counted) when the group is new to the key and the key holds its
    /// share already.
    fn admit(&self, key: &Arc<str>, group: TopicId) -> bool {
        let mut by_key = lock(&self.by_key);
        let groups = by_key.entry(key.clone()).or_default();
        if let Some(members) = groups.get_mut(&group) {
            *members += 1;
            return true;
        }
        if groups.len() >= self.max_per_key {
            if groups.is_empty() {
                by_key.remove(key);
            }
            return false;
        }
        groups.insert(group, 1);
        true
    }

    /// Counts one member of `key` less in each of `groups`.
    fn release(&self, key: &str, groups: impl IntoIterator<Item = TopicId>) {
        let mut by_key = lock(&self.by_key);
        let Some(held) = by_key.get_mut(key) else {
            return;
        };
        for group in groups {
            if let Some(members) = held.get_mut(&group) {
                *members -= 1;
                if *members == 0 {
                    held.remove(&group);
                }
            }
        }
        if held.is_empty() {
            by_key.remove(key);
        }
    }
}

/// The groups of one session, counted in its key's share for as long as it
/// holds them: leaving a group, or dropping the set (the session ended,
/// live or parked), gives them back.
#[derive(Debug)]
pub(crate) struct Memberships {
    shares: Arc<GroupShares>,
    key: Arc<str>,
    /// Sorted; kept to its length (a session holds a few groups, and a
    /// hash set allocates room for four from its first).
    groups: Vec<TopicId>,
}

impl Memberships {
    pub(crate) fn new(shares: Arc<GroupShares>, key: Arc<str>) -> Memberships {
        Memberships {
            shares,
            key,
            groups: Vec::new(),
        }
    }

    /// The key the groups are counted under.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn contains(&self, group: TopicId) -> bool {
        self.groups.binary_search(&group).is_ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.groups.len()
    }

    /// Adds `group` if the key's share allows it; false when it does not.
    pub(crate) fn insert(&mut self, group: TopicId) -> bool {
        let Err(at) = self.groups.binary_search(&group) else {
            return true;
        };
        if !self.shares.admit(&self.key, group) {
            return false;
        }
        self.groups.reserve_exact(1);
        self.groups.insert(at, group);
        true
    }

    pub(crate) fn remove(&mut self, group: TopicId) {
        if let Ok(at) = self.groups.binary_search(&group) {
            self.groups.remove(at);
            if self.groups.len() * 2 < self.groups.capacity() {
                self.groups.shrink_to_fit();
            }
            self.shares.release(&self.key, [group]);
        }
    }

    /// Moves the groups out (to a parked session, or back), leaving this
    /// set empty.
    pub(crate) fn take(&mut self) -> Memberships {
        Memberships {
            shares: self.shares.clone(),
            key: self.key.clone(),
            groups: std::mem::take(&mut self.groups),
        }
    }
}

impl Drop for Memberships {
    fn drop(&mut self) {
        if !self.groups.is_empty() {
            self.shares.release(&self.key, self.groups.drain(..));
        }
    }
}

#[cfg(test)]
mod tests {
    use tickwire_index::SubscriptionIndex;

    use super::*;

    fn ids(n: usize) -> Vec<TopicId> {
        let index = SubscriptionIndex::<u8>::new();
        (0..n)
            .map(|i| index.subscribe(&format!("g{i}"), 0).topic)
            .collect()
    }

    #[test]
    fn a_key_holds_at_most_its_share_across_its_sessions() {
        let shares = Arc::new(GroupShares::new(2));
        let g = ids(3);
        let mut one = Memberships::new(shares.clone(), "demo".into());
        let mut two = Memberships::new(shares.clone(), "demo".into());
        let mut other = Memberships::new(shares.clone(), "other".into());
        assert!(one.insert(g[0]));
        assert!(two.insert(g[1]));
        assert!(!two.insert(g[2]), "a third distinct group for demo");
        assert!(
            two.insert(g[0]),
            "a group the key holds already is no new share"
        );
        assert!(other.insert(g[2]), "another key is not affected");
        assert_eq!(shares.held("demo"), 2);
        one.remove(g[0]);
        assert_eq!(shares.held("demo"), 2, "two is still in g0");
        two.remove(g[0]);
        assert_eq!(shares.held("demo"), 1);
        assert!(one.insert(g[2]));
        let parked = one.take();
        assert_eq!(one.len(), 0);
        assert_eq!(shares.held("demo"), 2, "a parked session keeps its groups");
        drop(parked);
        drop(two);
        assert_eq!(shares.held("demo"), 0);
        assert!(
            lock(&shares.by_key).get("demo").is_none(),
            "nothing kept for an idle key"
        );
        drop(one);
        drop(other);
        assert!(lock(&shares.by_key).is_empty());
    }
}
