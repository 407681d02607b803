//! The WebSocket reader on arbitrary client bytes, fed in pieces of
//! arbitrary sizes: it never panics, never asks for more room than the
//! limit allows, and consumes what it reports.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tickwire_websocket::Reader;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the size of the socket reads.
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let piece = usize::from(cut).max(1);
    let mut reader = Reader::new(MAX);
    let mut buf = BytesMut::new();
    for chunk in bytes.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match reader.read(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(
            reader.wanted(&buf) <= MAX + 14,
            "asked for more than a frame may hold"
        );
    }
});
