//! The GEX record pipeline: JSON records to the compressed protobuf values the hubs
//! broadcast, and back.
//!
//! Each line of a JSONL data file is one record of one of three kinds ([`RecordKind`]):
//! an orderflow record (`proto.orderflow`), a GEX chain (`proto.gex`) or a greek profile
//! (`proto.greek`). On its way to a client a record is
//!
//! 1. parsed into a typed struct borrowed from the line ([`parse_record`]);
//! 2. scaled into integers exactly as the source Go server does, `uint32(x * 100)` or
//!    `int32(x * 1000)`: the product in f64, truncated toward zero (see the field tables
//!    in `proto/*.proto`);
//! 3. encoded as the prost message of `proto/{orderflow,gex,option_profile}.proto`
//!    ([`tickwire_proto::records`]) and zstd-compressed ([`compress`]);
//! 4. carried as the `value` of a `google.protobuf.Any` whose `type_url` is
//!    [`RecordKind::type_url`] ([`encode_any`]), inside a Web PubSub `DataMessage`.
//!
//! [`decode_any`] and [`to_json`] are the exact reverse, for clients and tests.
//!
//! Truncation differs from Go's conversions only where Go's are undefined: Rust's `as`
//! saturates, so a negative value in a `uint32` field becomes 0 and a value beyond the
//! integer's range becomes its MIN or MAX. Decimals are parsed to the nearest f64
//! (serde_json's `float_roundtrip`), as Go's `encoding/json` does, so every value scales
//! here as there: `4500.11` gives `450010` (`4500.11 * 100.0 == 450010.99999999994`).
//!
//! This crate does no I/O: it neither reads files nor writes to sockets, and it knows
//! nothing of groups, hubs or Web PubSub framing (see `tickwire-pubsub`).
//!
//! ```
//! use tickwire_model::RecordKind;
//! use tickwire_pipeline::{Record, decode_any, encode_any, encode_json};
//!
//! let line = br#"{"timestamp":1764340200,"ticker":"SPX","spot":6849.57,"min_dte":0,
//!     "sec_min_dte":1,"zero_gamma":6832.1,"major_pos_vol":6900,"major_pos_oi":6900,
//!     "major_neg_vol":6800,"major_neg_oi":6750,"strikes":[[6850,12.34,-5.678,[1.5,-2]]],
//!     "sum_gex_vol":1234.5678,"sum_gex_oi":-98.7654,"delta_risk_reversal":-0.0421}"#;
//! let value = encode_json(RecordKind::Gex, line, tickwire_pipeline::DEFAULT_LEVEL)?;
//! let any = encode_any(RecordKind::Gex, &value);
//!
//! let Record::Gex(gex) = decode_any(&any)? else { unreachable!() };
//! assert_eq!(gex.spot, 684957);
//! assert_eq!(gex.strikes[0].value_2, -567); // -5.678 x100, truncated toward zero
//! assert_eq!(gex.sum_gex_oi, -98765); // x1000
//! assert_eq!(gex.max_priors, None);
//! # Ok::<(), tickwire_pipeline::Error>(())
//! ```

mod codec;
mod error;
mod parse;
mod unscale;

use bytes::Bytes;
use prost::Message;
pub use tickwire_model::RecordKind;
use tickwire_proto::records;

pub use crate::error::Error;

/// The default zstd compression level, as the source server's `SpeedDefault`.
pub const DEFAULT_LEVEL: i32 = 3;

/// The largest decompressed record [`decode_any`] and [`decompress`] accept: 16 MiB.
///
/// Real records are a few kilobytes; the limit only stops zstd bombs.
pub const MAX_DECOMPRESSED_SIZE: usize = 16 * 1024 * 1024;

/// One decoded record of one of the three kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An orderflow record, type URL `proto.orderflow`.
    Orderflow(records::Orderflow),
    /// A GEX chain, type URL `proto.gex`.
    Gex(records::Gex),
    /// A greek profile, type URL `proto.greek`.
    Greek(records::OptionProfile),
}

