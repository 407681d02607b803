//! An in-memory adapter, fed by hand: for tests and for embedding.

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use tickwire_model::Update;

use crate::{AdapterError, BoxFuture, BrokerAdapter, UpdateStream};

/// How many updates a [`MemoryAdapter`] buffers by default before
/// [`MemoryHandle::push`] waits.
const DEFAULT_CAPACITY: usize = 1024;

/// One call a [`MemoryAdapter`] received, in the order received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdapterCall {
    /// [`BrokerAdapter::connect`].
    Connect,
    /// [`BrokerAdapter::subscribe`] with these keys.
    Subscribe(Vec<String>),
    /// [`BrokerAdapter::unsubscribe`] with these keys.
    Unsubscribe(Vec<String>),
    /// [`BrokerAdapter::disconnect`].
    Disconnect,
}

/// A [`BrokerAdapter`] whose updates are pushed through a [`MemoryHandle`].
///
/// It accepts any key, keeps the set of subscribed keys and a log of every
/// call, and can be told to refuse subscriptions. Its stream is bounded:
/// [`MemoryHandle::push`] waits while it is full.
///
/// ```
/// use tickwire_adapter::{AdapterCall, BrokerAdapter, MemoryAdapter};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let adapter = MemoryAdapter::new("test");
/// let handle = adapter.handle();
/// adapter.subscribe(&["a".to_owned(), "b".to_owned()]).await.unwrap();
/// adapter.unsubscribe(&["a".to_owned()]).await.unwrap();
/// assert_eq!(handle.subscriptions(), ["b"]);
/// assert_eq!(handle.calls()[1], AdapterCall::Unsubscribe(vec!["a".to_owned()]));
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryAdapter {
    shared: Arc<Shared>,
}

/// The feeding and inspecting side of a [`MemoryAdapter`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    state: Mutex<State>,
}

/// Never held across an `.await`.
#[derive(Debug)]
struct State {
    /// `None` once the stream is closed.
    tx: Option<mpsc::Sender<Update>>,
    /// `None` once taken by `updates`.
    rx: Option<mpsc::Receiver<Update>>,
    connected: bool,
    disconnected: bool,
    calls: Vec<AdapterCall>,
    subscribed: BTreeSet<String>,
    refuse: Option<String>,
}

