//! `/ws` (seed 001) over real sockets: golden frames, channels, every error
//! code, the limits and the idle timeout.
//!
//! `/ws` does not confirm a subscribe, so tests follow it with a `ping` and
//! wait for the `pong` ([`FeedClient::sync`]) before pushing market data.
//! Timers are set to a second or two where a test needs them to fire;
//! nothing asserts on durations.

mod common;

use common::*;
use tickwire_gateway::{ApiKey, Config, Endpoint, WsConfig};
use tickwire_model::{Instrument, Update};

fn btc() -> Instrument {
    Instrument::crypto("BTC/USD")
}

fn eth() -> Instrument {
    Instrument::crypto("ETH/USD")
}

fn config(ws: WsConfig) -> Config {
    Config {
        ws,
        ..Config::default()
    }
}

async fn server() -> Server {
    Server::start_with(Config::default(), universe()).await
}

async fn push(server: &Server, update: Update) {
    server.feed.push(update).await.unwrap();
}

#[tokio::test]
async fn golden_frames_of_every_channel() {
    let server = server().await;
    let mut client = FeedClient::ws(&server).await;
    client
        .send(r#"{"type":"subscribe","symbols":["btc"],"channels":["price","orderbook","signal"]}"#)
        .await;
    assert!(client.sync().await.is_empty());
    push(&server, Update::Tick(tick(btc(), 67234.56))).await;
    push(&server, Update::Book(book(btc()))).await;
    push(&server, Update::Signal(signal(btc()))).await;
    assert_eq!(
        client.text().await,
        r#"{"type":"price_update","symbol":"btc","price":67234.56,"change_24h":2.34,"volume_24h":28500000000,"timestamp":1700000000000}"#
    );
    assert_eq!(
        client.text().await,
        r#"{"type":"orderbook_update","symbol":"btc","bids":[{"price":67230,"quantity":1.5},{"price":67225,"quantity":2.3}],"asks":[{"price":67235,"quantity":0.8},{"price":67240,"quantity":1.2}],"timestamp":1700000000000}"#
    );
    assert_eq!(
        client.text().await,
        r#"{"type":"signal_update","symbol":"btc","indicator":"rsi","signal":"buy","value":28.5,"confidence":0.85,"timestamp":1700000000000}"#
    );
}

#[tokio::test]
async fn pong_carries_the_server_time() {
    let server = server().await;
    let mut client = FeedClient::ws(&server).await;
    client.send(r#"{"type":"ping"}"#).await;
    let pong = client.json().await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong.as_object().unwrap().len(), 2, "{pong}");
    // Milliseconds since the epoch, after 2020.
    assert!(
        pong["timestamp"].as_i64().unwrap() > 1_577_836_800_000,
        "{pong}"
    );
}

#[tokio::test]
async fn default_channels_are_price_and_signal() {
    let server = server().await;
    let mut client = FeedClient::ws(&server).await;
    client
        .send(r#"{"type":"subscribe","symbols":["BTC"]}"#)
        .await;
    client.sync().await;
    // The book is not sent; the tick and the signal are.
    push(&server, Update::Book(book(btc()))).await;
    push(&server, Update::Tick(tick(btc(), 1.0))).await;
    push(&server, Update::Signal(signal(btc()))).await;
    assert_eq!(client.json().await["type"], "price_update");
    assert_eq!(client.json().await["type"], "signal_update");
    // Nothing else was queued.
    assert!(client.sync().await.is_empty());
}

#[tokio::test]
async fn channels_are_added_and_removed_per_symbol() {
    let server = server().await;
    let mut client = FeedClient::ws(&server).await;
    client
        .send(r#"{"type":"subscribe","symbols":["btc"],"channels":["orderbook"]}"#)
        .await;
    client.sync().await;
    push(&server, Update::Tick(tick(btc(), 1.0))).await;
    push(&server, Update::Book(book(btc()))).await;
    assert_eq!(client.json().await["type"], "orderbook_update");

    // Adding the price channel keeps the book.
    client
        .send(r#"{"type":"subscribe","symbols":["btc"],"channels":["price"]}"#)
        .await;
    client.sync().await;
    push(&server, Update::Tick(tick(btc(), 2.0))).await;
    push(&server, Update::Book(book(btc()))).await;
    assert_eq!(client.json().await["type"], "price_update");
    assert_eq!(client.json().await["type"], "orderbook_update");

    // Removing the book channel keeps the price.
    client
        .send(r#"{"type":"unsubscribe","symbols":["btc"],"channels":["orderbook"]}"#)
        .await;
    client.sync().await;
    push(&server, Update::Book(book(btc()))).await;
    push(&server, Update::Tick(tick(btc(), 3.0))).await;
    assert_eq!(client.json().await["price"], 3.0);

    // Unsubscribing without channels drops the symbol.
    client
        .send(r#"{"type":"unsubscribe","symbols":["btc"]}"#)
        .await;
    client.sync().await;
    push(&server, Update::Tick(tick(btc(), 4.0))).await;
    push(&server, Update::Signal(signal(btc()))).await;
    assert!(client.sync().await.is_empty());
}

#[tokio::test]
async fn an_unknown_symbol_is_reported_and_the_rest_applies() {
    let server = server().await;
    let mut client = FeedClient::ws(&server).await;
    client
        .send(r#"{"type":"subscribe","symbols":["xyz","eth","abc"]}"#)
        .await;
    let before = client.sync().await;
    assert_eq!(
        before,
        [
            serde_json::json!({"type":"error","code":"invalid_symbol","message":"Symbol 'xyz' not found"}),
            serde_json::json!({"type":"error","code":"invalid_symbol","message":"Symbol 'abc' not found"}),
        ]
    );
    push(&server, Update::Tick(tick(eth(), 3500.0))).await;
    let update = client.json().await;
    assert_eq!(
        (update["symbol"].as_str(), update["price"].as_f64()),
        (Some("eth"), Some(3500.0))
    );
}

#[tokio::test]
async fn assets_is_an_alias_of_symbols() {
    let server = server().await;
    let mut client = FeedClient::ws(&server).await;
    client
        .send(r#"{"type":"subscribe","assets":["sol"]}"#)
        .await;
    client.sync().await;
    push(
        &server,
        Update::Tick(tick(Instrument::crypto("SOL/USD"), 150.0)),
    )
    .await;
    assert_eq!(client.json().await["symbol"], "sol");
}

#[tokio::test]
async fn a_subscribe_past_the_limit_is_refused_whole_before_lookup() {
    let server = Server::start_with(
        config(WsConfig {
            subscription_limit: 2,
            ..WsConfig::default()
        }),
        universe(),
    )
    .await;
    let mut client = FeedClient::ws(&server).await;
    // Three distinct symbols, one unknown: refused for the count alone.
    client
        .send(r#"{"type":"subscribe","symbols":["btc","eth","nope"]}"#)
        .await;
    let error = client.json().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "subscription_limit", "{error}");
    // Nothing of it applied.
    push(&server, Update::Tick(tick(btc(), 1.0))).await;
    assert!(client.sync().await.is_empty());

    // Two fit; repeating one does not count twice; a third does not fit.
    client
        .send(r#"{"type":"subscribe","symbols":["btc","eth","BTC"]}"#)
        .await;
    assert!(client.sync().await.is_empty());
    client
        .send(r#"{"type":"subscribe","symbols":["btc"]}"#)
        .await;
    assert!(client.sync().await.is_empty());
    client
        .send(r#"{"type":"subscribe","symbols":["sol"]}"#)
        .await;
    assert_eq!(client.json().await["code"], "subscription_limit");
}

#[tokio::test]
async fn malformed_messages_are_invalid_message() {
    let server = server().await;
    let mut client = FeedClient::ws(&server).await;
    for bad in [
        "not json",
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","symbols":[]}"#,
        r#"{"type":"subscribe","symbols":["btc"],"channels":["trades"]}"#,
        r#"{"type":"dance"}"#,
        r#"[1,2]"#,
    ] {
        client.send(bad).await;
        let error = client.json().await;
        assert_eq!(error["type"], "error", "{bad}");
        assert_eq!(error["code"], "invalid_message", "{bad}: {error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    // The connection is still fine.
    client.sync().await;
}

#[tokio::test]
async fn messages_over_the_rate_are_rate_limited() {
    let server = Server::start_with(
        config(WsConfig {
            messages_per_second: 2,
            flood_close_secs: 1000,
            ..WsConfig::default()
        }),
        universe(),
    )
    .await;
    let mut client = FeedClient::ws(&server).await;
    // Twenty pings in a burst cannot all fall within two per second.
    for _ in 0..20 {
        client.send(r#"{"type":"ping"}"#).await;
    }
    let mut limited = 0;
    for _ in 0..20 {
        let reply = client.json().await;
        match reply["type"].as_str() {
            Some("pong") => {}
            Some("error") => {
                assert_eq!(reply["code"], "rate_limited", "{reply}");
                limited += 1;
            }
            _ => panic!("{reply}"),
        }
    }
    assert!(limited > 0);
}

#[tokio::test]
async fn a_client_that_keeps_flooding_is_closed() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let server = Server::start_with(
        config(WsConfig {
            messages_per_second: 1,
            flood_close_secs: 2,
            ..WsConfig::default()
        }),
        universe(),
    )
    .await;
    let client = FeedClient::ws(&server).await;
    let (mut tx, mut rx) = client.ws.split();
    let reader = tokio::spawn(async move {
        let mut last_error = None;
        while let Some(Ok(msg)) = rx.next().await {
            match msg {
                Message::Close(frame) => return (frame.map(|f| u16::from(f.code)), last_error),
                Message::Text(t) => {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "error" {
                        last_error = Some(v["code"].as_str().unwrap().to_owned());
                    }
                }
                _ => {}
            }
        }
        (None, last_error)
    });
    let flood = async {
        // Bursts over the rate, paced so that they span consecutive seconds.
        while !reader.is_finished() {
            for _ in 0..4 {
                let _ = tx.send(Message::text(r#"{"type":"ping"}"#)).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(PATIENCE, flood)
        .await
        .expect("closed in time");
    let (code, last_error) = reader.await.unwrap();
    assert_eq!(code, Some(1008));
    assert_eq!(last_error.as_deref(), Some("rate_limited"));
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_pings_keep_it() {
    let server = Server::start_with(
        config(WsConfig {
            idle_timeout_secs: 2,
            ..WsConfig::default()
        }),
        universe(),
    )
    .await;
    let mut pinging = FeedClient::ws(&server).await;
    let mut silent = FeedClient::ws(&server).await;
    // Ping for longer than the timeout...
    for _ in 0..12 {
        pinging.sync().await;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // ...meanwhile the silent client was closed, 1000 "idle timeout"...
    assert_eq!(
        silent.next().await,
        Feed::Close(Some((1000, "idle timeout".to_owned())))
    );
    // ...while the pinging one is still served, until it falls silent too.
    pinging.sync().await;
    assert_eq!(pinging.close_code().await, 1000);
}

#[tokio::test]
async fn server_status_reports_true_figures() {
    let server = Server::start_with(
        config(WsConfig {
            status_interval_secs: 1,
            ..WsConfig::default()
        }),
        universe(),
    )
    .await;
    let mut a = FeedClient::ws(&server).await;
    let _b = FeedClient::ws(&server).await;
    let _c = FeedClient::stream(&server, DEMO).await;
    // Connections register as their sessions start: read until all three count.
    loop {
        let status = a.json().await;
        assert_eq!(status["type"], "server_status", "{status}");
        assert_eq!(status["active_sources"], 1, "{status}");
        assert_eq!(status["symbols_tracked"], universe().len(), "{status}");
        assert!(status["uptime_seconds"].is_u64());
        if status["connected_peers"] == 3 {
            break;
        }
    }
}

#[tokio::test]
async fn instruments_seen_in_updates_become_known() {
    let server = server().await;
    let mut client = FeedClient::ws(&server).await;
    client
        .send(r#"{"type":"subscribe","symbols":["doge"]}"#)
        .await;
    assert_eq!(client.sync().await[0]["code"], "invalid_symbol");
    push(
        &server,
        Update::Tick(tick(Instrument::crypto("DOGE/USD"), 0.1)),
    )
    .await;
    // Known once the fan-out saw it.
    let known = tokio::time::timeout(PATIENCE, async {
        loop {
            client
                .send(r#"{"type":"subscribe","symbols":["doge"]}"#)
                .await;
            if client.sync().await.is_empty() {
                return;
            }
        }
    })
    .await;
    assert!(known.is_ok());
}

#[tokio::test]
async fn oversized_messages_close_with_1009() {
    let server = Server::start_with(
        config(WsConfig {
            max_message_bytes: 1024,
            ..WsConfig::default()
        }),
        universe(),
    )
    .await;
    let mut client = FeedClient::ws(&server).await;
    let big = format!(
        r#"{{"type":"subscribe","symbols":["{}"]}}"#,
        "x".repeat(2000)
    );
    client.send(&big).await;
    assert_eq!(client.close_code().await, 1009);
}

#[tokio::test]
async fn a_key_can_be_required() {
    let mut config = config(WsConfig {
        require_key: true,
        ..WsConfig::default()
    });
    config.api_keys.push(ApiKey {
        endpoints: Some(vec![Endpoint::Stream]),
        ..ApiKey::new("stream-only", "stream-only-key")
    });
    let server = Server::start_with(config, universe()).await;
    let refused = |r: Result<FeedClient, (u16, String)>| r.err().map(|(status, _)| status);
    assert_eq!(
        refused(FeedClient::connect(server.addr, "/ws", &[]).await),
        Some(401)
    );
    assert_eq!(
        refused(FeedClient::connect(server.addr, "/ws?api_key=wrong", &[]).await),
        Some(401)
    );
    assert_eq!(
        refused(FeedClient::connect(server.addr, "/ws?api_key=stream-only-key", &[]).await),
        Some(403)
    );
    let mut client = FeedClient::connect(server.addr, &format!("/ws?api_key={DEMO}"), &[])
        .await
        .unwrap();
    client.sync().await;
    let mut client = FeedClient::connect(
        server.addr,
        "/ws",
        &[("Authorization", &format!("Bearer {DEMO}"))],
    )
    .await
    .unwrap();
    client.sync().await;
}

#[tokio::test]
async fn the_public_feed_needs_no_key() {
    let server = server().await;
    let mut client = FeedClient::ws(&server).await;
    client.sync().await;
    // Other methods are refused.
    let (status, _, _) = http_request(server.addr, "POST", "/ws", &[], b"").await;
    assert_eq!(status, 405);
    let (status, _, _) = http_get(server.addr, "/ws", &[]).await;
    assert_eq!(status, 400);
}
