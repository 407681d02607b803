//! The market-data proxy (seed 003) over real sockets: the proxy listener (any
//! path) and `/proxy` on the main one, both reply styles byte for byte, modes and
//! the higher-mode rule, refcounted upstream subscriptions, LTP conflation, the
//! last-value cache (snapshots and REST polls), and a real ZeroMQ bus.
//!
//! Every wait is bounded by [`PATIENCE`], only reached when something is broken;
//! nothing asserts on durations.

mod common;

use std::collections::BTreeSet;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{DEMO, PATIENCE, ProxyGateway, http_get_bearer};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tickwire_adapter::{AdapterCall, BrokerAdapter, MemoryAdapter, MemoryHandle};
use tickwire_adapter_zmq::ZmqAdapter;
use tickwire_gateway::{AdapterStates, ApiKey, Config, Endpoint, ReplyStyle, ZmqConfig, ZmqState};
use tickwire_model::{Instrument, Level, OrderBook, PriceTick, Update};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zeromq::{PubSocket, Socket as _, SocketSend as _, ZmqMessage};

/// A key that may use `/stream` only.
const STREAM_ONLY: &str = "stream-only-key";

// --- Harness ------------------------------------------------------------------------------

/// A [`ProxyGateway`] fed by a `MemoryAdapter`, with that adapter's handle.
struct Gateway {
    gateway: ProxyGateway,
    feed: MemoryHandle,
}

impl Deref for Gateway {
    type Target = ProxyGateway;

    fn deref(&self) -> &ProxyGateway {
        &self.gateway
    }
}

fn config(style: ReplyStyle, throttle_ms: u64) -> Config {
    let mut config = Config::default();
    config.proxy.reply_style = style;
    config.proxy.ltp_throttle_ms = throttle_ms;
    config.api_keys.push(ApiKey {
        endpoints: Some(vec![Endpoint::Stream]),
        ..ApiKey::new("streamer", STREAM_ONLY)
    });
    config
}

impl Gateway {
    async fn start(config: Config) -> Gateway {
        let memory = MemoryAdapter::new("memory");
        let feed = memory.handle();
        let adapter: Arc<dyn BrokerAdapter> = Arc::new(memory);
        Gateway::start_with(config, vec![adapter], AdapterStates::default(), feed).await
    }

    async fn start_with(
        config: Config,
        adapters: Vec<Arc<dyn BrokerAdapter>>,
        adapter_states: AdapterStates,
        feed: MemoryHandle,
    ) -> Gateway {
        let gateway = ProxyGateway::start(config, adapters, adapter_states).await;
        Gateway { gateway, feed }
    }

    /// A client on the proxy listener, at `/`.
    async fn client(&self) -> Client {
        Client::connect(&format!("ws://{}/", self.proxy_addr)).await
    }

    /// A client on the proxy listener, authenticated with the demo key.
    async fn authed(&self) -> Client {
        let mut client = self.client().await;
        client.authenticate(DEMO).await;
        client
    }

    async fn push(&self, update: Update) {
        self.feed.push(update).await.unwrap();
    }

    /// The adapter's subscribe and unsubscribe calls, but the gateway's own `*`.
    fn upstream_calls(&self) -> Vec<AdapterCall> {
        self.feed
            .calls()
            .into_iter()
            .filter(|c| match c {
                AdapterCall::Subscribe(keys) | AdapterCall::Unsubscribe(keys) => keys != &["*"],
                _ => false,
            })
            .collect()
    }

