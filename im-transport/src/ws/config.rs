//! What the upgrade ([`super::server`]) and the sessions ([`super::session`])
//! share: the session settings ([`WsConfig`]) and the route's state
//! ([`WsState`]).

use std::sync::Arc;
use std::time::Duration;

use im_core::connect::ConnectService;
use im_core::frontdoor::FrontDoor;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

/// Limits and timings of WebSocket sessions.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest message; bigger ones close the socket with 1009.
    pub max_message: usize,
    /// Largest frame.
    pub max_frame: usize,
    /// Read buffer per socket (small: idle sockets cost little).
    pub read_buffer: usize,
    /// Bytes buffered for writing before a flush is forced.
    pub write_buffer: usize,
    /// Most bytes buffered for writing before the session is failed.
    pub max_write_buffer: usize,
    /// A server ping is sent this often.
    pub ping_every: Duration,
    /// A session silent for this long (no frame, no pong) is closed.
    pub idle_timeout: Duration,
    /// A write that cannot complete for this long closes the session.
    pub write_timeout: Duration,
    /// Frames a session may have in flight (sends awaiting their ack) before
    /// its reads pause.
    pub max_in_flight: usize,
    /// Allowed `Origin` values; empty: any.
    pub allowed_origins: Vec<String>,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message: 65_536,
            max_frame: 65_536,
            read_buffer: 1024,
            write_buffer: 16 * 1024,
            max_write_buffer: 1024 * 1024,
            ping_every: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(10),
            max_in_flight: 256,
            allowed_origins: Vec::new(),
        }
    }
}

impl WsConfig {
    pub(crate) fn tungstenite(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer)
            .write_buffer_size(self.write_buffer)
            .max_write_buffer_size(self.max_write_buffer.max(self.write_buffer + 1))
            .max_message_size(Some(self.max_message))
            .max_frame_size(Some(self.max_frame))
    }
}

/// What the `/ws` route needs.
#[derive(Clone)]
pub struct WsState {
    /// The node's Connect service.
    pub connect: Arc<ConnectService>,
    /// Session settings.
    pub config: Arc<WsConfig>,
    /// Cancelled on shutdown: sessions close with 1001.
    pub shutdown: CancellationToken,
    /// Limits open sockets and upgrades per client address (429 before the
    /// upgrade); `None`: unlimited.
    pub front_door: Option<Arc<FrontDoor>>,
}
