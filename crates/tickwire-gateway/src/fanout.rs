//! The fan-out: from adapter updates to every subscriber's queue.
//!
//! One task consumes the update streams of every adapter. For each record it
//! builds the group name into a reused buffer and looks the group up in the
//! subscription index; a group nobody is in costs that lookup and nothing
//! else. Otherwise the record is encoded once (JSON → protobuf → zstd, the
//! `Any` value), wrapped once per wire format actually present among the
//! subscribers, and every subscriber gets a clone (a reference-count bump) in
//! its bounded queue with `try_send`. A full queue drops that client (it is
//! too slow to keep up) and nobody else waits for it.
//!
//! The index's subscriber lists are walked under their read lock; the closure
//! does only non-blocking work (`try_send`, the lazy encode) and never awaits.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt as _;
use tickwire_adapter::UpdateStream;
use tickwire_index::{SubscriptionIndex, TopicId};
use tickwire_model::{GexRecord, Update};
use tickwire_pubsub::{EncodedMessage, MessageData, MessageFrom, WireFormat, encode_message};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, warn};

/// The subscription index of the gateway.
pub(crate) type Index = SubscriptionIndex<Subscriber>;

/// A connection as the index and the fan-out see it: its id, wire format
/// and queue. Equal and hashed by connection id.
#[derive(Clone)]
pub(crate) struct Subscriber(Arc<SubscriberInner>);

struct SubscriberInner {
    id: u64,
    format: WireFormat,
    queue: mpsc::Sender<EncodedMessage>,
    dropped: AtomicBool,
    drop_signal: Notify,
}

impl Subscriber {
    pub(crate) fn new(id: u64, format: WireFormat, queue: mpsc::Sender<EncodedMessage>) -> Self {
        Subscriber(Arc::new(SubscriberInner {
            id,
            format,
            queue,
            dropped: AtomicBool::new(false),
            drop_signal: Notify::new(),
        }))
    }

    /// The connection id.
    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    /// Marks the connection for dropping; the writer stops at once. Returns
    /// whether this call was the first to do so.
    pub(crate) fn drop_connection(&self) -> bool {
        let first = !self.0.dropped.swap(true, Ordering::AcqRel);
        if first {
            // One waiter (the writer); a stored permit covers a writer busy writing.
            self.0.drop_signal.notify_one();
        }
        first
    }

    /// Whether the connection is being dropped.
    pub(crate) fn is_dropped(&self) -> bool {
        self.0.dropped.load(Ordering::Acquire)
    }

    /// Completes once the connection is to be dropped.
    pub(crate) async fn dropped(&self) {
        if !self.is_dropped() {
            self.0.drop_signal.notified().await;
        }
    }
}

impl PartialEq for Subscriber {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Subscriber {}

impl Hash for Subscriber {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.0.id)
            .field("format", &self.0.format)
            .finish_non_exhaustive()
    }
}

/// Delivers one message to every subscriber of `topic` (but `except`),
/// encoding it at most once per wire format. Returns how many queues took it.
pub(crate) fn publish(
    index: &Index,
    topic: TopicId,
    from: &MessageFrom,
    data: &MessageData,
    except: Option<u64>,
) -> usize {
    let mut encoded: [Option<EncodedMessage>; 2] = [None, None];
    let mut delivered = 0;
    index.for_each_subscriber(topic, |sub| {
        if sub.is_dropped() || Some(sub.id()) == except {
            return;
        }
        let slot = match sub.0.format {
            WireFormat::Json => &mut encoded[0],
            WireFormat::Protobuf => &mut encoded[1],
        };
        let msg = slot
            .get_or_insert_with(|| encode_message(sub.0.format, from, data))
            .clone();
        match sub.0.queue.try_send(msg) {
            Ok(()) => delivered += 1,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if sub.drop_connection() {
                    warn!(
                        connection = sub.id(),
                        capacity = sub.0.queue.max_capacity(),
                        "send buffer full; dropping the slow client"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    });
    delivered
}

/// The fan-out task's state.
pub(crate) struct FanOut {
    index: Arc<Index>,
    prefix: String,
    zstd_level: i32,
    group: String,
}

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOut")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl FanOut {
    pub(crate) fn new(index: Arc<Index>, prefix: String, zstd_level: i32) -> Self {
        FanOut {
            index,
            prefix,
            zstd_level,
            group: String::with_capacity(64),
        }
    }

    /// Consumes every adapter's update stream until they all end or
    /// `shutdown` is set.
    pub(crate) async fn run(
        mut self,
        streams: Vec<UpdateStream>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if streams.is_empty() {
            info!("no update streams; the fan-out is idle");
            return;
        }
        let mut updates = futures_util::stream::select_all(streams);
        loop {
            tokio::select! {
                biased;
                () = crate::shutdown_started(&mut shutdown) => break,
                next = updates.next() => match next {
                    Some(update) => self.handle(update),
                    None => {
                        info!("every adapter's update stream ended");
                        break;
                    }
                },
            }
        }
    }

    /// Delivers one update.
    pub(crate) fn handle(&mut self, update: Update) {
        match update {
            Update::Gex(record) => self.handle_gex(&record),
            other => debug!(update = ?other, "update kind not served; skipping"),
        }
    }

    fn handle_gex(&mut self, record: &GexRecord) {
        self.group.clear();
        // Same form as `GexRecord::group`, without an allocation per record.
        let _ = write!(
            self.group,
            "{}_{}_{}_{}",
            self.prefix,
            record.ticker,
            record.hub.group_kind(),
            record.category
        );
        let Some(topic) = self.index.lookup(&self.group) else {
            return;
        };
        if self.index.subscriber_count(topic) == 0 {
            return;
        }
        let kind = record.hub.record_kind();
        let value = match tickwire_pipeline::encode_json(kind, &record.json, self.zstd_level) {
            Ok(value) => value,
            Err(e) => {
                warn!(group = %self.group, error = %e, "bad record; skipping");
                return;
            }
        };
        let data = MessageData::Protobuf {
            type_url: kind.type_url().to_owned(),
            value,
        };
        let from = MessageFrom::group(self.group.clone());
        publish(&self.index, topic, &from, &data, None);
    }
}
