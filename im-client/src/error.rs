//! [`ClientError`]: everything a client call can fail with.

use im_core::ErrorCode;

use crate::tls::TlsError;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with a protocol error.
    #[error("{code}: {message}")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The message.
        message: String,
    },
    /// HTTP transport failure.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// WebSocket failure.
    #[error("websocket: {0}")]
    Ws(String),
    /// The connection task ended.
    #[error("connection closed")]
    Closed,
    /// The server replaced this session (`kicked`, close 4001); the
    /// connection does not reconnect.
    #[error("kicked: {0}")]
    Kicked(String),
    /// No ack within the deadline.
    #[error("timed out")]
    Timeout,
    /// The TLS trust of [`crate::ClientOptions::with_tls`] does not load.
    #[error(transparent)]
    Tls(#[from] TlsError),
}
