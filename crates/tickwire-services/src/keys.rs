//! The key ring: API keys, their endpoints and roles, their usage.
//!
//! One key ring serves every endpoint. A key is found by the SHA-256 of what
//! the client presented, looked up in a map of the configured digests (keys
//! may be configured as digests only, and no comparison runs over the
//! secret itself). Each key carries the endpoints it may use, its roles and
//! its usage: open connections (bounded by `max_connections`) and a token
//! bucket of requests (`rate_per_minute`) shared by all its connections.
//!
//! The pubsub hubs trade a key for access tokens (in their endpoint's
//! crate); the JSON feeds, the proxy and the publish API take the key
//! itself: `Authorization: Bearer <key>`, or `?api_key=<key>` on the feeds
//! (seed 002).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tickwire_config::{ApiKey, ConfigError, Endpoint, ROLE_PUBLISH};

/// A configured key, as the key ring keeps it.
#[derive(Debug)]
struct Key {
    config: ApiKey,
    usage: Arc<KeyUsage>,
}

/// What one key is using now: open connections and its request bucket.
///
/// The bucket's mutex is held for a few arithmetic operations, never across
/// an `.await`.
#[derive(Debug)]
pub struct KeyUsage {
    name: String,
    max_connections: usize,
    connections: AtomicUsize,
    /// The key's connections on the cluster's other nodes, as they last
    /// said (a cluster member; 0 on a single node).
    elsewhere: AtomicUsize,
    bucket: Mutex<TokenBucket>,
}

impl KeyUsage {
    /// One more connection of the key, if it is under its limit (counting
    /// its connections on the cluster's other nodes); the connection is
    /// counted until the [`Lease`] is dropped.
    pub fn lease(self: &Arc<Self>) -> Option<Lease> {
        let elsewhere = self.elsewhere.load(Ordering::Acquire);
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n + elsewhere < self.max_connections).then_some(n + 1)
            })
            .ok()
            .map(|_| Lease(self.clone()))
    }

    /// Takes one request from the key's bucket; false when it is empty.
    pub fn take(&self, now: Instant) -> bool {
        tickwire_core::lock(&self.bucket).take(now)
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's connection limit.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
}

/// One open connection of a key; dropping it frees the slot.
#[derive(Debug)]
pub struct Lease(Arc<KeyUsage>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A token bucket: holds up to a minute's worth of requests and refills
/// continuously at `rate_per_minute`.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate_per_minute: u32, now: Instant) -> TokenBucket {
        let capacity = f64::from(rate_per_minute.max(1));
        TokenBucket {
            tokens: capacity,
            capacity,
            per_second: capacity / 60.0,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The identity an API key grants.
#[derive(Debug, Clone)]
pub struct Principal<'a> {
    /// The user id (the key's name).
    pub user_id: &'a str,
    /// The key's roles.
    pub roles: &'a [String],
    key: &'a Key,
}

impl Principal<'_> {
    /// Whether the key may use `endpoint`.
    pub fn allows(&self, endpoint: Endpoint) -> bool {
        self.key.config.allows(endpoint)
    }

    /// Whether the key may publish: the `publish` endpoint and role.
    pub fn may_publish(&self) -> bool {
        self.allows(Endpoint::Publish) && self.key.config.has_role(ROLE_PUBLISH)
    }

    /// The key's usage counters.
    pub fn usage(&self) -> Arc<KeyUsage> {
        self.key.usage.clone()
    }
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    /// No credentials of the expected form were given.
    Missing,
    /// The key is not one of the configured ones.
    Invalid,
}

