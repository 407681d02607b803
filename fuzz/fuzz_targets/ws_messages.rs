//! `/ws` (seed 001) client messages: never a panic; a message over the
//! limit is refused whatever it holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire_json::ws::parse_limited;

fuzz_target!(|data: &[u8]| {
    let _ = parse_limited(data, 4096);
    if data.len() > 16 {
        assert!(parse_limited(data, 16).is_err());
    }
});
