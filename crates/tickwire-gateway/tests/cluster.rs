//! A cluster of gateways on a real `nats-server` (Debian's, with JetStream):
//! what one node ingests reaches the clients of every node, once.
//!
//! The NATS server is the real one (`scripts/test` installs Debian's
//! `nats-server`); `TICKWIRE_NATS_SERVER` names another binary.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tickwire_gateway::{ClusterConfig, Config};
use tickwire_model::{Hub, Instrument, Update};

/// A `nats-server` on a free loopback port (its monitoring on another),
/// killed when dropped.
struct Nats {
    child: Child,
    port: u16,
    monitor: u16,
    _store: Store,
}

/// A directory removed when dropped.
struct Store(PathBuf);

impl Drop for Store {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nats_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TICKWIRE_NATS_SERVER") {
        return PathBuf::from(path);
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let candidate = PathBuf::from(dir).join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "nats-server not found: install Debian's nats-server (scripts/test does) \
         or set TICKWIRE_NATS_SERVER"
    );
}

impl Nats {
    async fn start() -> Nats {
        let port = free_port();
        let store =
            std::env::temp_dir().join(format!("tickwire-nats-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&store).unwrap();
        let monitor = free_port();
        let child = spawn_nats(port, Some(monitor), &store);
        let nats = Nats {
            child,
            port,
            monitor,
            _store: Store(store),
        };
        nats.listening().await;
        nats
    }

    async fn listening(&self) {
        let port = self.port;
        tokio::time::timeout(PATIENCE, async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("nats-server listens");
    }

    /// Kills the server and starts it again on the same port.
    async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_nats(self.port, Some(self.monitor), &self._store.0);
        self.listening().await;
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The subjects the node `name` subscribes to now, as the server's
    /// monitoring (`/connz?subs=1`) lists them.
    async fn subscriptions_of(&self, name: &str) -> Vec<String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.monitor));
        let (status, _, body) = http_get(addr, "/connz?subs=1", &[]).await;
        assert_eq!(status, 200, "{body}");
        let connz: serde_json::Value = serde_json::from_str(&body).unwrap();
        let wanted = format!("tickwire-{name}");
        let conn = connz["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == wanted.as_str())
            .unwrap_or_else(|| panic!("no connection named {wanted}: {body}"));
        conn["subscriptions_list"]
            .as_array()
            .map(|subs| {
                subs.iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_nats(port: u16, monitor: Option<u16>, store: &std::path::Path) -> Child {
    let mut command = Command::new(nats_binary());
    command.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]);
    command.arg(store);
    if let Some(monitor) = monitor {
        command.args(["-m", &monitor.to_string()]);
    }
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts")
}

fn node(nats: &Nats, name: &str) -> Config {
    Config {
        cluster: Some(ClusterConfig::new(nats.url(), name)),
        ..Config::default()
    }
}

/// A key that may use the publish API.
const PUBLISHER: &str = "cluster-publisher-key";

/// `config` with the [`PUBLISHER`] key.
fn with_publisher(mut config: Config) -> Config {
    config.api_keys.push(tickwire_gateway::ApiKey {
        roles: vec![tickwire_gateway::ROLE_PUBLISH.into()],
        ..tickwire_gateway::ApiKey::new("publisher", PUBLISHER)
    });
    config
}

fn btc(price: f64) -> Update {
    Update::Tick(tick(Instrument::crypto("BTC/USD"), price))
}

/// The `/ws` price updates of `btc` a client reads until `last`.
async fn prices_until(client: &mut FeedClient, last: f64) -> Vec<f64> {
    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        let msg = client
            .json_skipping(&["server_status", "pong", "signal_update"])
            .await;
        if msg["type"] == "price_update" && msg["symbol"] == "btc" {
            seen.push(msg["price"].as_f64().unwrap());
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_node_ingests_reaches_every_nodes_clients_once() {
    let nats = Nats::start().await;
    let a = Server::start_with(node(&nats, "a"), universe()).await;
    let b = Server::start_with(node(&nats, "b"), universe()).await;
    let mut on_a = FeedClient::ws(&a).await;
    let mut on_b = FeedClient::ws(&b).await;
    for client in [&mut on_a, &mut on_b] {
        client
            .send(r#"{"type":"subscribe","symbols":["btc"],"channels":["price"]}"#)
            .await;
        client.sync().await;
    }
    // Until both nodes are subscribed on the bus, a tick may not reach them:
    // push until each client has seen one.
    let mut price = 1.0;
    tokio::time::timeout(PATIENCE, async {
        let mut seen = [false, false];
        while seen != [true, true] {
            a.feed.push(btc(price)).await.unwrap();
            for (i, client) in [&mut on_a, &mut on_b].into_iter().enumerate() {
                if let Ok(msg) = tokio::time::timeout(
                    Duration::from_millis(50),
                    client.json_skipping(&["server_status"]),
                )
                .await
                {
                    seen[i] |= msg["type"] == "price_update";
                }
            }
            price += 1.0;
        }
    })
    .await
    .expect("the bus carries ticks to both nodes");

    // Now every tick, on the node that ingested it and on the other, once
    // and in order.
    let first = price + 100.0;
    for n in 0..20 {
        a.feed.push(btc(first + f64::from(n))).await.unwrap();
    }
    let last = first + 19.0;
    for (name, client) in [("a", &mut on_a), ("b", &mut on_b)] {
        let seen = prices_until(client, last).await;
        let tail: Vec<f64> = seen.into_iter().filter(|p| *p >= first).collect();
        let expected: Vec<f64> = (0..20).map(|n| first + f64::from(n)).collect();
        assert_eq!(tail, expected, "node {name}: every tick once, in order");
    }
    a.finish().await.unwrap();
    b.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_group_member_on_one_node_gets_records_ingested_on_another() {
    let nats = Nats::start().await;
    let a = Server::start_with(node(&nats, "a"), universe()).await;
    let b = Server::start_with(node(&nats, "b"), universe()).await;
    let mut member = b.connect(Hub::Classic, JSON).await;
    assert!(matches!(member.recv().await, Down::Connected { .. }));
    member.join("blue_SPX_classic_gex_zero", 1).await;
    let mut ts = 1000;
    let data = tokio::time::timeout(PATIENCE, async {
        loop {
            a.push(gex(Hub::Classic, "SPX", "gex_zero", ts)).await;
            ts += 1;
            if let Ok(down) = tokio::time::timeout(Duration::from_millis(50), member.recv()).await {
                return down;
            }
        }
    })
    .await
    .expect("a record ingested on a reaches b's member");
    assert!(
        matches!(&data, Down::Data { group: Some(g), .. } if g == "blue_SPX_classic_gex_zero"),
        "{data:?}"
    );
    a.finish().await.unwrap();
    b.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_nats_says_so_and_starts_once_nats_is_there() {
    // A port nobody listens on yet.
    let port = free_port();
    let config = Config {
        cluster: Some(ClusterConfig::new(
            format!("nats://127.0.0.1:{port}"),
            "late",
        )),
        ..Config::default()
    };
    let server = Server::start_with(config, universe()).await;
    // Not serving while it waits for NATS.
    let early = tokio::time::timeout(
        Duration::from_millis(800),
        http_get(server.addr, "/healthz", &[]),
    )
    .await;
    assert!(
        early.is_err(),
        "no answer before NATS is reachable: {early:?}"
    );
    // NATS comes: the node connects and serves.
    let store = std::env::temp_dir().join(format!("tickwire-nats-late-{}", std::process::id()));
    std::fs::create_dir_all(&store).unwrap();
    let mut child = spawn_nats(port, None, &store);
    let up = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok((200, _, _)) = tokio::time::timeout(
                Duration::from_millis(500),
                http_get(server.addr, "/healthz", &[]),
            )
            .await
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    server.finish().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&store);
    up.expect("the node serves once NATS is up");
}

/// The host and port of `/negotiate`'s URL for the `classic` hub on `server`.
async fn negotiated_authority(server: &Server) -> String {
    let url = server.url(Hub::Classic).await;
    url.trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiate_sends_new_clients_to_the_least_loaded_live_node() {
    let nats = Nats::start().await;
    let a = Server::start_with(node(&nats, "a"), universe()).await;
    let b = Server::start_with(node(&nats, "b"), universe()).await;
    // Three connections on a, none on b.
    let mut busy = Vec::new();
    for _ in 0..3 {
        busy.push(FeedClient::ws(&a).await);
    }
    let b_authority = b.addr.to_string();
    let a_authority = a.addr.to_string();
    // Once a has seen b in the registry (refreshed every second), a's
    // /negotiate hands out b.
    tokio::time::timeout(PATIENCE, async {
        while negotiated_authority(&a).await != b_authority {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a sends new clients to b");
    // The token a issued is good on b.
    let url = a.url(Hub::Classic).await;
    let mut client = Client::connect(&url, Some(JSON)).await.unwrap();
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    drop(client);
    // b stops: within a few seconds a offers itself again.
    b.finish().await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        while negotiated_authority(&a).await != a_authority {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a stops offering b once it is gone");
    drop(busy);
    a.finish().await.unwrap();
}

/// Pushes BTC ticks from `from`, one every 20 ms from `price` on, until
/// `client` sees one; returns how long that took and the price seen.
async fn until_delivered(
    from: &Server,
    client: &mut FeedClient,
    mut price: f64,
) -> (Duration, f64) {
    let start = std::time::Instant::now();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let _ = from.feed.push(btc(price)).await;
            if let Ok(msg) = tokio::time::timeout(
                Duration::from_millis(20),
                client.json_skipping(&["server_status"]),
            )
            .await
            {
                if msg["type"] == "price_update" && msg["price"].as_f64() >= Some(price - 50.0) {
                    return (start.elapsed(), msg["price"].as_f64().unwrap());
                }
            }
            price += 1.0;
        }
    })
    .await
    .expect("delivery resumes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_keep_their_clients_through_a_nats_restart_and_deliver_again() {
    let mut nats = Nats::start().await;
    let a = Server::start_with(node(&nats, "a"), universe()).await;
    let b = Server::start_with(node(&nats, "b"), universe()).await;
    let mut on_b = FeedClient::ws(&b).await;
    on_b.send(r#"{"type":"subscribe","symbols":["btc"],"channels":["price"]}"#)
        .await;
    on_b.sync().await;
    until_delivered(&a, &mut on_b, 100.0).await;

    let killed = std::time::Instant::now();
    nats.restart().await;
    let down = killed.elapsed();
    // The client stays connected to b meanwhile, and ticks flow again once
    // both nodes have reconnected and resubscribed.
    let (_, price) = until_delivered(&a, &mut on_b, 1000.0).await;
    assert!(price >= 950.0, "a tick from after the restart: {price}");
    // The figure the issue asks for, printed by `cargo test -- --nocapture`.
    #[allow(clippy::print_stdout)]
    {
        println!(
            "nats-server down for {} ms; delivery stopped for {} ms in all",
            down.as_millis(),
            killed.elapsed().as_millis()
        );
    }
    on_b.send(r#"{"type":"ping"}"#).await;
    assert_eq!(
        on_b.json_skipping(&["price_update", "server_status"]).await["type"],
        "pong"
    );
    a.finish().await.unwrap();
    b.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_api_of_one_node_reaches_another_through_the_bus() {
    let nats = Nats::start().await;
    let key = PUBLISHER;
    let a = Server::start_with(with_publisher(node(&nats, "a")), universe()).await;
    let b = Server::start_with(node(&nats, "b"), universe()).await;
    let mut on_b = FeedClient::ws(&b).await;
    on_b.send(r#"{"type":"subscribe","symbols":["btc"],"channels":["price"]}"#)
        .await;
    on_b.sync().await;
    let auth = format!("Bearer {key}");
    let mut price = 500.0;
    let seen = tokio::time::timeout(PATIENCE, async {
        loop {
            let body = format!(r#"{{"kind":"tick","symbol":"BTC/USD","price":{price}}}"#);
            let (status, _, _) = http_request(
                a.addr,
                "POST",
                "/api/v1/publish",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
            )
            .await;
            assert_eq!(status, 202);
            if let Ok(msg) = tokio::time::timeout(
                Duration::from_millis(50),
                on_b.json_skipping(&["server_status"]),
            )
            .await
            {
                if msg["type"] == "price_update" && msg["price"].as_f64() >= Some(500.0) {
                    return msg["price"].as_f64().unwrap();
                }
            }
            price += 1.0;
        }
    })
    .await
    .expect("a published tick reaches b");
    assert!(seen >= 500.0);
    // Both nodes count what crossed the bus.
    for (server, what) in [(&a, "published"), (&b, "received")] {
        let (_, _, body) = http_get(server.addr, "/healthz", &[]).await;
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(health["cluster"][what].as_u64() > Some(0), "{body}");
        assert_eq!(health["cluster"]["unreadable"], 0, "{body}");
    }
    a.finish().await.unwrap();
    b.finish().await.unwrap();
}

/// The bus messages node `server` has taken so far (`/healthz`).
async fn received_from_bus(server: &Server) -> u64 {
    let (_, _, body) = http_get(server.addr, "/healthz", &[]).await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    health["cluster"]["received"].as_u64().unwrap()
}

/// Whether a subscription of `subjects` is to `instrument`'s updates.
fn follows(subjects: &[String], symbol: &str) -> bool {
    subjects
        .iter()
        .any(|s| s.starts_with("tickwire.i.") && s.contains(symbol))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_from_the_bus_only_what_its_clients_follow() {
    let nats = Nats::start().await;
    let key = PUBLISHER;
    let a = Server::start_with(with_publisher(node(&nats, "a")), universe()).await;
    let b = Server::start_with(node(&nats, "b"), universe()).await;
    let mut on_b = FeedClient::ws(&b).await;
    on_b.send(r#"{"type":"subscribe","symbols":["btc"],"channels":["price"]}"#)
        .await;
    on_b.sync().await;
    until_delivered(&a, &mut on_b, 100.0).await;

    // What the NATS server says: b subscribes to BTC and to nothing else of
    // the market; a, whose clients follow nothing, to no topic at all.
    let of_b = nats.subscriptions_of("b").await;
    assert!(follows(&of_b, "BTC"), "{of_b:?}");
    assert!(!follows(&of_b, "ETH"), "{of_b:?}");
    let of_a = nats.subscriptions_of("a").await;
    assert!(
        !of_a
            .iter()
            .any(|s| s.starts_with("tickwire.i.") || s.starts_with("tickwire.g.")),
        "{of_a:?}"
    );

    // And b receives none of ETH's traffic: 50 ETH ticks and one BTC from a
    // cost b one message.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while tokio::time::timeout(Duration::from_millis(50), on_b.json())
        .await
        .is_ok()
    {}
    let before = received_from_bus(&b).await;
    for n in 0..50 {
        a.feed
            .push(Update::Tick(tick(
                Instrument::crypto("ETH/USD"),
                f64::from(n),
            )))
            .await
            .unwrap();
    }
    a.feed.push(btc(7777.0)).await.unwrap();
    prices_until(&mut on_b, 7777.0).await;
    assert_eq!(received_from_bus(&b).await - before, 1);

    // An instrument only a knows (published there) is known on b, and a
    // client of b that follows it starts from a's last value, with nothing
    // published after it.
    let auth = format!("Bearer {key}");
    let (status, _, body) = http_request(
        a.addr,
        "POST",
        "/api/v1/publish",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"kind":"tick","symbol":"DOGE/USD","price":0.25}"#,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let mut doge = FeedClient::ws(&b).await;
    let last = tokio::time::timeout(PATIENCE, async {
        loop {
            doge.send(r#"{"type":"subscribe","symbols":["doge"],"channels":["price"]}"#)
                .await;
            let before_pong = doge.sync().await;
            if let Some(msg) = before_pong.iter().find(|m| m["type"] == "price_update") {
                return msg.clone();
            }
            if before_pong.iter().any(|m| m["type"] == "error") {
                // Not announced yet.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let msg = doge.json_skipping(&["server_status"]).await;
            if msg["type"] == "price_update" {
                return msg;
            }
        }
    })
    .await
    .expect("b knows DOGE and sends a's last value");
    assert_eq!(last["symbol"], "doge", "{last}");
    assert_eq!(last["price"].as_f64(), Some(0.25), "{last}");

    // A poll of b's last-value cache for an instrument no client of b
    // follows is answered from the node that ingests it: a's last tick.
    let (status, body) = http_get_bearer(
        b.addr,
        "/api/v1/ltp?symbol=ETH/USD&exchange=CRYPTO",
        Some(DEMO),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ltp: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ltp["data"]["ltp"].as_f64(),
        Some(49.0),
        "the last of a's ETH ticks: {ltp}"
    );
    let (status, body) = http_get_bearer(
        b.addr,
        "/api/v1/ltp?symbol=NOPE/USD&exchange=CRYPTO",
        Some(DEMO),
    )
    .await;
    assert_eq!(status, 404, "nobody has it: {body}");

    // Once b's clients leave, b unsubscribes (after a short grace).
    drop(on_b);
    drop(doge);
    tokio::time::timeout(PATIENCE, async {
        loop {
            let of_b = nats.subscriptions_of("b").await;
            if !follows(&of_b, "BTC") && !follows(&of_b, "DOGE") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("b drops its subscriptions after its last clients left");
    a.finish().await.unwrap();
    b.finish().await.unwrap();
}

/// A cluster member whose `memory` adapter (the tests' feed) runs once per
/// cluster, as the demo's synthetic market and replay do.
fn leased_node(nats: &Nats, name: &str) -> Config {
    let mut config = node(nats, name);
    if let Some(cluster) = &mut config.cluster {
        cluster.leased_adapters = vec!["memory".into()];
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_adapter_feeds_the_cluster_from_one_node_and_another_takes_over() {
    let nats = Nats::start().await;
    let a = Server::start_with(leased_node(&nats, "a"), universe()).await;
    // a holds the lease before b starts (it watches the registry for 2 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let b = Server::start_with(leased_node(&nats, "b"), universe()).await;
    let mut on_b = FeedClient::ws(&b).await;
    on_b.send(r#"{"type":"subscribe","symbols":["btc"],"channels":["price"]}"#)
        .await;
    on_b.sync().await;
    // Both nodes' feeds tick, a's at 1000 and up, b's at 5000 and up: b's
    // client gets a's only, whether b watched the registry long or not.
    until_delivered(&a, &mut on_b, 1000.0).await;
    let mut seen = Vec::new();
    for n in 0..40 {
        a.feed.push(btc(2000.0 + f64::from(n))).await.unwrap();
        b.feed.push(btc(5000.0 + f64::from(n))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(msg) = tokio::time::timeout(
            Duration::from_millis(5),
            on_b.json_skipping(&["server_status"]),
        )
        .await
        {
            if msg["type"] == "price_update" {
                seen.push(msg["price"].as_f64().unwrap());
            }
        }
    }
    assert!(
        seen.iter().all(|p| *p < 5000.0),
        "only the lease holder's ticks: {seen:?}"
    );
    assert!(seen.contains(&2039.0), "{seen:?}");

    // a stops: b takes the lease within a few seconds and its own feed
    // reaches its client.
    let stopped = std::time::Instant::now();
    a.finish().await.unwrap();
    let (_, price) = until_delivered(&b, &mut on_b, 6000.0).await;
    assert!(price >= 6000.0, "{price}");
    #[allow(clippy::print_stdout)]
    {
        println!("the lease passed in {} ms", stopped.elapsed().as_millis());
    }
    b.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_max_connections_holds_across_the_cluster() {
    let nats = Nats::start().await;
    let key = "limited-key-of-two";
    let limited = |mut config: Config| {
        config.api_keys.push(tickwire_gateway::ApiKey {
            max_connections: 2,
            ..tickwire_gateway::ApiKey::new("limited", key)
        });
        config
    };
    let a = Server::start_with(limited(node(&nats, "a")), universe()).await;
    let b = Server::start_with(limited(node(&nats, "b")), universe()).await;
    let proxy = |server: &Server| FeedClient::connect(server.addr, "/proxy", &[]);
    let mut on_a = proxy(&a).await.unwrap();
    assert_eq!(authenticate(&mut on_a, key).await["status"], "success");
    let mut on_b = proxy(&b).await.unwrap();
    assert_eq!(authenticate(&mut on_b, key).await["status"], "success");
    // Once a has heard from b (every second), a third connection of the key
    // is refused on a, though a holds only one.
    let mut third = proxy(&a).await.unwrap();
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            let reply = authenticate(&mut third, key).await;
            if reply["status"] == "error" {
                return reply;
            }
            // Admitted before a heard of b's: give the slot back, retry.
            third = proxy(&a).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the cluster-wide limit applies");
    assert_eq!(refused["code"], "AUTHENTICATION_ERROR", "{refused}");
    // b's connection goes: within a refresh a admits the key again.
    drop(on_b);
    tokio::time::timeout(PATIENCE, async {
        loop {
            let mut again = proxy(&a).await.unwrap();
            if authenticate(&mut again, key).await["status"] == "success" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the slot b gave back is free on a");
    drop(on_a);
    a.finish().await.unwrap();
    b.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_on_a_node_that_starts_following_count_the_whole_bucket_once() {
    let nats = Nats::start().await;
    let a = Server::start_with(node(&nats, "a"), universe()).await;
    let b = Server::start_with(node(&nats, "b"), universe()).await;
    let aapl = Instrument::new("AAPL", "NASDAQ");
    // Three trades on a (0.5 each, one bucket: the tests' ticks share a
    // timestamp) before anybody on b follows AAPL.
    for price in [10.0, 12.0, 11.0] {
        a.feed
            .push(Update::Tick(tick(aapl.clone(), price)))
            .await
            .unwrap();
    }
    let mut bars = FeedClient::connect(b.addr, "/api/v1/ws", &[])
        .await
        .unwrap();
    bars.send(
        r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":{"resolution":"1"}}}"#,
    )
    .await;
    assert_eq!(bars.json().await["type"], "bars.subscribe.response");
    // b's bar is a's: the whole bucket, from a's seed (b may first show the
    // bar of the one trade it was sent as the last value).
    let seeded = tokio::time::timeout(PATIENCE, async {
        loop {
            let msg = bars.json().await;
            if msg["type"] == "bars.update" && msg["payload"]["volume"].as_f64() == Some(1.5) {
                return msg;
            }
        }
    })
    .await
    .expect("b sends the bar a aggregated");
    let bar = &seeded["payload"];
    assert_eq!(
        (
            bar["open"].as_f64(),
            bar["high"].as_f64(),
            bar["low"].as_f64(),
            bar["close"].as_f64()
        ),
        (Some(10.0), Some(12.0), Some(10.0), Some(11.0)),
        "{seeded}"
    );
    // The next trade counts once on top of it.
    a.feed
        .push(Update::Tick(tick(aapl.clone(), 13.0)))
        .await
        .unwrap();
    let next = bars.json().await;
    assert_eq!(next["type"], "bars.update", "{next}");
    assert_eq!(next["payload"]["volume"].as_f64(), Some(2.0), "{next}");
    assert_eq!(next["payload"]["high"].as_f64(), Some(13.0), "{next}");
    a.finish().await.unwrap();
    b.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_proxy_clients_of_one_node_get_what_another_ingests() {
    let nats = Nats::start().await;
    let a = Server::start_with(node(&nats, "a"), universe()).await;
    let b = Server::start_with(node(&nats, "b"), universe()).await;
    let mut stream = FeedClient::stream(&b, DEMO).await;
    stream
        .send(r#"{"type":"subscribe","symbols":["ETH/USD"]}"#)
        .await;
    assert_eq!(stream.json().await["type"], "subscribed");
    let mut proxy = FeedClient::connect(b.addr, "/proxy", &[]).await.unwrap();
    assert_eq!(authenticate(&mut proxy, DEMO).await["status"], "success");
    let reply = ask(
        &mut proxy,
        r#"{"action":"subscribe","symbols":[{"symbol":"ETH/USD","exchange":"CRYPTO"}],"mode":"Quote"}"#,
    )
    .await;
    assert_eq!(reply["status"], "success", "{reply}");
    let eth = |price| Update::Tick(tick(Instrument::crypto("ETH/USD"), price));
    // Ticks on a until both clients of b have one of them, then one more
    // that each must get.
    tokio::time::timeout(PATIENCE, async {
        let mut price = 100.0;
        let (mut on_stream, mut on_proxy) = (false, false);
        while !(on_stream && on_proxy) {
            a.feed.push(eth(price)).await.unwrap();
            price += 1.0;
            if let Ok(msg) = tokio::time::timeout(Duration::from_millis(50), stream.json()).await {
                on_stream |= msg["type"] == "price_update";
            }
            if let Ok(msg) = tokio::time::timeout(Duration::from_millis(50), proxy.json()).await {
                on_proxy |= msg["type"] == "market_data";
            }
        }
    })
    .await
    .expect("b's /stream and proxy clients get a's ticks");
    a.feed.push(eth(4242.0)).await.unwrap();
    let mut seen = (false, false);
    tokio::time::timeout(PATIENCE, async {
        while !seen.0 {
            let msg = stream.json().await;
            seen.0 = msg["type"] == "price_update" && msg["price"].as_f64() == Some(4242.0);
        }
        while !seen.1 {
            let msg = proxy.json().await;
            seen.1 = msg["type"] == "market_data" && msg.to_string().contains("4242");
        }
    })
    .await
    .expect("the last tick on both");
    a.finish().await.unwrap();
    b.finish().await.unwrap();
}

/// A raw text payload `n` for `group`.
fn numbered(group: &str, n: u64) -> Update {
    Update::Raw(tickwire_model::RawGroupPayload {
        group: group.into(),
        data: bytes::Bytes::from(n.to_string()),
        data_type: tickwire_model::RawDataType::Text,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reliable_session_on_a_node_outlives_a_nats_restart() {
    let mut nats = Nats::start().await;
    let a = Server::start_with(node(&nats, "a"), universe()).await;
    let b = Server::start_with(node(&nats, "b"), universe()).await;
    let group = "blue_SPX_classic_gex_zero";
    let mut member = b.connect(Hub::Classic, JSON_RELIABLE).await;
    assert!(matches!(member.recv().await, Down::Connected { .. }));
    member.join(group, 1).await;
    // What b ingests itself goes to its member whether NATS is there or
    // not: 1..=20 before the restart, 21..=40 while it restarts.
    for n in 1..=20 {
        b.feed.push(numbered(group, n)).await.unwrap();
    }
    let restart = nats.restart();
    let during = async {
        for n in 21..=40 {
            b.feed.push(numbered(group, n)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::join!(restart, during);
    let mut numbers = Vec::new();
    let mut sequence = Vec::new();
    while numbers.last() != Some(&40) {
        match member.recv().await {
            Down::Data {
                payload: Payload::Text(text),
                sequence_id,
                ..
            } => {
                numbers.push(text.parse::<u64>().unwrap());
                sequence.push(sequence_id.expect("a reliable session numbers its messages"));
            }
            Down::Data { .. } => {}
            other => panic!("the session goes on: {other:?}"),
        }
    }
    assert_eq!(
        numbers,
        (1..=40).collect::<Vec<_>>(),
        "every message once, in order"
    );
    assert!(
        sequence.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence ids without a gap: {sequence:?}"
    );
    // And what a ingests reaches it again through the bus.
    let mut n = 1000;
    tokio::time::timeout(PATIENCE, async {
        loop {
            a.feed.push(numbered(group, n)).await.unwrap();
            n += 1;
            if let Ok(Down::Data {
                payload: Payload::Text(text),
                ..
            }) = tokio::time::timeout(Duration::from_millis(50), member.recv()).await
            {
                if text.parse::<u64>().unwrap() >= 1000 {
                    return;
                }
            }
        }
    })
    .await
    .expect("a's payloads reach b's member again");
    a.finish().await.unwrap();
    b.finish().await.unwrap();
}
