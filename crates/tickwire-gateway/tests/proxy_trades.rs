//! LTP-only updates ([`Update::Trade`]) over real sockets: on the proxy they reach
//! LTP subscribers alone and merge their price into the cached quote (never a quote
//! of zeros); on `/ws` and `/stream` they are a `price_update` with the price and
//! the figures a trade does not know as `null`.
//!
//! "Nothing arrived" is shown by order, never by waiting: an update pushed after
//! the one under test must be the next message a client reads.

mod common;

use common::*;
use tickwire_gateway::Config;
use tickwire_model::{Instrument, PriceTick, Trade, Update};

fn infy() -> Instrument {
    Instrument::new("INFY", "NSE")
}

fn quote(price: f64) -> PriceTick {
    PriceTick {
        instrument: infy(),
        price,
        last_quantity: 5.0,
        bid: price - 0.05,
        bid_quantity: 40.0,
        ask: price + 0.05,
        ask_quantity: 60.0,
        open: 1880.0,
        high: 1910.0,
        low: 1875.0,
        prev_close: 1890.0,
        change_24h_pct: 0.5,
        volume_24h: None,
        session_volume: 120_000.0,
        source: "synthetic".into(),
        timestamp_ms: 1_700_000_000_000,
    }
}

fn trade(instrument: Instrument, price: f64) -> Trade {
    Trade {
        instrument,
        price,
        quantity: None,
        source: "zmq".into(),
        timestamp_ms: 1_700_000_001_000,
    }
}

async fn server() -> Server {
    let instruments = vec![Instrument::crypto("BTC/USD"), infy()];
    Server::start_with(Config::default(), instruments).await
}

async fn subscribe(client: &mut FeedClient, mode: &str) {
    let reply = ask(
        client,
        &format!(
            r#"{{"action":"subscribe","symbols":[{{"symbol":"INFY","exchange":"NSE"}}],"mode":"{mode}"}}"#
        ),
    )
    .await;
    assert_eq!(reply["type"], "subscribe_response", "{reply}");
    assert_eq!(reply["status"], "success", "{reply}");
}

/// The next `market_data` message (snapshots included).
async fn market_data(client: &mut FeedClient) -> serde_json::Value {
    let msg = client.json().await;
    assert_eq!(msg["type"], "market_data", "{msg}");
    msg
}

async fn poll(server: &Server, mode: &str) -> serde_json::Value {
    let (status, body) = http_get_bearer(
        server.addr,
        &format!("/api/v1/{mode}?symbol=INFY&exchange=NSE"),
        Some(DEMO),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A server with two authenticated proxy clients of INFY, one in LTP mode and one
/// in Quote mode.
async fn with_ltp_and_quote_subscribers() -> (Server, FeedClient, FeedClient) {
    let server = server().await;
    let mut ltp = proxy_client(server.addr).await;
    let mut quoted = proxy_client(server.addr).await;
    subscribe(&mut ltp, "LTP").await;
    subscribe(&mut quoted, "Quote").await;
    (server, ltp, quoted)
}

#[tokio::test]
async fn a_trade_reaches_ltp_subscribers_only_and_merges_into_the_quote() {
    let (server, mut ltp, mut quoted) = with_ltp_and_quote_subscribers().await;

    server.feed.push(Update::Tick(quote(1900.0))).await.unwrap();
    assert_eq!(market_data(&mut ltp).await["data"]["ltp"], 1900.0);
    let first = market_data(&mut quoted).await;
    assert_eq!(
        (first["mode"].as_i64(), first["data"]["bid"].as_f64()),
        (Some(2), Some(1899.95))
    );

    server
        .feed
        .push(Update::Trade(trade(infy(), 777.25)))
        .await
        .unwrap();
    let msg = market_data(&mut ltp).await;
    assert_eq!(msg["mode"], 1);
    assert_eq!(
        msg["data"],
        serde_json::json!({"ltp": 777.25, "timestamp": 1_700_000_001_000_i64})
    );

    // The cache holds the quote with the trade's price and time, nothing blanked.
    let cached = poll(&server, "quote").await;
    let data = &cached["data"];
    assert_eq!(data["ltp"], 777.25);
    assert_eq!(data["timestamp"], 1_700_000_001_000_i64);
    assert_eq!(
        (data["bid"].as_f64(), data["ask"].as_f64()),
        (Some(1899.95), Some(1900.05))
    );
    assert_eq!(
        (data["open"].as_f64(), data["volume"].as_i64()),
        (Some(1880.0), Some(120_000))
    );
    assert_eq!(poll(&server, "ltp").await["data"]["ltp"], 777.25);

    // A new Quote subscriber's snapshot is that merged quote.
    let mut late = proxy_client(server.addr).await;
    subscribe(&mut late, "Quote").await;
    let snapshot = market_data(&mut late).await;
    assert_eq!(snapshot["data"]["ltp"], 777.25);
    assert_eq!(snapshot["data"]["bid"], 1899.95);

    // The Quote subscriber got nothing from the trade: its next message is the
    // next quote.
    server.feed.push(Update::Tick(quote(1901.0))).await.unwrap();
    let next = market_data(&mut quoted).await;
    assert_eq!(next["data"]["ltp"], 1901.0, "{next}");
    assert_eq!(next["data"]["bid"], 1900.95, "{next}");
}

#[tokio::test]
async fn a_trade_alone_is_no_quote() {
    let (server, mut ltp, mut quoted) = with_ltp_and_quote_subscribers().await;
    server
        .feed
        .push(Update::Trade(trade(infy(), 1500.5)))
        .await
        .unwrap();
    assert_eq!(market_data(&mut ltp).await["data"]["ltp"], 1500.5);
    // The price is known, a quote is not.
    assert_eq!(poll(&server, "ltp").await["data"]["ltp"], 1500.5);
    let (status, body) = http_get_bearer(
        server.addr,
        "/api/v1/quote?symbol=INFY&exchange=NSE",
        Some(DEMO),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    server.feed.push(Update::Tick(quote(1501.0))).await.unwrap();
    let next = market_data(&mut quoted).await;
    assert_eq!(next["data"]["ltp"], 1501.0, "{next}");
}

#[tokio::test]
async fn ws_and_stream_show_a_trade_as_a_price_update() {
    let server = server().await;
    let btc = Instrument::crypto("BTC/USD");
    let mut ws = FeedClient::ws(&server).await;
    ws.send(r#"{"type":"subscribe","symbols":["btc"],"channels":["price"]}"#)
        .await;
    assert!(ws.sync().await.is_empty());
    let mut stream = FeedClient::stream(&server, DEMO).await;
    stream
        .send(r#"{"type":"subscribe","symbols":["BTC/USD"]}"#)
        .await;
    assert_eq!(stream.json().await["type"], "subscribed");

    server
        .feed
        .push(Update::Trade(trade(btc, 67_001.5)))
        .await
        .unwrap();
    assert_eq!(
        ws.text().await,
        r#"{"type":"price_update","symbol":"btc","price":67001.5,"change_24h":null,"volume_24h":null,"timestamp":1700000001000}"#
    );
    assert_eq!(
        stream.text().await,
        r#"{"type":"price_update","symbol":"BTC/USD","price":67001.5,"volume":null,"timestamp":"2023-11-14T22:13:21.000Z","source":"zmq"}"#
    );
}
