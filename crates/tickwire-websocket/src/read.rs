//! Reading what a client sends (RFC 6455 §5, §8.1): frames, checked header
//! first, reassembled into messages.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::Error;
use crate::frame::{OpCode, close_code};
use crate::utf8::Utf8Validator;

/// The kind of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Text: valid UTF-8 (checked).
    Text,
    /// Binary.
    Binary,
}

/// What the client sent, as a [`Reader`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole data message: one frame, or the fragments of one reassembled
    /// (§5.4). A text message is valid UTF-8.
    Message {
        /// Text or binary.
        kind: MessageKind,
        /// The payload, unmasked.
        payload: Bytes,
    },
    /// A ping (at most 125 bytes): answer with a pong of the same payload
    /// (§5.5.2).
    Ping(Bytes),
    /// A pong (at most 125 bytes).
    Pong(Bytes),
    /// A close frame: empty, or a valid code and a UTF-8 reason (§5.5.1).
    /// Echo it and close; the reader expects nothing more.
    Close(Bytes),
}

impl Event {
    /// The code of a [`Close`](Event::Close) event, when it carries one.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Event::Close(payload) if payload.len() >= 2 => {
                Some(u16::from_be_bytes([payload[0], payload[1]]))
            }
            _ => None,
        }
    }
}

/// A frame whose header has been read: what its payload is.
#[derive(Debug, Clone, Copy)]
struct Head {
    fin: bool,
    opcode: OpCode,
    len: usize,
    mask: [u8; 4],
}

/// A fragmented data message being reassembled.
#[derive(Debug)]
struct Fragmented {
    kind: MessageKind,
    buf: BytesMut,
}

/// Reads the frames a client sends, from bytes the caller reads off the
/// socket (see the [crate](crate) docs).
///
/// Each call of [`read`](Reader::read) consumes what it can from the front
/// of the buffer: the header of the next frame once it is whole (checked at
/// once, before its payload is waited for), then the payload as it arrives
/// (unmasked in place and, for text, validated as UTF-8 piece by piece).
/// Between calls the caller reads more bytes into the same buffer;
/// [`wanted`](Reader::wanted) says how many it should make room for.
#[derive(Debug)]
pub struct Reader {
    max_message: usize,
    /// The frame whose payload is being read.
    head: Option<Head>,
    /// Payload bytes of `head`, at the front of the buffer, already unmasked
    /// (and validated, for text).
    done: usize,
    /// Boxed, as `failed`: both are rare, and a reader is kept per
    /// connection.
    fragmented: Option<Box<Fragmented>>,
    /// The text message being read (one frame or several).
    text: Utf8Validator,
    frames: u64,
    failed: Option<Box<Error>>,
}

impl Reader {
    /// A reader of messages of at most `max_message` bytes (the payloads of
    /// all the fragments of one message together); larger ones are
    /// [`Error::TooBig`].
    pub fn new(max_message: usize) -> Reader {
        Reader {
            max_message,
            head: None,
            done: 0,
            fragmented: None,
            text: Utf8Validator::new(),
            frames: 0,
            failed: None,
        }
    }

    /// How many whole frames have been read, control frames and fragments
    /// included (for keep-alive accounting).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// How many bytes `buf` should hold for the next [`read`](Reader::read)
    /// to make progress: the rest of the current header, or the whole payload
    /// of the current frame (already checked against the limit). Reserve
    /// that much, and no more, before reading from the socket.
    pub fn wanted(&self, buf: &[u8]) -> usize {
        if self.failed.is_some() {
            return 0;
        }
        match self.head {
            Some(head) => head.len,
            None if buf.len() < 2 => 2,
            None => 2 + extra_len(buf[1]) + 4,
        }
    }

