//! The fan-out fast path: a data message encoded once per wire format, then framed for
//! any number of connections.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::downstream::{SEQUENCE_ID_KEY, any_len, protobuf_from, put_any, put_json_message};
use crate::subprotocol::WireFormat;
use crate::wire::{
    LEN, VARINT, key, len_field_len, put_len_field, put_u64, put_varint, varint_len,
};
use crate::{MessageData, MessageFrom};

/// `DownstreamMessage.data_message` (field 2, length-delimited).
const DATA_MESSAGE_KEY: u8 = key(2, LEN);
/// `DataMessage.sequence_id` (field 4, varint).
const SEQUENCE_ID_FIELD_KEY: u8 = key(4, VARINT);

/// A data message encoded once, ready to be framed for many connections.
///
/// Cloning is a reference-count increment. Connections on the plain subprotocols send
/// [`unsequenced`](EncodedMessage::unsequenced) (zero-copy); connections on the reliable
/// ones [`write_to`](EncodedMessage::write_to) their own `sequenceId`, which copies the
/// body once but never re-encodes it. Either way the bytes equal what
/// [`encode_downstream`](crate::encode_downstream) writes for the same
/// [`Downstream::Message`](crate::Downstream::Message).
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedMessage {
    repr: Repr,
}

impl fmt::Debug for EncodedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload may be large: show its shape, not its bytes.
        f.debug_struct("EncodedMessage")
            .field("format", &self.format())
            .field("len", &self.encoded_len(None))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    /// The whole JSON object, ending in `}`.
    Json(Bytes),
    /// The whole `DownstreamMessage`, whose `DataMessage` body starts at `body_start`
    /// (after the field key and the length varint).
    Protobuf { whole: Bytes, body_start: usize },
}

/// Encodes a data message once in `format`.
///
/// ```
/// use bytes::BytesMut;
/// use tickwire_pubsub::{encode_message, MessageData, MessageFrom, WireFormat};
///
/// let msg = encode_message(
///     WireFormat::Json,
///     &MessageFrom::group("blue_SPX_state_gex_zero"),
///     &MessageData::Text("hi".into()),
/// );
/// let mut out = BytesMut::new();
/// msg.write_to(Some(7), &mut out);
/// assert_eq!(
///     &out[..],
///     br#"{"type":"message","from":"group","group":"blue_SPX_state_gex_zero","dataType":"text","data":"hi","sequenceId":7}"#
/// );
/// assert_eq!(msg.encoded_len(Some(7)), out.len());
/// ```
pub fn encode_message(
    format: WireFormat,
    from: &MessageFrom,
    data: &MessageData,
) -> EncodedMessage {
    let repr = match format {
        WireFormat::Json => {
            let mut out = BytesMut::new();
            put_json_message(from, data, None, &mut out);
            Repr::Json(out.freeze())
        }
        WireFormat::Protobuf => {
            let group = match from {
                MessageFrom::Server => None,
                MessageFrom::Group { group, .. } => Some(group.as_str()),
            };
            let sender = protobuf_from(from);
            let body_len = data_message_len(sender, group, data);
            let body_start = 1 + varint_len(body_len as u64);
            let mut out = BytesMut::with_capacity(body_start + body_len);
            out.put_u8(DATA_MESSAGE_KEY);
            put_varint(&mut out, body_len as u64);
            put_data_message(&mut out, sender, group, data);
            debug_assert_eq!(out.len(), body_start + body_len);
            Repr::Protobuf {
                whole: out.freeze(),
                body_start,
            }
        }
    };
    EncodedMessage { repr }
}

impl EncodedMessage {
    /// The wire format the message was encoded in.
    pub fn format(&self) -> WireFormat {
        match self.repr {
            Repr::Json(_) => WireFormat::Json,
            Repr::Protobuf { .. } => WireFormat::Protobuf,
        }
    }

    /// The exact number of bytes [`write_to`](EncodedMessage::write_to) appends.
    pub fn encoded_len(&self, sequence_id: Option<u64>) -> usize {
        match (&self.repr, sequence_id) {
            (Repr::Json(object), None) => object.len(),
            (Repr::Json(object), Some(n)) => object.len() + SEQUENCE_ID_KEY.len() + decimal_len(n),
            (Repr::Protobuf { whole, .. }, None) => whole.len(),
            (Repr::Protobuf { whole, body_start }, Some(n)) => {
                let body_len = whole.len() - body_start + 1 + varint_len(n);
                1 + varint_len(body_len as u64) + body_len
            }
        }
    }

