//! The report of a run: its JSON shape (`--json`), its table, and the
//! histograms behind the percentiles.
//!
//! Against a cluster the report names the nodes (`nodes`, `urls`,
//! `publish_url`), where the subscribed connections ended up
//! (`connected_by_node`), and with several `--server-pid`s the server
//! figures summed over them (`rss_per_conn_bytes`, `server_rss_*`,
//! `server_cpu_s`) and per pid (`servers`).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency or connect time recorded, in microseconds (an hour);
/// longer ones are recorded as this.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

/// A histogram of microseconds, 3 significant digits, 1 µs to an hour.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("constant, valid bounds")
}

/// The non-empty buckets of `h`: (a value of the bucket, count). What
/// worker processes send instead of the histogram.
pub fn to_buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Adds `buckets` (from [`to_buckets`]) to `h`.
pub fn add_buckets(h: &mut Histogram<u64>, buckets: &[(u64, u64)]) {
    for &(value, count) in buckets {
        h.saturating_record_n(value.min(HISTOGRAM_MAX_US), count);
    }
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// The percentiles of `h` (zeros when empty).
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: round2(h.mean()),
        }
    }
}

/// Connect times, milliseconds: from the TCP connect to the last
/// subscription confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectTimes {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl ConnectTimes {
    /// The percentiles of `h` (microseconds) in milliseconds.
    pub fn of(h: &Histogram<u64>) -> ConnectTimes {
        if h.is_empty() {
            return ConnectTimes::default();
        }
        let ms = |us: u64| round2(us as f64 / 1000.0);
        ConnectTimes {
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// One kind of error and how often it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSample {
    /// What happened.
    pub message: String,
    /// How many times.
    pub count: u64,
}

/// Subscribed connections at one server address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConnections {
    /// The address connected to (`127.0.0.1:8081`).
    pub addr: String,
    /// Connections opened and subscribed there.
    pub connected: u64,
}

/// One server process's figures (`--server-pid`); each `null` when `/proc`
/// did not give it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerProcess {
    /// Its pid.
    pub pid: u32,
    /// The node it is taken to be: with as many pids as `--url`s, the
    /// `--url` at the pid's position; `null` otherwise.
    pub url: Option<String>,
    /// The connections it is taken to hold: all of them for the only pid;
    /// with as many pids as `--url`s, those subscribed at its node's
    /// address (unless another `--url` has that address too); else `null`.
    pub connections: Option<u64>,
    /// Resident memory per connection: (once every connection is subscribed
    /// − before) / `connections`.
    pub rss_per_conn_bytes: Option<u64>,
    /// Resident memory once every connection is subscribed.
    pub rss_bytes: Option<u64>,
    /// Resident memory before the first connection.
    pub rss_baseline_bytes: Option<u64>,
    /// Resident memory at the end of the run.
    pub rss_end_bytes: Option<u64>,
    /// CPU time (user and system) while publishing, seconds.
    pub cpu_s: Option<f64>,
}

/// The latencies of `h` (microseconds) as an HdrHistogram percentile
/// distribution in milliseconds, the `.hgrm` text HdrHistogram's own tools
/// print and plot (five steps per halving of the distance to 100%).
pub fn hgrm(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1000.0;
    let mut out = String::with_capacity(8192);
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for step in h.iter_quantiles(5) {
        let quantile = step.quantile_iterated_to();
        let inverse = if quantile < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - quantile))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:>12.3} {:>2.12} {:>10} {inverse}",
            step.value_iterated_to() as f64 / SCALE,
            quantile,
            h.count_between(0, step.value_iterated_to()),
        );
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / SCALE,
        h.stdev() / SCALE
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / SCALE,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    );
    out
}

