//! RFC 3339 timestamps with milliseconds in UTC, as `/stream` sends them
//! (`2025-10-10T14:30:00.000Z`, the form of JavaScript's `Date.prototype.toISOString`).
//!
//! The formatter is written here rather than taken from a date crate: the one format needed
//! is fixed-width, the conversion is a dozen integer operations (Howard Hinnant's
//! `civil_from_days`, <https://howardhinnant.github.io/date_algorithms.html>), and it runs
//! on the fan-out path, where it must not allocate. A date crate would add a dependency
//! and a fallible formatting API for no gain.

use std::fmt;

use tickwire_model::civil_from_days;

/// The earliest instant with a four-digit year: `0000-01-01T00:00:00.000Z`.
pub const MIN_UNIX_MS: i64 = -62_167_219_200_000;

/// The latest instant with a four-digit year: `9999-12-31T23:59:59.999Z`.
pub const MAX_UNIX_MS: i64 = 253_402_300_799_999;

const MS_PER_DAY: i64 = 86_400_000;

/// A formatted timestamp: always 24 ASCII bytes, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
///
/// `Copy` and allocation-free; see [`rfc3339_millis`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rfc3339Millis([u8; 24]);

impl Rfc3339Millis {
    /// The timestamp as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Rfc3339Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Rfc3339Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Formats milliseconds since the UNIX epoch as an RFC 3339 UTC timestamp with exactly
/// three fractional digits (RFC 3339 §5.6, `time-secfrac`; ISO 8601 extended format).
///
/// RFC 3339 years have four digits, so instants outside [`MIN_UNIX_MS`]..=[`MAX_UNIX_MS`]
/// are clamped to those bounds rather than written in a form clients cannot parse.
///
/// ```
/// use tickwire_json::timestamp::rfc3339_millis;
///
/// assert_eq!(rfc3339_millis(1_760_106_600_000).as_str(), "2025-10-10T14:30:00.000Z");
/// assert_eq!(rfc3339_millis(-1).as_str(), "1969-12-31T23:59:59.999Z");
/// ```
pub fn rfc3339_millis(unix_ms: i64) -> Rfc3339Millis {
    let ms = unix_ms.clamp(MIN_UNIX_MS, MAX_UNIX_MS);
    let days = ms.div_euclid(MS_PER_DAY);
    let ms_of_day = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);

    let mut out = *b"0000-00-00T00:00:00.000Z";
    // The clamp keeps the year in 0..=9999 and every other field in range.
    put_digits(&mut out[0..4], year as u64);
    put_digits(&mut out[5..7], u64::from(month));
    put_digits(&mut out[8..10], u64::from(day));
    put_digits(&mut out[11..13], (ms_of_day / 3_600_000) as u64);
    put_digits(&mut out[14..16], (ms_of_day / 60_000 % 60) as u64);
    put_digits(&mut out[17..19], (ms_of_day / 1_000 % 60) as u64);
    put_digits(&mut out[20..23], (ms_of_day % 1_000) as u64);
    Rfc3339Millis(out)
}

/// Milliseconds since the UNIX epoch of a time (the model's, re-exported).
pub use tickwire_model::unix_millis;

/// Writes `value` as `out.len()` decimal digits, zero-padded.
fn put_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn iso(ms: i64) -> String {
        rfc3339_millis(ms).to_string()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(iso(1_760_106_600_000), "2025-10-10T14:30:00.000Z");
        assert_eq!(iso(1_760_106_605_000), "2025-10-10T14:30:05.000Z");
        assert_eq!(iso(1_760_106_600_123), "2025-10-10T14:30:00.123Z");
        assert_eq!(iso(946_684_799_999), "1999-12-31T23:59:59.999Z");
        assert_eq!(iso(946_684_800_000), "2000-01-01T00:00:00.000Z");
    }

    #[test]
    fn leap_years_follow_the_gregorian_rules() {
        // 2024 is a leap year (divisible by 4).
        assert_eq!(iso(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
        assert_eq!(iso(1_709_251_200_000), "2024-03-01T00:00:00.000Z");
        // 2000 is a leap year (divisible by 400).
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
        // 2100 is not (divisible by 100, not by 400): Feb 28 is followed by Mar 1.
        assert_eq!(iso(4_107_456_000_000), "2100-02-28T00:00:00.000Z");
        assert_eq!(iso(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        // 2023 is not: Dec 31 is day 365.
        assert_eq!(iso(1_703_980_800_000), "2023-12-31T00:00:00.000Z");
    }

    #[test]
    fn instants_before_the_epoch_round_toward_the_past() {
        assert_eq!(iso(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso(-86_400_000), "1969-12-31T00:00:00.000Z");
        assert_eq!(iso(-2_208_988_800_000), "1900-01-01T00:00:00.000Z");
    }

    #[test]
    fn out_of_range_instants_clamp_to_four_digit_years() {
        assert_eq!(iso(MIN_UNIX_MS), "0000-01-01T00:00:00.000Z");
        assert_eq!(iso(MAX_UNIX_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso(i64::MIN), "0000-01-01T00:00:00.000Z");
        assert_eq!(iso(i64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn system_times_round_down_to_the_millisecond() {
        let at = |d: Duration| unix_millis(UNIX_EPOCH + d);
        assert_eq!(at(Duration::ZERO), 0);
        assert_eq!(at(Duration::from_nanos(999_999)), 0);
        assert_eq!(at(Duration::from_nanos(1_000_000)), 1);
        assert_eq!(
            at(Duration::from_nanos(1_760_106_600_999_999_999)),
            1_760_106_600_999
        );
        let before = |d: Duration| unix_millis(UNIX_EPOCH - d);
        assert_eq!(before(Duration::from_nanos(1)), -1);
        assert_eq!(before(Duration::from_millis(1)), -1);
        assert_eq!(before(Duration::from_nanos(1_000_001)), -2);
        assert_eq!(
            iso(before(Duration::from_nanos(1))),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn display_and_debug_show_the_text() {
        let t = rfc3339_millis(0);
        assert_eq!(format!("{t}"), "1970-01-01T00:00:00.000Z");
        assert_eq!(format!("{t:?}"), "\"1970-01-01T00:00:00.000Z\"");
    }
}
