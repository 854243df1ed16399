//! TLS trust of a client (rustls with the ring provider).
//!
//! - [`ClientTls`]: the CA certificate(s) (and optional server name) a
//!   client verifies servers against; [`crate::ClientOptions::with_tls`]
//!   turns it into HTTPS and WSS trust, and im-transport's gRPC clients use
//!   the same type.
//! - [`TlsError`]: why a certificate or key could not be loaded. The server
//!   side (im-transport's `tls` module, which re-exports this type) shares it,
//!   hence its key and pair variants.
//! - [`provider`]: the one rustls crypto provider the im crates use.
//!
//! Every loading error names the file it is about.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("TLS: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no PEM certificate, or a malformed one.
    #[error("TLS: {path} holds no valid PEM certificate{detail}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What the parser said (empty when the file has no certificate).
        detail: String,
    },
    /// A file holds no PEM private key (PKCS#8, PKCS#1 or SEC1), or a malformed one.
    #[error("TLS: {path} holds no valid PEM private key: {detail}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// rustls refused the certificate and key (e.g. they do not belong together).
    #[error("TLS: certificate {cert} and key {key} are not usable together: {source}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// rustls or tonic refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The ring crypto provider (the only one the im crates enable).
///
/// rustls 0.23.48 deprecates it for lacking post-quantum key exchange; it is
/// kept deliberately (as tonic's `tls-ring` does) because the aws-lc-rs
/// provider needs cmake and a long C build.
///
/// ```
/// let provider = im_client::tls::provider();
/// assert!(!provider.cipher_suites.is_empty());
/// ```
#[allow(deprecated)]
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate {
            path: path.to_owned(),
            detail: format!(": {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: path.to_owned(),
            detail: String::new(),
        });
    }
    Ok(certs)
}

/// How a client verifies servers: the CA certificate(s) it trusts and,
/// optionally, the name the server certificate must carry (default: the
/// host of the URL, which may be an IP address; the name is used by
/// im-transport's gRPC clients).
///
/// ```no_run
/// # fn demo() -> Result<(), im_client::ClientError> {
/// use im_client::{ClientOptions, ClientTls};
/// let trust = ClientTls::from_ca_file(std::path::Path::new("ca.pem"), None)?;
/// let options = ClientOptions::with_tls(&trust)?;
/// assert!(options.is_tls());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM of the trusted CA certificate(s).
    pub ca_pem: Vec<u8>,
    /// The name to verify instead of the URL's host.
    pub domain: Option<String>,
}

impl ClientTls {
    /// Trusts the PEM certificate(s) in `ca_path` (an error names the file).
    pub fn from_ca_file(ca_path: &Path, domain: Option<String>) -> Result<Self, TlsError> {
        let ca_pem = read(ca_path)?;
        parse_certs(ca_path, &ca_pem)?;
        Ok(ClientTls { ca_pem, domain })
    }

    /// A rustls client configuration trusting these CA certificates (for
    /// HTTPS and WSS clients, e.g. [`crate::ClientOptions::with_tls`]).
    pub fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let path = Path::new("<CA certificate>");
        let mut roots = rustls::RootCertStore::empty();
        for cert in parse_certs(path, &self.ca_pem)? {
            roots.add(cert).map_err(|e| TlsError::Certificate {
                path: path.to_owned(),
                detail: format!(": {e}"),
            })?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Certificate {
                path: path.to_owned(),
                detail: format!(": {e}"),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("im-client-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let err = ClientTls::from_ca_file(&missing, None).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"not a certificate").unwrap();
        let err = ClientTls::from_ca_file(&empty, None).unwrap_err();
        assert!(matches!(err, TlsError::Certificate { .. }), "{err}");
        assert!(err.to_string().contains("empty.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn garbage_trust_does_not_build_a_config() {
        let tls = ClientTls {
            ca_pem: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            domain: None,
        };
        assert!(tls.rustls_config().is_err());
    }
}
