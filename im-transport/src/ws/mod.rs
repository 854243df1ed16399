//! The WebSocket Connect server (tokio-tungstenite): `GET /ws` per the
//! protocol. [`server`] authenticates the upgrade request and hands the socket
//! to [`session`], which runs one task per connection moving frames between
//! the socket and the core `ConnectService`. Both read their settings and
//! state from [`config`].

pub mod config;
pub mod server;
pub mod session;

pub use config::{WsConfig, WsState};
pub use server::ws_router;
