//! JSON in: serde structs borrowed from the input line, scaled into prost messages.
//!
//! Scaling follows the source Go server exactly: `uint32(x * 100)`, `int32(x * 1000)`,
//! that is the product computed in f64 and truncated toward zero. Rust's `as` saturates
//! where Go's conversion is undefined: a negative value into a `uint32` field gives 0,
//! a value beyond the integer's range gives its MIN or MAX, NaN gives 0.
//!
//! The rows of `strikes`, `max_priors` and `mini_contracts` are scaled by their own
//! visitors while they are read, so no `serde_json::Value` and no intermediate float
//! vectors are built. Elements past the last one a row defines are ignored.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Expected, IgnoredAny, SeqAccess, Unexpected, Visitor};
use tickwire_proto::records;

/// `x * scale` in f64, truncated toward zero into a `uint32` (saturating).
#[inline]
pub(crate) fn to_u32(x: f64, scale: f64) -> u32 {
    (x * scale) as u32
}

/// `x * scale` in f64, truncated toward zero into a `sint32` (saturating).
#[inline]
pub(crate) fn to_i32(x: f64, scale: f64) -> i32 {
    (x * scale) as i32
}

/// x100: prices, strikes, GEX values.
const C: f64 = 100.0;
/// x1000: sums, risk reversal, implied volatility.
const M: f64 = 1000.0;
/// x1: unscaled, the fraction is dropped.
const U: f64 = 1.0;

/// An orderflow record (`orderflow/orderflow.jsonl`). Every field is required.
#[derive(Deserialize)]
pub(crate) struct OrderflowJson<'a> {
    #[serde(deserialize_with = "timestamp")]
    timestamp: i64,
    #[serde(borrow)]
    ticker: Cow<'a, str>,
    spot: f64,
    z_mlgamma: f64,
    z_msgamma: f64,
    o_mlgamma: f64,
    o_msgamma: f64,
    zero_mcall: f64,
    zero_mput: f64,
    one_mcall: f64,
    one_mput: f64,
    zcvr: f64,
    ocvr: f64,
    zgr: f64,
    ogr: f64,
    zvanna: f64,
    ovanna: f64,
    zcharm: f64,
    ocharm: f64,
    agg_dex: f64,
    one_agg_dex: f64,
    agg_call_dex: f64,
    one_agg_call_dex: f64,
    agg_put_dex: f64,
    one_agg_put_dex: f64,
    net_dex: f64,
    one_net_dex: f64,
    net_call_dex: f64,
    one_net_call_dex: f64,
    net_put_dex: f64,
    one_net_put_dex: f64,
    dexoflow: f64,
    gexoflow: f64,
    cvroflow: f64,
    one_dexoflow: f64,
    one_gexoflow: f64,
    one_cvroflow: f64,
}

impl From<OrderflowJson<'_>> for records::Orderflow {
    fn from(j: OrderflowJson<'_>) -> Self {
        records::Orderflow {
            timestamp: j.timestamp,
            ticker: j.ticker.into_owned(),
            spot: to_u32(j.spot, C),
            zero_major_long_gamma: to_u32(j.z_mlgamma, C),
            zero_major_short_gamma: to_u32(j.z_msgamma, C),
            one_major_long_gamma: to_u32(j.o_mlgamma, C),
            one_major_short_gamma: to_u32(j.o_msgamma, C),
            zero_major_call_gamma: to_u32(j.zero_mcall, C),
            zero_major_put_gamma: to_u32(j.zero_mput, C),
            one_major_call_gamma: to_u32(j.one_mcall, C),
            one_major_put_gamma: to_u32(j.one_mput, C),
            zero_convexity_ratio: to_i32(j.zcvr, U),
            one_convexity_ratio: to_i32(j.ocvr, U),
            zero_gex_ratio: to_i32(j.zgr, U),
            one_gex_ratio: to_i32(j.ogr, U),
            zero_net_vanna: to_i32(j.zvanna, U),
            one_net_vanna: to_i32(j.ovanna, U),
            zero_net_charm: to_i32(j.zcharm, U),
            one_net_charm: to_i32(j.ocharm, U),
            zero_agg_total_dex: to_i32(j.agg_dex, U),
            one_agg_total_dex: to_i32(j.one_agg_dex, U),
            zero_agg_call_dex: to_i32(j.agg_call_dex, U),
            one_agg_call_dex: to_i32(j.one_agg_call_dex, U),
            zero_agg_put_dex: to_i32(j.agg_put_dex, U),
            one_agg_put_dex: to_i32(j.one_agg_put_dex, U),
            zero_net_total_dex: to_i32(j.net_dex, U),
            one_net_total_dex: to_i32(j.one_net_dex, U),
            zero_net_call_dex: to_i32(j.net_call_dex, U),
            one_net_call_dex: to_i32(j.one_net_call_dex, U),
            zero_net_put_dex: to_i32(j.net_put_dex, U),
            one_net_put_dex: to_i32(j.one_net_put_dex, U),
            dex_orderflow: to_i32(j.dexoflow, U),
            gex_orderflow: to_i32(j.gexoflow, U),
            convexity_orderflow: to_i32(j.cvroflow, U),
            one_dex_orderflow: to_i32(j.one_dexoflow, U),
            one_gex_orderflow: to_i32(j.one_gexoflow, U),
            one_convexity_orderflow: to_i32(j.one_cvroflow, U),
        }
    }
}

