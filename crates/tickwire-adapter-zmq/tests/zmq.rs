//! The ZeroMQ adapter against a real PUB socket over TCP on 127.0.0.1.
//!
//! PUB/SUB drops what is published before a subscription reaches the publisher (the
//! "slow joiner"), so each step publishes repeatedly until the adapter delivers. Time
//! limits only guard against hangs; nothing asserts on durations.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use tickwire_adapter::{AdapterError, BrokerAdapter, UpdateStream};
use tickwire_adapter_zmq::{ZmqAdapter, ZmqConfig, ZmqState};
use tickwire_model::{Instrument, Update};
use zeromq::{PubSocket, Socket as _, SocketSend as _, ZmqMessage};

/// Generous: only reached when something is broken.
const GUARD: Duration = Duration::from_secs(20);

fn two_frames(topic: &str, json: &str) -> ZmqMessage {
    ZmqMessage::try_from(vec![
        Bytes::copy_from_slice(topic.as_bytes()),
        Bytes::copy_from_slice(json.as_bytes()),
    ])
    .unwrap()
}

/// Publishes `topic`/`json` every 20 ms until the stream yields an update.
async fn publish_until_received(
    publisher: &mut PubSocket,
    updates: &mut UpdateStream,
    topic: &str,
    json: &str,
) -> Update {
    tokio::time::timeout(GUARD, async {
        loop {
            publisher.send(two_frames(topic, json)).await.unwrap();
            if let Ok(Some(update)) =
                tokio::time::timeout(Duration::from_millis(20), updates.next()).await
            {
                return update;
            }
        }
    })
    .await
    .expect("the adapter delivers")
}

fn price(update: &Update) -> f64 {
    match update {
        Update::Tick(t) => t.price,
        Update::Trade(t) => t.price,
        other => panic!("tick or trade expected, got {other:?}"),
    }
}

