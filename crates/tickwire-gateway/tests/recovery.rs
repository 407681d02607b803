//! Reliable-session recovery of the pubsub hubs over real sockets: a client
//! whose TCP connection is cut mid-stream comes back with its connection id
//! and reconnection token and sees every message once, in order.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Client, Down, JSON_RELIABLE, PROTOBUF_RELIABLE, Payload, Server, Up, http_get};
use prost::Message as _;
use tickwire_gateway::{Config, HubsConfig};
use tickwire_model::{Hub, RawDataType, RawGroupPayload, Update};
use tokio_tungstenite::MaybeTlsStream;

const GROUP: &str = "blue_SPX_state_gex_zero";

/// What a reliable client keeps, as the official SDKs do: the highest
/// sequence id seen (messages at or below it are duplicates and dropped),
/// and the messages the application got.
struct Receiver {
    client: Client,
    connection_id: String,
    token: String,
    url: String,
    last_seq: u64,
    got: Vec<u64>,
}

impl Receiver {
    async fn connect(server: &Server, protocol: &str) -> Receiver {
        let url = server.url(Hub::StateGex).await;
        let mut client = Client::connect(&url, Some(protocol)).await.unwrap();
        let Down::Connected {
            connection_id,
            reconnection_token: Some(token),
            ..
        } = client.recv().await
        else {
            panic!("connected with a reconnection token first");
        };
        client.join(GROUP, 1).await;
        Receiver {
            client,
            connection_id,
            token,
            url,
            last_seq: 0,
            got: Vec::new(),
        }
    }

