//! # im-store
//!
//! Production backends of the `im-core` ports on real engines.
//!
//! # Layout
//! - [`redis`]: the hot path on Redis — the Streams [`MessageQueue`]
//!   (`RedisQueue`), session routing, last-seen times and presence
//!   subscriptions (`RedisSessionStore`), per-conversation
//!   seqs (`RedisSequenceAllocator`), dedup keys (`RedisDedupStore`) and the
//!   one-round-trip [`SendPipeline`] (`RedisSendPipeline`, a Lua script), all
//!   built from one [`redis::RedisConn`].
//! - [`mysql`]: the durable archive on MySQL / MariaDB (sqlx): messages,
//!   users, groups, conversation lists with read cursors (read from the
//!   message archive next to them), and the push tokens of devices
//!   (`DeviceStore`), with embedded migrations (`migrations/mysql`).
//! - [`sqlite`]: the same five stores on SQLite (WAL mode) for durable
//!   single-node use (`migrations/sqlite`).
//!
//! Every backend passes the conformance suites of `im_core::testkit`; the
//! tests in `tests/` run them against real servers (`REDIS_URL`,
//! `DATABASE_URL`).
//!
//! [`MessageQueue`]: im_core::ports::MessageQueue
//! [`SendPipeline`]: im_core::ports::SendPipeline

pub mod mysql;
pub mod redis;
#[cfg(feature = "s3")]
pub mod s3;
mod sql;
pub mod sqlite;