/// A GEX chain (`classic/*.jsonl`, `state/gex_*.jsonl`). `min_dte`, `sec_min_dte` and
/// `max_priors` may be missing or null; every other field is required.
#[derive(Deserialize)]
pub(crate) struct GexJson<'a> {
    #[serde(deserialize_with = "timestamp")]
    timestamp: i64,
    #[serde(borrow)]
    ticker: Cow<'a, str>,
    min_dte: Option<f64>,
    sec_min_dte: Option<f64>,
    spot: f64,
    zero_gamma: f64,
    major_pos_vol: f64,
    major_pos_oi: f64,
    major_neg_vol: f64,
    major_neg_oi: f64,
    strikes: Vec<StrikeRow>,
    sum_gex_vol: f64,
    sum_gex_oi: f64,
    delta_risk_reversal: f64,
    max_priors: Option<Vec<MaxPriorsRow>>,
}

impl From<GexJson<'_>> for records::Gex {
    fn from(j: GexJson<'_>) -> Self {
        records::Gex {
            timestamp: j.timestamp,
            ticker: j.ticker.into_owned(),
            min_dte: j.min_dte.map(|x| to_i32(x, U)),
            sec_min_dte: j.sec_min_dte.map(|x| to_i32(x, U)),
            spot: to_u32(j.spot, C),
            zero_gamma: to_u32(j.zero_gamma, C),
            major_pos_vol: to_u32(j.major_pos_vol, C),
            major_pos_oi: to_u32(j.major_pos_oi, C),
            major_neg_vol: to_u32(j.major_neg_vol, C),
            major_neg_oi: to_u32(j.major_neg_oi, C),
            strikes: j.strikes.into_iter().map(|row| row.0).collect(),
            sum_gex_vol: to_i32(j.sum_gex_vol, M),
            sum_gex_oi: to_i32(j.sum_gex_oi, M),
            delta_risk_reversal: to_i32(j.delta_risk_reversal, M),
            // An empty list is sent as absent, as the source server does.
            max_priors: j.max_priors.filter(|rows| !rows.is_empty()).map(|rows| {
                records::MaxPriors {
                    tuples: rows.into_iter().map(|row| row.0).collect(),
                }
            }),
        }
    }
}

/// A greek profile (`state/{delta,gamma,vanna,charm}_{zero,one}.jsonl`). `min_dte` and
/// `sec_min_dte` may be missing or null; every other field is required.
#[derive(Deserialize)]
pub(crate) struct GreekJson<'a> {
    #[serde(deserialize_with = "timestamp")]
    timestamp: i64,
    #[serde(borrow)]
    ticker: Cow<'a, str>,
    spot: f64,
    min_dte: Option<f64>,
    sec_min_dte: Option<f64>,
    major_positive: f64,
    major_negative: f64,
    major_long_gamma: f64,
    major_short_gamma: f64,
    mini_contracts: Vec<MiniContractRow>,
}

impl From<GreekJson<'_>> for records::OptionProfile {
    fn from(j: GreekJson<'_>) -> Self {
        records::OptionProfile {
            timestamp: j.timestamp,
            ticker: j.ticker.into_owned(),
            spot: to_u32(j.spot, C),
            min_dte: j.min_dte.map(|x| to_i32(x, U)),
            sec_min_dte: j.sec_min_dte.map(|x| to_i32(x, U)),
            major_call_gamma: to_u32(j.major_positive, C),
            major_put_gamma: to_u32(j.major_negative, C),
            major_long_gamma: to_u32(j.major_long_gamma, C),
            major_short_gamma: to_u32(j.major_short_gamma, C),
            mini_contracts: j.mini_contracts.into_iter().map(|row| row.0).collect(),
        }
    }
}

/// A Unix timestamp: an integer, or a float truncated toward zero.
fn timestamp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a Unix timestamp")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            Ok(v as i64)
        }
    }
    deserializer.deserialize_i64(V)
}

