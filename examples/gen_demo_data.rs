//! Generates the bundled demo dataset: synthetic but realistic GEX records for SPX, NDX
//! and ES_SPX, one record a second from 14:30:00 UTC (the cash open) on 2025-11-28.
//!
//! ```text
//! cargo run -p tickwire-examples --example gen_demo_data -- data/demo
//! ```
//!
//! writes `OUT_DIR/2025-11-28/{SPX,NDX,ES_SPX}/{classic,state,orderflow}/{category}.jsonl`,
//! one file per category of every hub (`tickwire_model::Hub`). The output is
//! deterministic: the same seed and the same `rand` version give the same bytes.
//!
//! The numbers are shaped like real ones, not taken from any: spot follows a random walk
//! around the index's level, strikes sit on the index's grid around spot, gamma peaks
//! near spot and flips sign at the zero-gamma level, majors are real strikes, implied
//! volatilities follow a skew, and DEX figures add up (`agg_dex = agg_call_dex +
//! agg_put_dex`). Every field of the three record schemas is present with its type.

use std::error::Error;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tickwire_model::{Hub, RecordKind};

/// The seed of the whole dataset.
const SEED: u64 = 0x7469_636b_7769_7265; // "tickwire"
/// The trading day, and its first record: 2025-11-28 14:30:00 UTC.
const DATE: &str = "2025-11-28";
const START: i64 = 1_764_340_200;
/// Records per file, one a second.
const RECORDS: usize = 150;
/// 0DTE today (a Friday), then Monday: three days.
const MIN_DTE: i32 = 0;
const SEC_MIN_DTE: i32 = 3;

/// One ticker of the dataset.
struct Ticker {
    name: &'static str,
    /// Spot at the open.
    open: f64,
    /// Standard deviation of the one-second spot move.
    step: f64,
    /// Strike spacing.
    grid: f64,
    /// Strikes in each GEX chain and greek profile.
    strikes: usize,
    /// Zero gamma, relative to spot.
    zero_gamma_offset: f64,
}

const TICKERS: [Ticker; 3] = [
    Ticker {
        name: "SPX",
        open: 6849.35,
        step: 0.45,
        grid: 5.0,
        strikes: 12,
        zero_gamma_offset: -18.0,
    },
    Ticker {
        name: "NDX",
        open: 25_402.1,
        step: 2.1,
        grid: 25.0,
        strikes: 12,
        zero_gamma_offset: -95.0,
    },
    Ticker {
        name: "ES_SPX",
        open: 6879.75,
        step: 0.45,
        grid: 5.0,
        strikes: 12,
        zero_gamma_offset: -16.0,
    },
];

fn main() -> Result<(), Box<dyn Error>> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: gen_demo_data <OUT_DIR>")?;
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut files = 0;
    let mut spx: Vec<f64> = Vec::new();
    for ticker in &TICKERS {
        let spots = match ticker.name {
            // The future trades at a basis over the index and moves with it.
            "ES_SPX" if !spx.is_empty() => {
                let basis = ticker.open - TICKERS[0].open;
                spx.iter()
                    .map(|s| round(s + basis + 0.1 * normal(&mut rng), 2))
                    .collect()
            }
            _ => spot_path(&mut rng, ticker),
        };
        if ticker.name == "SPX" {
            spx.clone_from(&spots);
        }
        for hub in Hub::ALL {
            for &category in hub.categories() {
                let dir = out.join(DATE).join(ticker.name).join(hub.group_kind());
                fs::create_dir_all(&dir)?;
                let path = dir.join(format!("{category}.jsonl"));
                let day = Day {
                    ticker,
                    spots: &spots,
                    category,
                };
                match hub.record_kind() {
                    RecordKind::Orderflow => write(&path, orderflow(&mut rng, &day))?,
                    RecordKind::Gex => write(&path, gex(&mut rng, &day))?,
                    RecordKind::Greek => write(&path, greek(&mut rng, &day))?,
                }
                files += 1;
            }
        }
    }
    eprintln!(
        "wrote {files} files of {RECORDS} records under {}",
        out.join(DATE).display()
    );
    Ok(())
}

fn write<T: Serialize>(path: &Path, records: Vec<T>) -> Result<(), Box<dyn Error>> {
    let mut file = BufWriter::new(File::create(path)?);
    for record in &records {
        serde_json::to_writer(&mut file, record)?;
        file.write_all(b"\n")?;
    }
    file.flush()?;
    Ok(())
}

/// What every file of one ticker shares.
struct Day<'a> {
    ticker: &'a Ticker,
    spots: &'a [f64],
    category: &'static str,
}

