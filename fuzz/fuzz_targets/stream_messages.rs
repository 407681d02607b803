//! `/stream` (seed 002) client messages: never a panic; a subscribe never
//! names more symbols than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire_json::stream::{Limits, StreamCommand, parse_with};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message_bytes: 4096,
        max_symbols: 10,
    };
    if let Ok(StreamCommand::Subscribe { symbols }) = parse_with(data, limits) {
        assert!(symbols.len() <= limits.max_symbols);
    }
});
