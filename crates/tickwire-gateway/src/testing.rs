//! What the endpoints' unit tests share: a connection without a socket, and
//! the membership of a topic.

use std::sync::Arc;

use tickwire_core::outbox::SlowConsumerStats;
use tickwire_core::subscriber::QueuePolicy;
use tickwire_core::{Index, SlowConsumer, Subscriber};

/// Connection `id` of `variant`, with a queue of 16 that disconnects when full.
pub(crate) fn subscriber(id: u64, variant: u8) -> Subscriber {
    let queue = QueuePolicy {
        capacity: 16,
        slow_consumer: SlowConsumer::Disconnect,
        pacer: None,
    };
    Subscriber::new(id, variant, queue, Arc::new(SlowConsumerStats::default()))
}

/// How many connections `index` has in `topic`.
pub(crate) fn members(index: &Index, topic: &str) -> usize {
    index.lookup(topic).map_or(0, |t| index.subscriber_count(t))
}
