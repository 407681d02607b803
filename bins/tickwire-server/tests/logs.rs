//! The server's logs: no colour codes when stderr is not a terminal, JSON
//! lines with `--log-format json`, and never a secret.

mod support;

use std::path::Path;
use std::time::Duration;

const TOKEN_SECRET: &str = "token-secret-that-must-never-be-logged-0123";
const API_KEY: &str = "api-key-that-must-never-be-logged-4567";

/// The server's stderr from its start until it listens (and a little more),
/// run with `args`.
fn start_up_logs(args: &[&str]) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!(
        "tickwire-logs-{}-{}",
        std::process::id(),
        args.join("-").replace(['/', ' '], "_")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tickwire.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ntoken_secret = \"{TOKEN_SECRET}\"\nadapters = [\"synthetic\"]\n\
             [[api_keys]]\nname = \"desk\"\nkey = \"{API_KEY}\"\n"
        ),
    )
    .unwrap();
    let child = support::server(Path::new(env!("CARGO_BIN_EXE_tickwire-server")))
        .arg("--config")
        .arg(&config)
        .args(["--proxy-listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "debug")
        .spawn()
        .unwrap();
    // What the adapters log as they start comes within the settling time.
    let lines = support::stderr_until(
        child,
        |line| line.contains("tickwire listening"),
        Duration::from_millis(500),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        lines.iter().any(|l| l.contains("tickwire listening")),
        "the server started: {lines:#?}"
    );
    lines
}

fn assert_no_secret(lines: &[String]) {
    for line in lines {
        assert!(
            !line.contains(TOKEN_SECRET),
            "the token secret logged: {line}"
        );
        assert!(!line.contains(API_KEY), "an API key logged: {line}");
    }
}

#[test]
fn text_logs_carry_no_colour_codes_into_a_pipe_nor_secrets() {
    let lines = start_up_logs(&[]);
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "a colour code: {line:?}");
    }
    assert_no_secret(&lines);
    // One line per endpoint, with its URL.
    for path in [
        "/negotiate",
        "/client/hubs/",
        "/ws",
        "/stream",
        "/proxy",
        "/api/v1/ws",
        "/api/v1/ws/asyncapi",
        "/api/v1/publish",
        "/healthz",
        "/readyz",
        "/metrics",
        "/dashboard",
        "/admin/",
        "/socket.io/",
        "/watchlist",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("endpoint:") && l.contains("127.0.0.1:") && l.contains(path)),
            "no endpoint line for {path:?}: {lines:#?}"
        );
    }
}

#[test]
fn json_logs_are_one_object_a_line_without_secrets() {
    let lines = start_up_logs(&["--log-format", "json"]);
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["fields"].is_object(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"message\":\"tickwire listening\"")),
        "{lines:#?}"
    );
    assert_no_secret(&lines);
}
