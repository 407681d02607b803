//! `/api/v1/ws` (seed 004, the FastWS envelope) over real sockets: golden
//! frames of every operation in both payload shapes, bars across bucket
//! boundaries (minutes, day, week, month), every close reason, the heartbeat
//! and lifespan limits, and the AsyncAPI routes.
//!
//! Ticks are pushed through a `MemoryAdapter` with known prices, quantities
//! and exchange times, after the subscription's reply has been read. Timers
//! are set to a second or two where a test needs them to fire; nothing
//! asserts on durations beyond generous upper bounds.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt as _;
use tickwire_gateway::{Config, FastWsConfig};
use tickwire_model::{Instrument, PriceTick, Update};
use tokio_tungstenite::tungstenite::Message;

const PATH: &str = "/api/v1/ws";

fn stock(symbol: &str) -> Instrument {
    Instrument::new(symbol, "NASDAQ")
}

/// The demo's stocks.
fn stocks() -> Vec<Instrument> {
    ["AAPL", "GOOGL", "MSFT", "TSLA"]
        .into_iter()
        .map(stock)
        .collect()
}

async fn server() -> Server {
    Server::start_with(Config::default(), stocks()).await
}

async fn server_with(fastws: FastWsConfig) -> Server {
    let config = Config {
        fastws,
        ..Config::default()
    };
    Server::start_with(config, stocks()).await
}

async fn connect(server: &Server) -> FeedClient {
    FeedClient::connect(server.addr, PATH, &[]).await.unwrap()
}

/// A trade of `symbol` (NASDAQ) at `price` for `quantity`, at `ts_ms`.
fn trade(symbol: &str, price: f64, quantity: f64, ts_ms: i64) -> Update {
    Update::Tick(PriceTick {
        last_quantity: quantity,
        timestamp_ms: ts_ms,
        ..tick(stock(symbol), price)
    })
}

async fn push(server: &Server, update: Update) {
    server.feed.push(update).await.unwrap();
}