/// The next element of a row, which must be there.
fn required<'de, T, A>(seq: &mut A, index: usize, row: &dyn Expected) -> Result<T, A::Error>
where
    T: Deserialize<'de>,
    A: SeqAccess<'de>,
{
    seq.next_element()?
        .ok_or_else(|| de::Error::invalid_length(index, row))
}

/// Skips the elements of a row past the ones it defines.
fn skip_rest<'de, A: SeqAccess<'de>>(seq: &mut A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// An array of numbers, each scaled by `SCALE` and truncated into a `sint32`.
struct Scaled<const SCALE: u32>(Vec<i32>);

impl<'de, const SCALE: u32> Deserialize<'de> for Scaled<SCALE> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<const SCALE: u32>;
        impl<'de, const SCALE: u32> Visitor<'de> for V<SCALE> {
            type Value = Scaled<SCALE>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(8).min(1024));
                while let Some(x) = seq.next_element::<f64>()? {
                    values.push(to_i32(x, f64::from(SCALE)));
                }
                Ok(Scaled(values))
            }
        }
        deserializer.deserialize_seq(V::<SCALE>)
    }
}

/// Declares a row type: a newtype over a prost message read from a JSON array by
/// the given `visit_seq` body.
macro_rules! row {
    ($(#[$doc:meta])* $name:ident($msg:ty), $expecting:literal, |$seq:ident, $row:ident| $body:block) => {
        $(#[$doc])*
        pub(crate) struct $name($msg);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut $seq: A) -> Result<$name, A::Error> {
                        let $row: &dyn Expected = &self;
                        let message = $body;
                        skip_rest(&mut $seq)?;
                        Ok($name(message))
                    }
                }
                deserializer.deserialize_seq(V)
            }
        }
    };
}

row!(
    /// One `strikes` row: `[strike, value_1, value_2, [priors...]]`; priors may be missing
    /// or null, and an empty list is sent as absent, as the source server does.
    StrikeRow(records::Strike),
    "a strike row [strike, value_1, value_2, [priors...]]",
    |seq, row| {
        let strike: f64 = required(&mut seq, 0, row)?;
        let value_1: f64 = required(&mut seq, 1, row)?;
        let value_2: f64 = required(&mut seq, 2, row)?;
        let priors = seq.next_element::<Option<Scaled<100>>>()?.flatten();
        records::Strike {
            strike_price: to_u32(strike, C),
            value_1: to_i32(value_1, C),
            value_2: to_i32(value_2, C),
            priors: priors
                .filter(|p| !p.0.is_empty())
                .map(|p| records::Priors { values: p.0 }),
        }
    }
);

row!(
    /// One `max_priors` row: `[first, second]`, first x100, second x1000.
    MaxPriorsRow(records::MaxPriorsTuple),
    "a max_priors row [first, second]",
    |seq, row| {
        let first: f64 = required(&mut seq, 0, row)?;
        let second: f64 = required(&mut seq, 1, row)?;
        records::MaxPriorsTuple {
            first_value: to_i32(first, C),
            second_value: to_i32(second, M),
        }
    }
);

row!(
    /// One `mini_contracts` row: `[strike, call_ivol, put_ivol, call_cvolume,
    /// [call_priors], put_cvolume|null, [put_priors]|null]`, at least 5 elements.
    /// Null call priors are empty; null, missing or empty put priors are absent.
    MiniContractRow(records::MiniContract),
    "a mini_contracts row [strike, call_ivol, put_ivol, call_cvolume, [call_priors], \
     put_cvolume, [put_priors]] of at least 5 elements",
    |seq, row| {
        let strike: f64 = required(&mut seq, 0, row)?;
        let call_ivol: f64 = required(&mut seq, 1, row)?;
        let put_ivol: f64 = required(&mut seq, 2, row)?;
        let call_cvolume: f64 = required(&mut seq, 3, row)?;
        let call_priors: Option<Scaled<100>> = required(&mut seq, 4, row)?;
        let put_cvolume = seq.next_element::<Option<f64>>()?.flatten();
        let put_priors = seq.next_element::<Option<Scaled<1>>>()?.flatten();
        records::MiniContract {
            strike: to_u32(strike, C),
            call_ivol: to_u32(call_ivol, M),
            put_ivol: to_u32(put_ivol, M),
            call_cvolume: to_i32(call_cvolume, C),
            call_cvolume_priors: call_priors.map(|p| p.0).unwrap_or_default(),
            put_cvolume: put_cvolume.map(|x| to_i32(x, U)),
            put_cvolume_priors: put_priors
                .filter(|p| !p.0.is_empty())
                .map(|p| records::MiniContractPriors { values: p.0 }),
        }
    }
);
