//! What the gateway counts beside the core's meters, for `/metrics`, the
//! dashboard and the admin API: updates ingested by adapter, publish
//! requests by status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::StatusCode;

/// Updates taken from each adapter's stream, counted as they enter the
/// fan-out (one uncontended add per update, on the adapters' task).
#[derive(Debug, Default)]
pub(crate) struct Ingested {
    counters: Mutex<Vec<(String, Arc<AtomicU64>)>>,
}

impl Ingested {
    /// The counter of adapter `name`.
    pub(crate) fn counter(&self, name: &str) -> Arc<AtomicU64> {
        let mut counters = tickwire_core::lock(&self.counters);
        if let Some((_, c)) = counters.iter().find(|(n, _)| n == name) {
            return c.clone();
        }
        let c = Arc::new(AtomicU64::new(0));
        counters.push((name.to_owned(), c.clone()));
        c
    }

    pub(crate) fn counts(&self) -> Vec<(String, u64)> {
        tickwire_core::lock(&self.counters)
            .iter()
            .map(|(n, c)| (n.clone(), c.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Publish API answers, by status code.
#[derive(Debug, Default)]
pub(crate) struct Statuses(Mutex<BTreeMap<u16, u64>>);

impl Statuses {
    pub(crate) fn count(&self, status: StatusCode) {
        *tickwire_core::lock(&self.0)
            .entry(status.as_u16())
            .or_default() += 1;
    }

    pub(crate) fn counts(&self) -> Vec<(u16, u64)> {
        tickwire_core::lock(&self.0)
            .iter()
            .map(|(s, n)| (*s, *n))
            .collect()
    }
}
