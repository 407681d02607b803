//! Proleptic Gregorian calendar arithmetic in UTC on milliseconds since the UNIX epoch.
//!
//! `days_from_civil` and `civil_from_days` (in `tickwire-model`) are Howard Hinnant's public-domain algorithms
//! ("chrono-Compatible Low-Level Date Algorithms"): exact for every date, leap years
//! included, with no tables and no time-zone database. All arithmetic saturates, so
//! timestamps near the ends of `i64` give clamped (meaningless but harmless) buckets
//! instead of an overflow.

pub(crate) use tickwire_model::{civil_from_days, days_from_civil};

/// Milliseconds in a minute.
pub(crate) const MINUTE_MS: i64 = 60_000;
/// Milliseconds in a day (UTC has no leap seconds in UNIX time).
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The day number (days since 1970-01-01) of the UTC day holding `ts_ms`.
pub(crate) const fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS)
}

/// The first millisecond of day `day`.
pub(crate) const fn day_start(day: i64) -> i64 {
    day.saturating_mul(DAY_MS)
}

/// The start of the `minutes`-minute bucket holding `ts_ms`, buckets aligned to the epoch.
pub(crate) const fn minute_bucket(ts_ms: i64, minutes: i64) -> i64 {
    let width = minutes * MINUTE_MS;
    ts_ms.div_euclid(width).saturating_mul(width)
}

/// The day number of the Monday starting the ISO week (Monday to Sunday) of day `day`.
///
/// 1970-01-01 was a Thursday, so day `d` is `(d + 3) mod 7` days after a Monday.
pub(crate) const fn monday_of(day: i64) -> i64 {
    day.saturating_sub((day.saturating_add(3)).rem_euclid(7))
}

/// The day number of the first day of the month holding day `day`.
pub(crate) const fn month_start_day(day: i64) -> i64 {
    let (y, m, _) = civil_from_days(day);
    days_from_civil(y, m, 1)
}

/// The day number of the first day of the month after the one holding day `day`.
pub(crate) const fn next_month_start_day(day: i64) -> i64 {
    let (y, m, _) = civil_from_days(day);
    if m == 12 {
        days_from_civil(y.saturating_add(1), 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000-02-29 exists (divisible by 400), 1900-02-29 does not.
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(
            civil_from_days(days_from_civil(1900, 2, 28) + 1),
            (1900, 3, 1)
        );
        // 2023-10-12 (the day of the seed's example bar, 1697097600000 ms).
        assert_eq!(day_of(1_697_097_600_000), days_from_civil(2023, 10, 12));
    }

    #[test]
    fn round_trips_over_five_centuries() {
        let start = days_from_civil(1800, 1, 1);
        let end = days_from_civil(2300, 1, 1);
        let mut expected = (1800, 1, 1);
        for day in start..end {
            let civil = civil_from_days(day);
            assert_eq!(civil, expected, "day {day}");
            assert_eq!(days_from_civil(civil.0, civil.1, civil.2), day);
            // The next expected date, by the Gregorian month lengths.
            let (y, m, d) = civil;
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            expected = if d < len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn mondays() {
        // 1970-01-05 was a Monday; the Thursday epoch belongs to the week of 1969-12-29.
        assert_eq!(monday_of(0), -3);
        assert_eq!(monday_of(4), 4);
        assert_eq!(monday_of(10), 4);
        assert_eq!(monday_of(11), 11);
    }

    #[test]
    fn extremes_do_not_overflow() {
        for ts in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            let day = day_of(ts);
            let _ = day_start(monday_of(day));
            let _ = day_start(month_start_day(day));
            let _ = day_start(next_month_start_day(day));
            let _ = minute_bucket(ts, 60);
        }
    }
}
