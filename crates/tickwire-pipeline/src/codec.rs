//! Protobuf and zstd: records to compressed `Any` values and back.

use std::cell::RefCell;
use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tickwire_model::RecordKind;

use crate::{Error, Record};

/// Reusable per-thread state of the encode path: a protobuf buffer and a zstd context,
/// so encoding a record allocates only its compressed result.
struct Scratch {
    protobuf: Vec<u8>,
    compressed: Vec<u8>,
    compressor: Option<(i32, zstd::bulk::Compressor<'static>)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { protobuf: Vec::new(), compressed: Vec::new(), compressor: None })
    };
}

fn zstd_error(operation: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Zstd { operation, source }
}

impl Scratch {
    fn compress(&mut self, record: &Record, level: i32) -> Result<Bytes, Error> {
        self.protobuf.clear();
        record.encode_into(&mut self.protobuf);
        let compressor = match &mut self.compressor {
            Some((current, compressor)) => {
                if *current != level {
                    compressor
                        .set_compression_level(level)
                        .map_err(zstd_error("compress"))?;
                    *current = level;
                }
                compressor
            }
            slot @ None => {
                let compressor =
                    zstd::bulk::Compressor::new(level).map_err(zstd_error("compress"))?;
                &mut slot.insert((level, compressor)).1
            }
        };
        self.compressed.clear();
        self.compressed
            .reserve(zstd::zstd_safe::compress_bound(self.protobuf.len()));
        compressor
            .compress_to_buffer(&self.protobuf, &mut self.compressed)
            .map_err(zstd_error("compress"))?;
        // One exact-size allocation for the result; the scratch buffers stay for the next record.
        Ok(Bytes::copy_from_slice(&self.compressed))
    }
}

pub(crate) fn compress(record: &Record, level: i32) -> Result<Bytes, Error> {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => scratch.compress(record, level),
        // Not reachable (nothing re-enters), but a fresh context is always correct.
        Err(_) => Scratch {
            protobuf: Vec::new(),
            compressed: Vec::new(),
            compressor: None,
        }
        .compress(record, level),
    })
}

