//! Bar resolutions and their UTC bucket boundaries.

use std::fmt;
use std::str::FromStr;

use crate::Error;
use crate::calendar::{
    DAY_MS, day_of, day_start, minute_bucket, monday_of, month_start_day, next_month_start_day,
};

/// The width of a bar, spelled as charting clients spell it: `"1"`, `"5"`, `"15"`, `"30"`,
/// `"60"` (minutes), `"D"` (day), `"W"` (week), `"M"` (month).
///
/// Buckets are UTC and half-open, `[start, end)`:
///
/// - minute resolutions are aligned to the UNIX epoch, so 5-minute buckets start at
///   `:00`, `:05`, `:10`, ... and 60-minute buckets on the hour;
/// - `D` starts at 00:00 UTC;
/// - `W` starts on Monday 00:00 UTC and ends on the next Monday (ISO 8601 weeks);
/// - `M` starts on the 1st of the month, 00:00 UTC, whatever the month's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// One minute, `"1"`.
    Min1,
    /// Five minutes, `"5"`.
    Min5,
    /// Fifteen minutes, `"15"`.
    Min15,
    /// Thirty minutes, `"30"`.
    Min30,
    /// Sixty minutes, `"60"`.
    Min60,
    /// One UTC day, `"D"`.
    Day,
    /// One week from Monday 00:00 UTC, `"W"`.
    Week,
    /// One calendar month from the 1st, 00:00 UTC, `"M"`.
    Month,
}

impl Resolution {
    /// Every resolution, finest first.
    pub const ALL: [Resolution; 8] = [
        Resolution::Min1,
        Resolution::Min5,
        Resolution::Min15,
        Resolution::Min30,
        Resolution::Min60,
        Resolution::Day,
        Resolution::Week,
        Resolution::Month,
    ];

    /// The resolution clients get when they name none: one minute.
    pub const DEFAULT: Resolution = Resolution::Min1;

    /// The client spelling: `"1"`, `"5"`, `"15"`, `"30"`, `"60"`, `"D"`, `"W"` or `"M"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Resolution::Min1 => "1",
            Resolution::Min5 => "5",
            Resolution::Min15 => "15",
            Resolution::Min30 => "30",
            Resolution::Min60 => "60",
            Resolution::Day => "D",
            Resolution::Week => "W",
            Resolution::Month => "M",
        }
    }

    /// The resolution spelled `s`, exactly (case-sensitive: `"d"` is not a resolution).
    pub fn parse(s: &str) -> Option<Resolution> {
        Resolution::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The width in minutes of a minute resolution; `None` for `D`, `W` and `M`.
    pub const fn minutes(self) -> Option<i64> {
        match self {
            Resolution::Min1 => Some(1),
            Resolution::Min5 => Some(5),
            Resolution::Min15 => Some(15),
            Resolution::Min30 => Some(30),
            Resolution::Min60 => Some(60),
            Resolution::Day | Resolution::Week | Resolution::Month => None,
        }
    }

    /// The start (inclusive, ms since the epoch) of the bucket holding `ts_ms`.
    ///
    /// ```
    /// use tickwire_bars::Resolution;
    ///
    /// // 2023-10-12 10:07:42 UTC, a Thursday.
    /// let ts = 1_697_105_262_000;
    /// assert_eq!(Resolution::Min5.bucket_start(ts), 1_697_105_100_000); // 10:05:00
    /// assert_eq!(Resolution::Day.bucket_start(ts), 1_697_068_800_000); // 10-12 00:00
    /// assert_eq!(Resolution::Week.bucket_start(ts), 1_696_809_600_000); // Mon 10-09
    /// assert_eq!(Resolution::Month.bucket_start(ts), 1_696_118_400_000); // 10-01
    /// ```
    pub const fn bucket_start(self, ts_ms: i64) -> i64 {
        match self.minutes() {
            Some(minutes) => minute_bucket(ts_ms, minutes),
            None => match self {
                Resolution::Week => day_start(monday_of(day_of(ts_ms))),
                Resolution::Month => day_start(month_start_day(day_of(ts_ms))),
                _ => day_start(day_of(ts_ms)),
            },
        }
    }

    /// The end (exclusive) of the bucket holding `ts_ms`: the start of the next one.
    pub const fn bucket_end(self, ts_ms: i64) -> i64 {
        let start = self.bucket_start(ts_ms);
        match self {
            Resolution::Day => start.saturating_add(DAY_MS),
            Resolution::Week => start.saturating_add(7 * DAY_MS),
            Resolution::Month => day_start(next_month_start_day(day_of(ts_ms))),
            _ => match self.minutes() {
                Some(minutes) => start.saturating_add(minutes * 60_000),
                None => start,
            },
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Resolution {
    type Err = Error;

    fn from_str(s: &str) -> Result<Resolution, Error> {
        Resolution::parse(s).ok_or_else(|| Error::UnknownResolution {
            resolution: s.chars().take(16).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for r in Resolution::ALL {
            assert_eq!(Resolution::parse(r.as_str()), Some(r));
            assert_eq!(r.to_string().parse::<Resolution>(), Ok(r));
        }
        for bad in ["", "d", "2", "1D", "60 ", "1m", "H"] {
            assert_eq!(Resolution::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            "d".parse::<Resolution>(),
            Err(Error::UnknownResolution {
                resolution: "d".into()
            })
        );
        assert_eq!(Resolution::DEFAULT.as_str(), "1");
    }

    #[test]
    fn every_bucket_is_half_open_and_contiguous() {
        // Around the epoch, a leap day and a year end, every resolution.
        for ts in [
            -1,
            0,
            1,
            951_782_400_000 - 1, // 2000-02-28 23:59:59.999
            951_868_800_000,     // 2000-03-01
            1_704_067_199_999,   // 2023-12-31 23:59:59.999
            1_704_067_200_000,   // 2024-01-01, a Monday
        ] {
            for r in Resolution::ALL {
                let start = r.bucket_start(ts);
                let end = r.bucket_end(ts);
                assert!(start <= ts && ts < end, "{r} {ts}: [{start}, {end})");
                assert_eq!(
                    r.bucket_start(end),
                    end,
                    "{r}: the next bucket starts at end"
                );
                assert_eq!(
                    r.bucket_start(end - 1),
                    start,
                    "{r}: end - 1 is in the bucket"
                );
                assert_eq!(r.bucket_start(start), start);
            }
        }
    }
}
