//! Stamps: what each published update carries so that the receiver can
//! measure its latency and notice gaps, on one clock.
//!
//! A stamp is the topic, a per-topic sequence number (from 1) and the send
//! time in microseconds of `CLOCK_REALTIME` (publisher and subscribers run on
//! the same machine, so one clock serves both ends). It travels in the
//! update itself:
//!
//! - **raw group payloads** (pubsub): the text `lt:{topic}:{seq}:{sent_us};`
//!   followed by `x` padding up to the payload size. Receivers find it by
//!   scanning the frame for `lt:`: it is the same bytes in a JSON
//!   `dataType: text` message and in a protobuf `text_data` field, so neither
//!   is parsed.
//! - **ticks** (`/ws`, `/stream`): `price` is the sequence number and
//!   `volume` the send time (both integers below 2^53, so the server's JSON
//!   writes them exactly); the symbol (`lt0001`, `LT0001/USD`) names the
//!   topic. Receivers read the three numbers by scanning for their keys in
//!   the fixed key order of a `price_update`.

use std::time::{SystemTime, UNIX_EPOCH};

/// The marker that starts a raw stamp.
const RAW_MARKER: &[u8] = b"lt:";

/// What a receiver reads off an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The topic (0-based).
    pub topic: usize,
    /// The topic's sequence number, from 1.
    pub seq: u64,
    /// When the update was published, microseconds since the Unix epoch.
    pub sent_us: u64,
}

/// Now, in microseconds since the Unix epoch (`CLOCK_REALTIME`).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Appends the raw payload of `stamp`, padded with `x` to `payload` bytes
/// (never shorter than the stamp itself).
pub fn push_raw(out: &mut String, stamp: Stamp, payload: usize) {
    let start = out.len();
    out.push_str("lt:");
    push_u64(out, stamp.topic as u64);
    out.push(':');
    push_u64(out, stamp.seq);
    out.push(':');
    push_u64(out, stamp.sent_us);
    out.push(';');
    let written = out.len() - start;
    out.extend(std::iter::repeat_n('x', payload.saturating_sub(written)));
}

/// The stamp of a raw payload somewhere in `frame`, if there is one.
pub fn find_raw(frame: &[u8]) -> Option<Stamp> {
    let mut from = 0;
    while let Some(at) = find(frame, RAW_MARKER, from) {
        let rest = &frame[at + RAW_MARKER.len()..];
        if let Some(stamp) = parse_raw_fields(rest) {
            return Some(stamp);
        }
        from = at + 1;
    }
    None
}

/// `{topic}:{seq}:{sent_us};`
fn parse_raw_fields(rest: &[u8]) -> Option<Stamp> {
    let (topic, rest) = take_u64(rest)?;
    let rest = rest.strip_prefix(b":")?;
    let (seq, rest) = take_u64(rest)?;
    let rest = rest.strip_prefix(b":")?;
    let (sent_us, rest) = take_u64(rest)?;
    rest.starts_with(b";").then_some(())?;
    Some(Stamp {
        topic: usize::try_from(topic).ok()?,
        seq,
        sent_us,
    })
}

/// The stamp of a `price_update` of `/ws` or `/stream`
/// (`{"type":"price_update","symbol":"lt0001","price":7,...,"volume_24h":1700000000000000,...}`),
/// or `None` for any other message.
pub fn find_tick(frame: &[u8]) -> Option<Stamp> {
    const TYPE: &[u8] = br#"{"type":"price_update","#;
    const SYMBOL: &[u8] = br#""symbol":""#;
    const PRICE: &[u8] = br#""price":"#;
    const VOLUME: &[u8] = br#""volume"#;
    if !frame.starts_with(TYPE) {
        return None;
    }
    let at = find(frame, SYMBOL, TYPE.len())? + SYMBOL.len();
    let ticker = frame.get(at..)?;
    if !ticker.get(..2)?.eq_ignore_ascii_case(b"lt") {
        return None;
    }
    let (number, _) = take_u64(&ticker[2..])?;
    let topic = usize::try_from(number).ok()?.checked_sub(1)?;
    let at = find(frame, PRICE, at)? + PRICE.len();
    let (seq, rest) = take_u64(&frame[at..])?;
    if !rest.starts_with(b",") {
        return None;
    }
    let at = find(frame, VOLUME, at)? + VOLUME.len();
    let colon = at + frame[at..].iter().position(|&b| b == b':')? + 1;
    let (sent_us, _) = take_u64(&frame[colon..])?;
    Some(Stamp {
        topic,
        seq,
        sent_us,
    })
}

