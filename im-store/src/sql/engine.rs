//! The dialect abstraction: what differs between MySQL / MariaDB, SQLite and
//! PostgreSQL, so that each store's SQL and logic are written once.
//!
//! A store writes its SQL with `?` placeholders and binds [`Arg`]s; the
//! [`Engine`] of its pool binds them (ids as `BIGINT UNSIGNED` on MySQL, as
//! the same 64 bits read as signed on SQLite and PostgreSQL), rewrites the
//! placeholders (`$1, $2, …` on PostgreSQL), runs the statement and decodes
//! columns. The few fragments that differ (quoting, insert-ignore, upserts,
//! locking reads, row-value lists, id order) come from [`Dialect`].

use futures::future::BoxFuture;
use im_core::id::UserId;
use im_core::Error;

/// The SQL dialect of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MySQL / MariaDB (InnoDB).
    MySql,
    /// SQLite (WAL mode).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The engine's name in messages and errors.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// Whether ids and seqs are stored unsigned (MySQL `BIGINT UNSIGNED`);
    /// otherwise they are the u64's 64 bits read as a signed `BIGINT`.
    pub(crate) fn unsigned(self) -> bool {
        self == Dialect::MySql
    }

    /// An identifier that is a keyword on some engine (`groups`).
    pub(crate) fn quote(self, ident: &str) -> String {
        match self {
            Dialect::MySql => format!("`{ident}`"),
            Dialect::Sqlite | Dialect::Postgres => format!("\"{ident}\""),
        }
    }

    /// `INSERT … VALUES …` that skips rows whose key exists already.
    pub(crate) fn insert_ignore(self, table_and_columns: &str, values: &str) -> String {
        match self {
            Dialect::MySql => format!("INSERT IGNORE INTO {table_and_columns} VALUES {values}"),
            Dialect::Sqlite => format!("INSERT OR IGNORE INTO {table_and_columns} VALUES {values}"),
            Dialect::Postgres => {
                format!("INSERT INTO {table_and_columns} VALUES {values} ON CONFLICT DO NOTHING")
            }
        }
    }

    /// An upsert: `mysql` is the `ON DUPLICATE KEY UPDATE` clause, `standard`
    /// the `ON CONFLICT (…) DO …` clause of SQLite and PostgreSQL.
    pub(crate) fn upsert(self, insert: &str, mysql: &str, standard: &str) -> String {
        match self {
            Dialect::MySql => format!("{insert} ON DUPLICATE KEY UPDATE {mysql}"),
            Dialect::Sqlite | Dialect::Postgres => format!("{insert} {standard}"),
        }
    }

    /// ` FOR UPDATE` where a locking read exists (SQLite locks the whole
    /// database from a transaction's first write instead).
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::MySql | Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }

    /// The right-hand side of a row-value `IN` over `list` (`(?, ?), …`).
    pub(crate) fn rows_in(self, list: &str) -> String {
        match self {
            // SQLite wants a subquery on the right of a row-value IN.
            Dialect::Sqlite => format!("(VALUES {list})"),
            Dialect::MySql | Dialect::Postgres => format!("({list})"),
        }
    }

    /// `ORDER BY` terms for an id column in u64 order: ids at or above 2^63
    /// are stored negative where ids are signed, so they sort after the rest.
    pub(crate) fn id_order(self, col: &str) -> String {
        if self.unsigned() {
            col.to_owned()
        } else {
            format!("{col} < 0, {col}")
        }
    }

    /// `AND col > after` in u64 order, with its binds.
    pub(crate) fn id_after(self, col: &str, after: UserId) -> (String, Vec<Arg<'static>>) {
        if self.unsigned() {
            (format!("AND {col} > ?"), vec![Arg::U64(after.0)])
        } else {
            let v = to_signed(after.0);
            (
                format!("AND ({col} < 0, {col}) > (?, ?)"),
                vec![Arg::Bool(v < 0), Arg::I64(v)],
            )
        }
    }

    /// An id (u64) as bound.
    pub(crate) fn id(self, v: u64) -> Arg<'static> {
        if self.unsigned() {
            Arg::U64(v)
        } else {
            Arg::I64(to_signed(v))
        }
    }

    /// A seq as bound: where ids are signed, seqs above `i64::MAX` do not fit
    /// (the message store refuses them).
    pub(crate) fn seq(self, seq: u64) -> Result<Arg<'static>, Error> {
        if self.unsigned() {
            Ok(Arg::U64(seq))
        } else {
            i64::try_from(seq)
                .map(Arg::I64)
                .map_err(|_| Error::InvalidArgument(format!("seq {seq} out of range")))
        }
    }

    /// A seq bound as a lower bound (`seq > ?`): clamped where signed.
    pub(crate) fn seq_floor(self, seq: u64) -> Arg<'static> {
        if self.unsigned() {
            Arg::U64(seq)
        } else {
            Arg::I64(i64::try_from(seq).unwrap_or(i64::MAX))
        }
    }

    /// A row count (`LIMIT ?`).
    pub(crate) fn limit(self, n: usize) -> Arg<'static> {
        if self.unsigned() {
            Arg::U64(u64::try_from(n).unwrap_or(u64::MAX))
        } else {
            Arg::I64(i64::try_from(n).unwrap_or(i64::MAX))
        }
    }

    /// Whether a multi-row upsert may list one key twice (the padding of
    /// [`crate::sql::chunks`]): PostgreSQL refuses to update a row twice in
    /// one statement, so its upserts are not padded.
    pub(crate) fn pads_upserts(self) -> bool {
        self != Dialect::Postgres
    }
}

