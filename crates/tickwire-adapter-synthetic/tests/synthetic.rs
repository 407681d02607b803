//! The synthetic market: invariants of its updates over long runs of the pure
//! core, reproducibility under a seed, and the adapter on the wall clock.
//!
//! The adapter tests run the market at a high speed with short intervals and
//! assert on content and order only; time bounds are generous guards.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tickwire_adapter::{AdapterError, BrokerAdapter, UpdateStream};
use tickwire_adapter_synthetic::{MarketSim, SyntheticConfig, SyntheticMarket, default_universe};
use tickwire_model::{Instrument, OrderBook, PriceTick, Signal, SignalDirection, Update};

/// 2024-06-01T23:40:00Z: the runs below cross a UTC midnight.
const START_MS: i64 = 1_717_285_200_000;

fn on_grid(x: f64, step: f64) -> bool {
    let n = x / step;
    (n - n.round()).abs() < 1e-6
}

/// Per-instrument figures of the universe, by instrument.
/// Tick size, lot size, 24-hour volume and book depth of every instrument.
fn specs(config: &SyntheticConfig) -> HashMap<Instrument, (f64, f64, f64, usize)> {
    config
        .universe
        .iter()
        .map(|s| {
            let depth = s.book_depth.unwrap_or(config.book_depth);
            (
                s.instrument(),
                (s.tick_size, s.lot_size, s.volume_24h, depth),
            )
        })
        .collect()
}

fn check_tick(tick: &PriceTick, tick_size: f64, lot: f64, volume: f64, last_ts: &mut i64) {
    assert!(tick.bid > 0.0 && tick.bid < tick.ask, "{tick:?}");
    assert!(tick.bid <= tick.price && tick.price <= tick.ask, "{tick:?}");
    for price in [
        tick.price,
        tick.bid,
        tick.ask,
        tick.open,
        tick.high,
        tick.low,
        tick.prev_close,
    ] {
        assert!(
            on_grid(price, tick_size),
            "{price} off the grid in {tick:?}"
        );
    }
    assert!(
        tick.low <= tick.price && tick.price <= tick.high,
        "{tick:?}"
    );
    assert!(tick.low <= tick.open && tick.open <= tick.high, "{tick:?}");
    for quantity in [tick.bid_quantity, tick.ask_quantity] {
        assert!(quantity >= lot && on_grid(quantity, lot), "{tick:?}");
    }
    assert!(
        tick.change_24h_pct.is_finite() && tick.change_24h_pct.abs() < 50.0,
        "{tick:?}"
    );
    assert!(tick.session_volume >= 0.0, "{tick:?}");
    if volume > 0.0 {
        assert!(
            tick.last_quantity >= lot && on_grid(tick.last_quantity, lot),
            "{tick:?}"
        );
        let v = tick.volume_24h.expect("a traded instrument reports volume");
        assert!(v > 0.2 * volume && v < 5.0 * volume, "{tick:?}");
    } else {
        assert_eq!(tick.volume_24h, None, "{tick:?}");
        assert_eq!(tick.last_quantity, 0.0, "{tick:?}");
    }
    assert_eq!(&*tick.source, "synthetic");
    assert!(tick.timestamp_ms >= *last_ts, "{tick:?}");
    *last_ts = tick.timestamp_ms;
}

fn check_book(book: &OrderBook, depth: usize, tick_size: f64, lot: f64, quote: Option<(f64, f64)>) {
    assert_eq!(book.bids.len(), depth, "{book:?}");
    assert_eq!(book.asks.len(), depth, "{book:?}");
    assert!(book.bids[0].price < book.asks[0].price, "{book:?}");
    if let Some((bid, ask)) = quote {
        assert_eq!(
            (book.bids[0].price, book.asks[0].price),
            (bid, ask),
            "{book:?}"
        );
    }
    for pair in book.bids.windows(2) {
        assert!(pair[0].price > pair[1].price, "{book:?}");
    }
    for pair in book.asks.windows(2) {
        assert!(pair[0].price < pair[1].price, "{book:?}");
    }
    for level in book.bids.iter().chain(&book.asks) {
        assert!(
            level.price > 0.0 && on_grid(level.price, tick_size),
            "{book:?}"
        );
        assert!(
            level.quantity >= lot && on_grid(level.quantity, lot),
            "{book:?}"
        );
        assert!(level.orders >= 1, "{book:?}");
    }
}

