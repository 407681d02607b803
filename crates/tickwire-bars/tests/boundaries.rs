//! Bar aggregation across bucket boundaries at every resolution.
//!
//! Timestamps are UTC instants written out as literals (checked against Python's
//! `datetime`), so the calendar code is not tested against itself.

use tickwire_bars::{Bar, BarAggregator, Resolution, Stats};
use tickwire_model::Instrument;

const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// 2023-10-12 00:00 UTC, a Thursday.
const OCT_12: i64 = 1_697_068_800_000;
/// 2023-10-09 00:00 UTC, the Monday of that week.
const OCT_09: i64 = 1_696_809_600_000;
/// 2023-10-01 00:00 UTC.
const OCT_01: i64 = 1_696_118_400_000;
/// 2023-12-25 00:00 UTC, a Monday.
const DEC_25_2023: i64 = 1_703_462_400_000;
/// 2023-12-01 00:00 UTC.
const DEC_01_2023: i64 = 1_701_388_800_000;
/// 2024-01-01 00:00 UTC, a Monday.
const JAN_01_2024: i64 = 1_704_067_200_000;
/// 2024-01-08 00:00 UTC, a Monday.
const JAN_08_2024: i64 = 1_704_672_000_000;
/// 2024-02-29 00:00 UTC (leap day), a Thursday.
const FEB_29_2024: i64 = 1_709_164_800_000;
/// 2024-03-01 00:00 UTC.
const MAR_01_2024: i64 = 1_709_251_200_000;
/// 2023-03-01 00:00 UTC (2023 is not a leap year).
const MAR_01_2023: i64 = 1_677_628_800_000;
/// 2024-05-01 00:00 UTC (April has 30 days).
const MAY_01_2024: i64 = 1_714_521_600_000;
/// 2100-03-01 00:00 UTC (2100 is not a leap year).
const MAR_01_2100: i64 = 4_107_542_400_000;

fn aapl() -> Instrument {
    Instrument::new("AAPL", "NASDAQ")
}

fn bar(time: i64, open: f64, high: f64, low: f64, close: f64, volume: f64) -> Bar {
    Bar {
        time,
        open,
        high,
        low,
        close,
        volume,
    }
}

/// Applies a tick and returns the changed bars as owned pairs.
fn tick(agg: &mut BarAggregator, price: f64, qty: f64, ts: i64) -> Vec<(Resolution, Bar)> {
    agg.on_tick(&aapl(), price, qty, ts)
        .map(|(r, b)| (r, *b))
        .collect()
}

#[test]
fn a_late_first_tick_opens_the_bar_at_the_bucket_start() {
    let mut agg = BarAggregator::all();
    let t = OCT_12 + 10 * HOUR + 7 * MIN + 42 * SEC; // 10:07:42
    let changed = tick(&mut agg, 150.0, 100.0, t);
    let times: Vec<_> = changed.iter().map(|(r, b)| (r.as_str(), b.time)).collect();
    assert_eq!(
        times,
        [
            ("1", OCT_12 + 10 * HOUR + 7 * MIN),
            ("5", OCT_12 + 10 * HOUR + 5 * MIN),
            ("15", OCT_12 + 10 * HOUR),
            ("30", OCT_12 + 10 * HOUR),
            ("60", OCT_12 + 10 * HOUR),
            ("D", OCT_12),
            ("W", OCT_09),
            ("M", OCT_01),
        ]
    );
    for (_, b) in changed {
        assert_eq!(
            (b.open, b.high, b.low, b.close, b.volume),
            (150.0, 150.0, 150.0, 150.0, 100.0)
        );
    }
}

#[test]
fn ohlc_and_volume_arithmetic() {
    let mut agg = BarAggregator::new(&[Resolution::Min5]);
    let t0 = OCT_12 + 10 * HOUR;
    for (i, (price, qty)) in [(150.0, 10.0), (152.5, 5.0), (149.25, 7.5), (151.0, 2.5)]
        .into_iter()
        .enumerate()
    {
        tick(&mut agg, price, qty, t0 + i as i64 * 30 * SEC);
    }
    assert_eq!(
        agg.current(&aapl(), Resolution::Min5),
        Some(bar(t0, 150.0, 152.5, 149.25, 151.0, 25.0))
    );
    // A resolution not kept has no bar; neither has an instrument that never traded.
    assert_eq!(agg.current(&aapl(), Resolution::Min1), None);
    assert_eq!(
        agg.current(&Instrument::new("MSFT", "NASDAQ"), Resolution::Min5),
        None
    );
}

