//! Configuration layering: defaults < TOML file < `TICKWIRE_*` environment < flags.

// `Jail::expect_with` closures return figment's (large) error type.
#![allow(clippy::result_large_err)]

use std::path::Path;

use figment::Jail;
use figment::providers::Serialized;
use tickwire_gateway::{
    Config, Endpoint, GatewayError, ReplayMode, SlowConsumer, adapters_from_config, replay_config,
    synthetic_config,
};

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
        let replay = replay_config(&config).map_err(|e| e.to_string())?;
        assert_eq!(replay.data_dir, Path::new("data/demo"));
        assert_eq!(replay.date, "latest");
        assert_eq!(replay.interval.as_secs(), 1);
        assert_eq!(replay.mode, ReplayMode::Rotation);
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
        let replay = replay_config(&config).map_err(|e| e.to_string())?;
        assert_eq!(replay.data_dir, Path::new("recordings"));
        assert_eq!(replay.mode, ReplayMode::Exhaust);
        assert_eq!(replay.interval.as_millis(), 250);

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
        jail.set_env("TICKWIRE_PUBLIC_URL", "https://gex.example.com");
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
        let err = GatewayError::from(Config::from_figment(&Config::figment(None)).unwrap_err());
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

#[test]
fn feed_sections_keys_and_synthetic_layer_like_the_rest() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "tickwire.toml",
            r#"
                [[api_keys]]
                name = "desk"
                key = "desk-key"
                roles = ["publish"]
                endpoints = ["negotiate", "stream", "publish"]
                max_connections = 3
                rate_per_minute = 60

                [ws]
                require_key = true
                subscription_limit = 20
                idle_timeout_secs = 30

                [stream]
                max_symbols = 5

                [publish]
                max_body_bytes = 65536

                [synthetic]
                seed = 7
                book_depth = 5
            "#,
        )?;
        jail.set_env("TICKWIRE_SYNTHETIC__ENABLED", "false");
        jail.set_env("TICKWIRE_WS__MESSAGES_PER_SECOND", "20");
        let figment = Config::figment(Some(Path::new("tickwire.toml")));
        let config = Config::from_figment(&figment).map_err(|e| e.to_string())?;
        let key = &config.api_keys[0];
        assert_eq!(
            key.endpoints.as_deref(),
            Some(&[Endpoint::Pubsub, Endpoint::Stream, Endpoint::Publish][..])
        );
        assert_eq!((key.max_connections, key.rate_per_minute), (3, 60));
        assert!(key.allows(Endpoint::Publish) && !key.allows(Endpoint::Ws));
        assert!(config.ws.require_key);
        assert_eq!(config.ws.subscription_limit, 20);
        assert_eq!(config.ws.messages_per_second, 20);
        assert_eq!(config.ws.idle_timeout_secs, 30);
        assert_eq!(
            config.ws.status_interval_secs, 10,
            "unset keys keep defaults"
        );
        assert_eq!(config.stream.max_symbols, 5);
        assert_eq!(config.stream.heartbeat_secs, 30);
        assert_eq!(config.publish.max_body_bytes, 65536);
        let synthetic = synthetic_config(&config).map_err(|e| e.to_string())?;
        assert!(!synthetic.enabled);
        assert_eq!(synthetic.seed, Some(7));
        assert_eq!(synthetic.book_depth, 5);
        Ok(())
    });
}

#[test]
fn feed_defaults_are_the_documents() {
    let config = Config::default();
    let ws = &config.ws;
    assert_eq!(
        (
            ws.require_key,
            ws.subscription_limit,
            ws.messages_per_second,
            ws.flood_close_secs,
            ws.idle_timeout_secs,
            ws.status_interval_secs
        ),
        (false, 100, 10, 3, 300, 10)
    );
    let stream = &config.stream;
    assert_eq!(
        (
            stream.max_symbols,
            stream.idle_timeout_secs,
            stream.heartbeat_secs,
            stream.max_message_bytes
        ),
        (10, 300, 30, 1 << 20)
    );
    let demo = &config.api_keys[0];
    assert_eq!((demo.max_connections, demo.rate_per_minute), (10, 600));
    assert!(demo.allows(Endpoint::Stream) && !demo.allows(Endpoint::Publish));
    assert!(synthetic_config(&config).unwrap().enabled);
}

#[test]
fn bad_feed_values_are_refused() {
    Jail::expect_with(|jail| {
        jail.set_env("TICKWIRE_STREAM__MAX_SYMBOLS", "0");
        assert!(Config::from_figment(&Config::figment(None)).is_err());
        jail.set_env("TICKWIRE_STREAM__MAX_SYMBOLS", "10");
        // An adapter's section is checked by the adapter's own type, when
        // the server makes the adapters at start.
        jail.set_env("TICKWIRE_SYNTHETIC__BOOK_DEPTH", "0");
        let config = Config::from_figment(&Config::figment(None)).map_err(|e| e.to_string())?;
        let err = adapters_from_config(&config).unwrap_err();
        assert!(err.to_string().contains("book_depth"), "{err}");
        // A disabled synthetic market is not checked.
        jail.set_env("TICKWIRE_SYNTHETIC__ENABLED", "false");
        let config = Config::from_figment(&Config::figment(None)).map_err(|e| e.to_string())?;
        assert!(synthetic_config(&config).is_ok());
        // Nor are adapters the configuration does not list.
        jail.set_env("TICKWIRE_ZMQ__HWM", "lots");
        jail.set_env("TICKWIRE_ADAPTERS", "[\"replay\"]");
        let config = Config::from_figment(&Config::figment(None)).map_err(|e| e.to_string())?;
        assert!(adapters_from_config(&config).is_ok());
        Ok(())
    });
}

