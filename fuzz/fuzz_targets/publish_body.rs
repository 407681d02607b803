//! The publish API's body: never a panic, and the one-pass parse and the
//! explaining one (which names the item at fault) always agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire_json::publish::{Context, explain, parse};
use tickwire_model::Instrument;

fuzz_target!(|data: &[u8]| {
    let known = |symbol: &str| (symbol == "AAPL").then(|| Instrument::new("AAPL", "NASDAQ"));
    let cx = Context {
        prefix: "blue",
        known: &known,
        now: 1_700_000_000_000,
    };
    let fast = parse(data, &cx);
    if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        assert_eq!(fast, explain(data, &cx));
    }
});
