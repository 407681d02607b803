//! `tickwire-server --check-config FILE`: the configuration checked as a
//! start would check it, and nothing started.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A configuration file in a directory of its own, removed when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(name: &str, toml: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!(
            "tickwire-check-config-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tickwire.toml");
        std::fs::write(&file, toml).unwrap();
        ConfigFile(file)
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn check(file: &ConfigFile, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tickwire-server"));
    command.arg("--check-config").arg(&file.0);
    for (name, _) in std::env::vars() {
        if name.starts_with("TICKWIRE_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_valid_file_is_said_valid_and_nothing_starts() {
    // Port 1 on loopback: a start would have to bind it; a check does not.
    let file = ConfigFile::new(
        "valid",
        "listen = \"127.0.0.1:1\"\n[ws]\nsubscription_limit = 50\n[synthetic]\nspeed = 2.0\n",
    );
    let out = check(&file, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid"), "{}", text(&out.stdout));
}

#[test]
fn unknown_keys_fail_the_check_naming_the_key_and_its_section() {
    for (name, toml, key) in [
        ("top", "listn = \"127.0.0.1:1\"\n", "listn"),
        ("ws", "[ws]\nsubscripton_limit = 50\n", "subscripton_limit"),
        // An adapter's section is checked by the adapter.
        ("synthetic", "[synthetic]\nsped = 2.0\n", "sped"),
    ] {
        let file = ConfigFile::new(name, toml);
        let out = check(&file, &[]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = text(&out.stderr);
        assert!(err.contains(key), "{name}: {err}");
        assert!(
            err.contains("expected"),
            "{name}, where it is allowed: {err}"
        );
    }
    // The environment is checked with the file.
    let file = ConfigFile::new("env", "");
    let out = check(&file, &[("TICKWIRE_WS__SUBSCRIPTON_LIMIT", "5")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("subscripton_limit"),
        "{}",
        text(&out.stderr)
    );
    // And so are the rules beyond the keys: the demo key on a public address.
    let file = ConfigFile::new("demo", "listen = \"0.0.0.0:8080\"\n");
    let out = check(&file, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("demo"), "{}", text(&out.stderr));
}

#[test]
fn the_readmes_configuration_is_valid() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let block = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in the README");
    // The one placeholder a reader fills in.
    let block = block.replace("<hex sha256 of the key>", &"0".repeat(64));
    let file = ConfigFile::new("readme", &block);
    let out = check(&file, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn print_config_shows_file_environment_and_flags_in_order_without_secrets() {
    let file = ConfigFile::new(
        "print",
        "prefix = \"fromfile\"\ntoken_secret = \"secret-that-stays-hidden-0123456789\"\n\
         [ws]\nsubscription_limit = 7\nmessages_per_second = 3\n\
         [[api_keys]]\nname = \"desk\"\nkey = \"desk-key-in-clear-0123\"\n",
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_tickwire-server"));
    command
        .arg("--config")
        .arg(&file.0)
        .args(["--print-config", "--listen", "127.0.0.1:9999"]);
    for (name, _) in std::env::vars() {
        if name.starts_with("TICKWIRE_") {
            command.env_remove(name);
        }
    }
    // The environment over the file, the flag over the environment.
    command
        .env("TICKWIRE_WS__MESSAGES_PER_SECOND", "9")
        .env("TICKWIRE_LISTEN", "127.0.0.1:7777");
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    for expected in [
        "prefix = \"fromfile\"",
        "subscription_limit = 7",
        "messages_per_second = 9",
        "listen = \"127.0.0.1:9999\"",
        "token_secret = \"(redacted)\"",
        // sha256("desk-key-in-clear-0123")
        "key_sha256 = \"81be24897ee9cccd133e3fa28fcc593a79a6411d382b888ad61e59317f5d667b\"",
    ] {
        assert!(printed.contains(expected), "{expected}: {printed}");
    }
    assert!(!printed.contains("secret-that-stays-hidden"), "{printed}");
    assert!(!printed.contains("desk-key-in-clear"), "{printed}");
    // What it prints is a configuration that checks, for the same keys.
    let again = ConfigFile::new("printed", &printed);
    let out = check(&again, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