/// Sends `{"type":"bars.subscribe","payload":payload}` and returns the reply.
async fn request(client: &mut FeedClient, op: &str, payload: &str) -> String {
    client
        .send(&format!(r#"{{"type":"{op}","payload":{payload}}}"#))
        .await;
    client.text().await
}

/// Subscribes in the seed's shape and checks the `ok` reply.
async fn subscribe(client: &mut FeedClient, symbol: &str, resolution: &str) {
    let reply = request(
        client,
        "bars.subscribe",
        &format!(r#"{{"symbol":"{symbol}","params":{{"resolution":"{resolution}"}}}}"#),
    )
    .await;
    assert_eq!(
        reply,
        format!(
            r#"{{"type":"bars.subscribe.response","payload":{{"status":"ok","symbol":"{symbol}","message":"Subscribed to {symbol}","topic":"bars:{symbol}:{resolution}"}}}}"#
        )
    );
}

/// The close frame that ends the connection (messages before it skipped).
async fn close_frame(client: &mut FeedClient) -> (u16, String) {
    loop {
        match client.next().await {
            Feed::Close(Some(frame)) => return frame,
            Feed::Close(None) => panic!("the connection ended without a close frame"),
            Feed::Text(_) => {}
        }
    }
}

// 2023-11-14T22:13:20Z and the buckets around it.
const T0: i64 = 1_700_000_000_000;
const MIN_2213: i64 = 1_699_999_980_000;
const MIN_2214: i64 = 1_700_000_040_000;
const MIN_2210: i64 = 1_699_999_800_000;
const MIN_2215: i64 = 1_700_000_100_000;

#[tokio::test]
async fn subscribe_and_unsubscribe_replies_are_golden_in_both_shapes() {
    let server = server().await;
    let mut client = connect(&server).await;
    // The seed's shape.
    assert_eq!(
        request(
            &mut client,
            "bars.subscribe",
            r#"{"symbol":"AAPL","params":{"resolution":"1"}}"#
        )
        .await,
        r#"{"type":"bars.subscribe.response","payload":{"status":"ok","symbol":"AAPL","message":"Subscribed to AAPL","topic":"bars:AAPL:1"}}"#
    );
    // The later shape, without `params`.
    assert_eq!(
        request(
            &mut client,
            "bars.subscribe",
            r#"{"symbol":"GOOGL","resolution":"5"}"#
        )
        .await,
        r#"{"type":"bars.subscribe.response","payload":{"status":"ok","symbol":"GOOGL","message":"Subscribed to GOOGL","topic":"bars:GOOGL:5"}}"#
    );
    // No resolution at all, in either shape: "1".
    for payload in [r#"{"symbol":"MSFT","params":{}}"#, r#"{"symbol":"MSFT"}"#] {
        assert_eq!(
            request(&mut client, "bars.subscribe", payload).await,
            r#"{"type":"bars.subscribe.response","payload":{"status":"ok","symbol":"MSFT","message":"Subscribed to MSFT","topic":"bars:MSFT:1"}}"#
        );
    }
    // Every resolution of the seed.
    for resolution in ["15", "30", "60", "D", "W", "M"] {
        subscribe(&mut client, "TSLA", resolution).await;
    }
    assert_eq!(
        request(
            &mut client,
            "bars.unsubscribe",
            r#"{"symbol":"AAPL","params":{"resolution":"1"}}"#
        )
        .await,
        r#"{"type":"bars.unsubscribe.response","payload":{"status":"ok","symbol":"AAPL","message":"Unsubscribed from AAPL","topic":"bars:AAPL:1"}}"#
    );
    assert_eq!(
        request(
            &mut client,
            "bars.unsubscribe",
            r#"{"symbol":"GOOGL","resolution":"5"}"#
        )
        .await,
        r#"{"type":"bars.unsubscribe.response","payload":{"status":"ok","symbol":"GOOGL","message":"Unsubscribed from GOOGL","topic":"bars:GOOGL:5"}}"#
    );
}

#[tokio::test]
async fn the_seed_python_test_passes() {
    // tests/test_ws_datafeed.py of the seed document, step by step.
    let server = server().await;
    let mut client = connect(&server).await;
    client
        .send(
            r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":{"resolution":"1"}}}"#,
        )
        .await;
    let response = client.json().await;
    assert_eq!(response["type"], "bars.subscribe.response");
    assert_eq!(response["payload"]["status"], "ok");
    assert_eq!(response["payload"]["symbol"], "AAPL");
    assert_eq!(response["payload"]["topic"], "bars:AAPL:1");
}

#[tokio::test]
async fn an_unknown_symbol_gets_an_error_reply_and_the_connection_stays() {
    let server = server().await;
    let mut client = connect(&server).await;
    assert_eq!(
        request(
            &mut client,
            "bars.subscribe",
            r#"{"symbol":"ZZZZ","params":{"resolution":"D"}}"#
        )
        .await,
        r#"{"type":"bars.subscribe.response","payload":{"status":"error","symbol":"ZZZZ","message":"Unknown symbol ZZZZ","topic":"bars:ZZZZ:D"}}"#
    );
    // Symbols are exact.
    assert_eq!(
        request(&mut client, "bars.unsubscribe", r#"{"symbol":"aapl"}"#).await,
        r#"{"type":"bars.unsubscribe.response","payload":{"status":"error","symbol":"aapl","message":"Unknown symbol aapl","topic":"bars:aapl:1"}}"#
    );
    subscribe(&mut client, "AAPL", "1").await;
}

#[tokio::test]
async fn updates_carry_exact_ohlcv_across_minute_boundaries() {
    let server = server().await;
    let mut minute = connect(&server).await;
    let mut five = connect(&server).await;
    subscribe(&mut minute, "AAPL", "1").await;
    assert_eq!(
        request(
            &mut five,
            "bars.subscribe",
            r#"{"symbol":"AAPL","resolution":"5"}"#
        )
        .await,
        r#"{"type":"bars.subscribe.response","payload":{"status":"ok","symbol":"AAPL","message":"Subscribed to AAPL","topic":"bars:AAPL:5"}}"#
    );

    // Four trades within 22:13, then one at 22:14:07 (the minute's first
    // trade comes late in it), then one exactly at 22:15:00.
    let trades = [
        (150.0, 100.0, T0),
        (151.5, 50.0, T0 + 10_000),
        (149.25, 25.0, T0 + 20_000),
        (150.5, 10.0, T0 + 30_000),
        (152.0, 5.0, MIN_2214 + 7_000),
        (148.0, 1.0, MIN_2215),
    ];
    for (price, qty, ts) in trades {
        push(&server, trade("AAPL", price, qty, ts)).await;
    }
    let expected_minute = [
        format!(
            r#"{{"type":"bars.update","payload":{{"time":{MIN_2213},"open":150.0,"high":150.0,"low":150.0,"close":150.0,"volume":100}}}}"#
        ),
        format!(
            r#"{{"type":"bars.update","payload":{{"time":{MIN_2213},"open":150.0,"high":151.5,"low":150.0,"close":151.5,"volume":150}}}}"#
        ),
        format!(
            r#"{{"type":"bars.update","payload":{{"time":{MIN_2213},"open":150.0,"high":151.5,"low":149.25,"close":149.25,"volume":175}}}}"#
        ),
        format!(
            r#"{{"type":"bars.update","payload":{{"time":{MIN_2213},"open":150.0,"high":151.5,"low":149.25,"close":150.5,"volume":185}}}}"#
        ),
        format!(
            r#"{{"type":"bars.update","payload":{{"time":{MIN_2214},"open":152.0,"high":152.0,"low":152.0,"close":152.0,"volume":5}}}}"#
        ),
        format!(
            r#"{{"type":"bars.update","payload":{{"time":{MIN_2215},"open":148.0,"high":148.0,"low":148.0,"close":148.0,"volume":1}}}}"#
        ),
    ];
    for expected in &expected_minute {
        assert_eq!(&minute.text().await, expected);
    }
    let expected_five = [
        (150.0, 150.0, 150.0, 150.0, 100),
        (150.0, 151.5, 150.0, 151.5, 150),
        (150.0, 151.5, 149.25, 149.25, 175),
        (150.0, 151.5, 149.25, 150.5, 185),
        // The 5-minute bar of 22:10 goes on across the minute boundary.
        (150.0, 152.0, 149.25, 152.0, 190),
    ];
    for (open, high, low, close, volume) in expected_five {
        assert_eq!(
            five.text().await,
            format!(
                r#"{{"type":"bars.update","payload":{{"time":{MIN_2210},"open":{open:?},"high":{high:?},"low":{low:?},"close":{close:?},"volume":{volume}}}}}"#
            )
        );
    }
    // 22:15:00 is the next 5-minute bucket's first instant.
    assert_eq!(
        five.text().await,
        format!(
            r#"{{"type":"bars.update","payload":{{"time":{MIN_2215},"open":148.0,"high":148.0,"low":148.0,"close":148.0,"volume":1}}}}"#
        )
    );
}

#[tokio::test]
async fn day_week_and_month_bars_start_on_utc_boundaries() {
    // 2023-11-30T23:59:30Z (a Thursday), 2023-12-01T00:00:00Z (a Friday, the
    // first of the month), 2023-12-04T00:00:07Z (a Monday, 7 s in).
    const NOV30_2359: i64 = 1_701_388_770_000;
    const DEC01: i64 = 1_701_388_800_000;
    const DEC04_0007: i64 = 1_701_648_007_000;
    const NOV30: i64 = 1_701_302_400_000;
    const DEC04: i64 = 1_701_648_000_000;
    const WEEK_NOV27: i64 = 1_701_043_200_000;
    const NOV01: i64 = 1_698_796_800_000;

    let server = server().await;
    let mut day = connect(&server).await;
    let mut week = connect(&server).await;
    let mut month = connect(&server).await;
    subscribe(&mut day, "MSFT", "D").await;
    subscribe(&mut week, "MSFT", "W").await;
    subscribe(&mut month, "MSFT", "M").await;
    push(&server, trade("MSFT", 100.0, 1.0, NOV30_2359)).await;
    push(&server, trade("MSFT", 102.0, 2.0, DEC01)).await;
    push(&server, trade("MSFT", 99.0, 3.0, DEC04_0007)).await;

    let bar = |time: i64, o: f64, h: f64, l: f64, c: f64, v: u32| {
        format!(
            r#"{{"type":"bars.update","payload":{{"time":{time},"open":{o:?},"high":{h:?},"low":{l:?},"close":{c:?},"volume":{v}}}}}"#
        )
    };
    for expected in [
        bar(NOV30, 100.0, 100.0, 100.0, 100.0, 1),
        bar(DEC01, 102.0, 102.0, 102.0, 102.0, 2),
        bar(DEC04, 99.0, 99.0, 99.0, 99.0, 3),
    ] {
        assert_eq!(day.text().await, expected);
    }
    for expected in [
        bar(WEEK_NOV27, 100.0, 100.0, 100.0, 100.0, 1),
        // Friday the 1st is still the week of Monday the 27th.
        bar(WEEK_NOV27, 100.0, 102.0, 100.0, 102.0, 3),
        bar(DEC04, 99.0, 99.0, 99.0, 99.0, 3),
    ] {
        assert_eq!(week.text().await, expected);
    }
    for expected in [
        bar(NOV01, 100.0, 100.0, 100.0, 100.0, 1),
        bar(DEC01, 102.0, 102.0, 102.0, 102.0, 2),
        bar(DEC01, 102.0, 102.0, 99.0, 99.0, 5),
    ] {
        assert_eq!(month.text().await, expected);
    }
}

#[tokio::test]
async fn updates_go_only_to_the_topic_and_stop_on_unsubscribe() {
    let server = server().await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    subscribe(&mut a, "AAPL", "1").await;
    subscribe(&mut a, "GOOGL", "1").await;
    subscribe(&mut b, "AAPL", "1").await;

    // Both subscribers of bars:AAPL:1 get the same frame.
    push(&server, trade("AAPL", 190.0, 10.0, T0)).await;
    let first = a.text().await;
    assert_eq!(b.text().await, first);
    assert!(first.contains(r#""close":190.0"#), "{first}");

    // Not subscribed to TSLA: nothing; GOOGL comes through. The fan-out
    // handles updates in order, so the TSLA one would have come first.
    push(&server, trade("TSLA", 180.0, 1.0, T0)).await;
    push(&server, trade("GOOGL", 175.0, 1.0, T0)).await;
    assert!(a.text().await.contains(r#""close":175.0"#));

    assert_eq!(
        request(
            &mut a,
            "bars.unsubscribe",
            r#"{"symbol":"AAPL","params":{"resolution":"1"}}"#
        )
        .await,
        r#"{"type":"bars.unsubscribe.response","payload":{"status":"ok","symbol":"AAPL","message":"Unsubscribed from AAPL","topic":"bars:AAPL:1"}}"#
    );
    push(&server, trade("AAPL", 191.0, 10.0, T0 + 1_000)).await;
    push(&server, trade("GOOGL", 176.0, 1.0, T0 + 1_000)).await;
    // `a` gets GOOGL only; `b` still gets AAPL, with the whole bar.
    let next = a.text().await;
    assert!(next.contains(r#""close":176.0"#), "{next}");
    assert_eq!(
        b.text().await,
        format!(
            r#"{{"type":"bars.update","payload":{{"time":{MIN_2213},"open":190.0,"high":191.0,"low":190.0,"close":191.0,"volume":20}}}}"#
        )
    );

    // Unsubscribing from a topic not held is fine, as in FastWS.
    assert!(
        request(&mut a, "bars.unsubscribe", r#"{"symbol":"TSLA"}"#)
            .await
            .contains(r#""status":"ok""#)
    );
}

#[tokio::test]
async fn invalid_frames_close_with_1003_and_fastws_reasons() {
    let server = server().await;
    let cases: [(&str, &str); 9] = [
        ("not json", "Could not validate payload"),
        (r#"["bars.subscribe"]"#, "Could not validate payload"),
        (
            r#"{"payload":{"symbol":"AAPL"}}"#,
            "Could not validate payload",
        ),
        (
            r#"{"type":"bars.subscribe","payload":{"params":{}}}"#,
            "Could not validate payload",
        ),
        (r#"{"type":"bars.subscribe"}"#, "Could not validate payload"),
        (
            r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":{"resolution":"2"}}}"#,
            "Could not validate payload",
        ),
        (
            r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","resolution":"d"}}"#,
            "Could not validate payload",
        ),
        (
            r#"{"type":"unknown.operation","payload":{}}"#,
            "No matching type",
        ),
        // Only the server sends updates.
        (
            r#"{"type":"bars.update","payload":{"time":0,"open":1,"high":1,"low":1,"close":1,"volume":1}}"#,
            "No matching type",
        ),
    ];
    for (frame, reason) in cases {
        let mut client = connect(&server).await;
        client.send(frame).await;
        assert_eq!(
            client.next().await,
            Feed::Close(Some((1003, reason.to_owned()))),
            "{frame}"
        );
    }
    // A valid request first, then a bad one: the reply, then the close.
    let mut client = connect(&server).await;
    subscribe(&mut client, "AAPL", "1").await;
    client
        .send(r#"{"type":"bars.subscribe","payload":{"symbol":1}}"#)
        .await;
    assert_eq!(
        close_frame(&mut client).await,
        (1003, "Could not validate payload".to_owned())
    );
    // The envelope travels in text frames.
    let mut client = connect(&server).await;
    client
        .ws
        .send(Message::binary(b"{\"type\":\"bars.subscribe\"}".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        close_frame(&mut client).await,
        (1003, "Could not decode message".to_owned())
    );
}

#[tokio::test]
async fn a_silent_client_times_out_even_while_receiving_updates() {
    let server = server_with(FastWsConfig {
        heartbeat_secs: 1,
        ..FastWsConfig::default()
    })
    .await;
    let mut client = connect(&server).await;
    subscribe(&mut client, "AAPL", "1").await;
    // Updates keep coming; they do not count as the client's heartbeat.
    let feed = server.feed.clone();
    let pusher = tokio::spawn(async move {
        for i in 0..400 {
            if feed
                .push(trade("AAPL", 100.0 + f64::from(i), 1.0, T0))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut updates = 0;
    let close = loop {
        match client.next().await {
            Feed::Text(_) => updates += 1,
            Feed::Close(frame) => break frame,
        }
    };
    pusher.abort();
    assert!(updates > 0, "updates arrived before the timeout");
    assert_eq!(
        close,
        Some((
            1003,
            "Connection timed out. Heartbeat interval 1.0. Max connection lifespan 3600.0"
                .to_owned()
        ))
    );
}

#[tokio::test]
async fn any_client_message_resets_the_heartbeat() {
    let server = server_with(FastWsConfig {
        heartbeat_secs: 2,
        ..FastWsConfig::default()
    })
    .await;
    let mut client = connect(&server).await;
    // Twelve requests a quarter of a second apart: three seconds, longer
    // than the heartbeat, and every one answered.
    for _ in 0..12 {
        subscribe(&mut client, "AAPL", "1").await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Then silence: the timeout.
    assert_eq!(
        close_frame(&mut client).await,
        (
            1003,
            "Connection timed out. Heartbeat interval 2.0. Max connection lifespan 3600.0"
                .to_owned()
        )
    );
}

#[tokio::test]
async fn the_lifespan_ends_even_an_active_connection() {
    let server = server_with(FastWsConfig {
        heartbeat_secs: 3600,
        lifespan_secs: 1,
        ..FastWsConfig::default()
    })
    .await;
    let mut client = connect(&server).await;
    let started = std::time::Instant::now();
    let close = loop {
        client
            .send(r#"{"type":"bars.subscribe","payload":{"symbol":"TSLA"}}"#)
            .await;
        match client.next().await {
            Feed::Text(reply) => assert!(reply.contains(r#""status":"ok""#), "{reply}"),
            Feed::Close(frame) => break frame,
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the lifespan ends the connection"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        close,
        Some((
            1003,
            "Connection timed out. Heartbeat interval 3600.0. Max connection lifespan 1.0"
                .to_owned()
        ))
    );
}

#[tokio::test]
async fn the_asyncapi_routes_serve_the_page_its_script_and_the_document() {
    let server = server().await;

    let (status, head, page) = http_get(server.addr, "/api/v1/ws/asyncapi", &[]).await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(page.contains("/api/v1/ws/asyncapi.js"), "{page}");
    assert!(page.contains("/api/v1/ws/asyncapi.json"), "{page}");

    let (status, head, script) = http_get(server.addr, "/api/v1/ws/asyncapi.js", &[]).await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/javascript; charset=utf-8"),
        "{head}"
    );
    assert!(!script.is_empty());

    let (status, head, body) = http_get(server.addr, "/api/v1/ws/asyncapi.json", &[]).await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["asyncapi"], "2.4.0");
    assert_eq!(doc["info"]["title"], "Trading WebSockets");
    assert_eq!(doc["defaultContentType"], "application/json");
    let refs = |op: &str| -> Vec<String> {
        doc["channels"]["/"][op]["message"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["$ref"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        refs("publish"),
        [
            "#/components/messages/bars.subscribe",
            "#/components/messages/bars.unsubscribe"
        ]
    );
    assert_eq!(
        refs("subscribe"),
        [
            "#/components/messages/bars.subscribe.response",
            "#/components/messages/bars.unsubscribe.response",
            "#/components/messages/bars.update"
        ]
    );
    let messages = &doc["components"]["messages"];
    assert_eq!(
        messages["bars.subscribe"]["x-response"]["$ref"],
        "#/components/messages/bars.subscribe.response"
    );
    assert_eq!(
        messages["bars.unsubscribe"]["x-response"]["$ref"],
        "#/components/messages/bars.unsubscribe.response"
    );
    let bar = &doc["components"]["schemas"]["Bar"]["properties"];
    for field in ["time", "open", "high", "low", "close", "volume"] {
        assert!(bar.get(field).is_some(), "Bar.{field}");
    }

    // GET only.
    let (status, _, _) =
        http_request(server.addr, "POST", "/api/v1/ws/asyncapi.json", &[], b"").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn a_plain_get_on_the_endpoint_is_refused() {
    let server = server().await;
    let (status, _, body) = http_get(server.addr, PATH, &[]).await;
    assert_eq!(status, 400, "{body}");
}

#[test]
fn zero_limits_are_refused() {
    assert_eq!(FastWsConfig::default().heartbeat(), Duration::from_secs(30));
    assert_eq!(
        FastWsConfig::default().lifespan(),
        Duration::from_secs(3600)
    );
    for fastws in [
        FastWsConfig {
            heartbeat_secs: 0,
            ..FastWsConfig::default()
        },
        FastWsConfig {
            lifespan_secs: 0,
            ..FastWsConfig::default()
        },
        FastWsConfig {
            max_message_bytes: 0,
            ..FastWsConfig::default()
        },
    ] {
        let config = Config {
            fastws: fastws.clone(),
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("fastws."), "{fastws:?}: {err}");
    }
}
