//! Limits a run must stay within, for CI: each one missed is named, and
//! the process exits with [`MISSED_EXIT`].

use serde::{Deserialize, Serialize};

use crate::Report;

/// The exit status of a run that missed a threshold (1 is a run that could
/// not happen).
pub const MISSED_EXIT: u8 = 3;

/// The limits of `--max-*` and `--min-*`; `None`: not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    /// Largest p50 latency, milliseconds.
    pub max_p50_ms: Option<f64>,
    /// Largest p99 latency, milliseconds.
    pub max_p99_ms: Option<f64>,
    /// Largest p99.9 latency, milliseconds.
    pub max_p999_ms: Option<f64>,
    /// Most updates lost (expected, never delivered).
    pub max_drops: Option<u64>,
    /// Most connections the server closed during the run.
    pub max_disconnects: Option<u64>,
    /// Most errors (connections or publish requests that failed).
    pub max_errors: Option<u64>,
    /// Fewest deliveries per second.
    pub min_delivered_per_sec: Option<f64>,
}

/// One limit, checked against the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checked {
    /// The option (`max_p99_ms`).
    pub name: String,
    /// Its limit.
    pub limit: f64,
    /// What the run measured.
    pub value: f64,
    /// Whether the run stayed within it.
    pub ok: bool,
}

impl Thresholds {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        *self != Thresholds::default()
    }

    /// Every limit set, checked against `report`, in the order of the
    /// options.
    pub fn check(&self, report: &Report) -> Vec<Checked> {
        let ms = |us: u64| us as f64 / 1000.0;
        let l = &report.latency_us;
        let at_most = [
            ("max_p50_ms", self.max_p50_ms, ms(l.p50)),
            ("max_p99_ms", self.max_p99_ms, ms(l.p99)),
            ("max_p999_ms", self.max_p999_ms, ms(l.p999)),
            (
                "max_drops",
                self.max_drops.map(|n| n as f64),
                report.drops as f64,
            ),
            (
                "max_disconnects",
                self.max_disconnects.map(|n| n as f64),
                report.disconnects as f64,
            ),
            (
                "max_errors",
                self.max_errors.map(|n| n as f64),
                report.errors as f64,
            ),
        ];
        let mut checked: Vec<Checked> = at_most
            .into_iter()
            .filter_map(|(name, limit, value)| {
                limit.map(|limit| Checked {
                    name: name.to_owned(),
                    limit,
                    value,
                    ok: value <= limit,
                })
            })
            .collect();
        if let Some(limit) = self.min_delivered_per_sec {
            checked.push(Checked {
                name: "min_delivered_per_sec".to_owned(),
                limit,
                value: report.delivered_per_sec,
                ok: report.delivered_per_sec >= limit,
            });
        }
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample as sample_report;

    #[test]
    fn each_limit_is_checked_and_named() {
        let mut report = sample_report();
        report.latency_us.p50 = 2_000;
        report.latency_us.p99 = 12_500;
        report.latency_us.p999 = 30_000;
        report.drops = 3;
        report.disconnects = 0;
        report.errors = 0;
        report.delivered_per_sec = 99_000.0;
        let limits = Thresholds {
            max_p50_ms: Some(5.0),
            max_p99_ms: Some(10.0),
            max_p999_ms: None,
            max_drops: Some(0),
            max_disconnects: Some(0),
            max_errors: None,
            min_delivered_per_sec: Some(100_000.0),
        };
        let checked = limits.check(&report);
        let missed: Vec<&str> = checked
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(missed, ["max_p99_ms", "max_drops", "min_delivered_per_sec"]);
        assert_eq!(checked.len(), 5, "only the limits set");
        assert_eq!(checked[1].value, 12.5);
        assert!(limits.any());
        assert!(!Thresholds::default().any());
        assert!(Thresholds::default().check(&report).is_empty());
    }
}
