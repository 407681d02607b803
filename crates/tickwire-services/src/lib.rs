//! What every endpoint of a tickwire gateway builds on, and nothing of any
//! one endpoint: the key ring ([`keys`]), the symbol table and the topics of
//! the JSON feeds ([`market`]), the [`Context`] the router hands each
//! endpoint, and the helpers of a handshake ([`http`]).
//!
//! Endpoints depend on this crate, on `tickwire-core` and on their own
//! codec; never on another endpoint. The gateway's router is the one place
//! that knows them all.

use std::sync::Arc;

use tickwire_core::{Connections, Index};
use tokio::sync::watch;

pub mod http;
pub mod keys;
pub mod market;
pub mod quotes;
#[cfg(feature = "tls")]
pub mod tls;

pub use keys::{KeyRejection, KeyRing, KeyUsage, Lease, Principal};
pub use market::{Interest, Learn, Market};

/// What the router hands every endpoint: the gateway's shared services.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Context {
    /// The key ring of every endpoint that takes keys.
    pub keys: Arc<KeyRing>,
    /// The instruments known and the figures of `server_status`.
    pub market: Arc<Market>,
    /// The topics of the JSON feeds (`/ws`, `/stream`, the FastWS bars).
    pub feeds: Arc<Index>,
    /// The WebSocket connections of every endpoint: settings, counts, pacing.
    pub connections: Arc<Connections>,
    /// Becomes `true` when the gateway shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// The slow-consumer policy of an endpoint that does not name its own
    /// (`transport.slow_consumer`).
    pub slow_consumer: tickwire_core::SlowConsumer,
    /// The web origins whose pages may connect (`allowed_origins`).
    pub origins: Arc<http::Origins>,
}

/// The core's policy of a configured slow-consumer policy.
pub fn slow_consumer(policy: tickwire_config::SlowConsumer) -> tickwire_core::SlowConsumer {
    match policy {
        tickwire_config::SlowConsumer::DropOldest => tickwire_core::SlowConsumer::DropOldest,
        tickwire_config::SlowConsumer::Conflate => tickwire_core::SlowConsumer::Conflate,
        _ => tickwire_core::SlowConsumer::Disconnect,
    }
}
