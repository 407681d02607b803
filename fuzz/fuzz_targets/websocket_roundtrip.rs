//! Round trip of the WebSocket reader: messages framed as a client frames
//! them (masked, split into fragments, a ping between two of them) read
//! back as the same messages, however the socket cuts the bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tickwire_websocket::frame::put_masked_frame;
use tickwire_websocket::{Event, MessageKind, OpCode, Reader};

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let (head, payload) = data.split_at(7);
    let mask = [head[0], head[1], head[2], head[3]];
    let fragment = usize::from(head[4]).max(1);
    let read = usize::from(head[5]).max(1);
    let text = head[6] & 1 == 1 && std::str::from_utf8(payload).is_ok();
    let (kind, opcode) = if text {
        (MessageKind::Text, OpCode::Text)
    } else {
        (MessageKind::Binary, OpCode::Binary)
    };
    let mut wire = Vec::new();
    let pieces: Vec<&[u8]> = if payload.is_empty() {
        vec![payload]
    } else {
        payload.chunks(fragment).collect()
    };
    for (i, piece) in pieces.iter().enumerate() {
        let op = if i == 0 { opcode } else { OpCode::Continuation };
        put_masked_frame(&mut wire, i + 1 == pieces.len(), op, mask, piece);
        if i == 0 && pieces.len() > 1 {
            put_masked_frame(&mut wire, true, OpCode::Ping, mask, b"ping");
        }
    }
    let mut reader = Reader::new(1 << 20);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in wire.chunks(read) {
        buf.extend_from_slice(chunk);
        while let Some(event) = reader.read(&mut buf).expect("valid frames") {
            events.push(event);
        }
    }
    let message = Event::Message {
        kind,
        payload: Bytes::copy_from_slice(payload),
    };
    let expected = if pieces.len() > 1 {
        vec![Event::Ping(Bytes::from_static(b"ping")), message]
    } else {
        vec![message]
    };
    assert_eq!(events, expected);
    assert!(buf.is_empty());
});
