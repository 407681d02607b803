//! Every line of the bundled demo dataset (`data/demo`) parses as the record kind of its
//! file's hub, encodes, and decodes back to the same record.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use tickwire_model::Hub;
use tickwire_pipeline::{
    DEFAULT_LEVEL, Record, compress, decode_any, encode_any, encode_json, parse_record, to_json,
};

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/demo")
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths
}

fn name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap()
}

fn keys(value: &serde_json::Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn every_demo_record_round_trips() {
    let mut files = 0;
    let mut records = 0;
    let days: Vec<PathBuf> = entries(&demo_dir())
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    assert!(!days.is_empty(), "no dated folder under data/demo");
    for day in days {
        for ticker_dir in entries(&day) {
            let ticker = name(&ticker_dir).to_owned();
            let mut seen = BTreeSet::new();
            for folder_dir in entries(&ticker_dir) {
                let folder = name(&folder_dir).to_owned();
                for file in entries(&folder_dir) {
                    let category = name(&file).strip_suffix(".jsonl").unwrap().to_owned();
                    let hub = Hub::for_file(&folder, &category)
                        .unwrap_or_else(|| panic!("{} belongs to no hub", file.display()));
                    seen.insert((hub, category.clone()));
                    let kind = hub.record_kind();
                    let text = fs::read_to_string(&file).unwrap();
                    let mut previous_timestamp = None;
                    for (n, line) in text.lines().enumerate() {
                        let at = format!("{}:{}", file.display(), n + 1);
                        let record = parse_record(kind, line.as_bytes())
                            .unwrap_or_else(|e| panic!("{at}: {e}"));
                        assert_eq!(record.kind(), kind, "{at}");
                        assert_eq!(record.ticker(), ticker, "{at}");
                        // One record a second.
                        if let Some(previous) = previous_timestamp {
                            assert_eq!(record.timestamp(), previous + 1, "{at}");
                        }
                        previous_timestamp = Some(record.timestamp());

                        let value = encode_json(kind, line.as_bytes(), DEFAULT_LEVEL).unwrap();
                        assert_eq!(value, compress(&record, DEFAULT_LEVEL).unwrap(), "{at}");
                        let any = encode_any(kind, &value);
                        assert_eq!(decode_any(&any).unwrap(), record, "{at}");

                        // Every field of the schema is in the source, and nothing else.
                        let source: serde_json::Value = serde_json::from_str(line).unwrap();
                        assert_eq!(keys(&source), keys(&to_json(&record)), "{at}");
                        check_shape(&record, &at);
                        records += 1;
                    }
                    assert!(previous_timestamp.is_some(), "{} is empty", file.display());
                    files += 1;
                }
            }
            // Every category of every hub is there for the ticker.
            for hub in Hub::ALL {
                for &category in hub.categories() {
                    assert!(
                        seen.contains(&(hub, category.to_owned())),
                        "{ticker}: no {}/{category}.jsonl",
                        hub.group_kind()
                    );
                }
            }
        }
    }
    assert_eq!(files, 45, "3 tickers x 15 files");
    assert!(records >= 45 * 100, "{records} records");
}

/// What the demo data promises beyond parsing: strikes on the grid around spot, majors
/// among them, implied volatilities in a plausible range.
fn check_shape(record: &Record, at: &str) {
    match record {
        Record::Gex(g) => {
            assert!(g.strikes.len() >= 10, "{at}");
            assert!(g.min_dte.is_some() && g.sec_min_dte.is_some(), "{at}");
            assert_eq!(
                g.max_priors.as_ref().map(|m| m.tuples.len()),
                Some(6),
                "{at}"
            );
            let strikes: Vec<u32> = g.strikes.iter().map(|s| s.strike_price).collect();
            assert!(strikes.windows(2).all(|w| w[0] < w[1]), "{at}");
            assert!(
                strikes[0] < g.spot && g.spot < strikes[strikes.len() - 1],
                "{at}"
            );
            for major in [
                g.major_pos_vol,
                g.major_pos_oi,
                g.major_neg_vol,
                g.major_neg_oi,
            ] {
                assert!(strikes.contains(&major), "{at}: major {major}");
            }
            assert!(g.zero_gamma.abs_diff(g.spot) < g.spot / 100, "{at}");
        }
        Record::Greek(p) => {
            assert!(p.mini_contracts.len() >= 10, "{at}");
            let strikes: Vec<u32> = p.mini_contracts.iter().map(|c| c.strike).collect();
            for major in [p.major_call_gamma, p.major_put_gamma] {
                assert!(strikes.contains(&major), "{at}: major {major}");
            }
            for c in &p.mini_contracts {
                assert!(
                    (100..=400).contains(&c.call_ivol),
                    "{at}: ivol {}",
                    c.call_ivol
                );
                assert!(
                    (100..=400).contains(&c.put_ivol),
                    "{at}: ivol {}",
                    c.put_ivol
                );
            }
        }
        Record::Orderflow(o) => {
            assert_eq!(
                o.zero_agg_total_dex,
                o.zero_agg_call_dex + o.zero_agg_put_dex,
                "{at}"
            );
            assert_eq!(
                o.one_net_total_dex,
                o.one_net_call_dex + o.one_net_put_dex,
                "{at}"
            );
            assert!(o.zero_major_put_gamma < o.spot && o.spot < o.zero_major_call_gamma);
        }
    }
}
