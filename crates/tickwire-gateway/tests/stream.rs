//! `/stream` (seed 002) over real sockets: golden frames, the auth matrix,
//! every error code, the per-key limits and the idle timeout.
//!
//! Timers are set to a second where a test needs them to fire; nothing
//! asserts on durations.

mod common;

use common::*;
use sha2::{Digest as _, Sha256};
use tickwire_gateway::{ApiKey, Config, Endpoint, StreamConfig};
use tickwire_model::{Instrument, Update};

const PATH: &str = "/stream";

fn btc() -> Instrument {
    Instrument::crypto("BTC/USD")
}

/// `2025-10-10T14:30:00.000Z`: an RFC 3339 UTC time with milliseconds.
fn is_iso_millis(v: &serde_json::Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.chars()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit())
}

fn with_keys(keys: Vec<ApiKey>, stream: StreamConfig) -> Config {
    let mut config = Config {
        stream,
        ..Config::default()
    };
    config.api_keys.extend(keys);
    config
}

async fn server() -> Server {
    Server::start_with(Config::default(), universe()).await
}

async fn subscribe(client: &mut FeedClient, symbols: &[&str]) -> serde_json::Value {
    let msg = serde_json::json!({"type": "subscribe", "symbols": symbols});
    client.send(&msg.to_string()).await;
    client.json_skipping(&["pong"]).await
}

#[tokio::test]
async fn golden_frames() {
    let server = server().await;
    let mut client = FeedClient::stream(&server, DEMO).await;
    let subscribed = subscribe(&mut client, &["BTC/USD", "ETH/USD"]).await;
    assert_eq!(subscribed["type"], "subscribed");
    assert_eq!(
        subscribed["symbols"],
        serde_json::json!(["BTC/USD", "ETH/USD"])
    );
    assert!(is_iso_millis(&subscribed["timestamp"]), "{subscribed}");
    assert_eq!(subscribed.as_object().unwrap().len(), 3);

    server
        .feed
        .push(Update::Tick(tick(btc(), 45123.5)))
        .await
        .unwrap();
    assert_eq!(
        client.text().await,
        r#"{"type":"price_update","symbol":"BTC/USD","price":45123.5,"volume":28500000000,"timestamp":"2023-11-14T22:13:20.000Z","source":"coinbase"}"#
    );
    // Volume may be null.
    let mut unknown_volume = tick(Instrument::crypto("ETH/USD"), 3500.25);
    unknown_volume.volume_24h = None;
    server
        .feed
        .push(Update::Tick(unknown_volume))
        .await
        .unwrap();
    assert_eq!(
        client.text().await,
        r#"{"type":"price_update","symbol":"ETH/USD","price":3500.25,"volume":null,"timestamp":"2023-11-14T22:13:20.000Z","source":"coinbase"}"#
    );

    client.send(r#"{"type":"ping"}"#).await;
    let pong = client.json().await;
    assert_eq!(pong["type"], "pong");
    assert!(is_iso_millis(&pong["timestamp"]), "{pong}");
}

#[tokio::test]
async fn the_auth_matrix() {
    let secret = "hashed-secret";
    let digest: String = Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let config = with_keys(
        vec![
            ApiKey {
                key: None,
                key_sha256: Some(digest),
                ..ApiKey::new("hashed", "unused")
            },
            ApiKey {
                endpoints: Some(vec![Endpoint::Pubsub]),
                ..ApiKey::new("pubsub-only", "pubsub-only-key")
            },
        ],
        StreamConfig::default(),
    );
    let server = Server::start_with(config, universe()).await;
    let addr = server.addr;

    // No key, a bad key, a bad scheme: 401 with the document's error body.
    for (path, headers) in [
        (PATH.to_owned(), vec![]),
        (
            PATH.to_owned(),
            vec![("Authorization", "Bearer nope".to_owned())],
        ),
        (format!("{PATH}?api_key=nope"), vec![]),
        (
            PATH.to_owned(),
            vec![("Authorization", format!("Basic {DEMO}"))],
        ),
        (
            PATH.to_owned(),
            vec![("Authorization", format!("Bearer {secret}x"))],
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let Err((status, body)) = FeedClient::connect(addr, &path, &headers).await else {
            panic!("{path} {headers:?} was accepted");
        };
        assert_eq!(status, 401, "{path} {headers:?}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["code"], "UNAUTHORIZED");
        assert_eq!(body["message"], "Authentication failed");
        assert!(is_iso_millis(&body["timestamp"]), "{body}");
    }
    // A key not allowed on /stream: 403, same body.
    let Err((status, body)) =
        FeedClient::connect(addr, &format!("{PATH}?api_key=pubsub-only-key"), &[]).await
    else {
        panic!("accepted");
    };
    assert_eq!(status, 403);
    assert!(body.contains("UNAUTHORIZED"), "{body}");

    // Bearer, ?api_key=, and a key configured by its digest.
    let bearer = format!("Bearer {DEMO}");
    let hashed = format!("Bearer {secret}");
    let query = format!("{PATH}?api_key={DEMO}");
    for (path, headers) in [
        (PATH, vec![("Authorization", bearer.as_str())]),
        (query.as_str(), vec![]),
        (PATH, vec![("Authorization", hashed.as_str())]),
    ] {
        let mut client = FeedClient::connect(addr, path, &headers)
            .await
            .unwrap_or_else(|e| panic!("{path} {headers:?}: {e:?}"));
        assert_eq!(
            subscribe(&mut client, &["BTC/USD"]).await["type"],
            "subscribed"
        );
    }
}

#[tokio::test]
async fn the_eleventh_connection_of_a_key_is_refused_and_the_others_keep_receiving() {
    let config = with_keys(vec![ApiKey::new("ten", "ten-key")], StreamConfig::default());
    let server = Server::start_with(config, universe()).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut client = FeedClient::stream(&server, "ten-key").await;
        assert_eq!(
            subscribe(&mut client, &["BTC/USD"]).await["type"],
            "subscribed"
        );
        clients.push(client);
    }
    let mut eleventh = FeedClient::stream(&server, "ten-key").await;
    let error = eleventh.json().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "CONNECTION_LIMIT", "{error}");
    assert!(is_iso_millis(&error["timestamp"]));
    let Feed::Close(Some((code, reason))) = eleventh.next().await else {
        panic!("no close frame");
    };
    assert_eq!(code, 1008);
    assert!(reason.contains("connection limit"), "{reason}");

    // Another key is not affected.
    let mut other = FeedClient::stream(&server, DEMO).await;
    assert_eq!(
        subscribe(&mut other, &["BTC/USD"]).await["type"],
        "subscribed"
    );

    server
        .feed
        .push(Update::Tick(tick(btc(), 1.0)))
        .await
        .unwrap();
    for client in clients.iter_mut().chain([&mut other]) {
        assert_eq!(
            client.json_skipping(&["pong"]).await["type"],
            "price_update"
        );
    }

    // Closing one frees its slot.
    let mut first = clients.remove(0);
    first.ws.close(None).await.unwrap();
    while !matches!(first.next().await, Feed::Close(_)) {}
    let reopened = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut client = FeedClient::stream(&server, "ten-key").await;
            client.send(r#"{"type":"ping"}"#).await;
            if client.json().await["type"] == "pong" {
                return;
            }
        }
    })
    .await;
    assert!(reopened.is_ok());
}

