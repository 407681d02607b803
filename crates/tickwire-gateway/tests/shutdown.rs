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
