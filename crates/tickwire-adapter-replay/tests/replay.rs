//! The JSONL replay over a small recorded dataset in a temporary folder.
//!
//! Ticks are 20 ms apart; the tests assert on order and content only.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tempfile::TempDir;
use tickwire_adapter::{AdapterError, BrokerAdapter, UpdateStream};
use tickwire_adapter_replay::{JsonlReplay, ReplayConfig, ReplayError, ReplayMode};
use tickwire_model::{Hub, Update};

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// Two valid days, a folder with an impossible date and assorted clutter.
fn dataset() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "2025-11-27/SPX/state/gamma_zero.jsonl",
        "{\"day\":27}\n",
    );
    write(
        root,
        "2025-11-28/SPX/state/gamma_zero.jsonl",
        "{\"g\":0}\n{\"g\":1}\n{\"g\":2}\n",
    );
    write(
        root,
        "2025-11-28/SPX/orderflow/orderflow.jsonl",
        "{\"o\":0}\r\n{\"o\":1}\r\n",
    );
    write(
        root,
        "2025-11-28/ES_SPX/classic/gex_zero.jsonl",
        "{\"c\":0}\n\n   \nnot json\n[1]\n{\"c\":1}\n{\"cut\":",
    );
    // Clutter that must be skipped.
    write(root, "2025-11-28/SPX/state/gex_half.jsonl", "{\"x\":1}\n");
    write(
        root,
        "2025-11-28/SPX/classic/delta_zero.jsonl",
        "{\"x\":1}\n",
    );
    write(root, "2025-11-28/SPX/state/notes.txt", "hello\n");
    write(root, "2025-11-28/SPX/misc/gamma_zero.jsonl", "{\"x\":1}\n");
    write(root, "2025-11-28/README.md", "about\n");
    write(root, "2025-11-28/NDX/state/gamma_one.jsonl", "\n\n");
    // Not dates, so never `latest`.
    write(
        root,
        "2025-13-01/SPX/state/gamma_zero.jsonl",
        "{\"bad\":1}\n",
    );
    write(
        root,
        "9999-99-99/SPX/state/gamma_zero.jsonl",
        "{\"bad\":1}\n",
    );
    write(root, "zzz/SPX/state/gamma_zero.jsonl", "{\"bad\":1}\n");
    dir
}

fn config(dir: &TempDir, mode: ReplayMode) -> ReplayConfig {
    ReplayConfig {
        data_dir: dir.path().to_owned(),
        interval: Duration::from_millis(20),
        mode,
        ..ReplayConfig::default()
    }
}

fn keys(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

/// `(key, json)` of an update.
fn describe(update: &Update) -> (String, String) {
    match update {
        Update::Gex(r) => (
            format!("{}/{}/{}", r.ticker, r.hub.group_kind(), r.category),
            String::from_utf8(r.json.to_vec()).unwrap(),
        ),
        other => panic!("unexpected update {other:?}"),
    }
}

async fn collect(stream: UpdateStream) -> Vec<(String, String)> {
    stream.map(|u| describe(&u)).collect().await
}

/// Only the JSON of the updates of `key`, in order.
fn of(updates: &[(String, String)], key: &str) -> Vec<String> {
    updates
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, j)| j.clone())
        .collect()
}

#[tokio::test]
async fn latest_picks_the_newest_valid_date_and_skips_clutter() {
    let dir = dataset();
    let replay = JsonlReplay::new(config(&dir, ReplayMode::Exhaust));
    assert_eq!(replay.summary(), None);
    replay.connect().await.unwrap();
    let summary = replay.summary().unwrap();
    assert_eq!(summary.date, "2025-11-28");
    assert_eq!(summary.dir, dir.path().join("2025-11-28"));
    let groups: Vec<_> = summary
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.hub, g.records))
        .collect();
    assert_eq!(
        groups,
        [
            ("ES_SPX/classic/gex_zero", Hub::Classic, 2),
            ("SPX/orderflow/orderflow", Hub::Orderflow, 2),
            ("SPX/state/gamma_zero", Hub::StateGreeksZero, 3),
        ]
    );
    replay.disconnect().await.unwrap();
}

