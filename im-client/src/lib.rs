//! # im-client
//!
//! A Rust client of the im public protocol (`docs/protocol.md`): log in over
//! HTTP, hold a WebSocket with automatic reconnects, send with automatic
//! `client_msg_id`s retried until acked, and receive messages without
//! duplicates, in seq order per conversation, with gaps closed by `sync`. A
//! connection the server replaces (`kicked`, close 4001, by a multi-device
//! policy, or a logout) ends for good instead of reconnecting, so two clients
//! never take turns kicking each other.
//!
//! It is small on purpose: a bot or a desktop app that only chats compiles
//! im-core (the protocol and model types), tokio, tokio-tungstenite, reqwest
//! and rustls (ring), not the server side (axum, tonic, the Prometheus
//! exporter, discovery), which lives in `im-transport`.
//!
//! ## Layout
//! | module (all items are re-exported here) | holds |
//! |---|---|
//! | `client.rs` | [`ImClient`]: register, log in, and every HTTP API call (profiles, contacts, blocks, read cursors, edits, …); [`Page`] |
//! | `connection.rs` | [`Connection`]: one WebSocket session and the task driving it (reconnect, resend until acked, dedup, seq order, gap sync); [`Event`], [`EVENT_BUFFER`] |
//! | `options.rs` | [`ClientOptions`]: plain HTTP/WS, or HTTPS/WSS with a given trust |
//! | [`tls`] | [`ClientTls`] (trusted CA certificates), [`TlsError`], the rustls provider |
//! | `error.rs` | [`ClientError`] |
//!
//! The protocol's own types ([`im_core::model::Message`],
//! [`im_core::model::Target`], [`im_core::id::UserId`],
//! [`im_core::protocol::SendAck`], …) come from `im-core`, re-exported as
//! [`im_core`].
//!
//! ## Usage
//! ```no_run
//! # async fn demo() -> Result<(), im_client::ClientError> {
//! use im_client::ImClient;
//! use im_client::im_core::model::Target;
//! let api = "http://127.0.0.1:8080";
//! ImClient::register(api, "alice", "password123").await?;
//! let bob = ImClient::register(api, "bob", "password123").await?;
//! let alice = ImClient::login(api, "alice", "password123").await?;
//! let mut conn = alice.connect().await?;
//! let ack = conn.send(Target::User(bob), "hello".into()).await?;
//! println!("sent seq {}", ack.seq);
//! while let Some(m) = conn.next_message().await {
//!     println!("{}: {}", m.from, m.body);
//! }
//! # Ok(()) }
//! ```
//!
//! The people around a conversation (protocol v1.2) are typed methods of
//! [`ImClient`]: profiles ([`ImClient::me`], [`ImClient::lookup`],
//! [`ImClient::search_users`]), contacts ([`ImClient::request_contact`] and
//! the rest), blocks, read cursors and edits. Frames other than messages
//! (`edited`, `contact`, `read`, `recalled`, errors without a send) come as
//! [`Event`]s through [`Connection::next_event`] or [`Connection::take_events`].
//!
//! A runnable example against the quickstart server is
//! `examples/chat.rs` (`cargo run -p im-client --example chat`).
#![warn(missing_docs)]

mod client;
mod connection;
mod error;
mod options;
pub mod tls;

pub use client::{ImClient, Page};
pub use connection::{Connection, Event, EVENT_BUFFER};
pub use error::ClientError;
pub use im_core;
pub use options::ClientOptions;
pub use tls::{ClientTls, TlsError};