/// The outcome of a run, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The protocol of the subscribers.
    pub protocol: String,
    /// The server's address; for a cluster, the nodes' addresses,
    /// comma-separated.
    pub server: String,
    /// Nodes connected to (`--url` elements; 1 for a single server).
    #[serde(default)]
    pub nodes: usize,
    /// The `--url` elements, as given.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Where the updates were published (`--publish-url`, or the first
    /// `--url`).
    #[serde(default)]
    pub publish_url: String,
    /// Subscribed connections by the server address they connected to: the
    /// nodes' addresses first (in `--url` order, each once), then any other
    /// one a pubsub `/negotiate` sent connections to.
    #[serde(default)]
    pub connected_by_node: Vec<NodeConnections>,
    /// Connections asked for.
    pub connections: usize,
    /// Connections opened and subscribed.
    pub connected: u64,
    /// Connections that failed to open or subscribe.
    pub connect_failures: u64,
    /// Topics published to.
    pub topics: usize,
    /// Topics per connection.
    pub subscriptions_per_conn: usize,
    /// Updates per second per topic asked for.
    pub rate_per_topic: f64,
    /// Payload bytes per update.
    pub payload_bytes: usize,
    /// Worker processes (1: in-process).
    pub workers: usize,
    /// Seconds the connections took to open and subscribe, all of them.
    pub connect_phase_s: f64,
    /// Seconds spent publishing.
    pub duration_s: f64,
    /// Updates published (accepted by the server).
    pub published: u64,
    /// Updates published per second.
    pub published_per_sec: f64,
    /// Publish requests that failed, and the updates they carried.
    pub publish_errors: u64,
    /// Deliveries the published updates call for: each update once per
    /// subscribed connection.
    pub expected: u64,
    /// Updates received.
    pub delivered: u64,
    /// Updates received per second of publishing.
    pub delivered_per_sec: f64,
    /// Publish-to-receive latency, microseconds.
    pub latency_us: Latency,
    /// Updates a connection still open at the end never received: gaps in a
    /// topic's sequence numbers, and the tail it missed.
    pub drops: u64,
    /// Updates received twice or out of order.
    pub duplicates: u64,
    /// Subscribed connections the server closed (or that broke) during the run.
    pub disconnects: u64,
    /// Errors: failed connections, refused subscriptions, unexpected messages.
    pub errors: u64,
    /// The most frequent errors.
    pub error_samples: Vec<ErrorSample>,
    /// Connect-and-subscribe times.
    pub connect_ms: ConnectTimes,
    /// The server's resident memory per connection: (after connecting and
    /// subscribing − before) / connected; `null` without `--server-pid`.
    /// With several pids, their memory summed (`null` when one of them
    /// could not be read; see `servers`).
    pub rss_per_conn_bytes: Option<u64>,
    /// The server's resident memory once every connection is subscribed
    /// (summed over the pids).
    pub server_rss_bytes: Option<u64>,
    /// The server's resident memory before the first connection (summed
    /// over the pids).
    pub server_rss_baseline_bytes: Option<u64>,
    /// The server's resident memory at the end of the run (summed over the
    /// pids).
    pub server_rss_end_bytes: Option<u64>,
    /// The load generator's open-file limit (per process).
    pub client_nofile_limit: u64,
    /// The server's CPU time (user and system) while publishing, seconds;
    /// `null` without `--server-pid`; summed over the pids (`null` when one
    /// of them could not be read).
    pub server_cpu_s: Option<f64>,
    /// The machine's one-minute load average when publishing began.
    pub load_avg_1m: Option<f64>,
    /// The share of the machine's CPU time while publishing that the host
    /// gave to other machines (steal), percent: on a shared host, what
    /// makes runs noisy.
    pub host_steal_pct: Option<f64>,
    /// Each `--server-pid`'s figures, in order (empty without one).
    #[serde(default)]
    pub servers: Vec<ServerProcess>,
    /// The `--max-*` and `--min-*` limits, checked (empty without one).
    #[serde(default)]
    pub thresholds: Vec<crate::thresholds::Checked>,
}

