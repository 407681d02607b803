//! `GET /metrics`: the gateway's figures in the OpenMetrics text format
//! (which Prometheus scrapes), encoded by the Prometheus project's own
//! client, `prometheus-client`.
//!
//! Nothing here is on the hot path: the core and the endpoints count in
//! plain atomics ([`tickwire_core::meter`], the key ring's refusals, the
//! adapters' ingest counters below), and a scrape reads them into a
//! [`Snapshot`] that the client encodes. Names follow the Prometheus
//! conventions: a `tickwire_` prefix, base units (seconds, bytes), counters
//! ending in `_total`.

use std::collections::BTreeMap;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tickwire_core::http::Body;
use tickwire_core::meter::{HistogramCounts, MeterCounts};

use crate::Shared;

/// The content type of the exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything a scrape reports, read at once.
#[derive(Debug)]
struct Snapshot {
    meters: Vec<MeterCounts>,
    /// Subscriptions of the open connections, by endpoint.
    subscriptions: BTreeMap<&'static str, u64>,
    /// Topics with subscribers, by index.
    topics: Vec<(&'static str, u64)>,
    ingested: Vec<(String, u64)>,
    slow: tickwire_core::SlowConsumerCounts,
    publish: Vec<(u16, u64)>,
    refusals: Vec<((&'static str, &'static str), u64)>,
    adapters: Vec<(String, &'static str)>,
    fan_out: HistogramCounts,
    publish_to_write: HistogramCounts,
    instruments: u64,
    process: Option<Process>,
}

/// The process figures, from `/proc/self`.
#[derive(Debug)]
struct Process {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: u64,
    max_fds: Option<u64>,
    start_time_seconds: f64,
    threads: i64,
}

impl Process {
    fn read() -> Option<Process> {
        let me = procfs::process::Process::myself().ok()?;
        let stat = me.stat().ok()?;
        let ticks = procfs::ticks_per_second() as f64;
        let page = procfs::page_size();
        let boot = procfs::boot_time_secs().ok()? as f64;
        let max_fds = me
            .limits()
            .ok()
            .and_then(|l| match l.max_open_files.soft_limit {
                procfs::process::LimitValue::Value(v) => Some(v),
                procfs::process::LimitValue::Unlimited => None,
            });
        Some(Process {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            resident_bytes: stat.rss * page,
            virtual_bytes: stat.vsize,
            open_fds: me.fd_count().ok()? as u64,
            max_fds,
            start_time_seconds: boot + stat.starttime as f64 / ticks,
            threads: stat.num_threads,
        })
    }
}

impl Snapshot {
    fn take(shared: &Shared) -> Snapshot {
        let context = &shared.context;
        let connections = &context.connections;
        let subscriptions = connections
            .roster()
            .fold(BTreeMap::new(), |mut sums, card| {
                *sums.entry(card.endpoint()).or_default() += u64::from(card.sub.subscriptions());
                sums
            });
        let adapters = shared
            .adapter_names
            .iter()
            .map(|name| {
                let state = shared.adapter_states.get(name).unwrap_or("running");
                (name.clone(), state)
            })
            .collect();
        Snapshot {
            meters: connections.meters().counts(),
            subscriptions,
            topics: vec![
                ("feeds", context.feeds.topic_count() as u64),
                ("groups", shared.groups.topic_count() as u64),
                #[cfg(feature = "proxy")]
                ("proxy", shared.proxy.topic_count() as u64),
                #[cfg(feature = "socketio")]
                ("socketio", shared.socketio.topic_count() as u64),
            ],
            ingested: shared.ingested.counts(),
            slow: connections.slow_consumers(),
            publish: shared.publish_statuses.counts(),
            refusals: context.keys.refusals(),
            adapters,
            fan_out: connections.latencies().fan_out.counts(),
            publish_to_write: connections.latencies().publish_to_write.counts(),
            instruments: context.market.symbols_tracked() as u64,
            process: Process::read(),
        }
    }
}

/// One metric family: its descriptor, then each labelled sample.
fn family<'a, L: prometheus_client::encoding::EncodeLabelSet + 'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, Value)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let mut sample = metric.encode_family(&labels)?;
        match value {
            Value::Counter(v) => sample.encode_counter::<NoLabelSet, _, u64>(&v, None)?,
            Value::Gauge(v) => sample.encode_gauge(&v)?,
            Value::GaugeF(v) => sample.encode_gauge(&v)?,
            Value::CounterF(v) => sample.encode_counter::<NoLabelSet, _, u64>(&v, None)?,
        }
    }
    Ok(())
}

