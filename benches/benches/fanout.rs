//! One update fanned out to 1, 100 and 10,000 subscribers through the core's
//! fan-out (`tickwire_core::publish`: the message encoded once per wire
//! format and framed once, one queue push per subscriber) into real bounded
//! queues, drained between iterations. The time per subscriber should stay
//! flat as the audience grows.
//!
//! `cargo bench -p tickwire-benches --bench fanout`

use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tickwire_core::outbox::{Batch, Outbox, SlowConsumerStats};
use tickwire_core::subscriber::QueuePolicy;
use tickwire_core::{Index, Outbound, SlowConsumer, Subscriber};
use tickwire_index::TopicId;
use tickwire_pubsub::{MessageData, MessageFrom, WireFormat, encode_message};
use tickwire_websocket::{OpCode, frame};

/// One pubsub group with `n` subscribers of one wire format.
struct FanOut {
    index: Index,
    topic: TopicId,
    subscribers: Vec<Subscriber>,
    format: WireFormat,
    from: MessageFrom,
    data: MessageData,
    batch: Batch,
}

impl FanOut {
    fn new(n: usize, format: WireFormat, payload: usize) -> FanOut {
        let index = Index::new();
        let group = "blue_SPX_state_gex_zero";
        let stats = Arc::new(SlowConsumerStats::default());
        let queue = QueuePolicy {
            capacity: 256,
            slow_consumer: SlowConsumer::Disconnect,
            pacer: None,
        };
        let variant = u8::from(format == WireFormat::Protobuf);
        let subscribers: Vec<Subscriber> = (0..n as u64)
            .map(|id| Subscriber::new(id, variant, queue.clone(), stats.clone()))
            .collect();
        for sub in &subscribers {
            index.subscribe(group, sub.clone());
        }
        let topic = index.lookup(group).expect("just subscribed");
        FanOut {
            index,
            topic,
            subscribers,
            format,
            from: MessageFrom::group(group.to_owned()),
            data: MessageData::Text("x".repeat(payload)),
            batch: Batch::default(),
        }
    }

    /// Fans the update out once, as the pubsub hubs do: encoded and framed
    /// once, queued to every subscriber. Returns how many queues took it.
    fn publish(&self) -> usize {
        tickwire_core::publish(&self.index, self.topic, None, |_| {
            let msg = encode_message(self.format, &self.from, &self.data);
            let opcode = match self.format {
                WireFormat::Json => OpCode::Text,
                WireFormat::Protobuf => OpCode::Binary,
            };
            Outbound::Frame(frame::frame(opcode, &msg.unsequenced()))
        })
    }

    /// Empties every subscriber's queue, as the writers would (without
    /// writing), and returns how many items were queued.
    fn drain(&mut self) -> usize {
        let mut cx = Context::from_waker(Waker::noop());
        let mut items = 0;
        for sub in &self.subscribers {
            let _ = sub.outbox().poll_take(&mut cx, &mut self.batch);
            items += self.batch.data.len();
            Outbox::recycle(&mut self.batch);
        }
        items
    }
}

fn fanout(c: &mut Criterion) {
    for (name, format) in [
        ("fanout/protobuf", WireFormat::Protobuf),
        ("fanout/json", WireFormat::Json),
    ] {
        let mut group = c.benchmark_group(name);
        for n in [1usize, 100, 10_000] {
            let mut bench = FanOut::new(n, format, 100);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                // Only the fan-out is timed; the queues are emptied between
                // iterations so that every push finds room.
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let delivered = black_box(bench.publish());
                        spent += start.elapsed();
                        assert_eq!(delivered, n);
                        assert_eq!(bench.drain(), n);
                    }
                    spent
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, fanout);
criterion_main!(benches);
