//! Low-level writers shared by the encoders: JSON strings, numbers and base64
//! (RFC 8259, RFC 4648) and protobuf varints and length-delimited fields (the protobuf
//! encoding spec, "Base 128 Varints" and "Length-Delimited Records").

use base64::Engine as _;
use bytes::{BufMut, BytesMut};

/// The base64 used in JSON messages: standard alphabet, padded (RFC 4648 §4).
pub(crate) const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Appends `s` as a JSON string (RFC 8259 §7), escaped by `serde_json`.
pub(crate) fn put_json_str(out: &mut BytesMut, s: &str) {
    // serde_json's own escaping; writing into a `BytesMut` cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), s);
}

/// Appends `n` in decimal.
pub(crate) fn put_u64(out: &mut BytesMut, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `data` as a quoted base64 JSON string.
pub(crate) fn put_base64_str(out: &mut BytesMut, data: &[u8]) {
    // A slice is at most isize::MAX bytes long, so its base64 length never overflows.
    let len = data.len().div_ceil(3) * 4;
    out.reserve(len + 2);
    out.put_u8(b'"');
    let start = out.len();
    out.resize(start + len, 0);
    let written = BASE64
        .encode_slice(data, &mut out[start..])
        .unwrap_or_default();
    debug_assert_eq!(written, len, "base64 output sized exactly");
    out.truncate(start + written);
    out.put_u8(b'"');
}

/// Appends `value` as a protobuf base-128 varint.
pub(crate) fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        // Truncation intended: the low seven bits plus the continuation bit.
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// The number of bytes [`put_varint`] writes for `value`.
pub(crate) const fn varint_len(value: u64) -> usize {
    // One byte per started group of seven significant bits; zero takes one byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// The protobuf key byte of field `number` with wire type `wire_type` (fields 1..=15 only).
pub(crate) const fn key(number: u8, wire_type: u8) -> u8 {
    (number << 3) | wire_type
}

/// Wire type 0: varint.
pub(crate) const VARINT: u8 = 0;
/// Wire type 2: length-delimited.
pub(crate) const LEN: u8 = 2;

/// The encoded length of a length-delimited field (fields 1..=15) with a body of `len` bytes.
pub(crate) const fn len_field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Appends a length-delimited field (fields 1..=15): key, length, body.
pub(crate) fn put_len_field(out: &mut BytesMut, number: u8, body: &[u8]) {
    out.reserve(len_field_len(body.len()));
    out.put_u8(key(number, LEN));
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> String {
        let mut out = BytesMut::new();
        put_json_str(&mut out, s);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn json_strings_match_serde_json() {
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        for s in [
            "",
            "plain",
            "quote\" backslash\\ slash/",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "ünïcödé ✓ 😀",
            "\"\"",
            all_controls.as_str(),
        ] {
            assert_eq!(json(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
        assert_eq!(json("a\u{1}b"), r#""a\u0001b""#);
    }

    #[test]
    fn numbers_and_base64() {
        let mut out = BytesMut::new();
        put_u64(&mut out, 0);
        out.put_u8(b' ');
        put_u64(&mut out, u64::MAX);
        out.put_u8(b' ');
        put_base64_str(&mut out, b"");
        put_base64_str(&mut out, b"f");
        put_base64_str(&mut out, b"fo");
        put_base64_str(&mut out, b"foo");
        put_base64_str(&mut out, &[0xfb, 0xff]);
        assert_eq!(
            &out[..],
            &b"0 18446744073709551615 \"\"\"Zg==\"\"Zm8=\"\"Zm9v\"\"+/8=\""[..]
        );
    }

    #[test]
    fn varints_match_prost() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            1 << 53,
            u64::MAX,
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            // A length delimiter is a plain varint.
            let mut expected = Vec::new();
            prost::encode_length_delimiter(usize::try_from(v).unwrap(), &mut expected).unwrap();
            assert_eq!(&out[..], &expected[..], "{v}");
            assert_eq!(varint_len(v), out.len(), "{v}");
        }
        let mut out = BytesMut::new();
        put_varint(&mut out, 300);
        assert_eq!(&out[..], &[0xac, 0x02]);
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(u64::MAX), 10);
    }

    #[test]
    fn len_fields() {
        let mut out = BytesMut::new();
        put_len_field(&mut out, 1, b"g");
        assert_eq!(&out[..], &[0x0a, 0x01, b'g']);
        assert_eq!(len_field_len(1), 3);
        assert_eq!(len_field_len(200), 203);
    }
}
