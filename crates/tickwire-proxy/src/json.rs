//! Low-level JSON writers shared by the encoders (RFC 8259).

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

/// Appends `s` as a JSON string (RFC 8259 §7), escaped by `serde_json`.
pub(crate) fn put_str(out: &mut BytesMut, s: &str) {
    // serde_json's own escaping; writing into a `BytesMut` cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), s);
}

/// Appends `"key":` (the key must need no escaping).
pub(crate) fn put_key(out: &mut BytesMut, key: &str) {
    out.reserve(key.len() + 3);
    out.put_u8(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Appends an integer.
pub(crate) fn put_int(out: &mut BytesMut, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends a price: the shortest decimal that reads back as `v` (`2850.5`, `2820.0`),
/// as `serde_json` writes it; a non-finite value is written as `null`.
pub(crate) fn put_price(out: &mut BytesMut, v: f64) {
    match serde_json::Number::from_f64(v) {
        // Writing into a `BytesMut` cannot fail.
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends a quantity: an integer when `v` is whole (`1500000`, as the seed shows
/// volumes), else as [`put_price`].
pub(crate) fn put_qty(out: &mut BytesMut, v: f64) {
    // 2^53: every whole f64 below it is exactly an i64.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if v.is_finite() && v.fract() == 0.0 && v.abs() < EXACT {
        // Exact by the check above.
        put_int(out, v as i64);
    } else {
        put_price(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut BytesMut)) -> String {
        let mut out = BytesMut::new();
        f(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn strings_match_serde_json() {
        let controls: String = (0u8..0x20).map(char::from).collect();
        for s in ["", "RELIANCE", "a\"b\\c/", "ünï ✓", controls.as_str()] {
            assert_eq!(text(|o| put_str(o, s)), serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(text(|o| put_price(o, 2850.5)), "2850.5");
        assert_eq!(text(|o| put_price(o, 2820.0)), "2820.0");
        assert_eq!(text(|o| put_price(o, f64::NAN)), "null");
        assert_eq!(text(|o| put_price(o, f64::INFINITY)), "null");
        assert_eq!(text(|o| put_qty(o, 1_500_000.0)), "1500000");
        assert_eq!(text(|o| put_qty(o, -3.0)), "-3");
        assert_eq!(text(|o| put_qty(o, 0.5)), "0.5");
        assert_eq!(text(|o| put_qty(o, 1e300)), "1e+300");
        assert_eq!(text(|o| put_qty(o, f64::NAN)), "null");
        assert_eq!(text(|o| put_int(o, -17i64)), "-17");
        assert_eq!(text(|o| put_key(o, "ltp")), "\"ltp\":");
    }
}