/// A u64 as the signed BIGINT that stores it (the same 64 bits).
pub(crate) fn to_signed(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// The u64 a signed BIGINT stores.
pub(crate) fn from_signed(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

/// One bound value.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    /// An unsigned integer (MySQL only).
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// A nullable signed integer.
    OptI64(Option<i64>),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(&'a str),
    /// Nullable text.
    OptText(Option<&'a str>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Text(s)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Text(s)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::I64(v)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptI64(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptText(v)
    }
}

/// The result of a fetch.
pub(crate) type Fetched<'a, T> = BoxFuture<'a, Result<T, sqlx::Error>>;

mod sealed {
    pub trait Sealed {}
    impl Sealed for sqlx::MySql {}
    impl Sealed for sqlx::Sqlite {}
    impl Sealed for sqlx::Postgres {}
}

/// A sqlx database the shared stores run on: MySQL, SQLite or PostgreSQL
/// (sealed). Its methods run one statement with `?` placeholders and
/// [`Arg`]s on a connection, and decode columns.
pub trait Engine: sqlx::Database + sealed::Sealed {
    /// The engine's dialect.
    const DIALECT: Dialect;

    /// Runs a statement; the rows it affected (matched, for an `UPDATE`).
    fn execute<'a>(
        conn: &'a mut Self::Connection,
        sql: &'a str,
        args: Vec<Arg<'a>>,
    ) -> Fetched<'a, u64>;

    /// Runs a query; every row.
    fn fetch_all<'a>(
        conn: &'a mut Self::Connection,
        sql: &'a str,
        args: Vec<Arg<'a>>,
    ) -> Fetched<'a, Vec<Self::Row>>;

    /// Runs a query; its first row, if any.
    fn fetch_optional<'a>(
        conn: &'a mut Self::Connection,
        sql: &'a str,
        args: Vec<Arg<'a>>,
    ) -> Fetched<'a, Option<Self::Row>>;

    /// An id or seq column (u64).
    fn u64(row: &Self::Row, col: &str) -> Result<u64, sqlx::Error>;
    /// An integer column (a time or a count).
    fn i64(row: &Self::Row, col: &str) -> Result<i64, sqlx::Error>;
    /// A nullable integer column.
    fn opt_i64(row: &Self::Row, col: &str) -> Result<Option<i64>, sqlx::Error>;
    /// A boolean column.
    fn bool(row: &Self::Row, col: &str) -> Result<bool, sqlx::Error>;
    /// A text column.
    fn text(row: &Self::Row, col: &str) -> Result<String, sqlx::Error>;
    /// A nullable text column.
    fn opt_text(row: &Self::Row, col: &str) -> Result<Option<String>, sqlx::Error>;
}

/// `sql` with its `?` placeholders numbered `$1, $2, …` (PostgreSQL); a `?`
/// inside a quoted string or identifier stays.
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + sql.len() / 4);
    let mut n = 0u32;
    let mut quote: Option<char> = None;
    for ch in sql.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(ch),
            (None, '?') => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
                continue;
            }
            (None, _) => {}
        }
        out.push(ch);
    }
    out
}

/// Binds `args` to the query `q`, u64s converted by `conv`.
macro_rules! bind_all {
    ($q:expr, $args:expr, $conv:path) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::U64(v) => q.bind($conv(v)),
                Arg::I64(v) => q.bind(v),
                Arg::OptI64(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::OptText(v) => q.bind(v),
            };
        }
        q
    }};
}

