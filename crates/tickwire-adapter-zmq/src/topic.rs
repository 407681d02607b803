//! Bus topics: `EXCHANGE_SYMBOL_MODE` and `BROKER_EXCHANGE_SYMBOL_MODE` (seed 003,
//! "Topic Format").

use tickwire_model::Instrument;

/// The mode a bus message carries, the last segment of its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BusMode {
    /// `LTP`: the last traded price.
    Ltp,
    /// `QUOTE`: bid/ask, OHLC, volume.
    Quote,
    /// `DEPTH`: the order book (usually with the quote figures).
    Depth,
}

impl BusMode {
    /// The mode of a topic's last segment, in any case.
    pub fn from_segment(s: &str) -> Option<BusMode> {
        [BusMode::Ltp, BusMode::Quote, BusMode::Depth]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }

    /// `LTP`, `QUOTE` or `DEPTH`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BusMode::Ltp => "LTP",
            BusMode::Quote => "QUOTE",
            BusMode::Depth => "DEPTH",
        }
    }
}

/// A parsed market-data topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BusTopic {
    /// The broker prefix of `BROKER_EXCHANGE_SYMBOL_MODE` topics (`zerodha`), if any.
    pub broker: Option<String>,
    /// The instrument (its symbol may contain `_`).
    pub instrument: Instrument,
    /// The mode.
    pub mode: BusMode,
}

/// Exchanges written as one topic segment.
pub const EXCHANGES: [&str; 11] = [
    "NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX", "NCDEX", "NSEIX", "CRYPTO", "GLOBAL",
];

/// Exchanges written as two topic segments (`NSE_INDEX`): the first segment and `INDEX`.
pub const INDEX_EXCHANGES: [&str; 4] = ["NSE", "BSE", "MCX", "GLOBAL"];

/// Topics of the bus that are not market data: account events and cache control.
fn is_control(topic: &str) -> bool {
    topic.starts_with("CACHE_INVALIDATE")
        || ["_orders", "_positions", "_margins"]
            .iter()
            .any(|s| topic.ends_with(s))
}

/// Parses a bus topic.
///
/// The mode is the last `_`-separated segment (`LTP`, `QUOTE`, `DEPTH`, any case). The
/// exchange comes first, or second after a broker prefix: a known exchange
/// ([`EXCHANGES`]), or a two-segment index exchange (`NSE_INDEX`, `BSE_INDEX`,
/// `MCX_INDEX`, `GLOBAL_INDEX`). When neither the first nor the second segment is a
/// known exchange, the first one is taken as the exchange, as the reference proxy does.
/// The symbol is everything between exchange and mode, underscores included.
///
/// The error says why the topic is not a market-data topic; `Err("control topic")`
/// marks the account-event and cache topics that share the bus and are skipped quietly.
///
/// ```
/// use tickwire_adapter_zmq::{parse_topic, BusMode};
///
/// let t = parse_topic("dhan_NSE_INDEX_NIFTY_50_DEPTH").unwrap();
/// assert_eq!(t.broker.as_deref(), Some("dhan"));
/// assert_eq!((&*t.instrument.exchange, &*t.instrument.symbol), ("NSE_INDEX", "NIFTY_50"));
/// assert_eq!(t.mode, BusMode::Depth);
/// ```
pub fn parse_topic(topic: &str) -> Result<BusTopic, &'static str> {
    if is_control(topic) {
        return Err("control topic");
    }
    let (rest, mode) = topic.rsplit_once('_').ok_or("no mode segment")?;
    let mode = BusMode::from_segment(mode).ok_or("unknown mode (expected LTP, QUOTE or DEPTH)")?;
    let (broker, exchange, symbol) = match split_exchange(rest) {
        Some((exchange, symbol)) => (None, exchange, symbol),
        None => {
            let (first, after) = rest.split_once('_').ok_or("no symbol")?;
            match split_exchange(after) {
                Some((exchange, symbol)) if !first.is_empty() => (Some(first), exchange, symbol),
                // No known exchange: the first segment is the exchange.
                _ => (None, first, after),
            }
        }
    };
    if exchange.is_empty() {
        return Err("empty exchange");
    }
    if symbol.is_empty() {
        return Err("no symbol");
    }
    Ok(BusTopic {
        broker: broker.map(str::to_owned),
        instrument: Instrument::new(symbol, exchange),
        mode,
    })
}

