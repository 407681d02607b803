//! A tiny load against an in-process gateway, for every protocol: updates
//! arrive, none is lost, and the report is well formed; then two targets
//! (`--url` naming one gateway twice, in one process and over worker
//! processes) and a `/negotiate` that sends the connections to another
//! gateway than the one asked, as a cluster's does. No timing is asserted.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser as _;
use tickwire_adapter::{BrokerAdapter, MemoryAdapter};
use tickwire_gateway::{ApiKey, Config, ROLE_JOIN_LEAVE, ROLE_PUBLISH};
use tickwire_loadtest::{Args, Report, Settings};
use tokio::sync::oneshot;

const KEY: &str = "loadtest-key";

/// Starts a gateway with a key that may publish and hold many connections;
/// dropping the sender stops it.
async fn gateway() -> (SocketAddr, oneshot::Sender<()>) {
    gateway_with(|_| {}).await
}

/// [`gateway`], its configuration changed by `configure` first.
async fn gateway_with(configure: impl FnOnce(&mut Config)) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config {
        listen: addr,
        ..Config::default()
    };
    // The proxy's own listener is not used: `/proxy` of the main one is.
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.api_keys.push(ApiKey {
        roles: vec![ROLE_PUBLISH.to_owned(), ROLE_JOIN_LEAVE.to_owned()],
        max_connections: 1000,
        rate_per_minute: 100_000,
        ..ApiKey::new("loadtest", KEY)
    });
    configure(&mut config);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        // The proxy subscribes instruments through an adapter that may
        // carry them: one that lists none carries any.
        let adapters: Vec<Arc<dyn BrokerAdapter>> = vec![Arc::new(MemoryAdapter::new("memory"))];
        tickwire_gateway::run(listener, config, adapters, shutdown)
            .await
            .unwrap();
    });
    (addr, stop)
}

fn args(addr: SocketAddr, protocol: &str, extra: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "tickwire-loadtest",
        "--url",
        &format!("http://{addr}"),
        "--protocol",
        protocol,
        "--connections",
        "20",
        "--topics",
        "5",
        "--subscriptions-per-conn",
        // A FastWS bar names no symbol: one topic per connection.
        if protocol == "fastws" { "1" } else { "2" },
        "--rate",
        "50",
        "--payload",
        "64",
        "--duration",
        "2",
        "--drain",
        "10",
        "--api-key",
        KEY,
        "--publish-key",
        KEY,
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv
}

