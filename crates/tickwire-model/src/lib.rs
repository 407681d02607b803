//! The market-data vocabulary shared by every tickwire crate.
//!
//! This crate names things; it does no I/O and no encoding. It holds:
//!
//! - [`Hub`]: the five GEX hubs of the Azure Web PubSub–compatible endpoint, with
//!   their group naming (`{prefix}_{TICKER}_{kind}_{category}`), the folder their
//!   records live in, and the [`RecordKind`] they carry;
//! - [`GroupName`]: a parsed group name, validated against a hub;
//! - [`market`]: the canonical market events every adapter produces and every
//!   codec renders (quotes, LTP-only trades, order books, signals, server status), keyed by
//!   [`Instrument`];
//! - [`Update`]: what a broker adapter produces and the gateway fans out.
//!
//! ```
//! use tickwire_model::{GroupName, Hub};
//!
//! let g = GroupName::parse("blue", Hub::StateGex, "blue_ES_SPX_state_gex_zero").unwrap();
//! assert_eq!(g.ticker, "ES_SPX");
//! assert_eq!(g.category, "gex_zero");
//! assert_eq!(g.to_group("blue"), "blue_ES_SPX_state_gex_zero");
//! // A category of another hub is not a group of this one.
//! assert!(GroupName::parse("blue", Hub::StateGex, "blue_SPX_state_delta_zero").is_none());
//! ```

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

pub mod market;
mod time;

pub use time::{civil_from_days, days_from_civil, now_millis, unix_millis};

pub use market::{
    Instrument, Level, OrderBook, PriceTick, ServerStatus, Signal, SignalDirection, Trade,
};

/// One of the five GEX hubs (seed 000).
///
/// A hub is reached at `/ws/{name}` or `/client/hubs/{name}`; its groups are
/// `{prefix}_{TICKER}_{group_kind}_{category}` with one of its [`categories`](Hub::categories).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hub {
    /// `orderflow`: orderflow metrics (DEX, GEX, convexity, vanna, charm).
    Orderflow,
    /// `classic`: the traditional GEX chain.
    Classic,
    /// `state_gex`: orderflow-based GEX profiles.
    StateGex,
    /// `state_greeks_zero`: greek profiles of 0DTE options.
    StateGreeksZero,
    /// `state_greeks_one`: greek profiles of 1DTE+ options.
    StateGreeksOne,
}

impl Hub {
    /// Every hub, in the order of the seed document.
    pub const ALL: [Hub; 5] = [
        Hub::Orderflow,
        Hub::Classic,
        Hub::StateGex,
        Hub::StateGreeksZero,
        Hub::StateGreeksOne,
    ];

    /// The hub's name as it appears in routes and in `/negotiate`'s `websocket_urls`.
    pub const fn name(self) -> &'static str {
        match self {
            Hub::Orderflow => "orderflow",
            Hub::Classic => "classic",
            Hub::StateGex => "state_gex",
            Hub::StateGreeksZero => "state_greeks_zero",
            Hub::StateGreeksOne => "state_greeks_one",
        }
    }

    /// The hub named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Hub> {
        Hub::ALL.into_iter().find(|h| h.name() == name)
    }

    /// The segment between ticker and category in group names, which is also the
    /// folder the hub's records live in: `orderflow`, `classic` or `state`.
    pub const fn group_kind(self) -> &'static str {
        match self {
            Hub::Orderflow => "orderflow",
            Hub::Classic => "classic",
            Hub::StateGex | Hub::StateGreeksZero | Hub::StateGreeksOne => "state",
        }
    }

    /// The categories of the hub's groups (and the names of its JSONL files).
    pub const fn categories(self) -> &'static [&'static str] {
        match self {
            Hub::Orderflow => &["orderflow"],
            Hub::Classic | Hub::StateGex => &["gex_full", "gex_zero", "gex_one"],
            Hub::StateGreeksZero => &["delta_zero", "gamma_zero", "vanna_zero", "charm_zero"],
            Hub::StateGreeksOne => &["delta_one", "gamma_one", "vanna_one", "charm_one"],
        }
    }

    /// The record type the hub's groups carry.
    pub const fn record_kind(self) -> RecordKind {
        match self {
            Hub::Orderflow => RecordKind::Orderflow,
            Hub::Classic | Hub::StateGex => RecordKind::Gex,
            Hub::StateGreeksZero | Hub::StateGreeksOne => RecordKind::Greek,
        }
    }

    /// The hub whose records live in `folder/category.jsonl`, if any.
    ///
    /// ```
    /// use tickwire_model::Hub;
    /// assert_eq!(Hub::for_file("state", "gamma_one"), Some(Hub::StateGreeksOne));
    /// assert_eq!(Hub::for_file("classic", "gex_full"), Some(Hub::Classic));
    /// assert_eq!(Hub::for_file("classic", "delta_one"), None);
    /// ```
    pub fn for_file(folder: &str, category: &str) -> Option<Hub> {
        Hub::ALL
            .into_iter()
            .find(|h| h.group_kind() == folder && h.categories().contains(&category))
    }
}

