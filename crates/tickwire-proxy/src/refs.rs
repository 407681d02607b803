//! Reference-counted upstream subscriptions.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// Who subscribes to what, and when the upstream adapter must be told.
///
/// Keys are subscription keys (typically [`SubKey`](crate::SubKey)), clients
/// connection ids. The adapter is asked to subscribe a key when its first client
/// arrives ([`Joined::First`]) and to unsubscribe it when its last client leaves
/// ([`Left::Last`]), including on disconnect. It is also the subscription index of
/// the fan-out: [`subscribers`](UpstreamRefs::subscribers) is one hash lookup.
///
/// ```
/// use tickwire_proxy::{Joined, Left, UpstreamRefs};
///
/// let mut refs = UpstreamRefs::new();
/// assert_eq!(refs.subscribe(1, "NSE:TCS:LTP"), Joined::First); // adapter.subscribe
/// assert_eq!(refs.subscribe(2, "NSE:TCS:LTP"), Joined::Another);
/// assert_eq!(refs.unsubscribe(&1, &"NSE:TCS:LTP"), Left::Another);
/// assert_eq!(refs.disconnect(&2), [("NSE:TCS:LTP", Left::Last)]); // adapter.unsubscribe
/// ```
#[derive(Debug, Clone)]
pub struct UpstreamRefs<C, K> {
    by_key: HashMap<K, HashSet<C>>,
    by_client: HashMap<C, HashSet<K>>,
}

/// What a subscription did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Joined {
    /// The key's first client: subscribe it upstream.
    First,
    /// The key already had other clients.
    Another,
    /// The client already held the key: nothing changed.
    Already,
}

/// What an unsubscription did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Left {
    /// The key's last client left: unsubscribe it upstream.
    Last,
    /// Other clients still hold the key.
    Another,
    /// The client did not hold the key: nothing changed.
    NotSubscribed,
}

impl<C, K> Default for UpstreamRefs<C, K> {
    fn default() -> Self {
        UpstreamRefs {
            by_key: HashMap::new(),
            by_client: HashMap::new(),
        }
    }
}

impl<C: Hash + Eq + Clone, K: Hash + Eq + Clone> UpstreamRefs<C, K> {
    /// No subscriptions.
    pub fn new() -> Self {
        Self::default()
    }

    /// `client` subscribes to `key`.
    pub fn subscribe(&mut self, client: C, key: K) -> Joined {
        let clients = self.by_key.entry(key.clone()).or_default();
        if !clients.insert(client.clone()) {
            return Joined::Already;
        }
        let first = clients.len() == 1;
        self.by_client.entry(client).or_default().insert(key);
        if first {
            Joined::First
        } else {
            Joined::Another
        }
    }

    /// `client` unsubscribes from `key`.
    pub fn unsubscribe(&mut self, client: &C, key: &K) -> Left {
        let Some(keys) = self.by_client.get_mut(client) else {
            return Left::NotSubscribed;
        };
        if !keys.remove(key) {
            return Left::NotSubscribed;
        }
        if keys.is_empty() {
            self.by_client.remove(client);
        }
        self.release(client, key)
    }

    /// `client` leaves (disconnect or `unsubscribe_all`): every key it held, each
    /// with what its leaving did. Keys come in no particular order.
    pub fn disconnect(&mut self, client: &C) -> Vec<(K, Left)> {
        let Some(keys) = self.by_client.remove(client) else {
            return Vec::new();
        };
        keys.into_iter()
            .map(|key| {
                let left = self.release(client, &key);
                (key, left)
            })
            .collect()
    }

    fn release(&mut self, client: &C, key: &K) -> Left {
        let Some(clients) = self.by_key.get_mut(key) else {
            return Left::NotSubscribed;
        };
        clients.remove(client);
        if clients.is_empty() {
            self.by_key.remove(key);
            Left::Last
        } else {
            Left::Another
        }
    }

    /// The clients of `key`.
    pub fn subscribers(&self, key: &K) -> impl Iterator<Item = &C> {
        self.by_key.get(key).into_iter().flatten()
    }

    /// The keys `client` holds.
    pub fn keys_of(&self, client: &C) -> impl Iterator<Item = &K> {
        self.by_client.get(client).into_iter().flatten()
    }

    /// Whether any client holds `key`.
    pub fn is_subscribed(&self, key: &K) -> bool {
        self.by_key.contains_key(key)
    }

    /// Every key held by at least one client, with how many hold it.
    pub fn keys(&self) -> impl Iterator<Item = (&K, usize)> {
        self.by_key.iter().map(|(k, clients)| (k, clients.len()))
    }

    /// The number of keys held by at least one client.
    pub fn key_count(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_client_drive_the_upstream() {
        let mut refs = UpstreamRefs::new();
        assert_eq!(refs.subscribe(1, "a"), Joined::First);
        assert_eq!(refs.subscribe(1, "a"), Joined::Already);
        assert_eq!(refs.subscribe(2, "a"), Joined::Another);
        assert_eq!(refs.subscribe(2, "b"), Joined::First);
        let mut subs: Vec<_> = refs.subscribers(&"a").copied().collect();
        subs.sort_unstable();
        assert_eq!(subs, [1, 2]);
        assert_eq!(refs.key_count(), 2);

        assert_eq!(refs.unsubscribe(&3, &"a"), Left::NotSubscribed);
        assert_eq!(refs.unsubscribe(&1, &"b"), Left::NotSubscribed);
        assert_eq!(refs.unsubscribe(&1, &"a"), Left::Another);
        assert_eq!(refs.unsubscribe(&1, &"a"), Left::NotSubscribed);
        assert!(refs.is_subscribed(&"a"));
        assert_eq!(refs.unsubscribe(&2, &"a"), Left::Last);
        assert!(!refs.is_subscribed(&"a"));
        assert_eq!(refs.subscribers(&"a").count(), 0);
        // Re-subscribing after the last left is a first subscription again.
        assert_eq!(refs.subscribe(1, "a"), Joined::First);
    }

    #[test]
    fn disconnect_releases_everything() {
        let mut refs = UpstreamRefs::new();
        refs.subscribe(1, "a");
        refs.subscribe(1, "b");
        refs.subscribe(2, "b");
        let mut left = refs.disconnect(&1);
        left.sort_unstable_by_key(|(k, _)| *k);
        assert_eq!(left, [("a", Left::Last), ("b", Left::Another)]);
        assert_eq!(refs.keys_of(&1).count(), 0);
        assert_eq!(refs.disconnect(&1), []);
        assert_eq!(refs.keys_of(&2).collect::<Vec<_>>(), [&"b"]);
        assert_eq!(refs.disconnect(&2), [("b", Left::Last)]);
        assert_eq!(refs.key_count(), 0);
    }
}
