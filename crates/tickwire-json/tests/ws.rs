//! The `/ws` dialect against its document (seed 001): every server message byte for byte,
//! every client message, every error code.

mod common;

use bytes::BytesMut;
use common::{book, compact, level, signal, tick};
use tickwire_json::ParseError;
use tickwire_json::ws::{
    self, Channel, Channels, WsCommand, WsError, WsErrorCode, encode_book, encode_error,
    encode_pong, encode_signal, encode_status, encode_tick, parse, parse_limited,
};
use tickwire_model::market::{ServerStatus, SignalDirection};

const TS: i64 = 1_700_000_000_000;

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8")
}

fn invalid(error: ParseError) -> Result<WsCommand, WsError> {
    Err(WsError::InvalidMessage(error))
}

// ------------------------------------------------------------------------------------
// Server messages: the document's examples, compacted, with the same values
// ------------------------------------------------------------------------------------

#[test]
fn price_update_matches_the_document() {
    let doc = r#"{
      "type": "price_update",
      "symbol": "btc",
      "price": 67234.56,
      "change_24h": 2.34,
      "volume_24h": 28500000000,
      "timestamp": 1700000000000
    }"#;
    let frame = encode_tick(&tick(
        "BTC/USD",
        67_234.56,
        2.34,
        Some(28_500_000_000.0),
        TS,
    ));
    assert_eq!(text(&frame), compact(doc));
}

#[test]
fn orderbook_update_matches_the_document() {
    let doc = r#"{
      "type": "orderbook_update",
      "symbol": "btc",
      "bids": [
        { "price": 67230.00, "quantity": 1.5 },
        { "price": 67225.00, "quantity": 2.3 }
      ],
      "asks": [
        { "price": 67235.00, "quantity": 0.8 },
        { "price": 67240.00, "quantity": 1.2 }
      ],
      "timestamp": 1700000000000
    }"#;
    let b = book(
        "BTC/USD",
        vec![level(67_230.0, 1.5), level(67_225.0, 2.3)],
        vec![level(67_235.0, 0.8), level(67_240.0, 1.2)],
        TS,
    );
    let frame = encode_book(&b, 10);
    // The document writes `67230.00`; no JSON encoder keeps trailing zeros, and integral
    // prices print as integers (as JavaScript prints them). Everything else is the same.
    assert_eq!(text(&frame), compact(doc).replace(".00", ""));
    assert_eq!(
        text(&frame),
        r#"{"type":"orderbook_update","symbol":"btc","bids":[{"price":67230,"quantity":1.5},{"price":67225,"quantity":2.3}],"asks":[{"price":67235,"quantity":0.8},{"price":67240,"quantity":1.2}],"timestamp":1700000000000}"#
    );
}

#[test]
fn orderbook_depth_limits_each_side() {
    let b = book(
        "ETH/USD",
        vec![level(3.0, 1.0), level(2.0, 1.0), level(1.0, 1.0)],
        vec![level(4.0, 1.0)],
        5,
    );
    assert_eq!(
        text(&encode_book(&b, 2)),
        r#"{"type":"orderbook_update","symbol":"eth","bids":[{"price":3,"quantity":1},{"price":2,"quantity":1}],"asks":[{"price":4,"quantity":1}],"timestamp":5}"#
    );
    assert_eq!(
        text(&encode_book(&b, 0)),
        r#"{"type":"orderbook_update","symbol":"eth","bids":[],"asks":[],"timestamp":5}"#
    );
}

#[test]
fn signal_update_matches_the_document() {
    let doc = r#"{
      "type": "signal_update",
      "symbol": "btc",
      "indicator": "rsi",
      "signal": "buy",
      "value": 28.5,
      "confidence": 0.85,
      "timestamp": 1700000000000
    }"#;
    let s = signal("BTC/USD", "rsi", SignalDirection::Buy, 28.5, 0.85, TS);
    assert_eq!(text(&encode_signal(&s)), compact(doc));
    let s = signal("SOL/USD", "macd", SignalDirection::Neutral, -0.25, 0.5, TS);
    assert_eq!(
        text(&encode_signal(&s)),
        r#"{"type":"signal_update","symbol":"sol","indicator":"macd","signal":"neutral","value":-0.25,"confidence":0.5,"timestamp":1700000000000}"#
    );
    let s = signal("SOL/USD", "ema_cross", SignalDirection::Sell, 1.0, 1.0, TS);
    assert!(text(&encode_signal(&s)).contains(r#""signal":"sell""#));
}

#[test]
fn server_status_matches_the_document() {
    let doc = r#"{
      "type": "server_status",
      "connected_peers": 5,
      "active_sources": 12,
      "symbols_tracked": 150,
      "uptime_seconds": 86400
    }"#;
    let status = ServerStatus {
        connected_peers: 5,
        active_sources: 12,
        symbols_tracked: 150,
        uptime_seconds: 86_400,
    };
    assert_eq!(text(&encode_status(&status)), compact(doc));
}

