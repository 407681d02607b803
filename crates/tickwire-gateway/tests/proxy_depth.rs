//! The demo's synthetic market serves the proxy's Depth mode at every depth (5, 20,
//! 30 levels a side) for its exchange-listed instruments, over real sockets, while
//! `/ws` `orderbook_update` keeps its default 10 levels.
//!
//! Every wait is bounded by [`common::PATIENCE`], only reached when something is broken.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{FeedClient, ProxyGateway, ask, proxy_client};
use serde_json::Value;
use tickwire_adapter::BrokerAdapter;
use tickwire_adapter_synthetic::{SyntheticConfig, SyntheticMarket};
use tickwire_gateway::{AdapterStates, Config};

/// A gateway whose only adapter is the synthetic market (books every 50 ms).
async fn synthetic_gateway() -> ProxyGateway {
    let market = SyntheticMarket::new(SyntheticConfig {
        seed: Some(3),
        book_interval: Duration::from_millis(50),
        ..SyntheticConfig::default()
    })
    .unwrap();
    let adapters: Vec<Arc<dyn BrokerAdapter>> = vec![Arc::new(market)];
    ProxyGateway::start(Config::default(), adapters, AdapterStates::default()).await
}

/// Subscribes `symbol` on `exchange` in Depth mode with `depth` levels and returns
/// the first `market_data` of it (the snapshot, or the next book).
async fn depth_of(client: &mut FeedClient, symbol: &str, exchange: &str, depth: u32) -> Value {
    let reply = ask(
        client,
        &format!(
            r#"{{"action":"subscribe","symbols":[{{"symbol":"{symbol}","exchange":"{exchange}"}}],"mode":"Depth","depth":{depth}}}"#
        ),
    )
    .await;
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(reply["subscriptions"][0]["depth"], depth, "{reply}");
    loop {
        let msg = client.json().await;
        if msg["type"] == "market_data" && msg["symbol"] == symbol && msg["mode"] == 3 {
            return msg;
        }
    }
}

fn sides(msg: &Value) -> (usize, usize) {
    let side = |s: &str| msg["data"]["depth"][s].as_array().map_or(0, Vec::len);
    (side("buy"), side("sell"))
}

#[tokio::test]
async fn exchange_instruments_serve_every_depth_up_to_thirty() {
    let demo = synthetic_gateway().await;
    for (symbol, exchange) in [
        ("RELIANCE", "NSE"),
        ("TCS", "NSE"),
        ("INFY", "NSE"),
        ("NIFTY", "NSE_INDEX"),
    ] {
        for depth in [30, 20, 5] {
            let mut client = proxy_client(demo.addr).await;
            let msg = depth_of(&mut client, symbol, exchange, depth).await;
            let levels = usize::try_from(depth).unwrap();
            assert_eq!(
                sides(&msg),
                (levels, levels),
                "{symbol} depth {depth}: {msg}"
            );
            // Best first: bids falling, asks rising.
            let prices = |s: &str| -> Vec<f64> {
                msg["data"]["depth"][s]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["price"].as_f64().unwrap())
                    .collect()
            };
            assert!(prices("buy").windows(2).all(|w| w[0] > w[1]), "{msg}");
            assert!(prices("sell").windows(2).all(|w| w[0] < w[1]), "{msg}");
            client.ws.close(None).await.unwrap();
        }
    }
    demo.stop().await;
}

#[tokio::test]
async fn ws_orderbook_updates_keep_ten_levels() {
    let demo = synthetic_gateway().await;
    let mut ws = FeedClient::connect(demo.addr, "/ws", &[]).await.unwrap();
    ws.send(r#"{"type":"subscribe","symbols":["reliance"],"channels":["orderbook"]}"#)
        .await;
    let book = loop {
        let msg = ws.json().await;
        if msg["type"] == "orderbook_update" {
            break msg;
        }
    };
    assert_eq!(book["symbol"], "reliance");
    let len = |s: &str| book[s].as_array().unwrap().len();
    assert_eq!((len("bids"), len("asks")), (10, 10), "{book}");
    demo.stop().await;
}
