//! Helpers shared by the integration tests: fixtures and the compaction of the documents'
//! pretty-printed examples.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use tickwire_model::market::{Instrument, Level, OrderBook, PriceTick, Signal, SignalDirection};

/// A document example with the whitespace outside strings removed: what a compact
/// encoder writes for the same values, key order kept.
pub fn compact(pretty: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::new(), false, false);
    for c in pretty.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

/// A tick of `symbol` with the given figures; the rest is plausible filler.
pub fn tick(symbol: &str, price: f64, change: f64, volume: Option<f64>, ts: i64) -> PriceTick {
    PriceTick {
        instrument: Instrument::crypto(symbol),
        price,
        last_quantity: 0.05,
        bid: price - 0.01,
        bid_quantity: 1.0,
        ask: price + 0.01,
        ask_quantity: 1.0,
        open: price * 0.98,
        high: price * 1.01,
        low: price * 0.97,
        prev_close: price * 0.98,
        change_24h_pct: change,
        volume_24h: volume,
        session_volume: 12_345.0,
        source: Arc::from("coinbase"),
        timestamp_ms: ts,
    }
}

/// A level without an order count.
pub fn level(price: f64, quantity: f64) -> Level {
    Level {
        price,
        quantity,
        orders: 0,
    }
}

/// A book of `symbol`.
pub fn book(symbol: &str, bids: Vec<Level>, asks: Vec<Level>, ts: i64) -> OrderBook {
    OrderBook {
        instrument: Instrument::crypto(symbol),
        bids,
        asks,
        source: Arc::from("synthetic"),
        timestamp_ms: ts,
    }
}

/// A signal of `symbol`.
pub fn signal(
    symbol: &str,
    indicator: &str,
    direction: SignalDirection,
    value: f64,
    confidence: f64,
    ts: i64,
) -> Signal {
    Signal {
        instrument: Instrument::crypto(symbol),
        indicator: Arc::from(indicator),
        direction,
        value,
        confidence,
        timestamp_ms: ts,
    }
}
