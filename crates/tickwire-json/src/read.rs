//! Reading client messages: one JSON object (RFC 8259 §4) whose known fields are kept as
//! raw JSON and checked one by one, so that each failure gets a precise [`ParseError`].
//! Unknown fields are skipped without being materialised.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::ParseError;

/// A known field: its name on the wire and the slot its value goes to. Aliases share a
/// slot.
pub(crate) type Key = (&'static str, usize);

/// Parses `bytes` as one JSON object and returns the raw value of each slot named in
/// `keys`. A slot filled twice is [`ParseError::DuplicateField`].
pub(crate) fn read_object<'a, const N: usize>(
    bytes: &'a [u8],
    keys: &'static [Key],
) -> Result<[Option<&'a RawValue>; N], ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::Json {
        detail: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = (&mut de)
        .deserialize_map(ObjectVisitor::<N> { keys })
        .map_err(|e| ParseError::json(&e))?;
    de.end().map_err(|e| ParseError::json(&e))?;
    match fields.duplicate {
        Some(field) => Err(ParseError::DuplicateField { field }),
        None => Ok(fields.slots),
    }
}

/// Whether a field is absent or JSON `null`; optional fields treat both alike.
pub(crate) fn absent(raw: Option<&RawValue>) -> bool {
    raw.is_none_or(|r| r.get() == "null")
}

/// A required string field.
pub(crate) fn required_str(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<String, ParseError> {
    let raw = raw.ok_or(ParseError::MissingField { field })?;
    serde_json::from_str::<String>(raw.get()).map_err(|_| ParseError::InvalidField {
        field,
        expected: "a string",
    })
}

/// The elements of an array field, still raw: callers count them before looking inside.
pub(crate) fn array<'a>(
    raw: &'a RawValue,
    field: &'static str,
    expected: &'static str,
) -> Result<Vec<&'a RawValue>, ParseError> {
    serde_json::from_str::<Vec<&RawValue>>(raw.get())
        .map_err(|_| ParseError::InvalidField { field, expected })
}

/// The strings of an array's elements; any other element is [`ParseError::InvalidField`].
pub(crate) fn strings(
    items: &[&RawValue],
    field: &'static str,
    expected: &'static str,
) -> Result<Vec<String>, ParseError> {
    items
        .iter()
        .map(|item| {
            serde_json::from_str::<String>(item.get())
                .map_err(|_| ParseError::InvalidField { field, expected })
        })
        .collect()
}

struct Fields<'a, const N: usize> {
    slots: [Option<&'a RawValue>; N],
    duplicate: Option<&'static str>,
}

struct ObjectVisitor<const N: usize> {
    keys: &'static [Key],
}

impl<'de, const N: usize> Visitor<'de> for ObjectVisitor<N> {
    type Value = Fields<'de, N>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields {
            slots: [None; N],
            duplicate: None,
        };
        while let Some(key) = map.next_key_seed(KeySeed { keys: self.keys })? {
            let Some((name, slot)) = key else {
                // Unknown fields are ignored, as both documents' servers do.
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = map.next_value::<&'de RawValue>()?;
            match fields.slots.get_mut(slot) {
                Some(filled @ None) => *filled = Some(value),
                Some(Some(_)) => {
                    fields.duplicate.get_or_insert(name);
                }
                None => return Err(de::Error::custom("key table names a missing slot")),
            }
        }
        Ok(fields)
    }
}

/// Reads a key and finds it in the key table without allocating.
struct KeySeed {
    keys: &'static [Key],
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<Key>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Option<Key>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.keys.iter().copied().find(|(name, _)| *name == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[Key] = &[("type", 0), ("symbols", 1), ("assets", 1)];

    fn read(text: &str) -> Result<[Option<String>; 2], ParseError> {
        let slots = read_object::<2>(text.as_bytes(), KEYS)?;
        Ok(slots.map(|s| s.map(|r| r.get().to_owned())))
    }

    #[test]
    fn known_fields_are_kept_raw_and_others_skipped() {
        let [ty, symbols] =
            read(r#" {"x":{"deep":[1,2]},"type":"ping", "symbols" : [ "a" ] } "#).expect("ok");
        assert_eq!(ty.as_deref(), Some(r#""ping""#));
        assert_eq!(symbols.as_deref(), Some(r#"[ "a" ]"#));
        assert_eq!(read("{}").expect("ok"), [None, None]);
    }

    #[test]
    fn escaped_keys_are_recognised() {
        let [ty, _] = read(r#"{"typ\u0065":"ping"}"#).expect("ok");
        assert_eq!(ty.as_deref(), Some(r#""ping""#));
    }

    #[test]
    fn duplicates_and_aliases_twice_are_refused() {
        assert_eq!(
            read(r#"{"type":"a","type":"b"}"#),
            Err(ParseError::DuplicateField { field: "type" })
        );
        assert_eq!(
            read(r#"{"symbols":[],"assets":[]}"#),
            Err(ParseError::DuplicateField { field: "assets" })
        );
    }

    #[test]
    fn non_objects_and_trailing_data_are_malformed() {
        for text in [
            "",
            "[]",
            "\"ping\"",
            "null",
            "{",
            "{} {}",
            "{\"type\":}",
            "{'a':1}",
        ] {
            assert!(
                matches!(read(text), Err(ParseError::Json { .. })),
                "{text:?} should be malformed"
            );
        }
        let err = read_object::<2>(b"{\"type\":\"\xff\"}", KEYS).expect_err("not UTF-8");
        assert_eq!(
            err,
            ParseError::Json {
                detail: "invalid UTF-8 at byte 9".into()
            }
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        // serde_json skips and captures raw values without recursion.
        let nest = |key: &str| {
            format!(
                r#"{{"{key}":{}{}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
        };
        assert_eq!(read(&nest("x")).expect("ignored"), [None, None]);
        let [_, symbols] = read(&nest("symbols")).expect("kept raw");
        assert_eq!(symbols.map(|s| s.len()), Some(200_000));
        let unbalanced = format!(r#"{{"x":{}}}"#, "[".repeat(100_000));
        assert!(matches!(read(&unbalanced), Err(ParseError::Json { .. })));
    }

    #[test]
    fn field_helpers() {
        let raw: &RawValue = serde_json::from_str(r#"["a", 1]"#).expect("raw");
        let items = array(raw, "symbols", "an array").expect("array");
        assert_eq!(items.len(), 2);
        assert_eq!(
            strings(&items, "symbols", "strings"),
            Err(ParseError::InvalidField {
                field: "symbols",
                expected: "strings"
            })
        );
        assert_eq!(
            strings(&items[..1], "symbols", "strings"),
            Ok(vec!["a".to_owned()])
        );
        let null: &RawValue = serde_json::from_str("null").expect("raw");
        assert!(absent(None));
        assert!(absent(Some(null)));
        assert!(!absent(Some(raw)));
        assert_eq!(
            required_str(None, "type"),
            Err(ParseError::MissingField { field: "type" })
        );
        assert_eq!(
            required_str(Some(raw), "type"),
            Err(ParseError::InvalidField {
                field: "type",
                expected: "a string"
            })
        );
    }
}