    /// Consumes bytes from the front of `buf` and returns the next event,
    /// or `None` when `buf` holds no whole one yet (read more bytes into it
    /// and call again). Partial payloads are consumed too: call it after
    /// every read, even when no event is expected.
    ///
    /// Once it returns an error, it returns that error on every later call.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Error> {
        if let Some(e) = &self.failed {
            return Err((**e).clone());
        }
        let result = self.step(buf);
        if let Err(e) = &result {
            self.failed = Some(Box::new(e.clone()));
        }
        result
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Error> {
        loop {
            let head = match self.head {
                Some(head) => head,
                None => match self.header(buf)? {
                    Some(head) => {
                        self.head = Some(head);
                        self.done = 0;
                        head
                    }
                    None => return Ok(None),
                },
            };
            let available = buf.len().min(head.len);
            if available > self.done {
                let fresh = &mut buf[self.done..available];
                unmask(fresh, head.mask, self.done);
                if self.is_text(head.opcode) {
                    self.text.feed(fresh)?;
                }
                self.done = available;
            }
            if available < head.len {
                return Ok(None);
            }
            let payload = buf.split_to(head.len);
            self.head = None;
            self.done = 0;
            self.frames += 1;
            if let Some(event) = self.complete(head, payload)? {
                return Ok(Some(event));
            }
        }
    }

    /// Whether the payload of a frame of `opcode` is text.
    fn is_text(&self, opcode: OpCode) -> bool {
        match opcode {
            OpCode::Text => true,
            OpCode::Continuation => self
                .fragmented
                .as_ref()
                .is_some_and(|f| f.kind == MessageKind::Text),
            _ => false,
        }
    }

    /// Reads and checks the next frame header, consuming it; `None` while it
    /// is incomplete. Everything that can be checked is checked as soon as
    /// its bytes are there.
    fn header(&self, buf: &mut BytesMut) -> Result<Option<Head>, Error> {
        let protocol = |reason| Err(Error::Protocol { reason });
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        // §5.2: no extension is negotiated, so every reserved bit is zero.
        if b0 & 0x70 != 0 {
            return protocol("reserved bits set");
        }
        let Some(opcode) = OpCode::from_bits(b0 & 0x0F) else {
            return protocol("reserved opcode");
        };
        let fin = b0 & 0x80 != 0;
        // §5.1: a server must close the connection on an unmasked frame.
        if b1 & 0x80 == 0 {
            return protocol("client frames must be masked");
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            // §5.5: control frames are whole and at most 125 bytes.
            if !fin {
                return protocol("fragmented control frame");
            }
            if len7 > 125 {
                return protocol("control frame over 125 bytes");
            }
        } else {
            // §5.4: fragments of one message only, continuations only in one.
            match (opcode, self.fragmented.is_some()) {
                (OpCode::Continuation, false) => {
                    return protocol("continuation frame outside a fragmented message");
                }
                (OpCode::Text | OpCode::Binary, true) => {
                    return protocol("new message inside a fragmented message");
                }
                _ => {}
            }
        }
        let extra = extra_len(b1);
        let header = 2 + extra + 4;
        if buf.len() < header {
            return Ok(None);
        }
        let len = match extra {
            0 => u64::from(len7),
            2 => {
                let len = u16::from_be_bytes([buf[2], buf[3]]);
                if len < 126 {
                    return protocol("length not in its shortest form");
                }
                u64::from(len)
            }
            _ => {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(bytes);
                // §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return protocol("length with its most significant bit set");
                }
                if len <= 0xFFFF {
                    return protocol("length not in its shortest form");
                }
                len
            }
        };
        if !opcode.is_control() {
            let so_far = self.fragmented.as_ref().map_or(0, |f| f.buf.len()) as u64;
            let size = so_far.saturating_add(len);
            if size > self.max_message as u64 {
                return Err(Error::TooBig {
                    size,
                    max: self.max_message,
                });
            }
        }
        let mut mask = [0; 4];
        mask.copy_from_slice(&buf[2 + extra..header]);
        buf.advance(header);
        Ok(Some(Head {
            fin,
            opcode,
            // At most `max_message` (data) or 125 (control): fits.
            len: len as usize,
            mask,
        }))
    }

    /// Handles a whole frame; returns the event it completes, if any.
    fn complete(&mut self, head: Head, payload: BytesMut) -> Result<Option<Event>, Error> {
        let message = |kind, payload: BytesMut| Event::Message {
            kind,
            payload: payload.freeze(),
        };
        match head.opcode {
            OpCode::Ping => Ok(Some(Event::Ping(payload.freeze()))),
            OpCode::Pong => Ok(Some(Event::Pong(payload.freeze()))),
            OpCode::Close => {
                check_close(&payload)?;
                Ok(Some(Event::Close(payload.freeze())))
            }
            OpCode::Text | OpCode::Binary => {
                let kind = if head.opcode == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                if !head.fin {
                    self.fragmented = Some(Box::new(Fragmented { kind, buf: payload }));
                    return Ok(None);
                }
                if kind == MessageKind::Text {
                    self.text.finish()?;
                }
                Ok(Some(message(kind, payload)))
            }
            OpCode::Continuation => {
                let Some(fragmented) = self.fragmented.as_mut() else {
                    // Refused with the header; never here.
                    return Err(Error::Protocol {
                        reason: "continuation frame outside a fragmented message",
                    });
                };
                fragmented.buf.extend_from_slice(&payload);
                if !head.fin {
                    return Ok(None);
                }
                let Fragmented { kind, buf } = *self.fragmented.take().unwrap_or_else(|| {
                    unreachable!("checked above");
                });
                if kind == MessageKind::Text {
                    self.text.finish()?;
                }
                Ok(Some(message(kind, buf)))
            }
        }
    }
}

