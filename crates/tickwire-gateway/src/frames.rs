//! Reading client frames (RFC 6455 §5) with a read buffer that fits the
//! traffic: small while the connection is idle, grown for a large frame and
//! given back once it is consumed.
//!
//! A fan-out gateway's clients mostly listen: a subscriber sends a handful
//! of small messages and then pings. A fixed 8 KiB read buffer per
//! connection would be most of an idle connection's memory, so the buffer
//! starts empty, reserves [`MIN_READ`] bytes to wait for a header and
//! exactly what a frame needs beyond that, and is freed when it is empty and
//! larger than [`KEEP`].
//!
//! What it checks, as RFC 6455 requires of a server: reserved bits are zero
//! (§5.2, no extension is negotiated), opcodes are known, control frames are
//! not fragmented and carry at most 125 bytes (§5.5), a text frame that is a
//! whole message is UTF-8 (§8.1), a close frame's payload is empty or a
//! valid code with a UTF-8 reason (§5.5.1, §7.4). Frames of `max` bytes or
//! more are refused before they are read. Client frames are unmasked
//! (§5.3). Fragment reassembly is the caller's (see the session).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes reserved to wait for the next frame.
pub(crate) const MIN_READ: usize = 256;
/// An empty buffer larger than this is freed.
pub(crate) const KEEP: usize = 4096;

/// RFC 6455 §5.2 opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_u8(op: u8) -> Option<OpCode> {
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

    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// One frame, unmasked.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) fin: bool,
    pub(crate) opcode: OpCode,
    pub(crate) payload: BytesMut,
}

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The stream ended (cleanly between frames or not).
    #[error("unexpected EOF")]
    Eof,
    /// Reading failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame of `max` bytes or more.
    #[error("frame too large")]
    TooLarge,
    /// A text frame or close reason that is not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A close frame with a code an endpoint may not send.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// Anything else RFC 6455 forbids.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// Whether a peer may send close code `code` (RFC 6455 §7.4.1, §7.4.2).
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

/// Reads frames from a stream (see the [module](self) docs).
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    /// Reads until `self.buf` holds `n` bytes.
    async fn fill<R: AsyncRead + Unpin>(&mut self, io: &mut R, n: usize) -> Result<(), FrameError> {
        while self.buf.len() < n {
            self.buf.reserve((n - self.buf.len()).max(MIN_READ));
            if io.read_buf(&mut self.buf).await? == 0 {
                return Err(FrameError::Eof);
            }
        }
        Ok(())
    }

    /// Reads the next frame; frames of `max` bytes or more are refused.
    pub(crate) async fn read<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
    ) -> Result<Frame, FrameError> {
        if self.buf.is_empty() && self.buf.capacity() > KEEP {
            self.buf = BytesMut::new();
        }
        self.fill(io, 2).await?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        if b0 & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(FrameError::Protocol("unknown opcode"))?;
        let masked = b1 & 0x80 != 0;
        let extra = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header = 2 + extra + if masked { 4 } else { 0 };
        self.fill(io, header).await?;
        self.buf.advance(2);
        let len = match extra {
            0 => u64::from(b1 & 0x7F),
            2 => u64::from(self.buf.get_u16()),
            _ => self.buf.get_u64(),
        };
        let mask = masked.then(|| self.buf.get_u32().to_be_bytes());
        if opcode.is_control() && (!fin || len > 125) {
            return Err(FrameError::Protocol("bad control frame"));
        }
        let len = match usize::try_from(len) {
            Ok(len) if len < max => len,
            _ => return Err(FrameError::TooLarge),
        };
        self.fill(io, len).await?;
        let mut payload = self.buf.split_to(len);
        if let Some(mask) = mask {
            unmask(&mut payload, mask);
        }
        match opcode {
            OpCode::Text if fin && std::str::from_utf8(&payload).is_err() => {
                return Err(FrameError::InvalidUtf8);
            }
            OpCode::Close if payload.len() == 1 => {
                return Err(FrameError::Protocol("close frame of one byte"));
            }
            OpCode::Close if payload.len() > 1 => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if std::str::from_utf8(&payload[2..]).is_err() {
                    return Err(FrameError::InvalidUtf8);
                }
                if !close_code_allowed(code) {
                    return Err(FrameError::InvalidCloseCode(code));
                }
            }
            _ => {}
        }
        Ok(Frame {
            fin,
            opcode,
            payload,
        })
    }
}