#[test]
fn pong_matches_the_document() {
    let doc = r#"{
      "type": "pong",
      "timestamp": 1700000000000
    }"#;
    assert_eq!(text(&encode_pong(TS)), compact(doc));
}

#[test]
fn error_matches_the_document() {
    let doc = r#"{
      "type": "error",
      "code": "invalid_symbol",
      "message": "Symbol 'xyz' not found"
    }"#;
    let err = WsError::InvalidSymbol {
        symbol: "xyz".into(),
    };
    assert_eq!(text(&encode_error(&err)), compact(doc));
}

#[test]
fn every_error_code_encodes() {
    let cases = [
        (
            WsError::InvalidMessage(ParseError::MissingField { field: "symbols" }),
            r#"{"type":"error","code":"invalid_message","message":"Missing required field 'symbols'"}"#,
        ),
        (
            WsError::InvalidSymbol {
                symbol: "doge\"".into(),
            },
            r#"{"type":"error","code":"invalid_symbol","message":"Symbol 'doge\"' not found"}"#,
        ),
        (
            WsError::RateLimited { max_per_second: 10 },
            r#"{"type":"error","code":"rate_limited","message":"Rate limit exceeded: at most 10 messages per second"}"#,
        ),
        (
            WsError::SubscriptionLimit {
                requested: 101,
                max: 100,
            },
            r#"{"type":"error","code":"subscription_limit","message":"Maximum subscriptions exceeded: 101 requested, limit is 100"}"#,
        ),
        (
            WsError::Internal,
            r#"{"type":"error","code":"internal_error","message":"Internal server error"}"#,
        ),
    ];
    for (code, (err, expected)) in WsErrorCode::ALL.into_iter().zip(cases) {
        assert_eq!(err.code(), code);
        assert_eq!(text(&encode_error(&err)), expected);
        assert_eq!(err.message(), err.to_string());
    }
}

