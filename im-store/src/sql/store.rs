//! [`SqlStore`]: a pool of one engine and the stores built from it.

use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::Pool;

use super::{
    Engine, SqlContactStore, SqlConversationStore, SqlDeviceStore, SqlGroupStore, SqlMessageStore,
    SqlUserStore,
};

/// A pool on one database shared by the stores built from it (cheap to
/// clone). `im_store::mysql::MySqlStore`, `im_store::sqlite::SqliteStore`
/// and `im_store::postgres::PgStore` are this type on their engine, each
/// with its own way to connect and migrate.
pub struct SqlStore<E: Engine> {
    pub(crate) pool: Pool<E>,
}

impl<E: Engine> Clone for SqlStore<E> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
        }
    }
}

impl<E: Engine> std::fmt::Debug for SqlStore<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("engine", &E::DIALECT.name())
            .field("pool", &self.pool)
            .finish()
    }
}

impl<E: Engine> SqlStore<E> {
    /// Wraps an existing pool (no migration).
    pub fn from_pool(pool: Pool<E>) -> Self {
        SqlStore { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool<E> {
        &self.pool
    }

    /// The message archive.
    pub fn messages(&self) -> SqlMessageStore<E> {
        SqlMessageStore::new(self.pool.clone())
    }

    /// The user accounts.
    pub fn users(&self) -> SqlUserStore<E> {
        SqlUserStore::new(self.pool.clone())
    }

    /// The groups and their members.
    pub fn groups(&self) -> SqlGroupStore<E> {
        SqlGroupStore::new(self.pool.clone())
    }

    /// The conversation lists and read cursors (reading the last messages and
    /// unread counts from this database's message archive).
    pub fn conversations(&self) -> SqlConversationStore<E> {
        SqlConversationStore::new(self.pool.clone())
    }

    /// The push tokens of users' devices and their notification settings
    /// (like users and groups, on the primary database when the MySQL
    /// archive is sharded with `MySqlShards`).
    pub fn devices(&self) -> SqlDeviceStore<E> {
        SqlDeviceStore::new(self.pool.clone())
    }

    /// Contacts, contact requests and blocks between users (like users and
    /// groups, on the primary database when the MySQL archive is sharded).
    pub fn contacts(&self) -> SqlContactStore<E> {
        SqlContactStore::new(self.pool.clone())
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Runs `migrator` on `conn`, mapping its failure onto the core error.
pub(crate) async fn run_migrations<E: Engine>(
    migrator: &sqlx::migrate::Migrator,
    conn: &mut E::Connection,
) -> Result<(), im_core::Error>
where
    E::Connection: sqlx::migrate::Migrate,
{
    migrator.run_direct(conn).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => super::map_err(E::DIALECT.name(), "migrate", e),
        other => im_core::Error::backend(format!("{} migration failed", E::DIALECT.name()), other),
    })
}

/// How to reach a SQL database: pool settings and whether to migrate on
/// connect (`im_store::mysql::MySqlConfig` is this type; PostgreSQL takes it
/// in `PgStore::connect_with`, see `im_store::postgres::config_from_env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlConfig {
    /// The database URL (`mysql://user:password@host:port/database`,
    /// `postgres://…`).
    pub url: String,
    /// Pool size (default 10).
    pub max_connections: u32,
    /// How long a query waits for a free connection (default 5 s).
    pub acquire_timeout: Duration,
    /// Apply the embedded migrations on connect (default true).
    pub run_migrations: bool,
}

impl SqlConfig {
    /// The defaults with another URL.
    pub fn new(url: impl Into<String>) -> Self {
        SqlConfig {
            url: url.into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            run_migrations: true,
        }
    }

    /// The defaults with the URL of `DATABASE_URL` (or
    /// [`crate::mysql::DEFAULT_MYSQL_URL`]).
    pub fn from_env() -> Self {
        SqlConfig::new(
            std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| crate::mysql::DEFAULT_MYSQL_URL.into()),
        )
    }

    /// A pool of `E` with these settings ([`im_core::Error::Unavailable`]
    /// when the server cannot be reached).
    pub(crate) async fn pool<E: Engine>(&self) -> Result<Pool<E>, im_core::Error> {
        PoolOptions::<E>::new()
            .max_connections(self.max_connections.max(1))
            .acquire_timeout(self.acquire_timeout)
            .connect(&self.url)
            .await
            .map_err(|e| super::map_err(E::DIALECT.name(), "connect", e))
    }
}

/// Declares the store types of one engine: `$prefix` + `UserStore` and the
/// rest as aliases of the shared stores on `$db`.
macro_rules! engine_stores {
    ($engine:literal, $db:ty, $users:ident, $groups:ident, $messages:ident,
     $conversations:ident, $contacts:ident, $devices:ident) => {
        #[doc = concat!("User accounts on ", $engine, " (see [`crate::sql::SqlUserStore`]).")]
        pub type $users = $crate::sql::SqlUserStore<$db>;
        #[doc = concat!("Groups and their members on ", $engine, " (see [`crate::sql::SqlGroupStore`]).")]
        pub type $groups = $crate::sql::SqlGroupStore<$db>;
        #[doc = concat!("The message archive on ", $engine, " (see [`crate::sql::SqlMessageStore`]).")]
        pub type $messages = $crate::sql::SqlMessageStore<$db>;
        #[doc = concat!("Conversation lists and read cursors on ", $engine, " (see [`crate::sql::SqlConversationStore`]).")]
        pub type $conversations = $crate::sql::SqlConversationStore<$db>;
        #[doc = concat!("Contacts, requests and blocks on ", $engine, " (see [`crate::sql::SqlContactStore`]).")]
        pub type $contacts = $crate::sql::SqlContactStore<$db>;
        #[doc = concat!("Push tokens and notification settings on ", $engine, " (see [`crate::sql::SqlDeviceStore`]).")]
        pub type $devices = $crate::sql::SqlDeviceStore<$db>;
    };
}
pub(crate) use engine_stores;