impl MemoryAdapter {
    /// An adapter named `name` whose stream buffers 1024 updates.
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_capacity(name, DEFAULT_CAPACITY)
    }

    /// An adapter named `name` whose stream buffers `capacity` updates (at least one).
    pub fn with_capacity(name: impl Into<String>, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        MemoryAdapter {
            shared: Arc::new(Shared {
                name: name.into(),
                state: Mutex::new(State {
                    tx: Some(tx),
                    rx: Some(rx),
                    connected: false,
                    disconnected: false,
                    calls: Vec::new(),
                    subscribed: BTreeSet::new(),
                    refuse: None,
                }),
            }),
        }
    }

    /// A handle to push updates and inspect calls.
    pub fn handle(&self) -> MemoryHandle {
        MemoryHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Shared {
    fn disconnected(&self) -> AdapterError {
        AdapterError::Disconnected {
            adapter: self.name.clone(),
        }
    }
}

impl MemoryHandle {
    /// Puts `update` into the adapter's stream, waiting while the stream is full.
    ///
    /// Fails with [`AdapterError::Disconnected`] once the adapter is
    /// disconnected, the stream closed or dropped. Cancel safe: a dropped
    /// future has not sent the update.
    pub async fn push(&self, update: Update) -> Result<(), AdapterError> {
        let tx = self.shared.state.lock().tx.clone();
        let Some(tx) = tx else {
            return Err(self.shared.disconnected());
        };
        tx.send(update)
            .await
            .map_err(|_| self.shared.disconnected())
    }

    /// Every call the adapter received so far, oldest first.
    pub fn calls(&self) -> Vec<AdapterCall> {
        self.shared.state.lock().calls.clone()
    }

    /// The keys subscribed now, sorted.
    pub fn subscriptions(&self) -> Vec<String> {
        self.shared
            .state
            .lock()
            .subscribed
            .iter()
            .cloned()
            .collect()
    }

    /// Whether `connect` succeeded and `disconnect` has not been called.
    pub fn is_connected(&self) -> bool {
        self.shared.state.lock().connected
    }

    /// Makes later `subscribe` calls fail with [`AdapterError::Upstream`]
    /// carrying `message` (`None` to accept them again). Refused calls are
    /// still logged.
    pub fn refuse_subscriptions(&self, message: Option<String>) {
        self.shared.state.lock().refuse = message;
    }

    /// Ends the stream as an upstream that went away would: updates already
    /// pushed are still read, later pushes fail.
    pub fn close_stream(&self) {
        self.shared.state.lock().tx = None;
    }
}

impl BrokerAdapter for MemoryAdapter {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        let mut state = self.shared.state.lock();
        state.calls.push(AdapterCall::Connect);
        let result = if state.disconnected {
            Err(self.shared.disconnected())
        } else {
            state.connected = true;
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }

    fn subscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        let mut state = self.shared.state.lock();
        state.calls.push(AdapterCall::Subscribe(keys.to_vec()));
        let result = if state.disconnected {
            Err(self.shared.disconnected())
        } else if let Some(message) = &state.refuse {
            Err(AdapterError::Upstream {
                adapter: self.shared.name.clone(),
                message: message.clone(),
            })
        } else {
            state.subscribed.extend(keys.iter().cloned());
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }

    fn unsubscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        let mut state = self.shared.state.lock();
        state.calls.push(AdapterCall::Unsubscribe(keys.to_vec()));
        let result = if state.disconnected {
            Err(self.shared.disconnected())
        } else {
            for key in keys {
                state.subscribed.remove(key);
            }
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }

    fn disconnect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        let mut state = self.shared.state.lock();
        state.calls.push(AdapterCall::Disconnect);
        state.disconnected = true;
        state.connected = false;
        state.tx = None;
        Box::pin(std::future::ready(Ok(())))
    }

    fn updates(&self) -> Result<UpdateStream, AdapterError> {
        let rx = self.shared.state.lock().rx.take();
        let Some(mut rx) = rx else {
            return Err(AdapterError::UpdatesTaken {
                adapter: self.shared.name.clone(),
            });
        };
        Ok(Box::pin(futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::StreamExt;
    use tickwire_model::{GexRecord, Hub};

    use super::*;

    fn update(n: u8) -> Update {
        Update::Gex(GexRecord {
            hub: Hub::Orderflow,
            ticker: "SPX".into(),
            category: "orderflow",
            json: Bytes::from(format!("{{\"n\":{n}}}")),
        })
    }

    #[tokio::test]
    async fn records_calls_and_subscriptions() {
        let adapter = MemoryAdapter::new("m");
        let handle = adapter.handle();
        adapter.connect().await.unwrap();
        assert!(handle.is_connected());
        let keys = ["a".to_owned(), "b".to_owned()];
        adapter.subscribe(&keys).await.unwrap();
        adapter.subscribe(&keys[..1]).await.unwrap();
        adapter
            .unsubscribe(&["a".to_owned(), "z".to_owned()])
            .await
            .unwrap();
        assert_eq!(handle.subscriptions(), ["b"]);
        adapter.disconnect().await.unwrap();
        assert!(!handle.is_connected());
        assert_eq!(
            handle.calls(),
            [
                AdapterCall::Connect,
                AdapterCall::Subscribe(keys.to_vec()),
                AdapterCall::Subscribe(keys[..1].to_vec()),
                AdapterCall::Unsubscribe(vec!["a".into(), "z".into()]),
                AdapterCall::Disconnect,
            ]
        );
        assert!(matches!(
            adapter.subscribe(&keys).await,
            Err(AdapterError::Disconnected { .. })
        ));
        assert!(matches!(
            adapter.connect().await,
            Err(AdapterError::Disconnected { .. })
        ));
    }

    #[tokio::test]
    async fn refused_subscriptions_fail_and_change_nothing() {
        let adapter = MemoryAdapter::new("m");
        let handle = adapter.handle();
        handle.refuse_subscriptions(Some("no entitlement".into()));
        let err = adapter.subscribe(&["a".to_owned()]).await.unwrap_err();
        assert!(
            matches!(&err, AdapterError::Upstream { message, .. } if message == "no entitlement")
        );
        assert!(handle.subscriptions().is_empty());
        handle.refuse_subscriptions(None);
        adapter.subscribe(&["a".to_owned()]).await.unwrap();
        assert_eq!(handle.subscriptions(), ["a"]);
    }

    #[tokio::test]
    async fn stream_is_taken_once_and_ends_on_close() {
        let adapter = MemoryAdapter::with_capacity("m", 4);
        let handle = adapter.handle();
        let mut updates = adapter.updates().unwrap();
        assert!(matches!(
            adapter.updates(),
            Err(AdapterError::UpdatesTaken { adapter }) if adapter == "m"
        ));
        handle.push(update(1)).await.unwrap();
        handle.push(update(2)).await.unwrap();
        handle.close_stream();
        assert!(matches!(
            handle.push(update(3)).await,
            Err(AdapterError::Disconnected { .. })
        ));
        assert_eq!(updates.next().await, Some(update(1)));
        assert_eq!(updates.next().await, Some(update(2)));
        assert_eq!(updates.next().await, None);
    }

    #[tokio::test]
    async fn push_fails_once_the_stream_is_dropped() {
        let adapter = MemoryAdapter::new("m");
        let handle = adapter.handle();
        drop(adapter.updates().unwrap());
        assert!(matches!(
            handle.push(update(1)).await,
            Err(AdapterError::Disconnected { .. })
        ));
    }
}
