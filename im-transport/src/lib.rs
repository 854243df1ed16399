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
//! - `client`: the Rust client of the public protocol, now the `im-client`
//!   crate, re-exported here so `im_transport::client::…` keeps working.
//! - [`tls`]: rustls certificates for HTTPS/WSS and gRPC over TLS.
//!
//! ## Cargo features
//! All on by default; with `default-features = false` pick what you use.
//!
//! | feature | compiles |
//! |---|---|
//! | `grpc` | [`grpc`] (tonic, prost; `build.rs` codegen runs only with it); implies `tls` |
//! | `pool` | `grpc::LogicPool` and, with `http`, `grpc::DiscoveryLocator`; implies `grpc` |
//! | `http` | `http` (axum API, OpenAPI, ops endpoints) and `server`; implies `tls` |
//! | `ws` | `ws` (the WebSocket Connect server), `app` and `prelude`; implies `http` |
//! | `notify` | [`notify`] (FCM, APNs, webhook notifiers) and `webhook` (the signed send hook) |
//! | `tls` | [`tls`] (server certificates with reload; `ClientTls` from im-client) |
//! | `client` | `client`: the `im-client` crate re-exported |
#![warn(missing_docs)]

#[cfg(feature = "ws")]
pub mod app;
/// The Rust client of the public protocol: the `im-client` crate (depend on
/// it directly to leave the server side out of a client's build).
#[cfg(feature = "client")]
pub use im_client as client;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "notify")]
pub mod notify;
#[cfg(feature = "ws")]
pub mod prelude;
#[cfg(feature = "http")]
pub mod server;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "notify")]
pub mod webhook;
#[cfg(feature = "ws")]
pub mod ws;

/// `docs/embedding.md` (the smallest embedding, also shown in the README and
/// docs/extending.md) compiled and run as a doc test.
#[cfg(all(doctest, feature = "ws"))]
#[doc = include_str!("../../docs/embedding.md")]
pub struct SmallestEmbedding;
