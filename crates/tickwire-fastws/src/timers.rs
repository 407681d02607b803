//! The heartbeat and lifespan limits of a connection, sans-IO.
//!
//! FastWS wraps a connection's receive loop in two `asyncio.timeout`s: the heartbeat,
//! rescheduled to `now + heartbeat_interval` whenever a message is received (server sends
//! do not count), and the maximum lifespan, never rescheduled. Either expiring closes the
//! connection with 1003 and the same reason, naming both settings.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::{CLOSE_UNSUPPORTED_DATA, Close};

/// A connection's heartbeat and lifespan deadlines.
///
/// The I/O loop sleeps until [`Timers::deadline`] alongside its reads, calls
/// [`Timers::on_receive`] for every data frame the client sends, and when the sleep ends
/// asks [`Timers::expired`] whether to close. Control frames (ping, pong) do not count as
/// messages: in FastWS the ASGI server answers pings itself and the application never
/// sees them.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tickwire_fastws::Timers;
///
/// let start = Instant::now();
/// let mut timers = Timers::new(Some(Duration::from_secs(30)), Some(Duration::from_secs(3600)), start);
/// assert_eq!(timers.deadline(), Some(start + Duration::from_secs(30)));
/// timers.on_receive(start + Duration::from_secs(20));
/// assert_eq!(timers.expired(start + Duration::from_secs(49)), None);
/// let close = timers.expired(start + Duration::from_secs(50)).unwrap();
/// assert_eq!(close.code, 1003);
/// assert_eq!(
///     close.reason,
///     "Connection timed out. Heartbeat interval 30.0. Max connection lifespan 3600.0"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Timers {
    heartbeat: Option<Duration>,
    lifespan: Option<Duration>,
    heartbeat_deadline: Option<Instant>,
    lifespan_deadline: Option<Instant>,
}

impl Timers {
    /// Timers of a connection accepted at `now`. `None` disables a limit, as FastWS's
    /// `None` does. A zero duration expires at once (and is named `unset` in the reason,
    /// as in FastWS, where `0.0 or 'unset'` is `'unset'`); configurations should refuse it.
    pub fn new(heartbeat: Option<Duration>, lifespan: Option<Duration>, now: Instant) -> Timers {
        Timers {
            heartbeat,
            lifespan,
            heartbeat_deadline: heartbeat.and_then(|d| now.checked_add(d)),
            lifespan_deadline: lifespan.and_then(|d| now.checked_add(d)),
        }
    }

    /// A message arrived at `now`: the heartbeat deadline moves to `now + heartbeat`.
    pub fn on_receive(&mut self, now: Instant) {
        self.heartbeat_deadline = self.heartbeat.and_then(|d| now.checked_add(d));
    }

    /// The earliest deadline, `None` when no limit is set: sleep until then.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.heartbeat_deadline, self.lifespan_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The close frame to send if a deadline has passed at `now` (a deadline is reached
    /// at its instant), else `None`.
    pub fn expired(&self, now: Instant) -> Option<Close> {
        let passed = |deadline: Option<Instant>| deadline.is_some_and(|d| now >= d);
        if passed(self.heartbeat_deadline) || passed(self.lifespan_deadline) {
            Some(Close {
                code: CLOSE_UNSUPPORTED_DATA,
                reason: Cow::Owned(self.reason()),
            })
        } else {
            None
        }
    }

    /// The reason [`Timers::expired`] gives; see [`timeout_reason`]. Written
    /// when asked (a connection keeps its timers, not their text).
    pub fn reason(&self) -> String {
        timeout_reason(self.heartbeat, self.lifespan)
    }
}

/// FastWS's timeout close reason:
/// `Connection timed out. Heartbeat interval {h}. Max connection lifespan {l}`, each
/// value in seconds as Python's `repr(float)` writes it (`30.0`, `0.25`, `1e-05`), or
/// `unset` when it is `None` or zero.
///
/// ```
/// use std::time::Duration;
/// use tickwire_fastws::timeout_reason;
///
/// assert_eq!(
///     timeout_reason(Some(Duration::from_secs(30)), Some(Duration::from_secs(3600))),
///     "Connection timed out. Heartbeat interval 30.0. Max connection lifespan 3600.0"
/// );
/// assert_eq!(
///     timeout_reason(Some(Duration::from_millis(250)), None),
///     "Connection timed out. Heartbeat interval 0.25. Max connection lifespan unset"
/// );
/// ```
pub fn timeout_reason(heartbeat: Option<Duration>, lifespan: Option<Duration>) -> String {
    let mut reason = String::with_capacity(96);
    reason.push_str("Connection timed out. Heartbeat interval ");
    push_seconds(&mut reason, heartbeat);
    reason.push_str(". Max connection lifespan ");
    push_seconds(&mut reason, lifespan);
    reason
}

