//! What a build without some of the crate's features refuses: a
//! configuration that asks for what is not built fails at start, naming the
//! feature, rather than being quietly ignored.

use crate::{Config, GatewayError, RunOptions};

/// Why a configuration with `[tls]` is refused by a build without TLS.
const NO_TLS: &str = "[tls] is set, but this build has no TLS (the `tls` feature)";

/// Refuses `config` and `options` where they need a feature this build
/// does not have.
pub(crate) fn check(config: &Config, options: &RunOptions) -> Result<(), GatewayError> {
    let mut missing = Vec::new();
    if config.cluster.is_some() && !cfg!(feature = "cluster") {
        missing.push("[cluster] is set, but this build has no clusters (the `cluster` feature)");
    }
    if config.tls.is_some() && !cfg!(feature = "tls") {
        missing.push(NO_TLS);
    }
    if options.proxy_listener.is_some() && !cfg!(feature = "proxy") {
        missing
            .push("a proxy listener is given, but this build has no proxy (the `proxy` feature)");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(GatewayError::InvalidConfig {
            reason: missing.join("; "),
        })
    }
}

#[cfg(feature = "tls")]
pub(crate) use tickwire_services::tls::Tls;

/// Built without TLS: there is never a TLS side ([`check`] refuses `[tls]`).
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub(crate) enum Tls {}

#[cfg(not(feature = "tls"))]
impl Tls {
    pub(crate) fn load(_: &tickwire_config::TlsConfig) -> Result<Tls, String> {
        Err(NO_TLS.to_owned())
    }

    pub(crate) async fn accept(
        &self,
        _: tokio::net::TcpStream,
    ) -> std::io::Result<tokio::net::TcpStream> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format as _, Serialized, Toml};

    use super::*;

    /// `[cluster]` and `[tls]` set, as a file would.
    fn asking_for_everything() -> Config {
        let toml = "[cluster]\nnats_url = \"nats://127.0.0.1:4222\"\nnode_name = \"a\"\n\
                    [tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n";
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .expect("a valid configuration")
    }

    /// Run in every build the test command makes: with all features the
    /// configuration passes; without one, it is refused naming the feature.
    #[tokio::test]
    async fn what_is_not_built_is_refused_by_name() {
        let options = RunOptions {
            proxy_listener: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
            ..RunOptions::default()
        };
        let result = check(&asking_for_everything(), &options);
        let wanted = [
            (cfg!(feature = "cluster"), "`cluster` feature"),
            (cfg!(feature = "tls"), "`tls` feature"),
            (cfg!(feature = "proxy"), "`proxy` feature"),
        ];
        if wanted.iter().all(|(built, _)| *built) {
            assert!(result.is_ok(), "{result:?}");
        } else {
            let reason = result.unwrap_err().to_string();
            for (built, feature) in wanted {
                assert_eq!(reason.contains(feature), !built, "{reason}");
            }
        }
        assert!(check(&Config::default(), &RunOptions::default()).is_ok());

        // An adapter the build lacks is named as such.
        for adapter in ["replay", "synthetic", "zmq"] {
            let config = Config {
                adapters: vec![adapter.to_owned()],
                ..Config::default()
            };
            let made = crate::adapters_from_config(&config);
            let built = match adapter {
                "replay" => cfg!(feature = "replay"),
                "synthetic" => cfg!(feature = "synthetic"),
                _ => cfg!(feature = "zmq"),
            };
            match made {
                Ok(made) => assert!(built && made.list.len() == 1, "{adapter}"),
                Err(e) => {
                    assert!(!built, "{adapter}: {e}");
                    assert!(
                        e.to_string().contains(&format!("`{adapter}` feature")),
                        "{e}"
                    );
                }
            }
        }
    }
}
