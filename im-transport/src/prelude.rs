//! What an embedder of the transports needs in one `use` (next to
//! `im_core::prelude::*`): the app builder, `node.router()`, serving, and
//! the settings of the HTTP API and the WebSocket endpoint.
//!
//! ```
//! use im_transport::prelude::*;
//! let app: axum::Router = AppBuilder::new().with_api_config(ApiConfig::default()).build();
//! # let _ = app;
//! ```

pub use crate::app::{AppBuilder, NodeRouter};
pub use crate::http::{ApiConfig, ReadyCheck, WsLocator};
pub use crate::server::{serve, serve_tls};
pub use crate::ws::WsConfig;