fn assert_clean(report: &Report, protocol: &str) {
    assert_eq!(report.protocol, protocol);
    assert_eq!(report.connected, 20, "{report:#?}");
    assert_eq!(report.connect_failures, 0, "{report:#?}");
    assert!(report.published > 0, "{report:#?}");
    assert!(report.delivered > 0, "{report:#?}");
    assert_eq!(report.drops, 0, "{report:#?}");
    assert_eq!(report.duplicates, 0, "{report:#?}");
    assert_eq!(report.disconnects, 0, "{report:#?}");
    assert_eq!(report.errors, 0, "{report:#?}");
    // Every published update reached each of its topic's subscribers.
    assert_eq!(report.delivered, report.expected, "{report:#?}");
    // 20 connections × 2 topics (1 for fastws) over 5 topics: 8 (4)
    // subscribers per topic.
    let subscribers = if protocol == "fastws" { 4 } else { 8 };
    assert_eq!(
        report.expected,
        report.published * subscribers,
        "{report:#?}"
    );
    let l = report.latency_us;
    assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);
    assert!(l.max > 0);
    assert!(report.connect_ms.p50 > 0.0);
    assert!(report.delivered_per_sec > 0.0);
    let json = serde_json::to_value(report).unwrap();
    for key in [
        "delivered_per_sec",
        "latency_us",
        "drops",
        "disconnects",
        "connect_ms",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_delivers_everything_in_process() {
    let (addr, _stop) = gateway().await;
    for protocol in [
        "pubsub-protobuf",
        "pubsub-json",
        "ws",
        "stream",
        "proxy",
        "fastws",
        "socketio",
    ] {
        let pid = std::process::id().to_string();
        let argv = args(addr, protocol, &["--server-pid", &pid]);
        let settings = Settings::from_args(&Args::try_parse_from(argv).unwrap()).unwrap();
        let report = tickwire_loadtest::run(settings).await.unwrap();
        assert_clean(&report, protocol);
        // The gateway runs in this process: its memory was read.
        assert!(report.server_rss_bytes.is_some(), "{report:#?}");
        assert!(report.rss_per_conn_bytes.is_some(), "{report:#?}");
        // ... and its CPU time while publishing: this process published and
        // received, so it used some.
        assert!(report.server_cpu_s.is_some_and(|s| s > 0.0), "{report:#?}");
        // Only while publishing: less than all this process has used, which
        // includes connecting and the protocols before.
        let all = tickwire_loadtest::system::cpu_seconds(std::process::id()).unwrap();
        assert!(
            report.server_cpu_s.is_some_and(|s| s < all),
            "{all} {report:#?}"
        );
        assert!(report.load_avg_1m.is_some(), "{report:#?}");
        let steal = report.host_steal_pct.expect("read from /proc/stat");
        assert!((0.0..=100.0).contains(&steal), "{report:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_report_json() {
    let (addr, _stop) = gateway().await;
    let argv = args(addr, "pubsub-json", &["--workers", "2", "--json"]);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tickwire-loadtest"))
        .args(&argv[1..])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report.workers, 2);
    assert_clean(&report, "pubsub-json");
    assert_eq!(report.rss_per_conn_bytes, None);
    // Without a pid no server CPU; the machine's figures all the same.
    assert_eq!(report.server_cpu_s, None);
    assert!(report.host_steal_pct.is_some(), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_may_not_publish_is_explained() {
    let (addr, _stop) = gateway().await;
    let mut argv = args(addr, "ws", &[]);
    let at = argv.iter().position(|a| a == "--publish-key").unwrap();
    argv[at + 1] = "tickwire-demo-key".to_owned();
    let settings = Settings::from_args(&Args::try_parse_from(argv).unwrap()).unwrap();
    let err = tickwire_loadtest::run(settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 403"), "{err}");
    assert!(err.contains("TICKWIRE_API_KEYS"), "{err}");
}

/// The report's connections by node, as (address, connected).
fn by_node(report: &Report) -> Vec<(String, u64)> {
    report
        .connected_by_node
        .iter()
        .map(|n| (n.addr.clone(), n.connected))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_urls_of_one_server_deliver_everything() {
    let (addr, _stop) = gateway().await;
    // The same gateway written two ways: two nodes.
    let urls = format!("http://{addr}, {addr}");
    for protocol in ["pubsub-protobuf", "ws"] {
        let mut argv = args(addr, protocol, &[]);
        let at = argv.iter().position(|a| a == "--url").unwrap();
        argv[at + 1] = urls.clone();
        let settings = Settings::from_args(&Args::try_parse_from(argv).unwrap()).unwrap();
        let report = tickwire_loadtest::run(settings).await.unwrap();
        assert_clean(&report, protocol);
        assert_eq!(report.nodes, 2, "{report:#?}");
        assert_eq!(report.urls, [format!("http://{addr}"), addr.to_string()]);
        assert_eq!(report.publish_url, format!("http://{addr}"));
        assert_eq!(report.server, format!("{addr},{addr}"));
        assert_eq!(by_node(&report), [(addr.to_string(), 20)], "{report:#?}");
        assert!(report.servers.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_urls_over_worker_processes_report_json() {
    let (addr, _stop) = gateway().await;
    let mut argv = args(addr, "pubsub-json", &["--workers", "2", "--json"]);
    let at = argv.iter().position(|a| a == "--url").unwrap();
    argv[at + 1] = format!("http://{addr},ws://{addr}");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tickwire-loadtest"))
        .args(&argv[1..])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report.workers, 2);
    assert_clean(&report, "pubsub-json");
    assert_eq!(report.nodes, 2);
    assert_eq!(
        report.urls,
        [format!("http://{addr}"), format!("ws://{addr}")]
    );
    assert_eq!(by_node(&report), [(addr.to_string(), 20)], "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_go_where_negotiate_sends_them() {
    const SECRET: &str = "a secret the two gateways share, as a cluster's nodes do";
    // B takes the connections; A's `/negotiate` names B (its public URL),
    // as a cluster's names its least-loaded node. Not a cluster: updates
    // are published to B.
    let (b, _stop_b) = gateway_with(|c| c.token_secret = Some(SECRET.into())).await;
    let (a, _stop_a) = gateway_with(|c| {
        c.token_secret = Some(SECRET.into());
        c.public_url = Some(format!("http://{b}"));
    })
    .await;
    // Two pids for one node: this process (both gateways) and its parent.
    let pids = format!(
        "{},{}",
        std::process::id(),
        std::os::unix::process::parent_id()
    );
    let publish_url = format!("http://{b}");
    let argv = args(
        a,
        "pubsub-json",
        &["--publish-url", &publish_url, "--server-pid", &pids],
    );
    let settings = Settings::from_args(&Args::try_parse_from(argv).unwrap()).unwrap();
    let report = tickwire_loadtest::run(settings).await.unwrap();
    assert_clean(&report, "pubsub-json");
    assert_eq!(report.nodes, 1);
    assert_eq!(report.urls, [format!("http://{a}")]);
    assert_eq!(report.publish_url, publish_url);
    assert_eq!(
        by_node(&report),
        [(a.to_string(), 0), (b.to_string(), 20)],
        "{report:#?}"
    );

    // Both pids read, summed, and each given.
    assert_eq!(report.servers.len(), 2, "{report:#?}");
    assert_eq!(report.servers[0].pid, std::process::id());
    let rss: Vec<u64> = report
        .servers
        .iter()
        .map(|p| p.rss_bytes.unwrap())
        .collect();
    assert_eq!(
        report.server_rss_bytes,
        Some(rss[0] + rss[1]),
        "{report:#?}"
    );
    assert!(report.rss_per_conn_bytes.is_some(), "{report:#?}");
    for p in &report.servers {
        assert!(
            p.rss_baseline_bytes.is_some() && p.cpu_s.is_some(),
            "{report:#?}"
        );
        // More pids than nodes: which connections a pid holds is unknown.
        assert_eq!((p.url.as_ref(), p.connections), (None, None), "{report:#?}");
        assert_eq!(p.rss_per_conn_bytes, None, "{report:#?}");
    }
    let cpu: f64 = report.servers.iter().map(|p| p.cpu_s.unwrap()).sum();
    let total = report.server_cpu_s.unwrap();
    assert!((total - cpu).abs() < 0.002, "{total} {cpu}");
    let table = report.table();
    assert!(
        table.contains(&format!("pid {}", std::process::id())),
        "{table}"
    );
    assert!(table.contains("(sum of 2 pids)"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_set_the_exit_status_and_hgrm_is_written() {
    let (addr, _stop) = gateway().await;
    let hgrm = std::env::temp_dir().join(format!("tickwire-loadtest-{}.hgrm", std::process::id()));
    let run = |extra: Vec<String>| {
        let mut argv = args(addr, "ws", &[]);
        argv.extend(extra);
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_tickwire-loadtest"))
                .args(&argv[1..])
                .output()
                .await
                .unwrap()
        }
    };
    // Limits the run keeps: exit 0, the checks in the report, the file written.
    let kept = run(vec![
        "--max-drops".into(),
        "0".into(),
        "--max-p99-ms".into(),
        "600000".into(),
        "--json".into(),
        "--hgrm".into(),
        hgrm.display().to_string(),
    ])
    .await;
    assert!(
        kept.status.success(),
        "{}",
        String::from_utf8_lossy(&kept.stderr)
    );
    let report: Report = serde_json::from_slice(&kept.stdout).unwrap();
    let names: Vec<&str> = report.thresholds.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["max_p99_ms", "max_drops"]);
    assert!(
        report.thresholds.iter().all(|c| c.ok),
        "{:?}",
        report.thresholds
    );
    let text = std::fs::read_to_string(&hgrm).unwrap();
    let _ = std::fs::remove_file(&hgrm);
    assert!(text.trim_start().starts_with("Value"), "{text}");
    assert!(
        text.contains(&format!("Total count    = {:>12}]", report.delivered)),
        "{text}"
    );
    // A limit no run can keep: exit 3, naming it.
    let missed = run(vec!["--max-p99-ms".into(), "0".into()]).await;
    assert_eq!(missed.status.code(), Some(3));
    let err = String::from_utf8_lossy(&missed.stderr);
    assert!(err.contains("threshold missed: max_p99_ms"), "{err}");
    assert!(String::from_utf8_lossy(&missed.stdout).contains("MISSED"));
}

/// A run of `connections` Socket.IO clients of `protocol` over `topics`,
/// against a gateway whose key takes them all.
async fn socketio_run(protocol: &str, connections: usize, topics: usize) -> Report {
    let (addr, _stop) = gateway_with(|config| {
        config.api_keys.last_mut().unwrap().max_connections = 2000;
    })
    .await;
    let mut argv = args(addr, protocol, &[]);
    for (flag, value) in [
        ("--connections", connections.to_string()),
        ("--topics", topics.to_string()),
        ("--drain", "2".to_owned()),
    ] {
        let at = argv.iter().position(|a| a == flag).unwrap();
        argv[at + 1] = value;
    }
    let settings = Settings::from_args(&Args::try_parse_from(argv).unwrap()).unwrap();
    tickwire_loadtest::run(settings).await.unwrap()
}

/// A thousand Socket.IO clients connecting at once, each emitting its
/// `subscribe` the moment the `/market` connect packet arrives: every one is
/// answered. (The namespace's event handlers must exist before that packet
/// leaves: registered by a connect handler run as a task after sending it,
/// as Socket.IO servers may, a few in a crowd would lose their subscribe.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_socketio_clients_all_get_their_subscribes_answered() {
    let report = socketio_run("socketio", 1000, 50).await;
    assert_eq!(report.connect_failures, 0, "{report:#?}");
    assert_eq!(report.connected, 1000, "{report:#?}");
    assert_eq!(report.delivered, report.expected, "{report:#?}");
}

/// Socket.IO clients that connect as the standard ones do by default
/// (long-polling, `/market` joined there, then the upgrade): every one
/// upgrades, subscribes and receives every update on its WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_clients_that_start_on_long_polling_upgrade_and_get_every_update() {
    let report = socketio_run("socketio-polling", 300, 30).await;
    assert_eq!(report.connect_failures, 0, "{report:#?}");
    assert_eq!(report.connected, 300, "{report:#?}");
    assert!(report.delivered > 0, "{report:#?}");
    assert_eq!(report.delivered, report.expected, "{report:#?}");
}
