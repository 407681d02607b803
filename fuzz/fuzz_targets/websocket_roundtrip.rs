//! Round trip of the WebSocket reader: messages framed as a client frames
//! them (masked, split into fragments, a ping between two of them) read
//! back as the same messages, however the socket cuts the bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tickwire_websocket::{Event, MessageKind, Reader};

/// A masked client frame.
fn masked(fin: bool, opcode: u8, mask: [u8; 4], payload: &[u8], out: &mut Vec<u8>) {
    out.push((u8::from(fin) << 7) | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

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
        (MessageKind::Text, 1)
    } else {
        (MessageKind::Binary, 2)
    };
    let mut wire = Vec::new();
    let pieces: Vec<&[u8]> = if payload.is_empty() {
        vec![payload]
    } else {
        payload.chunks(fragment).collect()
    };
    for (i, piece) in pieces.iter().enumerate() {
        let op = if i == 0 { opcode } else { 0 };
        masked(i + 1 == pieces.len(), op, mask, piece, &mut wire);
        if i == 0 && pieces.len() > 1 {
            masked(true, 9, mask, b"ping", &mut wire);
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
