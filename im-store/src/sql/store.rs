//! [`SqlStore`]: a pool of one engine and the stores built from it.

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
