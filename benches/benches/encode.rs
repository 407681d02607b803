//! The encode path of one update: the record pipeline (JSON → scaled protobuf → zstd → Any) and
//! the pubsub codec's data message, once per wire format, plus the per-connection framing of a
//! reliable sequenceId.
//!
//! `cargo bench -p tickwire-benches --bench encode`

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tickwire_model::RecordKind;
use tickwire_pipeline::{DEFAULT_LEVEL, encode_any, encode_json, parse_record};
use tickwire_pubsub::{MessageData, MessageFrom, WireFormat, encode_message};

/// The first record of one demo file.
fn demo_line(file: &str) -> &str {
    file.lines().next().expect("the demo file has records")
}

fn samples() -> [(RecordKind, &'static str); 3] {
    [
        (
            RecordKind::Orderflow,
            demo_line(include_str!(
                "../../data/demo/2025-11-28/SPX/orderflow/orderflow.jsonl"
            )),
        ),
        (
            RecordKind::Gex,
            demo_line(include_str!(
                "../../data/demo/2025-11-28/SPX/state/gex_zero.jsonl"
            )),
        ),
        (
            RecordKind::Greek,
            demo_line(include_str!(
                "../../data/demo/2025-11-28/SPX/state/gamma_zero.jsonl"
            )),
        ),
    ]
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    for (kind, line) in samples() {
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("parse", kind.type_url()),
            line,
            |b, line| b.iter(|| parse_record(kind, black_box(line.as_bytes())).unwrap()),
        );
        group.bench_with_input(
            BenchmarkId::new("encode_json", kind.type_url()),
            line,
            |b, line| {
                b.iter(|| encode_json(kind, black_box(line.as_bytes()), DEFAULT_LEVEL).unwrap())
            },
        );
    }
    group.finish();
}

fn data_message(c: &mut Criterion) {
    let (kind, line) = samples()[1];
    let value = encode_json(kind, line.as_bytes(), DEFAULT_LEVEL).unwrap();
    let data = MessageData::Protobuf {
        type_url: kind.type_url().to_owned(),
        value: value.clone(),
    };
    let from = MessageFrom::Server;
    let any_len = encode_any(kind, &value).len() as u64;

    let mut group = c.benchmark_group("data_message");
    group.throughput(Throughput::Bytes(any_len));
    for format in [WireFormat::Protobuf, WireFormat::Json] {
        let name = format!("{format:?}");
        group.bench_function(BenchmarkId::new("encode_once", &name), |b| {
            b.iter(|| encode_message(black_box(format), &from, black_box(&data)))
        });
        let encoded = encode_message(format, &from, &data);
        let mut out = BytesMut::with_capacity(64 * 1024);
        group.bench_function(BenchmarkId::new("frame_reliable", &name), |b| {
            let mut seq = 0u64;
            b.iter(|| {
                seq += 1;
                if out.len() > 60 * 1024 {
                    out.clear();
                }
                encoded.write_to(Some(black_box(seq)), &mut out);
            })
        });
        group.bench_function(BenchmarkId::new("frame_unsequenced", &name), |b| {
            b.iter(|| -> Bytes { black_box(&encoded).unsequenced() })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline, data_message);
criterion_main!(benches);