#[test]
fn minute_resolutions_roll_over_on_epoch_aligned_boundaries() {
    for (res, width) in [
        (Resolution::Min1, MIN),
        (Resolution::Min5, 5 * MIN),
        (Resolution::Min15, 15 * MIN),
        (Resolution::Min30, 30 * MIN),
        (Resolution::Min60, HOUR),
    ] {
        let mut agg = BarAggregator::new(&[res]);
        let start = OCT_12 + 9 * HOUR; // 09:00 is a boundary of every minute width
        tick(&mut agg, 10.0, 1.0, start);
        tick(&mut agg, 11.0, 1.0, start + width - 1);
        assert_eq!(
            agg.current(&aapl(), res),
            Some(bar(start, 10.0, 11.0, 10.0, 11.0, 2.0)),
            "{res}: the last millisecond belongs to the bucket"
        );
        let changed = tick(&mut agg, 9.0, 3.0, start + width);
        assert_eq!(
            changed,
            [(res, bar(start + width, 9.0, 9.0, 9.0, 9.0, 3.0))],
            "{res}"
        );
        // Skipping empty buckets: the next bar starts on its own boundary.
        let changed = tick(&mut agg, 8.0, 1.0, start + 3 * width + width / 2);
        assert_eq!(changed[0].1.time, start + 3 * width, "{res}");
    }
}

#[test]
fn days_roll_over_at_midnight_utc() {
    let mut agg = BarAggregator::new(&[Resolution::Day]);
    tick(&mut agg, 1.0, 1.0, OCT_12 + DAY - 1);
    assert_eq!(agg.current(&aapl(), Resolution::Day).unwrap().time, OCT_12);
    tick(&mut agg, 2.0, 1.0, OCT_12 + DAY);
    assert_eq!(
        agg.current(&aapl(), Resolution::Day),
        Some(bar(OCT_12 + DAY, 2.0, 2.0, 2.0, 2.0, 1.0))
    );
}

#[test]
fn weeks_start_on_monday_across_a_year_end() {
    let mut agg = BarAggregator::new(&[Resolution::Week]);
    // Sunday 2023-12-31 23:59:59.999 is in the week of Monday 2023-12-25.
    tick(&mut agg, 1.0, 1.0, JAN_01_2024 - 1);
    assert_eq!(
        agg.current(&aapl(), Resolution::Week).unwrap().time,
        DEC_25_2023
    );
    // Monday 2024-01-01 00:00 starts a new week, and a new year.
    tick(&mut agg, 2.0, 1.0, JAN_01_2024);
    assert_eq!(
        agg.current(&aapl(), Resolution::Week).unwrap().time,
        JAN_01_2024
    );
    // Sunday 2024-01-07 23:59:59 is still that week; Monday the 8th is the next.
    tick(&mut agg, 3.0, 1.0, JAN_08_2024 - SEC);
    assert_eq!(
        agg.current(&aapl(), Resolution::Week),
        Some(bar(JAN_01_2024, 2.0, 3.0, 2.0, 3.0, 2.0))
    );
    tick(&mut agg, 4.0, 1.0, JAN_08_2024);
    assert_eq!(
        agg.current(&aapl(), Resolution::Week).unwrap().time,
        JAN_08_2024
    );
    // A Thursday belongs to the week of the Monday before it.
    assert_eq!(Resolution::Week.bucket_start(OCT_12 + 13 * HOUR), OCT_09);
}

#[test]
fn months_follow_month_lengths_and_leap_years() {
    let cases = [
        // (last millisecond of a month, its first day, the next month's first day)
        (MAR_01_2024 - 1, 1_706_745_600_000, MAR_01_2024), // Feb 2024: 29 days
        (MAR_01_2023 - 1, 1_675_209_600_000, MAR_01_2023), // Feb 2023: 28 days
        (MAY_01_2024 - 1, 1_711_929_600_000, MAY_01_2024), // Apr 2024: 30 days
        (JAN_01_2024 - 1, DEC_01_2023, JAN_01_2024),       // Dec 2023 -> 2024
        (MAR_01_2100 - 1, 4_105_123_200_000, MAR_01_2100), // Feb 2100: 28 days
    ];
    for (last_ms, month_start, next_start) in cases {
        let mut agg = BarAggregator::new(&[Resolution::Month]);
        tick(&mut agg, 1.0, 1.0, month_start);
        tick(&mut agg, 2.0, 1.0, last_ms);
        assert_eq!(
            agg.current(&aapl(), Resolution::Month),
            Some(bar(month_start, 1.0, 2.0, 1.0, 2.0, 2.0)),
            "month of {last_ms}"
        );
        let changed = tick(&mut agg, 3.0, 1.0, next_start);
        assert_eq!(
            changed,
            [(Resolution::Month, bar(next_start, 3.0, 3.0, 3.0, 3.0, 1.0))]
        );
        assert_eq!(Resolution::Month.bucket_end(last_ms), next_start);
    }
    // The leap day itself is in February, and its day bar starts at its midnight.
    assert_eq!(
        Resolution::Month.bucket_start(FEB_29_2024 + 12 * HOUR),
        1_706_745_600_000
    );
    assert_eq!(
        Resolution::Day.bucket_start(FEB_29_2024 + 12 * HOUR),
        FEB_29_2024
    );
}

