//! Properties of the reader: whatever the fragmentation of the messages and
//! however the bytes are cut by the socket, the same events come out.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tickwire_websocket::{Event, MessageKind, OpCode, Reader, frame};

/// A masked client frame.
fn masked(fin: bool, opcode: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let opcode = OpCode::from_bits(opcode).expect("a known opcode");
    let mut out = Vec::new();
    frame::put_masked_frame(&mut out, fin, opcode, mask, payload);
    out
}

#[derive(Debug, Clone)]
struct Message {
    text: bool,
    payload: Vec<u8>,
    /// Fragment lengths (the rest goes in the last fragment).
    cuts: Vec<usize>,
    /// A ping inserted after the first fragment.
    ping: Option<Vec<u8>>,
    mask: [u8; 4],
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(0usize..100, 0..4),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..125)),
        any::<[u8; 4]>(),
        "\\PC{0,80}",
    )
        .prop_map(|(text, bytes, cuts, ping, mask, s)| Message {
            text,
            payload: if text { s.into_bytes() } else { bytes },
            cuts,
            ping,
            mask,
        })
}

/// The wire bytes of `messages` and the events a server must read from them.
fn encode(messages: &[Message]) -> (Vec<u8>, Vec<Event>) {
    let mut wire = Vec::new();
    let mut events = Vec::new();
    for m in messages {
        let mut pieces = Vec::new();
        let mut rest = &m.payload[..];
        for &cut in &m.cuts {
            let cut = cut.min(rest.len());
            pieces.push(&rest[..cut]);
            rest = &rest[cut..];
        }
        pieces.push(rest);
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = match (i, m.text) {
                (0, true) => 1,
                (0, false) => 2,
                _ => 0,
            };
            wire.extend(masked(i + 1 == pieces.len(), opcode, m.mask, piece));
            if i == 0 {
                if let Some(ping) = &m.ping {
                    wire.extend(masked(true, 9, m.mask, ping));
                }
            }
        }
        let message = Event::Message {
            kind: if m.text {
                MessageKind::Text
            } else {
                MessageKind::Binary
            },
            payload: Bytes::from(m.payload.clone()),
        };
        // The ping follows the first frame: inside the message when it is
        // fragmented, after it when it is one frame.
        let ping = m.ping.clone().map(|p| Event::Ping(Bytes::from(p)));
        if pieces.len() == 1 {
            events.push(message);
            events.extend(ping);
        } else {
            events.extend(ping);
            events.push(message);
        }
    }
    (wire, events)
}

proptest! {
    #[test]
    fn any_fragmentation_and_any_reads_give_the_same_messages(
        messages in prop::collection::vec(message(), 1..6),
        reads in prop::collection::vec(1usize..64, 1..200),
    ) {
        let (wire, expected) = encode(&messages);
        let mut reader = Reader::new(1 << 16);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        let mut sizes = reads.iter().cycle();
        while at < wire.len() {
            let n = (*sizes.next().unwrap()).min(wire.len() - at);
            buf.extend_from_slice(&wire[at..at + n]);
            at += n;
            while let Some(event) = reader.read(&mut buf).unwrap() {
                got.push(event);
            }
        }
        prop_assert_eq!(got, expected);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut reader = Reader::new(256);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = reader.read(&mut buf) {}
    }
}