/// A metric of one sample, without labels.
fn single(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    value: Value,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    match value {
        Value::Counter(v) => metric.encode_counter::<NoLabelSet, _, u64>(&v, None),
        Value::CounterF(v) => metric.encode_counter::<NoLabelSet, _, u64>(&v, None),
        Value::Gauge(v) => metric.encode_gauge(&v),
        Value::GaugeF(v) => metric.encode_gauge(&v),
    }
}

/// A sample's value.
enum Value {
    Counter(u64),
    CounterF(f64),
    Gauge(i64),
    GaugeF(f64),
}

fn gauge(v: u64) -> Value {
    Value::Gauge(i64::try_from(v).unwrap_or(i64::MAX))
}

fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &HistogramCounts,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    // The client adds the buckets up itself: give it each bucket's own count.
    let mut below = 0;
    let mut own: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|&(bound, cumulative)| {
            let n = cumulative - below;
            below = cumulative;
            (bound, n)
        })
        .collect();
    // And the `+Inf` bucket the exposition format requires (the client
    // writes `f64::MAX` as `+Inf`).
    own.push((f64::MAX, h.count.saturating_sub(below)));
    metric.encode_histogram::<NoLabelSet>(h.sum, h.count, &own, None)
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use Value::{Counter, Gauge};
        let by_meter = |f: fn(&MeterCounts) -> Value| {
            self.meters
                .iter()
                .map(move |m| ([("endpoint", m.endpoint), ("format", m.format)], f(m)))
                .collect::<Vec<_>>()
        };
        family(
            &mut e,
            "tickwire_connections",
            "WebSocket connections open now, by endpoint and wire format.",
            MetricType::Gauge,
            by_meter(|m| gauge(m.open)),
        )?;
        family(
            &mut e,
            "tickwire_connections_accepted",
            "WebSocket connections accepted since the start, by endpoint and wire format.",
            MetricType::Counter,
            by_meter(|m| Counter(m.accepted)),
        )?;
        family(
            &mut e,
            "tickwire_messages_delivered",
            "Data messages written to clients, by endpoint and wire format.",
            MetricType::Counter,
            by_meter(|m| Counter(m.messages)),
        )?;
        family(
            &mut e,
            "tickwire_delivered_bytes",
            "Bytes written to clients (every frame), by endpoint and wire format.",
            MetricType::Counter,
            by_meter(|m| Counter(m.bytes)),
        )?;
        family(
            &mut e,
            "tickwire_subscriptions",
            "Topics followed by the open connections, summed by endpoint.",
            MetricType::Gauge,
            self.subscriptions
                .iter()
                .map(|(endpoint, n)| ([("endpoint", *endpoint)], gauge(*n))),
        )?;
        family(
            &mut e,
            "tickwire_topics",
            "Topics with at least one subscriber, by index (feeds: /ws, /stream and FastWS; groups: the hubs; proxy: instrument and mode; socketio: the rooms of Socket.IO's WebSocket sessions).",
            MetricType::Gauge,
            self.topics
                .iter()
                .map(|(index, n)| ([("index", *index)], gauge(*n))),
        )?;
        single(
            &mut e,
            "tickwire_instruments",
            "Instruments known.",
            MetricType::Gauge,
            gauge(self.instruments),
        )?;
        family(
            &mut e,
            "tickwire_updates_ingested",
            "Updates taken from each adapter.",
            MetricType::Counter,
            self.ingested
                .iter()
                .map(|(name, n)| ([("adapter", name.as_str())], Counter(*n))),
        )?;
        let s = &self.slow;
        family(
            &mut e,
            "tickwire_slow_consumer_actions",
            "What the slow-consumer policies did, by policy and cause (queue_full: the send buffer overflowed; burst: one burst held more updates than the buffer; write_timeout: one write outlasted write_timeout; write_error: the socket refused a write).",
            MetricType::Counter,
            [
                (
                    [("policy", "disconnect"), ("cause", "queue_full")],
                    Counter(s.disconnected),
                ),
                (
                    [("policy", "drop_oldest"), ("cause", "queue_full")],
                    Counter(s.dropped_oldest),
                ),
                (
                    [("policy", "conflate"), ("cause", "queue_full")],
                    Counter(s.conflated),
                ),
                (
                    [("policy", "conflate"), ("cause", "burst")],
                    Counter(s.burst_conflated),
                ),
                (
                    [("policy", "disconnect"), ("cause", "write_timeout")],
                    Counter(s.write_timeouts),
                ),
                (
                    [("policy", "disconnect"), ("cause", "write_error")],
                    Counter(s.write_errors),
                ),
            ],
        )?;
        let statuses: Vec<(String, u64)> = self
            .publish
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect();
        family(
            &mut e,
            "tickwire_publish_requests",
            "Requests to the publish API, by HTTP status.",
            MetricType::Counter,
            statuses
                .iter()
                .map(|(s, n)| ([("status", s.as_str())], Counter(*n))),
        )?;
        family(
            &mut e,
            "tickwire_auth_refusals",
            "Clients refused, by endpoint and reason.",
            MetricType::Counter,
            self.refusals.iter().map(|((endpoint, reason), n)| {
                ([("endpoint", *endpoint), ("reason", *reason)], Counter(*n))
            }),
        )?;
        family(
            &mut e,
            "tickwire_adapter_up",
            "Whether each adapter is up (1) or not (0); its state is the label.",
            MetricType::Gauge,
            self.adapters.iter().map(|(name, state)| {
                let up = matches!(*state, "connected" | "running");
                (
                    [("adapter", name.as_str()), ("state", *state)],
                    Gauge(i64::from(up)),
                )
            }),
        )?;
        histogram(
            &mut e,
            "tickwire_fanout_duration_seconds",
            "Time to hand one update to every endpoint: encoding once per topic and format, and queueing for every subscriber.",
            &self.fan_out,
        )?;
        histogram(
            &mut e,
            "tickwire_publish_to_write_seconds",
            "Time from an update entering the fan-out to the socket write that carried it, for the oldest message of each write.",
            &self.publish_to_write,
        )?;
        if let Some(p) = &self.process {
            single(
                &mut e,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                MetricType::Counter,
                Value::CounterF(p.cpu_seconds),
            )?;
            single(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                MetricType::Gauge,
                gauge(p.resident_bytes),
            )?;
            single(
                &mut e,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                MetricType::Gauge,
                gauge(p.virtual_bytes),
            )?;
            single(
                &mut e,
                "process_open_fds",
                "Number of open file descriptors.",
                MetricType::Gauge,
                gauge(p.open_fds),
            )?;
            if let Some(max) = p.max_fds {
                single(
                    &mut e,
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    MetricType::Gauge,
                    gauge(max),
                )?;
            }
            single(
                &mut e,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                MetricType::Gauge,
                Value::GaugeF(p.start_time_seconds),
            )?;
            single(
                &mut e,
                "process_threads",
                "Number of OS threads in the process.",
                MetricType::Gauge,
                Gauge(p.threads),
            )?;
        }
        Ok(())
    }
}

/// `GET /metrics`.
pub(crate) fn metrics(shared: &Shared) -> Response<Body> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot::take(shared)));
    let mut text = String::with_capacity(8 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!(error = %e, "metrics not encoded");
        return tickwire_core::http::json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics not encoded",
        );
    }
    let mut response = Response::new(Body::new(text.into()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
    response
}
