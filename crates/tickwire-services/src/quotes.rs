//! Market data by instrument and mode, as one endpoint keeps it and another
//! serves it: the market-data proxy holds the subscriptions to the adapters,
//! the LTP throttle and the last-value cache; the Socket.IO channel's
//! subscriptions and polls go through it. The router wires one to the
//! other; endpoints never import each other.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use tickwire_core::Subscriber;
use tickwire_model::Instrument;
use tickwire_proxy::{Depth, Mode};

/// Polls of the last-value cache.
pub trait Quotes: Send + Sync {
    /// The `market_data` message (JSON) of `instrument` in `mode`, from the
    /// last values known, or `None` when none is known yet. In a cluster,
    /// the values of an instrument ingested elsewhere are fetched, hence the
    /// future.
    fn last<'a>(
        &'a self,
        instrument: &'a Instrument,
        mode: Mode,
        depth: Depth,
    ) -> Pin<Box<dyn Future<Output = Option<Bytes>> + Send + 'a>>;

    /// Starts queueing every `market_data` message of `instrument` in
    /// `mode` to `sub` (text frames), subscribing the adapters on the key's
    /// first member. `Err` says why not.
    fn join(
        &self,
        sub: &Subscriber,
        instrument: &Instrument,
        mode: Mode,
        depth: Depth,
    ) -> Result<(), String>;

    /// Stops what [`join`](Self::join) started for connection `id`;
    /// unsubscribes the adapters when it was the key's last member.
    fn leave(&self, id: u64, instrument: &Instrument, mode: Mode, depth: Depth);
}