impl Day<'_> {
    /// The category's expiry: `zero` (0DTE), `one` (1DTE+) or `full` (both).
    fn expiry(&self) -> Expiry {
        if self.category.ends_with("zero") {
            Expiry::Zero
        } else if self.category.ends_with("one") {
            Expiry::One
        } else {
            Expiry::Full
        }
    }

    /// The strikes of a chain around `spot`, on the ticker's grid.
    fn strikes(&self, spot: f64) -> Vec<f64> {
        let grid = self.ticker.grid;
        let atm = (spot / grid).round() * grid;
        let half = (self.ticker.strikes / 2) as f64;
        (0..self.ticker.strikes)
            .map(|i| atm + (i as f64 - half) * grid)
            .collect()
    }

    fn timestamp(i: usize) -> i64 {
        START + i as i64
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Expiry {
    Zero,
    One,
    Full,
}

impl Expiry {
    /// Relative size of the expiry's exposure: 0DTE gamma is concentrated, 1DTE+ spread.
    fn scale(self) -> f64 {
        match self {
            Expiry::Zero => 1.0,
            Expiry::One => 0.55,
            Expiry::Full => 1.55,
        }
    }

    /// Width (in grid steps) of the exposure bell around spot.
    fn width(self) -> f64 {
        match self {
            Expiry::Zero => 3.0,
            Expiry::One => 5.5,
            Expiry::Full => 4.0,
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Rounds to `places` decimals, so the JSON carries them and no more.
fn round(x: f64, places: i32) -> f64 {
    let p = 10f64.powi(places);
    (x * p).round() / p
}

/// A grid strike as a JSON integer.
fn strike(x: f64) -> i64 {
    x.round() as i64
}

/// A random walk of spot with a little mean reversion to the open.
fn spot_path(rng: &mut StdRng, ticker: &Ticker) -> Vec<f64> {
    let mut spot = ticker.open;
    (0..RECORDS)
        .map(|_| {
            spot += ticker.step * normal(rng) - 0.01 * (spot - ticker.open);
            round(spot, 2)
        })
        .collect()
}

/// A gamma-like profile: a bell around spot that changes sign at `zero`.
fn profile(k: f64, spot: f64, zero: f64, grid: f64, expiry: Expiry) -> f64 {
    let d = (k - spot) / (grid * expiry.width());
    let sign = ((k - zero) / (grid * 1.5)).tanh();
    expiry.scale() * 180.0 * (-d * d).exp() * sign
}

/// The strike whose value is the largest by `key`.
fn argmax(strikes: &[f64], values: &[f64], key: impl Fn(f64) -> f64) -> i64 {
    strikes
        .iter()
        .zip(values)
        .max_by(|a, b| key(*a.1).total_cmp(&key(*b.1)))
        .map_or(0, |(k, _)| strike(*k))
}

/// One `strikes` row: `[strike, value_1, value_2, [priors...]]`, or without its fourth
/// element when the strike has no priors.
struct StrikeRow {
    strike: i64,
    value_1: f64,
    value_2: f64,
    priors: Option<Vec<f64>>,
}

impl Serialize for StrikeRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(3 + usize::from(self.priors.is_some())))?;
        seq.serialize_element(&self.strike)?;
        seq.serialize_element(&self.value_1)?;
        seq.serialize_element(&self.value_2)?;
        if let Some(priors) = &self.priors {
            seq.serialize_element(priors)?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct GexJson {
    timestamp: i64,
    ticker: &'static str,
    min_dte: i32,
    sec_min_dte: i32,
    spot: f64,
    zero_gamma: f64,
    major_pos_vol: i64,
    major_pos_oi: i64,
    major_neg_vol: i64,
    major_neg_oi: i64,
    strikes: Vec<StrikeRow>,
    sum_gex_vol: f64,
    sum_gex_oi: f64,
    delta_risk_reversal: f64,
    max_priors: Vec<(i64, f64)>,
}

fn gex(rng: &mut StdRng, day: &Day<'_>) -> Vec<GexJson> {
    let t = day.ticker;
    let expiry = day.expiry();
    // Volume-weighted exposure moves faster than open interest's; state profiles differ
    // a little from classic ones.
    let state = day.category.starts_with("gex") && rng.random_bool(0.5);
    let mut zero_drift = 0.0;
    let mut drr: f64 = rng.random_range(-0.06..-0.02);
    let mut previous: Vec<f64> = Vec::new();
    day.spots
        .iter()
        .enumerate()
        .map(|(i, &spot)| {
            zero_drift += 0.15 * normal(rng);
            let zero = spot + t.zero_gamma_offset + zero_drift.clamp(-2.0 * t.grid, 2.0 * t.grid);
            let strikes = day.strikes(spot);
            let oi: Vec<f64> = strikes
                .iter()
                .map(|&k| profile(k, spot, zero, t.grid, expiry) * (1.0 + 0.08 * normal(rng)))
                .collect();
            let vol: Vec<f64> = oi
                .iter()
                .map(|&v| v * if state { 0.8 } else { 0.65 } + 6.0 * normal(rng))
                .collect();
            let atm = strikes.len() / 2;
            let rows: Vec<StrikeRow> = strikes
                .iter()
                .enumerate()
                .map(|(j, &k)| {
                    // Priors (the value's change over the lookbacks) for strikes near spot.
                    let priors = (j.abs_diff(atm) <= 2).then(|| {
                        let before = previous.get(j).copied().unwrap_or(vol[j]);
                        (1..=2)
                            .map(|n| round((vol[j] - before) * n as f64 + normal(rng), 2))
                            .collect()
                    });
                    StrikeRow {
                        strike: strike(k),
                        value_1: round(vol[j], 2),
                        value_2: round(oi[j], 2),
                        priors,
                    }
                })
                .collect();
            previous = vol.clone();
            drr = (drr + 0.0008 * normal(rng)).clamp(-0.12, 0.01);
            let max_priors = [1.0, 5.0, 10.0, 15.0, 30.0, 60.0]
                .iter()
                .map(|&lookback: &f64| {
                    let j = rng.random_range(atm.saturating_sub(2)..=atm + 2);
                    let change = 0.8 * lookback.sqrt() * normal(rng);
                    (strike(strikes[j]), round(change, 3))
                })
                .collect();
            GexJson {
                timestamp: Day::timestamp(i),
                ticker: t.name,
                min_dte: if expiry == Expiry::One {
                    SEC_MIN_DTE
                } else {
                    MIN_DTE
                },
                sec_min_dte: if expiry == Expiry::One {
                    4
                } else {
                    SEC_MIN_DTE
                },
                spot,
                zero_gamma: round(zero, 2),
                major_pos_vol: argmax(&strikes, &vol, |v| v),
                major_pos_oi: argmax(&strikes, &oi, |v| v),
                major_neg_vol: argmax(&strikes, &vol, |v| -v),
                major_neg_oi: argmax(&strikes, &oi, |v| -v),
                strikes: rows,
                sum_gex_vol: round(vol.iter().sum::<f64>(), 3),
                sum_gex_oi: round(oi.iter().sum::<f64>(), 3),
                delta_risk_reversal: round(drr, 3),
                max_priors,
            }
        })
        .collect()
}

/// One `mini_contracts` row:
/// `[strike, call_ivol, put_ivol, call_cvolume, [call_priors], put_cvolume, [put_priors]]`.
type ContractRow = (i64, f64, f64, f64, Vec<f64>, Option<i64>, Option<Vec<i64>>);

#[derive(Serialize)]
struct GreekJson {
    timestamp: i64,
    ticker: &'static str,
    spot: f64,
    min_dte: i32,
    sec_min_dte: i32,
    major_positive: i64,
    major_negative: i64,
    major_long_gamma: i64,
    major_short_gamma: i64,
    mini_contracts: Vec<ContractRow>,
}

fn greek(rng: &mut StdRng, day: &Day<'_>) -> Vec<GreekJson> {
    let t = day.ticker;
    let expiry = day.expiry();
    // Each greek has its own magnitude; delta is one-signed per side, the others flip.
    let greek = day.category.split('_').next().unwrap_or("gamma");
    let magnitude = match greek {
        "delta" => 420.0,
        "gamma" => 60.0,
        "vanna" => 35.0,
        _ => 18.0,
    };
    let base_ivol = if expiry == Expiry::Zero { 0.185 } else { 0.158 };
    let mut volumes: Vec<i64> = Vec::new();
    let mut previous: Vec<f64> = Vec::new();
    day.spots
        .iter()
        .enumerate()
        .map(|(i, &spot)| {
            let zero = spot + t.zero_gamma_offset;
            let strikes = day.strikes(spot);
            let values: Vec<f64> = strikes
                .iter()
                .map(|&k| {
                    let shape = if greek == "delta" {
                        let d = (k - spot) / (t.grid * expiry.width());
                        -(d.tanh()) * (-0.1 * d * d).exp()
                    } else {
                        profile(k, spot, zero, t.grid, expiry) / 180.0
                    };
                    magnitude * shape * (1.0 + 0.05 * normal(rng))
                })
                .collect();
            if volumes.len() != strikes.len() {
                volumes = strikes
                    .iter()
                    .map(|_| rng.random_range(200..2500))
                    .collect();
            }
            let atm = strikes.len() / 2;
            let rows: Vec<ContractRow> = strikes
                .iter()
                .enumerate()
                .map(|(j, &k)| {
                    // Skew: puts below spot are richer; 0DTE wings are steeper.
                    let moneyness = (k - spot) / spot;
                    let call_ivol = base_ivol - 7.5 * moneyness + 900.0 * moneyness * moneyness;
                    let put_ivol = call_ivol + 0.004 + 0.002 * normal(rng);
                    volumes[j] += rng.random_range(0..12);
                    let before = previous.get(j).copied().unwrap_or(values[j]);
                    let call_priors = if j.abs_diff(atm) <= 1 {
                        vec![round(values[j] - before, 2), round(0.5 * normal(rng), 2)]
                    } else {
                        Vec::new()
                    };
                    let put_priors = (expiry == Expiry::Zero && j.abs_diff(atm) <= 1)
                        .then(|| vec![volumes[j] - rng.random_range(0..40), volumes[j] - 60]);
                    (
                        strike(k),
                        round(call_ivol.clamp(0.08, 0.6), 3),
                        round(put_ivol.clamp(0.08, 0.6), 3),
                        round(values[j], 2),
                        call_priors,
                        (expiry == Expiry::Zero || j % 2 == 0).then_some(volumes[j]),
                        put_priors,
                    )
                })
                .collect();
            previous = values.clone();
            let call_side: Vec<f64> = values.iter().map(|v| v.max(0.0)).collect();
            let put_side: Vec<f64> = values.iter().map(|v| (-v).max(0.0)).collect();
            GreekJson {
                timestamp: Day::timestamp(i),
                ticker: t.name,
                spot,
                min_dte: if expiry == Expiry::One {
                    SEC_MIN_DTE
                } else {
                    MIN_DTE
                },
                sec_min_dte: if expiry == Expiry::One {
                    4
                } else {
                    SEC_MIN_DTE
                },
                major_positive: argmax(&strikes, &call_side, |v| v),
                major_negative: argmax(&strikes, &put_side, |v| v),
                major_long_gamma: argmax(&strikes, &values, |v| v),
                major_short_gamma: argmax(&strikes, &values, |v| -v),
                mini_contracts: rows,
            }
        })
        .collect()
}

#[derive(Serialize)]
struct OrderflowJson {
    timestamp: i64,
    ticker: &'static str,
    spot: f64,
    z_mlgamma: f64,
    z_msgamma: f64,
    o_mlgamma: f64,
    o_msgamma: f64,
    zero_mcall: f64,
    zero_mput: f64,
    one_mcall: f64,
    one_mput: f64,
    zcvr: i64,
    ocvr: i64,
    zgr: i64,
    ogr: i64,
    zvanna: i64,
    ovanna: i64,
    zcharm: i64,
    ocharm: i64,
    agg_dex: i64,
    one_agg_dex: i64,
    agg_call_dex: i64,
    one_agg_call_dex: i64,
    agg_put_dex: i64,
    one_agg_put_dex: i64,
    net_dex: i64,
    one_net_dex: i64,
    net_call_dex: i64,
    one_net_call_dex: i64,
    net_put_dex: i64,
    one_net_put_dex: i64,
    dexoflow: i64,
    gexoflow: i64,
    cvroflow: i64,
    one_dexoflow: i64,
    one_gexoflow: i64,
    one_cvroflow: i64,
}

/// A bounded random walk of an integer figure.
struct Walk {
    value: f64,
    step: f64,
    min: f64,
    max: f64,
}

impl Walk {
    fn new(rng: &mut StdRng, start: std::ops::Range<f64>, step: f64, min: f64, max: f64) -> Walk {
        Walk {
            value: rng.random_range(start),
            step,
            min,
            max,
        }
    }

    fn next(&mut self, rng: &mut StdRng) -> i64 {
        self.value = (self.value + self.step * normal(rng)).clamp(self.min, self.max);
        self.value.round() as i64
    }
}

fn orderflow(rng: &mut StdRng, day: &Day<'_>) -> Vec<OrderflowJson> {
    let t = day.ticker;
    // DEX in thousands of deltas; NDX notional is larger.
    let size = if t.name == "NDX" { 0.45 } else { 1.0 };
    let w = |rng: &mut StdRng, start: std::ops::Range<f64>, step: f64, lim: f64| {
        Walk::new(rng, start, step, -lim, lim)
    };
    let (mut zcvr, mut ocvr) = (
        w(rng, 20.0..60.0, 1.5, 100.0),
        w(rng, -10.0..30.0, 1.0, 100.0),
    );
    let (mut zgr, mut ogr) = (
        w(rng, 10.0..50.0, 1.2, 100.0),
        w(rng, -20.0..20.0, 0.8, 100.0),
    );
    let (mut zvanna, mut ovanna) = (
        w(rng, -40_000.0..40_000.0, 900.0, 250_000.0),
        w(rng, -90_000.0..90_000.0, 1500.0, 500_000.0),
    );
    let (mut zcharm, mut ocharm) = (
        w(rng, -20_000.0..20_000.0, 500.0, 150_000.0),
        w(rng, -50_000.0..50_000.0, 800.0, 300_000.0),
    );
    let mut zcall = Walk::new(rng, 900_000.0..1_300_000.0, 4000.0, 300_000.0, 3_000_000.0);
    let mut zput = Walk::new(
        rng,
        -1_200_000.0..-800_000.0,
        4000.0,
        -3_000_000.0,
        -300_000.0,
    );
    let mut ocall = Walk::new(
        rng,
        1_500_000.0..2_200_000.0,
        3000.0,
        500_000.0,
        5_000_000.0,
    );
    let mut oput = Walk::new(
        rng,
        -2_100_000.0..-1_400_000.0,
        3000.0,
        -5_000_000.0,
        -500_000.0,
    );
    let mut zncall = w(rng, 50_000.0..150_000.0, 2500.0, 1_000_000.0);
    let mut znput = w(rng, -150_000.0..-40_000.0, 2500.0, 1_000_000.0);
    let mut oncall = w(rng, 20_000.0..90_000.0, 1500.0, 1_000_000.0);
    let mut onput = w(rng, -90_000.0..-20_000.0, 1500.0, 1_000_000.0);
    let mut previous: Option<(i64, i64, i64, i64, i64, i64)> = None;
    let dex = |x: i64| (x as f64 * size).round() as i64;
    day.spots
        .iter()
        .enumerate()
        .map(|(i, &spot)| {
            let grid = t.grid;
            let at = |offset: f64| ((spot + offset) / grid).round() * grid;
            let (agg_call_dex, agg_put_dex) = (dex(zcall.next(rng)), dex(zput.next(rng)));
            let (one_agg_call_dex, one_agg_put_dex) = (dex(ocall.next(rng)), dex(oput.next(rng)));
            let (net_call_dex, net_put_dex) = (dex(zncall.next(rng)), dex(znput.next(rng)));
            let (one_net_call_dex, one_net_put_dex) = (dex(oncall.next(rng)), dex(onput.next(rng)));
            let (zcvr, zgr, ocvr, ogr) =
                (zcvr.next(rng), zgr.next(rng), ocvr.next(rng), ogr.next(rng));
            let net_dex = net_call_dex + net_put_dex;
            let one_net_dex = one_net_call_dex + one_net_put_dex;
            // Orderflow: the one-second change of the state figures.
            let now = (net_dex, zgr, zcvr, one_net_dex, ogr, ocvr);
            let before = previous.replace(now).unwrap_or(now);
            OrderflowJson {
                timestamp: Day::timestamp(i),
                ticker: t.name,
                spot,
                z_mlgamma: at(2.0 * grid),
                z_msgamma: at(-4.0 * grid),
                o_mlgamma: at(6.0 * grid),
                o_msgamma: at(-8.0 * grid),
                zero_mcall: at(3.0 * grid),
                zero_mput: at(-3.0 * grid),
                one_mcall: at(10.0 * grid),
                one_mput: at(-10.0 * grid),
                zcvr,
                ocvr,
                zgr,
                ogr,
                zvanna: zvanna.next(rng),
                ovanna: ovanna.next(rng),
                zcharm: zcharm.next(rng),
                ocharm: ocharm.next(rng),
                agg_dex: agg_call_dex + agg_put_dex,
                one_agg_dex: one_agg_call_dex + one_agg_put_dex,
                agg_call_dex,
                one_agg_call_dex,
                agg_put_dex,
                one_agg_put_dex,
                net_dex,
                one_net_dex,
                net_call_dex,
                one_net_call_dex,
                net_put_dex,
                one_net_put_dex,
                dexoflow: now.0 - before.0,
                gexoflow: now.1 - before.1,
                cvroflow: now.2 - before.2,
                one_dexoflow: now.3 - before.3,
                one_gexoflow: now.4 - before.4,
                one_cvroflow: now.5 - before.5,
            }
        })
        .collect()
}
