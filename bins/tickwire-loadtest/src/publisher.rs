//! The publisher: stamped updates at a steady rate through
//! `POST /api/v1/publish`, many per request.
//!
//! Updates are numbered globally, `g = 0, 1, 2, …`; update `g` goes to topic
//! `g % T` with that topic's sequence number `g / T + 1`, so every topic gets
//! the same rate and its own gap-free sequence. Every `interval` the
//! publisher sends every update due by then (`elapsed × T × rate`) in
//! batches that fit the server's default body limit, stamped with the time
//! the batch is built. A server slower than the schedule makes the batches
//! larger, not the stamps older: latency counts from the send.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;

use crate::Error;
use crate::cli::{Protocol, Target};
use crate::net::HttpClient;
use crate::stamp::{self, Stamp};
use crate::topics;

/// The publish API's route.
const PATH: &str = "/api/v1/publish";
/// Largest request body built (the server's default limit is 1 MiB).
const MAX_BODY: usize = 900 * 1024;
/// What to do when the key may not publish.
const KEY_HINT: &str = "\nThe server's default configuration has no key with the role \"publish\" \
(the demo key may not publish). Start the server with a publish key, for example\n  \
TICKWIRE_API_KEYS='[{name=\"loadtest\",key=\"lt-key\",roles=[\"publish\",\"webpubsub.joinLeaveGroup\"],max_connections=100000,rate_per_minute=10000000}]'\n\
and pass --publish-key lt-key --api-key lt-key (see docs/loadtest.md).";

/// What the publisher did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    /// Updates the server accepted.
    pub accepted: u64,
    /// Updates of requests that failed.
    pub failed: u64,
    /// The last sequence number sent on each topic (0: none).
    pub last_seq: Vec<u64>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// Publishes the updates of one run.
#[derive(Debug)]
pub struct Publisher {
    http: HttpClient,
    authorization: String,
    /// Per topic: the item up to where the stamp goes.
    heads: Vec<String>,
    /// Per topic: what follows the stamp.
    tails: Vec<String>,
    protocol: Protocol,
    payload: usize,
    /// Items per request.
    batch: usize,
}