impl Record {
    /// The kind of the record.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Orderflow(_) => RecordKind::Orderflow,
            Record::Gex(_) => RecordKind::Gex,
            Record::Greek(_) => RecordKind::Greek,
        }
    }

    /// The record's Unix timestamp in seconds.
    pub fn timestamp(&self) -> i64 {
        match self {
            Record::Orderflow(r) => r.timestamp,
            Record::Gex(r) => r.timestamp,
            Record::Greek(r) => r.timestamp,
        }
    }

    /// The record's ticker, e.g. `SPX`.
    pub fn ticker(&self) -> &str {
        match self {
            Record::Orderflow(r) => &r.ticker,
            Record::Gex(r) => &r.ticker,
            Record::Greek(r) => &r.ticker,
        }
    }

    /// The uncompressed protobuf encoding of the record.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf);
        buf
    }

    /// Appends the uncompressed protobuf encoding of the record to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        let len = match self {
            Record::Orderflow(r) => r.encoded_len(),
            Record::Gex(r) => r.encoded_len(),
            Record::Greek(r) => r.encoded_len(),
        };
        buf.reserve(len);
        // Cannot fail: a Vec grows as needed.
        let _ = match self {
            Record::Orderflow(r) => r.encode(buf),
            Record::Gex(r) => r.encode(buf),
            Record::Greek(r) => r.encode(buf),
        };
    }

    /// Decodes an uncompressed protobuf record of `kind`.
    pub fn decode(kind: RecordKind, protobuf: &[u8]) -> Result<Record, Error> {
        let protobuf_error = |source| Error::Protobuf {
            message: kind.type_url(),
            source,
        };
        Ok(match kind {
            RecordKind::Orderflow => {
                Record::Orderflow(records::Orderflow::decode(protobuf).map_err(protobuf_error)?)
            }
            RecordKind::Gex => Record::Gex(records::Gex::decode(protobuf).map_err(protobuf_error)?),
            RecordKind::Greek => {
                Record::Greek(records::OptionProfile::decode(protobuf).map_err(protobuf_error)?)
            }
        })
    }
}

impl From<records::Orderflow> for Record {
    fn from(r: records::Orderflow) -> Self {
        Record::Orderflow(r)
    }
}

impl From<records::Gex> for Record {
    fn from(r: records::Gex) -> Self {
        Record::Gex(r)
    }
}

impl From<records::OptionProfile> for Record {
    fn from(r: records::OptionProfile) -> Self {
        Record::Greek(r)
    }
}

/// Parses one JSON record of `kind` and scales it into its prost message.
///
/// JSON record -> typed serde struct borrowed from `json` -> scaled integers -> prost
/// message; no `serde_json::Value` is built. Unknown keys are ignored. Optional fields
/// (`min_dte`, `sec_min_dte`, `max_priors`, row priors, put volumes) may be missing or
/// null and stay `None`; empty prior lists are sent as absent, as the source server does.
/// A missing required field, a wrong type or a too-short row is an
/// [`Error::InvalidJson`].
pub fn parse_record(kind: RecordKind, json: &[u8]) -> Result<Record, Error> {
    let invalid = |e: serde_json::Error| Error::InvalidJson {
        kind,
        reason: e.to_string(),
    };
    Ok(match kind {
        RecordKind::Orderflow => Record::Orderflow(
            serde_json::from_slice::<parse::OrderflowJson<'_>>(json)
                .map_err(invalid)?
                .into(),
        ),
        RecordKind::Gex => Record::Gex(
            serde_json::from_slice::<parse::GexJson<'_>>(json)
                .map_err(invalid)?
                .into(),
        ),
        RecordKind::Greek => Record::Greek(
            serde_json::from_slice::<parse::GreekJson<'_>>(json)
                .map_err(invalid)?
                .into(),
        ),
    })
}

/// Protobuf-encodes `record` and zstd-compresses it at `level`: the `value` of the
/// record's `Any`.
///
/// `level` is a zstd level: 1..=22, negative for zstd's fast modes, 0 for its default (3);
/// zstd clamps levels outside its range.
///
/// Each thread keeps its buffers and zstd context, so a call allocates only the result.
pub fn compress(record: &Record, level: i32) -> Result<Bytes, Error> {
    codec::compress(record, level)
}

/// [`parse_record`] then [`compress`]: the `value` of the `Any` for one JSON record,
/// whose `type_url` is [`kind.type_url()`](RecordKind::type_url).
pub fn encode_json(kind: RecordKind, json: &[u8], level: i32) -> Result<Bytes, Error> {
    compress(&parse_record(kind, json)?, level)
}

/// The encoded `google.protobuf.Any { type_url: kind.type_url(), value }`: the
/// `protobuf_data` of a protobuf `DataMessage`, and what JSON clients receive base64'd
/// as `data`.
pub fn encode_any(kind: RecordKind, value: &Bytes) -> Bytes {
    codec::encode_any(kind, value)
}

/// Decodes an encoded `google.protobuf.Any`: the record kind from its `type_url`, then
/// [`decompress`] of its `value`.
///
/// `type_url` is `proto.orderflow`, `proto.gex` or `proto.greek`; a
/// `type.googleapis.com/`-style prefix is accepted too.
pub fn decode_any(any: &[u8]) -> Result<Record, Error> {
    let (kind, value) = codec::decode_any_parts(any)?;
    decompress(kind, &value)
}