impl fmt::Display for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The three record types of the GEX pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// `orderflow.proto`'s `Orderflow`, type URL `proto.orderflow`.
    Orderflow,
    /// `gex.proto`'s `Gex`, type URL `proto.gex`.
    Gex,
    /// `option_profile.proto`'s `OptionProfile`, type URL `proto.greek`.
    Greek,
}

impl RecordKind {
    /// The `type_url` of the `google.protobuf.Any` that carries this record.
    pub const fn type_url(self) -> &'static str {
        match self {
            RecordKind::Orderflow => "proto.orderflow",
            RecordKind::Gex => "proto.gex",
            RecordKind::Greek => "proto.greek",
        }
    }

    /// The kind whose [`type_url`](RecordKind::type_url) is `url`.
    pub fn from_type_url(url: &str) -> Option<RecordKind> {
        [RecordKind::Orderflow, RecordKind::Gex, RecordKind::Greek]
            .into_iter()
            .find(|k| k.type_url() == url)
    }
}

/// A group name of a hub, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupName {
    /// The hub whose group this is.
    pub hub: Hub,
    /// The ticker; may contain `_` (`ES_SPX`).
    pub ticker: String,
    /// One of the hub's [`categories`](Hub::categories).
    pub category: &'static str,
}

impl GroupName {
    /// Parses `{prefix}_{TICKER}_{kind}_{category}` as a group of `hub`.
    ///
    /// Returns `None` when the prefix, kind or category do not belong to the hub,
    /// or the ticker is empty or holds characters other than ASCII letters,
    /// digits, `_`, `.` and `-`.
    pub fn parse(prefix: &str, hub: Hub, group: &str) -> Option<GroupName> {
        let rest = group.strip_prefix(prefix)?.strip_prefix('_')?;
        hub.categories().iter().find_map(|&category| {
            let ticker = rest
                .strip_suffix(category)?
                .strip_suffix('_')?
                .strip_suffix(hub.group_kind())?
                .strip_suffix('_')?;
            let valid = !ticker.is_empty()
                && ticker
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            valid.then(|| GroupName {
                hub,
                ticker: ticker.to_owned(),
                category,
            })
        })
    }

    /// The full group name under `prefix`.
    pub fn to_group(&self, prefix: &str) -> String {
        format!(
            "{prefix}_{}_{}_{}",
            self.ticker,
            self.hub.group_kind(),
            self.category
        )
    }
}

/// One JSON record of one GEX group, as read from a JSONL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GexRecord {
    /// The hub whose groups carry it; its [`RecordKind`] says how to encode `json`.
    pub hub: Hub,
    /// The ticker, e.g. `SPX` or `ES_SPX`.
    pub ticker: Arc<str>,
    /// The category, one of the hub's [`categories`](Hub::categories).
    pub category: &'static str,
    /// The record, one JSON object, exactly as the source holds it.
    pub json: Bytes,
}

impl GexRecord {
    /// The name of the group this record is published to under `prefix`.
    pub fn group(&self, prefix: &str) -> String {
        format!(
            "{prefix}_{}_{}_{}",
            self.ticker,
            self.hub.group_kind(),
            self.category
        )
    }
}

/// What a broker adapter produces and the gateway fans out.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Update {
    /// A record for one GEX group (seed 000).
    Gex(GexRecord),
    /// A quote of one instrument: its last trade with the bid/ask and session
    /// figures around it.
    Tick(PriceTick),
    /// A last traded price of one instrument without a quote (an LTP-only
    /// update): consumers merge it into the quote they hold rather than
    /// replace it.
    Trade(Trade),
    /// An order-book snapshot of one instrument.
    Book(OrderBook),
    /// A trading signal computed for one instrument.
    Signal(Signal),
    /// A payload for one pubsub group, already in its final form (the publish API's raw mode).
    Raw(RawGroupPayload),
    /// The gateway forgot these instruments (nothing updated them for a while
    /// and nobody follows them): whoever keeps state per instrument (a
    /// last-value cache, bars) drops theirs. Made by the gateway, in order with
    /// the data, never by an adapter; an update of one of them afterwards makes
    /// it known again.
    Forget(Arc<[Instrument]>),
    /// The current bars of one instrument as the node of a cluster that
    /// ingests it aggregated them, for a node that starts following it
    /// (which has seen only the bucket's later trades): whoever aggregates
    /// bars takes these in place of its own. Made by the cluster, never by
    /// an adapter.
    Bars(Arc<BarSeed>),
}