/// Implements [`Engine`] for `$db`: `$prepare` rewrites a statement, `$conv`
/// turns a u64 into what is bound, and the decoders read columns.
macro_rules! engine {
    ($db:ty, $dialect:expr, prepare: $prepare:expr, bind_u64: $conv:path,
     u64: $u64:expr, int: $int:expr, text: $text:expr, opt_text: $opt_text:expr) => {
        impl Engine for $db {
            const DIALECT: Dialect = $dialect;

            fn execute<'a>(
                conn: &'a mut Self::Connection,
                sql: &'a str,
                args: Vec<Arg<'a>>,
            ) -> Fetched<'a, u64> {
                Box::pin(async move {
                    let sql: std::borrow::Cow<'a, str> = $prepare(sql);
                    let q = bind_all!(sqlx::query::<$db>(&sql), args, $conv);
                    Ok(q.execute(conn).await?.rows_affected())
                })
            }

            fn fetch_all<'a>(
                conn: &'a mut Self::Connection,
                sql: &'a str,
                args: Vec<Arg<'a>>,
            ) -> Fetched<'a, Vec<Self::Row>> {
                Box::pin(async move {
                    let sql: std::borrow::Cow<'a, str> = $prepare(sql);
                    bind_all!(sqlx::query::<$db>(&sql), args, $conv)
                        .fetch_all(conn)
                        .await
                })
            }

            fn fetch_optional<'a>(
                conn: &'a mut Self::Connection,
                sql: &'a str,
                args: Vec<Arg<'a>>,
            ) -> Fetched<'a, Option<Self::Row>> {
                Box::pin(async move {
                    let sql: std::borrow::Cow<'a, str> = $prepare(sql);
                    bind_all!(sqlx::query::<$db>(&sql), args, $conv)
                        .fetch_optional(conn)
                        .await
                })
            }

            fn u64(row: &Self::Row, col: &str) -> Result<u64, sqlx::Error> {
                $u64(row, col)
            }

            fn i64(row: &Self::Row, col: &str) -> Result<i64, sqlx::Error> {
                $int(row, col)
            }

            fn opt_i64(row: &Self::Row, col: &str) -> Result<Option<i64>, sqlx::Error> {
                get(row, col)
            }

            fn bool(row: &Self::Row, col: &str) -> Result<bool, sqlx::Error> {
                get(row, col)
            }

            fn text(row: &Self::Row, col: &str) -> Result<String, sqlx::Error> {
                $text(row, col)
            }

            fn opt_text(row: &Self::Row, col: &str) -> Result<Option<String>, sqlx::Error> {
                $opt_text(row, col)
            }
        }
    };
}

/// A column as `T`.
fn get<'r, R, T>(row: &'r R, col: &str) -> Result<T, sqlx::Error>
where
    R: sqlx::Row,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    row.try_get(col)
}

// MySQL: ids are BIGINT UNSIGNED; binary-collated text comes back as bytes.
engine!(
    sqlx::MySql,
    Dialect::MySql,
    prepare: std::borrow::Cow::Borrowed,
    bind_u64: std::convert::identity,
    u64: get,
    int: get,
    text: crate::mysql::text,
    opt_text: crate::mysql::opt_text
);

// SQLite: ids are INTEGER holding the u64's bits.
engine!(
    sqlx::Sqlite,
    Dialect::Sqlite,
    prepare: std::borrow::Cow::Borrowed,
    bind_u64: to_signed,
    u64: sqlite_u64,
    int: get,
    text: get,
    opt_text: get
);

// PostgreSQL: ids are BIGINT holding the u64's bits; `$n` placeholders.
engine!(
    sqlx::Postgres,
    Dialect::Postgres,
    prepare: pg_sql,
    bind_u64: to_signed,
    u64: pg_u64,
    int: pg_int,
    text: get,
    opt_text: get
);

/// An id column of SQLite.
fn sqlite_u64(row: &sqlx::sqlite::SqliteRow, col: &str) -> Result<u64, sqlx::Error> {
    get::<_, i64>(row, col).map(from_signed)
}

/// PostgreSQL's form of a statement: numbered placeholders.
fn pg_sql(sql: &str) -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Owned(numbered(sql))
}

/// An id column of PostgreSQL.
fn pg_u64(row: &sqlx::postgres::PgRow, col: &str) -> Result<u64, sqlx::Error> {
    pg_int(row, col).map(from_signed)
}

/// An integer column of PostgreSQL: `BIGINT`, or `INTEGER` (an untyped
/// literal such as `SELECT 0 AS kind`).
fn pg_int(row: &sqlx::postgres::PgRow, col: &str) -> Result<i64, sqlx::Error> {
    match get::<_, i64>(row, col) {
        Err(sqlx::Error::ColumnDecode { .. }) => get::<_, i32>(row, col).map(i64::from),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            numbered("SELECT '?', \"a?\" FROM t WHERE a = ? AND b IN (?, ?)"),
            "SELECT '?', \"a?\" FROM t WHERE a = $1 AND b IN ($2, $3)"
        );
    }

    #[test]
    fn ids_round_trip_through_signed() {
        for v in [0, 1, i64::MAX as u64, 1 << 63, u64::MAX] {
            assert_eq!(from_signed(to_signed(v)), v);
        }
        assert_eq!(
            Dialect::Postgres
                .seq(u64::MAX)
                .err()
                .map(|e| e.to_string().contains("out of range")),
            Some(true)
        );
    }
}
