//! JSON reading and writing shared by the decoder and the encoders (RFC 8259).
//!
//! Reading keeps field values as borrowed raw JSON, so that each can be checked with a
//! precise error. Writing produces the bytes `serde_json` (and so pydantic, whose JSON
//! serializer is built on it) produces for the same values: compact, keys in declaration
//! order, floats in shortest round-trip form with a `.0` when integral.

use std::fmt;

use bytes::{BufMut, BytesMut};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::ser::{CompactFormatter, Formatter};
use serde_json::value::RawValue;

use crate::Error;

/// The values of the keys `names` of a JSON object, as raw JSON; other keys are ignored.
///
/// A key given twice keeps its last value, as Python's `json` and pydantic do. Anything
/// but a JSON object is an error.
pub(crate) fn object_fields<'a, const N: usize>(
    text: &'a str,
    names: [&'static str; N],
) -> Result<[Option<&'a RawValue>; N], serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = de.deserialize_map(FieldsVisitor { names })?;
    de.end()?;
    Ok(fields)
}

struct FieldsVisitor<const N: usize> {
    names: [&'static str; N],
}

/// A key, borrowed when it has no escapes.
struct Key<'a>(std::borrow::Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de, const N: usize> Visitor<'de> for FieldsVisitor<N> {
    type Value = [Option<&'de RawValue>; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = [None; N];
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match self.names.iter().position(|&n| n == key.0) {
                Some(i) => fields[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// A raw value that is present and not `null`.
pub(crate) fn present(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

/// A JSON string value (pydantic's `str` in lax mode accepts only strings from JSON).
pub(crate) fn string(raw: &RawValue, field: &'static str) -> Result<String, Error> {
    if !raw.get().starts_with('"') {
        return Err(Error::InvalidField {
            field,
            reason: "expected a string",
        });
    }
    serde_json::from_str(raw.get()).map_err(|_| Error::InvalidField {
        field,
        reason: "expected a string",
    })
}

/// Appends `s` as a JSON string, escaped exactly as `serde_json` escapes it.
pub(crate) fn put_str(out: &mut BytesMut, s: &str) {
    // Writing into a BytesMut cannot fail: its io::Write grows the buffer.
    let mut ser = serde_json::Serializer::new((&mut *out).writer());
    let written = serde::Serialize::serialize(s, &mut ser);
    debug_assert!(written.is_ok());
}

/// Appends `v` as `serde_json` writes an `f64`: `150.0`, `149.5`, `1e16`; `null` when not
/// finite (pydantic's default, `ser_json_inf_nan = "null"`).
pub(crate) fn put_f64(out: &mut BytesMut, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let written = CompactFormatter.write_f64(&mut (&mut *out).writer(), v);
    debug_assert!(written.is_ok());
}

/// Appends `n` in decimal.
pub(crate) fn put_i64(out: &mut BytesMut, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The largest integer up to which every integer is an exact `f64` (2^53).
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// Appends a quantity: as an integer when it is one (share volumes: `1000000`), else as
/// a float (fractional crypto volumes: `0.25`).
pub(crate) fn put_quantity(out: &mut BytesMut, v: f64) {
    if v.fract() == 0.0 && v.abs() <= MAX_EXACT {
        // Exact: an integral f64 within ±2^53 converts to i64 without loss.
        put_i64(out, v as i64);
    } else {
        put_f64(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<const N: usize>(
        text: &str,
        names: [&'static str; N],
    ) -> Result<Vec<Option<String>>, String> {
        object_fields(text, names)
            .map(|f| f.iter().map(|r| r.map(|r| r.get().to_owned())).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn fields_are_borrowed_last_wins_and_others_ignored() {
        assert_eq!(
            fields(
                r#"{"a":1,"x":{"deep":[1,2]},"b":"s","a":[2]}"#,
                ["a", "b", "c"]
            ),
            Ok(vec![Some("[2]".into()), Some("\"s\"".into()), None])
        );
        // An escaped key is still matched.
        assert_eq!(
            fields(r#"{"\u0061":true}"#, ["a"]),
            Ok(vec![Some("true".into())])
        );
        for bad in ["[]", "1", "\"a\"", "null", "{", "{}x", "{\"a\":}", ""] {
            assert!(fields(bad, ["a"]).is_err(), "{bad}");
        }
    }

    #[test]
    fn writers_match_serde_json() {
        for s in ["", "AAPL", "a\"b\\c\n\u{1}", "ünï ✓ 😀", "</script>"] {
            let mut out = BytesMut::new();
            put_str(&mut out, s);
            assert_eq!(
                &out[..],
                serde_json::to_string(s).unwrap().as_bytes(),
                "{s:?}"
            );
        }
        for v in [
            150.0,
            149.5,
            0.1,
            -2.5,
            1e16,
            1.5e-7,
            1_697_097_600_000.0,
            0.0,
            -0.0,
        ] {
            let mut out = BytesMut::new();
            put_f64(&mut out, v);
            assert_eq!(
                &out[..],
                serde_json::to_string(&v).unwrap().as_bytes(),
                "{v}"
            );
        }
        let mut out = BytesMut::new();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            put_f64(&mut out, v);
        }
        assert_eq!(&out[..], b"nullnullnull");
    }

    #[test]
    fn quantities() {
        let render = |v: f64| {
            let mut out = BytesMut::new();
            put_quantity(&mut out, v);
            String::from_utf8(out.to_vec()).unwrap()
        };
        assert_eq!(render(1_000_000.0), "1000000");
        assert_eq!(render(0.0), "0");
        assert_eq!(render(0.25), "0.25");
        assert_eq!(render(9_007_199_254_740_992.0), "9007199254740992");
        assert_eq!(render(1e20), "1e+20");
        assert_eq!(render(f64::NAN), "null");
    }
}
