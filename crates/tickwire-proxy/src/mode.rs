//! Subscription modes, depth levels, fan-out topics and the higher-mode rule.

use std::fmt;
use std::str::FromStr;

use tickwire_model::{Instrument, Update};

/// A subscription mode (seed 003, "Subscription Modes"): what a `market_data` message carries.
///
/// Modes are ordered: a higher mode carries everything a lower one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// `1`, `LTP`: the last traded price and its time (throttled, conflated).
    Ltp,
    /// `2`, `Quote`: bid/ask, OHLC, volume and quantities.
    Quote,
    /// `3`, `Depth`: the order book, 5, 20 or 30 levels a side.
    Depth,
}

impl Mode {
    /// Every mode, lowest first.
    pub const ALL: [Mode; 3] = [Mode::Ltp, Mode::Quote, Mode::Depth];

    /// The number on the wire: 1, 2 or 3.
    pub const fn number(self) -> u8 {
        match self {
            Mode::Ltp => 1,
            Mode::Quote => 2,
            Mode::Depth => 3,
        }
    }

    /// The mode numbered `n`.
    pub const fn from_number(n: i64) -> Option<Mode> {
        match n {
            1 => Some(Mode::Ltp),
            2 => Some(Mode::Quote),
            3 => Some(Mode::Depth),
            _ => None,
        }
    }

    /// The canonical label echoed in subscribe replies: `LTP`, `Quote` or `Depth`.
    pub const fn label(self) -> &'static str {
        match self {
            Mode::Ltp => "LTP",
            Mode::Quote => "Quote",
            Mode::Depth => "Depth",
        }
    }

    /// The label of bus topics and adapter keys: `LTP`, `QUOTE` or `DEPTH`.
    pub const fn upper(self) -> &'static str {
        match self {
            Mode::Ltp => "LTP",
            Mode::Quote => "QUOTE",
            Mode::Depth => "DEPTH",
        }
    }

    /// The mode labelled `label`, in any case, surrounding whitespace ignored.
    pub fn from_label(label: &str) -> Option<Mode> {
        let label = label.trim();
        Mode::ALL
            .into_iter()
            .find(|m| m.upper().eq_ignore_ascii_case(label))
    }

    /// Whether an update of this mode also serves a subscriber of `subscriber`'s mode:
    /// higher modes include all lower-mode data (Depth > Quote > LTP).
    pub fn serves(self, subscriber: Mode) -> bool {
        self >= subscriber
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Depth levels per side of a Depth subscription: 5 (the default), 20 or 30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Depth {
    /// 5 levels (the default).
    #[default]
    Five,
    /// 20 levels.
    Twenty,
    /// 30 levels.
    Thirty,
}

impl Depth {
    /// Every depth, smallest first.
    pub const ALL: [Depth; 3] = [Depth::Five, Depth::Twenty, Depth::Thirty];

    /// The number of levels per side.
    pub const fn levels(self) -> usize {
        match self {
            Depth::Five => 5,
            Depth::Twenty => 20,
            Depth::Thirty => 30,
        }
    }

    /// The depth of `n` levels, if it is one of 5, 20 and 30.
    pub const fn from_levels(n: i64) -> Option<Depth> {
        match n {
            5 => Some(Depth::Five),
            20 => Some(Depth::Twenty),
            30 => Some(Depth::Thirty),
            _ => None,
        }
    }
}

/// A fan-out topic of one instrument: a mode and, for Depth, its levels.
///
/// An update is encoded once per topic; every subscriber of the topic gets the same
/// bytes. The depth of LTP and Quote topics is always [`Depth::Five`] (it does not
/// matter to them), so that `depth: 20` on an LTP subscription joins the one LTP topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic {
    mode: Mode,
    depth: Depth,
}

impl Topic {
    /// The LTP topic.
    pub const LTP: Topic = Topic::new(Mode::Ltp, Depth::Five);
    /// The Quote topic.
    pub const QUOTE: Topic = Topic::new(Mode::Quote, Depth::Five);
    /// The 5-level Depth topic.
    pub const DEPTH_5: Topic = Topic::new(Mode::Depth, Depth::Five);
    /// The 20-level Depth topic.
    pub const DEPTH_20: Topic = Topic::new(Mode::Depth, Depth::Twenty);
    /// The 30-level Depth topic.
    pub const DEPTH_30: Topic = Topic::new(Mode::Depth, Depth::Thirty);
    /// Every topic of an instrument.
    pub const ALL: [Topic; 5] = [
        Topic::LTP,
        Topic::QUOTE,
        Topic::DEPTH_5,
        Topic::DEPTH_20,
        Topic::DEPTH_30,
    ];