/// Splits `EXCHANGE_SYMBOL` when it starts with a known exchange: `(exchange, symbol)`.
fn split_exchange(s: &str) -> Option<(&str, &str)> {
    let (first, after) = s.split_once('_')?;
    if INDEX_EXCHANGES.contains(&first) {
        if let Some(symbol) = after.strip_prefix("INDEX_") {
            return Some((&s[..first.len() + "_INDEX".len()], symbol));
        }
    }
    EXCHANGES.contains(&first).then_some((first, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = (Option<String>, String, String, BusMode);

    fn parsed(topic: &str) -> Parsed {
        let t = parse_topic(topic).unwrap_or_else(|e| panic!("{topic}: {e}"));
        (
            t.broker,
            t.instrument.exchange.to_string(),
            t.instrument.symbol.to_string(),
            t.mode,
        )
    }

    fn p(broker: Option<&str>, exchange: &str, symbol: &str, mode: BusMode) -> Parsed {
        (
            broker.map(str::to_owned),
            exchange.into(),
            symbol.into(),
            mode,
        )
    }

    #[test]
    fn plain_topics() {
        use BusMode::*;
        assert_eq!(
            parsed("NSE_RELIANCE_QUOTE"),
            p(None, "NSE", "RELIANCE", Quote)
        );
        assert_eq!(parsed("NSE_RELIANCE_LTP"), p(None, "NSE", "RELIANCE", Ltp));
        assert_eq!(
            parsed("NFO_NIFTY24DEC19500CE_DEPTH"),
            p(None, "NFO", "NIFTY24DEC19500CE", Depth)
        );
        assert_eq!(
            parsed("NSE_INDEX_NIFTY_LTP"),
            p(None, "NSE_INDEX", "NIFTY", Ltp)
        );
        assert_eq!(
            parsed("BSE_INDEX_SENSEX_QUOTE"),
            p(None, "BSE_INDEX", "SENSEX", Quote)
        );
        assert_eq!(
            parsed("NSE_INDEX_NIFTY_50_DEPTH"),
            p(None, "NSE_INDEX", "NIFTY_50", Depth)
        );
        assert_eq!(
            parsed("CRYPTO_SOL_INR_LTP"),
            p(None, "CRYPTO", "SOL_INR", Ltp)
        );
        assert_eq!(parsed("NSE_M_M_quote"), p(None, "NSE", "M_M", Quote));
        // A symbol named like an exchange stays a symbol.
        assert_eq!(parsed("NSE_BSE_LTP"), p(None, "NSE", "BSE", Ltp));
        // NSE_INDEX needs a symbol after INDEX: here INDEX is the symbol.
        assert_eq!(parsed("NSE_INDEX_LTP"), p(None, "NSE", "INDEX", Ltp));
    }

    #[test]
    fn broker_prefixed_topics() {
        use BusMode::*;
        assert_eq!(
            parsed("zerodha_NSE_RELIANCE_QUOTE"),
            p(Some("zerodha"), "NSE", "RELIANCE", Quote)
        );
        assert_eq!(
            parsed("angel_NFO_NIFTY24DEC19500CE_LTP"),
            p(Some("angel"), "NFO", "NIFTY24DEC19500CE", Ltp)
        );
        assert_eq!(
            parsed("dhan_NSE_INDEX_NIFTY_50_DEPTH"),
            p(Some("dhan"), "NSE_INDEX", "NIFTY_50", Depth)
        );
        assert_eq!(
            parsed("fyers_CRYPTO_BTC_USD_QUOTE"),
            p(Some("fyers"), "CRYPTO", "BTC_USD", Quote)
        );
    }

    #[test]
    fn unknown_exchanges_are_taken_as_they_come() {
        use BusMode::*;
        assert_eq!(parsed("NASDAQ_AAPL_LTP"), p(None, "NASDAQ", "AAPL", Ltp));
        assert_eq!(parsed("LSE_VOD_L_QUOTE"), p(None, "LSE", "VOD_L", Quote));
    }

    #[test]
    fn rejected_topics() {
        for (topic, why) in [
            ("", "no mode segment"),
            ("LTP", "no mode segment"),
            ("NSE_LTP", "no symbol"),
            ("_RELIANCE_LTP", "empty exchange"),
            (
                "NSE_RELIANCE_FULL",
                "unknown mode (expected LTP, QUOTE or DEPTH)",
            ),
            (
                "NSE_RELIANCE_",
                "unknown mode (expected LTP, QUOTE or DEPTH)",
            ),
            ("NSE__LTP", "no symbol"),
            ("zerodha_orders", "control topic"),
            ("alice_positions", "control topic"),
            ("x_margins", "control topic"),
            ("CACHE_INVALIDATE_AUTH_alice", "control topic"),
        ] {
            assert_eq!(parse_topic(topic), Err(why), "{topic:?}");
        }
        // Odd bytes never panic.
        for topic in [
            "é_ü_LTP",
            "NSE_\u{0}_LTP",
            "_",
            "__",
            "___LTP",
            "NSE_INDEX__LTP",
        ] {
            let _ = parse_topic(topic);
        }
    }
}
