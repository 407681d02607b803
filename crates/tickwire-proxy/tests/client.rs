//! The client side against the server side: every reply the encoders write, in both
//! reply styles, decodes to what was encoded; malformed replies are errors.

use proptest::prelude::*;
use tickwire_model::{Instrument, Level, OrderBook, PriceTick, Trade, Update};
use tickwire_proxy::{
    AuthOk, Authenticated, BrokerDetails, BrokerInfo, Depth, MarketData, MarketFields, MarketState,
    Mode, Pong, ProxyError, RawJson, Reply, ReplyError, ReplyStyle, Request, Status,
    SubscribeOutcome, SubscribeReply, Subscribed, Subscription, UnsubscribeReply, Unsubscribed,
    decode_reply, decode_request, encode_auth_ok, encode_broker_info, encode_error,
    encode_market_data, encode_pong, encode_subscribe, encode_supported_brokers,
    encode_unsubscribe,
};

use ReplyStyle::{Documented, Openalgo};

const STYLES: [ReplyStyle; 2] = [Documented, Openalgo];

fn nse(symbol: &str) -> Instrument {
    Instrument::new(symbol, "NSE")
}

fn decode(bytes: &[u8]) -> Reply {
    decode_reply(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

#[test]
fn auth_replies() {
    let auth = AuthOk {
        broker: "zmq",
        user_id: "alice",
    };
    assert_eq!(
        decode(&encode_auth_ok(Documented, &auth)),
        Reply::Auth(Authenticated {
            message: "Authentication successful".into(),
            broker: None,
            user_id: None,
            supported_features: None,
        })
    );
    assert_eq!(
        decode(&encode_auth_ok(Openalgo, &auth)),
        Reply::Auth(Authenticated {
            message: "Authentication successful".into(),
            broker: Some("zmq".into()),
            user_id: Some("alice".into()),
            supported_features: Some(Mode::ALL.to_vec()),
        })
    );
}

#[test]
fn every_error_in_both_styles() {
    let errors = [
        ProxyError::InvalidJson {
            reason: "eof".into(),
        },
        ProxyError::InvalidAction {
            action: "fly".into(),
        },
        ProxyError::NotAuthenticated,
        ProxyError::invalid_api_key(),
        ProxyError::Authentication {
            message: "API key is required".into(),
        },
        ProxyError::InvalidMode {
            message: "Invalid mode 4; expected 1 (LTP), 2 (Quote), or 3 (Depth)".into(),
        },
        ProxyError::InvalidParameters {
            message: "At least one symbol must be specified".into(),
        },
        ProxyError::Limited {
            message: "Rate limit exceeded".into(),
        },
        ProxyError::Broker {
            message: "adapter \"zmq\" failed\n".into(),
        },
    ];
    for style in STYLES {
        for error in &errors {
            assert_eq!(
                decode(&encode_error(style, error)),
                Reply::Error {
                    code: error.code().into(),
                    message: error.to_string(),
                },
                "{style:?} {error:?}"
            );
        }
    }
}

#[test]
fn subscribe_replies() {
    let (a, b) = (nse("RELIANCE"), Instrument::new("NIFTY 50", "NSE_INDEX"));
    let request_id = RawJson::new(r#"{"n": [1, 2]}"#).unwrap();
    for style in STYLES {
        for mode in Mode::ALL {
            for depth in Depth::ALL {
                let outcomes = [
                    SubscribeOutcome {
                        instrument: &a,
                        result: Ok(()),
                    },
                    SubscribeOutcome {
                        instrument: &b,
                        result: Err("No adapter carries NSE_INDEX:NIFTY 50".into()),
                    },
                ];
                for (outcomes, status) in [
                    (&outcomes[..1], Status::Success),
                    (&outcomes[..], Status::Partial),
                ] {
                    for request_id in [None, Some(&request_id)] {
                        let reply = SubscribeReply {
                            mode,
                            depth,
                            broker: "tickwire",
                            outcomes,
                            request_id,
                        };
                        let expected = Subscribed {
                            status,
                            subscriptions: outcomes
                                .iter()
                                .map(|o| Subscription {
                                    instrument: o.instrument.clone(),
                                    result: o.result.clone().map(|()| (mode, depth)),
                                    broker: Some("tickwire".into()),
                                })
                                .collect(),
                            message: "Subscription processing complete".into(),
                            broker: Some("tickwire".into()),
                            request_id: request_id.cloned(),
                        };
                        assert_eq!(
                            decode(&encode_subscribe(style, &reply)),
                            Reply::Subscribed(expected)
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn unsubscribe_replies() {
    let (a, b) = (nse("RELIANCE"), nse("TCS"));
    let successful = [&a, &b];
    let failed = [(&b, "Not subscribed"), (&a, "Invalid mode 9")];
    let request_id = RawJson::new("\"u-1\"").unwrap();
    for style in STYLES {
        for (successful, failed, status) in [
            (&successful[..], &failed[..0], Status::Success),
            (&successful[..0], &failed[..0], Status::Success),
            (&successful[..1], &failed[..1], Status::Partial),
            (&successful[..0], &failed[..], Status::Error),
        ] {
            let reply = UnsubscribeReply {
                broker: "zmq",
                successful,
                failed,
                request_id: Some(&request_id),
            };
            assert_eq!(
                decode(&encode_unsubscribe(style, &reply)),
                Reply::Unsubscribed(Unsubscribed {
                    status,
                    message: "Unsubscription processing complete".into(),
                    successful: successful.iter().map(|i| (*i).clone()).collect(),
                    failed: failed
                        .iter()
                        .map(|(i, m)| ((*i).clone(), (*m).to_owned()))
                        .collect(),
                    broker: Some("zmq".into()),
                    request_id: Some(request_id.clone()),
                })
            );
        }
    }
}

#[test]
fn pong_brokers_and_info() {
    for style in STYLES {
        // The echoes come back exactly as the client wrote them, spaces and all.
        let Request::Ping(ping) = decode_request(
            br#"{"action":"ping","timestamp":1700000000123,"_pingId":{"n": [1, 2]}}"#,
            false,
        )
        .unwrap() else {
            panic!("ping expected")
        };
        assert_eq!(
            decode(&encode_pong(style, &ping, 1_700_000_000_200)),
            Reply::Pong(Pong {
                server_timestamp: Some(1_700_000_000_200),
                client_timestamp: Some(RawJson::new("1700000000123").unwrap()),
                ping_id: Some(RawJson::new(r#"{"n": [1, 2]}"#).unwrap()),
            })
        );
        assert_eq!(
            decode(&encode_pong(style, &Default::default(), -5)),
            Reply::Pong(Pong {
                server_timestamp: Some(-5),
                client_timestamp: None,
                ping_id: None,
            })
        );
        for brokers in [&[][..], &["zmq", "synthetic", "ü \"x\""][..]] {
            assert_eq!(
                decode(&encode_supported_brokers(style, brokers)),
                Reply::SupportedBrokers(brokers.iter().map(|b| (*b).to_owned()).collect())
            );
        }
        let info = BrokerInfo {
            broker: "zmq",
            adapter_status: "retrying",
            user_id: "alice",
        };
        assert_eq!(
            decode(&encode_broker_info(style, &info)),
            Reply::BrokerInfo(BrokerDetails {
                broker: "zmq".into(),
                adapter_status: "retrying".into(),
                user_id: "alice".into(),
            })
        );
    }
}

/// The seed document's quote.
fn seed_tick() -> PriceTick {
    PriceTick {
        instrument: nse("RELIANCE"),
        price: 2850.50,
        last_quantity: 25.0,
        bid: 2850.45,
        bid_quantity: 500.0,
        ask: 2850.55,
        ask_quantity: 750.0,
        open: 2820.00,
        high: 2860.00,
        low: 2815.00,
        prev_close: 2848.25,
        change_24h_pct: 0.08,
        volume_24h: None,
        session_volume: 1_500_000.0,
        source: "zerodha".into(),
        timestamp_ms: 1_748_353_658_856,
    }
}

#[test]
fn the_seed_quote_in_both_styles() {
    let mut state = MarketState::default();
    state.apply(&Update::Tick(seed_tick()));
    let reliance = nse("RELIANCE");
    let decoded = |style| {
        let bytes = encode_market_data(style, &reliance, Mode::Quote, Depth::Five, &state).unwrap();
        let Reply::MarketData(md) = decode(&bytes) else {
            panic!("market_data expected")
        };
        md
    };
    let documented = decoded(Documented);
    assert_eq!(documented.instrument, reliance);
    assert_eq!(documented.mode(), Mode::Quote);
    assert_eq!(documented.timestamp(), Some(1_748_353_658_856));
    assert_eq!(documented.broker, None);
    let MarketFields::Quote(q) = &documented.data else {
        panic!("quote expected")
    };
    assert_eq!(
        (q.ltp, q.open, q.high, q.low, q.close),
        (
            2850.5,
            Some(2820.0),
            Some(2860.0),
            Some(2815.0),
            Some(2848.25)
        )
    );
    assert_eq!(
        (q.volume, q.bid, q.ask, q.bid_qty, q.ask_qty),
        (
            Some(1_500_000.0),
            Some(2850.45),
            Some(2850.55),
            Some(500.0),
            Some(750.0)
        )
    );
    assert_eq!(
        (q.last_trade_quantity, q.change, q.change_percent),
        (None, None, None)
    );
    let openalgo = decoded(Openalgo);
    assert_eq!(openalgo.broker.as_deref(), Some("zerodha"));
    let MarketFields::Quote(q) = &openalgo.data else {
        panic!("quote expected")
    };
    assert_eq!(
        (q.last_trade_quantity, q.change, q.change_percent),
        (Some(25.0), Some(2.25), Some(0.079))
    );
}

// --- Market data, property-tested against the last-value cache -------------------------------

/// Prices and quantities: mostly ordinary, sometimes extreme or not finite.
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => -1.0e7..1.0e7f64,
        2 => (0u32..10_000_000).prop_map(f64::from),
        2 => proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("RELIANCE".to_owned()),
        "[A-Z_]{1,12}",
        "\\PC{0,10}",
        "[\u{0}-\u{7f}]{0,6}"
    ]
}

fn instrument() -> impl Strategy<Value = Instrument> {
    (name(), name()).prop_map(|(s, e)| Instrument::new(s, e))
}

fn level() -> impl Strategy<Value = Level> {
    (number(), number(), any::<u32>()).prop_map(|(price, quantity, orders)| Level {
        price,
        quantity,
        orders,
    })
}

/// A trade, a quote or a book of `instrument`.
fn update(instrument: Instrument) -> impl Strategy<Value = Update> {
    let source = "[a-z]{1,8}";
    let trade = (number(), prop::option::of(number()), source, any::<i64>()).prop_map({
        let instrument = instrument.clone();
        move |(price, quantity, source, timestamp_ms)| {
            Update::Trade(Trade {
                instrument: instrument.clone(),
                price,
                quantity,
                source: source.into(),
                timestamp_ms,
            })
        }
    });
    let tick = (prop::collection::vec(number(), 11), source, any::<i64>()).prop_map({
        let instrument = instrument.clone();
        move |(n, source, timestamp_ms)| {
            Update::Tick(PriceTick {
                instrument: instrument.clone(),
                price: n[0],
                last_quantity: n[1],
                bid: n[2],
                bid_quantity: n[3],
                ask: n[4],
                ask_quantity: n[5],
                open: n[6],
                high: n[7],
                low: n[8],
                prev_close: n[9],
                change_24h_pct: 0.0,
                volume_24h: None,
                session_volume: n[10],
                source: source.into(),
                timestamp_ms,
            })
        }
    });
    let book = (
        prop::collection::vec(level(), 0..35),
        prop::collection::vec(level(), 0..35),
        source,
        any::<i64>(),
    )
        .prop_map(move |(bids, asks, source, timestamp_ms)| {
            Update::Book(OrderBook {
                instrument: instrument.clone(),
                bids,
                asks,
                source: source.into(),
                timestamp_ms,
            })
        });
    prop_oneof![trade, tick, book]
}

fn updates() -> impl Strategy<Value = (Instrument, Vec<Update>)> {
    instrument().prop_flat_map(|instrument| {
        let updates = prop::collection::vec(update(instrument.clone()), 1..6);
        (Just(instrument), updates)
    })
}

/// The number as it reads back: the server writes a non-finite number as `null`.
fn wire(v: f64) -> f64 {
    if v.is_finite() { v } else { f64::NAN }
}

/// Equality of numbers as the wire carries them (`NaN` equal to itself).
fn same(decoded: f64, sent: f64) -> bool {
    let sent = wire(sent);
    decoded == sent || (decoded.is_nan() && sent.is_nan())
}

fn same_opt(decoded: Option<f64>, sent: f64) -> bool {
    decoded.is_some_and(|d| same(d, sent))
}

fn same_levels(decoded: &[Level], sent: &[Level], levels: usize) -> bool {
    let sent = &sent[..sent.len().min(levels)];
    decoded.len() == sent.len()
        && decoded.iter().zip(sent).all(|(d, s)| {
            same(d.price, s.price) && same(d.quantity, s.quantity) && d.orders == s.orders
        })
}

/// The change from the previous close and in percent of it, as the openalgo style writes them.
fn change(tick: &PriceTick) -> (f64, f64) {
    if tick.prev_close == 0.0 || !tick.prev_close.is_finite() {
        return (0.0, 0.0);
    }
    let round = |v: f64| (v * 10_000.0).round() / 10_000.0;
    let change = tick.price - tick.prev_close;
    (round(change), round(change / tick.prev_close * 100.0))
}

/// The broker of a `mode` message: the source of the data it shows first, then the others.
fn broker(state: &MarketState, mode: Mode) -> String {
    let last = state.last().map(|t| &*t.source);
    let quote = state.quote().map(|t| &*t.source);
    let book = state.book().map(|b| &*b.source);
    match mode {
        Mode::Ltp => last.or(quote).or(book),
        Mode::Quote => quote.or(last).or(book),
        Mode::Depth => book.or(last).or(quote),
    }
    .unwrap_or_default()
    .to_owned()
}

fn check(
    md: &MarketData,
    style: ReplyStyle,
    instrument: &Instrument,
    mode: Mode,
    depth: Depth,
    state: &MarketState,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(&md.instrument, instrument);
    prop_assert_eq!(md.mode(), mode);
    let expected_broker = (style == Openalgo).then(|| broker(state, mode));
    prop_assert_eq!(&md.broker, &expected_broker);
    let openalgo = style == Openalgo;
    match &md.data {
        MarketFields::Ltp(d) => {
            let last = state.last().unwrap();
            prop_assert!(same(d.ltp, last.price));
            prop_assert_eq!(d.ltt, openalgo.then_some(last.timestamp_ms));
            prop_assert_eq!(d.timestamp, Some(last.timestamp_ms));
        }
        MarketFields::Quote(d) => {
            let q = state.quote().unwrap();
            prop_assert!(same(d.ltp, q.price));
            for (decoded, sent) in [
                (d.open, q.open),
                (d.high, q.high),
                (d.low, q.low),
                (d.close, q.prev_close),
                (d.volume, q.session_volume),
                (d.bid, q.bid),
                (d.ask, q.ask),
                (d.bid_qty, q.bid_quantity),
                (d.ask_qty, q.ask_quantity),
            ] {
                prop_assert!(same_opt(decoded, sent), "{:?} vs {}", decoded, sent);
            }
            if openalgo {
                let (change, percent) = change(q);
                prop_assert!(same_opt(d.last_trade_quantity, q.last_quantity));
                prop_assert!(same_opt(d.change, change));
                prop_assert!(same_opt(d.change_percent, percent));
            } else {
                prop_assert_eq!(
                    (d.last_trade_quantity, d.change, d.change_percent),
                    (None, None, None)
                );
            }
            prop_assert_eq!(d.timestamp, Some(q.timestamp_ms));
        }
        MarketFields::Depth(d) => {
            let book = state.book().unwrap();
            match (d.ltp, state.last()) {
                (Some(ltp), Some(last)) => prop_assert!(same(ltp, last.price)),
                (None, None) => {}
                (ltp, last) => prop_assert!(false, "ltp {:?} for last {:?}", ltp, last),
            }
            prop_assert!(same_levels(&d.buy, &book.bids, depth.levels()));
            prop_assert!(same_levels(&d.sell, &book.asks, depth.levels()));
            prop_assert_eq!(d.timestamp, Some(book.timestamp_ms));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the cache holds, every message of every mode, depth and style decodes
    /// to the figures it was encoded from.
    #[test]
    fn market_data_round_trips((instrument, updates) in updates()) {
        let mut state = MarketState::default();
        for update in &updates {
            state.apply(update);
        }
        for style in STYLES {
            for mode in Mode::ALL {
                for depth in Depth::ALL {
                    let Some(bytes) = encode_market_data(style, &instrument, mode, depth, &state)
                    else {
                        prop_assert!(!state.has(mode));
                        continue;
                    };
                    match decode_reply(&bytes) {
                        Ok(Reply::MarketData(md)) => {
                            check(&md, style, &instrument, mode, depth, &state)?;
                        }
                        other => prop_assert!(
                            false,
                            "{:?} from {}",
                            other,
                            String::from_utf8_lossy(&bytes)
                        ),
                    }
                }
            }
        }
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_reply(&bytes);
    }

    /// Nor do arbitrary objects that claim a known type.
    #[test]
    fn arbitrary_objects_never_panic(
        ty in prop::sample::select(vec![
            "auth", "auth_response", "subscribe", "subscribe_response", "unsubscribe",
            "unsubscribe_response", "market_data", "pong", "supported_brokers", "broker_info",
            "error",
        ]),
        body in "[\\[\\]{}\":,0-9a-z_ .-]{0,80}",
    ) {
        let _ = decode_reply(format!(r#"{{"type":"{ty}",{body}}}"#).as_bytes());
        let _ = decode_reply(format!(r#"{{"type":"{ty}","status":"success",{body}}}"#).as_bytes());
    }
}

// --- Malformed and unknown replies ---------------------------------------------------------

#[test]
fn malformed_replies_are_errors() {
    for (frame, expected) in [
        ("", "not valid JSON"),
        ("   ", "not valid JSON"),
        ("{", "not valid JSON"),
        ("nope", "not valid JSON"),
        (r#"{"type":"pong"} x"#, "not valid JSON"),
        (r#"{"type":"pong","type":"pong"}"#, "not valid JSON"),
        ("[1,2]", "not a JSON object"),
        ("null", "not a JSON object"),
        ("\"market_data\"", "not a JSON object"),
        (
            r#"{"type":5}"#,
            "malformed unknown reply: `type` is not a string",
        ),
        (r#"{"type":"error"}"#, "malformed error reply: no `code`"),
        (
            r#"{"status":"error","message":"x"}"#,
            "malformed error reply: no `code`",
        ),
        (
            r#"{"status":"error","code":7,"message":"x"}"#,
            "malformed error reply: `code` is not a string",
        ),
        (
            r#"{"type":"auth","status":"maybe"}"#,
            "malformed auth reply: `status` is Some(\"maybe\"), not \"success\"",
        ),
        (
            r#"{"type":"auth","status":"success","supported_features":[1]}"#,
            "malformed auth reply: `supported_features` is not an object",
        ),
        (
            r#"{"type":"subscribe","status":"success","subscriptions":{}}"#,
            "malformed subscribe reply: `subscriptions` is not a list",
        ),
        (
            r#"{"type":"subscribe","status":"success","subscriptions":[{"symbol":"A"}]}"#,
            "malformed subscribe reply: an entry without `symbol` and `exchange`",
        ),
        (
            r#"{"type":"subscribe","status":"success","subscriptions":[{"symbol":"A","exchange":"NSE","status":"success","mode":"Full"}]}"#,
            "malformed subscribe reply: subscription of NSE:A: no valid `mode`",
        ),
        (
            r#"{"type":"subscribe","status":"success","subscriptions":[{"symbol":"A","exchange":"NSE","status":"success","mode":3,"depth":7}]}"#,
            "malformed subscribe reply: subscription of NSE:A: `depth` 7 is not 5, 20 or 30",
        ),
        (
            r#"{"type":"subscribe_response","status":"fine","subscriptions":[]}"#,
            "malformed subscribe_response reply: `status` is Some(\"fine\"), not success, partial or error",
        ),
        (
            r#"{"type":"unsubscribe","status":"success","successful":[1]}"#,
            "malformed unsubscribe reply: an entry of `successful` is not an object",
        ),
        (
            r#"{"type":"market_data","exchange":"NSE","mode":1,"data":{"ltp":1}}"#,
            "malformed market_data reply: no `symbol`",
        ),
        (
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":4,"data":{"ltp":1}}"#,
            "malformed market_data reply: `mode` is not 1, 2 or 3",
        ),
        (
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":"1","data":{"ltp":1}}"#,
            "malformed market_data reply: `mode` is not 1, 2 or 3",
        ),
        (
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":1,"data":[]}"#,
            "malformed market_data reply: `data` is not an object",
        ),
        (
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":1,"data":{}}"#,
            "malformed market_data reply: no `data.ltp`",
        ),
        (
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":2,"data":{"ltp":"1"}}"#,
            "malformed market_data reply: `ltp` is not a number",
        ),
        (
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":1,"data":{"ltp":1,"timestamp":1.5}}"#,
            "malformed market_data reply: `timestamp` is not an integer",
        ),
        (
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":3,"data":{"ltp":1}}"#,
            "malformed market_data reply: `data.depth` is not an object",
        ),
        (
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":3,"data":{"depth":{"buy":[]}}}"#,
            "malformed market_data reply: `data.depth.sell` is not a list",
        ),
        (
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":3,"data":{"depth":{"buy":[{"price":1,"quantity":2,"orders":-1}],"sell":[]}}}"#,
            "malformed market_data reply: `orders` -1 of a `buy` level is out of range",
        ),
        (
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":3,"data":{"depth":{"buy":[],"sell":[{"quantity":2}]}}}"#,
            "malformed market_data reply: a level without `price`",
        ),
        (
            r#"{"type":"pong","server_timestamp":"now"}"#,
            "malformed pong reply: `server_timestamp` is not an integer",
        ),
        (
            r#"{"type":"supported_brokers","brokers":[1]}"#,
            "malformed supported_brokers reply: `brokers` is not a list of strings",
        ),
        (
            r#"{"type":"broker_info","broker":"zmq"}"#,
            "malformed broker_info reply: no `adapter_status`",
        ),
    ] {
        let error = decode_reply(frame.as_bytes()).expect_err(frame);
        assert!(
            error.to_string().contains(expected),
            "{frame}: {error} (expected {expected:?})"
        );
    }
    assert_eq!(decode_reply(b"[]"), Err(ReplyError::NotAnObject));
    assert!(matches!(
        decode_reply(&[0xff, b'{']),
        Err(ReplyError::InvalidJson { .. })
    ));
    // Deep nesting is an error, never a stack overflow.
    let deep = format!(
        r#"{{"type":"market_data","data":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(decode_reply(deep.as_bytes()).is_err());
}

#[test]
fn unknown_replies_are_kept_as_json() {
    for frame in [
        r#"{"type":"server_notice","text":"maintenance at 18:00"}"#,
        r#"{"hello":"world"}"#,
        r#"{}"#,
    ] {
        assert_eq!(
            decode_reply(frame.as_bytes()),
            Ok(Reply::Other(serde_json::from_str(frame).unwrap())),
            "{frame}"
        );
    }
}

#[test]
fn lenient_where_servers_differ() {
    // Missing optional figures, a numeric mode in a subscription entry, levels without
    // `orders`, `null` for numbers the server could not write, unknown keys.
    let Reply::MarketData(md) = decode(
        br#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":2,"data":{"ltp":null,"volume":5,"avg":1},"extra":true}"#,
    ) else {
        panic!("market_data expected")
    };
    let MarketFields::Quote(q) = md.data else {
        panic!("quote expected")
    };
    assert!(q.ltp.is_nan());
    assert_eq!((q.volume, q.bid, q.timestamp), (Some(5.0), None, None));
    let Reply::MarketData(md) = decode(
        br#"{"type":"market_data","symbol":"A","exchange":"NSE","mode":3,"data":{"depth":{"buy":[{"price":1.5,"quantity":2}],"sell":[]}}}"#,
    ) else {
        panic!("market_data expected")
    };
    assert_eq!(md.ltp(), None);
    let MarketFields::Depth(d) = md.data else {
        panic!("depth expected")
    };
    assert_eq!(
        d.buy,
        [Level {
            price: 1.5,
            quantity: 2.0,
            orders: 0
        }]
    );
    let Reply::Subscribed(s) = decode(
        br#"{"type":"subscribe","status":"success","subscriptions":[{"symbol":"A","exchange":"NSE","status":"success","mode":1}],"request_id":null}"#,
    ) else {
        panic!("subscribe expected")
    };
    assert_eq!(s.subscriptions[0].result, Ok((Mode::Ltp, Depth::Five)));
    assert_eq!((s.request_id, s.broker), (None, None));
}
