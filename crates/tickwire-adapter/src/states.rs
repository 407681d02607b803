//! Watched connection states of adapters, for what reports them (the
//! proxy's `get_broker_info`).

use std::sync::Arc;

use tokio::sync::watch;

type Read = Arc<dyn Fn() -> &'static str + Send + Sync>;

/// Watched connection states of adapters, by adapter name; cheap to clone.
#[derive(Clone, Default)]
pub struct AdapterStates(Vec<(String, Read)>);

impl std::fmt::Debug for AdapterStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, read)| (name, read())))
            .finish()
    }
}

impl AdapterStates {
    /// Watches the adapter `name` through `state`, whose values name
    /// themselves in one word (`connected`, `retrying`…).
    pub fn watch<S>(&mut self, name: impl Into<String>, state: watch::Receiver<S>)
    where
        S: Copy + Send + Sync + 'static,
        &'static str: From<S>,
    {
        let read = move || <&'static str>::from(*state.borrow());
        self.0.push((name.into(), Arc::new(read)));
    }

    /// The state of the adapter `name` now, if it is watched.
    pub fn get(&self, name: &str) -> Option<&'static str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, read)| read())
    }

    /// The state of the first watched adapter.
    pub fn first(&self) -> Option<&'static str> {
        self.0.first().map(|(_, read)| read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Link {
        Up,
        Down,
    }

    impl From<Link> for &'static str {
        fn from(link: Link) -> Self {
            match link {
                Link::Up => "connected",
                Link::Down => "retrying",
            }
        }
    }

    #[test]
    fn states_are_read_when_asked() {
        let (tx, rx) = watch::channel(Link::Down);
        let mut states = AdapterStates::default();
        assert_eq!(states.first(), None);
        states.watch("bus", rx);
        assert_eq!(states.get("bus"), Some("retrying"));
        tx.send(Link::Up).unwrap();
        assert_eq!(states.first(), Some("connected"));
        assert_eq!(states.get("other"), None);
        assert_eq!(format!("{states:?}"), r#"{"bus": "connected"}"#);
    }
}