#[tokio::test]
async fn an_explicit_date_is_used() {
    let dir = dataset();
    let replay = JsonlReplay::new(ReplayConfig {
        date: "2025-11-27".into(),
        ..config(&dir, ReplayMode::Exhaust)
    });
    let updates = replay.updates().unwrap();
    replay.subscribe(&keys(&["*"])).await.unwrap();
    replay.connect().await.unwrap();
    assert_eq!(
        collect(updates).await,
        [("SPX/state/gamma_zero".to_owned(), "{\"day\":27}".to_owned())]
    );
}

#[tokio::test]
async fn exhaust_plays_every_record_once_in_order_then_ends() {
    let dir = dataset();
    let replay = JsonlReplay::new(config(&dir, ReplayMode::Exhaust));
    let updates = replay.updates().unwrap();
    replay.connect().await.unwrap();
    replay.subscribe(&keys(&["*"])).await.unwrap();
    let got = collect(updates).await;
    assert_eq!(got.len(), 7);
    assert_eq!(
        of(&got, "SPX/state/gamma_zero"),
        ["{\"g\":0}", "{\"g\":1}", "{\"g\":2}"]
    );
    assert_eq!(
        of(&got, "SPX/orderflow/orderflow"),
        ["{\"o\":0}", "{\"o\":1}"]
    );
    // Blank and malformed lines are skipped; the truncated last line too.
    assert_eq!(
        of(&got, "ES_SPX/classic/gex_zero"),
        ["{\"c\":0}", "{\"c\":1}"]
    );
    // One record per group per tick: the first tick carries every group, in key order.
    let first: Vec<_> = got[..3].iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        first,
        [
            "ES_SPX/classic/gex_zero",
            "SPX/orderflow/orderflow",
            "SPX/state/gamma_zero"
        ]
    );
}

#[tokio::test]
async fn rotation_wraps_around_and_keeps_order() {
    let dir = dataset();
    let replay = JsonlReplay::new(config(&dir, ReplayMode::Rotation));
    let updates = replay.updates().unwrap();
    replay.connect().await.unwrap();
    replay
        .subscribe(&keys(&["SPX/state/gamma_zero"]))
        .await
        .unwrap();
    let got: Vec<_> = updates.take(7).map(|u| describe(&u)).collect().await;
    let json: Vec<_> = got.iter().map(|(_, j)| j.as_str()).collect();
    assert_eq!(
        json,
        [
            "{\"g\":0}",
            "{\"g\":1}",
            "{\"g\":2}",
            "{\"g\":0}",
            "{\"g\":1}",
            "{\"g\":2}",
            "{\"g\":0}"
        ]
    );
    assert!(got.iter().all(|(k, _)| k == "SPX/state/gamma_zero"));
    replay.disconnect().await.unwrap();
}

#[tokio::test]
async fn only_subscribed_keys_are_played() {
    let dir = dataset();
    let replay = JsonlReplay::new(config(&dir, ReplayMode::Exhaust));
    let updates = replay.updates().unwrap();
    replay.connect().await.unwrap();
    // A key in the right format but without data is accepted and plays nothing.
    replay
        .subscribe(&keys(&["SPX/orderflow/orderflow", "QQQ/state/gex_one"]))
        .await
        .unwrap();
    let got = collect(updates).await;
    assert_eq!(
        got,
        [
            ("SPX/orderflow/orderflow".to_owned(), "{\"o\":0}".to_owned()),
            ("SPX/orderflow/orderflow".to_owned(), "{\"o\":1}".to_owned()),
        ]
    );
}

