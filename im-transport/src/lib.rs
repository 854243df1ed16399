//! # im-transport
//!
//! The network around the im-core services:
//! - [`grpc`]: LogicRpc and ConnectRpc (tonic) — servers wrapping the core
//!   services and clients implementing the core ports, so every layer can run
//!   in its own process.
//! - `ws`: the WebSocket Connect server (tokio-tungstenite).
//! - `webhook`: a `SendHook` that calls your HTTP endpoint before and after sends (HMAC-signed).
//! - [`notify`]: `Notifier`s for offline devices — FCM, APNs, and a signed webhook.
//! - `http`: the HTTP API (axum).
//! - `client`: the Rust client of the public protocol, now the `im-client`
//!   crate, re-exported here so `im_transport::client::…` keeps working.
//! - [`tls`]: rustls certificates for HTTPS/WSS and gRPC over TLS.
#![warn(missing_docs)]

/// The Rust client of the public protocol: the `im-client` crate (depend on
/// it directly to leave the server side out of a client's build).
pub use im_client as client;
pub mod grpc;
pub mod http;
pub mod notify;
pub mod server;
pub mod tls;
pub mod webhook;
pub mod ws;