    /// Appends the message, with its `sequenceId` (JSON) or `sequence_id` field 4
    /// (protobuf) when given.
    pub fn write_to(&self, sequence_id: Option<u64>, out: &mut BytesMut) {
        out.reserve(self.encoded_len(sequence_id));
        match (&self.repr, sequence_id) {
            (Repr::Json(object) | Repr::Protobuf { whole: object, .. }, None) => {
                out.extend_from_slice(object);
            }
            (Repr::Json(object), Some(n)) => {
                // The stored object ends in `}`: put the sequence id before it, as the
                // last key, exactly where `encode_downstream` writes it.
                let open = object.strip_suffix(b"}").unwrap_or(object);
                out.extend_from_slice(open);
                out.extend_from_slice(SEQUENCE_ID_KEY);
                put_u64(out, n);
                out.put_u8(b'}');
            }
            (Repr::Protobuf { whole, body_start }, Some(n)) => {
                // Field 4 has the highest number of `DataMessage`, so appending it to the
                // body gives prost's canonical field order; only the outer length changes.
                let body = &whole[*body_start..];
                out.put_u8(DATA_MESSAGE_KEY);
                put_varint(out, (body.len() + 1 + varint_len(n)) as u64);
                out.extend_from_slice(body);
                out.put_u8(SEQUENCE_ID_FIELD_KEY);
                put_varint(out, n);
            }
        }
    }

    /// The whole message without a sequence id; zero-copy.
    pub fn unsequenced(&self) -> Bytes {
        match &self.repr {
            Repr::Json(object) => object.clone(),
            Repr::Protobuf { whole, .. } => whole.clone(),
        }
    }

    /// The message as one frame payload: [`unsequenced`](EncodedMessage::unsequenced)
    /// without a sequence id, a fresh buffer with one.
    pub fn to_frame(&self, sequence_id: Option<u64>) -> Bytes {
        match sequence_id {
            None => self.unsequenced(),
            Some(_) => {
                let mut out = BytesMut::with_capacity(self.encoded_len(sequence_id));
                self.write_to(sequence_id, &mut out);
                out.freeze()
            }
        }
    }
}

fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |digits| digits as usize + 1)
}

/// The length of the `DataMessage` body without a sequence id.
fn data_message_len(from: &str, group: Option<&str>, data: &MessageData) -> usize {
    len_field_len(from.len())
        + group.map_or(0, |g| len_field_len(g.len()))
        + len_field_len(message_data_len(data))
}

/// Appends the `DataMessage` body without a sequence id, fields in number order as prost
/// writes them: `from = 1`, `group = 2` (explicit presence: written even when empty),
/// `data = 3`.
fn put_data_message(out: &mut BytesMut, from: &str, group: Option<&str>, data: &MessageData) {
    put_len_field(out, 1, from.as_bytes());
    if let Some(group) = group {
        put_len_field(out, 2, group.as_bytes());
    }
    out.put_u8(key(3, LEN));
    put_varint(out, message_data_len(data) as u64);
    put_message_data(out, data);
}

/// The length of a `MessageData` body. A `oneof` member is written even when empty.
fn message_data_len(data: &MessageData) -> usize {
    match data {
        MessageData::Text(text) | MessageData::Json(text) => len_field_len(text.len()),
        MessageData::Binary(bytes) => len_field_len(bytes.len()),
        MessageData::Protobuf { type_url, value } => len_field_len(any_len(type_url, value)),
    }
}

/// Appends a `MessageData` body: `text_data = 1` (also for JSON, as the protobuf reference
/// asks), `binary_data = 2` or `protobuf_data = 3`.
fn put_message_data(out: &mut BytesMut, data: &MessageData) {
    match data {
        MessageData::Text(text) | MessageData::Json(text) => put_len_field(out, 1, text.as_bytes()),
        MessageData::Binary(bytes) => put_len_field(out, 2, bytes),
        MessageData::Protobuf { type_url, value } => {
            out.put_u8(key(3, LEN));
            put_varint(out, any_len(type_url, value) as u64);
            put_any(out, type_url, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_lengths() {
        for n in [0, 9, 10, 99, 100, 12345, u64::MAX] {
            assert_eq!(decimal_len(n), n.to_string().len());
        }
    }

    #[test]
    fn clones_share_the_buffer() {
        for format in WireFormat::ALL {
            let msg = encode_message(format, &MessageFrom::Server, &MessageData::Text("x".into()));
            let a = msg.unsequenced();
            let b = msg.clone().unsequenced();
            assert_eq!(a.as_ptr(), b.as_ptr());
            assert_eq!(msg.to_frame(None).as_ptr(), a.as_ptr());
            assert_eq!(msg.format(), format);
            assert_eq!(
                format!("{msg:?}"),
                format!("EncodedMessage {{ format: {format:?}, len: {} }}", a.len())
            );
        }
    }
}