#[tokio::test]
async fn an_invalid_key_fails_the_whole_call() {
    let dir = dataset();
    let replay = JsonlReplay::new(config(&dir, ReplayMode::Exhaust));
    let updates = replay.updates().unwrap();
    replay.connect().await.unwrap();
    for bad in ["SPX/state/gex_half", "SPX", "SPX/classic/delta_zero"] {
        let err = replay.subscribe(&keys(&["*", bad])).await.unwrap_err();
        assert!(
            matches!(&err, AdapterError::InvalidKey { key, .. } if key == bad),
            "{err:?}"
        );
    }
    // `*` was not subscribed by the failed calls.
    replay
        .subscribe(&keys(&["ES_SPX/classic/gex_zero"]))
        .await
        .unwrap();
    let got = collect(updates).await;
    assert_eq!(of(&got, "ES_SPX/classic/gex_zero").len(), 2);
    assert_eq!(got.len(), 2);
}

#[tokio::test]
async fn the_ticker_filter_limits_what_is_loaded() {
    let dir = dataset();
    let replay = JsonlReplay::new(ReplayConfig {
        tickers: Some(vec!["ES_SPX".into(), "AAPL".into()]),
        ..config(&dir, ReplayMode::Exhaust)
    });
    let updates = replay.updates().unwrap();
    replay.connect().await.unwrap();
    let summary = replay.summary().unwrap();
    assert_eq!(summary.groups.len(), 1);
    assert_eq!(summary.groups[0].key, "ES_SPX/classic/gex_zero");
    replay.subscribe(&keys(&["*"])).await.unwrap();
    let got = collect(updates).await;
    assert!(got.iter().all(|(k, _)| k == "ES_SPX/classic/gex_zero"));
    assert_eq!(got.len(), 2);
}

#[tokio::test]
async fn unsubscribing_stops_a_group_before_the_next_one_starts() {
    let dir = dataset();
    let replay = JsonlReplay::new(config(&dir, ReplayMode::Rotation));
    let mut updates = replay.updates().unwrap();
    replay.connect().await.unwrap();
    replay
        .subscribe(&keys(&["SPX/state/gamma_zero"]))
        .await
        .unwrap();
    let first = describe(&updates.next().await.unwrap());
    assert_eq!(first.0, "SPX/state/gamma_zero");
    replay
        .unsubscribe(&keys(&["SPX/state/gamma_zero", "never/state/gamma_zero"]))
        .await
        .unwrap();
    replay
        .subscribe(&keys(&["SPX/orderflow/orderflow"]))
        .await
        .unwrap();
    // Records of the first group may still be buffered, but none follows the
    // first record of the second group: both changes reached the same tick.
    let mut seen_second = 0;
    while seen_second < 3 {
        let (key, _) = describe(&updates.next().await.unwrap());
        if key == "SPX/orderflow/orderflow" {
            seen_second += 1;
        } else {
            assert_eq!(seen_second, 0, "{key} played after it was unsubscribed");
        }
    }
    replay.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_slow_reader_loses_nothing() {
    let dir = dataset();
    let replay = JsonlReplay::new(ReplayConfig {
        buffer: 1,
        ..config(&dir, ReplayMode::Rotation)
    });
    let mut updates = replay.updates().unwrap();
    replay.connect().await.unwrap();
    replay
        .subscribe(&keys(&["SPX/state/gamma_zero"]))
        .await
        .unwrap();
    let mut json = Vec::new();
    for _ in 0..5 {
        // Read slower than the replay ticks, so it has to wait for the reader.
        tokio::time::sleep(Duration::from_millis(50)).await;
        json.push(describe(&updates.next().await.unwrap()).1);
    }
    assert_eq!(
        json,
        [
            "{\"g\":0}",
            "{\"g\":1}",
            "{\"g\":2}",
            "{\"g\":0}",
            "{\"g\":1}"
        ]
    );
    replay.disconnect().await.unwrap();
}

/// The replay's own error inside an adapter error.
fn replay_error(err: &AdapterError) -> &ReplayError {
    match err {
        AdapterError::Source { adapter, error } if adapter == "replay" => error
            .downcast_ref::<ReplayError>()
            .unwrap_or_else(|| panic!("not a replay error: {err:?}")),
        other => panic!("not the replay's own failure: {other:?}"),
    }
}

#[tokio::test]
async fn missing_data_is_a_clear_error() {
    let dir = dataset();
    let missing = dir.path().join("nowhere");
    let replay = JsonlReplay::new(ReplayConfig {
        data_dir: missing.clone(),
        ..config(&dir, ReplayMode::Exhaust)
    });
    let err = replay.connect().await.unwrap_err();
    assert!(
        matches!(replay_error(&err), ReplayError::DataDirNotFound { path } if *path == missing)
    );
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );

    let replay = JsonlReplay::new(ReplayConfig {
        date: "2025-01-02".into(),
        ..config(&dir, ReplayMode::Exhaust)
    });
    let err = replay.connect().await.unwrap_err();
    assert!(
        matches!(replay_error(&err), ReplayError::DateNotFound { date, path }
            if date == "2025-01-02" && *path == dir.path().join("2025-01-02")),
        "{err:?}"
    );

    let replay = JsonlReplay::new(ReplayConfig {
        date: "2025-13-01".into(),
        ..config(&dir, ReplayMode::Exhaust)
    });
    let err = replay.connect().await.unwrap_err();
    assert!(matches!(
        replay_error(&err),
        ReplayError::InvalidDate { date } if date == "2025-13-01"
    ));

    let empty = tempfile::tempdir().unwrap();
    fs::create_dir(empty.path().join("not-a-date")).unwrap();
    let replay = JsonlReplay::new(config(&empty, ReplayMode::Exhaust));
    let err = replay.connect().await.unwrap_err();
    assert!(matches!(
        replay_error(&err),
        ReplayError::NoDatedFolder { path } if path == empty.path()
    ));

    let replay = JsonlReplay::new(ReplayConfig {
        tickers: Some(vec!["AAPL".into()]),
        ..config(&dir, ReplayMode::Exhaust)
    });
    let err = replay.connect().await.unwrap_err();
    assert!(matches!(
        replay_error(&err),
        ReplayError::NoRecords { path } if *path == dir.path().join("2025-11-28")
    ));

    let replay = JsonlReplay::new(ReplayConfig {
        interval: Duration::ZERO,
        ..config(&dir, ReplayMode::Exhaust)
    });
    assert!(matches!(
        replay.connect().await,
        Err(AdapterError::InvalidConfig {
            field: "interval_ms",
            ..
        })
    ));
    // A failed connect leaves the adapter usable.
    assert_eq!(replay.summary(), None);
    replay.subscribe(&keys(&["*"])).await.unwrap();
}

