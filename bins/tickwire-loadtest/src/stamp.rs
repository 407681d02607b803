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
//! - **quotes** (`/proxy` and Socket.IO `/market`, mode 2): the same tick; the `market_data` message
//!   shows `price` as `ltp` (`7.0`: a whole float, written exactly) and the
//!   publish item's `volume` as the quote's `volume` (an integer); the symbol
//!   `LT0001/USD` on exchange `CRYPTO` names the topic.
//! - **bars** (`/api/v1/ws`): a `bars.update` names no symbol and carries no
//!   time of its own; only `close`, the price of the last tick, is per tick.
//!   The tick's price is `{seq}.{sent_us mod 10^8, 8 digits}` (see
//!   [`push_bar_price`]): at most 15 significant digits, so the `f64` the
//!   server parses and prints back (shortest round-trip form) reads back to
//!   the same two integers. The receiver takes the send time as the latest
//!   instant not after its own clock with those low 8 digits: exact while the
//!   latency is under 100 s. The topic is the connection's only one.

use std::time::{SystemTime, UNIX_EPOCH};

/// The marker that starts a raw stamp.
const RAW_MARKER: &[u8; 3] = b"lt:";

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
    const SYMBOL: &[u8; 10] = br#""symbol":""#;
    const PRICE: &[u8; 8] = br#""price":"#;
    /// The symbol's end and the price's key, as `/ws` writes them.
    const TO_PRICE: &[u8] = br#"","price":"#;
    const VOLUME: &[u8; 7] = br#""volume"#;
    let body = frame.strip_prefix(TYPE)?;
    // Where the keys are where tickwire writes them, take them there
    // (this runs once per delivery); search for them otherwise.
    let at = if body.starts_with(SYMBOL) {
        TYPE.len() + SYMBOL.len()
    } else {
        find(frame, SYMBOL, TYPE.len())? + SYMBOL.len()
    };
    let ticker = frame.get(at..)?;
    if !ticker.get(..2)?.eq_ignore_ascii_case(b"lt") {
        return None;
    }
    let (number, after) = take_u64(&ticker[2..])?;
    let topic = usize::try_from(number).ok()?.checked_sub(1)?;
    let at = if after.starts_with(TO_PRICE) {
        frame.len() - after.len() + TO_PRICE.len()
    } else {
        find(frame, PRICE, at)? + PRICE.len()
    };
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

/// Quote messages of `/proxy`: `{"type":"market_data","symbol":"LT0042/USD",…,"data":{"ltp":7.0,…,"volume":1763787704123456,…}}`
/// (mode 2; `ltp` is the sequence number, `volume` the send time), or `None`
/// for any other message.
pub fn find_quote(frame: &[u8]) -> Option<Stamp> {
    const TYPE: &[u8] = br#"{"type":"market_data","symbol":""#;
    const LTP: &[u8; 6] = br#""ltp":"#;
    const VOLUME: &[u8; 9] = br#""volume":"#;
    let ticker = frame.strip_prefix(TYPE)?;
    if !ticker.get(..2)?.eq_ignore_ascii_case(b"lt") {
        return None;
    }
    let (number, _) = take_u64(&ticker[2..])?;
    let topic = usize::try_from(number).ok()?.checked_sub(1)?;
    let at = find(frame, LTP, TYPE.len())? + LTP.len();
    let (seq, rest) = take_whole(&frame[at..])?;
    if !rest.starts_with(b",") && !rest.starts_with(b"}") {
        return None;
    }
    let at = find(frame, VOLUME, at)? + VOLUME.len();
    let (sent_us, rest) = take_u64(&frame[at..])?;
    if !rest.starts_with(b",") && !rest.starts_with(b"}") {
        return None;
    }
    Some(Stamp {
        topic,
        seq,
        sent_us,
    })
}

/// [`find_quote`] in a Socket.IO `market_data` event of the `/market`
/// namespace: `42/market,["market_data",{"type":"market_data",…}]`.
pub fn find_socketio_quote(packet: &[u8]) -> Option<Stamp> {
    const EVENT: &[u8] = br#"42/market,["market_data","#;
    find_quote(packet.strip_prefix(EVENT)?)
}

/// A whole number as an integer or a float with a zero fraction (`7`,
/// `7.0`) and what follows it.
fn take_whole(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (n, rest) = take_u64(bytes)?;
    let Some(fraction) = rest.strip_prefix(b".") else {
        return Some((n, rest));
    };
    let zeros = fraction.iter().take_while(|&&b| b == b'0').count();
    let rest = &fraction[zeros..];
    (zeros > 0 && !rest.first().is_some_and(u8::is_ascii_digit)).then_some((n, rest))
}

/// Decimal places of a bar price: the send time modulo 10^8 µs (100 s).
const BAR_TIME_DIGITS: usize = 8;
/// 10^[`BAR_TIME_DIGITS`].
const BAR_TIME_MODULUS: u64 = 100_000_000;
/// The largest sequence number a bar price carries: 7 digits, so that with
/// the 8 of the time the price has at most 15 significant digits and
/// survives the server's `f64` unchanged.
pub const BAR_MAX_SEQ: u64 = 9_999_999;

