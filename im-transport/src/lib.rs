//! # im-transport
//!
//! The network around the im-core services:
//! - [`app`]: [`AppBuilder`](app::AppBuilder) — a node's HTTP API, `/ws` and
//!   operations endpoints as one axum `Router` (`node.router()`), to serve
//!   alone or nest in your own application; [`prelude`] for embedders.
//! - [`grpc`]: LogicRpc and ConnectRpc (tonic) — servers wrapping the core
//!   services and clients implementing the core ports, so every layer can run
//!   in its own process.
//! - `ws`: the WebSocket Connect server (tokio-tungstenite).
//! - `webhook`: a `SendHook` that calls your HTTP endpoint before and after sends (HMAC-signed).
//! - [`notify`]: `Notifier`s for offline devices — FCM, APNs, and a signed webhook.
//! - `http`: the HTTP API (axum).
//! - `client`: a Rust client of the public protocol.
//! - [`tls`]: rustls certificates for HTTPS/WSS and gRPC over TLS.
#![warn(missing_docs)]

pub mod app;
pub mod client;
pub mod grpc;
pub mod http;
pub mod notify;
pub mod prelude;
pub mod server;
pub mod tls;
pub mod webhook;
pub mod ws;

/// `docs/embedding.md` (the smallest embedding, also shown in the README and
/// docs/extending.md) compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../docs/embedding.md")]
pub struct SmallestEmbedding;
