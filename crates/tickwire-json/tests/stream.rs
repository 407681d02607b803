//! The `/stream` dialect against its document (seed 002): every server message byte for
//! byte, every client message, every error code and limit.

mod common;

use common::{compact, tick};
use tickwire_json::ParseError;
use tickwire_json::stream::{
    self, Limits, StreamCommand, StreamError, StreamErrorCode, encode_error, encode_pong,
    encode_subscribed, encode_tick, encode_unsubscribed, parse, parse_limited, parse_with,
};

/// 2025-10-10T14:30:00.000Z, the documents' timestamp.
const T0: i64 = 1_760_106_600_000;

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8")
}

fn invalid(error: ParseError) -> Result<StreamCommand, StreamError> {
    Err(StreamError::Validation(error))
}

fn subscribe_with(entries: &[&str]) -> String {
    format!(
        r#"{{"type":"subscribe","symbols":[{}]}}"#,
        entries.join(",")
    )
}

// ------------------------------------------------------------------------------------
// Server messages
// ------------------------------------------------------------------------------------

#[test]
fn subscribed_matches_the_document() {
    let doc = r#"{
      "type": "subscribed",
      "symbols": ["BTC/USD", "ETH/USD"],
      "timestamp": "2025-10-10T14:30:00.000Z"
    }"#;
    assert_eq!(
        text(&encode_subscribed(["BTC/USD", "ETH/USD"], T0)),
        compact(doc)
    );
    let owned = vec![String::from("BTC/USD"), String::from("ETH/USD")];
    assert_eq!(
        encode_subscribed(&owned, T0),
        encode_subscribed(owned.iter(), T0)
    );
}

#[test]
fn unsubscribed_matches_the_document() {
    let doc = r#"{
      "type": "unsubscribed",
      "symbols": ["BTC/USD"],
      "timestamp": "2025-10-10T14:30:05.000Z"
    }"#;
    assert_eq!(
        text(&encode_unsubscribed(["BTC/USD"], T0 + 5_000)),
        compact(doc)
    );
    assert_eq!(
        text(&encode_unsubscribed(Vec::<&str>::new(), T0)),
        r#"{"type":"unsubscribed","symbols":[],"timestamp":"2025-10-10T14:30:00.000Z"}"#
    );
}

#[test]
fn price_update_matches_the_document() {
    let doc = r#"{
      "type": "price_update",
      "symbol": "BTC/USD",
      "price": 45123.5,
      "volume": 1234567.89,
      "timestamp": "2025-10-10T14:30:00.000Z",
      "source": "coinbase"
    }"#;
    let t = tick("BTC/USD", 45_123.5, 1.0, Some(1_234_567.89), T0);
    assert_eq!(text(&encode_tick(&t)), compact(doc));
}

#[test]
fn price_update_volume_may_be_null() {
    let mut t = tick("ETH/USD", 2_500.0, 1.0, None, T0 + 123);
    assert_eq!(
        text(&encode_tick(&t)),
        r#"{"type":"price_update","symbol":"ETH/USD","price":2500,"volume":null,"timestamp":"2025-10-10T14:30:00.123Z","source":"coinbase"}"#
    );
    t.volume_24h = Some(f64::NAN);
    t.price = f64::INFINITY;
    let value: serde_json::Value = serde_json::from_slice(&encode_tick(&t)).expect("JSON");
    assert!(value["volume"].is_null() && value["price"].is_null());
}

#[test]
fn pong_matches_the_document() {
    let doc = r#"{
      "type": "pong",
      "timestamp": "2025-10-10T14:30:00.000Z"
    }"#;
    assert_eq!(text(&encode_pong(T0)), compact(doc));
}

#[test]
fn error_matches_the_document() {
    let doc = r#"{
      "type": "error",
      "message": "Invalid message format",
      "code": "VALIDATION_ERROR",
      "timestamp": "2025-10-10T14:30:00.000Z"
    }"#;
    let err = parse(b"{").expect_err("malformed");
    assert_eq!(text(&encode_error(&err, T0)), compact(doc));
}

