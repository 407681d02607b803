//! One update fanned out to 1, 100 and 10,000 subscribers through the
//! gateway's own fan-out (`publish`: encode once per wire format, frame once,
//! one queue push per subscriber) into real bounded queues, drained between
//! iterations. The time per subscriber should stay flat as the audience grows.
//!
//! `cargo bench -p tickwire-benches --bench fanout`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tickwire_gateway::bench::FanOutBench;
use tickwire_pubsub::WireFormat;

fn fanout(c: &mut Criterion) {
    for (name, format) in [
        ("fanout/protobuf", WireFormat::Protobuf),
        ("fanout/json", WireFormat::Json),
    ] {
        let mut group = c.benchmark_group(name);
        for n in [1usize, 100, 10_000] {
            let mut bench = FanOutBench::new(n, format, 256, 100);
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
                        bench.drain();
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
