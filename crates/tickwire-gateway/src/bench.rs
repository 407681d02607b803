//! The fan-out on its own, for the criterion benchmarks: one topic with `n`
//! subscribers, each with a real outbox (bounded queue), fed
//! by the gateway's own `publish`. Not a stable API.

use std::sync::Arc;

use tickwire_index::TopicId;
use tickwire_pubsub::{MessageData, MessageFrom, WireFormat};

use crate::fanout::{Index, QueuePolicy, Subscriber, publish};
use crate::outbox::{Batch, Outbox, SlowConsumer, SlowConsumerStats};

/// One pubsub group with `n` subscribers and one update to fan out to them.
pub struct FanOutBench {
    index: Index,
    topic: TopicId,
    subscribers: Vec<Subscriber>,
    from: MessageFrom,
    data: MessageData,
    batch: Batch,
}

impl std::fmt::Debug for FanOutBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOutBench")
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

impl FanOutBench {
    /// `n` non-reliable subscribers of one group in `format`, with queues of
    /// `capacity` items, and an update of `payload` text bytes.
    pub fn new(n: usize, format: WireFormat, capacity: usize, payload: usize) -> Self {
        let index = Index::new();
        let group = "blue_SPX_state_gex_zero";
        let stats = Arc::new(SlowConsumerStats::default());
        let queue = QueuePolicy {
            capacity,
            slow_consumer: SlowConsumer::Disconnect,
            pacer: None,
        };
        let subscribers: Vec<Subscriber> = (0..n as u64)
            .map(|id| Subscriber::new(id, format, false, queue.clone(), stats.clone()))
            .collect();
        for sub in &subscribers {
            index.subscribe(group, sub.clone());
        }
        let topic = index
            .lookup(group)
            .unwrap_or_else(|| unreachable!("just subscribed"));
        FanOutBench {
            index,
            topic,
            subscribers,
            from: MessageFrom::group(group.to_owned()),
            data: MessageData::Text("x".repeat(payload)),
            batch: Batch::default(),
        }
    }

    /// Fans the update out once: encoded and framed once, queued to every
    /// subscriber. Returns how many queues took it.
    pub fn publish(&self) -> usize {
        publish(&self.index, self.topic, &self.from, &self.data, None)
    }

    /// Empties every subscriber's queue, as the writers would (without
    /// writing), and returns how many items were queued.
    pub fn drain(&mut self) -> usize {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut items = 0;
        for sub in &self.subscribers {
            let _ = sub.outbox().poll_take(&mut cx, &mut self.batch);
            items += self.batch.data.len();
            Outbox::recycle(&mut self.batch);
        }
        items
    }
}