/// Checks API keys.
pub struct KeyRing {
    keys: Vec<Key>,
    by_digest: HashMap<[u8; 32], usize>,
    refusals: Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field(
                "keys",
                &self.keys.iter().map(|k| &k.config.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Builds the key ring of `api_keys`; a key configured twice (in
    /// whichever form) is refused.
    pub fn new(api_keys: &[ApiKey]) -> Result<KeyRing, ConfigError> {
        let now = Instant::now();
        let mut keys = Vec::with_capacity(api_keys.len());
        let mut by_digest = HashMap::with_capacity(api_keys.len());
        for k in api_keys {
            if by_digest.insert(k.digest()?, keys.len()).is_some() {
                return Err(ConfigError::Invalid {
                    reason: format!("api key {:?} is configured twice", k.name),
                });
            }
            keys.push(Key {
                config: k.clone(),
                usage: Arc::new(KeyUsage {
                    name: k.name.clone(),
                    max_connections: k.max_connections,
                    connections: AtomicUsize::new(0),
                    elsewhere: AtomicUsize::new(0),
                    bucket: Mutex::new(TokenBucket::new(k.rate_per_minute, now)),
                }),
            });
        }
        Ok(KeyRing {
            keys,
            by_digest,
            refusals: Mutex::default(),
        })
    }

    /// Counts a client of `endpoint` refused for `reason` (`missing_key`,
    /// `invalid_key`, `forbidden`, `rate_limited`, `connection_limit`,
    /// `origin`, ...): what the operators' metrics report.
    pub fn refused(&self, endpoint: &'static str, reason: &'static str) {
        *tickwire_core::lock(&self.refusals)
            .entry((endpoint, reason))
            .or_default() += 1;
    }

    /// The refusals counted so far, by endpoint and reason.
    pub fn refusals(&self) -> Vec<((&'static str, &'static str), u64)> {
        tickwire_core::lock(&self.refusals)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// The open connections of each key that has any, by key name: what a
    /// cluster member tells the others.
    pub fn connections_by_key(&self) -> Vec<(String, u64)> {
        self.keys
            .iter()
            .filter_map(|k| {
                let open = k.usage.connections.load(Ordering::Acquire);
                (open > 0).then(|| (k.config.name.clone(), open as u64))
            })
            .collect()
    }

    /// Takes the connections each key holds on the cluster's other nodes
    /// (by key name; a key not named holds none there): a key's
    /// `max_connections` then bounds its connections across the cluster, as
    /// closely as the nodes' last reports (every second) allow.
    pub fn set_elsewhere(&self, by_key: &HashMap<String, u64>) {
        for k in &self.keys {
            let there = by_key.get(&k.config.name).copied().unwrap_or(0);
            k.usage.elsewhere.store(
                usize::try_from(there).unwrap_or(usize::MAX),
                Ordering::Release,
            );
        }
    }

    /// The principal of an `Authorization` header value: `Basic <KEY>` with
    /// the raw key (seed 000), or `Basic base64(KEY:)` as HTTP Basic has it.
    pub fn check_basic(&self, header: Option<&[u8]>) -> Result<Principal<'_>, KeyRejection> {
        let header = header.ok_or(KeyRejection::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| KeyRejection::Invalid)?;
        let (scheme, credentials) = header.trim().split_once(' ').ok_or(KeyRejection::Missing)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(KeyRejection::Missing);
        }
        let credentials = credentials.trim();
        if credentials.is_empty() {
            return Err(KeyRejection::Missing);
        }
        if let Some(p) = self.find(credentials.as_bytes()) {
            return Ok(p);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .map_err(|_| KeyRejection::Invalid)?;
        // `user:password` with the key as user and an empty password.
        let user = match decoded.iter().position(|&b| b == b':') {
            Some(colon) => &decoded[..colon],
            None => &decoded[..],
        };
        self.find(user).ok_or(KeyRejection::Invalid)
    }

    /// The principal of a key given as `Authorization: Bearer <KEY>`, or
    /// else as the `api_key` query parameter (seed 002).
    pub fn check_bearer(
        &self,
        header: Option<&[u8]>,
        query_key: Option<&str>,
    ) -> Result<Principal<'_>, KeyRejection> {
        let bearer = header
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| h.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .filter(|key| !key.is_empty());
        let key = bearer
            .or(query_key.filter(|k| !k.is_empty()))
            .ok_or(KeyRejection::Missing)?;
        self.find(key.as_bytes()).ok_or(KeyRejection::Invalid)
    }

    /// The key whose SHA-256 is that of `key`. Only digests are compared:
    /// the map is keyed by them, so timing reveals nothing of a secret.
    fn find(&self, key: &[u8]) -> Option<Principal<'_>> {
        let digest: [u8; 32] = Sha256::digest(key).into();
        let k = &self.keys[*self.by_digest.get(&digest)?];
        Some(Principal {
            user_id: &k.config.name,
            roles: &k.config.roles,
            key: k,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_config::Config;

    fn auth() -> KeyRing {
        let mut config = Config::default();
        config.api_keys.push(ApiKey {
            roles: vec!["webpubsub.sendToGroup".into()],
            max_connections: 2,
            rate_per_minute: 3,
            ..ApiKey::new("writer", "w-key")
        });
        KeyRing::new(&config.api_keys).unwrap()
    }

    #[test]
    fn a_keys_connections_on_other_nodes_count_against_its_limit() {
        let ring = auth();
        let usage = ring
            .check_bearer(Some(b"Bearer w-key"), None)
            .unwrap()
            .usage();
        let first = usage.lease().expect("one of two");
        assert_eq!(ring.connections_by_key(), [("writer".to_owned(), 1)]);
        // The other nodes hold one: this node's second is refused.
        ring.set_elsewhere(&HashMap::from([("writer".to_owned(), 1)]));
        assert!(usage.lease().is_none());
        // They let it go: the second is admitted, a third is not.
        ring.set_elsewhere(&HashMap::new());
        let second = usage.lease().expect("two of two");
        assert!(usage.lease().is_none());
        drop((first, second));
        assert!(ring.connections_by_key().is_empty());
    }

    #[test]
    fn bearer_then_query_key() {
        let auth = auth();
        let p = auth.check_bearer(Some(b"Bearer w-key"), None).unwrap();
        assert_eq!(p.user_id, "writer");
        let p = auth
            .check_bearer(Some(b"Basic x"), Some("tickwire-demo-key"))
            .unwrap();
        assert_eq!(p.user_id, "demo");
        // The header wins over the query.
        let p = auth
            .check_bearer(Some(b"bearer  w-key "), Some("tickwire-demo-key"))
            .unwrap();
        assert_eq!(p.user_id, "writer");
        assert_eq!(
            auth.check_bearer(None, None).unwrap_err(),
            KeyRejection::Missing
        );
        assert_eq!(
            auth.check_bearer(Some(b"Bearer "), Some("")).unwrap_err(),
            KeyRejection::Missing
        );
        assert_eq!(
            auth.check_bearer(None, Some("nope")).unwrap_err(),
            KeyRejection::Invalid
        );
        assert_eq!(
            auth.check_bearer(Some(b"Bearer \xff"), None).unwrap_err(),
            KeyRejection::Missing
        );
    }

    #[test]
    fn leases_are_bounded_and_released() {
        let auth = auth();
        let usage = auth
            .check_bearer(Some(b"Bearer w-key"), None)
            .unwrap()
            .usage();
        let a = usage.lease().unwrap();
        let b = usage.lease().unwrap();
        assert!(usage.lease().is_none());
        drop(a);
        let c = usage.lease().unwrap();
        assert!(usage.lease().is_none());
        drop((b, c));
    }

    #[test]
    fn the_bucket_holds_a_minute_and_refills() {
        let auth = auth();
        let usage = auth
            .check_bearer(Some(b"Bearer w-key"), None)
            .unwrap()
            .usage();
        let t0 = Instant::now();
        assert!(usage.take(t0) && usage.take(t0) && usage.take(t0));
        assert!(!usage.take(t0));
        // 3 a minute: one more token after 20 seconds.
        let later = t0 + std::time::Duration::from_secs(20);
        assert!(usage.take(later));
        assert!(!usage.take(later));
    }

    #[test]
    fn permissions_of_the_publish_role() {
        let mut config = Config::default();
        config.api_keys.push(ApiKey {
            roles: vec![ROLE_PUBLISH.into()],
            ..ApiKey::new("pub", "p-key")
        });
        config.api_keys.push(ApiKey {
            roles: vec![ROLE_PUBLISH.into()],
            endpoints: Some(vec![Endpoint::Stream]),
            ..ApiKey::new("narrow", "n-key")
        });
        let auth = KeyRing::new(&config.api_keys).unwrap();
        let check = |k: &str| auth.check_bearer(Some(format!("Bearer {k}").as_bytes()), None);
        assert!(check("p-key").unwrap().may_publish());
        assert!(!check("n-key").unwrap().may_publish());
        assert!(!check("tickwire-demo-key").unwrap().may_publish());
        assert!(check("tickwire-demo-key").unwrap().allows(Endpoint::Stream));
    }

    #[test]
    fn basic_header_forms() {
        let auth = auth();
        let p = auth.check_basic(Some(b"Basic tickwire-demo-key")).unwrap();
        assert_eq!(p.user_id, "demo");
        let b64 = base64::engine::general_purpose::STANDARD.encode("w-key:");
        let p = auth
            .check_basic(Some(format!("basic {b64}").as_bytes()))
            .unwrap();
        assert_eq!(p.user_id, "writer");
        assert_eq!(auth.check_basic(None).unwrap_err(), KeyRejection::Missing);
        assert_eq!(
            auth.check_basic(Some(b"Bearer x")).unwrap_err(),
            KeyRejection::Missing
        );
        assert_eq!(
            auth.check_basic(Some(b"Basic ")).unwrap_err(),
            KeyRejection::Missing
        );
        assert_eq!(
            auth.check_basic(Some(b"Basic nope")).unwrap_err(),
            KeyRejection::Invalid
        );
        assert_eq!(
            auth.check_basic(Some(b"Basic \xff")).unwrap_err(),
            KeyRejection::Invalid
        );
    }
}