/// Applies the client's masking key (RFC 6455 §5.3).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![b0];
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
        out
    }

    async fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<Frame, FrameError>> {
        let mut io = &bytes[..];
        let mut reader = FrameReader::default();
        let mut out = Vec::new();
        loop {
            let r = reader.read(&mut io, max).await;
            let end = r.is_err();
            out.push(r);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn frames_of_every_length_form_are_unmasked() {
        let big = vec![b'x'; 70_000];
        let mut bytes = client_frame(0x81, b"hello");
        bytes.extend(client_frame(0x82, &[7; 300]));
        bytes.extend(client_frame(0x02, &big));
        bytes.extend(client_frame(0x80, b"!"));
        bytes.extend(client_frame(0x89, b"ping"));
        let frames = read_all(bytes, 1 << 20).await;
        let ok: Vec<_> = frames.iter().filter_map(|f| f.as_ref().ok()).collect();
        assert_eq!(ok.len(), 5);
        assert_eq!(
            (ok[0].opcode, &ok[0].payload[..]),
            (OpCode::Text, &b"hello"[..])
        );
        assert_eq!(&ok[1].payload[..], &[7; 300][..]);
        assert!(!ok[2].fin);
        assert_eq!(&ok[2].payload[..], &big[..]);
        assert_eq!((ok[3].opcode, ok[3].fin), (OpCode::Continuation, true));
        assert_eq!(
            (ok[4].opcode, &ok[4].payload[..]),
            (OpCode::Ping, &b"ping"[..])
        );
        assert!(matches!(frames[5], Err(FrameError::Eof)));
    }

    #[tokio::test]
    async fn bad_frames_are_refused() {
        type Expect = fn(&FrameError) -> bool;
        let cases: [(Vec<u8>, Expect); 7] = [
            (client_frame(0xC1, b"x"), |e| {
                matches!(e, FrameError::Protocol(_))
            }),
            (client_frame(0x83, b"x"), |e| {
                matches!(e, FrameError::Protocol(_))
            }),
            (client_frame(0x09, b"x"), |e| {
                matches!(e, FrameError::Protocol(_))
            }),
            (client_frame(0x89, &[0; 126]), |e| {
                matches!(e, FrameError::Protocol(_))
            }),
            (client_frame(0x81, &[0xff]), |e| {
                matches!(e, FrameError::InvalidUtf8)
            }),
            (client_frame(0x88, &[0x03, 0xEC]), |e| {
                matches!(e, FrameError::InvalidCloseCode(1004))
            }),
            (client_frame(0x82, &[0; 100]), |e| {
                matches!(e, FrameError::TooLarge)
            }),
        ];
        for (bytes, expected) in cases {
            let frames = read_all(bytes, 100).await;
            let err = frames[0].as_ref().unwrap_err();
            assert!(expected(err), "{err:?}");
        }
    }

    #[tokio::test]
    async fn the_buffer_shrinks_back_after_a_large_frame() {
        let mut bytes = client_frame(0x82, &[1; 20_000]);
        bytes.extend(client_frame(0x82, b"small"));
        let mut io = &bytes[..];
        let mut reader = FrameReader::default();
        let big = reader.read(&mut io, 1 << 20).await.unwrap();
        assert_eq!(big.payload.len(), 20_000);
        drop(big);
        let small = reader.read(&mut io, 1 << 20).await.unwrap();
        assert_eq!(&small.payload[..], b"small");
        drop(small);
        // Waiting for the next frame, the reader holds a small buffer again.
        assert!(matches!(
            reader.read(&mut io, 1 << 20).await,
            Err(FrameError::Eof)
        ));
        assert!(reader.buf.capacity() <= KEEP);
    }
}
