//! Each reference server, started as its binary, carries a small `/ws` load
//! of `tickwire-loadtest` in full: every update reaches every subscriber, in
//! order, with no drop and no disconnect. No timing is asserted.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser as _;
use tickwire_loadtest::{Args, Settings};

const KEY: &str = "compare-test-key";

/// A reference server on a free port, stopped when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `binary` on a port it picks itself (port 0: no other test can
    /// take it in between) and reads the address from its first line.
    fn start(binary: &str) -> Server {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--publish-key", KEY])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // "<name> listening on 127.0.0.1:PORT"; the rest is drained so
            // that the server never blocks on a full pipe.
            let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            lines.for_each(drop);
        });
        let first = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{binary} did not say where it listens"));
        let addr = first
            .rsplit(' ')
            .next()
            .filter(|a| a.parse::<std::net::SocketAddr>().is_ok())
            .unwrap_or_else(|| panic!("{binary} said {first:?}"))
            .to_string();
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