/// The current bars of one instrument, each with the times of its earliest
/// and latest trades ([`Update::Bars`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeed {
    /// The instrument.
    pub instrument: Instrument,
    /// One bar per resolution kept.
    pub bars: Vec<SeedBar>,
}

/// One bar of a [`BarSeed`].
#[derive(Debug, Clone, PartialEq)]
pub struct SeedBar {
    /// The resolution's name (`1`, `5`, `60`, `1D`, ...).
    pub resolution: Arc<str>,
    /// The bucket's start, ms since the epoch.
    pub time: i64,
    /// The price of the bucket's earliest trade.
    pub open: f64,
    /// The highest traded price.
    pub high: f64,
    /// The lowest traded price.
    pub low: f64,
    /// The price of the bucket's latest trade.
    pub close: f64,
    /// The sum of the trades' quantities.
    pub volume: f64,
    /// The exchange time of the earliest trade, ms since the epoch.
    pub first_ts: i64,
    /// The exchange time of the latest trade, ms since the epoch.
    pub last_ts: i64,
}

/// A payload published to one pubsub group as it is, without the record pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawGroupPayload {
    /// The full group name, prefix included.
    pub group: Arc<str>,
    /// The payload bytes.
    pub data: Bytes,
    /// How the payload is to be presented: `text`, `json` or `binary`.
    pub data_type: RawDataType,
}

/// How a [`RawGroupPayload`] is presented to pubsub clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawDataType {
    /// UTF-8 text.
    Text,
    /// One JSON value, as text.
    Json,
    /// Arbitrary bytes (base64 in JSON protocols).
    Binary,
}

impl Update {
    /// The instrument the update is about, if it is about one.
    pub fn instrument(&self) -> Option<&Instrument> {
        match self {
            Update::Tick(t) => Some(&t.instrument),
            Update::Trade(t) => Some(&t.instrument),
            Update::Book(b) => Some(&b.instrument),
            Update::Signal(s) => Some(&s.instrument),
            Update::Bars(b) => Some(&b.instrument),
            Update::Gex(_) | Update::Raw(_) | Update::Forget(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hub_round_trips_its_name() {
        for hub in Hub::ALL {
            assert_eq!(Hub::from_name(hub.name()), Some(hub));
        }
        assert_eq!(Hub::from_name("state"), None);
    }

    #[test]
    fn group_names_of_every_hub_parse() {
        for hub in Hub::ALL {
            for &category in hub.categories() {
                let name = GroupName {
                    hub,
                    ticker: "ES_SPX".into(),
                    category,
                };
                let group = name.to_group("blue");
                assert_eq!(GroupName::parse("blue", hub, &group), Some(name));
                for other in Hub::ALL.into_iter().filter(|&h| h != hub) {
                    assert_eq!(GroupName::parse("blue", other, &group), None, "{group}");
                }
            }
        }
    }

    #[test]
    fn bad_groups_are_rejected() {
        let hub = Hub::Classic;
        for group in [
            "blue_SPX_classic_gex_zero_",
            "red_SPX_classic_gex_zero",
            "blue__classic_gex_zero",
            "blue_classic_gex_zero",
            "blue_SP X_classic_gex_zero",
            "blue_SPX_state_gex_zero",
            "blueSPX_classic_gex_zero",
            "",
        ] {
            assert_eq!(GroupName::parse("blue", hub, group), None, "{group:?}");
        }
    }

    #[test]
    fn files_map_to_hubs() {
        assert_eq!(
            Hub::for_file("orderflow", "orderflow"),
            Some(Hub::Orderflow)
        );
        assert_eq!(Hub::for_file("state", "gex_one"), Some(Hub::StateGex));
        assert_eq!(
            Hub::for_file("state", "charm_zero"),
            Some(Hub::StateGreeksZero)
        );
        assert_eq!(Hub::for_file("orderflow", "gex_one"), None);
    }

    #[test]
    fn type_urls_round_trip() {
        for kind in [RecordKind::Orderflow, RecordKind::Gex, RecordKind::Greek] {
            assert_eq!(RecordKind::from_type_url(kind.type_url()), Some(kind));
        }
    }
}