#[test]
fn every_error_code_encodes_with_the_documents_message() {
    let errors = [
        StreamError::Validation(ParseError::MissingField { field: "type" }),
        StreamError::Unauthorized,
        StreamError::SubscriptionLimit {
            requested: 11,
            max: 10,
        },
        StreamError::UnknownSymbol {
            symbol: "DOGE/EUR".into(),
        },
    ];
    let expected = [
        r#"{"type":"error","message":"Invalid message format","code":"VALIDATION_ERROR","timestamp":"2025-10-10T14:30:00.000Z"}"#,
        r#"{"type":"error","message":"Authentication failed","code":"UNAUTHORIZED","timestamp":"2025-10-10T14:30:00.000Z"}"#,
        r#"{"type":"error","message":"Too many symbols","code":"SUBSCRIPTION_LIMIT","timestamp":"2025-10-10T14:30:00.000Z"}"#,
        r#"{"type":"error","message":"Symbol not found","code":"UNKNOWN_SYMBOL","timestamp":"2025-10-10T14:30:00.000Z"}"#,
    ];
    for ((err, expected), code) in errors.iter().zip(expected).zip(StreamErrorCode::ALL) {
        assert_eq!(err.code(), code);
        assert_eq!(text(&encode_error(err, T0)), expected);
    }
}

// ------------------------------------------------------------------------------------
// Client messages
// ------------------------------------------------------------------------------------

