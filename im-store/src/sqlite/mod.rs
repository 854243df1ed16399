//! SQLite stores (sqlx) for durable single-node use: the message archive,
//! user accounts, groups, conversation lists and the push tokens of devices
//! in one database file, in WAL mode.
//!
//! The schema lives in `migrations/sqlite/*.sql`, embedded and applied by
//! [`SqliteStore::open`]. Ids (u64) are stored as INTEGER holding the same 64
//! bits reinterpreted as signed, so every u64 round-trips.

mod contacts;
mod conversations;
mod devices;
mod groups;
mod messages;
mod users;

use std::str::FromStr;
use std::time::Duration;

use im_core::Error;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use contacts::SqliteContactStore;
pub use conversations::SqliteConversationStore;
pub use devices::SqliteDeviceStore;
pub use groups::SqliteGroupStore;
pub use messages::SqliteMessageStore;
pub use users::SqliteUserStore;

/// The embedded SQLite migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub(crate) fn map_err(what: &str, e: sqlx::Error) -> Error {
    crate::sql::map_err("sqlite", what, e)
}

/// A u64 as the INTEGER that stores it.
pub(crate) fn to_db(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// The u64 an INTEGER stores.
pub(crate) fn from_db(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

/// A pool on one SQLite database shared by the stores built from it (cheap to clone).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
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
        let store = SqliteStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// An in-memory database (`sqlite::memory:`).
    pub async fn memory() -> Result<SqliteStore, Error> {
        SqliteStore::open("sqlite::memory:").await
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), Error> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => map_err("migrate", e),
            other => Error::backend("sqlite migration failed", other),
        })
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The message archive.
    pub fn messages(&self) -> SqliteMessageStore {
        SqliteMessageStore::new(self.pool.clone())
    }

    /// The user accounts.
    pub fn users(&self) -> SqliteUserStore {
        SqliteUserStore::new(self.pool.clone())
    }

    /// The groups and their members.
    pub fn groups(&self) -> SqliteGroupStore {
        SqliteGroupStore::new(self.pool.clone())
    }

    /// The conversation lists and read cursors (reading the last messages and
    /// unread counts from this database's message archive).
    pub fn conversations(&self) -> SqliteConversationStore {
        SqliteConversationStore::new(self.pool.clone())
    }

    /// The push tokens of users' devices and their notification settings.
    pub fn devices(&self) -> SqliteDeviceStore {
        SqliteDeviceStore::new(self.pool.clone())
    }

    /// Contacts, contact requests and blocks between users.
    pub fn contacts(&self) -> SqliteContactStore {
        SqliteContactStore::new(self.pool.clone())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
