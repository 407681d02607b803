//! The slow-consumer policies over real sockets: a client stops reading while
//! a healthy one paces the updates; its queue fills, and the policy decides.
//! (`disconnect`, the default, is tested in `backpressure.rs`.)

mod common;

use std::collections::HashMap;

use common::*;
use tickwire_gateway::{Config, SlowConsumer, TransportConfig};
use tickwire_model::Hub;

const GROUP_A: &str = "blue_SPX_classic_gex_zero";
const GROUP_B: &str = "blue_SPX_classic_gex_one";
const CATEGORIES: [&str; 2] = ["gex_zero", "gex_one"];
/// The last update of each group; every earlier one is smaller.
const LAST: i64 = 1_000_000;

async fn server(policy: SlowConsumer) -> Server {
    // The stalled client's socket stays full for the whole flood, which takes
    // longer than the default 10 s on a slow (debug) build: the policy is
    // under test here, not the write timeout.
    server_with(policy, 120).await
}

async fn server_with(policy: SlowConsumer, write_timeout_secs: u64) -> Server {
    Server::start(Config {
        transport: TransportConfig {
            send_buffer: 8,
            slow_consumer: policy,
            write_timeout_secs,
            ..TransportConfig::default()
        },
        ..Config::default()
    })
    .await
}

async fn joined(server: &Server, groups: &[&str]) -> Client {
    let mut client = server.connect(Hub::Classic, PROTOBUF).await;
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    for (i, group) in groups.iter().enumerate() {
        client.join(group, i as u64 + 1).await;
    }
    client
}

/// Pushes large updates alternating over `groups` until far more than the
/// stalled client's socket buffers can hold went out (the healthy client
/// reads each one), then the last update of each group. Returns how many
/// updates were pushed.
async fn flood(server: &Server, healthy: &mut Client, groups: usize) -> usize {
    let mut sent_bytes = 0usize;
    let mut pushed = 0usize;
    let mut ts = 0;
    while sent_bytes < 16 << 20 {
        ts += 1;
        let category = CATEGORIES[ts as usize % groups];
        server
            .push(gex_with_strikes(Hub::Classic, "SPX", category, ts, 2000))
            .await;
        pushed += 1;
        match healthy.recv().await {
            Down::Data {
                payload: payload @ Payload::Any { .. },
                ..
            } => {
                assert_eq!(payload.record().timestamp(), ts);
                if let Payload::Any { value, .. } = payload {
                    sent_bytes += value.len();
                }
            }
            other => panic!("{other:?}"),
        }
    }
    for category in &CATEGORIES[..groups] {
        server.push(gex(Hub::Classic, "SPX", category, LAST)).await;
        pushed += 1;
        assert!(matches!(healthy.recv().await, Down::Data { .. }));
    }
    pushed
}

/// Reads the stalled client until it has the last update of `groups`
/// groups, checking each group's updates arrive in order; returns how many
/// it received.
async fn catch_up(stalled: &mut Client, groups: usize) -> usize {
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut received = 0;
    while last.values().filter(|&&ts| ts == LAST).count() < groups {
        match stalled.recv().await {
            Down::Data {
                group: Some(group),
                payload,
                ..
            } => {
                let ts = payload.record().timestamp();
                let before = last.insert(group.clone(), ts).unwrap_or(0);
                assert!(ts > before, "{group}: {ts} after {before}");
                received += 1;
            }
            other => panic!("the stalled client stays connected, got {other:?}"),
        }
    }
    received
}

#[tokio::test]
async fn drop_oldest_keeps_the_client_and_delivers_the_newest() {
    let server = server(SlowConsumer::DropOldest).await;
    let mut stalled = joined(&server, &[GROUP_A]).await;
    let mut healthy = joined(&server, &[GROUP_A]).await;
    let pushed = flood(&server, &mut healthy, 1).await;
    let received = catch_up(&mut stalled, 1).await;
    assert!(
        received < pushed,
        "some were dropped: {received} of {pushed}"
    );
    // Every update the stalled client missed was the policy's doing, and
    // `/healthz` counts it.
    let counts = slow_consumers(&server).await;
    assert_eq!(counts["dropped_oldest"], (pushed - received) as u64);
    assert_eq!(counts["conflated"], 0);
    assert_eq!(counts["disconnected"], 0);
}

#[tokio::test]
async fn conflate_delivers_the_latest_of_every_topic() {
    let server = server(SlowConsumer::Conflate).await;
    let mut stalled = joined(&server, &[GROUP_A, GROUP_B]).await;
    let mut healthy = joined(&server, &[GROUP_A, GROUP_B]).await;
    let pushed = flood(&server, &mut healthy, 2).await;
    let received = catch_up(&mut stalled, 2).await;
    assert!(
        received < pushed,
        "some were conflated: {received} of {pushed}"
    );
    let counts = slow_consumers(&server).await;
    assert!(counts["conflated"] > 0, "{counts:?}");
    assert_eq!(
        counts["conflated"] + counts["dropped_oldest"],
        (pushed - received) as u64
    );
    assert_eq!(counts["disconnected"], 0);
}

#[tokio::test]
async fn a_client_dropped_by_the_write_timeout_is_counted_whatever_the_policy() {
    for policy in [SlowConsumer::DropOldest, SlowConsumer::Conflate] {
        let server = server_with(policy, 1).await;
        let _stalled = joined(&server, &[GROUP_A]).await;
        let mut healthy = joined(&server, &[GROUP_A]).await;
        flood(&server, &mut healthy, 1).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let counts = slow_consumers(&server).await;
            if counts["write_timeouts"] == 1 {
                assert_eq!(
                    counts["disconnected"], 0,
                    "{policy:?}: not the policy's doing"
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{policy:?}: the stalled client's drop is counted: {counts:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// The `slow_consumers` counts of `GET /healthz`.
async fn slow_consumers(server: &Server) -> HashMap<String, u64> {
    let (status, _, body) = http_get(server.addr, "/healthz", &[]).await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    serde_json::from_value(health["slow_consumers"].clone()).unwrap()
}
