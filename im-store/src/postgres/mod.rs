//! PostgreSQL stores (sqlx, runtime queries only, so building needs no
//! database): the message archive, user accounts, groups, conversation
//! lists, contacts and the push tokens of devices, on one pool — the shared
//! stores of [`crate::sql`] on the PostgreSQL dialect.
//!
//! The schema lives in `migrations/postgres/*.sql`, embedded in the binary
//! and applied on connect when [`SqlConfig::run_migrations`] is set (sqlx
//! keeps track in `_sqlx_migrations`), under a session advisory lock so
//! several processes may start at once. Ids and seqs (u64) are `BIGINT`
//! holding the same 64 bits read as signed, like SQLite; texts that are
//! compared or ordered use the `"C"` collation (byte order).

use im_core::Error;
use sqlx::Postgres;

use crate::sql::{engine_stores, SqlConfig, SqlStore};

engine_stores!(
    "PostgreSQL",
    Postgres,
    PgUserStore,
    PgGroupStore,
    PgMessageStore,
    PgConversationStore,
    PgContactStore,
    PgDeviceStore
);

/// The default database URL (`POSTGRES_URL` overrides it in [`config_from_env`]).
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long [`PgStore::migrate`] waits for another process's migration.
pub const MIGRATION_LOCK_WAIT_SECS: u64 = 120;

/// The embedded PostgreSQL migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

fn map_err(what: &str, e: sqlx::Error) -> Error {
    crate::sql::map_err("postgres", what, e)
}

/// How to reach PostgreSQL: the defaults of the shared [`SqlConfig`] with
/// the URL of `POSTGRES_URL` (or [`DEFAULT_POSTGRES_URL`]).
pub fn config_from_env() -> SqlConfig {
    SqlConfig::new(std::env::var("POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into()))
}

/// A pool of PostgreSQL connections shared by the stores built from it
/// (cheap to clone): the shared [`SqlStore`] on PostgreSQL, with its
/// accessors (`users()`, `groups()`, `messages()`, `conversations()`,
/// `devices()`, `contacts()`, `pool()`, `close()`).
pub type PgStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to `url` with the default configuration and migrates;
    /// [`Error::Unavailable`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<PgStore, Error> {
        PgStore::connect_with(&SqlConfig::new(url)).await
    }

    /// Connects (and migrates when configured).
    pub async fn connect_with(config: &SqlConfig) -> Result<PgStore, Error> {
        let store = PgStore::from_pool(config.pool().await?);
        if config.run_migrations {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Applies the embedded migrations that are not applied yet.
    ///
    /// Safe when several processes start at once: they take turns under a
    /// session advisory lock on the database's name (`pg_advisory_lock`,
    /// waiting up to [`MIGRATION_LOCK_WAIT_SECS`] through `lock_timeout`).
    pub async fn migrate(&self) -> Result<(), Error> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| map_err("migrate", e))?;
        sqlx::query(&format!(
            "SET lock_timeout = '{}s'",
            MIGRATION_LOCK_WAIT_SECS
        ))
        .execute(&mut *conn)
        .await
        .map_err(|e| map_err("migrate", e))?;
        let locked = sqlx::query(
            "SELECT pg_advisory_lock(hashtextextended('im-migrate:' || current_database(), 0))",
        )
        .execute(&mut *conn)
        .await;
        let reset = sqlx::query("RESET lock_timeout").execute(&mut *conn).await;
        let reset = match (locked, reset) {
            (Ok(_), Ok(_)) => Ok(()),
            (Err(e), _) => Err(match map_err("migrate", e) {
                Error::Timeout(_) => Error::unavailable_msg(format!(
                    "postgres: another process kept the migration lock for \
                     {MIGRATION_LOCK_WAIT_SECS} s"
                )),
                other => other,
            }),
            (Ok(_), Err(e)) => Err(map_err("migrate", e)),
        };
        if let Err(e) = reset {
            // Not back to the pool with a lock or a timeout of ours.
            conn.close_on_drop();
            return Err(e);
        }
        let result = crate::sql::run_migrations::<Postgres>(&MIGRATOR, &mut *conn).await;
        let unlocked = sqlx::query(
            "SELECT pg_advisory_unlock(hashtextextended('im-migrate:' || current_database(), 0))",
        )
        .execute(&mut *conn)
        .await;
        if unlocked.is_err() {
            // Closing the session releases the lock.
            conn.close_on_drop();
        }
        result
    }
}
