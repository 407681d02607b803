//! A sans-IO codec of the Azure Web PubSub client subprotocols.
//!
//! The four subprotocols `json.webpubsub.azure.v1`, `json.reliable.webpubsub.azure.v1`,
//! `protobuf.webpubsub.azure.v1` and `protobuf.reliable.webpubsub.azure.v1` carry the same
//! messages in two wire formats: one JSON object per text frame, or one protobuf message
//! (`proto/webpubsub_messages.proto`, package `azure.webpubsub`) per binary frame. This
//! crate
//!
//! - chooses the subprotocol from the `Sec-WebSocket-Protocol` request headers
//!   ([`negotiate`]),
//! - decodes client frames into [`Upstream`] messages ([`decode_upstream`]), rejecting bad
//!   input with an [`Error`] rather than panicking,
//! - encodes [`Downstream`] messages ([`encode_downstream`]), and
//! - encodes a broadcast once per wire format ([`encode_message`]), so that fan-out to many
//!   connections costs a reference-count increment per plain connection and one copy per
//!   reliable one (which adds its own `sequenceId`).
//!
//! It does no I/O: it takes and returns frame payloads and knows nothing of sockets,
//! WebSocket framing, tasks or timers. Sessions, ack de-duplication, sequence numbering,
//! recovery and access control belong to the server that uses it.
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use tickwire_pubsub::{
//!     decode_upstream, encode_downstream, negotiate, Downstream, FrameKind, Subprotocol, Upstream,
//! };
//!
//! // The handshake: the client offers the JSON reliable subprotocol, which must be echoed.
//! let negotiated = negotiate(["json.reliable.webpubsub.azure.v1"])?;
//! assert_eq!(negotiated.protocol, Subprotocol::JsonReliable);
//! assert_eq!(negotiated.echo, Some("json.reliable.webpubsub.azure.v1"));
//! let format = negotiated.protocol.format();
//!
//! // A text frame arrives.
//! let join = decode_upstream(
//!     format,
//!     FrameKind::Text,
//!     br#"{"type":"joinGroup","group":"blue_SPX_state_gex_zero","ackId":1}"#,
//! )?;
//! let Upstream::JoinGroup { group, ack_id: Some(ack_id) } = join else {
//!     unreachable!("a join with an ack id");
//! };
//! assert_eq!(group, "blue_SPX_state_gex_zero");
//!
//! // The server accepts the join and acknowledges it.
//! let mut frame = BytesMut::new();
//! encode_downstream(format, &Downstream::ack_ok(ack_id), &mut frame);
//! assert_eq!(&frame[..], br#"{"type":"ack","ackId":1,"success":true}"#);
//! # Ok::<(), tickwire_pubsub::Error>(())
//! ```

mod downstream;
mod encoded;
mod error;
mod message;
mod subprotocol;
mod upstream;
mod wire;

pub use downstream::encode_downstream;
pub use encoded::{EncodedMessage, encode_message};
pub use error::Error;
pub use message::{AckError, Downstream, MAX_JSON_DEPTH, MessageData, MessageFrom, Upstream};
pub use subprotocol::{FrameKind, Negotiated, Subprotocol, WireFormat, negotiate};
pub use upstream::decode_upstream;
