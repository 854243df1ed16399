//! `SqliteUserStore`: user accounts on SQLite (`users`, usernames unique and
//! case-sensitive: SQLite compares TEXT bytewise).

use async_trait::async_trait;
use im_core::id::UserId;
use im_core::model::User;
use im_core::ports::UserStore;
use im_core::{Error, Result};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;

use super::{from_db, map_err, to_db};
use crate::sql::{chunks, padded, placeholders};

const SELECT: &str =
    "SELECT id, username, password_hash, created_at, display_name, avatar_url FROM users";

/// User accounts on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteUserStore {
    pool: SqlitePool,
}

fn user(r: &SqliteRow) -> Result<User> {
    let f = || -> std::result::Result<User, sqlx::Error> {
        Ok(User {
            id: UserId(from_db(r.try_get("id")?)),
            username: r.try_get("username")?,
            password_hash: r.try_get("password_hash")?,
            created_at: r.try_get("created_at")?,
            display_name: r.try_get("display_name")?,
            avatar_url: r.try_get("avatar_url")?,
        })
    };
    f().map_err(|e| map_err("read user", e))
}

impl SqliteUserStore {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        SqliteUserStore { pool }
    }
}

#[async_trait]
impl UserStore for SqliteUserStore {
    async fn create(&self, u: &User) -> Result<()> {
        if u.username.chars().count() > 32 {
            return Err(Error::InvalidArgument(
                "username longer than 32 characters".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(to_db(u.id.0))
        .bind(&u.username)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| match map_err("create user", e) {
            Error::Conflict(_) => Error::Conflict(format!("username {:?} is taken", u.username)),
            other => other,
        })?;
        Ok(())
    }

    async fn get(&self, id: UserId) -> Result<Option<User>> {
        let row = sqlx::query(&format!("{SELECT} WHERE id = ?"))
            .bind(to_db(id.0))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map_err("get user", e))?;
        row.as_ref().map(user).transpose()
    }

    async fn by_username(&self, username: &str) -> Result<Option<User>> {
        let row = sqlx::query(&format!("{SELECT} WHERE username = ?"))
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map_err("get user", e))?;
        row.as_ref().map(user).transpose()
    }

    async fn existing(&self, ids: &[UserId]) -> Result<Vec<UserId>> {
        let mut found = Vec::new();
        for (start, len, shape) in chunks(ids.len()) {
            // Padded with the last id, so each statement has one of few shapes.
            let sql = format!("SELECT id FROM users WHERE id IN ({})", placeholders(shape));
            let mut q = sqlx::query_scalar::<sqlx::Sqlite, i64>(&sql);
            for i in (start..start + len).chain(std::iter::repeat_n(start + len - 1, shape - len)) {
                q = q.bind(to_db(ids[i].0));
            }
            let got = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err("existing users", e))?;
            found.extend(got.into_iter().map(|id| UserId(from_db(id))));
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    async fn get_many(&self, ids: &[UserId]) -> Result<Vec<User>> {
        let mut found = Vec::new();
        for (start, len, shape) in chunks(ids.len()) {
            // Padded with the last id, so each statement has one of few shapes.
            let sql = format!("{SELECT} WHERE id IN ({})", placeholders(shape));
            let mut q = sqlx::query::<sqlx::Sqlite>(&sql);
            for i in padded(start, len, shape) {
                q = q.bind(to_db(ids[i].0));
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err("get users", e))?;
            for r in &rows {
                found.push(user(r)?);
            }
        }
        found.sort_unstable_by_key(|u| u.id);
        found.dedup_by_key(|u| u.id);
        Ok(found)
    }

    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<()> {
        // Matched rows count, so setting the same profile again is a match.
        let n = sqlx::query("UPDATE users SET display_name = ?, avatar_url = ? WHERE id = ?")
            .bind(display_name)
            .bind(avatar_url)
            .bind(to_db(id.0))
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("set profile", e))?
            .rows_affected();
        if n == 0 {
            return Err(Error::NotFound(format!("no user {id}")));
        }
        Ok(())
    }

    async fn search(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<User>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // GLOB is case-sensitive (LIKE is not, for ASCII), and TEXT compares
        // bytewise (BINARY), so `>` and ORDER BY are byte order; a literal
        // prefix makes GLOB a range scan of the unique index.
        // GLOB's wildcards (`*`, `?`, `[`) match themselves inside brackets.
        let mut pattern = String::with_capacity(prefix.len() + 4);
        for ch in prefix.chars() {
            match ch {
                '*' | '?' | '[' => {
                    pattern.push('[');
                    pattern.push(ch);
                    pattern.push(']');
                }
                _ => pattern.push(ch),
            }
        }
        pattern.push('*');
        let sql = match after {
            Some(_) => {
                format!("{SELECT} WHERE username GLOB ? AND username > ? ORDER BY username LIMIT ?")
            }
            None => format!("{SELECT} WHERE username GLOB ? ORDER BY username LIMIT ?"),
        };
        let mut q = sqlx::query(&sql).bind(pattern);
        if let Some(a) = after {
            q = q.bind(a);
        }
        let rows = q
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("search users", e))?;
        rows.iter().map(user).collect()
    }
}
