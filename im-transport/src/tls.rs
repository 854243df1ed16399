//! TLS with rustls (ring provider) for the HTTP/WebSocket server and gRPC.
//!
//! - [`TlsFiles`]: a PEM certificate chain and private key on disk.
//! - [`ServerTls`]: the rustls server configuration of
//!   [`crate::server::serve_tls`]; it re-reads the files when they change
//!   (checked every [`ServerTls::reload_interval`]) and keeps serving the
//!   old certificate, with a warning, when the new files do not load.
//! - [`ClientTls`]: the CA (and optional server name) gRPC clients verify
//!   servers against, see [`crate::grpc::GrpcClientConfig::tls`]. It lives
//!   in `im-client` (HTTPS and WSS clients use it too) and is re-exported
//!   here, with [`TlsError`] and [`provider`].
//!
//! Every loading error names the file it is about.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

pub use im_client::tls::{provider, ClientTls, TlsError};

/// How often [`ServerTls`] checks its files for changes by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// A PEM certificate chain (leaf first) and its PEM private key on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// The private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

impl TlsFiles {
    /// The pair `cert_path` / `key_path`.
    pub fn new(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Self {
        TlsFiles {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
        }
    }

    /// Both files from optional settings: `None` when neither is set, an
    /// error naming the missing one when only one is.
    pub fn from_options(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        what: &str,
    ) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => Ok(Some(TlsFiles::new(c, k))),
            (Some(_), None) => Err(TlsError::Config(format!(
                "{what}: a certificate is set but no key"
            ))),
            (None, Some(_)) => Err(TlsError::Config(format!(
                "{what}: a key is set but no certificate"
            ))),
        }
    }

    /// Reads both files as they are (for tonic's `Identity::from_pem`),
    /// after checking that they parse.
    pub fn read_pem(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let cert = read(&self.cert_path)?;
        let key = read(&self.key_path)?;
        let chain = parse_certs(&self.cert_path, &cert)?;
        let parsed = parse_key(&self.key_path, &key)?;
        CertifiedKey::from_der(chain, parsed, &provider()).map_err(|source| TlsError::Pair {
            cert: self.cert_path.clone(),
            key: self.key_path.clone(),
            source,
        })?;
        Ok((cert, key))
    }

    /// Loads the pair into a rustls certified key.
    fn load(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let cert = read(&self.cert_path)?;
        let key = read(&self.key_path)?;
        let chain = parse_certs(&self.cert_path, &cert)?;
        let parsed = parse_key(&self.key_path, &key)?;
        CertifiedKey::from_der(chain, parsed, &provider())
            .map(Arc::new)
            .map_err(|source| TlsError::Pair {
                cert: self.cert_path.clone(),
                key: self.key_path.clone(),
                source,
            })
    }

    /// What identifies the current contents: modification time and length of both files.
    fn stamp(&self) -> Option<Stamp> {
        let one = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().ok(), m.len()))
        };
        Some((one(&self.cert_path)?, one(&self.key_path)?))
    }
}

type Stamp = ((Option<SystemTime>, u64), (Option<SystemTime>, u64));

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

fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Key {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// Hands rustls the current certificate; swapped by [`ServerTls::reload_if_changed`].
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// A TLS server configuration over [`TlsFiles`] that follows changes of
/// the files: [`ServerTls::reload_if_changed`] (called every
/// [`ServerTls::reload_interval`] by [`crate::server::serve_tls`]) loads
/// them again when their modification time or length changed. New
/// connections get the new certificate; open ones keep theirs. Files that
/// do not load keep the old certificate in force (and are tried again at
/// their next change).
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: Arc<CurrentCert>,
    stamp: Mutex<Option<Stamp>>,
    config: Arc<rustls::ServerConfig>,
    reload_interval: Duration,
}

impl ServerTls {
    /// Loads `files` (an error names the file that failed) and builds a
    /// server configuration offering HTTP/1.1 over TLS 1.2 and 1.3.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let stamp = files.stamp();
        let key = files.load()?;
        let current = Arc::new(CurrentCert(RwLock::new(key)));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            files,
            current,
            stamp: Mutex::new(stamp),
            config: Arc::new(config),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        })
    }

    /// Checks the files every `every` instead of [`DEFAULT_RELOAD_INTERVAL`].
    pub fn with_reload_interval(mut self, every: Duration) -> Self {
        self.reload_interval = every.max(Duration::from_millis(10));
        self
    }

    /// How often [`crate::server::serve_tls`] checks the files.
    pub fn reload_interval(&self) -> Duration {
        self.reload_interval
    }

    /// The files served.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The rustls configuration (for a `tokio_rustls::TlsAcceptor`).
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// Loads the files again if they changed since the last look: `Ok(true)`
    /// when a new certificate is now served, `Ok(false)` when nothing
    /// changed, an error (the old certificate stays) when they do not load.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = self.files.stamp();
        {
            let mut seen = self.stamp.lock();
            if now.is_none() || *seen == now {
                // Unchanged, or a file is missing for the moment (being replaced).
                return Ok(false);
            }
            *seen = now;
        }
        let key = self.files.load()?;
        *self.current.0.write() = key;
        Ok(true)
    }

    /// Calls [`ServerTls::reload_if_changed`] every
    /// [`ServerTls::reload_interval`] until `stop`, logging what happens.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.reload_if_changed() {
                Ok(true) => tracing::info!(
                    cert = %self.files.cert_path.display(),
                    "TLS certificate reloaded"
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    error = %e,
                    "TLS files changed but do not load; still serving the previous certificate"
                ),
            }
        }
    }
}
