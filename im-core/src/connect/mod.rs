//! The Connect layer without the network: the node-local [`Hub`] of sessions
//! (bounded outbound queues, fan-out of shared frames) and the
//! [`ConnectService`] that turns client frames into Logic calls. The WebSocket
//! server of `im-transport` only moves bytes between sockets and these.

mod hub;
mod limiter;
mod service;

pub use hub::{CloseReason, Hub, LocalPusher, SessionHandle};
pub use limiter::RateLimiter;
pub use service::{ConnectConfig, ConnectService, SessionAuth, SessionCtx};

/// Close code sent to a session the server closes because it could not keep up
/// with its outbound queue (it should reconnect and sync).
pub const CLOSE_SLOW_CONSUMER: u16 = 4002;
/// Close code after a `kicked` frame (protocol v1.1).
pub const CLOSE_KICKED: u16 = 4001;
/// The `kicked` reason (close code 4001) of a session whose token expired.
pub const TOKEN_EXPIRED: &str = "token expired";
/// Close code on server shutdown ("going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