fn check_signal(signal: &Signal) {
    assert!((0.0..=1.0).contains(&signal.confidence), "{signal:?}");
    assert!(signal.value.is_finite(), "{signal:?}");
    match &*signal.indicator {
        "rsi" => {
            assert!((0.0..=100.0).contains(&signal.value), "{signal:?}");
            let expected = if signal.value < 30.0 {
                SignalDirection::Buy
            } else if signal.value > 70.0 {
                SignalDirection::Sell
            } else {
                SignalDirection::Neutral
            };
            assert_eq!(signal.direction, expected, "{signal:?}");
        }
        "ema_cross" | "macd" => {
            let expected = if signal.value > 0.0 {
                [SignalDirection::Buy, SignalDirection::Neutral]
            } else if signal.value < 0.0 {
                [SignalDirection::Sell, SignalDirection::Neutral]
            } else {
                [SignalDirection::Neutral; 2]
            };
            assert!(expected.contains(&signal.direction), "{signal:?}");
        }
        other => panic!("unknown indicator {other}"),
    }
}

/// Ticks, books and signals per instrument.
type Counts = HashMap<Instrument, [usize; 3]>;

/// The directions seen per indicator.
type Directions = HashMap<String, HashSet<&'static str>>;

/// Runs `steps` events of the default universe with books `depth` deep (the
/// crypto pairs; the exchange-listed instruments are 30 deep) and
/// checks every update; returns the counts of ticks, books and signals per
/// instrument and the directions seen per indicator.
fn run_checked(depth: usize, steps: usize) -> (Counts, Directions) {
    let config = SyntheticConfig {
        book_depth: depth,
        signal_interval: Duration::from_secs(2),
        ..SyntheticConfig::default()
    };
    let specs = specs(&config);
    let mut sim = MarketSim::new(&config, 2024, START_MS).unwrap();
    let mut counts = Counts::new();
    let mut directions = Directions::new();
    let mut last_ts = HashMap::new();
    let mut quotes = HashMap::new();
    let mut previous = Duration::ZERO;
    for _ in 0..steps {
        let (offset, updates) = sim.step();
        assert!(offset >= previous, "events come in time order");
        previous = offset;
        for update in updates {
            let instrument = update
                .instrument()
                .expect("market updates name an instrument");
            let &(tick_size, lot, volume, book_depth) = &specs[instrument];
            let count = counts.entry(instrument.clone()).or_default();
            match &update {
                Update::Tick(tick) => {
                    count[0] += 1;
                    let ts = last_ts.entry(instrument.clone()).or_insert(0);
                    check_tick(tick, tick_size, lot, volume, ts);
                    quotes.insert(instrument.clone(), (tick.bid, tick.ask));
                }
                Update::Book(book) => {
                    count[1] += 1;
                    assert_eq!(
                        book.timestamp_ms,
                        START_MS + i64::try_from(offset.as_millis()).unwrap()
                    );
                    assert_eq!(
                        book_depth,
                        if instrument.exchange.as_ref() == "CRYPTO" {
                            depth
                        } else {
                            30
                        }
                    );
                    check_book(
                        book,
                        book_depth,
                        tick_size,
                        lot,
                        quotes.get(instrument).copied(),
                    );
                }
                Update::Signal(signal) => {
                    count[2] += 1;
                    check_signal(signal);
                    directions
                        .entry(signal.indicator.to_string())
                        .or_default()
                        .insert(signal.direction.as_str());
                }
                other => panic!("unexpected update {other:?}"),
            }
        }
    }
    (counts, directions)
}

#[test]
fn every_update_keeps_the_invariants() {
    // About 27 minutes of market time: the run crosses midnight UTC and 27
    // minute boundaries.
    let (counts, directions) = run_checked(10, 150_000);
    assert_eq!(counts.len(), default_universe().len());
    for (instrument, [ticks, books, signals]) in &counts {
        assert!(*ticks >= 1_000, "{instrument}: {ticks} ticks");
        assert!(*books >= 1_000, "{instrument}: {books} books");
        // One round of three signals every 2 s.
        assert!(
            *signals >= 1_000 && signals % 3 == 0,
            "{instrument}: {signals} signals"
        );
    }
    // Signals are read from the prices, not constant labels: over this many
    // instruments and rounds, every indicator advises both ways.
    for indicator in ["rsi", "ema_cross", "macd"] {
        let seen = &directions[indicator];
        assert!(
            seen.contains("buy") && seen.contains("sell"),
            "{indicator}: {seen:?}"
        );
    }
}

#[test]
fn deep_books_keep_the_invariants() {
    let (counts, _) = run_checked(30, 40_000);
    assert!(counts.values().all(|[_, books, _]| *books > 50));
}

fn first_updates(seed: u64, n: usize) -> Vec<Update> {
    let config = SyntheticConfig::default();
    let mut sim = MarketSim::new(&config, seed, START_MS).unwrap();
    let mut out = Vec::with_capacity(n + 3);
    while out.len() < n {
        out.extend(sim.step().1);
    }
    out.truncate(n);
    out
}

