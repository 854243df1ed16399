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
//! - [`sql`]: one SQL core over three dialects — the stores of users,
//!   groups, messages, conversation lists with read cursors (read from the
//!   message archive next to them), contacts and devices, written once and
//!   generic over an [`sql::Engine`] (MySQL, SQLite, PostgreSQL), with the
//!   [`sql::Dialect`] fragments that differ; [`AnyStore`] /
//!   [`connect_sql`] pick the engine from a URL and hand out the ports as
//!   `Arc<dyn …>`.
//! - [`mysql`]: the durable archive on MySQL / MariaDB (sqlx): `MySqlStore`
//!   (connect, migrate under `GET_LOCK`, embedded `migrations/mysql`), the
//!   archive sharded over several databases (`MySqlShards`) and resharding.
//! - [`postgres`]: the same six stores on PostgreSQL: `PgStore` (connect,
//!   migrate under `pg_advisory_lock`, `migrations/postgres`).
//! - [`sqlite`]: the same six stores on SQLite (WAL mode) for durable
//!   single-node use (`migrations/sqlite`).
//!
//! Every backend passes the conformance suites of `im_core::testkit`; the
//! tests in `tests/` run them against real servers (`REDIS_URL`,
//! `DATABASE_URL`, `POSTGRES_URL`).
//!
//! [`MessageQueue`]: im_core::ports::MessageQueue
//! [`SendPipeline`]: im_core::ports::SendPipeline

#![warn(missing_docs)]

pub mod mysql;
pub mod postgres;
pub mod redis;
#[cfg(feature = "s3")]
pub mod s3;
pub mod sql;
pub mod sqlite;

pub use sql::{connect_sql, AnyStore};
