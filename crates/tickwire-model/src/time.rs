//! Wall-clock time as the updates carry it: milliseconds since the UNIX epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the UNIX epoch of `time`, rounded toward the past
/// (before the epoch too); saturating at the ends of `i64`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use tickwire_model::unix_millis;
///
/// assert_eq!(unix_millis(UNIX_EPOCH + Duration::from_micros(1_999)), 1);
/// assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_micros(1)), -1);
/// ```
pub fn unix_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            // Round toward the past: 1 µs before the epoch is in millisecond -1.
            let whole = before.as_millis() + u128::from(before.subsec_nanos() % 1_000_000 != 0);
            i64::try_from(whole).map_or(i64::MIN, |ms| -ms)
        }
    }
}

/// Milliseconds since the UNIX epoch, now.
pub fn now_millis() -> i64 {
    unix_millis(SystemTime::now())
}

/// The proleptic Gregorian (year, month 1..=12, day 1..=31) of day number
/// `day` (days since 1970-01-01), saturating at the ends of `i64`.
///
/// Howard Hinnant's public-domain `civil_from_days`: shift the epoch to
/// 0000-03-01 so that leap days end each 400-year era, then split into eras,
/// years of era and days of year.
pub const fn civil_from_days(day: i64) -> (i64, u32, u32) {
    let z = day.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe.saturating_add(era.saturating_mul(400));
    (if m <= 2 { y.saturating_add(1) } else { y }, m, d)
}

/// The day number (days since 1970-01-01) of (year, month 1..=12, day
/// 1..=31); Hinnant's `days_from_civil`, the inverse of [`civil_from_days`].
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 {
        year.saturating_sub(1)
    } else {
        year
    };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = month as i64;
    let mp = if m > 2 { m - 3 } else { m + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + day as i64 - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era.saturating_mul(146_097)
        .saturating_add(doe)
        .saturating_sub(719_468)
}