fn push_seconds(out: &mut String, d: Option<Duration>) {
    match d.filter(|d| !d.is_zero()) {
        Some(d) => push_python_float(out, d.as_secs_f64()),
        None => out.push_str("unset"),
    }
}

/// Appends `v` as Python's `repr(float)`: the shortest digits that round-trip, in fixed
/// notation with at least one fractional digit when the decimal exponent is in
/// `-4..16` (`30.0`, `0.0001`, `1234567890123456.0`), else in scientific notation with a
/// signed exponent of at least two digits (`1e-05`, `1e+16`, `1.5e+20`). CPython:
/// `float_repr_style = 'short'`, `format_float_short(v, 'r', 0, Py_DTSF_ADD_DOT_0)`.
fn push_python_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("nan");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "inf" } else { "-inf" });
        return;
    }
    // Rust's `{:e}` without a precision prints the shortest round-trip digits:
    // `3e1`, `2.5e-1`, `-1.2345e4`.
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if v.is_sign_negative() {
        out.push('-');
    }
    // CPython's `decpt`: the value is 0.DIGITS × 10^decpt.
    let decpt = exp + 1;
    if (-3..=16).contains(&decpt) {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', decpt.unsigned_abs() as usize));
            out.push_str(&digits);
        } else {
            let point = decpt as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(v: f64) -> String {
        let mut s = String::new();
        push_python_float(&mut s, v);
        s
    }

    #[test]
    fn floats_print_as_python_repr() {
        // Each pair checked with CPython 3.12's repr().
        for (v, python) in [
            (30.0, "30.0"),
            (3600.0, "3600.0"),
            (0.25, "0.25"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000123, "0.000123"),
            (0.0000123, "1.23e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e20, "1.5e+20"),
            (1234567890123456.0, "1234567890123456.0"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (123.456, "123.456"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(repr(v), python, "{v:e}");
        }
    }

    #[test]
    fn reasons_name_both_settings() {
        assert_eq!(
            timeout_reason(None, None),
            "Connection timed out. Heartbeat interval unset. Max connection lifespan unset"
        );
        assert_eq!(
            timeout_reason(Some(Duration::ZERO), Some(Duration::from_millis(1500))),
            "Connection timed out. Heartbeat interval unset. Max connection lifespan 1.5"
        );
        // The longest reason fits a close frame (RFC 6455 §5.5: 123 bytes of reason).
        let longest = timeout_reason(Some(Duration::MAX), Some(Duration::new(1, 1)));
        assert!(longest.len() <= 123, "{longest}");
    }

    #[test]
    fn heartbeat_moves_lifespan_does_not() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut timers = Timers::new(Some(s(30)), Some(s(60)), t0);
        assert_eq!(timers.deadline(), Some(t0 + s(30)));
        timers.on_receive(t0 + s(29));
        assert_eq!(timers.deadline(), Some(t0 + s(59)));
        assert_eq!(timers.expired(t0 + s(58)), None);
        timers.on_receive(t0 + s(50));
        // The heartbeat would allow 80 s; the lifespan ends at 60 s.
        assert_eq!(timers.deadline(), Some(t0 + s(60)));
        assert_eq!(timers.expired(t0 + s(59)), None);
        let close = timers.expired(t0 + s(60)).unwrap();
        assert_eq!(close.code, 1003);
        assert_eq!(close.reason, timers.reason());
        assert_eq!(
            close.reason,
            "Connection timed out. Heartbeat interval 30.0. Max connection lifespan 60.0"
        );
    }

    #[test]
    fn unset_limits_never_expire() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(1_000_000);
        let timers = Timers::new(None, None, t0);
        assert_eq!(timers.deadline(), None);
        assert_eq!(timers.expired(far), None);

        let mut only_heartbeat = Timers::new(Some(Duration::from_millis(100)), None, t0);
        only_heartbeat.on_receive(t0 + Duration::from_millis(90));
        assert_eq!(
            only_heartbeat.deadline(),
            Some(t0 + Duration::from_millis(190))
        );
        assert!(
            only_heartbeat
                .expired(t0 + Duration::from_millis(190))
                .is_some()
        );

        let only_lifespan = Timers::new(None, Some(Duration::from_millis(100)), t0);
        assert_eq!(only_lifespan.expired(t0 + Duration::from_millis(99)), None);
        assert!(
            only_lifespan
                .expired(t0 + Duration::from_millis(100))
                .is_some()
        );

        // A deadline beyond what Instant can hold is no deadline.
        let huge = Timers::new(Some(Duration::MAX), Some(Duration::MAX), t0);
        assert_eq!(huge.deadline(), None);
    }

    #[test]
    fn zero_expires_at_once() {
        let t0 = Instant::now();
        let timers = Timers::new(Some(Duration::ZERO), None, t0);
        assert_eq!(timers.deadline(), Some(t0));
        assert!(timers.expired(t0).is_some());
    }
}
