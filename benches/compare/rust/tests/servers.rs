//! Each reference server, started as its binary, carries a small `/ws` load
//! of `tickwire-loadtest` in full: every update reaches every subscriber, in
//! order, with no drop and no disconnect. No timing is asserted.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser as _;
use tickwire_loadtest::{Args, Settings};

const KEY: &str = "compare-test-key";

/// A reference server on a free port, stopped when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(binary: &str) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(binary)
            .args(["--listen", &addr, "--publish-key", KEY])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "{binary} is not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn carries_the_feed(binary: &str) {
    let server = Server::start(binary);
    let pid = server.child.id().to_string();
    let argv = [
        "tickwire-loadtest",
        "--url",
        &format!("http://{}", server.addr),
        "--protocol",
        "ws",
        "--connections",
        "40",
        "--topics",
        "5",
        "--subscriptions-per-conn",
        "2",
        "--rate",
        "50",
        "--duration",
        "2",
        "--drain",
        "10",
        "--api-key",
        KEY,
        "--publish-key",
        KEY,
        "--server-pid",
        &pid,
        "--quiet",
    ];
    let settings = Settings::from_args(&Args::try_parse_from(argv).unwrap()).unwrap();
    let report = tickwire_loadtest::run(settings).await.unwrap();
    assert_eq!(report.connected, 40, "{report:#?}");
    assert!(report.published > 0, "{report:#?}");
    // 40 connections × 2 topics over 5 topics: 16 subscribers a topic.
    assert_eq!(report.expected, report.published * 16, "{report:#?}");
    assert_eq!(report.delivered, report.expected, "{report:#?}");
    assert_eq!(report.drops, 0, "{report:#?}");
    assert_eq!(report.duplicates, 0, "{report:#?}");
    assert_eq!(report.disconnects, 0, "{report:#?}");
    assert_eq!(report.errors, 0, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fastwebsockets_server_carries_the_feed() {
    carries_the_feed(env!("CARGO_BIN_EXE_tickwire-compare-fastwebsockets")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tungstenite_server_carries_the_feed() {
    carries_the_feed(env!("CARGO_BIN_EXE_tickwire-compare-tungstenite")).await;
}
