//! Low-level JSON writers shared by both dialects (RFC 8259): strings, integers, numbers
//! and timestamps, appended straight into the output buffer.

use bytes::{BufMut, BytesMut};
use serde_json::ser::{CompactFormatter, Formatter as _};

use crate::timestamp::rfc3339_millis;

/// The widest number [`put_f64`] writes, in bytes (`-1.2345678901234567e-308`); used for
/// capacity estimates.
pub(crate) const MAX_NUMBER_LEN: usize = 24;

/// The width of a quoted RFC 3339 timestamp (`"2025-10-10T14:30:00.000Z"`).
pub(crate) const QUOTED_TIMESTAMP_LEN: usize = 26;

/// 2^53: every integer of smaller magnitude is exactly representable as an `f64`, and
/// JavaScript prints such integral numbers without a fraction.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Appends `s` as a JSON string (RFC 8259 §7), escaped by `serde_json`.
pub(crate) fn put_str(out: &mut BytesMut, s: &str) {
    // serde_json's own escaping; writing into a `BytesMut` cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), s);
}

/// Symbols up to this long are lower-cased on the stack.
const SHORT: usize = 64;

/// Appends `s` with ASCII letters lower-cased as a JSON string (the `/ws` spelling of a
/// symbol); a short one is lower-cased on the stack, without an allocation.
pub(crate) fn put_lower_str(out: &mut BytesMut, s: &str) {
    if s.len() > SHORT {
        put_str(out, &s.to_ascii_lowercase());
        return;
    }
    let mut buf = [0u8; SHORT];
    let lower = &mut buf[..s.len()];
    lower.copy_from_slice(s.as_bytes());
    lower.make_ascii_lowercase();
    // Lower-casing ASCII letters keeps UTF-8 valid: continuation bytes are >= 0x80.
    match std::str::from_utf8(lower) {
        Ok(lower) => put_str(out, lower),
        Err(_) => put_str(out, &s.to_ascii_lowercase()),
    }
}

/// Appends `n` in decimal.
pub(crate) fn put_u64(out: &mut BytesMut, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `n` in decimal.
pub(crate) fn put_i64(out: &mut BytesMut, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `value` as a JSON number, by one rule for every `f64` field of both dialects:
///
/// - not finite (NaN, ±∞): `null`, because RFC 8259 §6 has no such numbers;
/// - integral and below 2^53 in magnitude: an integer, `28500000000` rather than
///   `28500000000.0`, as the documents show integral figures and as JavaScript's
///   `JSON.stringify` prints them (`-0` prints as `0`, as there);
/// - otherwise: the shortest decimal that reads back as the same `f64` (`67234.56`,
///   `1e-7`), through `serde_json`'s formatter.
pub(crate) fn put_f64(out: &mut BytesMut, value: f64) {
    if !value.is_finite() {
        out.extend_from_slice(b"null");
    } else if value.fract() == 0.0 && value.abs() < EXACT_INTEGER_LIMIT {
        // Lossless: an integral value below 2^53 fits an i64 exactly.
        put_i64(out, value as i64);
    } else {
        // Writing into a growable buffer cannot fail.
        let _ = CompactFormatter.write_f64(&mut out.writer(), value);
    }
}

/// Appends `value` by the rule of [`put_f64`], or `null` when there is none.
pub(crate) fn put_opt_f64(out: &mut BytesMut, value: Option<f64>) {
    match value {
        Some(v) => put_f64(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends a quoted RFC 3339 UTC timestamp with milliseconds.
pub(crate) fn put_timestamp(out: &mut BytesMut, unix_ms: i64) {
    out.reserve(QUOTED_TIMESTAMP_LEN);
    out.put_u8(b'"');
    out.extend_from_slice(rfc3339_millis(unix_ms).as_str().as_bytes());
    out.put_u8(b'"');
}

/// Appends `items` as a JSON array of strings.
pub(crate) fn put_str_array<I, S>(out: &mut BytesMut, items: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    out.put_u8(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        put_str(out, item.as_ref());
    }
    out.put_u8(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut BytesMut)) -> String {
        let mut out = BytesMut::new();
        f(&mut out);
        String::from_utf8(out.to_vec()).expect("UTF-8")
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        for s in [
            "",
            "btc",
            "a\"b\\c",
            "tab\there\n",
            "\u{0}\u{1f}\u{7f}",
            "é/€/𝄞",
        ] {
            let expected = serde_json::to_string(s).expect("serializable");
            assert_eq!(written(|o| put_str(o, s)), expected, "{s:?}");
        }
    }

    #[test]
    fn lower_strings_lower_ascii_letters_only() {
        assert_eq!(written(|o| put_lower_str(o, "BTC")), r#""btc""#);
        assert_eq!(written(|o| put_lower_str(o, "ÉTH\"X")), r#""Éth\"x""#);
        assert_eq!(written(|o| put_lower_str(o, "A\u{1}")), r#""a\u0001""#);
    }

    #[test]
    fn integral_values_print_as_integers() {
        assert_eq!(written(|o| put_f64(o, 28_500_000_000.0)), "28500000000");
        assert_eq!(written(|o| put_f64(o, 67_230.0)), "67230");
        assert_eq!(written(|o| put_f64(o, 0.0)), "0");
        assert_eq!(written(|o| put_f64(o, -0.0)), "0");
        assert_eq!(written(|o| put_f64(o, -5.0)), "-5");
        assert_eq!(
            written(|o| put_f64(o, 9_007_199_254_740_991.0)),
            "9007199254740991"
        );
    }

    #[test]
    fn fractions_print_shortest_round_trip() {
        assert_eq!(written(|o| put_f64(o, 67_234.56)), "67234.56");
        assert_eq!(written(|o| put_f64(o, 2.34)), "2.34");
        assert_eq!(written(|o| put_f64(o, 0.1 + 0.2)), "0.30000000000000004");
        assert_eq!(written(|o| put_f64(o, -1.5)), "-1.5");
        let tiny = written(|o| put_f64(o, 1e-7));
        assert_eq!(tiny.parse::<f64>(), Ok(1e-7));
        let huge = written(|o| put_f64(o, 1e300));
        assert_eq!(huge.parse::<f64>(), Ok(1e300));
        assert!(huge.len() <= MAX_NUMBER_LEN);
    }

    #[test]
    fn non_finite_values_print_as_null() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(written(|o| put_f64(o, v)), "null");
        }
        assert_eq!(written(|o| put_opt_f64(o, None)), "null");
        assert_eq!(written(|o| put_opt_f64(o, Some(1.25))), "1.25");
    }

    #[test]
    fn integers_and_arrays() {
        assert_eq!(
            written(|o| put_i64(o, -1_700_000_000_000)),
            "-1700000000000"
        );
        assert_eq!(written(|o| put_u64(o, u64::MAX)), "18446744073709551615");
        assert_eq!(written(|o| put_str_array(o, ["a", "b"])), r#"["a","b"]"#);
        assert_eq!(written(|o| put_str_array(o, Vec::<String>::new())), "[]");
        assert_eq!(
            written(|o| put_timestamp(o, 0)),
            r#""1970-01-01T00:00:00.000Z""#
        );
    }
}
