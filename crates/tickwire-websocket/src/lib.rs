//! A sans-IO WebSocket codec for servers (RFC 6455): every rule of the
//! protocol that a server applies to what a client sends, and the encoders of
//! what it sends back, in one place and with no I/O.
//!
//! - [`handshake`]: checks an upgrade request (method, `Upgrade`,
//!   `Connection`, `Sec-WebSocket-Version: 13`, a `Sec-WebSocket-Key` that is
//!   16 bytes in base64) and computes `Sec-WebSocket-Accept` (§4.2).
//! - [`Reader`]: turns the bytes a client sends into [`Event`]s (whole
//!   messages, pings, pongs, a close). It checks every frame header before it
//!   asks for the payload, so a size limit is enforced before anything is
//!   allocated for it (§5.2, §10.4); it requires client frames to be masked
//!   (§5.1), reserved bits to be zero, opcodes to be known, lengths to be
//!   minimally encoded, control frames to be whole and at most 125 bytes
//!   (§5.5); it reassembles fragmented messages (§5.4) and validates text as
//!   UTF-8 as the bytes arrive, failing at the first invalid byte even in the
//!   middle of a frame (§8.1); it validates close frames (§5.5.1, §7.4).
//!   Every [`Error`] names the close code to send.
//! - [`frame`]: writes unmasked server frames, close frames with a bounded
//!   reason, into a buffer.
//!
//! The caller moves the bytes: it reads from its socket into a
//! [`BytesMut`](bytes::BytesMut), hands it to [`Reader::read`], and reserves
//! [`Reader::wanted`] bytes before the next read, so that a quiet
//! connection's buffer stays small. What it does not do: client-side framing
//! (masking outgoing frames), extensions (permessage-deflate), subprotocol
//! choice (the endpoint's).
//!
//! ```
//! use bytes::BytesMut;
//! use tickwire_websocket::{Event, MessageKind, Reader, frame};
//!
//! // A masked text frame "hi" as a client sends it.
//! let mut buf = BytesMut::from(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2][..]);
//! let mut reader = Reader::new(1024);
//! let event = reader.read(&mut buf).unwrap();
//! assert_eq!(event, Some(Event::Message { kind: MessageKind::Text, payload: "hi".into() }));
//!
//! // The server's answer.
//! let mut out = BytesMut::new();
//! frame::put_frame(&mut out, frame::OpCode::Text, b"hi");
//! assert_eq!(&out[..], b"\x81\x02hi");
//! ```

mod error;
pub mod frame;
pub mod handshake;
mod read;
mod utf8;

pub use error::{Error, HandshakeError};
pub use frame::{OpCode, close_code};
pub use read::{Event, MessageKind, Reader};
pub use utf8::Utf8Validator;