/// Appends the price of a bar-carried stamp: `{seq}.{sent_us mod 10^8}`
/// with 8 decimals (`7.04123456`). `seq` must be at most [`BAR_MAX_SEQ`].
pub fn push_bar_price(out: &mut String, seq: u64, sent_us: u64) {
    push_u64(out, seq);
    out.push('.');
    let mut low = String::with_capacity(BAR_TIME_DIGITS);
    push_u64(&mut low, sent_us % BAR_TIME_MODULUS);
    out.extend(std::iter::repeat_n('0', BAR_TIME_DIGITS - low.len()));
    out.push_str(&low);
}

/// The sequence number and the send time of the bar price `price`, read at
/// `now_us`: the send time is the latest instant not after `now_us` whose
/// low 8 digits (µs) are the price's decimals. `None` for a price that no
/// stamp makes.
pub fn bar_stamp(price: f64, now_us: u64) -> Option<(u64, u64)> {
    if !(price.is_finite() && price >= 0.0 && price < (BAR_MAX_SEQ + 1) as f64) {
        return None;
    }
    // Below 10^15 < 2^53 the product is within 0.25 of the integer the
    // decimals spell, even from an `f64` one unit off: rounding restores it.
    let n = (price * BAR_TIME_MODULUS as f64).round() as u64;
    let (seq, low) = (n / BAR_TIME_MODULUS, n % BAR_TIME_MODULUS);
    let age = (now_us % BAR_TIME_MODULUS + BAR_TIME_MODULUS - low) % BAR_TIME_MODULUS;
    Some((seq, now_us.checked_sub(age)?))
}

/// The stamp of a `bars.update` of `/api/v1/ws`
/// (`{"type":"bars.update","payload":{"time":…,"open":…,"close":7.04123456,…}}`)
/// on `topic`, read at `now_us`, or `None` for any other message.
pub fn find_bar(frame: &[u8], topic: usize, now_us: u64) -> Option<Stamp> {
    const TYPE: &[u8] = br#"{"type":"bars.update","payload":{"#;
    const CLOSE: &[u8; 8] = br#""close":"#;
    if !frame.starts_with(TYPE) {
        return None;
    }
    let at = find(frame, CLOSE, TYPE.len())? + CLOSE.len();
    let rest = &frame[at..];
    let len = rest.iter().position(|&b| b == b',' || b == b'}')?;
    let price: f64 = std::str::from_utf8(&rest[..len]).ok()?.parse().ok()?;
    let (seq, sent_us) = bar_stamp(price, now_us)?;
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
    // One pass: digits are read and counted together.
    let mut n = 0u64;
    let mut len = 0;
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        if len == 19 {
            return None;
        }
        n = n * 10 + u64::from(digit);
        len += 1;
    }
    (len > 0).then(|| (n, &bytes[len..]))
}

