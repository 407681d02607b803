//! Property tests: no input panics either parser, well-formed commands parse back, every
//! encoded message is valid JSON carrying exactly its values, and timestamps name the
//! instant they were given.

mod common;

use proptest::prelude::*;
use serde_json::{Value, json};
use tickwire_json::stream::{self, StreamCommand, StreamError};
use tickwire_json::timestamp::{MAX_UNIX_MS, MIN_UNIX_MS, rfc3339_millis};
use tickwire_json::ws::{self, Channel, Channels, WsCommand};
use tickwire_model::market::{Instrument, SignalDirection};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop::sample::select(vec!["subscribe", "unsubscribe", "ping", "btc", "price"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["type", "symbols", "assets", "channels", "x"])
                    .prop_map(String::from),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        (-1e12..1e12_f64),
        (-1_000_000_i64..1_000_000).prop_map(|n| n as f64),
        Just(f64::NAN),
        Just(f64::INFINITY),
    ]
}

/// The scalar tokens (numbers and `null`) of compact JSON text outside strings, in order.
/// Numbers are compared as text parsed by the standard library, which rounds correctly
/// (`serde_json` without `float_roundtrip` may be off by one unit in the last place).
fn scalars(json: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(json).expect("UTF-8");
    let (mut out, mut current) = (Vec::new(), String::new());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_alphanumeric() || "+-.".contains(c) {
            current.push(c);
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// Whether `token` is what the encoder must write for `expected`: the same `f64`, or
/// `null` when it is not finite.
fn same_number(token: &str, expected: f64) -> bool {
    if expected.is_finite() {
        token.parse::<f64>() == Ok(expected)
    } else {
        token == "null"
    }
}

fn same_numbers(tokens: &[String], expected: &[f64]) -> bool {
    tokens.len() == expected.len() && tokens.iter().zip(expected).all(|(t, &e)| same_number(t, e))
}

/// Days since 1970-01-01 of a civil date (Hinnant's `days_from_civil`), to read back the
/// formatter's output independently of it.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn field(s: &str, range: std::ops::Range<usize>) -> i64 {
    s[range].parse().expect("digits")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), max in 0_usize..300) {
        let _ = ws::parse(&bytes);
        let _ = ws::parse_limited(&bytes, max);
        let _ = stream::parse(&bytes);
        let _ = stream::parse_limited(&bytes, max);
    }

    #[test]
    fn arbitrary_json_never_panics_and_errors_keep_their_codes(value in json_value()) {
        let text = value.to_string();
        if let Err(err) = ws::parse(text.as_bytes()) {
            prop_assert_eq!(err.code(), ws::WsErrorCode::InvalidMessage);
            let frame: Value = serde_json::from_slice(&ws::encode_error(&err)).expect("JSON");
            prop_assert_eq!(&frame["code"], "invalid_message");
        }
        match stream::parse(text.as_bytes()) {
            Err(StreamError::Validation(_)) | Ok(_) => {}
            Err(StreamError::SubscriptionLimit { requested, max }) => {
                prop_assert!(requested > max);
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn ws_commands_parse_back(
        symbols in prop::collection::vec(any::<String>(), 1..8),
        channels in prop::option::of(prop::collection::vec(prop::sample::select(Channel::ALL.to_vec()), 1..4)),
        alias in any::<bool>(),
        subscribe in any::<bool>(),
    ) {
        let mut msg = json!({ "type": if subscribe { "subscribe" } else { "unsubscribe" } });
        msg[if alias { "assets" } else { "symbols" }] = json!(symbols);
        if let Some(channels) = &channels {
            msg["channels"] = channels.iter().map(|c| c.as_str()).collect();
        }
        let set = channels.map(|c| c.into_iter().collect::<Channels>());
        let expected = if subscribe {
            WsCommand::Subscribe { symbols, channels: set.unwrap_or(Channels::DEFAULT) }
        } else {
            WsCommand::Unsubscribe { symbols, channels: set.unwrap_or(Channels::ALL) }
        };
        prop_assert_eq!(ws::parse(msg.to_string().as_bytes()), Ok(expected));
    }

    #[test]
    fn stream_subscribes_parse_back_or_hit_the_limit(symbols in prop::collection::vec(any::<String>(), 1..16)) {
        let msg = json!({ "type": "subscribe", "symbols": symbols }).to_string();
        let result = stream::parse(msg.as_bytes());
        if symbols.len() > stream::MAX_SYMBOLS {
            prop_assert_eq!(result, Err(StreamError::SubscriptionLimit { requested: symbols.len(), max: 10 }));
        } else {
            prop_assert_eq!(result, Ok(StreamCommand::Subscribe { symbols }));
        }
    }

    #[test]
    fn ticks_encode_to_json_with_their_values(
        base in "[A-Za-z0-9\"\\\\é]{1,8}",
        source in any::<String>(),
        price in any_f64(),
        change in any_f64(),
        volume in prop::option::of(any_f64()),
        ts in any::<i64>(),
    ) {
        let mut t = common::tick("X/USD", price, change, volume, ts);
        t.instrument = Instrument::crypto(format!("{base}/USD"));
        t.source = source.clone().into();

        let v: Value = serde_json::from_slice(&ws::encode_tick(&t)).expect("ws JSON");
        let lower = base.to_ascii_lowercase();
        prop_assert_eq!(v["symbol"].as_str(), Some(lower.as_str()));
        let volume = volume.unwrap_or(f64::NAN);
        let numbers = scalars(&ws::encode_tick(&t));
        prop_assert!(same_numbers(&numbers[..3], &[price, change, volume]), "{:?}", numbers);
        prop_assert_eq!(v["timestamp"].as_i64(), Some(ts));

        let v: Value = serde_json::from_slice(&stream::encode_tick(&t)).expect("stream JSON");
        prop_assert_eq!(v["symbol"].as_str(), Some(&*t.instrument.symbol));
        let numbers = scalars(&stream::encode_tick(&t));
        prop_assert!(same_numbers(&numbers, &[price, volume]), "{:?}", numbers);
        prop_assert_eq!(v["source"].as_str(), Some(source.as_str()));
        let iso = rfc3339_millis(ts);
        prop_assert_eq!(v["timestamp"].as_str(), Some(iso.as_str()));
    }

    #[test]
    fn integral_figures_print_without_a_fraction(n in -(1_i64 << 53) + 1..(1_i64 << 53)) {
        let t = common::tick("BTC/USD", n as f64, 0.0, Some(n as f64), 0);
        let frame = ws::encode_tick(&t);
        let text = std::str::from_utf8(&frame).expect("UTF-8");
        let expected = format!(r#""price":{n},"#);
        prop_assert!(text.contains(&expected), "{}", text);
    }

    #[test]
    fn books_and_signals_encode_to_json(
        levels in prop::collection::vec((any_f64(), any_f64()), 0..12),
        depth in 0_usize..16,
        indicator in any::<String>(),
        value in any_f64(),
        confidence in any_f64(),
    ) {
        let side: Vec<_> = levels.iter().map(|&(p, q)| common::level(p, q)).collect();
        let b = common::book("ETH/USD", side.clone(), side, 1);
        let v: Value = serde_json::from_slice(&ws::encode_book(&b, depth)).expect("book JSON");
        let bids = v["bids"].as_array().expect("bids");
        prop_assert_eq!(bids.len(), levels.len().min(depth));
        let side: Vec<f64> = levels.iter().take(depth).flat_map(|&(p, q)| [p, q]).collect();
        let numbers = scalars(&ws::encode_book(&b, depth));
        prop_assert!(same_numbers(&numbers[..side.len()], &side), "{:?}", numbers);
        prop_assert!(same_numbers(&numbers[side.len()..2 * side.len()], &side), "{:?}", numbers);
        let s = common::signal("ETH/USD", &indicator, SignalDirection::Sell, value, confidence, 2);
        let v: Value = serde_json::from_slice(&ws::encode_signal(&s)).expect("signal JSON");
        prop_assert_eq!(v["indicator"].as_str(), Some(indicator.as_str()));
        let numbers = scalars(&ws::encode_signal(&s));
        prop_assert!(same_numbers(&numbers[..2], &[value, confidence]), "{:?}", numbers);
    }

    #[test]
    fn confirmations_carry_any_symbols(symbols in prop::collection::vec(any::<String>(), 0..6), now in any::<i64>()) {
        let v: Value = serde_json::from_slice(&stream::encode_subscribed(&symbols, now)).expect("JSON");
        prop_assert_eq!(&v["symbols"], &json!(symbols));
        let v: Value = serde_json::from_slice(&stream::encode_unsubscribed(&symbols, now)).expect("JSON");
        prop_assert_eq!(&v["type"], "unsubscribed");
    }

    #[test]
    fn timestamps_name_the_instant(ms in MIN_UNIX_MS..=MAX_UNIX_MS) {
        let ts = rfc3339_millis(ms);
        let s = ts.as_str();
        prop_assert_eq!(s.len(), 24);
        prop_assert_eq!(&s[4..5], "-");
        prop_assert_eq!(&s[10..11], "T");
        prop_assert_eq!(&s[23..], "Z");
        let (month, day) = (field(s, 5..7), field(s, 8..10));
        prop_assert!((1..=12).contains(&month) && (1..=31).contains(&day));
        let days = days_from_civil(field(s, 0..4), month, day);
        let read_back = days * 86_400_000
            + field(s, 11..13) * 3_600_000
            + field(s, 14..16) * 60_000
            + field(s, 17..19) * 1_000
            + field(s, 20..23);
        prop_assert_eq!(read_back, ms);
    }

    #[test]
    fn timestamps_sort_as_instants(a in MIN_UNIX_MS..=MAX_UNIX_MS, b in MIN_UNIX_MS..=MAX_UNIX_MS) {
        prop_assert_eq!(rfc3339_millis(a).as_str().cmp(rfc3339_millis(b).as_str()), a.cmp(&b));
    }
}
