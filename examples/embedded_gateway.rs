//! The tickwire runtime embedded in a service of its own, fed by its own broker adapter.
//!
//! `Widgets` below is a made-up feed: one instrument, `WIDGET` on the `DEMO` exchange, whose
//! price walks a little every 100 ms. It implements [`BrokerAdapter`], the one trait between
//! the gateway and its upstream, and [`tickwire_gateway::run`] serves it to every client the
//! runtime speaks to (here built with the `ws` feature only: the `/ws` JSON feed).
//!
//! ```text
//! cargo run -p tickwire-examples --example embedded_gateway -- 127.0.0.1:8090
//! # another terminal: any WebSocket client, for example
//! python3 -m websockets ws://127.0.0.1:8090/ws
//! > {"type":"subscribe","symbols":["widget"]}
//! ```
//!
//! It prints `listening on http://ADDR` once it serves, and stops on Ctrl-C (SIGINT), closing every client with 1001.

#![allow(clippy::print_stdout)] // an example prints where it listens

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tickwire_adapter::{AdapterError, BoxFuture, BrokerAdapter, UpdateStream};
use tickwire_gateway::Config;
use tickwire_model::{Instrument, PriceTick, Update};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A made-up feed: the price of one instrument, walking every 100 ms.
#[derive(Debug)]
struct Widgets {
    instrument: Instrument,
    sender: mpsc::Sender<Update>,
    receiver: Mutex<Option<mpsc::Receiver<Update>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Widgets {
    fn new() -> Widgets {
        let (sender, receiver) = mpsc::channel(1024);
        Widgets {
            instrument: Instrument::new("WIDGET", "DEMO"),
            sender,
            receiver: Mutex::new(Some(receiver)),
            task: Mutex::new(None),
        }
    }
}

impl BrokerAdapter for Widgets {
    fn name(&self) -> &str {
        "widgets"
    }

    /// Starts the feed (once): a tick every 100 ms until `disconnect`.
    fn connect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if task.is_none() {
            let (sender, instrument) = (self.sender.clone(), self.instrument.clone());
            *task = Some(tokio::spawn(async move {
                let mut price = 100.0_f64;
                let mut every = tokio::time::interval(Duration::from_millis(100));
                for step in 0_u64.. {
                    every.tick().await;
                    price += if step % 3 == 0 { -0.25 } else { 0.15 };
                    if sender.send(tick(&instrument, price)).await.is_err() {
                        break; // the gateway stopped reading
                    }
                }
            }));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    /// The feed sends its one instrument whatever is asked.
    fn subscribe<'a>(&'a self, _keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn unsubscribe<'a>(&'a self, _keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn disconnect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        Box::pin(std::future::ready(Ok(())))
    }

    /// The one stream of updates; it ends when the feed's task is stopped.
    fn updates(&self) -> Result<UpdateStream, AdapterError> {
        let receiver = self
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let receiver = receiver.ok_or_else(|| AdapterError::Upstream {
            adapter: self.name().to_owned(),
            message: "the update stream was already taken".into(),
        })?;
        Ok(Box::pin(futures_util::stream::unfold(
            receiver,
            |mut rx| async move { rx.recv().await.map(|update| (update, rx)) },
        )))
    }

    /// What clients may subscribe to before the first tick.
    fn instruments(&self) -> Vec<Instrument> {
        vec![self.instrument.clone()]
    }
}

/// A quote around `price`, stamped now.
fn tick(instrument: &Instrument, price: f64) -> Update {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Update::Tick(PriceTick {
        instrument: instrument.clone(),
        price,
        last_quantity: 1.0,
        bid: price - 0.05,
        bid_quantity: 10.0,
        ask: price + 0.05,
        ask_quantity: 12.0,
        open: 100.0,
        high: price.max(100.0),
        low: price.min(100.0),
        prev_close: 100.0,
        change_24h_pct: price - 100.0,
        volume_24h: None,
        session_volume: 1000.0,
        source: "widgets".into(),
        timestamp_ms: i64::try_from(now.as_millis()).unwrap_or(i64::MAX),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // The defaults: the demo API key on a loopback address, no adapter of the
    // configuration's own (the adapters are the ones given to `run`).
    let config = Config {
        adapters: Vec::new(),
        ..Config::default()
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    tickwire_gateway::run(listener, config, vec![Arc::new(Widgets::new())], shutdown).await?;
    Ok(())
}
