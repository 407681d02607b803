//! The ZeroMQ bus's two-frame messages (seed 003): an arbitrary topic and
//! JSON payload never panic the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire_adapter_zmq::BusDecoder;

fuzz_target!(|data: &[u8]| {
    // Up to the first zero byte is the topic, the rest the payload.
    let (topic, payload) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let mut decoder = BusDecoder::new("fuzz");
    let _ = decoder.decode(topic, payload, 1_700_000_000_000);
});
