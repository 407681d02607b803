//! Broker adapters: where the updates a tickwire gateway fans out come from.
//!
//! The gateway talks to its upstream through one object-safe trait,
//! [`BrokerAdapter`]: connect, subscribe and unsubscribe adapter-defined keys,
//! take the one stream of [`Update`]s, disconnect. This crate holds the
//! trait, its error ([`AdapterError`]) and one implementation:
//! [`MemoryAdapter`], fed by hand through a [`MemoryHandle`], which records
//! the calls it gets, for tests and for embedding tickwire in another
//! program. Its dependency tree is small on purpose: a service that brings
//! its own adapter needs nothing else.
//!
//! The adapters of the bundled server live beside it, each in a crate of
//! its own: `tickwire-adapter-replay` (`JsonlReplay`, a recorded GEX day on
//! the wall clock, seed 000), `tickwire-adapter-synthetic`
//! (`SyntheticMarket`, a simulated live market) and `tickwire-adapter-zmq`
//! (`ZmqAdapter`, a ZeroMQ bus of broker adapters, seed 003). Making
//! adapters from a configuration is the server's wiring, not this crate's.
//!
//! What it does not do: adapters hand over records exactly as the source holds
//! them (a [`GexRecord`](tickwire_model::GexRecord) carries its JSON as
//! `Bytes` sliced from the file). Parsing, protobuf encoding and
//! compression belong to the pipeline; group names, clients and fan-out to the
//! gateway.
//!
//! ```
//! use std::sync::Arc;
//!
//! use futures_util::StreamExt;
//! use tickwire_adapter::{BrokerAdapter, MemoryAdapter};
//! use tickwire_model::{GexRecord, Hub, Update};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let memory = MemoryAdapter::new("memory");
//! let feed = memory.handle();
//! let adapter: Arc<dyn BrokerAdapter> = Arc::new(memory);
//!
//! let mut updates = adapter.updates()?;
//! adapter.connect().await?;
//! adapter.subscribe(&["SPX/state/gamma_zero".to_owned()]).await?;
//! assert_eq!(feed.subscriptions(), ["SPX/state/gamma_zero"]);
//!
//! let record = GexRecord {
//!     hub: Hub::StateGreeksZero,
//!     ticker: "SPX".into(),
//!     category: "gamma_zero",
//!     json: bytes::Bytes::from_static(br#"{"spot":1}"#),
//! };
//! feed.push(Update::Gex(record.clone())).await?;
//! assert_eq!(updates.next().await, Some(Update::Gex(record)));
//!
//! adapter.disconnect().await?;
//! assert_eq!(updates.next().await, None);
//! # Ok::<(), tickwire_adapter::AdapterError>(())
//! # }).unwrap();
//! ```

use std::future::Future;
use std::pin::Pin;

use tickwire_model::{Instrument, Update};

mod error;
mod memory;
mod states;

pub use error::AdapterError;
pub use memory::{AdapterCall, MemoryAdapter, MemoryHandle};
pub use states::AdapterStates;

/// A boxed, `Send` future, as returned by the methods of [`BrokerAdapter`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The stream of updates of one adapter; it ends when the adapter stops for good.
pub type UpdateStream = Pin<Box<dyn futures_util::Stream<Item = Update> + Send>>;

/// A source of market-data updates: the seam between the gateway and its upstream.
///
/// The trait is object safe; the gateway holds an `Arc<dyn BrokerAdapter>` and
/// calls it from many tasks at once, so every method takes `&self`.
///
/// Lifecycle: the gateway takes the stream with [`updates`](Self::updates)
/// (once), calls [`connect`](Self::connect), then [`subscribe`](Self::subscribe)s
/// a key when the first client joins the matching group and
/// [`unsubscribe`](Self::unsubscribe)s it when the last one leaves, and calls
/// [`disconnect`](Self::disconnect) on shutdown.
///
/// Subscription keys are adapter-defined strings; see each adapter for its
/// format (for the JSONL replay, `*` or `TICKER/folder/category`; for the
/// synthetic market, `*` or `EXCHANGE:SYMBOL`).
pub trait BrokerAdapter: Send + Sync + 'static {
    /// A short name for logs and errors, such as `replay`.
    fn name(&self) -> &str;

    /// Connects to the upstream (for a replay: loads and validates its data)
    /// and starts producing updates for the subscribed keys.
    ///
    /// The gateway calls it once at start-up, after taking
    /// [`updates`](Self::updates). Calling it on a connected adapter does
    /// nothing. Errors: whatever keeps the adapter from working (missing data,
    /// refused login...), or [`AdapterError::Disconnected`] after
    /// [`disconnect`](Self::disconnect).
    ///
    /// Cancel safety: dropping the future before it completes leaves the
    /// adapter unconnected; connecting again is allowed.
    fn connect(&self) -> BoxFuture<'_, Result<(), AdapterError>>;

    /// Starts delivering updates for `keys` (a set union with the keys already
    /// subscribed; subscribing a key twice is a no-op).
    ///
    /// The gateway calls it when a group gets its first subscriber. It may be
    /// called before [`connect`](Self::connect); the keys then take effect on
    /// connection. Errors: [`AdapterError::InvalidKey`] when a key is not in the
    /// adapter's format (then none of `keys` is subscribed),
    /// [`AdapterError::Upstream`] when the broker refuses,
    /// [`AdapterError::Disconnected`] after [`disconnect`](Self::disconnect).
    ///
    /// Cancel safety: if the future is dropped before it completes, the keys
    /// may or may not be subscribed; repeat the call to be sure.
    fn subscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>>;

    /// Stops delivering updates for `keys`; keys that are not subscribed are
    /// ignored.
    ///
    /// The gateway calls it when a group loses its last subscriber. Updates
    /// already in the stream are still delivered. Errors: as for
    /// [`subscribe`](Self::subscribe), except that unknown keys are not an error.
    ///
    /// Cancel safety: as for [`subscribe`](Self::subscribe).
    fn unsubscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>>;

    /// Stops the adapter for good: no update is produced after it returns, the
    /// stream ends once the updates already in it are read, and later calls of
    /// [`connect`](Self::connect) and [`subscribe`](Self::subscribe) fail with
    /// [`AdapterError::Disconnected`].
    ///
    /// The gateway calls it on shutdown. Calling it twice is a no-op. Errors:
    /// only what the upstream reports while closing.
    ///
    /// Cancel safety: the stop is requested before the first `.await`; a
    /// dropped future only skips waiting for the adapter's task to finish.
    fn disconnect(&self) -> BoxFuture<'_, Result<(), AdapterError>>;

    /// Takes the stream of updates.
    ///
    /// The first call takes it; every later call fails with
    /// [`AdapterError::UpdatesTaken`]. The stream may be taken before or after
    /// [`connect`](Self::connect). It is bounded: while nobody reads it, the
    /// adapter waits (a replay) or applies its own overflow policy (documented
    /// by the adapter), so read it promptly. It ends after
    /// [`disconnect`](Self::disconnect) or when the source is exhausted.
    fn updates(&self) -> Result<UpdateStream, AdapterError>;

    /// The instruments this adapter can produce, for symbol validation; empty
    /// when unknown (e.g. a bus, which may carry any instrument).
    ///
    /// The default returns none.
    fn instruments(&self) -> Vec<Instrument> {
        Vec::new()
    }
}
