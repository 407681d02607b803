//! Configuration layering: defaults < TOML file < `TICKWIRE_*` environment < flags.

// `Jail::expect_with` closures return figment's (large) error type.
#![allow(clippy::result_large_err)]

use std::path::Path;

use figment::Jail;
use figment::providers::Serialized;
use tickwire_gateway::{Config, GatewayError, ReplayMode};

#[test]
fn defaults_are_documented_values() {
    Jail::expect_with(|_| {
        let config: Config = Config::figment(None).extract()?;
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.prefix, "blue");
        assert_eq!(config.token_ttl_secs, 600);
        assert_eq!(config.api_keys.len(), 1);
        assert_eq!(config.api_keys[0].name, "demo");
        assert_eq!(config.api_keys[0].key.as_deref(), Some("tickwire-demo-key"));
        assert_eq!(config.api_keys[0].roles, ["webpubsub.joinLeaveGroup"]);
        assert_eq!(config.replay.data_dir, Path::new("data/demo"));
        assert_eq!(config.replay.date, "latest");
        assert_eq!(config.replay.interval.as_secs(), 1);
        assert_eq!(config.replay.mode, ReplayMode::Rotation);
        let t = &config.transport;
        assert_eq!(
            (
                t.ping_interval_secs,
                t.pong_timeout_secs,
                t.max_message_bytes,
                t.send_buffer,
                t.write_timeout_secs
            ),
            (54, 60, 524_288, 256, 10)
        );
        Ok(())
    });
}

#[test]
fn file_then_environment_then_flags() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "tickwire.toml",
            r#"
                listen = "127.0.0.1:9000"
                prefix = "green"
                token_ttl_secs = 60

                [[api_keys]]
                name = "alice"
                key_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
                roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]

                [transport]
                send_buffer = 32

                [replay]
                data_dir = "recordings"
                mode = "exhaust"
                interval_ms = 250
            "#,
        )?;
        jail.set_env("TICKWIRE_PREFIX", "red");
        jail.set_env("TICKWIRE_TRANSPORT__PING_INTERVAL_SECS", "30");
        let figment = Config::figment(Some(Path::new("tickwire.toml")));
        let config = Config::from_figment(&figment).map_err(|e| e.to_string())?;
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.prefix, "red", "the environment beats the file");
        assert_eq!(config.token_ttl_secs, 60);
        assert_eq!(
            config.api_keys.len(),
            1,
            "the file's keys replace the demo key"
        );
        assert_eq!(config.api_keys[0].name, "alice");
        assert_eq!(config.transport.send_buffer, 32);
        assert_eq!(config.transport.ping_interval_secs, 30);
        assert_eq!(
            config.transport.pong_timeout_secs, 60,
            "unset nested keys keep defaults"
        );
        assert_eq!(config.replay.data_dir, Path::new("recordings"));
        assert_eq!(config.replay.mode, ReplayMode::Exhaust);
        assert_eq!(config.replay.interval.as_millis(), 250);

        // Flags come last.
        let listen: std::net::SocketAddr = "127.0.0.1:9100".parse().unwrap();
        let config: Config = figment
            .merge(Serialized::default("listen", listen))
            .extract()?;
        assert_eq!(config.listen, listen);
        Ok(())
    });
}

#[test]
fn api_keys_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.set_env("TICKWIRE_LISTEN", "0.0.0.0:8080");
        jail.set_env(
            "TICKWIRE_API_KEYS",
            r#"[{name="bob",key="bobs-key",roles=["webpubsub.joinLeaveGroup"]}]"#,
        );
        let config = Config::from_figment(&Config::figment(None)).map_err(|e| e.to_string())?;
        assert_eq!(config.api_keys[0].name, "bob");
        assert_eq!(config.api_keys[0].key.as_deref(), Some("bobs-key"));
        assert!(!config.listen.ip().is_loopback());
        Ok(())
    });
}

#[test]
fn demo_key_on_a_public_address_is_refused_with_instructions() {
    Jail::expect_with(|jail| {
        jail.set_env("TICKWIRE_LISTEN", "0.0.0.0:8080");
        let err = Config::from_figment(&Config::figment(None)).unwrap_err();
        assert!(matches!(err, GatewayError::DemoKeyOnPublicAddress { .. }));
        let text = err.to_string();
        assert!(
            text.contains("[[api_keys]]") && text.contains("TICKWIRE_API_KEYS"),
            "{text}"
        );
        Ok(())
    });
}

#[test]
fn bad_values_are_refused() {
    Jail::expect_with(|jail| {
        jail.set_env("TICKWIRE_TRANSPORT__SEND_BUFFER", "0");
        assert!(Config::from_figment(&Config::figment(None)).is_err());
        jail.set_env("TICKWIRE_TRANSPORT__SEND_BUFFER", "8");
        jail.set_env("TICKWIRE_PUBLIC_URL", "not a url");
        assert!(Config::from_figment(&Config::figment(None)).is_err());
        Ok(())
    });
}
