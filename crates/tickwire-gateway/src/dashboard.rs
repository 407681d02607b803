//! The live dashboard: `GET /dashboard` (a page with its script inline,
//! nothing fetched from elsewhere), which polls `GET /dashboard/stats`
//! once a second and draws deliveries per second itself, and streams a few
//! prices over `/ws` as any client would. `GET /` links to it.

use std::collections::BTreeMap;

use hyper::{Response, StatusCode};
use serde::Serialize;
use tickwire_core::http::{Body, asset, json};

use crate::Shared;

/// The page.
const PAGE: &str = include_str!("../assets/dashboard.html");
/// The index at `/`.
const INDEX: &str = include_str!("../assets/index.html");

/// The busiest topics shown.
const TOP_TOPICS: usize = 10;

/// `GET /dashboard/stats`.
#[derive(Serialize)]
struct Stats {
    /// Open WebSocket connections by endpoint.
    connections: BTreeMap<&'static str, u64>,
    /// Data messages written since the start (the page derives the rate).
    delivered: u64,
    /// Bytes written since the start.
    delivered_bytes: u64,
    adapters: Vec<Adapter>,
    topics: Vec<crate::admin::Topic>,
    slow_consumers: tickwire_core::SlowConsumerCounts,
    instruments: usize,
    /// Milliseconds since the Unix epoch, when the figures were read.
    at_ms: i64,
}

#[derive(Serialize)]
struct Adapter {
    name: String,
    state: &'static str,
}

/// `GET /dashboard/stats`: the figures the page shows.
pub(crate) fn stats(shared: &Shared) -> Response<Body> {
    let connections = &shared.context.connections;
    let mut by_endpoint = BTreeMap::new();
    let (mut delivered, mut delivered_bytes) = (0, 0);
    for m in connections.meters().counts() {
        *by_endpoint.entry(m.endpoint).or_default() += m.open;
        delivered += m.messages;
        delivered_bytes += m.bytes;
    }
    let mut topics = crate::admin::topics(shared);
    topics.truncate(TOP_TOPICS);
    json(
        StatusCode::OK,
        &Stats {
            connections: by_endpoint,
            delivered,
            delivered_bytes,
            adapters: shared
                .adapter_names
                .iter()
                .map(|name| Adapter {
                    name: name.clone(),
                    state: shared.adapter_states.get(name).unwrap_or("running"),
                })
                .collect(),
            topics,
            slow_consumers: connections.slow_consumers(),
            instruments: shared.context.market.symbols_tracked(),
            at_ms: tickwire_model::now_millis(),
        },
    )
}

/// `GET /dashboard`.
pub(crate) fn page() -> Response<Body> {
    asset(PAGE, "text/html; charset=utf-8")
}

/// `GET /`.
pub(crate) fn index() -> Response<Body> {
    asset(INDEX, "text/html; charset=utf-8")
}
