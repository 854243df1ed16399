//! A pool or transaction of any [`Engine`], running `?`-placeholder SQL with
//! [`Arg`]s and mapping failures onto the core error.

use im_core::{Error, Result};
use sqlx::{Pool, Transaction};

use super::engine::{Arg, Engine};

/// Maps a failure of `what` on `E` onto the core error.
pub(crate) fn fail<E: Engine>(what: &str) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| super::map_err(E::DIALECT.name(), what, e)
}

/// A pool of `E` that the stores share (cheap to clone).
pub(crate) struct Db<E: Engine> {
    pub(crate) pool: Pool<E>,
}

impl<E: Engine> Clone for Db<E> {
    fn clone(&self) -> Self {
        Db {
            pool: self.pool.clone(),
        }
    }
}

impl<E: Engine> std::fmt::Debug for Db<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("engine", &E::DIALECT.name())
            .field("pool", &self.pool)
            .finish()
    }
}

impl<E: Engine> Db<E> {
    pub(crate) fn new(pool: Pool<E>) -> Self {
        Db { pool }
    }

    async fn conn(&self, what: &str) -> Result<sqlx::pool::PoolConnection<E>> {
        self.pool.acquire().await.map_err(fail::<E>(what))
    }

    /// Runs a statement; the rows it matched.
    pub(crate) async fn execute(&self, what: &str, sql: &str, args: Vec<Arg<'_>>) -> Result<u64> {
        let mut conn = self.conn(what).await?;
        E::execute(&mut *conn, sql, args)
            .await
            .map_err(fail::<E>(what))
    }

    /// Runs a query; every row.
    pub(crate) async fn fetch_all(
        &self,
        what: &str,
        sql: &str,
        args: Vec<Arg<'_>>,
    ) -> Result<Vec<E::Row>> {
        let mut conn = self.conn(what).await?;
        E::fetch_all(&mut *conn, sql, args)
            .await
            .map_err(fail::<E>(what))
    }

    /// Runs a query; its first row.
    pub(crate) async fn fetch_optional(
        &self,
        what: &str,
        sql: &str,
        args: Vec<Arg<'_>>,
    ) -> Result<Option<E::Row>> {
        let mut conn = self.conn(what).await?;
        E::fetch_optional(&mut *conn, sql, args)
            .await
            .map_err(fail::<E>(what))
    }

    /// Starts a transaction (rolled back when dropped uncommitted).
    pub(crate) async fn begin(&self) -> Result<Tx<E>> {
        Ok(Tx {
            tx: self.pool.begin().await.map_err(fail::<E>("begin"))?,
        })
    }
}

/// A transaction of `E`.
pub(crate) struct Tx<E: Engine> {
    tx: Transaction<'static, E>,
}

impl<E: Engine> Tx<E> {
    /// Runs a statement; the rows it matched.
    pub(crate) async fn execute(
        &mut self,
        what: &str,
        sql: &str,
        args: Vec<Arg<'_>>,
    ) -> Result<u64> {
        E::execute(&mut *self.tx, sql, args)
            .await
            .map_err(fail::<E>(what))
    }

    /// Runs a query; its first row.
    pub(crate) async fn fetch_optional(
        &mut self,
        what: &str,
        sql: &str,
        args: Vec<Arg<'_>>,
    ) -> Result<Option<E::Row>> {
        E::fetch_optional(&mut *self.tx, sql, args)
            .await
            .map_err(fail::<E>(what))
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(fail::<E>("commit"))
    }
}

/// Declares a store over a [`Db`] of any engine, with `Clone`, `Debug` and
/// a crate-private constructor.
macro_rules! store {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<E: $crate::sql::Engine> {
            db: $crate::sql::db::Db<E>,
        }

        impl<E: $crate::sql::Engine> $name<E> {
            pub(crate) fn new(pool: sqlx::Pool<E>) -> Self {
                $name {
                    db: $crate::sql::db::Db::new(pool),
                }
            }
        }

        impl<E: $crate::sql::Engine> Clone for $name<E> {
            fn clone(&self) -> Self {
                $name {
                    db: self.db.clone(),
                }
            }
        }

        impl<E: $crate::sql::Engine> std::fmt::Debug for $name<E> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("db", &self.db)
                    .finish()
            }
        }
    };
}
pub(crate) use store;