    /// The topic of a subscription in `mode` with `depth` levels (ignored unless Depth).
    pub const fn new(mode: Mode, depth: Depth) -> Topic {
        let depth = match mode {
            Mode::Depth => depth,
            Mode::Ltp | Mode::Quote => Depth::Five,
        };
        Topic { mode, depth }
    }

    /// The topic's mode.
    pub const fn mode(self) -> Mode {
        self.mode
    }

    /// The topic's depth ([`Depth::Five`] unless the mode is Depth).
    pub const fn depth(self) -> Depth {
        self.depth
    }
}

/// What an update changed in an instrument's [`MarketState`](crate::MarketState).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateKind {
    /// A last traded price without a quote: an LTP-mode update.
    Trade,
    /// A quote: a Quote-mode update (LTP, bid/ask, OHLC, volume).
    Tick,
    /// An order book: a Depth-mode update.
    Book,
}

impl UpdateKind {
    /// The kind of `update`, or `None` for updates the proxy does not carry (GEX
    /// records, signals, raw group payloads).
    pub fn of(update: &Update) -> Option<UpdateKind> {
        match update {
            Update::Trade(_) => Some(UpdateKind::Trade),
            Update::Tick(_) => Some(UpdateKind::Tick),
            Update::Book(_) => Some(UpdateKind::Book),
            _ => None,
        }
    }

    /// The mode of the data the update carries.
    pub const fn mode(self) -> Mode {
        match self {
            UpdateKind::Trade => Mode::Ltp,
            UpdateKind::Tick => Mode::Quote,
            UpdateKind::Book => Mode::Depth,
        }
    }
}

/// The topics of an instrument that an update of `kind` feeds: the routing rule.
///
/// An update reaches the subscribers of its own mode and of the lower ones (seed
/// 003: "a tick of a higher mode is also delivered to lower-mode subscribers", each
/// with `mode` set to theirs), never those of a higher mode, as the reference proxy
/// routes a bus topic's mode. So a trade (an LTP-only update) feeds the LTP topic
/// alone: Quote and Depth subscribers get nothing from it — their next quote or book
/// carries the new price, which the cache has merged meanwhile. A quote feeds the
/// LTP and Quote topics; a book the three Depth topics. A bus message of mode DEPTH
/// that carries a quote as well arrives as a quote followed by a book, and so
/// reaches all five topics, each exactly once.
///
/// ```
/// use tickwire_proxy::{topics_fed, Mode, Topic, UpdateKind};
///
/// assert_eq!(topics_fed(UpdateKind::Trade), [Topic::LTP]);
/// assert_eq!(topics_fed(UpdateKind::Tick), [Topic::LTP, Topic::QUOTE]);
/// assert!(topics_fed(UpdateKind::Book).iter().all(|t| t.mode() == Mode::Depth));
/// ```
pub const fn topics_fed(kind: UpdateKind) -> &'static [Topic] {
    match kind {
        UpdateKind::Trade => &[Topic::LTP],
        UpdateKind::Tick => &[Topic::LTP, Topic::QUOTE],
        UpdateKind::Book => &[Topic::DEPTH_5, Topic::DEPTH_20, Topic::DEPTH_30],
    }
}

/// A client subscription key: an instrument and a topic.
///
/// It is the unit of reference counting ([`UpstreamRefs`](crate::UpstreamRefs)) and
/// of fan-out. [`adapter_key`](SubKey::adapter_key) names it to a broker adapter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubKey {
    /// The instrument.
    pub instrument: Instrument,
    /// The topic.
    pub topic: Topic,
}

impl SubKey {
    /// A key from its parts.
    pub fn new(instrument: Instrument, mode: Mode, depth: Depth) -> SubKey {
        SubKey {
            instrument,
            topic: Topic::new(mode, depth),
        }
    }

    /// The subscription key handed to a broker adapter: `EXCHANGE:SYMBOL:LTP`,
    /// `EXCHANGE:SYMBOL:QUOTE` or `EXCHANGE:SYMBOL:DEPTH:N` (N = 5, 20 or 30).
    pub fn adapter_key(&self) -> String {
        let Instrument { symbol, exchange } = &self.instrument;
        let mode = self.topic.mode.upper();
        match self.topic.mode {
            Mode::Depth => format!("{exchange}:{symbol}:{mode}:{}", self.topic.depth.levels()),
            Mode::Ltp | Mode::Quote => format!("{exchange}:{symbol}:{mode}"),
        }
    }

