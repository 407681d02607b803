//! An adapter that fails to start: the others serve, unless it is required.

mod common;

use std::sync::Arc;

use common::{PATIENCE, http_get};
use tickwire_adapter::{BrokerAdapter, MemoryAdapter};
use tickwire_gateway::{Config, GatewayError, WsConfig};
use tokio::sync::oneshot;

/// A working adapter and one whose upstream refuses every subscription.
fn adapters() -> Vec<Arc<dyn BrokerAdapter>> {
    let broken = MemoryAdapter::new("broken");
    broken
        .handle()
        .refuse_subscriptions(Some("upstream down".into()));
    vec![Arc::new(broken), Arc::new(MemoryAdapter::new("working"))]
}

#[tokio::test]
async fn a_failed_adapter_is_left_out_and_the_gateway_serves() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let config = Config {
        ws: WsConfig {
            status_interval_secs: 1,
            ..WsConfig::default()
        },
        ..Config::default()
    };
    let run = tokio::spawn(tickwire_gateway::run(listener, config, adapters(), async {
        let _ = stopped.await;
    }));
    let (status, _, body) = http_get(addr, "/healthz", &[]).await;
    assert_eq!(status, 200, "{body}");
    // One source active: the working one.
    let ws = format!("ws://{addr}/ws");
    let (mut client, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
    let status = tokio::time::timeout(PATIENCE, async {
        use futures_util::StreamExt as _;
        loop {
            let msg = client.next().await.unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
            if v["type"] == "server_status" {
                return v;
            }
        }
    })
    .await
    .expect("server_status");
    assert_eq!(status["active_sources"], 1, "{status}");
    let _ = stop.send(());
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_required_adapter_that_is_not_there_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        required_adapters: vec!["kafka".into()],
        ..Config::default()
    };
    let err = tickwire_gateway::run(listener, config, adapters(), std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"kafka\"") && err.contains("broken, working"),
        "{err}"
    );
}

#[tokio::test]
async fn a_required_adapter_that_fails_stops_the_start() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        required_adapters: vec!["broken".into()],
        ..Config::default()
    };
    let err = tickwire_gateway::run(listener, config, adapters(), std::future::pending())
        .await
        .unwrap_err();
    match err {
        GatewayError::Adapter { adapter, source } => {
            assert_eq!(adapter, "broken");
            assert!(source.to_string().contains("upstream down"), "{source}");
        }
        other => panic!("expected the adapter's error, got {other}"),
    }
}