#[test]
fn the_documents_client_messages_parse() {
    let subscribe = r#"{
      "type": "subscribe",
      "symbols": ["BTC/USD", "ETH/USD"]
    }"#;
    assert_eq!(
        parse(subscribe.as_bytes()),
        Ok(StreamCommand::Subscribe {
            symbols: vec!["BTC/USD".into(), "ETH/USD".into()]
        })
    );
    assert_eq!(
        parse(br#"{"type":"unsubscribe","symbols":["BTC/USD"]}"#),
        Ok(StreamCommand::Unsubscribe {
            symbols: Some(vec!["BTC/USD".into()])
        })
    );
    // "omit to unsubscribe from all"; some clients serialise the omission as null.
    for all in [
        &br#"{"type":"unsubscribe"}"#[..],
        br#"{"type":"unsubscribe","symbols":null}"#,
    ] {
        assert_eq!(parse(all), Ok(StreamCommand::Unsubscribe { symbols: None }));
    }
    assert_eq!(
        parse(br#"{"type":"unsubscribe","symbols":[]}"#),
        Ok(StreamCommand::Unsubscribe {
            symbols: Some(vec![])
        })
    );
    assert_eq!(parse(br#"{"type":"ping"}"#), Ok(StreamCommand::Ping));
}

#[test]
fn subscribe_takes_one_to_ten_symbols() {
    let one = subscribe_with(&["\"BTC/USD\""]);
    assert!(
        matches!(parse(one.as_bytes()), Ok(StreamCommand::Subscribe { symbols }) if symbols.len() == 1)
    );
    let ten = subscribe_with(&["\"BTC/USD\""; 10]);
    assert!(
        matches!(parse(ten.as_bytes()), Ok(StreamCommand::Subscribe { symbols }) if symbols.len() == 10)
    );
    assert_eq!(
        parse(subscribe_with(&[]).as_bytes()),
        invalid(ParseError::InvalidField {
            field: "symbols",
            expected: "a non-empty array of strings",
        })
    );
}

#[test]
fn more_than_ten_symbols_is_a_subscription_limit_counted_first() {
    let limit = |requested| Err(StreamError::SubscriptionLimit { requested, max: 10 });
    let eleven = subscribe_with(&["\"BTC/USD\""; 11]);
    assert_eq!(parse(eleven.as_bytes()), limit(11));
    // Counted before the entries are checked: unknown symbols and non-strings alike.
    let odd = subscribe_with(&[
        "\"NOPE/NOPE\"",
        "1",
        "null",
        "[]",
        "{}",
        "\"x\"",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
    ]);
    assert_eq!(parse(odd.as_bytes()), limit(12));
    let err = parse(eleven.as_bytes()).expect_err("limit");
    assert_eq!(err.code(), StreamErrorCode::SubscriptionLimit);
    assert_eq!(err.message(), "Too many symbols");
    // A configurable limit.
    let limits = Limits {
        max_symbols: 2,
        ..Limits::default()
    };
    assert_eq!(
        parse_with(subscribe_with(&["\"A/B\""; 3]).as_bytes(), limits),
        Err(StreamError::SubscriptionLimit {
            requested: 3,
            max: 2
        })
    );
    // Unsubscribe names symbols to drop: no cap.
    let many = format!(
        r#"{{"type":"unsubscribe","symbols":[{}]}}"#,
        vec!["\"A/B\""; 20].join(",")
    );
    assert!(parse(many.as_bytes()).is_ok());
}

#[test]
fn malformed_messages_are_validation_errors() {
    let subscribe_expected = ParseError::InvalidField {
        field: "symbols",
        expected: "a non-empty array of strings",
    };
    let cases: Vec<(&[u8], ParseError)> = vec![
        (
            br#"{"symbols":["BTC/USD"]}"#,
            ParseError::MissingField { field: "type" },
        ),
        (
            br#"{"type":null}"#,
            ParseError::InvalidField {
                field: "type",
                expected: "a string",
            },
        ),
        (
            br#"{"type":"subscribed"}"#,
            ParseError::UnknownType {
                type_name: "subscribed".into(),
            },
        ),
        (
            br#"{"type":"subscribe"}"#,
            ParseError::MissingField { field: "symbols" },
        ),
        // `assets` is a /ws alias only.
        (
            br#"{"type":"subscribe","assets":["BTC/USD"]}"#,
            ParseError::MissingField { field: "symbols" },
        ),
        (
            br#"{"type":"subscribe","symbols":null}"#,
            subscribe_expected.clone(),
        ),
        (
            br#"{"type":"subscribe","symbols":"BTC/USD"}"#,
            subscribe_expected.clone(),
        ),
        (
            br#"{"type":"subscribe","symbols":["BTC/USD",7]}"#,
            subscribe_expected.clone(),
        ),
        (
            br#"{"type":"subscribe","symbols":{"0":"BTC/USD"}}"#,
            subscribe_expected,
        ),
        (
            br#"{"type":"unsubscribe","symbols":"BTC/USD"}"#,
            ParseError::InvalidField {
                field: "symbols",
                expected: "an array of strings",
            },
        ),
        (
            br#"{"type":"unsubscribe","symbols":[false]}"#,
            ParseError::InvalidField {
                field: "symbols",
                expected: "an array of strings",
            },
        ),
    ];
    for (input, expected) in cases {
        let result = parse(input);
        assert_eq!(result, invalid(expected), "{}", text(input));
        let err = result.unwrap_err();
        assert_eq!(err.code(), StreamErrorCode::ValidationError);
        assert_eq!(err.message(), "Invalid message format");
    }
    for garbage in [&b""[..], b"null", b"[1]", b"{\"type\":", b"\xc3\x28"] {
        assert!(
            matches!(
                parse(garbage),
                Err(StreamError::Validation(ParseError::Json { .. }))
            ),
            "{garbage:?}"
        );
    }
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(
        parse(br#"{"type":"subscribe","symbols":["BTC/USD"],"requestId":"r1","debug":true}"#),
        Ok(StreamCommand::Subscribe {
            symbols: vec!["BTC/USD".into()]
        })
    );
}

#[test]
fn messages_over_one_mebibyte_are_refused_before_parsing() {
    // Exactly at the limit: a valid message padded with whitespace.
    let mut at_limit = br#"{"type":"ping"}"#.to_vec();
    at_limit.resize(stream::MAX_MESSAGE_BYTES, b' ');
    assert_eq!(parse(&at_limit), Ok(StreamCommand::Ping));
    at_limit.push(b' ');
    assert_eq!(
        parse(&at_limit),
        invalid(ParseError::TooLarge {
            size: 1_048_577,
            max: 1_048_576,
        })
    );
    assert_eq!(
        parse_limited(br#"{"type":"ping"}"#, 8),
        invalid(ParseError::TooLarge { size: 15, max: 8 })
    );
}

#[test]
fn symbols_are_looked_up_exactly() {
    let StreamCommand::Subscribe { symbols } =
        parse(br#"{"type":"subscribe","symbols":["BTC/USD","btc/usd"," ETH/USD"]}"#).expect("ok")
    else {
        unreachable!("a subscribe");
    };
    let keys: Vec<_> = symbols.iter().map(|s| stream::symbol_key(s)).collect();
    assert_eq!(keys, [Some("BTC/USD"), None, None]);
    let btc = tickwire_model::market::Instrument::crypto("BTC/USD");
    assert_eq!(keys[0], Some(stream::symbol_of(&btc)));
}