    /// Parses an [`adapter_key`](SubKey::adapter_key). The exchange is everything
    /// before the first `:`, the mode (and depth) the last segments, the symbol what
    /// lies between (it may contain `:`).
    pub fn parse_adapter_key(key: &str) -> Option<SubKey> {
        let (exchange, rest) = key.split_once(':')?;
        let (rest, last) = rest.rsplit_once(':')?;
        let (symbol, mode, depth) = match Mode::from_label(last) {
            Some(mode @ (Mode::Ltp | Mode::Quote)) if last == mode.upper() => {
                (rest, mode, Depth::Five)
            }
            _ => {
                let depth = Depth::from_levels(i64::from_str(last).ok()?)?;
                let (symbol, mode) = rest.rsplit_once(':')?;
                (mode == "DEPTH").then_some((symbol, Mode::Depth, depth))?
            }
        };
        if exchange.is_empty() || symbol.is_empty() {
            return None;
        }
        Some(SubKey::new(Instrument::new(symbol, exchange), mode, depth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_in_any_case() {
        assert_eq!(Mode::from_label("ltp"), Some(Mode::Ltp));
        assert_eq!(Mode::from_label(" QuOtE "), Some(Mode::Quote));
        assert_eq!(Mode::from_label("DEPTH"), Some(Mode::Depth));
        assert_eq!(Mode::from_label("full"), None);
        assert_eq!(Mode::from_label(""), None);
        assert_eq!(Mode::from_number(2), Some(Mode::Quote));
        assert_eq!(Mode::from_number(4), None);
        assert_eq!(Mode::Depth.number(), 3);
        assert_eq!(Mode::Quote.to_string(), "Quote");
    }

    #[test]
    fn higher_modes_serve_lower_ones() {
        assert!(Mode::Depth.serves(Mode::Ltp));
        assert!(Mode::Quote.serves(Mode::Ltp));
        assert!(Mode::Quote.serves(Mode::Quote));
        assert!(!Mode::Ltp.serves(Mode::Quote));
        assert!(!Mode::Quote.serves(Mode::Depth));
        // The routing table follows the rule: every topic fed is served by the kind's mode.
        for kind in [UpdateKind::Trade, UpdateKind::Tick, UpdateKind::Book] {
            for topic in topics_fed(kind) {
                assert!(kind.mode().serves(topic.mode()));
            }
        }
        // A trade never reaches Quote or Depth subscribers.
        assert_eq!(topics_fed(UpdateKind::Trade), [Topic::LTP]);
        assert_eq!(topics_fed(UpdateKind::Tick), [Topic::LTP, Topic::QUOTE]);
        assert_eq!(
            topics_fed(UpdateKind::Book),
            [Topic::DEPTH_5, Topic::DEPTH_20, Topic::DEPTH_30]
        );
    }

    #[test]
    fn topics_ignore_depth_below_depth_mode() {
        assert_eq!(Topic::new(Mode::Ltp, Depth::Thirty), Topic::LTP);
        assert_eq!(Topic::new(Mode::Quote, Depth::Twenty), Topic::QUOTE);
        assert_eq!(Topic::new(Mode::Depth, Depth::Twenty).depth().levels(), 20);
        assert_eq!(Depth::from_levels(30), Some(Depth::Thirty));
        assert_eq!(Depth::from_levels(10), None);
    }

    #[test]
    fn adapter_keys_round_trip() {
        for (key, text) in [
            (
                SubKey::new(Instrument::new("RELIANCE", "NSE"), Mode::Ltp, Depth::Twenty),
                "NSE:RELIANCE:LTP",
            ),
            (
                SubKey::new(
                    Instrument::new("NIFTY_50", "NSE_INDEX"),
                    Mode::Quote,
                    Depth::Five,
                ),
                "NSE_INDEX:NIFTY_50:QUOTE",
            ),
            (
                SubKey::new(Instrument::new("A:B", "X"), Mode::Depth, Depth::Thirty),
                "X:A:B:DEPTH:30",
            ),
        ] {
            assert_eq!(key.adapter_key(), text);
            assert_eq!(SubKey::parse_adapter_key(text), Some(key));
        }
        for bad in [
            "",
            "NSE",
            "NSE:RELIANCE",
            ":X:LTP",
            "NSE::LTP",
            "NSE:X:ltp",
            "NSE:X:DEPTH",
            "NSE:X:DEPTH:7",
            "NSE:X:QUOTE:5",
            "NSE:X:FULL",
        ] {
            assert_eq!(SubKey::parse_adapter_key(bad), None, "{bad}");
        }
    }
}
