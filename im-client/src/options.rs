//! [`ClientOptions`]: plain HTTP and WS, or HTTPS and WSS with a given trust.

use std::sync::Arc;

use tokio_rustls::rustls;

use crate::error::ClientError;
use crate::tls::ClientTls;

/// How a client reaches the server: plain HTTP and WS, or HTTPS and WSS
/// trusting given CA certificates.
///
/// ```
/// use im_client::ClientOptions;
/// let plain = ClientOptions::default();
/// assert!(!plain.is_tls());
/// ```
#[derive(Clone, Default)]
pub struct ClientOptions {
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ClientOptions {
    /// Trusts `tls`'s CA certificates for `https://` and `wss://` URLs.
    /// A CA that does not load is [`ClientError::Tls`].
    pub fn with_tls(tls: &ClientTls) -> Result<Self, ClientError> {
        Ok(ClientOptions {
            tls: Some(tls.rustls_config()?),
        })
    }

    /// Whether these options speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The rustls configuration of these options, when they speak TLS.
    pub fn rustls_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }

    /// An HTTP client with these options' trust.
    pub fn http_client(&self) -> Result<reqwest::Client, ClientError> {
        match &self.tls {
            None => Ok(reqwest::Client::new()),
            Some(config) => Ok(reqwest::Client::builder()
                .use_preconfigured_tls((**config).clone())
                .build()?),
        }
    }
}
