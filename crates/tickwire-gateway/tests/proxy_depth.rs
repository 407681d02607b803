//! The demo's synthetic market serves the proxy's Depth mode at every depth (5, 20,
//! 30 levels a side) for its exchange-listed instruments, over real sockets, while
//! `/ws` `orderbook_update` keeps its default 10 levels.
//!
//! Every wait is bounded by [`PATIENCE`], only reached when something is broken.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{DEMO, FeedClient, PATIENCE};
use serde_json::Value;
use tickwire_adapter::{BrokerAdapter, SyntheticConfig, SyntheticMarket};
use tickwire_gateway::{Config, GatewayError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A gateway whose only adapter is the synthetic market (books every 50 ms).
struct Demo {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), GatewayError>>,
}

impl Demo {
    async fn start() -> Demo {
        let market = SyntheticMarket::new(SyntheticConfig {
            seed: Some(3),
            book_interval: Duration::from_millis(50),
            ..SyntheticConfig::default()
        })
        .unwrap();
        let adapters: Vec<Arc<dyn BrokerAdapter>> = vec![Arc::new(market)];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tickwire_gateway::run(
            listener,
            Config::default(),
            adapters,
            async {
                let _ = stopped.await;
            },
        ));
        Demo {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the gateway stops")
            .unwrap()
            .unwrap();
    }

    /// A proxy client on `/proxy`, authenticated.
    async fn proxy(&self) -> FeedClient {
        let mut client = FeedClient::connect(self.addr, "/proxy", &[]).await.unwrap();
        client
            .send(&format!(
                r#"{{"action":"authenticate","api_key":"{DEMO}"}}"#
            ))
            .await;
        assert_eq!(client.json().await["status"], "success");
        client
    }
}

/// Subscribes `symbol` on `exchange` in Depth mode with `depth` levels and returns
/// the first `market_data` of it (the snapshot, or the next book).
async fn depth_of(client: &mut FeedClient, symbol: &str, exchange: &str, depth: u32) -> Value {
    client
        .send(&format!(
            r#"{{"action":"subscribe","symbols":[{{"symbol":"{symbol}","exchange":"{exchange}"}}],"mode":"Depth","depth":{depth}}}"#
        ))
        .await;
    let reply = client.json().await;
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
    let demo = Demo::start().await;
    for (symbol, exchange) in [
        ("RELIANCE", "NSE"),
        ("TCS", "NSE"),
        ("INFY", "NSE"),
        ("NIFTY", "NSE_INDEX"),
    ] {
        for depth in [30, 20, 5] {
            let mut client = demo.proxy().await;
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
    let demo = Demo::start().await;
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