/// The bytes of the extended length that the second header byte announces.
fn extra_len(b1: u8) -> usize {
    match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    }
}

/// Checks a close frame's payload (§5.5.1, §7.4).
fn check_close(payload: &[u8]) -> Result<(), Error> {
    match payload.len() {
        0 => Ok(()),
        1 => Err(Error::Protocol {
            reason: "close frame of one byte",
        }),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code::is_allowed(code) {
                return Err(Error::Protocol {
                    reason: "invalid close code",
                });
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(Error::InvalidUtf8);
            }
            Ok(())
        }
    }
}

/// Applies the client's masking key to payload bytes that start `offset`
/// bytes into the payload (§5.3).
fn unmask(bytes: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut mask = mask;
    mask.rotate_left(offset % 4);
    let word = u32::from_ne_bytes(mask);
    let mut chunks = bytes.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    /// A masked client frame with the first byte `b0` (which may set
    /// reserved bits or name a reserved opcode).
    fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::frame::put_masked_frame(&mut out, true, OpCode::Text, MASK, payload);
        out[0] = b0;
        out
    }

    /// Every event of `bytes` read at once, then the error or `None` that ended it.
    fn read_all(bytes: &[u8], max: usize) -> (Vec<Event>, Result<(), Error>) {
        let mut buf = BytesMut::from(bytes);
        let mut reader = Reader::new(max);
        let mut events = Vec::new();
        loop {
            match reader.read(&mut buf) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => return (events, Ok(())),
                Err(e) => return (events, Err(e)),
            }
        }
    }

    /// The same, fed one byte at a time.
    fn read_bytewise(bytes: &[u8], max: usize) -> (Vec<Event>, Result<(), Error>) {
        let mut buf = BytesMut::new();
        let mut reader = Reader::new(max);
        let mut events = Vec::new();
        for b in bytes {
            buf.extend_from_slice(&[*b]);
            loop {
                match reader.read(&mut buf) {
                    Ok(Some(e)) => events.push(e),
                    Ok(None) => break,
                    Err(e) => return (events, Err(e)),
                }
            }
        }
        (events, Ok(()))
    }

    fn text(s: &str) -> Event {
        Event::Message {
            kind: MessageKind::Text,
            payload: Bytes::copy_from_slice(s.as_bytes()),
        }
    }

    fn protocol(reason: &'static str) -> Result<(), Error> {
        Err(Error::Protocol { reason })
    }

    #[test]
    fn frames_of_every_length_form_are_unmasked() {
        let big = vec![b'x'; 70_000];
        let mut bytes = masked(0x81, b"hello");
        bytes.extend(masked(0x82, &[7; 300]));
        bytes.extend(masked(0x02, &big));
        bytes.extend(masked(0x89, b"ping"));
        bytes.extend(masked(0x80, b"!"));
        bytes.extend(masked(0x8A, b""));
        bytes.extend(masked(0x88, b"\x03\xe8bye"));
        for (events, end) in [read_all(&bytes, 1 << 20), read_bytewise(&bytes, 1 << 20)] {
            assert_eq!(end, Ok(()));
            let mut whole = big.clone();
            whole.push(b'!');
            assert_eq!(
                events,
                [
                    text("hello"),
                    Event::Message {
                        kind: MessageKind::Binary,
                        payload: Bytes::from(vec![7; 300])
                    },
                    // The ping between two fragments comes first.
                    Event::Ping(Bytes::from_static(b"ping")),
                    Event::Message {
                        kind: MessageKind::Binary,
                        payload: Bytes::from(whole)
                    },
                    Event::Pong(Bytes::new()),
                    Event::Close(Bytes::from_static(b"\x03\xe8bye")),
                ]
            );
            assert_eq!(events[5].close_code(), Some(1000));
        }
    }

    #[test]
    fn bad_headers_are_refused_from_their_first_bytes() {
        for (bytes, expected) in [
            (masked(0xC1, b"x"), protocol("reserved bits set")),
            (masked(0x83, b"x"), protocol("reserved opcode")),
            (masked(0x8B, b"x"), protocol("reserved opcode")),
            (masked(0x09, b"x"), protocol("fragmented control frame")),
            (
                masked(0x89, &[0; 126]),
                protocol("control frame over 125 bytes"),
            ),
            (
                masked(0x80, b"x"),
                protocol("continuation frame outside a fragmented message"),
            ),
            // An unmasked text frame.
            (
                b"\x81\x02hi".to_vec(),
                protocol("client frames must be masked"),
            ),
        ] {
            // Two bytes are enough to refuse each.
            let (_, end) = read_all(&bytes[..2], 100);
            assert_eq!(end, expected, "{bytes:x?}");
        }
        let (events, end) = read_all(&[masked(0x01, b"a"), masked(0x81, b"b")].concat(), 100);
        assert!(events.is_empty());
        assert_eq!(end, protocol("new message inside a fragmented message"));
    }

    #[test]
    fn lengths_must_be_minimal_and_below_2_to_63() {
        // 5 in the 16-bit form, 200 in the 64-bit form.
        let mut short16 = vec![0x82, 0x80 | 126, 0, 5];
        short16.extend_from_slice(&MASK);
        let mut short64 = vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 200];
        short64.extend_from_slice(&MASK);
        let mut huge = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        huge.extend_from_slice(&MASK);
        assert_eq!(
            read_all(&short16, 1 << 20).1,
            protocol("length not in its shortest form")
        );
        assert_eq!(
            read_all(&short64, 1 << 20).1,
            protocol("length not in its shortest form")
        );
        // 2^63 is a protocol error (1002), not merely too big (1009).
        let end = read_all(&huge, 1 << 20).1;
        assert_eq!(end, protocol("length with its most significant bit set"));
        assert_eq!(end.unwrap_err().close_code(), close_code::PROTOCOL_ERROR);
    }

    #[test]
    fn the_limit_is_checked_before_the_payload_arrives() {
        // Only the header of a 2^62-byte frame.
        let mut header = vec![0x82, 0x80 | 127, 0x40, 0, 0, 0, 0, 0, 0, 0];
        header.extend_from_slice(&MASK);
        let (_, end) = read_all(&header, 1024);
        assert_eq!(
            end,
            Err(Error::TooBig {
                size: 1 << 62,
                max: 1024
            })
        );
        // Exactly the limit is fine; the fragments of one message count together.
        assert_eq!(read_all(&masked(0x82, &[0; 1024]), 1024).1, Ok(()));
        let parts = [masked(0x02, &[0; 700]), masked(0x80, &[0; 700])].concat();
        let (events, end) = read_all(&parts, 1024);
        assert!(events.is_empty());
        assert_eq!(
            end,
            Err(Error::TooBig {
                size: 1400,
                max: 1024
            })
        );
        assert_eq!(end.unwrap_err().close_code(), close_code::TOO_BIG);
    }

    #[test]
    fn the_buffer_is_asked_for_what_the_frame_needs() {
        let reader = Reader::new(1 << 20);
        assert_eq!(reader.wanted(&[]), 2);
        assert_eq!(reader.wanted(&[0x81, 0x85]), 6);
        assert_eq!(reader.wanted(&[0x82, 0xFE]), 8);
        assert_eq!(reader.wanted(&[0x82, 0xFF]), 14);
        let mut reader = Reader::new(1 << 20);
        let frame = masked(0x82, &[1; 5000]);
        let mut buf = BytesMut::from(&frame[..100]);
        assert_eq!(reader.read(&mut buf), Ok(None));
        // The header is consumed; the whole payload is asked for.
        assert_eq!(reader.wanted(&buf), 5000);
    }

    #[test]
    fn invalid_text_fails_at_the_first_bad_piece() {
        let part1 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
        let part2 = b"\xf4\x90\x80\x80";
        // Autobahn 6.4.1: in fragments, the second fragment fails.
        let (events, end) = read_all(&[masked(0x01, part1), masked(0x00, part2)].concat(), 100);
        assert!(events.is_empty());
        assert_eq!(end, Err(Error::InvalidUtf8));
        // Autobahn 6.4.3: one frame whose payload arrives in pieces fails
        // as soon as the invalid bytes are in, before the frame is whole.
        let payload = [&part1[..], part2, b"edited"].concat();
        let frame = masked(0x81, &payload);
        let mut reader = Reader::new(100);
        let header_and_part1 = 6 + part1.len();
        let mut buf = BytesMut::from(&frame[..header_and_part1]);
        assert_eq!(reader.read(&mut buf), Ok(None));
        buf.extend_from_slice(&frame[header_and_part1..header_and_part1 + 2]);
        assert_eq!(reader.read(&mut buf), Err(Error::InvalidUtf8));
        // A text message cut inside a character is invalid at its end.
        let (_, end) = read_all(
            &[masked(0x01, b"\xe2\x82"), masked(0x80, b"")].concat(),
            100,
        );
        assert_eq!(end, Err(Error::InvalidUtf8));
        // Binary is not checked.
        let (events, end) = read_all(&masked(0x82, part2), 100);
        assert_eq!((events.len(), end), (1, Ok(())));
    }

    #[test]
    fn close_frames_are_checked() {
        for (payload, expected) in [
            (&b"\x03"[..], protocol("close frame of one byte")),
            (b"\x03\xec", protocol("invalid close code")),
            (b"\x03\xed", protocol("invalid close code")),
            (b"\x0b\xb7", protocol("invalid close code")),
            (b"\x03\xe8\xff", Err(Error::InvalidUtf8)),
        ] {
            assert_eq!(
                read_all(&masked(0x88, payload), 100).1,
                expected,
                "{payload:x?}"
            );
        }
        let (events, end) = read_all(&masked(0x88, b"\x0f\xa0ok"), 100);
        assert_eq!((events[0].close_code(), end), (Some(4000), Ok(())));
    }

    #[test]
    fn a_failed_reader_stays_failed() {
        let mut reader = Reader::new(100);
        let mut buf = BytesMut::from(&b"\x81\x02hi"[..]);
        let first = reader.read(&mut buf);
        assert!(first.is_err());
        let mut good = BytesMut::from(&masked(0x81, b"ok")[..]);
        assert_eq!(reader.read(&mut good), first);
        assert_eq!(reader.wanted(&good), 0);
    }
}
