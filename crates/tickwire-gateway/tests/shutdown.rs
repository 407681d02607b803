//! Shutdown: every client is told, gets a close frame, and `run` returns.

mod common;

use common::*;
use tickwire_model::Hub;

#[tokio::test]
async fn shutdown_sends_disconnected_and_going_away() {
    let mut server = Server::default().await;
    let mut clients = Vec::new();
    for protocol in ALL_PROTOCOLS {
        let mut client = server.connect(Hub::Classic, protocol).await;
        assert!(matches!(client.recv().await, Down::Connected { .. }));
        client.join("blue_SPX_classic_gex_zero", 1).await;
        clients.push(client);
    }
    server.begin_shutdown();
    for client in &mut clients {
        match client.recv().await {
            Down::Disconnected(reason) => assert!(reason.contains("shutting down"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(client.close_code().await, 1001);
    }
    server.finish().await.unwrap();
}

#[tokio::test]
async fn shutdown_with_idle_http_connections_returns() {
    let server = Server::default().await;
    // An idle keep-alive connection does not hold the shutdown up.
    let _idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(http_get(server.addr, "/healthz", &[]).await.0, 200);
    server.finish().await.unwrap();
}

#[tokio::test]
async fn readyz_turns_unready_at_the_signal_while_connections_are_still_served() {
    let config = tickwire_gateway::Config {
        drain_delay_ms: 1000,
        ..tickwire_gateway::Config::default()
    };
    let mut server = Server::start(config).await;
    let (status, _, body) = http_get(server.addr, "/readyz", &[]).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    let mut client = FeedClient::ws(&server).await;
    client.sync().await;

    let signalled = std::time::Instant::now();
    server.begin_shutdown();
    // Unready at once, and still accepting and serving for the delay.
    let unready = tokio::time::timeout(PATIENCE, async {
        loop {
            let (status, _, body) = http_get(server.addr, "/readyz", &[]).await;
            if status == 503 {
                return body;
            }
        }
    })
    .await
    .expect("unready after the signal");
    assert_eq!(
        unready,
        r#"{"status":"unready","reasons":["shutting down"]}"#
    );
    client.sync().await;
    assert_eq!(http_get(server.addr, "/healthz", &[]).await.0, 200);
    // Then the connections are closed, going away.
    assert_eq!(client.close_code().await, 1001);
    assert!(
        signalled.elapsed() >= std::time::Duration::from_millis(1000),
        "not before the drain delay: {:?}",
        signalled.elapsed()
    );
    server.finish().await.unwrap();
}

/// A link state, as a watched adapter reports it.
#[derive(Debug, Clone, Copy)]
enum Link {
    Up,
    Down,
}

impl From<Link> for &'static str {
    fn from(link: Link) -> Self {
        match link {
            Link::Up => "connected",
            Link::Down => "retrying",
        }
    }
}

#[tokio::test]
async fn readyz_is_unready_while_a_required_adapter_is_not_connected() {
    let (link, state) = tokio::sync::watch::channel(Link::Down);
    let mut states = tickwire_gateway::AdapterStates::default();
    states.watch("memory", state);
    let config = tickwire_gateway::Config {
        required_adapters: vec!["memory".into()],
        ..tickwire_gateway::Config::default()
    };
    let adapters: Vec<std::sync::Arc<dyn tickwire_adapter::BrokerAdapter>> =
        vec![std::sync::Arc::new(tickwire_adapter::MemoryAdapter::new(
            "memory",
        ))];
    let gw = ProxyGateway::start(config, adapters, states).await;
    let (status, _, body) = http_get(gw.addr, "/readyz", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        r#"{"status":"unready","reasons":["adapter memory: retrying"]}"#
    );
    link.send(Link::Up).unwrap();
    assert_eq!(http_get(gw.addr, "/readyz", &[]).await.0, 200);
    // Liveness is another matter: alive all along.
    assert_eq!(http_get(gw.addr, "/healthz", &[]).await.0, 200);
}

/// A Socket.IO client on long-polling whose poll waits when the server shuts
/// down: the poll is answered with the close packet at once, and the
/// shutdown is not held up by it.
#[tokio::test]
async fn a_waiting_socketio_poll_gets_the_close_packet_at_shutdown() {
    let mut server = Server::default().await;
    let (status, _, open) = http_get(server.addr, "/socket.io/?EIO=4&transport=polling", &[]).await;
    assert_eq!(status, 200, "{open}");
    let handshake: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = handshake["sid"].as_str().unwrap().to_owned();
    let addr = server.addr;
    let poll = tokio::spawn(async move {
        let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        http_get(addr, &path, &[]).await
    });
    // Nothing is queued: the poll waits.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the poll did not wait");
    server.begin_shutdown();
    let (status, _, body) = tokio::time::timeout(std::time::Duration::from_secs(2), poll)
        .await
        .expect("the waiting poll is answered at the shutdown, not at its next ping")
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "1"));
    server.finish().await.unwrap();
}
