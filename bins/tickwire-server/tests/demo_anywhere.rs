//! An installed server (the binary alone, far from the repository) serves
//! the demo's replay from any directory: it carries the demo data and
//! unpacks it into the user's cache once.

mod support;

use std::path::Path;
use std::time::Duration;

/// Runs `binary` in `cwd` with `XDG_CACHE_HOME=cache` until the replay
/// adapter has connected (or 20 s), and returns its log lines.
fn replay_start(binary: &Path, cwd: &Path, cache: &Path) -> Vec<String> {
    let child = support::server(binary)
        .current_dir(cwd)
        .args(["--listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"])
        .env("XDG_CACHE_HOME", cache)
        .env("TICKWIRE_ADAPTERS", "[\"replay\"]")
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    support::stderr_until(
        child,
        |line| line.contains("adapter connected") || line.contains("failed to start"),
        Duration::ZERO,
    )
}

#[test]
fn the_binary_alone_serves_the_demo_from_any_directory() {
    let base = std::env::temp_dir().join(format!("tickwire-demo-anywhere-{}", std::process::id()));
    let (bin, cwd, cache) = (base.join("bin"), base.join("elsewhere"), base.join("cache"));
    for dir in [&bin, &cwd, &cache] {
        std::fs::create_dir_all(dir).unwrap();
    }
    // The binary where an install puts it: nothing of the repository
    // around it or around the working directory.
    let binary = bin.join("tickwire-server");
    std::fs::copy(env!("CARGO_BIN_EXE_tickwire-server"), &binary).unwrap();
    for run in ["first start (unpacks)", "second start (reuses)"] {
        let lines = replay_start(&binary, &cwd, &cache);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("adapter connected") && l.contains("replay")),
            "{run}: the replay runs: {lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("the demo this binary carries")
                    && l.contains(&cache.join("tickwire").display().to_string())),
            "{run}: from the carried demo: {lines:#?}"
        );
    }
    let unpacked: Vec<_> = std::fs::read_dir(cache.join("tickwire"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(unpacked.len(), 1, "unpacked once: {unpacked:?}");
    let _ = std::fs::remove_dir_all(&base);
}
