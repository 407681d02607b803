//! Per-key connection limits on the proxy (seed 003), over real sockets: an
//! authenticated proxy connection, on the proxy's own listener or at `/proxy`,
//! counts against its key's `max_connections` until it closes; one more is refused
//! at `authenticate` with the reply style's authentication error, and the others
//! are unaffected.
//!
//! Every wait is bounded by [`PATIENCE`], only reached when something is broken.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{DEMO, FeedClient, PATIENCE, ProxyGateway, ask, authenticate};
use serde_json::Value;
use tickwire_adapter::{BrokerAdapter, MemoryAdapter};
use tickwire_gateway::{AdapterStates, ApiKey, Config};

const LIMITED: &str = "limited-key-of-two";

/// A gateway where the `LIMITED` key may hold two connections.
async fn gateway() -> ProxyGateway {
    let mut config = Config::default();
    config.api_keys.push(ApiKey {
        max_connections: 2,
        ..ApiKey::new("limited", LIMITED)
    });
    let adapters: Vec<Arc<dyn BrokerAdapter>> = vec![Arc::new(MemoryAdapter::new("memory"))];
    ProxyGateway::start(config, adapters, AdapterStates::default()).await
}

async fn subscribe(client: &mut FeedClient) -> Value {
    ask(
        client,
        r#"{"action":"subscribe","symbols":[{"symbol":"TCS","exchange":"NSE"}],"mode":"LTP"}"#,
    )
    .await
}

#[tokio::test]
async fn a_key_holds_at_most_its_max_connections_on_the_proxy() {
    let gw = gateway().await;
    // Two connections of the key, one on each listener.
    let mut first = gw.own().await;
    assert_eq!(authenticate(&mut first, LIMITED).await["status"], "success");
    let mut second = gw.main().await;
    assert_eq!(
        authenticate(&mut second, LIMITED).await["status"],
        "success"
    );

    // The third is refused at `authenticate`, in the documented style, and stays
    // unauthenticated on an open connection.
    let mut third = gw.own().await;
    let refused = authenticate(&mut third, LIMITED).await;
    assert_eq!(
        refused,
        serde_json::json!({
            "type": "auth_response",
            "status": "error",
            "code": "AUTHENTICATION_ERROR",
            "message": "Connection limit exceeded: at most 2 connections per API key",
        })
    );
    assert_eq!(subscribe(&mut third).await["code"], "NOT_AUTHENTICATED");
    // So is a third at `/proxy`.
    let mut fourth = gw.main().await;
    assert_eq!(
        authenticate(&mut fourth, LIMITED).await["code"],
        "AUTHENTICATION_ERROR"
    );

    // The two admitted ones are unaffected; authenticating again with the same key
    // keeps the connection's slot rather than taking another.
    assert_eq!(subscribe(&mut first).await["status"], "success");
    assert_eq!(
        authenticate(&mut second, LIMITED).await["status"],
        "success"
    );
    assert_eq!(subscribe(&mut second).await["status"], "success");
    // Other keys have limits of their own.
    let mut other = gw.own().await;
    assert_eq!(authenticate(&mut other, DEMO).await["status"], "success");

    // A disconnect frees its slot: the refused connection gets in once the server
    // has seen the close.
    first.ws.close(None).await.unwrap();
    let admitted = tokio::time::timeout(PATIENCE, async {
        loop {
            let reply = authenticate(&mut third, LIMITED).await;
            if reply["status"] == "success" {
                return reply;
            }
            assert_eq!(reply["code"], "AUTHENTICATION_ERROR", "{reply}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the closed connection's slot is freed");
    assert_eq!(admitted["type"], "auth_response");
    assert_eq!(subscribe(&mut third).await["status"], "success");
    // And the key is full again.
    assert_eq!(
        authenticate(&mut fourth, LIMITED).await["code"],
        "AUTHENTICATION_ERROR"
    );
    gw.stop().await;
}