/// zstd-decompresses `value`, refusing to produce more than `max` bytes.
///
/// A frame that declares a content size over `max` is refused before any allocation;
/// frames without a declared size are streamed and cut off one byte past `max`, and the
/// buffer never grows past `max + 1` bytes.
pub(crate) fn bounded_decompress(value: &[u8], max: usize) -> Result<Vec<u8>, Error> {
    let too_large = |size: u64| Error::TooLarge {
        size,
        max: max as u64,
    };
    // RFC 8878 §3.1.1.1: the frame header may carry Frame_Content_Size.
    let declared = zstd::zstd_safe::get_frame_content_size(value)
        .ok()
        .flatten();
    if let Some(size) = declared {
        if size > max as u64 {
            return Err(too_large(size));
        }
    }
    let initial = declared.map_or(4096, |size| size as usize).min(max);
    let mut out = Vec::with_capacity(initial);
    let mut decoder = zstd::stream::read::Decoder::with_buffer(value)
        .map_err(zstd_error("decompress"))?
        .take(max as u64 + 1);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(zstd_error("decompress")(e)),
        };
        let len = out.len() + n;
        if len > max {
            return Err(too_large(len as u64));
        }
        if len > out.capacity() {
            // Grow geometrically but never past the limit.
            let target = (out.capacity() * 2).max(len).min(max);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// `google.protobuf.Any` field 1, `string type_url`: key `(1 << 3) | 2`.
const ANY_TYPE_URL_KEY: u8 = 0x0a;
/// `google.protobuf.Any` field 2, `bytes value`: key `(2 << 3) | 2`.
const ANY_VALUE_KEY: u8 = 0x12;

pub(crate) fn encode_any(kind: RecordKind, value: &Bytes) -> Bytes {
    let type_url = kind.type_url().as_bytes();
    let len = 1
        + prost::length_delimiter_len(type_url.len())
        + type_url.len()
        + if value.is_empty() {
            0
        } else {
            1 + prost::length_delimiter_len(value.len()) + value.len()
        };
    let mut buf = BytesMut::with_capacity(len);
    put_field(&mut buf, ANY_TYPE_URL_KEY, type_url);
    // proto3: a field holding its default (empty bytes) is not written.
    if !value.is_empty() {
        put_field(&mut buf, ANY_VALUE_KEY, value);
    }
    buf.freeze()
}

fn put_field(buf: &mut BytesMut, key: u8, bytes: &[u8]) {
    buf.put_u8(key);
    // Cannot fail: a BytesMut grows as needed.
    let _ = prost::encode_length_delimiter(bytes.len(), buf);
    buf.put_slice(bytes);
}

pub(crate) fn decode_any_parts(any: &[u8]) -> Result<(RecordKind, Vec<u8>), Error> {
    let any = prost_types::Any::decode(any).map_err(|source| Error::Protobuf {
        message: "google.protobuf.Any",
        source,
    })?;
    // Lenient: accept `type.googleapis.com/proto.gex` as well as the documented `proto.gex`.
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    match RecordKind::from_type_url(name) {
        Some(kind) => Ok((kind, any.value)),
        None => Err(Error::UnknownTypeUrl {
            type_url: any.type_url,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_matches_prost_types() {
        let value = Bytes::from_static(b"\x28\xb5\x2f\xfd\x00\x01\x02");
        for kind in [RecordKind::Orderflow, RecordKind::Gex, RecordKind::Greek] {
            let ours = encode_any(kind, &value);
            let theirs = prost_types::Any {
                type_url: kind.type_url().to_owned(),
                value: value.to_vec(),
            }
            .encode_to_vec();
            assert_eq!(ours.as_ref(), theirs.as_slice());
        }
        let empty = encode_any(RecordKind::Gex, &Bytes::new());
        assert_eq!(empty.as_ref(), b"\x0a\x09proto.gex");
    }

    #[test]
    fn any_golden_bytes() {
        let any = encode_any(RecordKind::Greek, &Bytes::from_static(b"\x01\x02\x03"));
        assert_eq!(any.as_ref(), b"\x0a\x0bproto.greek\x12\x03\x01\x02\x03");
    }

    #[test]
    fn bounded_decompress_streams_frames_without_a_size() {
        let data = vec![7u8; 100_000];
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        std::io::Write::write_all(&mut encoder, &data).unwrap();
        let frame = encoder.finish().unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&frame).unwrap(),
            None
        );
        assert_eq!(bounded_decompress(&frame, 100_000).unwrap(), data);
        match bounded_decompress(&frame, 99_999) {
            Err(Error::TooLarge { size, max }) => {
                assert!(size > 99_999);
                assert_eq!(max, 99_999);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn bounded_decompress_refuses_a_declared_size_over_the_limit() {
        let frame = zstd::bulk::compress(&[0u8; 5000], 3).unwrap();
        match bounded_decompress(&frame, 4999) {
            Err(Error::TooLarge { size, max }) => assert_eq!((size, max), (5000, 4999)),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(bounded_decompress(&frame, 5000).unwrap(), vec![0u8; 5000]);
    }

    #[test]
    fn bounded_decompress_reads_concatenated_frames() {
        let mut frames = zstd::bulk::compress(b"hello ", 3).unwrap();
        frames.extend(zstd::bulk::compress(b"world", 3).unwrap());
        assert_eq!(bounded_decompress(&frames, 64).unwrap(), b"hello world");
        assert!(matches!(
            bounded_decompress(&frames, 8),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_is_a_zstd_error() {
        for bad in [
            &b""[..],
            b"not zstd",
            b"\x28\xb5\x2f\xfd",
            b"\x28\xb5\x2f\xfd\xff\xff\xff\xff",
        ] {
            assert!(
                matches!(
                    bounded_decompress(bad, 1024),
                    Err(Error::Zstd {
                        operation: "decompress",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }
}
