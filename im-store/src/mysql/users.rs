//! `MySqlUserStore`: user accounts on MySQL (`users`, usernames unique and
//! case-sensitive through a binary collation).

use async_trait::async_trait;
use im_core::id::UserId;
use im_core::model::User;
use im_core::ports::UserStore;
use im_core::{Error, Result};
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::Row;

use super::{map_err, opt_text, text};
use crate::sql::{chunks, padded, placeholders};

const SELECT: &str =
    "SELECT id, username, password_hash, created_at, display_name, avatar_url FROM users";

/// User accounts on MySQL.
#[derive(Debug, Clone)]
pub struct MySqlUserStore {
    pool: MySqlPool,
}

fn user(r: &MySqlRow) -> Result<User> {
    let f = || -> std::result::Result<User, sqlx::Error> {
        Ok(User {
            id: UserId(r.try_get("id")?),
            username: text(r, "username")?,
            password_hash: text(r, "password_hash")?,
            created_at: r.try_get("created_at")?,
            display_name: opt_text(r, "display_name")?,
            avatar_url: opt_text(r, "avatar_url")?,
        })
    };
    f().map_err(|e| map_err("read user", e))
}

impl MySqlUserStore {
    pub(crate) fn new(pool: MySqlPool) -> Self {
        MySqlUserStore { pool }
    }
}

#[async_trait]
impl UserStore for MySqlUserStore {
    async fn create(&self, u: &User) -> Result<()> {
        if u.username.chars().count() > 32 {
            return Err(Error::InvalidArgument(
                "username longer than 32 characters".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(u.id.0)
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
            .bind(id.0)
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
            let mut q = sqlx::query_scalar::<sqlx::MySql, u64>(&sql);
            for i in (start..start + len).chain(std::iter::repeat_n(start + len - 1, shape - len)) {
                q = q.bind(ids[i].0);
            }
            let got = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err("existing users", e))?;
            found.extend(got.into_iter().map(UserId));
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
            let mut q = sqlx::query::<sqlx::MySql>(&sql);
            for i in padded(start, len, shape) {
                q = q.bind(ids[i].0);
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
            .bind(id.0)
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
        // `username` has a binary collation (utf8mb4_bin): LIKE compares
        // case-sensitively, `>` and ORDER BY by code point, which is UTF-8 byte
        // order; a constant prefix makes LIKE a range scan of the unique key.
        let pattern = format!(
            "{}%",
            prefix
                .replace('!', "!!")
                .replace('%', "!%")
                .replace('_', "!_")
        );
        let sql = match after {
            Some(_) => format!("{SELECT} WHERE username LIKE ? ESCAPE '!' AND username > ? ORDER BY username LIMIT ?"),
            None => format!("{SELECT} WHERE username LIKE ? ESCAPE '!' ORDER BY username LIMIT ?"),
        };
        let mut q = sqlx::query(&sql).bind(pattern);
        if let Some(a) = after {
            q = q.bind(a);
        }
        let rows = q
            .bind(u64::try_from(limit).unwrap_or(u64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("search users", e))?;
        rows.iter().map(user).collect()
    }
}
