//! A replay line (one JSONL GEX record) through the pipeline: never a panic,
//! and what parses survives the protobuf + zstd round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire_model::RecordKind;
use tickwire_pipeline::{compress, decompress, parse_record};

fuzz_target!(|data: &[u8]| {
    for kind in [RecordKind::Orderflow, RecordKind::Gex, RecordKind::Greek] {
        if let Ok(record) = parse_record(kind, data) {
            let value = compress(&record, 1).expect("a parsed record compresses");
            assert_eq!(decompress(kind, &value).expect("and decompresses"), record);
        }
    }
});