#[test]
fn slow_consumer_policies_per_endpoint() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "tickwire.toml",
            r#"
                [transport]
                slow_consumer = "drop_oldest"

                [ws]
                slow_consumer = "conflate"
            "#,
        )?;
        jail.set_env("TICKWIRE_STREAM__SLOW_CONSUMER", "disconnect");
        let figment = Config::figment(Some(Path::new("tickwire.toml")));
        let config = Config::from_figment(&figment).map_err(|e| e.to_string())?;
        assert_eq!(config.transport.slow_consumer, SlowConsumer::DropOldest);
        assert_eq!(config.ws.slow_consumer, Some(SlowConsumer::Conflate));
        assert_eq!(config.stream.slow_consumer, Some(SlowConsumer::Disconnect));
        assert_eq!(config.fastws.slow_consumer, None);
        assert_eq!(
            Config::default().transport.slow_consumer,
            SlowConsumer::Disconnect
        );

        jail.set_env("TICKWIRE_TRANSPORT__SLOW_CONSUMER", "wait_forever");
        let figment = Config::figment(Some(Path::new("tickwire.toml")));
        assert!(Config::from_figment(&figment).is_err());
        Ok(())
    });
}

/// `tickwire.example.toml`, at the repository's root.
fn example() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tickwire.example.toml"),
    )
    .expect("tickwire.example.toml")
}

/// `text` with the commented-out options of the adapters' sections
/// (`# key = value`) given, but for those whose value is only an example.
fn adapter_options_uncommented(text: &str) -> String {
    let mut section = "";
    text.lines()
        .map(|line| {
            // A section, or one commented out (whose options stay so).
            if line.starts_with('[') || line.starts_with("# [") {
                section = line.split(']').next().unwrap_or_default();
            }
            let option = line
                .strip_prefix("# ")
                .filter(|rest| rest.split(" = ").next().is_some_and(|k| !k.contains(' ')))
                .filter(|rest| rest.contains(" = "));
            match option {
                Some(rest)
                    if ["[replay", "[synthetic", "[zmq"].contains(&section)
                        && !["seed", "tickers", "universe"]
                            .iter()
                            .any(|k| rest.starts_with(&format!("{k} ="))) =>
                {
                    rest.to_owned()
                }
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_configuration_is_every_option_at_its_default() {
    let text = example();
    Jail::expect_with(|jail| {
        jail.create_file("example.toml", &text)?;
        let config = Config::from_figment(&Config::figment(Some(Path::new("example.toml"))))
            .map_err(|e| e.to_string())?;
        assert_eq!(config, Config::default());
        // The adapters' options it lists commented out are their defaults
        // too: given, they make the same adapters.
        let uncommented = adapter_options_uncommented(&text);
        assert!(uncommented.contains("\nhwm = 1000"), "{uncommented}");
        jail.create_file("uncommented.toml", &uncommented)?;
        let given = Config::from_figment(&Config::figment(Some(Path::new("uncommented.toml"))))
            .map_err(|e| e.to_string())?;
        let same = |what: &str, a: String, b: String| assert_eq!(a, b, "{what}");
        same(
            "replay",
            format!("{:?}", replay_config(&given)),
            format!("{:?}", replay_config(&config)),
        );
        same(
            "synthetic",
            format!("{:?}", synthetic_config(&given)),
            format!("{:?}", synthetic_config(&config)),
        );
        same(
            "zmq",
            format!("{:?}", tickwire_gateway::zmq_config(&given)),
            format!("{:?}", tickwire_gateway::zmq_config(&config)),
        );
        Ok(())
    });
}

#[test]
fn the_example_configuration_lists_every_option() {
    let text = example();
    // Every option set, so that the optional ones are listed too.
    let mut cluster = tickwire_gateway::ClusterConfig::new("nats://x", "a");
    cluster.credentials_file = Some("c".into());
    cluster.user = Some("u".into());
    cluster.password = Some("p".into());
    cluster.token = Some("t".into());
    cluster.tls_ca_file = Some("ca".into());
    let mut config = Config {
        public_url: Some("https://x".into()),
        token_secret: Some("s".into()),
        cluster: Some(cluster),
        tls: Some(tickwire_gateway::TlsConfig {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        }),
        ..Config::default()
    };
    config.ws.slow_consumer = Some(SlowConsumer::Conflate);
    config.stream.slow_consumer = Some(SlowConsumer::Conflate);
    config.fastws.slow_consumer = Some(SlowConsumer::Conflate);
    config.proxy.slow_consumer = Some(SlowConsumer::Conflate);
    config.api_keys[0].endpoints = Some(vec![Endpoint::Ws]);
    let value = figment::value::Value::serialize(&config).unwrap();
    let mut missing = Vec::new();
    for (key, value) in value.into_dict().unwrap() {
        let mut names = vec![key.clone()];
        let nested = match value {
            figment::value::Value::Dict(_, dict) => Some(dict),
            figment::value::Value::Array(_, items) => {
                items.into_iter().next().and_then(|v| v.into_dict())
            }
            _ => None,
        };
        if let Some(dict) = nested {
            names.extend(dict.into_keys());
        }
        for name in names {
            if !text.contains(&format!("{name} =")) && !text.contains(&format!("[{name}]")) {
                missing.push(format!("{key}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in tickwire.example.toml: {missing:?}"
    );
}