/// zstd-decompresses `value` (at most [`MAX_DECOMPRESSED_SIZE`] bytes) and decodes the
/// protobuf record of `kind`.
pub fn decompress(kind: RecordKind, value: &[u8]) -> Result<Record, Error> {
    decompress_with_limit(kind, value, MAX_DECOMPRESSED_SIZE)
}

/// [`decompress`] with a limit of `max` decompressed bytes.
///
/// A frame that declares a larger size is refused before anything is allocated; a frame
/// without a declared size is cut off as soon as it produces more than `max` bytes.
pub fn decompress_with_limit(kind: RecordKind, value: &[u8], max: usize) -> Result<Record, Error> {
    Record::decode(kind, &codec::bounded_decompress(value, max)?)
}

/// The record unscaled back to the JSON shape of its source, as a [`serde_json::Value`].
///
/// x100 fields are divided by 100, x1000 fields by 1000; absent optional fields are
/// left out (`min_dte`, `sec_min_dte`, `max_priors`, strike priors) or null (put volumes
/// and priors of `mini_contracts` rows, which always have 7 elements). Parsing the result
/// again gives back the record, except that a value may come back one unit lower, as
/// truncation meets the float: `0.29` (from 29) scales to `28` (`0.29 * 100.0` is
/// `28.999999999999996`).
pub fn to_json(record: &Record) -> serde_json::Value {
    match record {
        Record::Orderflow(r) => unscale::orderflow(r),
        Record::Gex(r) => unscale::gex(r),
        Record::Greek(r) => unscale::greek(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every x100 field holds a decimal whose f64 product lands just below the integer
    /// (`4500.11 * 100.0 == 450010.99999999994`), every x1000 one likewise
    /// (`1.005 * 1000.0 == 1004.9999999999999`) or a fourth decimal to drop, and every
    /// unscaled one a fraction, so a rounding conversion or a swapped field fails.
    const ORDERFLOW: &str = r#"{"timestamp":1764340200,"ticker":"SPX","spot":4500.11,
        "z_mlgamma":4500.15,"z_msgamma":4500.19,"o_mlgamma":4500.23,"o_msgamma":4500.36,
        "zero_mcall":4500.40,"zero_mput":4500.44,"one_mcall":4500.48,"one_mput":4500.61,
        "zcvr":12.9,"ocvr":-7.99,"zgr":3.5,"ogr":-4.2,"zvanna":15234.75,"ovanna":-8821.5,
        "zcharm":301.01,"ocharm":-77.77,"agg_dex":1234567.9,"one_agg_dex":2345678.1,
        "agg_call_dex":3456789.99,"one_agg_call_dex":456789.5,"agg_put_dex":-2222222.2,
        "one_agg_put_dex":-111111.9,"net_dex":54321.6,"one_net_dex":-65432.4,
        "net_call_dex":76543.3,"one_net_call_dex":87654.8,"net_put_dex":-98765.1,
        "one_net_put_dex":-10987.65,"dexoflow":4321.9,"gexoflow":-5432.1,"cvroflow":6.66,
        "one_dexoflow":-7654.3,"one_gexoflow":8765.4,"one_cvroflow":-9.99,"extra":[1,{"a":2}]}"#;

    const GEX: &str = r#"{"timestamp":1764340201,"ticker":"ES_SPX","min_dte":2,"sec_min_dte":3.7,
        "spot":4800.11,"zero_gamma":4800.15,"major_pos_vol":4800.19,"major_pos_oi":4800.23,
        "major_neg_vol":4800.36,"major_neg_oi":1.16,
        "strikes":[[4500.40,0.57,-1.16,[0.29,-0.58,1.13]],[4500.44,-1.239,16.06],
                   [4500.48,10.03,-0.29,null],[4500.61,1.14,-1.15,[]],[4500.65,0,-0,[1],"x"]],
        "sum_gex_vol":1.005,"sum_gex_oi":-2.046,"delta_risk_reversal":-1.023,
        "max_priors":[[4500.61,32.001],[0.57,-2.042],[1.14,64.002],[-1.15,-131.069],
                      [16.08,128.003],[10.04,1.001]]}"#;

    const GREEK: &str = r#"{"timestamp":1764340202,"ticker":"NDX","spot":4500.65,"min_dte":0,
        "sec_min_dte":1,"major_positive":4800.40,"major_negative":4800.44,
        "major_long_gamma":4800.48,"major_short_gamma":10.03,
        "mini_contracts":[[4500.11,0.1255,0.2506,-1.13,[0.58,-1.14],7.9,[3.99,-2.5]],
                          [4500.15,1.001,0.1266,16.15,[]],
                          [4500.19,0.2515,0.1275,-0.57,null,null,null],
                          [4500.23,0.1,0.2,0.3,[0.4],5,[6],"ignored"]]}"#;

    fn parse(kind: RecordKind, json: &str) -> Record {
        parse_record(kind, json.as_bytes()).unwrap()
    }

    fn orderflow() -> records::Orderflow {
        match parse(RecordKind::Orderflow, ORDERFLOW) {
            Record::Orderflow(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn gex() -> records::Gex {
        match parse(RecordKind::Gex, GEX) {
            Record::Gex(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn greek() -> records::OptionProfile {
        match parse(RecordKind::Greek, GREEK) {
            Record::Greek(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncation_is_not_rounding() {
        // The f64 facts the expected values below rest on.
        assert_eq!(4500.11_f64 * 100.0, 450_010.999_999_999_94);
        assert_eq!(0.29_f64 * 100.0, 28.999_999_999_999_996);
        assert_eq!(1.005_f64 * 1000.0, 1_004.999_999_999_999_9);
        assert_eq!(parse::to_i32(-1.239, 100.0), -123);
        // Saturation where Go's conversion is undefined.
        assert_eq!(parse::to_u32(-1.5, 100.0), 0);
        assert_eq!(parse::to_u32(5e7, 100.0), u32::MAX);
        assert_eq!(parse::to_i32(-3e9, 1.0), i32::MIN);
        assert_eq!(parse::to_i32(f64::NAN, 1.0), 0);
    }

    #[test]
    fn orderflow_scales_every_field() {
        let expected = records::Orderflow {
            timestamp: 1_764_340_200,
            ticker: "SPX".into(),
            spot: 450_010,
            zero_major_long_gamma: 450_014,
            zero_major_short_gamma: 450_018,
            one_major_long_gamma: 450_022,
            one_major_short_gamma: 450_035,
            zero_major_call_gamma: 450_039,
            zero_major_put_gamma: 450_043,
            one_major_call_gamma: 450_047,
            one_major_put_gamma: 450_060,
            zero_convexity_ratio: 12,
            one_convexity_ratio: -7,
            zero_gex_ratio: 3,
            one_gex_ratio: -4,
            zero_net_vanna: 15234,
            one_net_vanna: -8821,
            zero_net_charm: 301,
            one_net_charm: -77,
            zero_agg_total_dex: 1_234_567,
            one_agg_total_dex: 2_345_678,
            zero_agg_call_dex: 3_456_789,
            one_agg_call_dex: 456_789,
            zero_agg_put_dex: -2_222_222,
            one_agg_put_dex: -111_111,
            zero_net_total_dex: 54321,
            one_net_total_dex: -65432,
            zero_net_call_dex: 76543,
            one_net_call_dex: 87654,
            zero_net_put_dex: -98765,
            one_net_put_dex: -10987,
            dex_orderflow: 4321,
            gex_orderflow: -5432,
            convexity_orderflow: 6,
            one_dex_orderflow: -7654,
            one_gex_orderflow: 8765,
            one_convexity_orderflow: -9,
        };
        assert_eq!(orderflow(), expected);
    }

    #[test]
    fn gex_scales_every_field() {
        let expected = records::Gex {
            timestamp: 1_764_340_201,
            ticker: "ES_SPX".into(),
            min_dte: Some(2),
            sec_min_dte: Some(3),
            spot: 480_010,
            zero_gamma: 480_014,
            major_pos_vol: 480_018,
            major_pos_oi: 480_022,
            major_neg_vol: 480_035,
            major_neg_oi: 115,
            strikes: vec![
                records::Strike {
                    strike_price: 450_039,
                    value_1: 56,
                    value_2: -115,
                    priors: Some(records::Priors {
                        values: vec![28, -57, 112],
                    }),
                },
                records::Strike {
                    strike_price: 450_043,
                    value_1: -123,
                    value_2: 1605,
                    priors: None,
                },
                records::Strike {
                    strike_price: 450_047,
                    value_1: 1002,
                    value_2: -28,
                    priors: None,
                },
                records::Strike {
                    strike_price: 450_060,
                    value_1: 113,
                    value_2: -114,
                    priors: None,
                },
                records::Strike {
                    strike_price: 450_064,
                    value_1: 0,
                    value_2: 0,
                    priors: Some(records::Priors { values: vec![100] }),
                },
            ],
            sum_gex_vol: 1004,
            sum_gex_oi: -2045,
            delta_risk_reversal: -1022,
            max_priors: Some(records::MaxPriors {
                tuples: [
                    (450_060, 32000),
                    (56, -2041),
                    (113, 64001),
                    (-114, -131_068),
                    (1607, 128_002),
                    (1003, 1000),
                ]
                .map(|(first_value, second_value)| records::MaxPriorsTuple {
                    first_value,
                    second_value,
                })
                .to_vec(),
            }),
        };
        assert_eq!(gex(), expected);
    }

    #[test]
    fn greek_scales_every_field() {
        let expected = records::OptionProfile {
            timestamp: 1_764_340_202,
            ticker: "NDX".into(),
            spot: 450_064,
            min_dte: Some(0),
            sec_min_dte: Some(1),
            major_call_gamma: 480_039,
            major_put_gamma: 480_043,
            major_long_gamma: 480_047,
            major_short_gamma: 1002,
            mini_contracts: vec![
                records::MiniContract {
                    strike: 450_010,
                    call_ivol: 125,
                    put_ivol: 250,
                    call_cvolume: -112,
                    call_cvolume_priors: vec![57, -113],
                    put_cvolume: Some(7),
                    put_cvolume_priors: Some(records::MiniContractPriors {
                        values: vec![3, -2],
                    }),
                },
                records::MiniContract {
                    strike: 450_014,
                    call_ivol: 1000,
                    put_ivol: 126,
                    call_cvolume: 1614,
                    call_cvolume_priors: vec![],
                    put_cvolume: None,
                    put_cvolume_priors: None,
                },
                records::MiniContract {
                    strike: 450_018,
                    call_ivol: 251,
                    put_ivol: 127,
                    call_cvolume: -56,
                    call_cvolume_priors: vec![],
                    put_cvolume: None,
                    put_cvolume_priors: None,
                },
                records::MiniContract {
                    strike: 450_022,
                    call_ivol: 100,
                    put_ivol: 200,
                    call_cvolume: 30,
                    call_cvolume_priors: vec![40],
                    put_cvolume: Some(5),
                    put_cvolume_priors: Some(records::MiniContractPriors { values: vec![6] }),
                },
            ],
        };
        assert_eq!(greek(), expected);
    }

    #[test]
    fn missing_optional_fields_stay_none() {
        let gex = parse(
            RecordKind::Gex,
            r#"{"timestamp":1,"ticker":"SPX","spot":1,"zero_gamma":1,"major_pos_vol":1,
                "major_pos_oi":1,"major_neg_vol":1,"major_neg_oi":1,"strikes":[[1,2,3]],
                "sum_gex_vol":1,"sum_gex_oi":1,"delta_risk_reversal":1}"#,
        );
        let Record::Gex(gex) = gex else { panic!() };
        assert_eq!((gex.min_dte, gex.sec_min_dte), (None, None));
        assert_eq!(gex.max_priors, None);
        assert_eq!(gex.strikes[0].priors, None);

        let nulls = parse(
            RecordKind::Gex,
            r#"{"timestamp":1,"ticker":"SPX","min_dte":null,"sec_min_dte":null,"spot":1,
                "zero_gamma":1,"major_pos_vol":1,"major_pos_oi":1,"major_neg_vol":1,
                "major_neg_oi":1,"strikes":[],"sum_gex_vol":1,"sum_gex_oi":1,
                "delta_risk_reversal":1,"max_priors":null}"#,
        );
        let Record::Gex(nulls) = nulls else { panic!() };
        assert_eq!((nulls.min_dte, nulls.sec_min_dte), (None, None));
        assert_eq!(nulls.max_priors, None);
        assert!(nulls.strikes.is_empty());

        let greek = parse(
            RecordKind::Greek,
            r#"{"timestamp":1,"ticker":"SPX","spot":1,"major_positive":1,"major_negative":1,
                "major_long_gamma":1,"major_short_gamma":1,"mini_contracts":[[1,2,3,4,[5]]]}"#,
        );
        let Record::Greek(greek) = greek else {
            panic!()
        };
        assert_eq!((greek.min_dte, greek.sec_min_dte), (None, None));
        assert_eq!(greek.mini_contracts[0].put_cvolume, None);
        assert_eq!(greek.mini_contracts[0].put_cvolume_priors, None);
        assert_eq!(greek.mini_contracts[0].call_cvolume_priors, vec![500]);
    }

    #[test]
    fn escaped_tickers_and_integer_numbers_parse() {
        let json = ORDERFLOW
            .replace(r#""SPX""#, r#""S\u0050X""#)
            .replace("4500.11", "4500")
            .replace("1764340200", "1764340200.9");
        let Record::Orderflow(r) = parse(RecordKind::Orderflow, &json) else {
            panic!()
        };
        assert_eq!(r.ticker, "SPX");
        assert_eq!(r.spot, 450_000);
        assert_eq!(r.timestamp, 1_764_340_200);
    }

    #[test]
    fn decimals_parse_to_the_nearest_f64() {
        // 17 significant digits: a fast parser (the significand rounded to f64, then divided
        // by 1e13) lands one ulp off on these, which truncation turns into a wrong cent.
        let texts = [
            ("4605.8199999999994", 460_582),
            ("4853.2300000000003", 485_323),
            ("4400.6799999999996", 440_067),
            ("4882.9499999999995", 488_295),
            ("4201.2300000000004", 420_123),
            ("4865.3499999999998", 486_534),
        ];
        let rows: Vec<String> = texts.iter().map(|(t, _)| format!("[{t},{t},0]")).collect();
        let json = GEX.replace(
            r#""strikes":["#,
            &format!(r#""strikes":[{},"#, rows.join(",")),
        );
        let Record::Gex(gex) = parse(RecordKind::Gex, &json) else {
            panic!()
        };
        for ((text, cents), strike) in texts.iter().zip(&gex.strikes) {
            let nearest: f64 = text.parse().unwrap();
            assert_eq!((nearest * 100.0) as u32, *cents, "{text}");
            assert_eq!(strike.strike_price, *cents, "{text}");
            assert_eq!(strike.value_1, *cents as i32, "{text}");
        }
    }

    #[test]
    fn every_kind_round_trips_through_any() {
        for (kind, json) in [
            (RecordKind::Orderflow, ORDERFLOW),
            (RecordKind::Gex, GEX),
            (RecordKind::Greek, GREEK),
        ] {
            let record = parse(kind, json);
            assert_eq!(record.kind(), kind);
            for level in [DEFAULT_LEVEL, 1, 19, -5, 0, 100] {
                let value = encode_json(kind, json.as_bytes(), level).unwrap();
                assert_eq!(value, compress(&record, level).unwrap());
                assert_eq!(decompress(kind, &value).unwrap(), record);
                let any = encode_any(kind, &value);
                assert_eq!(decode_any(&any).unwrap(), record);
            }
            assert_eq!(
                Record::decode(kind, &record.encode_to_vec()).unwrap(),
                record
            );
        }
    }

    #[test]
    fn compress_is_plain_zstd_of_the_protobuf() {
        let record = Record::Gex(gex());
        let value = compress(&record, DEFAULT_LEVEL).unwrap();
        assert_eq!(&value[..4], b"\x28\xb5\x2f\xfd", "zstd magic number");
        let protobuf = zstd::bulk::decompress(&value, 1 << 20).unwrap();
        assert_eq!(protobuf, record.encode_to_vec());
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&value).unwrap(),
            Some(protobuf.len() as u64)
        );
    }

    #[test]
    fn to_json_unscales_orderflow() {
        let value = to_json(&Record::Orderflow(orderflow()));
        let expected: serde_json::Value = serde_json::from_str(
            r#"{"timestamp":1764340200,"ticker":"SPX","spot":4500.1,
            "z_mlgamma":4500.14,"z_msgamma":4500.18,"o_mlgamma":4500.22,"o_msgamma":4500.35,
            "zero_mcall":4500.39,"zero_mput":4500.43,"one_mcall":4500.47,"one_mput":4500.6,
            "zcvr":12,"ocvr":-7,"zgr":3,"ogr":-4,"zvanna":15234,"ovanna":-8821,
            "zcharm":301,"ocharm":-77,"agg_dex":1234567,"one_agg_dex":2345678,
            "agg_call_dex":3456789,"one_agg_call_dex":456789,"agg_put_dex":-2222222,
            "one_agg_put_dex":-111111,"net_dex":54321,"one_net_dex":-65432,
            "net_call_dex":76543,"one_net_call_dex":87654,"net_put_dex":-98765,
            "one_net_put_dex":-10987,"dexoflow":4321,"gexoflow":-5432,"cvroflow":6,
            "one_dexoflow":-7654,"one_gexoflow":8765,"one_cvroflow":-9}"#,
        )
        .unwrap();
        assert_eq!(value, expected);
    }

    #[test]
    fn to_json_unscales_gex() {
        let value = to_json(&Record::Gex(gex()));
        let expected = json!({
            "timestamp": 1_764_340_201, "ticker": "ES_SPX", "min_dte": 2, "sec_min_dte": 3,
            "spot": 4800.1, "zero_gamma": 4800.14, "major_pos_vol": 4800.18,
            "major_pos_oi": 4800.22, "major_neg_vol": 4800.35, "major_neg_oi": 1.15,
            "strikes": [
                [4500.39, 0.56, -1.15, [0.28, -0.57, 1.12]],
                [4500.43, -1.23, 16.05],
                [4500.47, 10.02, -0.28],
                [4500.6, 1.13, -1.14],
                [4500.64, 0.0, 0.0, [1.0]],
            ],
            "sum_gex_vol": 1.004, "sum_gex_oi": -2.045, "delta_risk_reversal": -1.022,
            "max_priors": [[4500.6, 32.0], [0.56, -2.041], [1.13, 64.001], [-1.14, -131.068],
                           [16.07, 128.002], [10.03, 1.0]],
        });
        assert_eq!(value, expected);
        // Absent optional fields are left out.
        let mut bare = gex();
        bare.min_dte = None;
        bare.sec_min_dte = None;
        bare.max_priors = None;
        let value = to_json(&Record::Gex(bare));
        for key in ["min_dte", "sec_min_dte", "max_priors"] {
            assert!(value.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn to_json_unscales_greek() {
        let value = to_json(&Record::Greek(greek()));
        let expected = json!({
            "timestamp": 1_764_340_202, "ticker": "NDX", "spot": 4500.64, "min_dte": 0,
            "sec_min_dte": 1, "major_positive": 4800.39, "major_negative": 4800.43,
            "major_long_gamma": 4800.47, "major_short_gamma": 10.02,
            "mini_contracts": [
                [4500.1, 0.125, 0.25, -1.12, [0.57, -1.13], 7, [3, -2]],
                [4500.14, 1.0, 0.126, 16.14, [], null, null],
                [4500.18, 0.251, 0.127, -0.56, [], null, null],
                [4500.22, 0.1, 0.2, 0.3, [0.4], 5, [6]],
            ],
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn to_json_parses_back_to_the_same_shape() {
        for (kind, json) in [
            (RecordKind::Orderflow, ORDERFLOW),
            (RecordKind::Gex, GEX),
            (RecordKind::Greek, GREEK),
        ] {
            let record = parse(kind, json);
            let first = to_json(&record);
            let again = parse_record(kind, &serde_json::to_vec(&first).unwrap()).unwrap();
            assert_eq!(again.kind(), kind);
            assert_eq!(again.timestamp(), record.timestamp());
            assert_eq!(again.ticker(), record.ticker());
            assert_close(&to_json(&again), &first, "$");
        }
    }

    /// `a` and `b` have the same shape and their numbers differ by at most one unit of
    /// their scale (0.01 for x100 values).
    fn assert_close(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
        use serde_json::Value;
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() <= 0.010_000_001, "{at}: {x} vs {y}");
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{at}");
                for (i, (x, y)) in x.iter().zip(y).enumerate() {
                    assert_close(x, y, &format!("{at}[{i}]"));
                }
            }
            (Value::Object(x), Value::Object(y)) => {
                assert!(x.keys().eq(y.keys()), "{at}");
                for (key, x) in x {
                    assert_close(x, &y[key], &format!("{at}.{key}"));
                }
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }

    fn invalid(kind: RecordKind, json: &str) -> String {
        match parse_record(kind, json.as_bytes()) {
            Err(Error::InvalidJson { kind: k, reason }) => {
                assert_eq!(k, kind);
                reason
            }
            other => panic!("expected InvalidJson for {json}, got {other:?}"),
        }
    }

    #[test]
    fn bad_json_is_an_error() {
        for kind in [RecordKind::Orderflow, RecordKind::Gex, RecordKind::Greek] {
            for bad in ["", "not json", "[]", "null", "{", "{}", "{\"timestamp\":1}"] {
                invalid(kind, bad);
            }
        }
        // A missing required field is named.
        let reason = invalid(
            RecordKind::Orderflow,
            &ORDERFLOW.replace("\"zgr\"", "\"zgx\""),
        );
        assert!(reason.contains("missing field `zgr`"), "{reason}");
        // Wrong types.
        invalid(
            RecordKind::Orderflow,
            &ORDERFLOW.replace("\"spot\":4500.11", "\"spot\":\"4500.11\""),
        );
        invalid(
            RecordKind::Orderflow,
            &ORDERFLOW.replace("\"spot\":4500.11", "\"spot\":null"),
        );
        invalid(RecordKind::Orderflow, &ORDERFLOW.replace("\"SPX\"", "7"));
        invalid(
            RecordKind::Orderflow,
            &ORDERFLOW.replace("1764340200", "18446744073709551615"),
        );
        invalid(
            RecordKind::Gex,
            &GEX.replace("\"min_dte\":2", "\"min_dte\":\"2\""),
        );
        invalid(
            RecordKind::Gex,
            &GEX.replace("[0.29,-0.58,1.13]", "[0.29,\"x\"]"),
        );
        invalid(
            RecordKind::Gex,
            &GEX.replace("[4500.61,32.001]", "[4500.61]"),
        );
        invalid(RecordKind::Gex, &GEX.replace("[4500.61,32.001]", "4500.61"));
        invalid(
            RecordKind::Gex,
            &GEX.replace("[4500.44,-1.239,16.06]", "[4500.44,-1.239]"),
        );
        invalid(
            RecordKind::Gex,
            &GEX.replace("\"strikes\":[", "\"strikes\":{"),
        );
        invalid(
            RecordKind::Greek,
            &GREEK.replace("[4500.23,0.1,0.2,0.3,[0.4]", "[4500.23,0.1,0.2,0.3,0.4"),
        );
        invalid(
            RecordKind::Greek,
            &GREEK.replace("\"major_positive\"", "\"major_pos\""),
        );
        // Trailing garbage after the object.
        invalid(RecordKind::Greek, &format!("{GREEK} x"));
    }

    #[test]
    fn short_mini_contract_rows_are_errors() {
        for row in ["[]", "[1]", "[1,2]", "[1,2,3]", "[1,2,3,4]"] {
            let json = GREEK.replace("[4500.15,1.001,0.1266,16.15,[]]", row);
            let reason = invalid(RecordKind::Greek, &json);
            assert!(reason.contains("invalid length"), "{reason}");
        }
    }

    #[test]
    fn bad_any_is_an_error() {
        let value = compress(&Record::Greek(greek()), DEFAULT_LEVEL).unwrap();
        // Not a protobuf Any.
        assert!(matches!(
            decode_any(b"\xff\xff\xff"),
            Err(Error::Protobuf {
                message: "google.protobuf.Any",
                ..
            })
        ));
        // An unknown type_url.
        let any = prost_types::Any {
            type_url: "proto.quote".into(),
            value: value.to_vec(),
        }
        .encode_to_vec();
        match decode_any(&any) {
            Err(Error::UnknownTypeUrl { type_url }) => assert_eq!(type_url, "proto.quote"),
            other => panic!("{other:?}"),
        }
        // A type.googleapis.com-style prefix is accepted.
        let any = prost_types::Any {
            type_url: "type.googleapis.com/proto.greek".into(),
            value: value.to_vec(),
        }
        .encode_to_vec();
        assert_eq!(decode_any(&any).unwrap(), Record::Greek(greek()));
        // A value that is not zstd.
        let any = encode_any(RecordKind::Gex, &Bytes::from_static(b"plain"));
        assert!(matches!(decode_any(&any), Err(Error::Zstd { .. })));
        // zstd of bytes that are not the record's protobuf.
        let garbage = Bytes::from(zstd::bulk::compress(b"\xff\xff\xff\xff", 3).unwrap());
        assert!(matches!(
            decode_any(&encode_any(RecordKind::Gex, &garbage)),
            Err(Error::Protobuf {
                message: "proto.gex",
                ..
            })
        ));
        // Truncated values and Anys.
        let any = encode_any(RecordKind::Greek, &value);
        for cut in 0..any.len() {
            let _ = decode_any(&any[..cut]);
        }
        assert!(decode_any(&any[..any.len() - 1]).is_err());
    }

    #[test]
    fn zstd_bombs_are_refused() {
        // 17 MiB of zeros compress to a few hundred bytes.
        let zeros = vec![0u8; 17 * 1024 * 1024];
        let declared = Bytes::from(zstd::bulk::compress(&zeros, 1).unwrap());
        assert!(declared.len() < 4096);
        match decode_any(&encode_any(RecordKind::Orderflow, &declared)) {
            Err(Error::TooLarge { size, max }) => {
                assert_eq!(size, zeros.len() as u64);
                assert_eq!(max, MAX_DECOMPRESSED_SIZE as u64);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        // The same without a declared size is cut off while streaming.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        std::io::Write::write_all(&mut encoder, &zeros).unwrap();
        let streamed = Bytes::from(encoder.finish().unwrap());
        assert!(matches!(
            decode_any(&encode_any(RecordKind::Gex, &streamed)),
            Err(Error::TooLarge { max, .. }) if max == MAX_DECOMPRESSED_SIZE as u64
        ));
        // A small limit applies to real records too.
        let value = compress(&Record::Gex(gex()), DEFAULT_LEVEL).unwrap();
        assert!(matches!(
            decompress_with_limit(RecordKind::Gex, &value, 16),
            Err(Error::TooLarge { max: 16, .. })
        ));
    }

    #[test]
    fn errors_display_their_context() {
        let err = parse_record(RecordKind::Gex, b"{}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid proto.gex JSON record: missing field")
        );
        let err = Error::TooLarge { size: 20, max: 10 };
        assert_eq!(
            err.to_string(),
            "decompressed record of at least 20 bytes exceeds the limit of 10 bytes"
        );
    }
}
