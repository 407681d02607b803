//! The last values of instruments, by mode, as one endpoint keeps them and
//! another answers polls from: the market-data proxy keeps the cache, the
//! Socket.IO channel's `get_ltp`, `get_quote` and `get_depth` read it. The
//! router wires one to the other; endpoints never import each other.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
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
}
