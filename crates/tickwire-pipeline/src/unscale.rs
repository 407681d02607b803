//! JSON out: a record unscaled back to the JSON shape of its source.

use serde_json::{Map, Value, json};
use tickwire_proto::records;

/// x100 back to a float.
fn c(x: impl Into<f64>) -> Value {
    json!(x.into() / 100.0)
}

/// x1000 back to a float.
fn m(x: impl Into<f64>) -> Value {
    json!(x.into() / 1000.0)
}

/// Inserts `key` only when the optional field is present, as the source omits it.
fn insert_opt(map: &mut Map<String, Value>, key: &str, value: Option<i32>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), json!(v));
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub(crate) fn orderflow(r: &records::Orderflow) -> Value {
    json!({
        "timestamp": r.timestamp,
        "ticker": r.ticker,
        "spot": c(r.spot),
        "z_mlgamma": c(r.zero_major_long_gamma),
        "z_msgamma": c(r.zero_major_short_gamma),
        "o_mlgamma": c(r.one_major_long_gamma),
        "o_msgamma": c(r.one_major_short_gamma),
        "zero_mcall": c(r.zero_major_call_gamma),
        "zero_mput": c(r.zero_major_put_gamma),
        "one_mcall": c(r.one_major_call_gamma),
        "one_mput": c(r.one_major_put_gamma),
        "zcvr": r.zero_convexity_ratio,
        "ocvr": r.one_convexity_ratio,
        "zgr": r.zero_gex_ratio,
        "ogr": r.one_gex_ratio,
        "zvanna": r.zero_net_vanna,
        "ovanna": r.one_net_vanna,
        "zcharm": r.zero_net_charm,
        "ocharm": r.one_net_charm,
        "agg_dex": r.zero_agg_total_dex,
        "one_agg_dex": r.one_agg_total_dex,
        "agg_call_dex": r.zero_agg_call_dex,
        "one_agg_call_dex": r.one_agg_call_dex,
        "agg_put_dex": r.zero_agg_put_dex,
        "one_agg_put_dex": r.one_agg_put_dex,
        "net_dex": r.zero_net_total_dex,
        "one_net_dex": r.one_net_total_dex,
        "net_call_dex": r.zero_net_call_dex,
        "one_net_call_dex": r.one_net_call_dex,
        "net_put_dex": r.zero_net_put_dex,
        "one_net_put_dex": r.one_net_put_dex,
        "dexoflow": r.dex_orderflow,
        "gexoflow": r.gex_orderflow,
        "cvroflow": r.convexity_orderflow,
        "one_dexoflow": r.one_dex_orderflow,
        "one_gexoflow": r.one_gex_orderflow,
        "one_cvroflow": r.one_convexity_orderflow,
    })
}

pub(crate) fn gex(r: &records::Gex) -> Value {
    let strikes: Vec<Value> = r
        .strikes
        .iter()
        .map(|s| {
            let mut row = vec![c(s.strike_price), c(s.value_1), c(s.value_2)];
            if let Some(priors) = &s.priors {
                row.push(priors.values.iter().map(|&v| c(v)).collect());
            }
            Value::Array(row)
        })
        .collect();
    let mut map = object(json!({
        "timestamp": r.timestamp,
        "ticker": r.ticker,
        "spot": c(r.spot),
        "zero_gamma": c(r.zero_gamma),
        "major_pos_vol": c(r.major_pos_vol),
        "major_pos_oi": c(r.major_pos_oi),
        "major_neg_vol": c(r.major_neg_vol),
        "major_neg_oi": c(r.major_neg_oi),
        "strikes": strikes,
        "sum_gex_vol": m(r.sum_gex_vol),
        "sum_gex_oi": m(r.sum_gex_oi),
        "delta_risk_reversal": m(r.delta_risk_reversal),
    }));
    insert_opt(&mut map, "min_dte", r.min_dte);
    insert_opt(&mut map, "sec_min_dte", r.sec_min_dte);
    if let Some(max_priors) = &r.max_priors {
        let rows: Vec<Value> = max_priors
            .tuples
            .iter()
            .map(|t| json!([c(t.first_value), m(t.second_value)]))
            .collect();
        map.insert("max_priors".to_owned(), Value::Array(rows));
    }
    Value::Object(map)
}

pub(crate) fn greek(r: &records::OptionProfile) -> Value {
    let contracts: Vec<Value> = r
        .mini_contracts
        .iter()
        .map(|mc| {
            json!([
                c(mc.strike),
                m(mc.call_ivol),
                m(mc.put_ivol),
                c(mc.call_cvolume),
                mc.call_cvolume_priors
                    .iter()
                    .map(|&v| c(v))
                    .collect::<Vec<_>>(),
                mc.put_cvolume,
                mc.put_cvolume_priors.as_ref().map(|p| &p.values),
            ])
        })
        .collect();
    let mut map = object(json!({
        "timestamp": r.timestamp,
        "ticker": r.ticker,
        "spot": c(r.spot),
        "major_positive": c(r.major_call_gamma),
        "major_negative": c(r.major_put_gamma),
        "major_long_gamma": c(r.major_long_gamma),
        "major_short_gamma": c(r.major_short_gamma),
        "mini_contracts": contracts,
    }));
    insert_opt(&mut map, "min_dte", r.min_dte);
    insert_opt(&mut map, "sec_min_dte", r.sec_min_dte);
    Value::Object(map)
}
