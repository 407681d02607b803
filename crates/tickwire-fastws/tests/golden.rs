//! Golden frames: every client frame the seed document shows and every server frame the
//! codec writes, byte for byte, and every refusal with its close code and reason.

use tickwire_bars::{Bar, Resolution};
use tickwire_fastws::{
    BARS, ClientOp, Error, FrameKind, Status, Subscription, decode, encode_subscription_response,
    encode_update, topic,
};

fn text(frame: &str) -> Result<ClientOp, Error> {
    decode(FrameKind::Text, frame.as_bytes())
}

fn sub(symbol: &str, resolution: Resolution) -> Subscription {
    Subscription {
        symbol: symbol.into(),
        resolution,
    }
}

fn reply(op: &ClientOp) -> String {
    String::from_utf8(BARS.reply(op).expect("a reply").to_vec()).unwrap()
}

#[test]
fn seed_subscribe_and_its_response() {
    let op = text(
        r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":{"resolution":"1"}}}"#,
    )
    .unwrap();
    assert_eq!(op, ClientOp::Subscribe(sub("AAPL", Resolution::Min1)));
    assert_eq!(op.type_name(), "bars.subscribe");
    assert_eq!(op.subscription().topic(), "bars:AAPL:1");
    assert_eq!(
        reply(&op),
        r#"{"type":"bars.subscribe.response","payload":{"status":"ok","symbol":"AAPL","message":"Subscribed to AAPL","topic":"bars:AAPL:1"}}"#
    );
}

#[test]
fn seed_unsubscribe_and_its_response() {
    let op = text(
        r#"{"type":"bars.unsubscribe","payload":{"symbol":"AAPL","params":{"resolution":"1"}}}"#,
    )
    .unwrap();
    assert_eq!(op, ClientOp::Unsubscribe(sub("AAPL", Resolution::Min1)));
    assert_eq!(
        reply(&op),
        r#"{"type":"bars.unsubscribe.response","payload":{"status":"ok","symbol":"AAPL","message":"Unsubscribed from AAPL","topic":"bars:AAPL:1"}}"#
    );
}

#[test]
fn seed_update_frame() {
    let bar = Bar {
        time: 1_697_097_600_000,
        open: 150.0,
        high: 151.0,
        low: 149.5,
        close: 150.5,
        volume: 1_000_000.0,
    };
    assert_eq!(
        &encode_update(&bar)[..],
        br#"{"type":"bars.update","payload":{"time":1697097600000,"open":150.0,"high":151.0,"low":149.5,"close":150.5,"volume":1000000}}"#
    );
    let crypto = Bar {
        time: 0,
        open: 0.1,
        high: 67_000.25,
        low: 1e-7,
        close: 2.0,
        volume: 0.375,
    };
    assert_eq!(
        &encode_update(&crypto)[..],
        br#"{"type":"bars.update","payload":{"time":0,"open":0.1,"high":67000.25,"low":1e-7,"close":2.0,"volume":0.375}}"#
    );
    // The frame is what serde_json makes of the same values, keys in model order.
    let parsed: serde_json::Value = serde_json::from_slice(&encode_update(&crypto)).unwrap();
    assert_eq!(parsed["payload"]["low"], 1e-7);
}