    /// Waits until the adapter got `n` proxy calls.
    async fn wait_calls(&self, n: usize) -> Vec<AdapterCall> {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let calls = self.upstream_calls();
                if calls.len() >= n {
                    return calls;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the adapter is called")
    }

    /// `GET path` on the main listener: status and body.
    async fn get(&self, path: &str, auth: Option<&str>) -> (u16, String) {
        http_get_bearer(self.addr, path, auth).await
    }

    async fn stop(self) {
        self.gateway.stop().await;
    }
}

/// A proxy client.
struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    async fn connect(url: &str) -> Client {
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .expect("the handshake completes")
            .expect("the handshake succeeds");
        Client { ws }
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next text message, within `wait`.
    async fn recv_within(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("text message expected, got {other:?}"),
                }
            }
        })
        .await
        .ok()
    }

    async fn recv(&mut self) -> String {
        self.recv_within(PATIENCE)
            .await
            .expect("a message within the patience")
    }

    async fn recv_json(&mut self) -> Value {
        serde_json::from_str(&self.recv().await).unwrap()
    }

    /// Sends `request` and returns the reply.
    async fn ask(&mut self, request: &str) -> String {
        self.send(request).await;
        self.recv().await
    }

    async fn authenticate(&mut self, key: &str) {
        let reply = self
            .ask(&format!(r#"{{"action":"authenticate","api_key":"{key}"}}"#))
            .await;
        assert!(reply.contains(r#""status":"success""#), "{reply}");
    }

    /// Subscribes one instrument and checks the reply's status.
    async fn subscribe(&mut self, symbol: &str, exchange: &str, mode: &str) -> Value {
        let reply = self
            .ask(&format!(
                r#"{{"action":"subscribe","symbols":[{{"symbol":"{symbol}","exchange":"{exchange}"}}],{mode}}}"#
            ))
            .await;
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["status"], "success", "{reply}");
        reply
    }

    async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Read until the server's close echo ends the stream.
        let _ = tokio::time::timeout(PATIENCE, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

// --- Fixtures -----------------------------------------------------------------------------

fn reliance() -> Instrument {
    Instrument::new("RELIANCE", "NSE")
}

/// The seed document's market-data example, from broker `zerodha`.
fn tick(instrument: Instrument, price: f64) -> Update {
    Update::Tick(PriceTick {
        instrument,
        price,
        last_quantity: 25.0,
        bid: 2850.45,
        bid_quantity: 500.0,
        ask: 2850.55,
        ask_quantity: 750.0,
        open: 2820.0,
        high: 2860.0,
        low: 2815.0,
        prev_close: 2848.25,
        change_24h_pct: 0.08,
        volume_24h: None,
        session_volume: 1_500_000.0,
        source: "zerodha".into(),
        timestamp_ms: 1_748_353_658_856,
    })
}

/// A book of `levels` levels a side, prices one rupee apart.
fn book(instrument: Instrument, levels: u32) -> Update {
    let level = |price: f64, i: u32| Level {
        price,
        quantity: f64::from(10 * (i + 1)),
        orders: i + 1,
    };
    Update::Book(OrderBook {
        instrument,
        bids: (0..levels)
            .map(|i| level(2850.0 - f64::from(i), i))
            .collect(),
        asks: (0..levels)
            .map(|i| level(2851.0 + f64::from(i), i))
            .collect(),
        source: "zerodha".into(),
        timestamp_ms: 1_748_353_658_900,
    })
}

fn levels(message: &Value, side: &str) -> usize {
    message["data"]["depth"][side].as_array().unwrap().len()
}

// --- Golden conversations -----------------------------------------------------------------

/// The whole conversation of one client, frame by frame, in `style`.
async fn golden_conversation(style: ReplyStyle) {
    let gw = Gateway::start(config(style, 50)).await;
    let mut c = gw.client().await;
    let openalgo = style == ReplyStyle::Openalgo;
    // An error reply: openalgo has no `type`, documented says `error`.
    let error = |code: &str, message: &str| {
        let body = format!(r#""status":"error","code":"{code}","message":"{message}"}}"#);
        if openalgo {
            format!("{{{body}")
        } else {
            format!(r#"{{"type":"error",{body}"#)
        }
    };

    // Before authentication.
    let not_authed = error("NOT_AUTHENTICATED", "You must authenticate first");
    for request in [
        r#"{"action":"subscribe","symbols":[{"symbol":"RELIANCE","exchange":"NSE"}],"mode":"LTP"}"#,
        r#"{"action":"unsubscribe","symbols":[{"symbol":"RELIANCE","exchange":"NSE"}]}"#,
        r#"{"action":"get_broker_info"}"#,
    ] {
        assert_eq!(c.ask(request).await, not_authed, "{request}");
    }
    let bad_key = if openalgo {
        r#"{"status":"error","code":"AUTHENTICATION_ERROR","message":"Invalid API key"}"#
    } else {
        r#"{"type":"auth_response","status":"error","code":"AUTHENTICATION_ERROR","message":"Invalid API key"}"#
    };
    assert_eq!(
        c.ask(r#"{"action":"authenticate","api_key":"wrong"}"#)
            .await,
        bad_key
    );
    // A key the proxy endpoint does not allow.
    let refused = c
        .ask(&format!(
            r#"{{"action":"authenticate","api_key":"{STREAM_ONLY}"}}"#
        ))
        .await;
    assert!(
        refused.contains(
            r#""code":"AUTHENTICATION_ERROR","message":"API key not allowed on the proxy""#
        ),
        "{refused}"
    );
    // Bad input: named errors, the connection stays usable.
    assert_eq!(
        c.ask("{not json").await,
        error("INVALID_JSON", "Invalid JSON message")
    );
    assert_eq!(
        c.ask(r#"{"action":"fly"}"#).await,
        error("INVALID_ACTION", "Invalid action: fly")
    );
    assert_eq!(
        c.ask(r#"{"action":"get_supported_brokers"}"#).await,
        r#"{"type":"supported_brokers","status":"success","brokers":["memory"],"count":1}"#
    );

    // Authentication.
    let auth_ok = if openalgo {
        r#"{"type":"auth","status":"success","message":"Authentication successful","broker":"tickwire","user_id":"demo","supported_features":{"ltp":true,"quote":true,"depth":true}}"#
    } else {
        r#"{"type":"auth_response","status":"success","message":"Authentication successful"}"#
    };
    assert_eq!(
        c.ask(r#"{"action":"authenticate","api_key":"tickwire-demo-key"}"#)
            .await,
        auth_ok
    );
    assert_eq!(
        c.ask(
            r#"{"action":"subscribe","symbols":[{"symbol":"A","exchange":"NSE"}],"mode":"full"}"#
        )
        .await,
        error(
            "INVALID_MODE",
            "Invalid mode 'full'; expected 'LTP', 'Quote', or 'Depth' (case-insensitive)"
        )
    );
    assert_eq!(
        c.ask(r#"{"action":"subscribe","symbols":[]}"#).await,
        error(
            "INVALID_PARAMETERS",
            "At least one symbol must be specified"
        )
    );

    // Subscriptions in the three modes.
    let subscribed = |mode: &str, depth: u32, request_id: &str| {
        format!(
            r#"{{"type":"{}","status":"success","subscriptions":[{{"symbol":"RELIANCE","exchange":"NSE","status":"success","mode":"{mode}","depth":{depth},"broker":"tickwire"}}],"message":"Subscription processing complete","broker":"tickwire"{request_id}}}"#,
            if openalgo {
                "subscribe"
            } else {
                "subscribe_response"
            }
        )
    };
    assert_eq!(
        c.ask(r#"{"action":"subscribe","symbol":"RELIANCE","exchange":"NSE","mode":1}"#)
            .await,
        subscribed("LTP", 5, "")
    );
    assert_eq!(
        c.ask(r#"{"action":"subscribe","symbols":[{"symbol":"RELIANCE","exchange":"NSE"}],"mode":"quote","request_id":"r-7"}"#)
            .await,
        subscribed("Quote", 5, r#","request_id":"r-7""#)
    );
    assert_eq!(
        c.ask(r#"{"action":"subscribe","symbols":[{"symbol":"RELIANCE","exchange":"NSE"}],"mode":"Depth","depth":5}"#)
            .await,
        subscribed("Depth", 5, "")
    );

    // Market data: a tick serves LTP then Quote, a book serves Depth.
    gw.push(tick(reliance(), 2850.5)).await;
    let (ltp, quote) = if openalgo {
        (
            r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":1,"data":{"ltp":2850.5,"ltt":1748353658856,"timestamp":1748353658856},"broker":"zerodha"}"#,
            r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":2,"data":{"ltp":2850.5,"open":2820.0,"high":2860.0,"low":2815.0,"close":2848.25,"volume":1500000,"bid":2850.45,"ask":2850.55,"bid_qty":500,"ask_qty":750,"last_trade_quantity":25,"change":2.25,"change_percent":0.079,"timestamp":1748353658856},"broker":"zerodha"}"#,
        )
    } else {
        (
            r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":1,"data":{"ltp":2850.5,"timestamp":1748353658856}}"#,
            r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":2,"data":{"ltp":2850.5,"open":2820.0,"high":2860.0,"low":2815.0,"close":2848.25,"volume":1500000,"bid":2850.45,"ask":2850.55,"bid_qty":500,"ask_qty":750,"timestamp":1748353658856}}"#,
        )
    };
    assert_eq!(c.recv().await, ltp);
    assert_eq!(c.recv().await, quote);
    gw.push(book(reliance(), 2)).await;
    let depth = format!(
        r#"{{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":3,"data":{{"ltp":2850.5,"depth":{{"buy":[{{"price":2850.0,"quantity":10,"orders":1}},{{"price":2849.0,"quantity":20,"orders":2}}],"sell":[{{"price":2851.0,"quantity":10,"orders":1}},{{"price":2852.0,"quantity":20,"orders":2}}]}},"timestamp":1748353658900}}{}}}"#,
        if openalgo {
            r#","broker":"zerodha""#
        } else {
            ""
        }
    );
    assert_eq!(c.recv().await, depth);

    // Ping, broker info.
    let pong: Value = serde_json::from_str(
        &c.ask(r#"{"action":"ping","timestamp":17,"_pingId":"p9"}"#)
            .await,
    )
    .unwrap();
    assert_eq!(
        (
            &pong["type"],
            &pong["status"],
            &pong["client_timestamp"],
            &pong["_pingId"]
        ),
        (
            &Value::from("pong"),
            &Value::from("success"),
            &Value::from(17),
            &Value::from("p9")
        )
    );
    assert!(pong["server_timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(
        c.ask(r#"{"action":"get_broker_info"}"#).await,
        r#"{"type":"broker_info","status":"success","broker":"tickwire","adapter_status":"connected","user_id":"demo"}"#
    );

    // Unsubscribing.
    let unsubscribe_type = if openalgo {
        "unsubscribe"
    } else {
        "unsubscribe_response"
    };
    assert_eq!(
        c.ask(r#"{"action":"unsubscribe","symbols":[{"symbol":"RELIANCE","exchange":"NSE","mode":"LTP"}]}"#)
            .await,
        format!(
            r#"{{"type":"{unsubscribe_type}","status":"success","message":"Unsubscription processing complete","successful":[{{"symbol":"RELIANCE","exchange":"NSE","status":"success","broker":"tickwire"}}],"failed":[],"broker":"tickwire"}}"#
        )
    );
    assert_eq!(
        c.ask(r#"{"action":"unsubscribe","symbols":[{"symbol":"TCS","exchange":"NSE"}]}"#)
            .await,
        format!(
            r#"{{"type":"{unsubscribe_type}","status":"error","message":"Unsubscription processing complete","successful":[],"failed":[{{"symbol":"TCS","exchange":"NSE","status":"error","message":"Not subscribed","broker":"tickwire"}}],"broker":"tickwire"}}"#
        )
    );
    // Quote and Depth remain, and go with `unsubscribe_all`.
    assert_eq!(
        c.ask(r#"{"action":"unsubscribe_all"}"#).await,
        format!(
            r#"{{"type":"{unsubscribe_type}","status":"success","message":"Unsubscription processing complete","successful":[{{"symbol":"RELIANCE","exchange":"NSE","status":"success","broker":"tickwire"}}],"failed":[],"broker":"tickwire"}}"#
        )
    );
    c.close().await;
    gw.stop().await;
}

#[tokio::test]
async fn golden_frames_in_the_documented_style() {
    golden_conversation(ReplyStyle::Documented).await;
}

#[tokio::test]
async fn golden_frames_in_the_openalgo_style() {
    golden_conversation(ReplyStyle::Openalgo).await;
}

// --- Modes --------------------------------------------------------------------------------

#[tokio::test]
async fn each_mode_gets_its_own_data_and_higher_modes_serve_lower_ones() {
    let gw = Gateway::start(config(ReplyStyle::Openalgo, 0)).await;
    let tcs = || Instrument::new("TCS", "NSE");
    let mut ltp = gw.authed().await;
    ltp.subscribe("TCS", "NSE", r#""mode":"ltp""#).await;
    let mut quote = gw.authed().await;
    quote.subscribe("TCS", "NSE", r#""mode":2"#).await;
    let mut depth5 = gw.authed().await;
    depth5.subscribe("TCS", "NSE", r#""mode":3"#).await;
    let mut depth30 = gw.authed().await;
    depth30
        .subscribe("TCS", "NSE", r#""mode":"DEPTH","depth":30"#)
        .await;

    // A book serves the Depth topics, each with its levels.
    gw.push(book(tcs(), 30)).await;
    let d5 = depth5.recv_json().await;
    assert_eq!((d5["mode"].as_u64(), levels(&d5, "buy")), (Some(3), 5));
    assert_eq!(levels(&d5, "sell"), 5);
    assert!(d5["data"].get("ltp").is_none(), "no tick yet: {d5}");
    let d30 = depth30.recv_json().await;
    assert_eq!((d30["mode"].as_u64(), levels(&d30, "buy")), (Some(3), 30));

    // A tick (Quote data) serves Quote and LTP subscribers, each with its mode.
    gw.push(tick(tcs(), 4100.5)).await;
    let l = ltp.recv_json().await;
    assert_eq!(l["mode"], 1);
    assert_eq!(l["data"]["ltp"], 4100.5);
    assert!(l["data"].get("open").is_none(), "{l}");
    let q = quote.recv_json().await;
    assert_eq!(q["mode"], 2);
    assert_eq!(
        (&q["data"]["ltp"], &q["data"]["volume"]),
        (&4100.5.into(), &1_500_000.into())
    );

    // The Depth subscribers got nothing of the tick: their next message is the next
    // book, now with the tick's LTP.
    gw.push(book(tcs(), 30)).await;
    for client in [&mut depth5, &mut depth30] {
        let d = client.recv_json().await;
        assert_eq!(
            (d["mode"].as_u64(), &d["data"]["ltp"]),
            (Some(3), &4100.5.into())
        );
    }
    // And the LTP and Quote subscribers nothing of the books: their next is a tick.
    gw.push(tick(tcs(), 4101.0)).await;
    assert_eq!(ltp.recv_json().await["data"]["ltp"], 4101.0);
    assert_eq!(quote.recv_json().await["data"]["ltp"], 4101.0);
    gw.stop().await;
}

// --- Refcounted upstream subscriptions ----------------------------------------------------

#[tokio::test]
async fn upstream_subscribes_on_the_first_client_and_unsubscribes_after_the_last() {
    let gw = Gateway::start(config(ReplyStyle::Openalgo, 0)).await;
    let sub = |k: &str| AdapterCall::Subscribe(vec![k.to_owned()]);
    let unsub = |k: &str| AdapterCall::Unsubscribe(vec![k.to_owned()]);

    let mut one = gw.authed().await;
    one.subscribe("TCS", "NSE", r#""mode":1"#).await;
    assert_eq!(gw.upstream_calls(), [sub("NSE:TCS:LTP")]);
    let mut two = gw.authed().await;
    two.subscribe("TCS", "NSE", r#""mode":1"#).await;
    // The second client of the key: no upstream call.
    assert_eq!(gw.upstream_calls(), [sub("NSE:TCS:LTP")]);
    // Another topic of the instrument is another key.
    two.subscribe("TCS", "NSE", r#""mode":3,"depth":20"#).await;
    one.subscribe("INFY", "NSE", r#""mode":"Quote""#).await;
    assert_eq!(
        gw.upstream_calls(),
        [
            sub("NSE:TCS:LTP"),
            sub("NSE:TCS:DEPTH:20"),
            sub("NSE:INFY:QUOTE")
        ]
    );
    assert_eq!(
        gw.feed.subscriptions(),
        ["*", "NSE:INFY:QUOTE", "NSE:TCS:DEPTH:20", "NSE:TCS:LTP"]
    );

    // The first client leaves TCS: the second still holds it.
    let reply = one
        .ask(r#"{"action":"unsubscribe","symbols":[{"symbol":"TCS","exchange":"NSE"}]}"#)
        .await;
    assert!(reply.contains(r#""status":"success""#), "{reply}");
    assert_eq!(gw.upstream_calls().len(), 3);

    // A disconnect releases everything the client held.
    one.close().await;
    assert_eq!(gw.wait_calls(4).await[3], unsub("NSE:INFY:QUOTE"));
    two.close().await;
    let calls = gw.wait_calls(6).await;
    let last: BTreeSet<_> = calls[4..].iter().map(|c| format!("{c:?}")).collect();
    let expected: BTreeSet<_> = [unsub("NSE:TCS:LTP"), unsub("NSE:TCS:DEPTH:20")]
        .iter()
        .map(|c| format!("{c:?}"))
        .collect();
    assert_eq!(last, expected);
    assert_eq!(gw.feed.subscriptions(), ["*"]);
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_refusal_is_reported_and_holds_nothing() {
    let gw = Gateway::start(config(ReplyStyle::Openalgo, 0)).await;
    let mut c = gw.authed().await;
    gw.feed.refuse_subscriptions(Some("broker down".into()));
    let reply: Value = serde_json::from_str(
        &c.ask(r#"{"action":"subscribe","symbols":[{"symbol":"TCS","exchange":"NSE"}],"mode":1}"#)
            .await,
    )
    .unwrap();
    assert_eq!(reply["status"], "partial", "{reply}");
    assert_eq!(reply["subscriptions"][0]["status"], "error");
    assert!(
        reply["subscriptions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("broker down"),
        "{reply}"
    );
    // Nothing is held: the next subscribe is again the first.
    gw.feed.refuse_subscriptions(None);
    c.subscribe("TCS", "NSE", r#""mode":1"#).await;
    assert_eq!(gw.upstream_calls().len(), 2);
    assert_eq!(gw.feed.subscriptions(), ["*", "NSE:TCS:LTP"]);
    gw.stop().await;
}

// --- Throttle -----------------------------------------------------------------------------

#[tokio::test]
async fn ltp_bursts_are_conflated_and_the_last_tick_always_arrives() {
    const BURST: u32 = 20;
    // A window far longer than pushing the burst takes.
    let gw = Gateway::start(config(ReplyStyle::Documented, 500)).await;
    let infy = || Instrument::new("INFY", "NSE");
    let mut ltp = gw.authed().await;
    ltp.subscribe("INFY", "NSE", r#""mode":"LTP""#).await;
    let mut quote = gw.authed().await;
    quote.subscribe("INFY", "NSE", r#""mode":"Quote""#).await;

    for i in 1..=BURST {
        gw.push(tick(infy(), 1500.0 + f64::from(i))).await;
    }
    let last = 1500.0 + f64::from(BURST);
    // Quote is not throttled: every tick arrives.
    for i in 1..=BURST {
        assert_eq!(
            quote.recv_json().await["data"]["ltp"],
            1500.0 + f64::from(i)
        );
    }
    // LTP: the first at once, then the latest of the window, ending with the last.
    let mut prices = Vec::new();
    loop {
        let price = ltp.recv_json().await["data"]["ltp"].as_f64().unwrap();
        prices.push(price);
        if price == last {
            break;
        }
    }
    assert_eq!(prices[0], 1501.0);
    assert!(prices.windows(2).all(|w| w[0] < w[1]), "{prices:?}");
    assert!(prices.len() < BURST as usize, "not conflated: {prices:?}");
    gw.stop().await;
}

// --- Last-value cache ---------------------------------------------------------------------

/// Waits until the cache holds `instrument`'s quote and depth.
async fn wait_cached(gw: &Gateway, symbol: &str) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let (quote, _) = gw
                .get(
                    &format!("/api/v1/quote?symbol={symbol}&exchange=NSE"),
                    Some(DEMO),
                )
                .await;
            let (depth, _) = gw
                .get(
                    &format!("/api/v1/depth?symbol={symbol}&exchange=NSE"),
                    Some(DEMO),
                )
                .await;
            if (quote, depth) == (200, 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the cache fills");
}

#[tokio::test]
async fn a_new_subscriber_gets_the_current_value_at_once() {
    let gw = Gateway::start(config(ReplyStyle::Openalgo, 50)).await;
    gw.push(tick(reliance(), 2850.5)).await;
    gw.push(book(reliance(), 30)).await;
    wait_cached(&gw, "RELIANCE").await;

    let mut c = gw.authed().await;
    let reply = c
        .ask(r#"{"action":"subscribe","symbol":"RELIANCE","exchange":"NSE","mode":"Quote"}"#)
        .await;
    assert!(
        reply.starts_with(r#"{"type":"subscribe","status":"success""#),
        "{reply}"
    );
    let snapshot = c.recv_json().await;
    assert_eq!(
        (
            &snapshot["type"],
            &snapshot["mode"],
            &snapshot["data"]["ltp"]
        ),
        (&"market_data".into(), &2.into(), &2850.5.into())
    );
    c.subscribe("RELIANCE", "NSE", r#""mode":3,"depth":20"#)
        .await;
    let snapshot = c.recv_json().await;
    assert_eq!(
        (snapshot["mode"].as_u64(), levels(&snapshot, "sell")),
        (Some(3), 20)
    );
    c.subscribe("RELIANCE", "NSE", r#""mode":1"#).await;
    assert_eq!(c.recv_json().await["mode"], 1);
    gw.stop().await;
}

#[tokio::test]
async fn without_snapshots_a_subscriber_waits_for_the_next_update() {
    let mut config = config(ReplyStyle::Openalgo, 50);
    config.proxy.snapshot_on_subscribe = false;
    let gw = Gateway::start(config).await;
    gw.push(tick(reliance(), 2850.5)).await;
    gw.push(book(reliance(), 5)).await;
    wait_cached(&gw, "RELIANCE").await;
    let mut c = gw.authed().await;
    c.subscribe("RELIANCE", "NSE", r#""mode":2"#).await;
    gw.push(tick(reliance(), 2851.5)).await;
    assert_eq!(c.recv_json().await["data"]["ltp"], 2851.5);
    gw.stop().await;
}

#[tokio::test]
async fn rest_polls_answer_from_the_cache_with_the_api_keys() {
    let gw = Gateway::start(config(ReplyStyle::Documented, 50)).await;
    let ltp = "/api/v1/ltp?symbol=RELIANCE&exchange=NSE";

    let (status, body) = gw.get(ltp, None).await;
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"error":"missing api key"}"#)
    );
    assert_eq!(gw.get(ltp, Some("nope")).await.0, 401);
    let (status, body) = gw.get(ltp, Some(STREAM_ONLY)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = gw.get("/api/v1/ltp?symbol=RELIANCE", Some(DEMO)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("`symbol` and `exchange` are required"),
        "{body}"
    );
    let (status, body) = gw.get(ltp, Some(DEMO)).await;
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"no LTP data for NSE:RELIANCE yet"}"#)
    );

    gw.push(tick(reliance(), 2850.5)).await;
    gw.push(book(reliance(), 30)).await;
    wait_cached(&gw, "RELIANCE").await;
    let (status, body) = gw.get(ltp, Some(DEMO)).await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":1,"data":{"ltp":2850.5,"timestamp":1748353658856}}"#
        )
    );
    // The key as a query parameter.
    let (status, body) = gw
        .get(
            "/api/v1/quote?symbol=RELIANCE&exchange=NSE&api_key=tickwire-demo-key",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let quote: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&quote["mode"], &quote["data"]["bid_qty"]),
        (&2.into(), &500.into())
    );
    let (status, body) = gw
        .get(
            "/api/v1/depth?symbol=RELIANCE&exchange=NSE&depth=20",
            Some(DEMO),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let depth: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((levels(&depth, "buy"), levels(&depth, "sell")), (20, 20));
    let (status, _) = gw
        .get(
            "/api/v1/depth?symbol=RELIANCE&exchange=NSE&depth=7",
            Some(DEMO),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        gw.get("/api/v1/quote?symbol=TCS&exchange=NSE", Some(DEMO))
            .await
            .0,
        404
    );
    gw.stop().await;
}

// --- Listeners ----------------------------------------------------------------------------

#[tokio::test]
async fn the_proxy_answers_on_any_path_of_its_listener_and_at_proxy() {
    let gw = Gateway::start(config(ReplyStyle::Openalgo, 50)).await;
    for url in [
        format!("ws://{}/", gw.proxy_addr),
        format!("ws://{}/any/path?x=1", gw.proxy_addr),
        format!("ws://{}/proxy", gw.addr),
    ] {
        let mut c = Client::connect(&url).await;
        let pong = c.ask(r#"{"action":"ping"}"#).await;
        assert!(
            pong.starts_with(r#"{"type":"pong","status":"success""#),
            "{url}: {pong}"
        );
        c.authenticate(DEMO).await;
        c.close().await;
    }
    // Not an upgrade: refused, on either listener.
    assert_eq!(http_get_bearer(gw.proxy_addr, "/", None).await.0, 400);
    assert_eq!(gw.get("/proxy", None).await.0, 400);
    gw.stop().await;
}

// --- A real ZeroMQ bus --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zeromq_publisher_reaches_proxy_clients() {
    let zmq = Arc::new(
        ZmqAdapter::new(ZmqConfig {
            endpoint: "tcp://127.0.0.1:0".into(),
            ..ZmqConfig::default()
        })
        .unwrap(),
    );
    let mut states = AdapterStates::default();
    states.watch("zmq", zmq.watch_state());
    let adapter: Arc<dyn BrokerAdapter> = zmq.clone();
    let unused = MemoryAdapter::new("unused").handle();
    let gw = Gateway::start_with(
        config(ReplyStyle::Openalgo, 50),
        vec![adapter],
        states,
        unused,
    )
    .await;
    // Authenticated means the gateway accepts, so the adapter is connected.
    let mut c = gw.authed().await;
    assert_eq!(zmq.state(), ZmqState::Connected);
    let info = c.ask(r#"{"action":"get_broker_info"}"#).await;
    assert!(info.contains(r#""adapter_status":"connected""#), "{info}");
    c.subscribe("RELIANCE", "NSE", r#""mode":2"#).await;
    c.subscribe("NIFTY", "NSE_INDEX", r#""mode":1"#).await;

    let mut publisher = PubSocket::new();
    publisher
        .connect(&zmq.local_endpoint().unwrap())
        .await
        .unwrap();
    let frames = |topic: &str, json: &str| {
        ZmqMessage::try_from(vec![
            Bytes::copy_from_slice(topic.as_bytes()),
            Bytes::copy_from_slice(json.as_bytes()),
        ])
        .unwrap()
    };
    // PUB drops what it publishes before the subscription reaches it: repeat.
    let quote = tokio::time::timeout(PATIENCE, async {
        loop {
            publisher
                .send(frames(
                    "zerodha_NSE_RELIANCE_QUOTE",
                    r#"{"ltp":2850.5,"open":2820,"high":2860,"low":2815,"close":2848.25,"volume":1500000}"#,
                ))
                .await
                .unwrap();
            if let Some(text) = c.recv_within(Duration::from_millis(50)).await {
                return serde_json::from_str::<Value>(&text).unwrap();
            }
        }
    })
    .await
    .expect("the bus reaches the client");
    assert_eq!(
        (
            &quote["type"],
            &quote["symbol"],
            &quote["exchange"],
            &quote["mode"],
            &quote["broker"]
        ),
        (
            &"market_data".into(),
            &"RELIANCE".into(),
            &"NSE".into(),
            &2.into(),
            &"zerodha".into()
        )
    );
    assert_eq!(
        (&quote["data"]["ltp"], &quote["data"]["volume"]),
        (&2850.5.into(), &1_500_000.into())
    );
    // A two-part exchange, no broker prefix.
    publisher
        .send(frames("NSE_INDEX_NIFTY_LTP", r#"{"ltp":24850.25}"#))
        .await
        .unwrap();
    let nifty = loop {
        let message = c.recv_json().await;
        if message["symbol"] == "NIFTY" {
            break message;
        }
    };
    assert_eq!(
        (&nifty["exchange"], &nifty["mode"], &nifty["data"]["ltp"]),
        (&"NSE_INDEX".into(), &1.into(), &24850.25.into())
    );
    c.close().await;
    gw.stop().await;
}
