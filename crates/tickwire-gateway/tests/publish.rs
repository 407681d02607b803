//! The publish API over real sockets: what it accepts reaches `/ws`,
//! `/stream` and pubsub groups; every refusal is a clear 4xx.

mod common;

use common::*;
use tickwire_gateway::{ApiKey, Config, Endpoint, PublishConfig, ROLE_PUBLISH};
use tickwire_model::Hub;

const PUBLISH: &str = "/api/v1/publish";
const KEY: &str = "publisher-key";

fn config() -> Config {
    let mut config = Config::default();
    config.api_keys.push(ApiKey {
        roles: vec![ROLE_PUBLISH.into()],
        ..ApiKey::new("publisher", KEY)
    });
    config.api_keys.push(ApiKey {
        roles: vec![ROLE_PUBLISH.into()],
        endpoints: Some(vec![Endpoint::Stream]),
        ..ApiKey::new("fenced", "fenced-key")
    });
    config
}

async fn publish(server: &Server, key: &str, body: &str) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {key}");
    let (status, _, body) = http_request(
        server.addr,
        "POST",
        PUBLISH,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn published_updates_reach_ws_and_stream() {
    let server = Server::start_with(config(), universe()).await;
    let mut ws = FeedClient::ws(&server).await;
    ws.send(r#"{"type":"subscribe","symbols":["btc"],"channels":["price","orderbook","signal"]}"#)
        .await;
    ws.sync().await;
    let mut stream = FeedClient::stream(&server, DEMO).await;
    stream
        .send(r#"{"type":"subscribe","symbols":["BTC/USD"]}"#)
        .await;
    assert_eq!(stream.json().await["type"], "subscribed");

    let body = r#"[
        {"kind":"tick","symbol":"BTC/USD","price":67234.56,"volume":28500000000,"change_24h":2.34,"source":"desk","timestamp":1700000000000},
        {"kind":"book","symbol":"BTC/USD","bids":[[67225,2.3],[67230,1.5]],"asks":[[67235,0.8]],"timestamp":1700000000000},
        {"kind":"signal","symbol":"BTC/USD","indicator":"macd","signal":"sell","value":-1.5,"confidence":0.5,"timestamp":1700000000000}
    ]"#;
    let (status, reply) = publish(&server, KEY, body).await;
    assert_eq!((status, reply), (202, serde_json::json!({"accepted": 3})));

    assert_eq!(
        ws.text().await,
        r#"{"type":"price_update","symbol":"btc","price":67234.56,"change_24h":2.34,"volume_24h":28500000000,"timestamp":1700000000000}"#
    );
    assert_eq!(
        ws.text().await,
        r#"{"type":"orderbook_update","symbol":"btc","bids":[{"price":67230,"quantity":1.5},{"price":67225,"quantity":2.3}],"asks":[{"price":67235,"quantity":0.8}],"timestamp":1700000000000}"#
    );
    assert_eq!(
        ws.text().await,
        r#"{"type":"signal_update","symbol":"btc","indicator":"macd","signal":"sell","value":-1.5,"confidence":0.5,"timestamp":1700000000000}"#
    );
    assert_eq!(
        stream.text().await,
        r#"{"type":"price_update","symbol":"BTC/USD","price":67234.56,"volume":28500000000,"timestamp":"2023-11-14T22:13:20.000Z","source":"desk"}"#
    );
}

#[tokio::test]
async fn published_instruments_become_known() {
    let server = Server::start_with(config(), universe()).await;
    let (status, _) = publish(
        &server,
        KEY,
        r#"{"kind":"tick","symbol":"DOGE/USD","price":0.1}"#,
    )
    .await;
    assert_eq!(status, 202);
    let mut stream = FeedClient::stream(&server, DEMO).await;
    // Known once the fan-out handled it.
    tokio::time::timeout(PATIENCE, async {
        loop {
            stream
                .send(r#"{"type":"subscribe","symbols":["DOGE/USD"]}"#)
                .await;
            if stream.json().await["type"] == "subscribed" {
                return;
            }
        }
    })
    .await
    .expect("DOGE/USD became known");
    publish(
        &server,
        KEY,
        r#"{"kind":"tick","symbol":"DOGE/USD","price":0.2}"#,
    )
    .await;
    let update = stream.json_skipping(&["error", "pong"]).await;
    assert_eq!(
        (update["symbol"].as_str(), update["price"].as_f64()),
        (Some("DOGE/USD"), Some(0.2))
    );
    assert_eq!(update["source"], "publish");
}

#[tokio::test]
async fn raw_payloads_reach_a_pubsub_group() {
    let server = Server::start_with(config(), universe()).await;
    let group = "blue_SPX_state_gex_zero";
    let mut client = server.connect(Hub::StateGex, JSON).await;
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    client.join(group, 1).await;
    let body = format!(r#"{{"kind":"raw","group":"{group}","data_type":"text","data":"hello"}}"#);
    let (status, reply) = publish(&server, KEY, &body).await;
    assert_eq!((status, reply), (202, serde_json::json!({"accepted": 1})));
    assert_eq!(
        client.recv().await,
        Down::Data {
            group: Some(group.into()),
            sequence_id: None,
            payload: Payload::Text("hello".into()),
        }
    );
    // Binary payloads arrive as bytes.
    let body = format!(r#"{{"kind":"raw","group":"{group}","data_type":"binary","data":"AAEC"}}"#);
    assert_eq!(publish(&server, KEY, &body).await.0, 202);
    let Down::Data { payload, .. } = client.recv().await else {
        panic!("no data");
    };
    assert_eq!(payload, Payload::Binary(vec![0, 1, 2]));
}

#[tokio::test]
async fn refusals_are_clear() {
    let server = Server::start_with(
        Config {
            publish: PublishConfig {
                max_body_bytes: 4096,
            },
            ..config()
        },
        universe(),
    )
    .await;
    let tick = r#"{"kind":"tick","symbol":"BTC/USD","price":1}"#;
    let error = |v: &serde_json::Value| v["error"].as_str().unwrap().to_owned();

    // No key, a bad key: 401.
    let (status, _, body) = http_request(server.addr, "POST", PUBLISH, &[], tick.as_bytes()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, reply) = publish(&server, "wrong", tick).await;
    assert_eq!(status, 401, "{reply}");
    // A key without the role (the demo key), or with the role but not the endpoint: 403.
    let (status, reply) = publish(&server, DEMO, tick).await;
    assert_eq!(status, 403);
    assert!(error(&reply).contains("publish"), "{reply}");
    assert_eq!(publish(&server, "fenced-key", tick).await.0, 403);
    // Another method: 405 with Allow.
    let auth = format!("Bearer {KEY}");
    let (status, head, _) = http_get(server.addr, PUBLISH, &[("Authorization", &auth)]).await;
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: post"), "{head}");
    // Too large: 413, declared or not.
    let big = format!(
        r#"{{"kind":"tick","symbol":"BTC/USD","price":1,"source":"{}"}}"#,
        "x".repeat(5000)
    );
    assert_eq!(publish(&server, KEY, &big).await.0, 413);
    assert_eq!(chunked(&server, &big).await, 413);
    assert_eq!(chunked(&server, tick).await, 202);
    // Bad bodies: 400 naming what is wrong.
    for (body, expected) in [
        ("{", "not JSON"),
        (
            r#"{"kind":"tick","symbol":"BTC/USD"}"#,
            "missing field `price`",
        ),
        (
            r#"{"kind":"quote","symbol":"BTC/USD"}"#,
            "unknown variant `quote`",
        ),
        (
            r#"[{"kind":"tick","symbol":"BTC/USD","price":1},{"kind":"book","symbol":"BTC/USD","bids":[]}]"#,
            "item 1: missing field `asks`",
        ),
        (r#"{"kind":"tick","symbol":"ZZZ","price":1}"#, "`exchange`"),
        (
            r#"{"kind":"raw","group":"nope","data_type":"text","data":"x"}"#,
            "`group`",
        ),
    ] {
        let (status, reply) = publish(&server, KEY, body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(error(&reply).contains(expected), "{body}: {reply}");
    }
}

/// POSTs `body` in chunked transfer encoding (no `Content-Length`); returns the status.
async fn chunked(server: &Server, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {PUBLISH} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {KEY}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for part in body.as_bytes().chunks(1000) {
        let mut chunk = format!("{:x}\r\n", part.len()).into_bytes();
        chunk.extend_from_slice(part);
        chunk.extend_from_slice(b"\r\n");
        // The server may answer and close before the whole body is sent.
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw)).await;
    let raw = String::from_utf8_lossy(&raw);
    raw.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_request_on_a_keep_alive_connection_after_shutdown_is_answered_or_refused() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut server = Server::start_with(config(), universe()).await;
    let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = r#"{"kind":"tick","symbol":"BTC/USD","price":1,"timestamp":1700000000000}"#;
    let request = format!(
        "POST {PUBLISH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, conn.read(&mut first))
        .await
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&first[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 202"), "{first}");

    server.begin_shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // The connection was idle when the shutdown began: the next request is
    // either answered 503 or finds the connection closed; never left hanging.
    let _ = conn.write_all(request.as_bytes()).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest).into_owned();
    match read {
        Ok(Ok(_)) => assert!(
            rest.is_empty() || rest.starts_with("HTTP/1.1 503"),
            "{rest}"
        ),
        Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Err(_) => panic!("no answer and the connection still open: {rest:?}"),
    }
    server.finish().await.unwrap();
}

#[tokio::test]
async fn new_instruments_beyond_the_limit_are_refused_whole() {
    let known = universe().len();
    let mut config = config();
    config.max_instruments = known + 1;
    let server = Server::start_with(config, universe()).await;
    let tick = |symbol: &str| {
        format!(r#"{{"kind":"tick","symbol":"{symbol}","price":1,"timestamp":1700000000000}}"#)
    };
    // Two new ones, room for one: nothing of the batch is applied.
    let two = format!("[{},{}]", tick("AAA/USD"), tick("BBB/USD"));
    let (status, reply) = publish(&server, KEY, &two).await;
    assert_eq!(status, 422, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("max_instruments"),
        "{reply}"
    );
    let (status, _) = publish(&server, KEY, &tick("AAA/USD")).await;
    assert_eq!(status, 202);
    let (status, _) = publish(&server, KEY, &tick("CCC/USD")).await;
    assert_eq!(status, 422, "the table is full");
    // Known instruments are still served.
    let (status, _) = publish(&server, KEY, &tick("AAA/USD")).await;
    assert_eq!(status, 202);
    let (status, _) = publish(&server, KEY, &tick("BTC/USD")).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_burst_of_one_symbol_larger_than_a_queue_keeps_its_subscribers() {
    let server = Server::start_with(config(), universe()).await;
    let mut ws = FeedClient::ws(&server).await;
    ws.send(r#"{"type":"subscribe","symbols":["btc"],"channels":["price"]}"#)
        .await;
    ws.sync().await;
    let mut stream = FeedClient::stream(&server, DEMO).await;
    stream
        .send(r#"{"type":"subscribe","symbols":["BTC/USD"]}"#)
        .await;
    assert_eq!(stream.json().await["type"], "subscribed");

    // 600 ticks of one symbol in one request: more than a queue (256) holds.
    let ticks: Vec<String> = (1..=600)
        .map(|i| format!(r#"{{"kind":"tick","symbol":"BTC/USD","price":{i}}}"#))
        .collect();
    let (status, _) = publish(&server, KEY, &format!("[{}]", ticks.join(","))).await;
    assert_eq!(status, 202);

    // Each client gets the ticks in order, ending with the last one.
    for (name, client) in [("/ws", &mut ws), ("/stream", &mut stream)] {
        let mut last = 0.0;
        let mut received = 0;
        while last < 600.0 {
            let update = client.json_skipping(&["server_status", "pong"]).await;
            let price = update["price"].as_f64().expect("a price update");
            assert!(price > last, "{name}: {price} after {last}");
            (last, received) = (price, received + 1);
        }
        assert!(received <= 600, "{name}: {received}");
    }
    let (_, _, health) = http_get(server.addr, "/healthz", &[]).await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    let counts = &health["slow_consumers"];
    assert_eq!(counts["disconnected"], 0, "{health}");
    assert!(counts["burst_conflated"].as_u64() > Some(0), "{health}");
    assert_eq!(health["connections"], 2, "{health}");

    // Still subscribed: the next tick arrives.
    publish(
        &server,
        KEY,
        r#"{"kind":"tick","symbol":"BTC/USD","price":601}"#,
    )
    .await;
    assert_eq!(ws.json_skipping(&["server_status"]).await["price"], 601.0);
    assert_eq!(stream.json_skipping(&["pong"]).await["price"], 601.0);
}

async fn health(server: &Server) -> serde_json::Value {
    let (_, _, body) = http_get(server.addr, "/healthz", &[]).await;
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn idle_instruments_are_forgotten_with_their_cached_values_unless_followed() {
    let mut config = config();
    config.forget_instruments_after_secs = 1;
    let server = Server::start_with(config, universe()).await;
    let known_before = health(&server).await["instruments"]["known"]
        .as_u64()
        .unwrap();
    let ticks: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"kind":"tick","symbol":"Z{i}/USD","price":{}}}"#, i + 1))
        .collect();
    let (status, _) = publish(&server, KEY, &format!("[{}]", ticks.join(","))).await;
    assert_eq!(status, 202);
    let mut stream = FeedClient::stream(&server, DEMO).await;
    stream
        .send(r#"{"type":"subscribe","symbols":["Z0/USD"]}"#)
        .await;
    assert_eq!(stream.json().await["type"], "subscribed");
    let ltp = |i: usize| format!("/api/v1/ltp?symbol=Z{i}/USD&exchange=CRYPTO");
    assert_eq!(
        http_get_bearer(server.addr, &ltp(5), Some(DEMO)).await.0,
        200
    );

    // Nothing updates them: within two periods all but the followed one go.
    let health = tokio::time::timeout(PATIENCE, async {
        loop {
            let health = health(&server).await;
            if health["instruments"]["forgotten"].as_u64() >= Some(299) {
                return health;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("idle instruments forgotten");
    assert_eq!(
        health["instruments"]["known"].as_u64(),
        Some(known_before + 1),
        "{health}"
    );
    let (status, body) = http_get_bearer(server.addr, &ltp(5), Some(DEMO)).await;
    assert_eq!(status, 404, "the cached value went with it: {body}");
    let (status, body) = http_get_bearer(server.addr, &ltp(0), Some(DEMO)).await;
    assert_eq!(status, 200, "followed, kept: {body}");
    stream
        .send(r#"{"type":"subscribe","symbols":["Z5/USD"]}"#)
        .await;
    assert_eq!(stream.json_skipping(&["pong"]).await["type"], "error");

    // An update makes it known again.
    publish(
        &server,
        KEY,
        r#"{"kind":"tick","symbol":"Z5/USD","price":7}"#,
    )
    .await;
    tokio::time::timeout(PATIENCE, async {
        while http_get_bearer(server.addr, &ltp(5), Some(DEMO)).await.0 != 200 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("Z5/USD known again");
    stream
        .send(r#"{"type":"subscribe","symbols":["Z5/USD"]}"#)
        .await;
    assert_eq!(stream.json_skipping(&["pong"]).await["type"], "subscribed");
}
