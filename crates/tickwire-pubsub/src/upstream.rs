//! Decoding client-to-server messages from either wire format.
//!
//! JSON follows the service's JSON subprotocol reference (`reference-json-webpubsub-subprotocol`,
//! "Requests"); protobuf the `UpstreamMessage` of `proto/webpubsub_messages.proto`.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use prost::Message as _;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use tickwire_proto::webpubsub as pb;
use tickwire_proto::webpubsub::upstream_message::Message as PbUpstream;

use crate::message::{check_json, check_json_depth};
use crate::subprotocol::{FrameKind, WireFormat};
use crate::{Error, MessageData, Upstream};

/// Decodes the payload of one upstream WebSocket frame.
///
/// JSON subprotocols take text frames, protobuf ones binary frames; the other kind is
/// [`Error::WrongFrameKind`]. Unknown JSON keys and unknown protobuf fields are ignored,
/// as the service does. Group and event names are passed through unchecked: whether a
/// group exists or may be joined is the server's decision, answered with an ack.
///
/// ```
/// use tickwire_pubsub::{decode_upstream, FrameKind, Upstream, WireFormat};
///
/// let join = decode_upstream(
///     WireFormat::Protobuf,
///     FrameKind::Binary,
///     &[0x32, 0x05, 0x0a, 0x01, b'g', 0x10, 0x01],
/// )?;
/// assert_eq!(join, Upstream::JoinGroup { group: "g".into(), ack_id: Some(1) });
/// # Ok::<(), tickwire_pubsub::Error>(())
/// ```
pub fn decode_upstream(
    format: WireFormat,
    kind: FrameKind,
    payload: &[u8],
) -> Result<Upstream, Error> {
    let expected = format.frame_kind();
    if kind != expected {
        return Err(Error::WrongFrameKind {
            expected,
            got: kind,
        });
    }
    match format {
        WireFormat::Json => decode_json(payload),
        WireFormat::Protobuf => decode_protobuf(payload),
    }
}

// ---------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------

