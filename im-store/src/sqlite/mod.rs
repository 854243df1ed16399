//! SQLite stores (sqlx) for durable single-node use: the message archive,
//! user accounts, groups, conversation lists and the push tokens of devices
//! in one database file, in WAL mode.
//!
//! The schema lives in `migrations/sqlite/*.sql`, embedded and applied by
//! [`SqliteStore::open`]. Ids (u64) are stored as INTEGER holding the same 64
//! bits reinterpreted as signed, so every u64 round-trips.

use std::str::FromStr;
use std::time::Duration;

use im_core::Error;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Sqlite;

use crate::sql::{engine_stores, SqlStore};

engine_stores!(
    "SQLite",
    Sqlite,
    SqliteUserStore,
    SqliteGroupStore,
    SqliteMessageStore,
    SqliteConversationStore,
    SqliteContactStore,
    SqliteDeviceStore
);

/// The embedded SQLite migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub(crate) fn map_err(what: &str, e: sqlx::Error) -> Error {
    crate::sql::map_err("sqlite", what, e)
}

/// A pool on one SQLite database shared by the stores built from it (cheap
/// to clone): the shared [`SqlStore`] on SQLite, with its accessors
/// (`users()`, `groups()`, `messages()`, `conversations()`, `devices()`,
/// `contacts()`, `pool()`, `close()`).
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (and migrates) a database: `sqlite://path/to/im.db?mode=rwc`
    /// creates the file if needed; `sqlite::memory:` is a private in-memory
    /// database (one connection, gone when the store is dropped).
    pub async fn open(url: &str) -> Result<SqliteStore, Error> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::InvalidArgument(format!("bad SQLite URL {url:?}: {e}")))?
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if !memory {
            options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
        }
        let pool_options = if memory {
            // Every connection to `:memory:` is its own database: keep one, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(4)
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| map_err("open", e))?;
        let store = SqliteStore::from_pool(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// An in-memory database (`sqlite::memory:`).
    pub async fn memory() -> Result<SqliteStore, Error> {
        SqliteStore::open("sqlite::memory:").await
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), Error> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| map_err("migrate", e))?;
        crate::sql::run_migrations::<Sqlite>(&MIGRATOR, &mut *conn).await
    }
}
