//! Seed 001's client commands: `subscribe`, `unsubscribe`, `ping`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::mpsc::Sender;

use crate::Shared;
use crate::feed::{self, ConnId};

/// Symbols one connection may subscribe to (seed 001 "Rate Limits").
const MAX_SUBSCRIPTIONS: usize = 100;

/// A client message of seed 001.
#[derive(Debug, Deserialize)]
struct Command {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    symbols: Vec<String>,
}

/// One `/ws` connection's subscriptions; dropping it unsubscribes them.
#[derive(Debug)]
pub struct Commands<M: Clone> {
    id: ConnId,
    shared: Arc<Shared<M>>,
    /// This connection's queue, handed to the registry on subscribe.
    tx: Sender<M>,
    symbols: HashSet<String>,
}

impl<M: Clone> Commands<M> {
    /// The commands of connection `id`, whose updates go to `tx`.
    pub fn new(id: ConnId, shared: Arc<Shared<M>>, tx: Sender<M>) -> Self {
        Commands {
            id,
            shared,
            tx,
            symbols: HashSet::new(),
        }
    }

    /// Applies one client message; the reply, if any.
    pub fn command(&mut self, text: &str) -> Option<String> {
        let Ok(command) = serde_json::from_str::<Command>(text) else {
            return Some(error(
                "invalid_message",
                "Malformed JSON or missing required fields",
            ));
        };
        match command.kind.as_str() {
            "subscribe" => {
                let new: HashSet<String> = command
                    .symbols
                    .iter()
                    .map(|s| feed::symbol_key(s))
                    .filter(|s| !self.symbols.contains(s))
                    .collect();
                if self.symbols.len() + new.len() > MAX_SUBSCRIPTIONS {
                    return Some(error(
                        "subscription_limit",
                        "Maximum subscriptions exceeded",
                    ));
                }
                for symbol in new {
                    self.shared.registry.subscribe(&symbol, self.id, &self.tx);
                    self.symbols.insert(symbol);
                }
                None
            }
            "unsubscribe" => {
                for symbol in &command.symbols {
                    let symbol = feed::symbol_key(symbol);
                    if self.symbols.remove(&symbol) {
                        self.shared.registry.unsubscribe(&symbol, self.id);
                    }
                }
                None
            }
            "ping" => Some(format!(r#"{{"type":"pong","timestamp":{}}}"#, now_ms())),
            _ => Some(error("invalid_message", "Unknown message type")),
        }
    }
}

impl<M: Clone> Drop for Commands<M> {
    fn drop(&mut self) {
        for symbol in &self.symbols {
            self.shared.registry.unsubscribe(symbol, self.id);
        }
    }
}

/// A seed 001 `error` message.
fn error(code: &str, message: &str) -> String {
    serde_json::json!({ "type": "error", "code": code, "message": message }).to_string()
}

/// Milliseconds since the UNIX epoch.
fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::{self, Receiver};

    fn commands() -> (Commands<String>, Receiver<String>) {
        let (tx, rx) = mpsc::channel(8);
        let shared = Arc::new(Shared::new("k", 8));
        (Commands::new(1, shared, tx), rx)
    }

    fn update(commands: &Commands<String>, symbol: &str) -> u64 {
        let message = symbol.to_owned();
        commands.shared.registry.publish([(symbol, message)]).queued
    }

    #[test]
    fn subscribe_unsubscribe_and_ping() {
        let (mut commands, mut rx) = commands();
        assert_eq!(
            commands.command(r#"{"type":"subscribe","symbols":["BTC","eth"]}"#),
            None
        );
        assert_eq!(update(&commands, "btc"), 1);
        assert_eq!(rx.try_recv().unwrap(), "btc");
        assert_eq!(
            commands.command(r#"{"type":"unsubscribe","symbols":["btc"]}"#),
            None
        );
        assert_eq!(update(&commands, "btc"), 0);
        assert_eq!(update(&commands, "eth"), 1);
        assert_eq!(rx.try_recv().unwrap(), "eth");
        let pong = commands.command(r#"{"type":"ping"}"#).unwrap();
        assert!(pong.starts_with(r#"{"type":"pong","timestamp":"#), "{pong}");
    }

    #[test]
    fn dropping_the_commands_unsubscribes() {
        let (mut commands, _rx) = commands();
        commands.command(r#"{"type":"subscribe","symbols":["sol"]}"#);
        let shared = Arc::clone(&commands.shared);
        drop(commands);
        let queued = shared.registry.publish([("sol", "x".to_owned())]).queued;
        assert_eq!(queued, 0);
    }

    #[test]
    fn bad_commands_get_errors() {
        let (mut commands, _rx) = commands();
        let reply = commands.command("{").unwrap();
        assert!(reply.contains("invalid_message"), "{reply}");
        let reply = commands.command(r#"{"type":"dance"}"#).unwrap();
        assert!(reply.contains("invalid_message"), "{reply}");
        let many: Vec<String> = (0..101).map(|i| format!("s{i}")).collect();
        let subscribe = serde_json::json!({"type": "subscribe", "symbols": many}).to_string();
        let reply = commands.command(&subscribe).unwrap();
        assert!(reply.contains("subscription_limit"), "{reply}");
        assert!(commands.symbols.is_empty());
    }
}