async fn drain(updates: &mut UpdateStream) {
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), updates.next()).await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_sub_receives_skips_malformed_and_survives_publisher_restart() {
    let adapter = ZmqAdapter::new(ZmqConfig {
        endpoint: "tcp://127.0.0.1:0".into(),
        ..ZmqConfig::default()
    })
    .unwrap();
    let mut updates = adapter.updates().unwrap();
    adapter.connect().await.unwrap();
    assert_eq!(adapter.state(), ZmqState::Connected);
    adapter
        .subscribe(&["NSE:ANY:LTP".to_owned()])
        .await
        .unwrap();
    let endpoint = adapter.local_endpoint().unwrap();
    assert!(
        endpoint.starts_with("tcp://127.0.0.1:") && !endpoint.ends_with(":0"),
        "{endpoint}"
    );

    let mut publisher = PubSocket::new();
    publisher.connect(&endpoint).await.unwrap();
    let first = publish_until_received(
        &mut publisher,
        &mut updates,
        "zerodha_NSE_RELIANCE_QUOTE",
        r#"{"ltp":2850.5,"open":2820,"high":2860,"low":2815,"close":2848.25,"volume":1500000}"#,
    )
    .await;
    let Update::Tick(tick) = &first else {
        panic!("tick expected")
    };
    assert_eq!(tick.instrument, Instrument::new("RELIANCE", "NSE"));
    assert_eq!(
        (&*tick.source, tick.session_volume),
        ("zerodha", 1_500_000.0)
    );
    drain(&mut updates).await;

    // Malformed messages are skipped; the good one after them arrives.
    publisher
        .send(ZmqMessage::from("NSE_RELIANCE_LTP"))
        .await
        .unwrap();
    publisher
        .send(two_frames("NSE_RELIANCE_LTP", "{not json"))
        .await
        .unwrap();
    publisher
        .send(two_frames("NSE_RELIANCE_FULL", r#"{"ltp":1}"#))
        .await
        .unwrap();
    publisher
        .send(two_frames("zerodha_orders", r#"{"id":1}"#))
        .await
        .unwrap();
    let mut three = two_frames("NSE_RELIANCE_LTP", r#"{"ltp":2}"#);
    three.push_back(Bytes::from_static(b"extra"));
    publisher.send(three).await.unwrap();
    publisher
        .send(two_frames("NSE_RELIANCE_LTP", r#"{"ltp":2851}"#))
        .await
        .unwrap();
    let next = tokio::time::timeout(GUARD, updates.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(price(&next), 2851.0);
    let skipped = adapter.skipped();
    assert_eq!(
        skipped["expected two frames [topic, json]"], 2,
        "{skipped:?}"
    );
    assert_eq!(skipped["payload is not JSON"], 1, "{skipped:?}");

    // A depth message gives a tick and a book, for a two-part exchange.
    publisher
        .send(two_frames(
            "NSE_INDEX_NIFTY_DEPTH",
            r#"{"ltp":24000,"depth":{"buy":[{"price":23999,"quantity":75,"orders":3}],"sell":[{"price":24001,"quantity":50,"orders":2}]}}"#,
        ))
        .await
        .unwrap();
    let tick = tokio::time::timeout(GUARD, updates.next())
        .await
        .unwrap()
        .unwrap();
    let book = tokio::time::timeout(GUARD, updates.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(price(&tick), 24000.0);
    let Update::Book(book) = book else {
        panic!("book expected")
    };
    assert_eq!(book.instrument, Instrument::new("NIFTY", "NSE_INDEX"));
    assert_eq!((book.bids[0].price, book.asks[0].orders), (23999.0, 2));

    // The publisher goes away and a new one comes: data flows again, no restart.
    drop(publisher);
    let mut publisher = PubSocket::new();
    publisher.connect(&endpoint).await.unwrap();
    let after = publish_until_received(
        &mut publisher,
        &mut updates,
        "NSE_TCS_LTP",
        r#"{"ltp":4100.5}"#,
    )
    .await;
    assert_eq!(price(&after), 4100.5);
    assert_eq!(adapter.state(), ZmqState::Connected);

    adapter.disconnect().await.unwrap();
    assert_eq!(adapter.state(), ZmqState::Stopped);
    // The stream ends once drained.
    while tokio::time::timeout(GUARD, updates.next())
        .await
        .unwrap()
        .is_some()
    {}
    assert!(matches!(
        adapter.connect().await,
        Err(AdapterError::Disconnected { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_sub_reconnects_to_a_restarted_publisher() {
    let mut publisher = PubSocket::new();
    let endpoint = publisher
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .to_string();
    let adapter = ZmqAdapter::new(ZmqConfig {
        endpoint: endpoint.clone(),
        bind: false,
        ..ZmqConfig::default()
    })
    .unwrap();
    let mut updates = adapter.updates().unwrap();
    let mut states = adapter.watch_state();
    adapter.connect().await.unwrap();
    assert_eq!(adapter.state(), ZmqState::Connected);
    let first = publish_until_received(
        &mut publisher,
        &mut updates,
        "NSE_INFY_LTP",
        r#"{"ltp":1500}"#,
    )
    .await;
    assert_eq!(price(&first), 1500.0);

    // The publisher restarts on the same port.
    drop(publisher);
    tokio::time::timeout(GUARD, states.wait_for(|s| *s == ZmqState::Reconnecting))
        .await
        .unwrap()
        .unwrap();
    let mut publisher = PubSocket::new();
    let again = tokio::time::timeout(GUARD, async {
        loop {
            match publisher.bind(&endpoint).await {
                Ok(_) => break,
                // The old socket may hold the port for a moment.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    again.expect("the port is free again");
    drain(&mut updates).await;
    let after = publish_until_received(
        &mut publisher,
        &mut updates,
        "NSE_INFY_LTP",
        r#"{"ltp":1501}"#,
    )
    .await;
    assert_eq!(price(&after), 1501.0);
    tokio::time::timeout(GUARD, states.wait_for(|s| *s == ZmqState::Connected))
        .await
        .unwrap()
        .unwrap();
    adapter.disconnect().await.unwrap();
}

#[tokio::test]
async fn failures_retry_with_backoff_then_fail() {
    // Nobody listens on this port: every connect attempt is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let adapter = ZmqAdapter::new(ZmqConfig {
        endpoint: format!("tcp://127.0.0.1:{port}"),
        bind: false,
        max_retries: 3,
        backoff_initial_ms: 5,
        connect_timeout_ms: 300,
        ..ZmqConfig::default()
    })
    .unwrap();
    let mut states = adapter.watch_state();
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        while states.changed().await.is_ok() {
            let state = *states.borrow_and_update();
            seen.push(state);
            if state == ZmqState::Failed {
                break;
            }
        }
        seen
    });
    let err = tokio::time::timeout(GUARD, adapter.connect())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, AdapterError::Upstream { message, .. } if message.contains("after 3 attempts")),
        "{err}"
    );
    assert_eq!(adapter.state(), ZmqState::Failed);
    let seen = seen.await.unwrap();
    assert!(
        seen.contains(&ZmqState::Retrying {
            attempt: 1,
            delay_ms: 5
        }),
        "{seen:?}"
    );
    assert!(
        seen.contains(&ZmqState::Retrying {
            attempt: 2,
            delay_ms: 10
        }),
        "{seen:?}"
    );
    assert_eq!(seen.last(), Some(&ZmqState::Failed));

    // Binding an address in use fails the same way.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let adapter = ZmqAdapter::new(ZmqConfig {
        endpoint: format!("tcp://{}", taken.local_addr().unwrap()),
        max_retries: 2,
        backoff_initial_ms: 5,
        ..ZmqConfig::default()
    })
    .unwrap();
    assert!(adapter.connect().await.is_err());
    assert_eq!(adapter.state(), ZmqState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_out_of_range_messages_are_skipped_counted_and_the_next_one_arrives() {
    let adapter = ZmqAdapter::new(ZmqConfig {
        endpoint: "tcp://127.0.0.1:0".into(),
        max_message_bytes: 64 * 1024,
        ..ZmqConfig::default()
    })
    .unwrap();
    let mut updates = adapter.updates().unwrap();
    adapter.connect().await.unwrap();
    let endpoint = adapter.local_endpoint().unwrap();
    let mut publisher = PubSocket::new();
    publisher.connect(&endpoint).await.unwrap();
    publish_until_received(
        &mut publisher,
        &mut updates,
        "NSE_INFY_LTP",
        r#"{"ltp":1500}"#,
    )
    .await;
    drain(&mut updates).await;

    // Four messages of 4 MiB: each skipped as it streams by.
    let big = format!(r#"{{"ltp":1,"pad":"{}"}}"#, "x".repeat(4 << 20));
    for _ in 0..4 {
        publisher
            .send(two_frames("NSE_INFY_LTP", &big))
            .await
            .unwrap();
    }
    // Values no market has.
    for json in [r#"{"ltp":0}"#, r#"{"ltp":-3}"#, r#"{"ltp":1e309}"#] {
        publisher
            .send(two_frames("NSE_INFY_LTP", json))
            .await
            .unwrap();
    }
    publisher
        .send(two_frames("NSE_INFY_LTP", r#"{"ltp":1501}"#))
        .await
        .unwrap();
    let next = tokio::time::timeout(GUARD, updates.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(price(&next), 1501.0, "nothing skipped came through");
    let skipped = adapter.skipped();
    assert_eq!(skipped["message over max_message_bytes"], 4, "{skipped:?}");
    assert_eq!(skipped["ltp must be greater than zero"], 2, "{skipped:?}");
    assert_eq!(
        skipped["a number is out of the range of a double (as 1e309)"], 1,
        "{skipped:?}"
    );
    adapter.disconnect().await.unwrap();
}
