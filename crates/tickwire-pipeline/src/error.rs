//! The one error type of the pipeline.

use tickwire_model::RecordKind;

/// Why a record could not be parsed, encoded or decoded.
///
/// Every variant describes bad input, never a bug: callers skip the record (a server) or
/// the message (a client), log the error and go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The JSON record is not JSON, or lacks a required field, or holds a wrong type or a
    /// too-short row. Skip the record; `reason` names the field and the position.
    #[error("invalid {} JSON record: {reason}", kind.type_url())]
    InvalidJson {
        /// The record type the JSON was parsed as.
        kind: RecordKind,
        /// What is wrong, with line and column.
        reason: String,
    },

    /// The bytes are not a valid protobuf `message`: the sender is broken or the bytes
    /// were cut short. Drop the message.
    #[error("invalid protobuf {message}: {source}")]
    Protobuf {
        /// The protobuf message that was decoded, e.g. `google.protobuf.Any` or `proto.gex`.
        message: &'static str,
        /// The decoder's error.
        #[source]
        source: prost::DecodeError,
    },

    /// zstd failed: on decompression the value is not a valid zstd frame; on compression
    /// the level or the context could not be set up. Drop the message.
    #[error("zstd {operation} failed: {source}")]
    Zstd {
        /// `"compress"` or `"decompress"`.
        operation: &'static str,
        /// zstd's error.
        #[source]
        source: std::io::Error,
    },

    /// The decompressed record would exceed the limit (a declared frame size, or the
    /// bytes produced so far): refused before allocating for it. Drop the message.
    #[error("decompressed record of at least {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The declared size, or the number of bytes produced when the limit was crossed.
        size: u64,
        /// The limit.
        max: u64,
    },

    /// The `google.protobuf.Any` carries a `type_url` that is not one of `proto.orderflow`,
    /// `proto.gex` or `proto.greek`. Drop the message.
    #[error("unknown Any type_url {type_url:?}")]
    UnknownTypeUrl {
        /// The type URL received.
        type_url: String,
    },
}