#[tokio::test]
async fn requests_count_against_the_keys_rate() {
    let config = with_keys(
        vec![ApiKey {
            rate_per_minute: 3,
            ..ApiKey::new("slow", "slow-key")
        }],
        StreamConfig::default(),
    );
    let server = Server::start_with(config, universe()).await;
    // The connection is one request, subscribe and unsubscribe one each.
    let mut client = FeedClient::stream(&server, "slow-key").await;
    assert_eq!(
        subscribe(&mut client, &["BTC/USD"]).await["type"],
        "subscribed"
    );
    client
        .send(r#"{"type":"unsubscribe","symbols":["BTC/USD"]}"#)
        .await;
    assert_eq!(client.json().await["type"], "unsubscribed");
    let limited = subscribe(&mut client, &["ETH/USD"]).await;
    assert_eq!(limited["type"], "error");
    assert_eq!(limited["code"], "RATE_LIMITED", "{limited}");
    assert!(is_iso_millis(&limited["timestamp"]));
    // Pings do not count and still work.
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.json().await["type"], "pong");
    // The key's other connections share the budget: a new one is refused.
    let refused =
        FeedClient::connect(server.addr, PATH, &[("Authorization", "Bearer slow-key")]).await;
    let Err((status, body)) = refused else {
        panic!("accepted");
    };
    assert_eq!(status, 429);
    assert!(body.contains("RATE_LIMITED"), "{body}");
}

#[tokio::test]
async fn subscription_limit_is_counted_before_lookup() {
    let pairs: Vec<String> = (0..12).map(|i| format!("P{i}/USD")).collect();
    let server = Server::start_with(
        Config::default(),
        pairs
            .iter()
            .map(|p| Instrument::crypto(p.as_str()))
            .collect(),
    )
    .await;
    let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
    let mut client = FeedClient::stream(&server, DEMO).await;
    // Eleven symbols at once, all unknown: the limit, not UNKNOWN_SYMBOL.
    let eleven: Vec<String> = (0..11).map(|i| format!("X{i}/USD")).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    let error = subscribe(&mut client, &eleven).await;
    assert_eq!(error["code"], "SUBSCRIPTION_LIMIT", "{error}");
    assert_eq!(error["message"], "Too many symbols");
    assert!(is_iso_millis(&error["timestamp"]));

    // Nine held, two more requested (one unknown): refused whole.
    let held = subscribe(&mut client, &pairs[..9]).await;
    assert_eq!(held["symbols"].as_array().unwrap().len(), 9, "{held}");
    let error = subscribe(&mut client, &[pairs[9], "NOPE/USD"]).await;
    assert_eq!(error["code"], "SUBSCRIPTION_LIMIT", "{error}");
    // Nothing of it applied: exactly one more still fits, repeats are free.
    let fits = subscribe(&mut client, &[pairs[9], pairs[0]]).await;
    assert_eq!(fits["symbols"], serde_json::json!([pairs[9], pairs[0]]));
    let error = subscribe(&mut client, &[pairs[10]]).await;
    assert_eq!(error["code"], "SUBSCRIPTION_LIMIT", "{error}");
}

