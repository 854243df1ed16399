//! # im-core
//!
//! The core of the **im** SDK for instant-messaging backends: identifiers, the
//! domain model, the client protocol, the ports (traits) every backend
//! implements, the services of the four layers written against those ports,
//! and in-memory backends that make a complete single-node system.
//!
//! # Layout
//! - [`id`]: snowflake ids and typed ids (`UserId`, `ConversationId`, …).
//! - [`model`]: users, groups, roles, messages, session routes, queue envelopes.
//! - [`protocol`]: the client frames of the WebSocket protocol.
//! - [`error`]: typed errors by meaning, and the public error codes.
//! - [`ports`]: one trait per pluggable part (queue, stores, sessions, …).
//! - [`compose`]: ports built from other ports (the composed send pipeline).
//! - [`attachments`]: upload limits, object keys and the check of attachment bodies.
//! - [`auth`]: argon2id password hashes and the built-in JWT authenticator.
//! - [`frontdoor`]: limits on login, registration and WebSocket upgrades per address and account.
//! - [`logic`]: the Logic layer (accounts, sessions, send, sync, groups).
//! - [`task`]: the Task layer — what happens after Logic acks: push and persist workers.
//! - [`connect`]: the Connect layer without the network: the session hub and frame handling.
//! - [`node`]: composition of all layers over any set of ports.
//! - [`builder`]: [`NodeBuilder`](builder::NodeBuilder) — a node's ports from
//!   defaults and overrides, each set once.
//! - [`prelude`]: what an embedder needs in one `use`.
//! - [`memory`]: the in-memory backend of every port (the embedded default).
//! - `testkit` (feature `testkit`): one conformance suite per port.
//!
//! `im-core` depends on no network client; `im-store`, `im-discovery` and
//! `im-transport` plug real engines and transports into these ports.
#![warn(missing_docs)]

pub mod attachments;
pub mod auth;
pub mod builder;
pub mod compose;
pub mod connect;
pub mod error;
pub mod frontdoor;
pub mod id;
pub mod logic;
pub mod memory;
pub mod model;
pub mod node;
pub mod ports;
pub mod prelude;
pub mod protocol;
pub mod task;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use error::{Error, ErrorCode, Result};
