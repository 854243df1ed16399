//! [`AnyStore`]: one of the three SQL backends, picked from a URL.

use std::sync::Arc;

use im_core::ports::{
    ContactStore, ConversationStore, DeviceStore, GroupStore, MessageStore, UserStore,
};
use im_core::Error;

use super::Dialect;
use crate::mysql::MySqlStore;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;

/// A SQL backend chosen by the scheme of its URL, with the same accessors on
/// every engine, returning the ports as `Arc<dyn …>`:
///
/// | URL | engine |
/// |---|---|
/// | `mysql://…`, `mariadb://…` | [`MySqlStore`] |
/// | `postgres://…`, `postgresql://…` | [`PgStore`] |
/// | `sqlite:…` (`sqlite://path?mode=rwc`, `sqlite::memory:`) | [`SqliteStore`] |
///
/// Connecting migrates (under a lock on MySQL and PostgreSQL, so several
/// processes may start at once).
///
/// ```no_run
/// # async fn demo() -> Result<(), im_core::Error> {
/// use im_store::sql::AnyStore;
///
/// let url = std::env::var("IM_DATABASE_URL")
///     .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
/// let store = AnyStore::connect(&url).await?;
/// let users = store.users(); // Arc<dyn UserStore>
/// let archive = store.messages(); // Arc<dyn MessageStore>
/// # let _ = (users, archive);
/// store.close().await;
/// # Ok(())
/// # }
/// ```
///
/// An in-memory SQLite database needs no server:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), im_core::Error> {
/// let store = im_store::connect_sql("sqlite::memory:").await?;
/// assert_eq!(store.dialect(), im_store::sql::Dialect::Sqlite);
/// assert!(store.users().get(im_core::id::UserId(1)).await?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// MySQL / MariaDB.
    MySql(MySqlStore),
    /// SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

/// Connects to (and migrates) the SQL database of `url`: see [`AnyStore`].
pub async fn connect_sql(url: &str) -> Result<AnyStore, Error> {
    AnyStore::connect(url).await
}

/// Calls `$method` on whichever store `$self` holds and boxes the result.
macro_rules! each {
    ($self:expr, $method:ident) => {
        match $self {
            AnyStore::MySql(s) => Arc::new(s.$method()),
            AnyStore::Sqlite(s) => Arc::new(s.$method()),
            AnyStore::Postgres(s) => Arc::new(s.$method()),
        }
    };
}

impl AnyStore {
    /// The engine a URL names by its scheme, if any.
    pub fn dialect_of(url: &str) -> Option<Dialect> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "mysql" | "mariadb" => Some(Dialect::MySql),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "sqlite" => Some(Dialect::Sqlite),
            _ => None,
        }
    }

    /// Connects to (and migrates) the database of `url`;
    /// [`Error::InvalidArgument`] for a scheme that names no SQL engine.
    pub async fn connect(url: &str) -> Result<AnyStore, Error> {
        match AnyStore::dialect_of(url) {
            Some(Dialect::MySql) => {
                // sqlx knows MariaDB by the `mysql` scheme only.
                let url = match url.get(..8) {
                    Some(s) if s.eq_ignore_ascii_case("mariadb:") => format!("mysql:{}", &url[8..]),
                    _ => url.to_owned(),
                };
                Ok(AnyStore::MySql(MySqlStore::from_url(&url).await?))
            }
            Some(Dialect::Postgres) => Ok(AnyStore::Postgres(PgStore::connect(url).await?)),
            Some(Dialect::Sqlite) => Ok(AnyStore::Sqlite(SqliteStore::open(url).await?)),
            None => Err(Error::InvalidArgument(format!(
                "{:?} is not a SQL database URL (mysql://, mariadb://, postgres://, \
                 postgresql:// or sqlite:)",
                crate::mysql::redact(url)
            ))),
        }
    }

    /// The engine.
    pub fn dialect(&self) -> Dialect {
        match self {
            AnyStore::MySql(_) => Dialect::MySql,
            AnyStore::Sqlite(_) => Dialect::Sqlite,
            AnyStore::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The message archive.
    pub fn messages(&self) -> Arc<dyn MessageStore> {
        each!(self, messages)
    }

    /// The user accounts.
    pub fn users(&self) -> Arc<dyn UserStore> {
        each!(self, users)
    }

    /// The groups and their members.
    pub fn groups(&self) -> Arc<dyn GroupStore> {
        each!(self, groups)
    }

    /// The conversation lists and read cursors.
    pub fn conversations(&self) -> Arc<dyn ConversationStore> {
        each!(self, conversations)
    }

    /// The push tokens of users' devices and their notification settings.
    pub fn devices(&self) -> Arc<dyn DeviceStore> {
        each!(self, devices)
    }

    /// Contacts, contact requests and blocks between users.
    pub fn contacts(&self) -> Arc<dyn ContactStore> {
        each!(self, contacts)
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), Error> {
        match self {
            AnyStore::MySql(s) => s.migrate().await,
            AnyStore::Sqlite(s) => s.migrate().await,
            AnyStore::Postgres(s) => s.migrate().await,
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            AnyStore::MySql(s) => s.close().await,
            AnyStore::Sqlite(s) => s.close().await,
            AnyStore::Postgres(s) => s.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_pick_the_engine() {
        for (url, d) in [
            ("mysql://root@127.0.0.1/test", Some(Dialect::MySql)),
            ("MariaDB://root@db/im", Some(Dialect::MySql)),
            (
                "postgres://postgres@127.0.0.1:5432/test",
                Some(Dialect::Postgres),
            ),
            ("postgresql://u:p@h/db", Some(Dialect::Postgres)),
            ("sqlite://im.db?mode=rwc", Some(Dialect::Sqlite)),
            ("sqlite::memory:", Some(Dialect::Sqlite)),
            ("redis://127.0.0.1", None),
            ("im.db", None),
        ] {
            assert_eq!(AnyStore::dialect_of(url), d, "{url}");
        }
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_an_invalid_argument() {
        let e = AnyStore::connect("redis://u:secret@127.0.0.1").await.err();
        assert!(
            matches!(&e, Some(Error::InvalidArgument(m)) if !m.contains("secret")),
            "{e:?}"
        );
    }
}
