//! The v1.1 features end to end over HTTP and WebSocket: the in-process
//! server (HTTP API and `/ws` on one port, memory backends) driven by reqwest
//! and tokio-tungstenite.
//!
//! Waits are event-driven: a test reads frames until the one it expects (with
//! a timeout) or polls an HTTP answer until it shows a persisted state. To
//! show that an event was *not* delivered, a test sends a later marker in the
//! same conversation (events and messages of a conversation are delivered in
//! order) and checks that nothing unwanted arrived before it.
//!
//! `features_tls.rs` runs the same tests (`features/cases.rs`) against the
//! server over HTTPS and WSS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Plain HTTP and WebSocket.
const TLS: bool = false;

include!("features/cases.rs");