/// The first position of `needle` in `haystack` at or after `from`. The
/// needle's length is a constant, so each candidate is compared inline
/// rather than by a `memcmp` call.
fn find<const N: usize>(haystack: &[u8], needle: &[u8; N], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = from;
    while at + N <= haystack.len() {
        let offset = haystack[at..].iter().position(|&b| b == first)?;
        at += offset;
        let window: &[u8; N] = haystack.get(at..at + N)?.try_into().ok()?;
        if window == needle {
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
    fn quotes_of_both_reply_styles() {
        let documented = br#"{"type":"market_data","symbol":"LT0042/USD","exchange":"CRYPTO","mode":2,"data":{"ltp":7.0,"open":7.0,"high":7.0,"low":7.0,"close":7.0,"volume":1763787704123456,"bid":7.0,"ask":7.0,"bid_qty":0,"ask_qty":0,"timestamp":1763787704123}}"#;
        assert_eq!(find_quote(documented), Some(STAMP));
        let openalgo = br#"{"type":"market_data","symbol":"LT0042/USD","exchange":"CRYPTO","mode":2,"data":{"ltp":7,"open":7,"high":7,"low":7,"close":7,"volume":1763787704123456,"bid":7,"ask":7,"bid_qty":0,"ask_qty":0,"last_trade_quantity":0,"change":0.0,"change_percent":0.0,"timestamp":1},"broker":"publish"}"#;
        assert_eq!(find_quote(openalgo), Some(STAMP));
    }

    #[test]
    fn quotes_in_socketio_events() {
        let event = br#"42/market,["market_data",{"type":"market_data","symbol":"LT0042/USD","exchange":"CRYPTO","mode":2,"data":{"ltp":7.0,"volume":1763787704123456,"timestamp":1}}]"#;
        assert_eq!(find_socketio_quote(event), Some(STAMP));
        for packet in [
            &br#"{"type":"market_data","symbol":"LT0042/USD","exchange":"CRYPTO","mode":2,"data":{"ltp":7.0,"volume":1763787704123456}}"#[..],
            br#"42/market,["connected",{"status":"ok"}]"#,
            br#"43/market,1[{"status":"success"}]"#,
            br#"42/other,["market_data",{"type":"market_data","symbol":"LT0042/USD","exchange":"CRYPTO","mode":2,"data":{"ltp":7.0,"volume":1763787704123456}}]"#,
            b"2",
        ] {
            assert_eq!(find_socketio_quote(packet), None, "{}", String::from_utf8_lossy(packet));
        }
    }

    #[test]
    fn other_messages_have_no_quote_stamp() {
        for frame in [
            &br#"{"type":"auth_response","status":"success","message":"Authentication successful"}"#[..],
            br#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":2,"data":{"ltp":2850.5,"volume":1500000}}"#,
            br#"{"type":"market_data","symbol":"LT0001/USD","exchange":"CRYPTO","mode":2,"data":{"ltp":7.5,"volume":1}}"#,
            br#"{"type":"market_data","symbol":"LT0001/USD","exchange":"CRYPTO","mode":2,"data":{"ltp":7.,"volume":1}}"#,
            br#"{"type":"market_data","symbol":"LT0001/USD","exchange":"CRYPTO","mode":2,"data":{"ltp":7.0,"volume":1.5}}"#,
            br#"{"type":"market_data","symbol":"LT0001/USD","exchange":"CRYPTO","mode":1,"data":{"ltp":7.0,"timestamp":1}}"#,
            br#"{"type":"market_data","symbol":"LT0000/USD","exchange":"CRYPTO","mode":2,"data":{"ltp":7.0,"volume":1}}"#,
            br#"{"type":"market_data","symbol":"L"#,
            b"",
        ] {
            assert_eq!(find_quote(frame), None, "{}", String::from_utf8_lossy(frame));
        }
    }

    /// What the server does to a published price: parse it into an `f64`
    /// and print the shortest form that reads back the same.
    fn through_server(price: &str) -> String {
        let v: f64 = price.parse().unwrap();
        serde_json::Number::from_f64(v).unwrap().to_string()
    }

    #[test]
    fn bar_prices_survive_the_server_and_decode_exactly() {
        for (seq, sent_us, latency_us) in [
            (1, 1_763_787_704_123_456, 0),
            (7, 1_763_787_704_123_456, 250),
            (BAR_MAX_SEQ, 1_763_787_704_123_456, 99_999_999),
            (1_234_567, 1_763_787_799_999_999, 1_000_000),
            // Low digits all zero: the price is printed as `42.0`.
            (42, 1_763_787_800_000_000, 31),
            (3, 1_763_787_800_000_100, 7),
        ] {
            let mut price = String::new();
            push_bar_price(&mut price, seq, sent_us);
            let (int, frac) = price.split_once('.').unwrap();
            assert_eq!((int, frac.len()), (seq.to_string().as_str(), 8), "{price}");
            let echoed = through_server(&price);
            let frame = format!(
                r#"{{"type":"bars.update","payload":{{"time":1763787660000,"open":1.0,"high":{echoed},"low":1.0,"close":{echoed},"volume":0}}}}"#
            );
            assert_eq!(
                find_bar(frame.as_bytes(), 3, sent_us + latency_us),
                Some(Stamp {
                    topic: 3,
                    seq,
                    sent_us
                }),
                "{price} -> {echoed}"
            );
        }
    }

    #[test]
    fn bar_prices_one_unit_off_still_decode() {
        let mut price = String::new();
        push_bar_price(&mut price, BAR_MAX_SEQ, 99_999_999);
        let v: f64 = price.parse().unwrap();
        for off in [v.next_down(), v, v.next_up()] {
            assert_eq!(bar_stamp(off, 99_999_999), Some((BAR_MAX_SEQ, 99_999_999)));
        }
    }

    #[test]
    fn bar_times_wrap_every_100_seconds() {
        let mut price = String::new();
        push_bar_price(&mut price, 5, 1_700_000_099_999_990);
        let v: f64 = price.parse().unwrap();
        // Received 20 µs later, past a multiple of 10^8.
        assert_eq!(
            bar_stamp(v, 1_700_000_100_000_010),
            Some((5, 1_700_000_099_999_990))
        );
        // A latency of 100 s or more reads as its remainder: the limit.
        assert_eq!(
            bar_stamp(v, 1_700_000_200_000_000),
            Some((5, 1_700_000_199_999_990))
        );
    }

    #[test]
    fn other_messages_have_no_bar_stamp() {
        for frame in [
            &br#"{"type":"bars.subscribe.response","payload":{"status":"ok","symbol":"LT0001/USD","message":"Subscribed to LT0001/USD","topic":"bars:LT0001/USD:1"}}"#[..],
            br#"{"type":"bars.update","payload":{"time":1,"open":1.0,"high":1.0,"low":1.0,"close":10000000.5,"volume":0}}"#,
            br#"{"type":"bars.update","payload":{"time":1,"close":-1.0,"volume":0}}"#,
            br#"{"type":"bars.update","payload":{"time":1,"close":null,"volume":0}}"#,
            br#"{"type":"bars.update","payload":{"time":1,"close":1.5"#,
            b"",
        ] {
            assert_eq!(find_bar(frame, 0, 1), None, "{}", String::from_utf8_lossy(frame));
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