impl Report {
    /// The report as a table.
    pub fn table(&self) -> String {
        let mut t = String::with_capacity(2048);
        let l = &self.latency_us;
        let c = &self.connect_ms;
        let _ = writeln!(
            t,
            "tickwire-loadtest: {} against {}, {} workers",
            self.protocol, self.server, self.workers
        );
        let several = self.servers.len() > 1;
        let summed = |value: String| {
            if several && value != "-" {
                format!("{value} (sum of {} pids)", self.servers.len())
            } else {
                value
            }
        };
        let mut rows: Vec<(String, String)> = Vec::with_capacity(24);
        rows.push((
            "nodes".into(),
            format!(
                "{}: {}; publish to {}",
                self.nodes,
                self.urls.join(", "),
                self.publish_url
            ),
        ));
        rows.push((
            "by node".into(),
            self.connected_by_node
                .iter()
                .map(|n| format!("{} {}", n.addr, n.connected))
                .collect::<Vec<_>>()
                .join(", "),
        ));
        let figures: [(&str, String); 17] = [
            (
                "connections",
                format!(
                    "{} of {} ({} failed) in {:.1} s",
                    self.connected, self.connections, self.connect_failures, self.connect_phase_s
                ),
            ),
            (
                "connect ms",
                format!("p50 {:.2}  p99 {:.2}  max {:.2}", c.p50, c.p99, c.max),
            ),
            (
                "shape",
                format!(
                    "{} topics, {} per connection, {} updates/s per topic, {} B payload",
                    self.topics,
                    self.subscriptions_per_conn,
                    self.rate_per_topic,
                    self.payload_bytes
                ),
            ),
            (
                "published",
                format!(
                    "{} in {:.1} s ({:.0}/s), {} failed",
                    self.published, self.duration_s, self.published_per_sec, self.publish_errors
                ),
            ),
            (
                "delivered",
                format!("{} of {} expected", self.delivered, self.expected),
            ),
            ("delivered/s", format!("{:.0}", self.delivered_per_sec)),
            (
                "latency µs",
                format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.mean
                ),
            ),
            ("drops", self.drops.to_string()),
            ("duplicates", self.duplicates.to_string()),
            ("disconnects", self.disconnects.to_string()),
            ("errors", self.errors.to_string()),
            ("rss/conn", summed(opt_bytes(self.rss_per_conn_bytes))),
            ("server rss", summed(opt_bytes(self.server_rss_bytes))),
            (
                "rss base/end",
                summed(format!(
                    "{} / {}",
                    opt_bytes(self.server_rss_baseline_bytes),
                    opt_bytes(self.server_rss_end_bytes)
                )),
            ),
            ("nofile limit", self.client_nofile_limit.to_string()),
            ("server cpu", summed(self.cpu_text(self.server_cpu_s))),
            (
                "machine",
                format!(
                    "load {} at the start, steal {} while publishing",
                    self.load_avg_1m
                        .map_or("-".to_owned(), |l| format!("{l:.2}")),
                    self.host_steal_pct
                        .map_or("-".to_owned(), |p| format!("{p:.1}%"))
                ),
            ),
        ];
        rows.extend(figures.map(|(name, value)| (name.to_owned(), value)));
        if several {
            for p in &self.servers {
                let node = p.url.as_ref().map_or(String::new(), |u| format!(" ({u})"));
                let conns = p
                    .connections
                    .map_or(String::new(), |c| format!(" over {c} connections"));
                rows.push((
                    format!("pid {}", p.pid),
                    format!(
                        "rss/conn {}{conns}, rss {} (base {}, end {}), cpu {}{node}",
                        opt_bytes(p.rss_per_conn_bytes),
                        opt_bytes(p.rss_bytes),
                        opt_bytes(p.rss_baseline_bytes),
                        opt_bytes(p.rss_end_bytes),
                        self.cpu_text(p.cpu_s),
                    ),
                ));
            }
        }
        for (name, value) in rows {
            let _ = writeln!(t, "  {name:<14}{value}");
        }
        for e in &self.error_samples {
            let _ = writeln!(t, "  {:<14}{} x {}", "error", e.count, e.message);
        }
        for c in &self.thresholds {
            let _ = writeln!(
                t,
                "  {:<14}{} {} against {}: {}",
                "threshold",
                c.name,
                c.value,
                c.limit,
                if c.ok { "ok" } else { "MISSED" }
            );
        }
        t
    }
}

impl Report {
    /// `0.50 s while publishing (0.50 cores)`, or `-`.
    fn cpu_text(&self, cpu_s: Option<f64>) -> String {
        match cpu_s {
            None => "-".to_owned(),
            Some(s) => format!(
                "{s:.2} s while publishing ({:.2} cores)",
                s / self.duration_s.max(1e-9)
            ),
        }
    }
}