#[test]
fn late_ticks_update_the_current_bucket_and_skip_closed_ones() {
    let mut agg = BarAggregator::new(&[Resolution::Min1, Resolution::Min5]);
    let t0 = OCT_12 + 10 * HOUR; // 10:00:00
    tick(&mut agg, 100.0, 1.0, t0 + 10 * SEC);
    tick(&mut agg, 101.0, 1.0, t0 + 50 * SEC);
    // Late within the current minute: high/low/volume move, the close does not (a later
    // trade was seen) and the open does (it is the earliest trade).
    let changed = tick(&mut agg, 99.0, 1.0, t0 + 5 * SEC);
    assert_eq!(changed.len(), 2);
    assert_eq!(
        agg.current(&aapl(), Resolution::Min1),
        Some(bar(t0, 99.0, 101.0, 99.0, 101.0, 3.0))
    );
    // 10:01:30 closes the 10:00 minute.
    tick(&mut agg, 102.0, 1.0, t0 + 90 * SEC);
    // A tick of 10:00:30 now is late for the 1-minute bars, current for the 5-minute bar.
    let changed = tick(&mut agg, 98.0, 2.0, t0 + 30 * SEC);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].0, Resolution::Min5);
    assert_eq!(changed[0].1, bar(t0, 99.0, 102.0, 98.0, 102.0, 6.0));
    assert_eq!(
        agg.current(&aapl(), Resolution::Min1),
        Some(bar(t0 + MIN, 102.0, 102.0, 102.0, 102.0, 1.0))
    );
    // A tick of the previous hour is late everywhere: nothing changes.
    assert!(tick(&mut agg, 1.0, 1.0, t0 - HOUR).is_empty());
    assert_eq!(
        agg.stats(),
        Stats {
            applied: 5,
            late: 3,
            invalid: 0
        }
    );
}

#[test]
fn equal_timestamps_take_the_last_arrival_as_close() {
    let mut agg = BarAggregator::new(&[Resolution::Min1]);
    tick(&mut agg, 10.0, 1.0, OCT_12);
    tick(&mut agg, 12.0, 1.0, OCT_12);
    tick(&mut agg, 11.0, 1.0, OCT_12);
    assert_eq!(
        agg.current(&aapl(), Resolution::Min1),
        Some(bar(OCT_12, 10.0, 12.0, 10.0, 11.0, 3.0))
    );
}

#[test]
fn instruments_are_independent() {
    let mut agg = BarAggregator::new(&[Resolution::Min1]);
    let msft = Instrument::new("MSFT", "NASDAQ");
    tick(&mut agg, 150.0, 1.0, OCT_12 + MIN);
    assert_eq!(agg.on_tick(&msft, 300.0, 2.0, OCT_12).count(), 1);
    assert_eq!(agg.current(&aapl(), Resolution::Min1).unwrap().close, 150.0);
    assert_eq!(agg.current(&msft, Resolution::Min1).unwrap().time, OCT_12);
    assert_eq!(agg.instruments().count(), 2);
}

#[test]
fn price_ticks_use_last_price_quantity_and_exchange_time() {
    use std::sync::Arc;
    use tickwire_model::PriceTick;

    let mut agg = BarAggregator::new(&[Resolution::Min5]);
    let t = PriceTick {
        instrument: aapl(),
        price: 150.5,
        last_quantity: 300.0,
        bid: 150.4,
        bid_quantity: 1.0,
        ask: 150.6,
        ask_quantity: 1.0,
        open: 149.0,
        high: 151.0,
        low: 148.0,
        prev_close: 149.5,
        change_24h_pct: 0.5,
        volume_24h: None,
        session_volume: 1e6,
        source: Arc::from("synthetic"),
        timestamp_ms: OCT_12 + 7 * MIN,
    };
    let changed: Vec<_> = agg.on_price_tick(&t).map(|(r, b)| (r, *b)).collect();
    assert_eq!(
        changed,
        [(
            Resolution::Min5,
            bar(OCT_12 + 5 * MIN, 150.5, 150.5, 150.5, 150.5, 300.0)
        )]
    );
}
