//! The tests of `features.rs` (`features/cases.rs`) against the server over
//! HTTPS and WSS: a certificate generated at test time (rcgen), the server
//! serving it with `serve_tls`, and every client — reqwest, tokio-tungstenite
//! and `ImClient` — trusting only it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// HTTPS and WSS.
const TLS: bool = true;

include!("features/cases.rs");
