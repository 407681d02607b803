//! A client of the market-data proxy, in Rust: authenticate, subscribe, print `market_data`,
//! with the sans-IO codec of `tickwire-proxy` over `tokio-tungstenite`.
//!
//! ```text
//! cargo run --release &                     # the server, with its synthetic market
//! cargo run -p tickwire-examples --example proxy_client -- --mode quote NSE:RELIANCE NSE:TCS
//! ```
//!
//! Arguments: instruments as `EXCHANGE:SYMBOL` (default `NSE:RELIANCE`; the demo server's
//! synthetic market has NSE `RELIANCE`, `TCS`, `INFY` and NSE_INDEX `NIFTY`), `--mode
//! ltp|quote|depth` (or `TICKWIRE_MODE`, default LTP) and `--count N` (or `TICKWIRE_COUNT`,
//! default 5). Environment: `TICKWIRE_PROXY_URL` (default `ws://127.0.0.1:8080/proxy`),
//! `TICKWIRE_KEY` (default the demo key). It prints one line per `market_data` message and
//! leaves after N of them; an error reply of the server, a refused instrument or ten seconds
//! without data end it with a message on stderr and exit code 1.

#![allow(clippy::print_stdout)] // an example client prints what it receives

use std::process::ExitCode;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tickwire_model::Instrument;
use tickwire_proxy::{MarketData, MarketFields, Mode, Reply, Request, Subscribe};
use tickwire_proxy::{decode_reply, encode_request};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy_client: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let url = env("TICKWIRE_PROXY_URL", "ws://127.0.0.1:8080/proxy");
    let (mut mode, mut count) = (env("TICKWIRE_MODE", "ltp"), env("TICKWIRE_COUNT", "5"));
    let mut instruments = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mode" => mode = args.next().ok_or("--mode needs ltp, quote or depth")?,
            "--count" => count = args.next().ok_or("--count needs a number")?,
            _ => {
                let (exchange, symbol) = arg.split_once(':').ok_or("give EXCHANGE:SYMBOL")?;
                instruments.push(Instrument::new(symbol, exchange));
            }
        }
    }
    if instruments.is_empty() {
        instruments.push(Instrument::new("RELIANCE", "NSE"));
    }
    let mode = Mode::from_label(&mode).ok_or(format!("unknown mode {mode:?}"))?;
    let count: usize = count.parse().map_err(|_| format!("bad count {count:?}"))?;

    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;

    // Authenticate with the key; the server answers `auth_response` (or `auth`) or an error.
    let key = env("TICKWIRE_KEY", "tickwire-demo-key");
    send(&mut ws, &Request::authenticate(key)).await?;
    let Reply::Auth(_) = next_reply(&mut ws).await? else {
        return Err("no authentication reply".into());
    };

    // Subscribe; the reply has one outcome per instrument.
    send(&mut ws, &Subscribe::new(instruments, mode).into()).await?;
    let Reply::Subscribed(reply) = next_reply(&mut ws).await? else {
        return Err("no subscription reply".into());
    };
    for sub in &reply.subscriptions {
        match &sub.result {
            Ok((mode, _)) => eprintln!("subscribed {} in {mode}", sub.instrument),
            Err(why) => eprintln!("{} refused: {why}", sub.instrument),
        }
    }
    if reply.subscriptions.iter().all(|sub| sub.result.is_err()) {
        return Err("no instrument subscribed".into());
    }

    // Print market data until `count` messages arrived.
    let mut seen = 0;
    while seen < count {
        let reply = next_reply(&mut ws).await;
        match reply.map_err(|e| format!("{seen} of {count} market_data messages: {e}"))? {
            Reply::MarketData(md) => {
                println!("{}", line(&md));
                seen += 1;
            }
            other => eprintln!("(ignored) {other:?}"),
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

async fn send(ws: &mut Socket, request: &Request) -> Result<(), String> {
    ws.send(Message::text(encode_request(request)))
        .await
        .map_err(|e| format!("send failed: {e}"))
}

/// The next reply of the server; an error reply, a closed socket or ten quiet seconds end the run.
async fn next_reply(ws: &mut Socket) -> Result<Reply, String> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| "nothing from the server for 10 s (an instrument nobody publishes?)")?
            .ok_or("the server closed the connection")?
            .map_err(|e| format!("connection failed: {e}"))?;
        let Message::Text(text) = frame else { continue };
        match decode_reply(text.as_bytes()).map_err(|e| format!("{e}: {text}"))? {
            Reply::Error { code, message } => {
                return Err(format!("server error {code}: {message}"));
            }
            reply => return Ok(reply),
        }
    }
}

/// `NSE:RELIANCE LTP ltp=2901.35 ...`: the figures of the message's mode.
fn line(md: &MarketData) -> String {
    let figures = match &md.data {
        MarketFields::Ltp(d) => format!("ltp={} ts={}", d.ltp, n(d.timestamp)),
        MarketFields::Quote(q) => format!(
            "ltp={} bid={} ask={} volume={}",
            q.ltp,
            n(q.bid),
            n(q.ask),
            n(q.volume)
        ),
        MarketFields::Depth(d) => format!(
            "ltp={} levels={}/{} best_bid={} best_ask={}",
            n(d.ltp),
            d.buy.len(),
            d.sell.len(),
            n(d.buy.first().map(|l| l.price)),
            n(d.sell.first().map(|l| l.price))
        ),
    };
    format!("{} {} {figures}", md.instrument, md.mode())
}

/// A figure the message may lack: `-` when it does.
fn n(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}