#[test]
fn the_resolution_defaults_to_one() {
    for payload in [
        r#"{"symbol":"AAPL","params":{}}"#,
        r#"{"symbol":"AAPL"}"#,
        r#"{"symbol":"AAPL","params":{"resolution":null}}"#,
        r#"{"symbol":"AAPL","resolution":null}"#,
        r#"{"symbol":"AAPL","params":{"other":5}}"#,
    ] {
        let frame = format!(r#"{{"type":"bars.subscribe","payload":{payload}}}"#);
        let op = text(&frame).unwrap_or_else(|e| panic!("{payload}: {e}"));
        assert_eq!(op.subscription().topic(), "bars:AAPL:1", "{payload}");
    }
}

#[test]
fn both_payload_shapes_accept_every_resolution() {
    for res in Resolution::ALL {
        let r = res.as_str();
        for payload in [
            format!(r#"{{"symbol":"GOOGL","params":{{"resolution":"{r}"}}}}"#),
            format!(r#"{{"symbol":"GOOGL","resolution":"{r}"}}"#),
            format!(r#"{{"symbol":"GOOGL","resolution":"{r}","params":{{"resolution":"{r}"}}}}"#),
        ] {
            for ty in ["bars.subscribe", "bars.unsubscribe"] {
                let frame = format!(r#"{{"type":"{ty}","payload":{payload}}}"#);
                let op = text(&frame).unwrap_or_else(|e| panic!("{frame}: {e}"));
                assert_eq!(op.subscription(), &sub("GOOGL", res));
                assert_eq!(op.type_name(), ty);
                assert_eq!(op.subscription().topic(), format!("bars:GOOGL:{r}"));
            }
        }
    }
    let later =
        text(r#"{"type":"bars.subscribe","payload":{"symbol":"TSLA","resolution":"W"}}"#).unwrap();
    assert_eq!(
        reply(&later),
        r#"{"type":"bars.subscribe.response","payload":{"status":"ok","symbol":"TSLA","message":"Subscribed to TSLA","topic":"bars:TSLA:W"}}"#
    );
}

#[test]
fn unknown_keys_are_ignored_and_the_last_duplicate_wins() {
    let op = text(
        r#"{"id":7,"payload":{"symbol":"X","extra":[1,{"a":null}],"symbol":"MSFT","params":{"resolution":"15","x":1}},"type":"bars.subscribe"}"#,
    )
    .unwrap();
    assert_eq!(op, ClientOp::Subscribe(sub("MSFT", Resolution::Min15)));
    // Escapes in the symbol travel through to the topic and are written back escaped.
    let op = text(r#"{"type":"bars.subscribe","payload":{"symbol":"A\"B\u00e9"}}"#).unwrap();
    assert_eq!(op.subscription().symbol, "A\"Bé");
    assert_eq!(
        reply(&op),
        r#"{"type":"bars.subscribe.response","payload":{"status":"ok","symbol":"A\"Bé","message":"Subscribed to A\"Bé","topic":"bars:A\"Bé:1"}}"#
    );
}

#[test]
fn error_replies_and_raw_responses() {
    let op = text(r#"{"type":"bars.subscribe","payload":{"symbol":"NOPE"}}"#).unwrap();
    assert_eq!(
        &BARS.error_reply(&op, "Unknown symbol NOPE").unwrap()[..],
        br#"{"type":"bars.subscribe.response","payload":{"status":"error","symbol":"NOPE","message":"Unknown symbol NOPE","topic":"bars:NOPE:1"}}"#
    );
    assert_eq!(
        &encode_subscription_response("x.response", Status::Ok, "S", "m", &topic("S", Resolution::Month))[..],
        br#"{"type":"x.response","payload":{"status":"ok","symbol":"S","message":"m","topic":"bars:S:M"}}"#
    );
}

/// Asserts that `frame` is refused with close code 1003 and `reason`.
#[track_caller]
fn refused(kind: FrameKind, frame: &[u8], reason: &str) -> Error {
    let err = decode(kind, frame).expect_err("refused");
    let close = err.close();
    assert_eq!(
        (close.code, close.reason.as_ref()),
        (1003, reason),
        "{}: {err}",
        String::from_utf8_lossy(frame)
    );
    assert_eq!(err.reason(), reason);
    err
}

const INVALID: &str = "Could not validate payload";
const NO_MATCH: &str = "No matching type";

#[test]
fn bad_json_and_bad_envelopes_could_not_validate() {
    for frame in [
        "not json",
        "",
        "[]",
        "\"bars.subscribe\"",
        "null",
        "{",
        r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL"}} trailing"#,
        r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL",}}"#,
    ] {
        let err = refused(FrameKind::Text, frame.as_bytes(), INVALID);
        assert!(matches!(err, Error::InvalidJson { .. }), "{frame}: {err:?}");
    }
    refused(FrameKind::Text, b"{\"type\":\"\xff\"}", INVALID);
    // A type is required, and must be a string.
    assert_eq!(refused(FrameKind::Text, b"{}", INVALID), Error::MissingType);
    assert_eq!(
        refused(FrameKind::Text, br#"{"payload":{}}"#, INVALID),
        Error::MissingType
    );
    assert_eq!(
        refused(FrameKind::Text, br#"{"type":null}"#, INVALID),
        Error::MissingType
    );
    for frame in [
        r#"{"type":1}"#,
        r#"{"type":["bars.subscribe"]}"#,
        r#"{"type":{}}"#,
    ] {
        let err = refused(FrameKind::Text, frame.as_bytes(), INVALID);
        assert!(
            matches!(err, Error::InvalidField { field: "type", .. }),
            "{err:?}"
        );
    }
}

#[test]
fn unknown_types_have_no_matching_type() {
    for ty in [
        "unknown.operation",
        "bars.update",
        "bars.subscribe.response",
        "bars.unsubscribe.response",
        "BARS.SUBSCRIBE",
        "",
    ] {
        // The type is matched before the payload is looked at.
        let frame = format!(r#"{{"type":"{ty}","payload":{{"junk":true}}}}"#);
        let err = refused(FrameKind::Text, frame.as_bytes(), NO_MATCH);
        assert_eq!(
            err,
            Error::UnknownType {
                type_name: ty.into()
            }
        );
    }
    let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(1000));
    let Error::UnknownType { type_name } = refused(FrameKind::Text, long.as_bytes(), NO_MATCH)
    else {
        unreachable!()
    };
    assert_eq!(type_name.len(), 64);
}

#[test]
fn bad_payloads_could_not_validate() {
    let cases: &[(&str, Error)] = &[
        (
            r#"{"type":"bars.subscribe"}"#,
            Error::MissingField { field: "payload" },
        ),
        (
            r#"{"type":"bars.subscribe","payload":null}"#,
            Error::MissingField { field: "payload" },
        ),
        (
            r#"{"type":"bars.subscribe","payload":{"params":{}}}"#,
            Error::MissingField { field: "symbol" },
        ),
        (
            r#"{"type":"bars.unsubscribe","payload":{"symbol":null}}"#,
            Error::MissingField { field: "symbol" },
        ),
        (
            r#"{"type":"bars.subscribe","payload":[]}"#,
            Error::InvalidField {
                field: "payload",
                reason: "expected an object",
            },
        ),
        (
            r#"{"type":"bars.subscribe","payload":"AAPL"}"#,
            Error::InvalidField {
                field: "payload",
                reason: "expected an object",
            },
        ),
        (
            r#"{"type":"bars.subscribe","payload":{"symbol":1}}"#,
            Error::InvalidField {
                field: "symbol",
                reason: "expected a string",
            },
        ),
        (
            r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":null}}"#,
            Error::InvalidField {
                field: "params",
                reason: "expected an object",
            },
        ),
        (
            r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":"1"}}"#,
            Error::InvalidField {
                field: "params",
                reason: "expected an object",
            },
        ),
        (
            r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":{"resolution":5}}}"#,
            Error::InvalidField {
                field: "params.resolution",
                reason: "expected a string",
            },
        ),
        (
            r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","resolution":true}}"#,
            Error::InvalidField {
                field: "resolution",
                reason: "expected a string",
            },
        ),
        (
            r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":{"resolution":"2"}}}"#,
            Error::UnknownResolution {
                resolution: "2".into(),
            },
        ),
        (
            r#"{"type":"bars.unsubscribe","payload":{"symbol":"AAPL","resolution":"d"}}"#,
            Error::UnknownResolution {
                resolution: "d".into(),
            },
        ),
        (
            r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","resolution":"1D"}}"#,
            Error::UnknownResolution {
                resolution: "1D".into(),
            },
        ),
        (
            r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","resolution":"5","params":{"resolution":"1"}}}"#,
            Error::InvalidField {
                field: "resolution",
                reason: "contradicts params.resolution",
            },
        ),
    ];
    for (frame, expected) in cases {
        assert_eq!(
            &refused(FrameKind::Text, frame.as_bytes(), INVALID),
            expected,
            "{frame}"
        );
    }
}

#[test]
fn binary_frames_could_not_be_decoded() {
    let frame = br#"{"type":"bars.subscribe","payload":{"symbol":"AAPL"}}"#;
    assert_eq!(
        refused(FrameKind::Binary, frame, "Could not decode message"),
        Error::BinaryFrame
    );
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let (open, close) = ("[".repeat(100_000), "]".repeat(100_000));
    // Skipped without recursion in an ignored key...
    let ignored =
        format!(r#"{{"type":"bars.subscribe","payload":{{"symbol":"A","x":{open}{close}}}}}"#);
    assert!(decode(FrameKind::Text, ignored.as_bytes()).is_ok());
    // ...and refused, not parsed, where a string is expected.
    let symbol = format!(r#"{{"type":"bars.subscribe","payload":{{"symbol":{open}{close}}}}}"#);
    refused(FrameKind::Text, symbol.as_bytes(), INVALID);
    let ty = format!(r#"{{"type":{open}{close}}}"#);
    refused(FrameKind::Text, ty.as_bytes(), INVALID);
}