impl Publisher {
    /// A publisher of `topics` topics for subscribers of `protocol`, with
    /// the group `prefix` of the pubsub hubs.
    pub fn new(
        target: Target,
        key: &str,
        protocol: Protocol,
        topics: usize,
        payload: usize,
        prefix: &str,
    ) -> Publisher {
        let mut heads = Vec::with_capacity(topics);
        let mut tails = Vec::with_capacity(topics);
        for topic in 0..topics {
            if protocol.is_pubsub() {
                heads.push(format!(
                    r#"{{"kind":"raw","group":"{}","data_type":"text","data":""#,
                    topics::group(prefix, topic)
                ));
                tails.push("\"}".to_owned());
            } else if protocol.is_quotes() {
                // The exchange the proxy subscribers name, explicitly.
                heads.push(format!(
                    r#"{{"kind":"tick","symbol":"{}","exchange":"{}","price":"#,
                    topics::stream_symbol(topic),
                    topics::EXCHANGE
                ));
                tails.push("}".to_owned());
            } else {
                heads.push(format!(
                    r#"{{"kind":"tick","symbol":"{}","price":"#,
                    topics::stream_symbol(topic)
                ));
                tails.push(if protocol == Protocol::Stream && payload > 0 {
                    format!(r#","source":"{}"}}"#, "x".repeat(payload))
                } else {
                    "}".to_owned()
                });
            }
        }
        let item = heads.iter().map(String::len).max().unwrap_or(0)
            + tails.iter().map(String::len).max().unwrap_or(0)
            + payload
            + 64;
        Publisher {
            http: HttpClient::new(target),
            authorization: format!("Bearer {key}"),
            heads,
            tails,
            protocol,
            payload,
            batch: (MAX_BODY / item).max(1),
        }
    }

    /// Publishes sequence number 0 on every topic: checks the key and makes
    /// the synthetic symbols known to the server before anyone subscribes
    /// (`/ws` and `/stream` refuse unknown symbols). Nobody receives these.
    pub async fn prime(&mut self) -> Result<(), Error> {
        let topics = self.heads.len();
        let mut start = 0;
        while start < topics {
            let end = (start + self.batch).min(topics);
            let body = self.body((start..end).map(|topic| (topic, 0)));
            let answer = self
                .http
                .request(Method::POST, PATH, &self.authorization, body)
                .await?;
            if answer.status != 202 {
                return Err(Error::Http {
                    what: "publish",
                    status: answer.status,
                    body: answer.body_text(),
                    hint: if matches!(answer.status, 401 | 403) {
                        KEY_HINT
                    } else {
                        ""
                    },
                });
            }
            start = end;
        }
        Ok(())
    }

    /// Publishes `rate` updates per second on every topic for `duration`,
    /// a request every `interval`; `progress` counts the accepted updates.
    pub async fn run(
        mut self,
        rate: f64,
        duration: Duration,
        interval: Duration,
        progress: Arc<AtomicU64>,
    ) -> Published {
        let topics = self.heads.len() as u64;
        let per_second = rate * topics as f64;
        let mut out = Published {
            last_seq: vec![0; self.heads.len()],
            ..Published::default()
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let start = Instant::now();
        // A server slower than the schedule gets this long to catch up.
        let deadline = start + duration * 2;
        let mut sent: u64 = 0;
        'run: loop {
            ticker.tick().await;
            let elapsed = start.elapsed();
            let last = elapsed >= duration;
            let due_at = if last { duration } else { elapsed };
            // Truncation: an update is due once its whole slot has begun.
            let due = (due_at.as_secs_f64() * per_second) as u64;
            while sent < due {
                if Instant::now() >= deadline {
                    break 'run;
                }
                let n = (due - sent).min(self.batch as u64);
                let body =
                    self.body((sent..sent + n).map(|g| ((g % topics) as usize, g / topics + 1)));
                match self
                    .http
                    .request(Method::POST, PATH, &self.authorization, body)
                    .await
                {
                    Ok(answer) if answer.status == 202 => {
                        out.accepted += n;
                        progress.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok(answer) => {
                        out.failed += n;
                        out.first_error.get_or_insert_with(|| {
                            format!("publish: HTTP {}: {}", answer.status, answer.body_text())
                        });
                    }
                    Err(e) => {
                        out.failed += n;
                        out.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                for g in sent..sent + n {
                    out.last_seq[(g % topics) as usize] = g / topics + 1;
                }
                sent += n;
            }
            if last {
                break;
            }
        }
        out.elapsed = start.elapsed();
        out
    }

    /// The JSON array of the updates `(topic, seq)`, stamped now.
    fn body(&self, items: impl Iterator<Item = (usize, u64)>) -> Bytes {
        let sent_us = stamp::now_us();
        let mut body = String::with_capacity(MAX_BODY.min(64 * 1024));
        body.push('[');
        for (i, (topic, seq)) in items.enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&self.heads[topic]);
            let stamp = Stamp {
                topic,
                seq,
                sent_us,
            };
            if self.protocol.is_pubsub() {
                stamp::push_raw(&mut body, stamp, self.payload);
            } else if self.protocol == Protocol::Fastws {
                // A bar keeps only the price: it carries both (see crate::stamp).
                stamp::push_bar_price(&mut body, seq, sent_us);
            } else {
                // price = seq, volume = send time (see crate::stamp).
                stamp::push_u64(&mut body, seq);
                body.push_str(r#","volume":"#);
                stamp::push_u64(&mut body, sent_us);
            }
            body.push_str(&self.tails[topic]);
        }
        body.push(']');
        Bytes::from(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher(protocol: Protocol, payload: usize) -> Publisher {
        let target = Target {
            addr: "127.0.0.1:9".parse().unwrap(),
            host: "127.0.0.1:9".into(),
        };
        Publisher::new(target, "k", protocol, 3, payload, "blue")
    }

    #[test]
    fn raw_items_carry_their_stamp() {
        let p = publisher(Protocol::PubsubJson, 80);
        let body = p.body([(2, 5), (0, 6)].into_iter());
        let items: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(items[0]["kind"], "raw");
        assert_eq!(items[0]["group"], "blue_LT0003_state_gex_zero");
        assert_eq!(items[0]["data_type"], "text");
        let data = items[0]["data"].as_str().unwrap();
        assert_eq!(data.len(), 80);
        let stamp = stamp::find_raw(data.as_bytes()).unwrap();
        assert_eq!((stamp.topic, stamp.seq), (2, 5));
        assert_eq!(items[1]["group"], "blue_LT0001_state_gex_zero");
    }

    #[test]
    fn tick_items_carry_seq_and_time() {
        for (protocol, source) in [(Protocol::Ws, None), (Protocol::Stream, Some(10))] {
            let p = publisher(protocol, 10);
            let body = p.body([(1, 7)].into_iter());
            let items: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let item = &items[0];
            assert_eq!(item["kind"], "tick");
            assert_eq!(item["symbol"], "LT0002/USD");
            assert_eq!(item["price"], 7);
            assert!(item["volume"].as_u64().unwrap() > 1_600_000_000_000_000);
            assert_eq!(item["source"].as_str().map(str::len), source);
        }
    }

    #[test]
    fn proxy_items_name_the_exchange() {
        let p = publisher(Protocol::Proxy, 10);
        let body = p.body([(2, 9)].into_iter());
        let items: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let item = &items[0];
        assert_eq!(item["kind"], "tick");
        assert_eq!(item["symbol"], "LT0003/USD");
        assert_eq!(item["exchange"], "CRYPTO");
        assert_eq!(item["price"], 9);
        assert!(item["volume"].as_u64().unwrap() > 1_600_000_000_000_000);
        assert_eq!(item.as_object().unwrap().len(), 5);
    }

    #[test]
    fn bar_items_carry_the_stamp_in_the_price() {
        let p = publisher(Protocol::Fastws, 10);
        let before = stamp::now_us();
        let body = p.body([(0, 12)].into_iter());
        let items: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let item = &items[0];
        assert_eq!(item["symbol"], "LT0001/USD");
        assert!(item.get("volume").is_none() && item.get("exchange").is_none());
        let price = item["price"].as_f64().unwrap();
        let (seq, sent_us) = stamp::bar_stamp(price, stamp::now_us()).unwrap();
        assert_eq!(seq, 12);
        assert!(sent_us >= before && sent_us <= stamp::now_us());
    }

    #[test]
    fn batches_fit_the_body_limit() {
        let p = publisher(Protocol::PubsubProtobuf, 4000);
        let body = p.body((0..p.batch).map(|g| (g % 3, g as u64 + 1)));
        assert!(body.len() <= 1024 * 1024, "{}", body.len());
        assert!(p.batch >= 200);
    }
}
