//! Server frames (RFC 6455 §5.2): unmasked, written whole into a buffer.
//!
//! A fan-out server builds an update's frame once and writes the same bytes
//! to every subscriber, so these take a [`BufMut`] and never a socket.

use bytes::{BufMut, Bytes, BytesMut};

/// The opcodes of RFC 6455 §5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// A continuation of a fragmented message.
    Continuation,
    /// A text frame (UTF-8).
    Text,
    /// A binary frame.
    Binary,
    /// A close frame.
    Close,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
}

impl OpCode {
    /// The opcode of the 4-bit value `op`, or `None` for a reserved one.
    pub fn from_bits(op: u8) -> Option<OpCode> {
        Some(match op {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit value.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Whether it is a control frame's (§5.5).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Close codes (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (a server shutting down).
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A kind of data the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A payload inconsistent with its type (text that is not UTF-8).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message that violates the endpoint's policy.
    pub const POLICY: u16 = 1008;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;

    /// Whether a peer may send `code` in a close frame: the codes RFC 6455
    /// and the IANA registry define for that (1000–1003, 1007–1014), and the
    /// ranges for libraries and applications (3000–4999). 1004–1006 and 1015
    /// must never be sent (§7.4.1, §7.4.2).
    pub fn is_allowed(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Most bytes a close reason may have: a control frame carries 125 bytes,
/// two of which are the code (§5.5, §5.5.1).
pub const MAX_CLOSE_REASON: usize = 123;

/// Appends a frame header: FIN, `opcode`, no mask, and the payload length
/// `len` in its shortest form (7, 16 or 64 bits, §5.2).
pub fn put_header(buf: &mut impl BufMut, opcode: OpCode, len: usize) {
    put_first_bytes(buf, 0x80 | opcode.bits(), 0, len);
}

/// The first byte `b0`, then the mask bit `mask_bit` with the length `len` in
/// its shortest form.
fn put_first_bytes(buf: &mut impl BufMut, b0: u8, mask_bit: u8, len: usize) {
    buf.put_u8(b0);
    if len < 126 {
        // Fits the 7-bit length.
        buf.put_u8(mask_bit | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        buf.put_u8(mask_bit | 126);
        buf.put_u16(len);
    } else {
        buf.put_u8(mask_bit | 127);
        buf.put_u64(len as u64);
    }
}

/// Appends a whole client frame (§5.2, §5.3): `fin`, `opcode`, the mask bit,
/// the masking key `mask` and the payload masked with it. A server never
/// sends one; a client does, and so do the tests and fuzz targets of a
/// server.
pub fn put_masked_frame(
    buf: &mut impl BufMut,
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    payload: &[u8],
) {
    put_first_bytes(
        buf,
        (u8::from(fin) << 7) | opcode.bits(),
        0x80,
        payload.len(),
    );
    buf.put_slice(&mask);
    for (b, m) in payload.iter().zip(mask.iter().cycle()) {
        buf.put_u8(b ^ m);
    }
}

/// The length of a header for a payload of `len` bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// The payload of a whole unmasked frame that [`frame`] or [`put_frame`]
/// built (one frame, no mask): for a consumer that takes the same message
/// in another envelope. `None` when `frame` is not one such frame.
///
/// ```
/// use tickwire_websocket::frame::{OpCode, frame, payload_of};
///
/// let built = frame(OpCode::Text, &[b'x'; 300]);
/// assert_eq!(payload_of(&built), Some(&[b'x'; 300][..]));
/// ```
pub fn payload_of(frame: &[u8]) -> Option<&[u8]> {
    let code = *frame.get(1)?;
    if code & 0x80 != 0 {
        return None;
    }
    let (header, len) = match code & 0x7F {
        126 => (
            4,
            usize::from(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?])),
        ),
        127 => {
            let bytes: [u8; 8] = frame.get(2..10)?.try_into().ok()?;
            (10, usize::try_from(u64::from_be_bytes(bytes)).ok()?)
        }
        n => (2, usize::from(n)),
    };
    (frame.len() == header + len).then(|| &frame[header..])
}

/// Appends a whole unmasked frame: header and payload.
pub fn put_frame(buf: &mut BytesMut, opcode: OpCode, payload: &[u8]) {
    buf.reserve(header_len(payload.len()) + payload.len());
    put_header(buf, opcode, payload.len());
    buf.extend_from_slice(payload);
}

/// A whole unmasked frame as shared bytes, built once for every subscriber.
pub fn frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    put_frame(&mut buf, opcode, payload);
    buf.freeze()
}

/// Appends a close frame with `code` and as much of `reason` as a control
/// frame holds ([`MAX_CLOSE_REASON`] bytes), cut at a character boundary.
pub fn put_close(buf: &mut BytesMut, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    buf.reserve(4 + reason.len());
    put_header(buf, OpCode::Close, 2 + reason.len());
    buf.put_u16(code);
    buf.extend_from_slice(reason);
}

/// Appends a control frame (a pong, or the echo of a close) carrying at most
/// the 125 bytes a control frame may (§5.5).
pub fn put_control(buf: &mut BytesMut, opcode: OpCode, payload: &[u8]) {
    debug_assert!(opcode.is_control());
    put_frame(buf, opcode, &payload[..payload.len().min(125)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_use_the_shortest_length() {
        let mut buf = BytesMut::new();
        put_frame(&mut buf, OpCode::Text, b"hi");
        assert_eq!(&buf[..], b"\x81\x02hi");
        for (len, header) in [
            (125, &b"\x82\x7d"[..]),
            (126, b"\x82\x7e\x00\x7e"),
            (65_535, b"\x82\x7e\xff\xff"),
            (65_536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        ] {
            buf.clear();
            put_header(&mut buf, OpCode::Binary, len);
            assert_eq!(&buf[..], header, "{len}");
            assert_eq!(header_len(len), header.len());
        }
    }

    #[test]
    fn close_frames_carry_code_and_a_bounded_reason() {
        let mut buf = BytesMut::new();
        put_close(&mut buf, 1001, "bye");
        assert_eq!(&buf[..], b"\x88\x05\x03\xe9bye");
        buf.clear();
        put_close(&mut buf, 1000, &"é".repeat(100));
        // 2 code bytes + 122 bytes of whole characters.
        assert_eq!(buf[1], 124);
        assert!(std::str::from_utf8(&buf[4..]).is_ok());
    }

    #[test]
    fn client_frames_are_masked() {
        let mut buf = Vec::new();
        put_masked_frame(&mut buf, false, OpCode::Text, [1, 2, 3, 4], b"hi");
        assert_eq!(buf, [0x01, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        buf.clear();
        put_masked_frame(&mut buf, true, OpCode::Binary, [0; 4], &[7; 300]);
        assert_eq!(&buf[..8], &[0x82, 0x80 | 126, 0x01, 0x2c, 0, 0, 0, 0]);
        assert_eq!(buf.len(), 8 + 300);
    }

    #[test]
    fn control_frames_are_cut_to_125_bytes() {
        let mut buf = BytesMut::new();
        put_control(&mut buf, OpCode::Pong, &[7; 200]);
        assert_eq!(buf.len(), 2 + 125);
        assert_eq!(&buf[..2], b"\x8a\x7d");
    }

    #[test]
    fn opcodes_round_trip() {
        for bits in 0..16u8 {
            if let Some(op) = OpCode::from_bits(bits) {
                assert_eq!(op.bits(), bits);
            }
        }
        assert_eq!(OpCode::from_bits(0x3), None);
        assert_eq!(OpCode::from_bits(0xB), None);
    }

    #[test]
    fn allowed_close_codes() {
        for code in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(close_code::is_allowed(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000] {
            assert!(!close_code::is_allowed(code), "{code}");
        }
    }
}