#[test]
fn a_seed_fixes_the_market() {
    let a = first_updates(7, 5_000);
    assert_eq!(a, first_updates(7, 5_000));
    assert!(a.iter().any(|u| matches!(u, Update::Tick(_))));
    assert!(a.iter().any(|u| matches!(u, Update::Book(_))));
    assert!(a.iter().any(|u| matches!(u, Update::Signal(_))));
    let b = first_updates(8, 5_000);
    assert_ne!(a, b);
    let price = |updates: &[Update]| {
        updates.iter().find_map(|u| match u {
            Update::Tick(t) if &*t.instrument.symbol == "BTC/USD" => Some(t.price),
            _ => None,
        })
    };
    assert_ne!(price(&a), price(&b));
}

#[test]
fn the_market_moves_like_a_market() {
    // BTC/USD over about an hour of market time: prices change, stay within
    // a few percent of the start (60 % a year is about 0.8 % an hour), and
    // its book moves with it.
    let config = SyntheticConfig {
        universe: default_universe()
            .into_iter()
            .filter(|s| s.symbol == "BTC/USD")
            .collect(),
        ..SyntheticConfig::default()
    };
    let mut sim = MarketSim::new(&config, 11, START_MS).unwrap();
    let btc = Instrument::crypto("BTC/USD");
    let mut prices = Vec::new();
    let mut best_bids = Vec::new();
    while sim.next_offset() < Duration::from_secs(3_600) {
        for update in sim.step().1 {
            match update {
                Update::Tick(t) if t.instrument == btc => prices.push(t.price),
                Update::Book(b) if b.instrument == btc => best_bids.push(b.bids[0].price),
                _ => {}
            }
        }
    }
    // Five trades a second.
    assert!((14_000..22_000).contains(&prices.len()), "{}", prices.len());
    let distinct: HashSet<u64> = prices.iter().map(|p| p.to_bits()).collect();
    assert!(distinct.len() > 1_000);
    let (lo, hi) = prices
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    assert!(lo > 67_000.0 * 0.9 && hi < 67_000.0 * 1.1, "{lo}–{hi}");
    assert!(hi > lo);
    let distinct: HashSet<u64> = best_bids.iter().map(|p| p.to_bits()).collect();
    assert!(distinct.len() > best_bids.len() / 2);
}

#[test]
fn universe_and_configuration() {
    let market = SyntheticMarket::new(SyntheticConfig {
        seed: Some(5),
        ..SyntheticConfig::default()
    })
    .unwrap();
    assert_eq!(market.seed(), 5);
    assert_eq!(market.name(), "synthetic");
    let instruments: Vec<String> = market
        .instruments()
        .iter()
        .map(ToString::to_string)
        .collect();
    for name in [
        "CRYPTO:BTC/USD",
        "CRYPTO:ETH/USD",
        "NASDAQ:AAPL",
        "NASDAQ:GOOGL",
        "NASDAQ:MSFT",
        "NASDAQ:TSLA",
        "NSE:RELIANCE",
        "NSE:TCS",
        "NSE:INFY",
        "NSE_INDEX:NIFTY",
    ] {
        assert!(instruments.iter().any(|i| i == name), "{name}");
    }
    assert!(
        instruments
            .iter()
            .filter(|i| i.starts_with("CRYPTO:"))
            .count()
            >= 20
    );

    let err = SyntheticMarket::new(SyntheticConfig {
        book_depth: 31,
        ..SyntheticConfig::default()
    })
    .unwrap_err();
    assert!(matches!(
        err,
        AdapterError::InvalidConfig {
            field: "book_depth",
            ..
        }
    ));
}

/// A fast market with short intervals.
fn fast(seed: u64, buffer: usize) -> SyntheticMarket {
    SyntheticMarket::new(SyntheticConfig {
        seed: Some(seed),
        speed: 20.0,
        book_interval: Duration::from_millis(20),
        signal_interval: Duration::from_millis(50),
        buffer,
        ..SyntheticConfig::default()
    })
    .unwrap()
}

/// The next update, within a generous bound.
async fn next(updates: &mut UpdateStream) -> Update {
    tokio::time::timeout(Duration::from_secs(30), updates.next())
        .await
        .expect("an update within 30 s")
        .expect("the stream is open")
}

