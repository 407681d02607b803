//! TLS on the gateway's listeners (`[tls]`): rustls, with the certificate
//! chain and key read once at start.
//!
//! A listener that has it completes the TLS handshake (bounded by
//! [`HANDSHAKE_TIMEOUT`]) before HTTP; everything after (routes, upgrades,
//! sessions) is the same over either stream.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tickwire_config::TlsConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::server::TlsStream;

/// Longest a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS side of the listeners.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate chain and key of `config`. The error names the
    /// file and what is wrong with it.
    pub fn load(config: &TlsConfig) -> Result<Tls, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert)
            .and_then(Iterator::collect)
            .map_err(|e| format!("tls.cert {}: {e}", config.cert.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "tls.cert {}: no certificate in the file",
                config.cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&config.key)
            .map_err(|e| format!("tls.key {}: {e}", config.key.display()))?;
        // ring, not rustls's default aws-lc-rs: ring is in the build already
        // (the NATS client's TLS), aws-lc-rs would add a C library to build.
        // rustls 0.23.48 deprecates it for lacking post-quantum key exchange;
        // its classical suites are rustls's defaults otherwise.
        #[allow(deprecated)]
        let provider = Arc::new(ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                format!(
                    "tls: the key {} does not go with the certificate {}: {e}",
                    config.key.display(),
                    config.cert.display()
                )
            })?;
        // The gateway speaks HTTP/1.1 (WebSocket upgrades need it).
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// Completes the TLS handshake of an accepted connection.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let _ = tcp.set_nodelay(true);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await {
            Ok(accepted) => accepted,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}
