//! The broker-adapter proxy's requests (seed 003), before and after
//! authentication: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire_proxy::decode_request;

fuzz_target!(|data: &[u8]| {
    let _ = decode_request(data, false);
    let _ = decode_request(data, true);
});