    /// Reads until message `n` arrived, acknowledging every hundredth as
    /// the SDKs acknowledge about once a second.
    async fn read_until(&mut self, n: u64) {
        while self.got.last() < Some(&n) {
            if self.last_seq % 100 == 99 {
                self.ack().await;
            }
            match self.client.recv().await {
                Down::Data {
                    sequence_id: Some(seq),
                    payload: Payload::Text(text),
                    ..
                } => {
                    if seq <= self.last_seq {
                        continue; // a replay of what arrived before the cut
                    }
                    assert_eq!(seq, self.last_seq + 1, "sequence ids have no gap");
                    self.last_seq = seq;
                    self.got.push(text.parse().unwrap());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn ack(&mut self) {
        let ack = Up::SequenceAck(self.last_seq);
        let frame = if self.client.json {
            tokio_tungstenite::tungstenite::Message::text(common::json_up(&ack).to_string())
        } else {
            tokio_tungstenite::tungstenite::Message::binary(common::proto_up(&ack).encode_to_vec())
        };
        // A send that fails shows as the close frame read next.
        let _ = futures_util::SinkExt::send(&mut self.client.ws, frame).await;
    }

    /// Leaves the connection open but unread, as a dead link does: the
    /// server sees nothing wrong with it.
    fn abandon(self) -> (Client, (String, String, String, u64, Vec<u64>)) {
        (
            self.client,
            (
                self.url,
                self.connection_id,
                self.token,
                self.last_seq,
                self.got,
            ),
        )
    }

    /// Cuts the TCP connection without a close frame: a reset, or an end
    /// of stream.
    fn cut(self, reset: bool) -> (String, String, String, u64, Vec<u64>) {
        if let MaybeTlsStream::Plain(tcp) = self.client.ws.get_ref() {
            if reset {
                socket2::SockRef::from(tcp)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
        }
        drop(self.client);
        (
            self.url,
            self.connection_id,
            self.token,
            self.last_seq,
            self.got,
        )
    }

    /// Comes back with the session's id and token.
    async fn recover(
        protocol: &str,
        (url, connection_id, token, last_seq, got): (String, String, String, u64, Vec<u64>),
    ) -> Receiver {
        let recovery =
            format!("{url}&awps_connection_id={connection_id}&awps_reconnection_token={token}");
        let mut client = Client::connect(&recovery, Some(protocol)).await.unwrap();
        match client.recv().await {
            Down::Connected {
                connection_id: id, ..
            } => assert_eq!(id, connection_id, "the same session"),
            other => panic!("expected connected, got {other:?}"),
        }
        Receiver {
            client,
            connection_id,
            token,
            url,
            last_seq,
            got,
        }
    }
}

/// Message `n`, at least `len` bytes of text: `n` padded with zeros (it
/// parses back).
fn raw_of(n: u64, len: usize) -> Update {
    Update::Raw(RawGroupPayload {
        group: Arc::from(GROUP),
        data: Bytes::from(format!("{n:0>len$}")),
        data_type: RawDataType::Text,
    })
}

/// Message `n` as text.
fn raw(n: u64) -> Update {
    raw_of(n, 0)
}

/// Publishes 1..=total, one every millisecond, from the adapter.
fn steady_stream(server: &Server, total: u64) -> tokio::task::JoinHandle<()> {
    let feed = server.feed.clone();
    tokio::spawn(async move {
        for n in 1..=total {
            feed.push(raw(n)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

async fn cut_five_times(protocol: &str) {
    let server = Server::default().await;
    let mut rx = Receiver::connect(&server, protocol).await;
    let total = 3000;
    let stream = steady_stream(&server, total);
    for cut in 0..5u64 {
        rx.read_until(200 * (cut + 1)).await;
        if cut % 2 == 0 {
            rx.ack().await;
        }
        let kept = rx.cut(cut % 2 == 1);
        // A dead moment: the stream goes on meanwhile.
        tokio::time::sleep(Duration::from_millis(150)).await;
        rx = Receiver::recover(protocol, kept).await;
    }
    rx.read_until(total).await;
    stream.await.unwrap();
    let expected: Vec<u64> = (1..=total).collect();
    let missing: Vec<u64> = expected
        .iter()
        .filter(|n| !rx.got.contains(n))
        .copied()
        .collect();
    let out_of_order: Vec<(u64, u64)> = rx
        .got
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        rx.got == expected,
        "nothing lost, duplicated or reordered: missing {missing:?}, jumps {out_of_order:?}"
    );
    server.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_reliable_clients_lose_nothing_across_five_cuts() {
    cut_five_times(JSON_RELIABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_reliable_clients_lose_nothing_across_five_cuts() {
    cut_five_times(PROTOBUF_RELIABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_while_its_old_link_is_dead_but_open_resumes() {
    let server = Server::default().await;
    let mut rx = Receiver::connect(&server, JSON_RELIABLE).await;
    let total = 1500;
    let stream = steady_stream(&server, total);
    rx.read_until(300).await;
    // The old connection stays open, unread: the server cannot know it died.
    let (dead, kept) = rx.abandon();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Resumed, not refused: the old connection is ended as vanished.
    let mut rx = Receiver::recover(JSON_RELIABLE, kept).await;
    rx.read_until(total).await;
    stream.await.unwrap();
    let expected: Vec<u64> = (1..=total).collect();
    assert_eq!(rx.got, expected);
    drop(dead);
    server.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_while_its_old_link_is_dead_and_full_resumes_at_once() {
    let server = Server::default().await;
    let rx = Receiver::connect(&server, JSON_RELIABLE).await;
    // The old connection stays open and unread while 12.5 MiB come for it
    // (400 messages of 32 KiB, within the 1000-message / 16 MB limits): more
    // than both sockets' buffers hold, so the server's writer waits on a
    // full socket, as it does on a link that died without a word.
    let (dead, kept) = rx.abandon();
    let total = 400;
    for n in 1..=total {
        server.feed.push(raw_of(n, 32 << 10)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Resumed, not refused: the stuck writer stops at once (the hubs wait
    // 5 s for it, its write timeout is 10 s), and every message comes again.
    let mut rx = tokio::time::timeout(
        Duration::from_secs(4),
        Receiver::recover(JSON_RELIABLE, kept),
    )
    .await
    .expect("resumed before the old connection's write timeout");
    rx.read_until(total).await;
    let expected: Vec<u64> = (1..=total).collect();
    assert_eq!(rx.got, expected);
    drop(dead);
    server.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_token_or_an_ended_window_is_refused_with_1008() {
    let config = Config {
        hubs: HubsConfig {
            recovery_window_secs: 1,
            ..HubsConfig::default()
        },
        ..Config::default()
    };
    let server = Server::start(config).await;
    let rx = Receiver::connect(&server, JSON_RELIABLE).await;
    let (url, id, token, ..) = rx.cut(true);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Another session's id with this token, and this id with another token.
    for (id, token) in [("nope", token.as_str()), (id.as_str(), "forged")] {
        let attempt = format!("{url}&awps_connection_id={id}&awps_reconnection_token={token}");
        let mut client = Client::connect(&attempt, Some(JSON_RELIABLE))
            .await
            .unwrap();
        assert_eq!(client.close_code().await, 1008);
    }
    // The forged attempts did not end the session: the right token still works.
    let attempt = format!("{url}&awps_connection_id={id}&awps_reconnection_token={token}");
    let mut client = Client::connect(&attempt, Some(JSON_RELIABLE))
        .await
        .unwrap();
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    // Cut again and wait past the window.
    if let MaybeTlsStream::Plain(tcp) = client.ws.get_ref() {
        socket2::SockRef::from(tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    drop(client);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut late = Client::connect(&attempt, Some(JSON_RELIABLE))
        .await
        .unwrap();
    assert_eq!(late.close_code().await, 1008);
    // Every outcome counted.
    let (_, _, health) = http_get(server.addr, "/healthz", &[]).await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health["recovery"],
        serde_json::json!({"parked": 2, "resumed": 1, "ended": 1, "not_kept": 0, "refused": 3}),
        "{health}"
    );
    server.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_cleanly_ends_its_session() {
    let server = Server::default().await;
    let rx = Receiver::connect(&server, JSON_RELIABLE).await;
    let (url, id, token, ..) = {
        let mut rx = rx;
        rx.client.ws.close(None).await.unwrap();
        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut rx.client.ws).await {}
        rx.cut(false)
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let attempt = format!("{url}&awps_connection_id={id}&awps_reconnection_token={token}");
    let mut client = Client::connect(&attempt, Some(JSON_RELIABLE))
        .await
        .unwrap();
    assert_eq!(client.close_code().await, 1008);
    server.finish().await.unwrap();
}