#[test]
fn unknown_figures_and_non_finite_numbers_are_null() {
    let mut t = tick("BTC/USD", f64::NAN, f64::INFINITY, None, -1);
    assert_eq!(
        text(&encode_tick(&t)),
        r#"{"type":"price_update","symbol":"btc","price":null,"change_24h":null,"volume_24h":null,"timestamp":-1}"#
    );
    t.volume_24h = Some(f64::NEG_INFINITY);
    assert!(text(&encode_tick(&t)).contains(r#""volume_24h":null"#));
}

#[test]
fn non_crypto_instruments_and_odd_names_stay_valid_json() {
    let mut t = tick("X", 1.0, 0.0, Some(0.0), 0);
    t.instrument = tickwire_model::market::Instrument::new("M&M \"Q\"", "NSE");
    let frame = encode_tick(&t);
    assert_eq!(
        text(&frame),
        r#"{"type":"price_update","symbol":"m&m \"q\"","price":1,"change_24h":0,"volume_24h":0,"timestamp":0}"#
    );
    let s = signal("BTC/USD", "a\\b\n", SignalDirection::Buy, 1.0, 1.0, 0);
    let value: serde_json::Value = serde_json::from_slice(&encode_signal(&s)).expect("JSON");
    assert_eq!(value["indicator"], "a\\b\n");
}

#[test]
fn write_functions_append_the_same_bytes() {
    let t = tick("BTC/USD", 1.5, 0.1, Some(2.0), 3);
    let b = book("BTC/USD", vec![level(1.0, 2.0)], vec![level(3.0, 4.0)], 3);
    let s = signal("BTC/USD", "rsi", SignalDirection::Sell, 71.0, 0.6, 3);
    let status = ServerStatus::default();
    let err = WsError::Internal;
    let mut out = BytesMut::from(&b"prefix"[..]);
    ws::write_tick(&t, &mut out);
    ws::write_book(&b, 5, &mut out);
    ws::write_signal(&s, &mut out);
    ws::write_status(&status, &mut out);
    ws::write_pong(3, &mut out);
    ws::write_error(&err, &mut out);
    let expected = [
        &b"prefix"[..],
        &encode_tick(&t),
        &encode_book(&b, 5),
        &encode_signal(&s),
        &encode_status(&status),
        &encode_pong(3),
        &encode_error(&err),
    ]
    .concat();
    assert_eq!(&out[..], &expected[..]);
}

// ------------------------------------------------------------------------------------
// Client messages
// ------------------------------------------------------------------------------------

#[test]
fn the_documents_client_messages_parse() {
    let subscribe = r#"{
      "type": "subscribe",
      "symbols": ["btc", "eth", "sol"]
    }"#;
    assert_eq!(
        parse(subscribe.as_bytes()),
        Ok(WsCommand::Subscribe {
            symbols: vec!["btc".into(), "eth".into(), "sol".into()],
            channels: Channels::DEFAULT,
        })
    );
    let unsubscribe = r#"{
      "type": "unsubscribe",
      "symbols": ["sol"]
    }"#;
    assert_eq!(
        parse(unsubscribe.as_bytes()),
        Ok(WsCommand::Unsubscribe {
            symbols: vec!["sol".into()],
            channels: Channels::ALL,
        })
    );
    assert_eq!(parse(br#"{ "type": "ping" }"#), Ok(WsCommand::Ping));
    // As the JavaScript example sends them.
    assert_eq!(parse(br#"{"type":"ping"}"#), Ok(WsCommand::Ping));
}

#[test]
fn assets_is_an_alias_of_symbols() {
    assert_eq!(
        parse(br#"{"type":"subscribe","assets":["BTC","eth"]}"#),
        Ok(WsCommand::Subscribe {
            symbols: vec!["BTC".into(), "eth".into()],
            channels: Channels::DEFAULT,
        })
    );
    assert_eq!(
        parse(br#"{"type":"unsubscribe","assets":["btc"]}"#),
        Ok(WsCommand::Unsubscribe {
            symbols: vec!["btc".into()],
            channels: Channels::ALL,
        })
    );
    assert_eq!(
        parse(br#"{"type":"subscribe","symbols":["btc"],"assets":["eth"]}"#),
        invalid(ParseError::DuplicateField { field: "assets" })
    );
}

#[test]
fn channels_select_the_updates() {
    let sub = |channels: &str| {
        parse(
            format!(r#"{{"type":"subscribe","symbols":["btc"],"channels":{channels}}}"#).as_bytes(),
        )
    };
    let ok = |channels| {
        Ok(WsCommand::Subscribe {
            symbols: vec!["btc".into()],
            channels,
        })
    };
    assert_eq!(sub(r#"["orderbook"]"#), ok(Channels::ORDERBOOK));
    assert_eq!(sub(r#"["price","orderbook","signal"]"#), ok(Channels::ALL));
    assert_eq!(sub(r#"["signal","signal"]"#), ok(Channels::SIGNAL));
    assert_eq!(sub("null"), ok(Channels::DEFAULT));
    assert_eq!(
        sub(r#"["trades"]"#),
        invalid(ParseError::UnknownChannel {
            channel: "trades".into()
        })
    );
    assert_eq!(
        sub(r#"["Price"]"#),
        invalid(ParseError::UnknownChannel {
            channel: "Price".into()
        })
    );
    let not_names = invalid(ParseError::InvalidField {
        field: "channels",
        expected: "a non-empty array of channel names",
    });
    assert_eq!(sub("[]"), not_names);
    assert_eq!(sub(r#""price""#), not_names);
    assert_eq!(sub("[1]"), not_names);
    assert_eq!(
        parse(br#"{"type":"unsubscribe","symbols":["btc"],"channels":["orderbook"]}"#),
        Ok(WsCommand::Unsubscribe {
            symbols: vec!["btc".into()],
            channels: Channels::ORDERBOOK,
        })
    );
    let WsCommand::Subscribe { channels, .. } = sub(r#"["price"]"#).expect("ok") else {
        unreachable!("a subscribe");
    };
    assert!(channels.contains(Channel::Price) && !channels.contains(Channel::Signal));
}

#[test]
fn malformed_messages_are_invalid_message() {
    let symbols_expected = ParseError::InvalidField {
        field: "symbols",
        expected: "a non-empty array of strings",
    };
    let cases: Vec<(&[u8], ParseError)> = vec![
        (
            br#"{"symbols":["btc"]}"#,
            ParseError::MissingField { field: "type" },
        ),
        (
            br#"{"type":7}"#,
            ParseError::InvalidField {
                field: "type",
                expected: "a string",
            },
        ),
        (
            br#"{"type":"subscribe_all"}"#,
            ParseError::UnknownType {
                type_name: "subscribe_all".into(),
            },
        ),
        (
            br#"{"type":"PING"}"#,
            ParseError::UnknownType {
                type_name: "PING".into(),
            },
        ),
        (
            br#"{"type":"subscribe"}"#,
            ParseError::MissingField { field: "symbols" },
        ),
        (
            br#"{"type":"unsubscribe"}"#,
            ParseError::MissingField { field: "symbols" },
        ),
        (
            br#"{"type":"subscribe","symbols":[]}"#,
            symbols_expected.clone(),
        ),
        (
            br#"{"type":"subscribe","symbols":"btc"}"#,
            symbols_expected.clone(),
        ),
        (
            br#"{"type":"subscribe","symbols":null}"#,
            symbols_expected.clone(),
        ),
        (
            br#"{"type":"subscribe","symbols":["btc",null]}"#,
            symbols_expected.clone(),
        ),
        (
            br#"{"type":"subscribe","symbols":[["btc"]]}"#,
            symbols_expected,
        ),
        (
            br#"{"type":"ping","type":"ping"}"#,
            ParseError::DuplicateField { field: "type" },
        ),
    ];
    for (input, expected) in cases {
        let result = parse(input);
        assert_eq!(result, invalid(expected), "{}", text(input));
        assert_eq!(result.unwrap_err().code(), WsErrorCode::InvalidMessage);
    }
    for garbage in [
        &b""[..],
        b"ping",
        b"[]",
        b"{\"type\":\"ping\"",
        b"{} x",
        b"\xff\xfe",
    ] {
        let err = parse(garbage).expect_err("malformed");
        assert!(
            matches!(err, WsError::InvalidMessage(ParseError::Json { .. })),
            "{err:?}"
        );
        assert!(err.message().starts_with("Malformed JSON: "));
    }
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(
        parse(br#"{"id":1,"type":"ping","extra":{"deep":[null]}}"#),
        Ok(WsCommand::Ping)
    );
    assert_eq!(
        parse(br#"{"type":"subscribe","symbols":["btc"],"interval":"1s"}"#),
        Ok(WsCommand::Subscribe {
            symbols: vec!["btc".into()],
            channels: Channels::DEFAULT,
        })
    );
}

#[test]
fn oversized_messages_are_refused_before_parsing() {
    let msg = br#"{"type":"ping"}"#;
    assert_eq!(parse_limited(msg, msg.len()), Ok(WsCommand::Ping));
    assert_eq!(
        parse_limited(msg, msg.len() - 1),
        invalid(ParseError::TooLarge {
            size: msg.len(),
            max: msg.len() - 1,
        })
    );
    // Not parsed at all: garbage over the limit is refused as too large, not malformed.
    let err = parse_limited(&[0xff; 100], 10).expect_err("too large");
    assert_eq!(err.message(), "Message too large: 100 bytes, limit is 10");
}

#[test]
fn client_symbols_find_document_symbols() {
    let WsCommand::Subscribe { symbols, .. } =
        parse(br#"{"type":"subscribe","symbols":["BTC","Eth"]}"#).expect("ok")
    else {
        unreachable!("a subscribe");
    };
    let keys: Vec<_> = symbols.iter().map(|s| ws::symbol_key(s)).collect();
    assert_eq!(keys, ["btc", "eth"]);
    let btc = ws::instrument_for(&keys[0], ws::DEFAULT_QUOTE);
    assert_eq!(&*btc.symbol, "BTC/USD");
    assert_eq!(ws::symbol_of(&btc), keys[0]);
}

#[test]
fn long_symbols_are_clipped_in_error_messages() {
    let err = WsError::InvalidSymbol {
        symbol: "x".repeat(10_000),
    };
    let frame = encode_error(&err);
    assert!(frame.len() < 200, "{} bytes", frame.len());
    let value: serde_json::Value = serde_json::from_slice(&frame).expect("JSON");
    assert_eq!(
        value["message"],
        format!("Symbol '{}...' not found", "x".repeat(64))
    );
}