fn opt_bytes(b: Option<u64>) -> String {
    match b {
        None => "-".to_owned(),
        Some(b) if b >= 10 * 1024 * 1024 => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        Some(b) if b >= 10 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{b} B"),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn hgrm_is_hdrhistograms_percentile_distribution_in_ms() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap(); // 10 µs to 10 ms
        }
        let text = hgrm(&h);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 20, "{text}");
        assert!(
            rows.windows(2)
                .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1])
        );
        let last = rows.last().unwrap();
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 1000.0);
        assert!((last[0] - 10.0).abs() < 0.01, "the max, in ms: {}", last[0]);
        let median = rows.iter().find(|r| r[1] >= 0.5).unwrap();
        assert!((median[0] - 5.0).abs() < 0.05, "{median:?}");
        assert!(text.contains("#[Max     =       10.00"), "{text}");
        assert!(text.contains("Total count    =         1000]"), "{text}");
    }

    /// A report with every field set.
    pub(crate) fn sample() -> Report {
        let mut h = new_histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        Report {
            protocol: "ws".into(),
            server: "127.0.0.1:8080".into(),
            nodes: 1,
            urls: vec!["http://127.0.0.1:8080".into()],
            publish_url: "http://127.0.0.1:8080".into(),
            connected_by_node: vec![NodeConnections {
                addr: "127.0.0.1:8080".into(),
                connected: 10,
            }],
            connections: 10,
            connected: 10,
            connect_failures: 0,
            topics: 2,
            subscriptions_per_conn: 1,
            rate_per_topic: 5.0,
            payload_bytes: 100,
            workers: 1,
            connect_phase_s: 0.1,
            duration_s: 1.0,
            published: 10,
            published_per_sec: 10.0,
            publish_errors: 0,
            expected: 50,
            delivered: 50,
            delivered_per_sec: 50.0,
            latency_us: Latency::of(&h),
            drops: 0,
            duplicates: 0,
            disconnects: 0,
            errors: 1,
            error_samples: vec![ErrorSample {
                message: "boom".into(),
                count: 1,
            }],
            connect_ms: ConnectTimes::of(&h),
            rss_per_conn_bytes: Some(4096),
            server_rss_bytes: Some(50 << 20),
            server_rss_baseline_bytes: Some(10 << 20),
            server_rss_end_bytes: None,
            client_nofile_limit: 20_000,
            server_cpu_s: Some(0.5),
            load_avg_1m: Some(1.25),
            host_steal_pct: Some(3.0),
            servers: vec![ServerProcess {
                pid: 42,
                url: Some("http://127.0.0.1:8080".into()),
                connections: Some(10),
                rss_per_conn_bytes: Some(4096),
                rss_bytes: Some(50 << 20),
                rss_baseline_bytes: Some(10 << 20),
                rss_end_bytes: None,
                cpu_s: Some(0.5),
            }],
            thresholds: vec![crate::thresholds::Checked {
                name: "max_p99_ms".into(),
                limit: 10.0,
                value: 3.2,
                ok: true,
            }],
        }
    }

    /// [`sample`] against three nodes with two server pids.
    pub(crate) fn cluster_sample() -> Report {
        let urls = ["8081", "8082", "8083"].map(|p| format!("http://127.0.0.1:{p}"));
        Report {
            server: "127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083".into(),
            nodes: 3,
            urls: urls.to_vec(),
            publish_url: urls[1].clone(),
            connected_by_node: vec![
                NodeConnections {
                    addr: "127.0.0.1:8081".into(),
                    connected: 4,
                },
                NodeConnections {
                    addr: "127.0.0.1:8082".into(),
                    connected: 3,
                },
                NodeConnections {
                    addr: "127.0.0.1:8083".into(),
                    connected: 3,
                },
            ],
            // (50 − 24 MiB) / 10 connections, rounded down as built.
            rss_per_conn_bytes: Some((26 << 20) / 10),
            server_rss_bytes: Some(50 << 20),
            server_rss_baseline_bytes: Some(24 << 20),
            // One pid's end was not read: no sum.
            server_rss_end_bytes: None,
            server_cpu_s: Some(1.5),
            servers: vec![
                ServerProcess {
                    pid: 42,
                    url: None,
                    connections: None,
                    rss_per_conn_bytes: None,
                    rss_bytes: Some(30 << 20),
                    rss_baseline_bytes: Some(12 << 20),
                    rss_end_bytes: Some(31 << 20),
                    cpu_s: Some(1.0),
                },
                ServerProcess {
                    pid: 43,
                    url: None,
                    connections: None,
                    rss_per_conn_bytes: None,
                    rss_bytes: Some(20 << 20),
                    rss_baseline_bytes: Some(12 << 20),
                    rss_end_bytes: None,
                    cpu_s: Some(0.5),
                },
            ],
            ..sample()
        }
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_value(sample()).unwrap();
        for key in [
            "delivered_per_sec",
            "latency_us",
            "drops",
            "disconnects",
            "connect_ms",
            "rss_per_conn_bytes",
            "server_rss_bytes",
            "errors",
            "expected",
            "delivered",
            "server_cpu_s",
            "load_avg_1m",
            "host_steal_pct",
            "nodes",
            "urls",
            "publish_url",
            "connected_by_node",
            "servers",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        let latency = &json["latency_us"];
        assert_eq!(latency["p50"], 500);
        assert_eq!(latency["p99"], 990);
        assert_eq!(latency["p999"], 999);
        assert_eq!(latency["max"], 1000);
        assert!(latency["p90"].is_u64());
        assert_eq!(json["connect_ms"]["p50"], 0.5);
        assert_eq!(json["rss_per_conn_bytes"], 4096);
        // Without a pid the keys stay, as null.
        let none = Report {
            rss_per_conn_bytes: None,
            ..sample()
        };
        assert!(serde_json::to_value(none).unwrap()["rss_per_conn_bytes"].is_null());
        assert_eq!(json["servers"][0]["pid"], 42);
        assert_eq!(json["servers"][0]["rss_per_conn_bytes"], 4096);
        assert_eq!(json["servers"][0]["cpu_s"], 0.5);
        assert!(json["servers"][0]["rss_end_bytes"].is_null());
    }

    #[test]
    fn a_cluster_report_names_its_nodes_and_pids() {
        let report = cluster_sample();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["nodes"], 3);
        assert_eq!(json["urls"][2], "http://127.0.0.1:8083");
        assert_eq!(json["publish_url"], "http://127.0.0.1:8082");
        assert_eq!(json["connected_by_node"][0]["addr"], "127.0.0.1:8081");
        assert_eq!(json["connected_by_node"][0]["connected"], 4);
        assert_eq!(json["servers"].as_array().unwrap().len(), 2);
        assert_eq!(json["servers"][1]["pid"], 43);
        assert_eq!(json["servers"][1]["cpu_s"], 0.5);
        assert_eq!(
            serde_json::from_value::<Report>(json).unwrap(),
            report,
            "round trip"
        );

        let t = report.table();
        for needle in [
            "nodes         3: http://127.0.0.1:8081, http://127.0.0.1:8082, http://127.0.0.1:8083; publish to http://127.0.0.1:8082",
            "by node       127.0.0.1:8081 4, 127.0.0.1:8082 3, 127.0.0.1:8083 3",
            "rss/conn      2662.4 KiB (sum of 2 pids)",
            "server rss    50.0 MiB (sum of 2 pids)",
            "rss base/end  24.0 MiB / - (sum of 2 pids)",
            "1.50 s while publishing (1.50 cores) (sum of 2 pids)",
            "pid 42        rss/conn -, rss 30.0 MiB (base 12.0 MiB, end 31.0 MiB), cpu 1.00 s",
            "pid 43        rss/conn -, rss 20.0 MiB (base 12.0 MiB, end -), cpu 0.50 s",
        ] {
            assert!(t.contains(needle), "{needle} in\n{t}");
        }
        // One pid: no per-pid rows, no sums.
        let t = sample().table();
        assert!(!t.contains("pid 42") && !t.contains("sum of"), "{t}");
    }

    #[test]
    fn reports_without_the_cluster_keys_still_read() {
        let mut json = serde_json::to_value(sample()).unwrap();
        let object = json.as_object_mut().unwrap();
        for key in [
            "nodes",
            "urls",
            "publish_url",
            "connected_by_node",
            "servers",
        ] {
            object.remove(key);
        }
        let report: Report = serde_json::from_value(json).unwrap();
        assert_eq!(report.nodes, 0);
        assert!(report.servers.is_empty());
    }

    #[test]
    fn buckets_carry_the_percentiles() {
        let mut h = new_histogram();
        for v in [3, 3, 70, 1_500, 2_000_000, 9_000_000_000] {
            h.saturating_record(v);
        }
        let mut back = new_histogram();
        add_buckets(&mut back, &to_buckets(&h));
        add_buckets(&mut back, &to_buckets(&h));
        assert_eq!(back.len(), 2 * h.len());
        for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(back.value_at_quantile(q), h.value_at_quantile(q), "q={q}");
        }
        assert_eq!(Latency::of(&new_histogram()), Latency::default());
    }

    #[test]
    fn the_table_names_every_figure() {
        let t = sample().table();
        for needle in [
            "delivered/s",
            "p99.9 999",
            "rss/conn",
            "4096 B",
            "1 x boom",
            "0.50 s while publishing (0.50 cores)",
            "load 1.25 at the start, steal 3.0% while publishing",
        ] {
            assert!(t.contains(needle), "{needle} in\n{t}");
        }
    }
}
