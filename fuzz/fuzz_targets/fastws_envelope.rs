//! The FastWS envelope (seed 004) of the bars operations: never a panic, and
//! every refusal names a close code and reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire_fastws::{BARS, FrameKind};

fuzz_target!(|data: &[u8]| {
    for kind in [FrameKind::Text, FrameKind::Binary] {
        if let Err(e) = BARS.decode(kind, data) {
            let close = e.close();
            assert!(close.reason.len() <= 123);
        }
    }
});