#[tokio::test]
async fn unknown_symbols_get_unknown_symbol_and_the_rest_applies() {
    let server = server().await;
    let mut client = FeedClient::stream(&server, DEMO).await;
    let subscribed = subscribe(&mut client, &["NOPE/USD", "BTC/USD", "btc/usd"]).await;
    assert_eq!(subscribed["type"], "subscribed");
    assert_eq!(subscribed["symbols"], serde_json::json!(["BTC/USD"]));
    for _ in 0..2 {
        let error = client.json().await;
        assert_eq!(error["type"], "error");
        assert_eq!(error["code"], "UNKNOWN_SYMBOL", "{error}");
        assert_eq!(error["message"], "Symbol not found");
    }
    server
        .feed
        .push(Update::Tick(tick(btc(), 2.0)))
        .await
        .unwrap();
    assert_eq!(client.json().await["symbol"], "BTC/USD");
}

#[tokio::test]
async fn malformed_messages_are_validation_errors() {
    let server = server().await;
    let mut client = FeedClient::stream(&server, DEMO).await;
    for bad in [
        "garbage",
        r#"{"symbols":["BTC/USD"]}"#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","symbols":[]}"#,
        r#"{"type":"subscribe","symbols":"BTC/USD"}"#,
        r#"{"type":"publish"}"#,
    ] {
        client.send(bad).await;
        let error = client.json().await;
        assert_eq!(error["type"], "error", "{bad}");
        assert_eq!(error["code"], "VALIDATION_ERROR", "{bad}: {error}");
        assert_eq!(error["message"], "Invalid message format");
        assert!(is_iso_millis(&error["timestamp"]));
    }
}

#[tokio::test]
async fn unsubscribe_some_or_all() {
    let server = server().await;
    let mut client = FeedClient::stream(&server, DEMO).await;
    subscribe(&mut client, &["BTC/USD", "ETH/USD", "SOL/USD"]).await;
    client
        .send(r#"{"type":"unsubscribe","symbols":["ETH/USD"]}"#)
        .await;
    let reply = client.json().await;
    assert_eq!(reply["type"], "unsubscribed");
    assert_eq!(reply["symbols"], serde_json::json!(["ETH/USD"]));
    assert!(is_iso_millis(&reply["timestamp"]));
    client.send(r#"{"type":"unsubscribe"}"#).await;
    let reply = client.json().await;
    assert_eq!(reply["symbols"], serde_json::json!(["BTC/USD", "SOL/USD"]));
    // Nothing is delivered any more.
    server
        .feed
        .push(Update::Tick(tick(btc(), 3.0)))
        .await
        .unwrap();
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.json().await["type"], "pong");
}

#[tokio::test]
async fn the_server_sends_heartbeat_pongs() {
    let server = Server::start_with(
        with_keys(
            vec![],
            StreamConfig {
                heartbeat_secs: 1,
                ..StreamConfig::default()
            },
        ),
        universe(),
    )
    .await;
    let mut client = FeedClient::stream(&server, DEMO).await;
    // No ping sent: the heartbeat comes on its own.
    let pong = client.json().await;
    assert_eq!(pong["type"], "pong");
    assert!(is_iso_millis(&pong["timestamp"]));
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let server = Server::start_with(
        with_keys(
            vec![],
            StreamConfig {
                idle_timeout_secs: 1,
                heartbeat_secs: 1,
                ..StreamConfig::default()
            },
        ),
        universe(),
    )
    .await;
    let mut client = FeedClient::stream(&server, DEMO).await;
    // Heartbeats do not keep it open.
    assert_eq!(client.close_code().await, 1000);
}

#[tokio::test]
async fn messages_over_one_megabyte_close_with_1009() {
    let server = server().await;
    let mut client = FeedClient::stream(&server, DEMO).await;
    let padding = "x".repeat(1024 * 1024);
    let big = format!(r#"{{"type":"ping","padding":"{padding}"}}"#);
    client.send(&big).await;
    assert_eq!(client.close_code().await, 1009);

    // Just under the limit is fine.
    let mut client = FeedClient::stream(&server, DEMO).await;
    let fits = format!(
        r#"{{"type":"ping","padding":"{}"}}"#,
        "x".repeat(1024 * 1024 - 40)
    );
    client.send(&fits).await;
    assert_eq!(client.json().await["type"], "pong");
}
