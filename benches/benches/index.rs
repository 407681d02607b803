//! The subscription index on the fan-out path: a topic lookup by name among many, and the walk
//! over one topic's subscribers for 1, 100 and 10,000 of them.
//!
//! `cargo bench -p tickwire-benches --bench index`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tickwire_index::SubscriptionIndex;

fn lookup(c: &mut Criterion) {
    let index = SubscriptionIndex::<u64>::new();
    let names: Vec<String> = (0..10_000)
        .map(|i| format!("blue_T{i}_state_gex_zero"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        index.subscribe(name, i as u64);
    }
    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Elements(1));
    group.bench_function("lookup_among_10000", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 7919) % names.len();
            index.lookup(black_box(&names[i]))
        })
    });
    group.finish();
}

fn walk(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_walk");
    for n in [1u64, 100, 10_000] {
        let index = SubscriptionIndex::<u64>::new();
        for s in 0..n {
            index.subscribe("blue_SPX_state_gex_zero", s);
        }
        let topic = index.lookup("blue_SPX_state_gex_zero").unwrap();
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut sum = 0u64;
                index.for_each_subscriber(topic, |s| sum = sum.wrapping_add(*s));
                black_box(sum)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, walk);
criterion_main!(benches);
