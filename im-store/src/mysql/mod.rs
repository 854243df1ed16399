//! MySQL / MariaDB stores (sqlx, runtime queries only, so building needs no
//! database): the message archive, user accounts and groups, on one pool.
//!
//! The schema lives in `migrations/mysql/*.sql`, embedded in the binary and
//! applied on connect when `MySqlConfig::run_migrations` is set (sqlx keeps
//! track in `_sqlx_migrations`). Tables: `users`, `` `groups` ``,
//! `group_members`, `messages` (whose `UNIQUE (conversation_id, seq)` is
//! also the history index), `conversations`, `user_conversations`, the
//! mention index (`conversation_mentions`, `conversation_all_mentions`), for
//! notifications `push_devices` and `notify_settings`, and for contacts
//! `contacts`, `contact_requests` and `blocks`.
//!
//! [`MySqlShards`] spreads the archive (`messages`, `conversations`,
//! `user_conversations` and the mention index) over several databases by
//! conversation.

mod reshard;
mod shards;

use im_core::Error;
use sqlx::MySql;

use crate::sql::{engine_stores, SqlConfig, SqlStore};

pub use reshard::ReshardReport;
pub use shards::redact;
pub use shards::MySqlShards;

engine_stores!(
    "MySQL",
    MySql,
    MySqlUserStore,
    MySqlGroupStore,
    MySqlMessageStore,
    MySqlConversationStore,
    MySqlContactStore,
    MySqlDeviceStore
);

/// The default database URL (`DATABASE_URL` overrides it in [`MySqlConfig::from_env`]).
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// How long [`MySqlStore::migrate`] waits for another process's migration.
pub const MIGRATION_LOCK_WAIT_SECS: i64 = 120;

/// The embedded MySQL migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

pub(crate) fn map_err(what: &str, e: sqlx::Error) -> Error {
    crate::sql::map_err("mysql", what, e)
}

/// A text column. Columns with a binary collation (`utf8mb4_bin`,
/// `ascii_bin`) come back flagged binary, which sqlx will not decode as
/// `String`, so they are read as bytes and checked to be UTF-8.
pub(crate) fn text(r: &sqlx::mysql::MySqlRow, col: &str) -> Result<String, sqlx::Error> {
    use sqlx::Row;
    match r.try_get::<String, _>(col) {
        Ok(s) => Ok(s),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let b: Vec<u8> = r.try_get(col)?;
            String::from_utf8(b).map_err(|e| sqlx::Error::ColumnDecode {
                index: col.to_owned(),
                source: Box::new(e),
            })
        }
        Err(e) => Err(e),
    }
}

/// A nullable text column (see [`text`]).
pub(crate) fn opt_text(
    r: &sqlx::mysql::MySqlRow,
    col: &str,
) -> Result<Option<String>, sqlx::Error> {
    use sqlx::Row;
    match r.try_get::<Option<String>, _>(col) {
        Ok(s) => Ok(s),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let b: Option<Vec<u8>> = r.try_get(col)?;
            b.map(String::from_utf8)
                .transpose()
                .map_err(|e| sqlx::Error::ColumnDecode {
                    index: col.to_owned(),
                    source: Box::new(e),
                })
        }
        Err(e) => Err(e),
    }
}

/// How to reach MySQL: [`MySqlConfig::from_env`] reads `DATABASE_URL`.
pub type MySqlConfig = SqlConfig;

/// A pool of MySQL connections shared by the stores built from it (cheap
/// to clone): the shared [`SqlStore`] on MySQL, with its accessors
/// (`users()`, `groups()`, `messages()`, `conversations()`, `devices()`,
/// `contacts()`, `pool()`, `close()`).
pub type MySqlStore = SqlStore<MySql>;

impl SqlStore<MySql> {
    /// Connects (and migrates when configured); [`Error::Unavailable`] when
    /// the server cannot be reached.
    pub async fn connect(config: &MySqlConfig) -> Result<MySqlStore, Error> {
        let store = MySqlStore::from_pool(config.pool().await?);
        if config.run_migrations {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Connects to `url` with the default configuration (migrating).
    pub async fn from_url(url: &str) -> Result<MySqlStore, Error> {
        MySqlStore::connect(&MySqlConfig::new(url)).await
    }

    /// Applies the embedded migrations that are not applied yet.
    ///
    /// Safe when several processes start at once on a fresh database: they
    /// take turns under a named lock (`GET_LOCK`, waiting up to
    /// [`MIGRATION_LOCK_WAIT_SECS`]). sqlx's own migration lock asks for
    /// `GET_LOCK(name, -1)`, which MariaDB answers at once with NULL (no
    /// lock), so without this two processes could both run a migration and
    /// leave it marked as failed.
    pub async fn migrate(&self) -> Result<(), Error> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| map_err("migrate", e))?;
        let locked: Option<i64> =
            sqlx::query_scalar("SELECT GET_LOCK(CONCAT('im-migrate:', DATABASE()), ?)")
                .bind(MIGRATION_LOCK_WAIT_SECS)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| map_err("migrate", e))?;
        if locked != Some(1) {
            return Err(Error::unavailable_msg(format!(
                "mysql: another process kept the migration lock for {MIGRATION_LOCK_WAIT_SECS} s"
            )));
        }
        let result = crate::sql::run_migrations::<MySql>(&MIGRATOR, &mut *conn).await;
        // Released by closing the connection too, should this fail.
        let _ = sqlx::query("SELECT RELEASE_LOCK(CONCAT('im-migrate:', DATABASE()))")
            .execute(&mut *conn)
            .await;
        result
    }
}
