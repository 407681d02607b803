//! Byte-exact golden tests of every reply, in both reply styles.

use tickwire_model::{Instrument, Level, OrderBook, PriceTick, Update};
use tickwire_proxy::{
    AuthOk, BrokerInfo, Depth, MarketState, Mode, ProxyError, ReplyStyle, Request,
    SubscribeOutcome, SubscribeReply, Topic, UnsubscribeReply, UpdateKind, decode_request,
    encode_auth_ok, encode_broker_info, encode_error, encode_market_data, encode_pong,
    encode_subscribe, encode_supported_brokers, encode_unsubscribe, topics_fed,
};

use ReplyStyle::{Documented, Openalgo};

fn text(bytes: bytes::Bytes) -> String {
    let s = String::from_utf8(bytes.to_vec()).unwrap();
    // Every golden is valid JSON.
    serde_json::from_str::<serde_json::Value>(&s).unwrap();
    s
}

fn reliance() -> Instrument {
    Instrument::new("RELIANCE", "NSE")
}

/// The seed document's market-data example.
fn tick() -> PriceTick {
    PriceTick {
        instrument: reliance(),
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

fn book(levels: usize) -> OrderBook {
    let level = |price: f64, i: usize| Level {
        price,
        quantity: 10.0 * (i as f64 + 1.0),
        orders: u32::try_from(i).unwrap() + 1,
    };
    OrderBook {
        instrument: reliance(),
        bids: (0..levels)
            .map(|i| level(2850.45 - 0.05 * i as f64, i))
            .collect(),
        asks: (0..levels)
            .map(|i| level(2850.55 + 0.05 * i as f64, i))
            .collect(),
        source: "zerodha".into(),
        timestamp_ms: 1_748_353_658_900,
    }
}

#[test]
fn auth_replies() {
    let auth = AuthOk {
        broker: "zerodha",
        user_id: "alice",
    };
    assert_eq!(
        text(encode_auth_ok(Documented, &auth)),
        r#"{"type":"auth_response","status":"success","message":"Authentication successful"}"#
    );
    assert_eq!(
        text(encode_auth_ok(Openalgo, &auth)),
        r#"{"type":"auth","status":"success","message":"Authentication successful","broker":"zerodha","user_id":"alice","supported_features":{"ltp":true,"quote":true,"depth":true}}"#
    );
    let bad = ProxyError::invalid_api_key();
    assert_eq!(
        text(encode_error(Documented, &bad)),
        r#"{"type":"auth_response","status":"error","code":"AUTHENTICATION_ERROR","message":"Invalid API key"}"#
    );
    assert_eq!(
        text(encode_error(Openalgo, &bad)),
        r#"{"status":"error","code":"AUTHENTICATION_ERROR","message":"Invalid API key"}"#
    );
}

#[test]
fn error_replies() {
    for (frame, authenticated, openalgo) in [
        (
            "{",
            true,
            r#"{"status":"error","code":"INVALID_JSON","message":"Invalid JSON message"}"#,
        ),
        (
            r#"{"action":"fly"}"#,
            true,
            r#"{"status":"error","code":"INVALID_ACTION","message":"Invalid action: fly"}"#,
        ),
        (
            r#"{"action":"subscribe","symbol":"A","exchange":"NSE"}"#,
            false,
            r#"{"status":"error","code":"NOT_AUTHENTICATED","message":"You must authenticate first"}"#,
        ),
        (
            r#"{"action":"authenticate"}"#,
            false,
            r#"{"status":"error","code":"AUTHENTICATION_ERROR","message":"API key is required"}"#,
        ),
        (
            r#"{"action":"subscribe","symbol":"A","exchange":"NSE","mode":"x"}"#,
            true,
            r#"{"status":"error","code":"INVALID_MODE","message":"Invalid mode 'x'; expected 'LTP', 'Quote', or 'Depth' (case-insensitive)"}"#,
        ),
        (
            r#"{"action":"subscribe","symbols":[]}"#,
            true,
            r#"{"status":"error","code":"INVALID_PARAMETERS","message":"At least one symbol must be specified"}"#,
        ),
        (
            r#"{"action":"subscribe","symbol":"A","exchange":"NSE","depth":50}"#,
            true,
            r#"{"status":"error","code":"INVALID_PARAMETERS","message":"Invalid depth 50; expected 5, 20 or 30"}"#,
        ),
    ] {
        let error = decode_request(frame.as_bytes(), authenticated).unwrap_err();
        assert_eq!(text(encode_error(Openalgo, &error)), openalgo, "{frame}");
        let documented = text(encode_error(Documented, &error));
        let expected_type = if error.code() == "AUTHENTICATION_ERROR" {
            "auth_response"
        } else {
            "error"
        };
        assert_eq!(
            documented,
            format!(r#"{{"type":"{expected_type}",{}"#, &openalgo[1..])
        );
    }
    let broker = ProxyError::Broker {
        message: "adapter \"zmq\" failed".into(),
    };
    assert_eq!(
        text(encode_error(Documented, &broker)),
        r#"{"type":"error","status":"error","code":"BROKER_ERROR","message":"adapter \"zmq\" failed"}"#
    );
}

#[test]
fn subscribe_replies() {
    let Request::Subscribe(sub) = decode_request(
        br#"{"action":"subscribe","symbols":[{"symbol":"RELIANCE","exchange":"NSE"},{"symbol":"TCS","exchange":"NSE"}],"mode":"depth","depth":20,"request_id":"r-1"}"#,
        true,
    )
    .unwrap() else {
        panic!("subscribe expected")
    };
    let outcomes = [
        SubscribeOutcome {
            instrument: &sub.instruments[0],
            result: Ok(()),
        },
        SubscribeOutcome {
            instrument: &sub.instruments[1],
            result: Err("Subscription failed".into()),
        },
    ];
    let reply = SubscribeReply {
        mode: sub.mode,
        depth: sub.depth,
        broker: "zmq",
        outcomes: &outcomes,
        request_id: sub.request_id.as_ref(),
    };
    let body = r#""status":"partial","subscriptions":[{"symbol":"RELIANCE","exchange":"NSE","status":"success","mode":"Depth","depth":20,"broker":"zmq"},{"symbol":"TCS","exchange":"NSE","status":"error","message":"Subscription failed","broker":"zmq"}],"message":"Subscription processing complete","broker":"zmq","request_id":"r-1"}"#;
    assert_eq!(
        text(encode_subscribe(Openalgo, &reply)),
        format!(r#"{{"type":"subscribe",{body}"#)
    );
    assert_eq!(
        text(encode_subscribe(Documented, &reply)),
        format!(r#"{{"type":"subscribe_response",{body}"#)
    );

    let ok = [SubscribeOutcome {
        instrument: &sub.instruments[0],
        result: Ok(()),
    }];
    let reply = SubscribeReply {
        mode: Mode::Ltp,
        depth: Depth::Five,
        broker: "zmq",
        outcomes: &ok,
        request_id: None,
    };
    assert_eq!(
        text(encode_subscribe(Openalgo, &reply)),
        r#"{"type":"subscribe","status":"success","subscriptions":[{"symbol":"RELIANCE","exchange":"NSE","status":"success","mode":"LTP","depth":5,"broker":"zmq"}],"message":"Subscription processing complete","broker":"zmq"}"#
    );
}

#[test]
fn unsubscribe_replies() {
    let (a, b) = (reliance(), Instrument::new("TCS", "NSE"));
    let successful = [&a];
    let failed = [(
        &b,
        "Invalid mode 9; expected 1 (LTP), 2 (Quote), or 3 (Depth)",
    )];
    let reply = UnsubscribeReply {
        broker: "zmq",
        successful: &successful,
        failed: &failed,
        request_id: None,
    };
    let body = r#""status":"partial","message":"Unsubscription processing complete","successful":[{"symbol":"RELIANCE","exchange":"NSE","status":"success","broker":"zmq"}],"failed":[{"symbol":"TCS","exchange":"NSE","status":"error","message":"Invalid mode 9; expected 1 (LTP), 2 (Quote), or 3 (Depth)","broker":"zmq"}],"broker":"zmq"}"#;
    assert_eq!(
        text(encode_unsubscribe(Openalgo, &reply)),
        format!(r#"{{"type":"unsubscribe",{body}"#)
    );
    assert_eq!(
        text(encode_unsubscribe(Documented, &reply)),
        format!(r#"{{"type":"unsubscribe_response",{body}"#)
    );
    let empty = UnsubscribeReply {
        broker: "zmq",
        successful: &[],
        failed: &[],
        request_id: None,
    };
    assert_eq!(
        text(encode_unsubscribe(Openalgo, &empty)),
        r#"{"type":"unsubscribe","status":"success","message":"Unsubscription processing complete","successful":[],"failed":[],"broker":"zmq"}"#
    );
    let only_failed = UnsubscribeReply {
        broker: "zmq",
        successful: &[],
        failed: &failed,
        request_id: None,
    };
    assert!(
        text(encode_unsubscribe(Openalgo, &only_failed))
            .starts_with(r#"{"type":"unsubscribe","status":"error","#)
    );
}

#[test]
fn ping_brokers_and_info() {
    for style in [Documented, Openalgo] {
        let Request::Ping(ping) =
            decode_request(br#"{"action":"ping","timestamp":17,"_pingId":"p9"}"#, false).unwrap()
        else {
            panic!("ping expected")
        };
        assert_eq!(
            text(encode_pong(style, &ping, 1_700_000_000_000)),
            r#"{"type":"pong","status":"success","server_timestamp":1700000000000,"client_timestamp":17,"_pingId":"p9"}"#
        );
        let Request::Ping(bare) = decode_request(br#"{"action":"ping"}"#, false).unwrap() else {
            panic!("ping expected")
        };
        assert_eq!(
            text(encode_pong(style, &bare, 5)),
            r#"{"type":"pong","status":"success","server_timestamp":5}"#
        );
        assert_eq!(
            text(encode_supported_brokers(style, &["zmq", "synthetic"])),
            r#"{"type":"supported_brokers","status":"success","brokers":["zmq","synthetic"],"count":2}"#
        );
        let info = BrokerInfo {
            broker: "zmq",
            adapter_status: "retrying",
            user_id: "alice",
        };
        assert_eq!(
            text(encode_broker_info(style, &info)),
            r#"{"type":"broker_info","status":"success","broker":"zmq","adapter_status":"retrying","user_id":"alice"}"#
        );
    }
}

#[test]
fn market_data_per_mode_and_style() {
    let instrument = reliance();
    let mut state = MarketState::default();
    for mode in Mode::ALL {
        assert_eq!(
            encode_market_data(Documented, &instrument, mode, Depth::Five, &state),
            None
        );
    }
    assert_eq!(state.apply(&Update::Tick(tick())), Some(UpdateKind::Tick));
    let md = |style, mode, depth, state: &MarketState| {
        encode_market_data(style, &instrument, mode, depth, state).map(text)
    };

    assert_eq!(
        md(Documented, Mode::Ltp, Depth::Five, &state).unwrap(),
        r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":1,"data":{"ltp":2850.5,"timestamp":1748353658856}}"#
    );
    assert_eq!(
        md(Openalgo, Mode::Ltp, Depth::Five, &state).unwrap(),
        r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":1,"data":{"ltp":2850.5,"ltt":1748353658856,"timestamp":1748353658856},"broker":"zerodha"}"#
    );
    // The seed's example, field for field, with the tick's time added.
    assert_eq!(
        md(Documented, Mode::Quote, Depth::Five, &state).unwrap(),
        r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":2,"data":{"ltp":2850.5,"open":2820.0,"high":2860.0,"low":2815.0,"close":2848.25,"volume":1500000,"bid":2850.45,"ask":2850.55,"bid_qty":500,"ask_qty":750,"timestamp":1748353658856}}"#
    );
    assert_eq!(
        md(Openalgo, Mode::Quote, Depth::Five, &state).unwrap(),
        r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":2,"data":{"ltp":2850.5,"open":2820.0,"high":2860.0,"low":2815.0,"close":2848.25,"volume":1500000,"bid":2850.45,"ask":2850.55,"bid_qty":500,"ask_qty":750,"last_trade_quantity":25,"change":2.25,"change_percent":0.079,"timestamp":1748353658856},"broker":"zerodha"}"#
    );
    // No book yet: nothing for Depth.
    assert_eq!(md(Openalgo, Mode::Depth, Depth::Five, &state), None);

    assert_eq!(state.apply(&Update::Book(book(30))), Some(UpdateKind::Book));
    let depth5 = md(Openalgo, Mode::Depth, Depth::Five, &state).unwrap();
    assert_eq!(
        depth5,
        r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":3,"data":{"ltp":2850.5,"depth":{"buy":[{"price":2850.45,"quantity":10,"orders":1},{"price":2850.3999999999996,"quantity":20,"orders":2},{"price":2850.35,"quantity":30,"orders":3},{"price":2850.2999999999997,"quantity":40,"orders":4},{"price":2850.25,"quantity":50,"orders":5}],"sell":[{"price":2850.55,"quantity":10,"orders":1},{"price":2850.6000000000004,"quantity":20,"orders":2},{"price":2850.65,"quantity":30,"orders":3},{"price":2850.7000000000003,"quantity":40,"orders":4},{"price":2850.75,"quantity":50,"orders":5}]},"timestamp":1748353658900},"broker":"zerodha"}"#
    );
    assert_eq!(
        md(Documented, Mode::Depth, Depth::Five, &state).unwrap(),
        depth5.replace(r#","broker":"zerodha""#, "")
    );
    for depth in Depth::ALL {
        let v: serde_json::Value =
            serde_json::from_str(&md(Documented, Mode::Depth, depth, &state).unwrap()).unwrap();
        assert_eq!(
            v["data"]["depth"]["buy"].as_array().unwrap().len(),
            depth.levels()
        );
        assert_eq!(
            v["data"]["depth"]["sell"].as_array().unwrap().len(),
            depth.levels()
        );
    }
    // A thinner book than asked is sent as it is, not padded.
    let mut thin = MarketState::default();
    thin.apply(&Update::Book(book(2)));
    assert_eq!(
        md(Documented, Mode::Depth, Depth::Twenty, &thin).unwrap(),
        r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":3,"data":{"depth":{"buy":[{"price":2850.45,"quantity":10,"orders":1},{"price":2850.3999999999996,"quantity":20,"orders":2}],"sell":[{"price":2850.55,"quantity":10,"orders":1},{"price":2850.6000000000004,"quantity":20,"orders":2}]},"timestamp":1748353658900}}"#
    );
}

#[test]
fn higher_mode_updates_serve_lower_mode_subscribers_with_their_mode() {
    let instrument = reliance();
    let mut state = MarketState::default();
    let kind = state.apply(&Update::Tick(tick())).unwrap();
    // A tick (Quote data) feeds LTP subscribers too, each message tagged with its topic's mode.
    let fed = topics_fed(kind);
    assert_eq!(fed, [Topic::LTP, Topic::QUOTE]);
    let modes: Vec<u64> = fed
        .iter()
        .map(|t| {
            let bytes =
                encode_market_data(Openalgo, &instrument, t.mode(), t.depth(), &state).unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["mode"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(modes, [1, 2]);
    // A book feeds every Depth topic, each with its own number of levels.
    let kind = state.apply(&Update::Book(book(30))).unwrap();
    for topic in topics_fed(kind) {
        let bytes =
            encode_market_data(Documented, &instrument, topic.mode(), topic.depth(), &state)
                .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["mode"], 3);
        assert_eq!(
            v["data"]["depth"]["sell"].as_array().unwrap().len(),
            topic.depth().levels()
        );
    }
    // Other updates change nothing.
    assert_eq!(
        state.apply(&Update::Raw(tickwire_model::RawGroupPayload {
            group: "g".into(),
            data: bytes::Bytes::new(),
            data_type: tickwire_model::RawDataType::Text,
        })),
        None
    );
}

#[test]
fn odd_values_stay_valid_json() {
    let mut t = tick();
    t.price = f64::NAN;
    t.prev_close = 0.0;
    t.instrument = Instrument::new("A\"B\\C\u{1}", "NSE");
    t.source = "\n".into();
    let mut state = MarketState::default();
    state.apply(&Update::Tick(t.clone()));
    for style in [Documented, Openalgo] {
        for mode in [Mode::Ltp, Mode::Quote] {
            let bytes =
                encode_market_data(style, &t.instrument, mode, Depth::Five, &state).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["symbol"], "A\"B\\C\u{1}");
            assert!(v["data"]["ltp"].is_null());
        }
    }
}