#[tokio::test]
async fn works_as_a_shared_trait_object() {
    let dir = dataset();
    let adapter: Arc<dyn BrokerAdapter> =
        Arc::new(JsonlReplay::new(config(&dir, ReplayMode::Rotation)));
    assert_eq!(adapter.name(), "replay");
    let mut updates = adapter.updates().unwrap();
    assert!(matches!(
        adapter.updates(),
        Err(AdapterError::UpdatesTaken { adapter }) if adapter == "replay"
    ));

    // Calls from several tasks at once.
    let tasks: Vec<_> = ["SPX/state/gamma_zero", "SPX/orderflow/orderflow"]
        .into_iter()
        .map(|key| {
            let adapter = Arc::clone(&adapter);
            tokio::spawn(async move {
                adapter.connect().await.unwrap();
                adapter.subscribe(&[key.to_owned()]).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut keys_seen = std::collections::BTreeSet::new();
    while keys_seen.len() < 2 {
        keys_seen.insert(describe(&updates.next().await.unwrap()).0);
    }

    adapter.disconnect().await.unwrap();
    adapter.disconnect().await.unwrap();
    // Whatever was buffered drains, then the stream ends.
    while updates.next().await.is_some() {}
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
async fn disconnect_before_connect_ends_the_stream() {
    let dir = dataset();
    let replay = JsonlReplay::new(config(&dir, ReplayMode::Rotation));
    let mut updates = replay.updates().unwrap();
    replay.disconnect().await.unwrap();
    assert_eq!(updates.next().await, None);
}