#[tokio::test]
async fn the_adapter_emits_ticks_books_and_signals() {
    let adapter: Arc<dyn BrokerAdapter> = Arc::new(fast(1, 4096));
    let mut updates = adapter.updates().unwrap();
    assert!(matches!(
        adapter.updates(),
        Err(AdapterError::UpdatesTaken { adapter }) if adapter == "synthetic"
    ));
    adapter.connect().await.unwrap();
    adapter.connect().await.unwrap();
    adapter.subscribe(&["*".to_owned()]).await.unwrap();
    let (mut ticks, mut books, mut signals) = (HashSet::new(), 0, 0);
    while ticks.len() < 10 || books < 10 || signals < 10 {
        match next(&mut updates).await {
            Update::Tick(t) => {
                assert!(t.bid < t.ask);
                ticks.insert(t.instrument);
            }
            Update::Book(b) => {
                // The market's depth for crypto pairs, 30 for exchange-listed instruments.
                let depth = if &*b.instrument.exchange == "CRYPTO" {
                    10
                } else {
                    30
                };
                assert_eq!((b.bids.len(), b.asks.len()), (depth, depth));
                books += 1;
            }
            Update::Signal(s) => {
                assert!((0.0..=1.0).contains(&s.confidence));
                signals += 1;
            }
            other => panic!("unexpected update {other:?}"),
        }
    }
    adapter.disconnect().await.unwrap();
    // What was in the stream is still read, then it ends.
    let rest = tokio::time::timeout(Duration::from_secs(30), updates.count())
        .await
        .unwrap();
    assert!(rest <= 4096);
    assert!(matches!(
        adapter.connect().await,
        Err(AdapterError::Disconnected { .. })
    ));
    assert!(matches!(
        adapter.subscribe(&["*".to_owned()]).await,
        Err(AdapterError::Disconnected { .. })
    ));
}

#[tokio::test]
async fn subscriptions_narrow_the_stream() {
    let adapter: Arc<dyn BrokerAdapter> = Arc::new(fast(2, 4096));
    let mut updates = adapter.updates().unwrap();
    // Keys subscribed before connecting take effect on connection.
    adapter
        .subscribe(&["CRYPTO:BTC/USD".to_owned(), "CRYPTO:NOPE/USD".to_owned()])
        .await
        .unwrap();
    adapter.connect().await.unwrap();
    let mut kinds = HashSet::new();
    for _ in 0..200 {
        let update = next(&mut updates).await;
        assert_eq!(update.instrument().unwrap().to_string(), "CRYPTO:BTC/USD");
        kinds.insert(std::mem::discriminant(&update));
    }
    assert_eq!(kinds.len(), 3, "ticks, books and signals");

    // Switch to RELIANCE: once its first update arrives, BTC/USD is gone.
    adapter
        .subscribe(&["NSE:RELIANCE".to_owned()])
        .await
        .unwrap();
    adapter
        .unsubscribe(&["CRYPTO:BTC/USD".to_owned(), "NSE:TCS".to_owned()])
        .await
        .unwrap();
    loop {
        let update = next(&mut updates).await;
        if update.instrument().unwrap().to_string() == "NSE:RELIANCE" {
            break;
        }
    }
    for _ in 0..50 {
        let update = next(&mut updates).await;
        assert_eq!(update.instrument().unwrap().to_string(), "NSE:RELIANCE");
    }

    // A malformed key fails the whole call; nothing of it is subscribed.
    let err = adapter
        .subscribe(&["NSE:INFY".to_owned(), "INFY".to_owned()])
        .await
        .unwrap_err();
    assert!(matches!(err, AdapterError::InvalidKey { key, .. } if key == "INFY"));
    for _ in 0..50 {
        let update = next(&mut updates).await;
        assert_eq!(update.instrument().unwrap().to_string(), "NSE:RELIANCE");
    }
    adapter.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_slow_reader_loses_updates_but_never_stalls_the_market() {
    let market = Arc::new(fast(3, 8));
    let adapter: Arc<dyn BrokerAdapter> = market.clone();
    let mut updates = adapter.updates().unwrap();
    adapter.subscribe(&["*".to_owned()]).await.unwrap();
    adapter.connect().await.unwrap();
    // Nobody reads: the stream fills, then updates are dropped and counted.
    tokio::time::timeout(Duration::from_secs(30), async {
        while market.dropped() < 100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("updates dropped within 30 s");
    // The buffered updates are read, then new ones follow: the market kept running.
    for _ in 0..8 {
        next(&mut updates).await;
    }
    let later = next(&mut updates).await;
    assert!(later.instrument().is_some());
    adapter.disconnect().await.unwrap();
}

#[tokio::test]
async fn the_market_stops_when_its_stream_is_dropped() {
    let adapter = fast(4, 16);
    adapter.subscribe(&["*".to_owned()]).await.unwrap();
    drop(adapter.updates().unwrap());
    adapter.connect().await.unwrap();
    // The task notices the dropped stream and ends; disconnect just joins it.
    tokio::time::timeout(Duration::from_secs(30), adapter.disconnect())
        .await
        .unwrap()
        .unwrap();
}