/// The decimal integer `digits` (no sign, no leading `+`, at most 19 digits).
pub fn parse_u64(digits: &[u8]) -> Option<u64> {
    match take_u64(digits)? {
        (n, []) => Some(n),
        _ => None,
    }
}

/// The leading decimal integer of `bytes` and what follows it.
fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || len > 19 {
        return None;
    }
    let n = bytes[..len]
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    Some((n, &bytes[len..]))
}

/// The first position of `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = from;
    while at + needle.len() <= haystack.len() {
        let offset = haystack[at..].iter().position(|&b| b == first)?;
        at += offset;
        if haystack.get(at..at + needle.len())? == needle {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        topic: 41,
        seq: 7,
        sent_us: 1_763_787_704_123_456,
    };

    #[test]
    fn raw_round_trip_and_padding() {
        let mut s = String::new();
        push_raw(&mut s, STAMP, 0);
        assert_eq!(s, "lt:41:7:1763787704123456;");
        assert_eq!(find_raw(s.as_bytes()), Some(STAMP));

        let mut s = String::from("prefix ");
        push_raw(&mut s, STAMP, 100);
        assert_eq!(s.len(), 7 + 100);
        assert!(s.ends_with("xxx"));
        assert_eq!(find_raw(s.as_bytes()), Some(STAMP));
    }

    #[test]
    fn raw_stamps_are_found_in_both_wire_formats() {
        let mut data = String::new();
        push_raw(&mut data, STAMP, 64);
        let json = format!(
            r#"{{"type":"message","from":"group","group":"blue_LT0042_state_gex_zero","dataType":"text","data":"{data}"}}"#
        );
        assert_eq!(find_raw(json.as_bytes()), Some(STAMP));
        // A protobuf DataMessage: field tags and lengths around the same text.
        let mut proto = vec![0x12, 0x50, 0x0a, 0x05];
        proto.extend_from_slice(b"group");
        proto.extend_from_slice(&[0x12, 0x1a]);
        proto.extend_from_slice(b"blue_LT0042_state_gex_zero");
        proto.extend_from_slice(&[0x1a, 0x42, 0x0a, 0x40]);
        proto.extend_from_slice(data.as_bytes());
        assert_eq!(find_raw(&proto), Some(STAMP));
    }

    #[test]
    fn raw_lookalikes_are_skipped() {
        assert_eq!(find_raw(b""), None);
        assert_eq!(find_raw(b"lt:"), None);
        assert_eq!(find_raw(b"lt:1:2:3"), None);
        assert_eq!(find_raw(b"salt:1:x lt:1:2:"), None);
        assert_eq!(
            find_raw(b"salt:9; lt:1:2:3;"),
            Some(Stamp {
                topic: 1,
                seq: 2,
                sent_us: 3
            })
        );
        assert_eq!(find_raw(b"lt:1:2:99999999999999999999;"), None);
    }

    #[test]
    fn ticks_of_both_dialects() {
        let ws = br#"{"type":"price_update","symbol":"lt0042","price":7,"change_24h":0,"volume_24h":1763787704123456,"timestamp":1763787704123}"#;
        assert_eq!(find_tick(ws), Some(STAMP));
        let stream = br#"{"type":"price_update","symbol":"LT0042/USD","price":7,"volume":1763787704123456,"timestamp":"2025-11-22T05:01:44.123Z","source":"xxxx"}"#;
        assert_eq!(find_tick(stream), Some(STAMP));
    }

    #[test]
    fn other_messages_have_no_tick_stamp() {
        for frame in [
            &br#"{"type":"pong","timestamp":1700000000000}"#[..],
            br#"{"type":"price_update","symbol":"btc","price":67234.56,"change_24h":2.34,"volume_24h":1,"timestamp":1}"#,
            br#"{"type":"price_update","symbol":"lt0001","price":7.5,"volume_24h":1,"timestamp":1}"#,
            br#"{"type":"price_update","symbol":"lt0001","price":7,"volume_24h":null}"#,
            br#"{"type":"price_update","symbol":"lt0000","price":7,"volume_24h":1}"#,
            br#"{"type":"price_update","symbol":"l"#,
            b"",
        ] {
            assert_eq!(find_tick(frame), None, "{}", String::from_utf8_lossy(frame));
        }
    }

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(
            parse_u64(b"18446744073709551"),
            Some(18_446_744_073_709_551)
        );
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"-1"), None);
        let mut s = String::new();
        push_u64(&mut s, 0);
        push_u64(&mut s, u64::MAX);
        assert_eq!(s, format!("0{}", u64::MAX));
        assert!(now_us() > 1_600_000_000_000_000);
    }
}