/// The keys of an upstream JSON message, each kept as raw JSON so that its value can be
/// checked with a precise error, after the ack id has been read.
#[derive(Default)]
struct Fields<'a> {
    ty: Option<&'a RawValue>,
    group: Option<&'a RawValue>,
    event: Option<&'a RawValue>,
    ack_id: Option<&'a RawValue>,
    no_echo: Option<&'a RawValue>,
    data_type: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
    sequence_id: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Key {
    Type,
    Group,
    Event,
    AckId,
    NoEcho,
    DataType,
    Data,
    SequenceId,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_map` (unlike a derived struct) refuses JSON arrays.
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let (slot, name) = match key {
                Key::Type => (&mut fields.ty, "type"),
                Key::Group => (&mut fields.group, "group"),
                Key::Event => (&mut fields.event, "event"),
                Key::AckId => (&mut fields.ack_id, "ackId"),
                Key::NoEcho => (&mut fields.no_echo, "noEcho"),
                Key::DataType => (&mut fields.data_type, "dataType"),
                Key::Data => (&mut fields.data, "data"),
                Key::SequenceId => (&mut fields.sequence_id, "sequenceId"),
                Key::Other => {
                    // `metadata`, `ttlSeconds`, ...: ignored, as the service does.
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(de::Error::duplicate_field(name));
            }
            *slot = Some(map.next_value()?);
        }
        Ok(fields)
    }
}

/// Base64 of binary data: the standard alphabet (RFC 4648 §4); padding is optional.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The longest unknown `type` echoed in an error.
const MAX_ECHOED_TYPE: usize = 64;

fn decode_json(payload: &[u8]) -> Result<Upstream, Error> {
    // Text frames are UTF-8 (RFC 6455 §5.6); the WebSocket layer may not have checked.
    let text = std::str::from_utf8(payload).map_err(|e| Error::InvalidJson {
        reason: format!("not UTF-8: {e}"),
    })?;
    let fields: Fields<'_> = serde_json::from_str(text).map_err(|e| Error::InvalidJson {
        reason: e.to_string(),
    })?;

    // Read the ack id first, leniently, so that a message that fails later can still be
    // answered with a failed ack.
    let lenient_ack = fields.ack_id.and_then(|raw| parse_u64(raw).ok().flatten());
    let cx = Checker {
        ack_id: lenient_ack,
    };

    let ty = cx.required_str(fields.ty, "type")?;
    let msg = match ty.as_str() {
        "joinGroup" => Upstream::JoinGroup {
            ack_id: cx.optional_u64(fields.ack_id, "ackId")?,
            group: cx.required_str(fields.group, "group")?,
        },
        "leaveGroup" => Upstream::LeaveGroup {
            ack_id: cx.optional_u64(fields.ack_id, "ackId")?,
            group: cx.required_str(fields.group, "group")?,
        },
        "sendToGroup" => Upstream::SendToGroup {
            ack_id: cx.optional_u64(fields.ack_id, "ackId")?,
            group: cx.required_str(fields.group, "group")?,
            no_echo: cx.optional_bool(fields.no_echo, "noEcho")?.unwrap_or(false),
            data: cx.data(fields.data_type, fields.data)?,
        },
        "event" => Upstream::Event {
            ack_id: cx.optional_u64(fields.ack_id, "ackId")?,
            event: cx.required_str(fields.event, "event")?,
            data: cx.data(fields.data_type, fields.data)?,
        },
        "sequenceAck" => Upstream::SequenceAck {
            sequence_id: cx
                .optional_u64(fields.sequence_id, "sequenceId")?
                .ok_or_else(|| cx.missing("sequenceId"))?,
        },
        "ping" => Upstream::Ping,
        other => {
            let mut end = other.len().min(MAX_ECHOED_TYPE);
            while !other.is_char_boundary(end) {
                end -= 1;
            }
            return Err(Error::UnknownType {
                type_name: other[..end].to_owned(),
                ack_id: cx.ack_id,
            });
        }
    };
    Ok(msg)
}

/// Reads a non-negative JSON integer that fits a u64; `null` is `None`.
///
/// `Err` holds the reason. Fractions (`1.0`), exponents (`1e3`), negatives and strings are
/// refused: the SDKs only ever send integers.
fn parse_u64(raw: &RawValue) -> Result<Option<u64>, &'static str> {
    let text = raw.get();
    if text == "null" {
        return Ok(None);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Some)
            .map_err(|_| "out of range for a 64-bit unsigned integer");
    }
    if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Err("must be a non-negative integer")
    } else {
        Err("expected a number")
    }
}

/// Checks field values, attaching the message's ack id to every error.
struct Checker {
    ack_id: Option<u64>,
}

impl Checker {
    fn missing(&self, field: &'static str) -> Error {
        Error::MissingField {
            field,
            ack_id: self.ack_id,
        }
    }

    fn invalid(&self, field: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidField {
            field,
            reason: reason.into(),
            ack_id: self.ack_id,
        }
    }

    /// A JSON string; `null` counts as absent.
    fn optional_str(
        &self,
        raw: Option<&RawValue>,
        field: &'static str,
    ) -> Result<Option<String>, Error> {
        let Some(raw) = raw.filter(|r| r.get() != "null") else {
            return Ok(None);
        };
        if !raw.get().starts_with('"') {
            return Err(self.invalid(field, "expected a string"));
        }
        serde_json::from_str(raw.get()).map_err(|e| self.invalid(field, e.to_string()))
    }

    fn required_str(&self, raw: Option<&RawValue>, field: &'static str) -> Result<String, Error> {
        self.optional_str(raw, field)?
            .ok_or_else(|| self.missing(field))
    }

    fn optional_u64(
        &self,
        raw: Option<&RawValue>,
        field: &'static str,
    ) -> Result<Option<u64>, Error> {
        match raw {
            None => Ok(None),
            Some(raw) => parse_u64(raw).map_err(|reason| self.invalid(field, reason)),
        }
    }

    fn optional_bool(
        &self,
        raw: Option<&RawValue>,
        field: &'static str,
    ) -> Result<Option<bool>, Error> {
        match raw.map(RawValue::get) {
            None | Some("null") => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(self.invalid(field, "expected true or false")),
        }
    }

    /// `data` as its `dataType` (default `json`) says.
    fn data(
        &self,
        data_type: Option<&RawValue>,
        data: Option<&RawValue>,
    ) -> Result<MessageData, Error> {
        let data_type = self.optional_str(data_type, "dataType")?;
        let data_type = data_type.as_deref().unwrap_or("json");
        if !matches!(data_type, "json" | "text" | "binary") {
            return Err(self.invalid("dataType", "expected json, text or binary"));
        }
        let data = data.ok_or_else(|| self.missing("data"))?;
        match data_type {
            // Any JSON value, published as it is: the parser checked the syntax, the
            // depth is left to check.
            "json" => check_json_depth(data.get())
                .map(|()| MessageData::Json(data.get().to_owned()))
                .map_err(|reason| self.invalid("data", reason)),
            "text" => {
                let text = self.optional_str(Some(data), "data")?;
                text.map(MessageData::Text)
                    .ok_or_else(|| self.invalid("data", "expected a string for dataType text"))
            }
            _ => {
                let text = self.optional_str(Some(data), "data")?;
                let text = text.ok_or_else(|| {
                    self.invalid("data", "expected a base64 string for dataType binary")
                })?;
                BASE64_LENIENT
                    .decode(text)
                    .map(|bytes| MessageData::Binary(Bytes::from(bytes)))
                    .map_err(|e| self.invalid("data", format!("invalid base64: {e}")))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Protobuf
// ---------------------------------------------------------------------------------------

fn decode_protobuf(payload: &[u8]) -> Result<Upstream, Error> {
    // prost rejects truncated input, bad wire types, invalid UTF-8 and nesting deeper
    // than 100, and skips unknown fields.
    let msg = pb::UpstreamMessage::decode(payload).map_err(|e| Error::Protobuf {
        reason: e.to_string(),
    })?;
    let msg = match msg.message {
        None => {
            return Err(Error::MissingField {
                field: "message",
                ack_id: None,
            });
        }
        Some(PbUpstream::SendToGroupMessage(m)) => Upstream::SendToGroup {
            data: data_from_proto(m.data, m.ack_id)?,
            group: m.group,
            ack_id: m.ack_id,
            no_echo: m.no_echo.unwrap_or(false),
        },
        Some(PbUpstream::EventMessage(m)) => Upstream::Event {
            data: data_from_proto(m.data, m.ack_id)?,
            event: m.event,
            ack_id: m.ack_id,
        },
        Some(PbUpstream::JoinGroupMessage(m)) => Upstream::JoinGroup {
            group: m.group,
            ack_id: m.ack_id,
        },
        Some(PbUpstream::LeaveGroupMessage(m)) => Upstream::LeaveGroup {
            group: m.group,
            ack_id: m.ack_id,
        },
        Some(PbUpstream::SequenceAckMessage(m)) => Upstream::SequenceAck {
            sequence_id: m.sequence_id,
        },
        Some(PbUpstream::PingMessage(_)) => Upstream::Ping,
    };
    Ok(msg)
}

fn data_from_proto(
    data: Option<pb::MessageData>,
    ack_id: Option<u64>,
) -> Result<MessageData, Error> {
    use pb::message_data::Data;
    match data.and_then(|d| d.data) {
        None => Err(Error::MissingField {
            field: "data",
            ack_id,
        }),
        Some(Data::TextData(text)) => Ok(MessageData::Text(text)),
        Some(Data::JsonData(json)) => match check_json(&json) {
            Ok(()) => Ok(MessageData::Json(json)),
            Err(reason) => Err(Error::InvalidField {
                field: "json_data",
                reason,
                ack_id,
            }),
        },
        Some(Data::BinaryData(bytes)) => Ok(MessageData::Binary(bytes)),
        Some(Data::ProtobufData(any)) => Ok(MessageData::Protobuf {
            type_url: any.type_url,
            value: Bytes::from(any.value),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn u64_parsing() {
        assert_eq!(parse_u64(&raw("0")), Ok(Some(0)));
        assert_eq!(parse_u64(&raw("18446744073709551615")), Ok(Some(u64::MAX)));
        assert_eq!(parse_u64(&raw("null")), Ok(None));
        assert_eq!(
            parse_u64(&raw("18446744073709551616")),
            Err("out of range for a 64-bit unsigned integer")
        );
        for bad in ["-1", "1.0", "1e3", "-0", "1E30"] {
            assert_eq!(
                parse_u64(&raw(bad)),
                Err("must be a non-negative integer"),
                "{bad}"
            );
        }
        for bad in ["\"1\"", "true", "[1]", "{}"] {
            assert_eq!(parse_u64(&raw(bad)), Err("expected a number"), "{bad}");
        }
    }

    #[test]
    fn unknown_type_is_truncated_on_a_char_boundary() {
        let long = format!("{}é{}", "x".repeat(63), "y".repeat(1000));
        let frame = format!(r#"{{"type":"{long}"}}"#);
        let err = decode_json(frame.as_bytes()).unwrap_err();
        let Error::UnknownType { type_name, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(type_name, "x".repeat(63));
    }
}
