//! The two im ports the host plugs its own parts into:
//! - [`HostLogin`]: im's `Authenticator` — a token is valid when it is a
//!   live session of the host's login (`sessions` table), so the same login
//!   opens im's WebSocket and API; im issues no tokens of its own.
//! - [`HostUsers`]: im's `UserStore` over the host's own `users` table, so
//!   im's users *are* the application's users (sign-up stays the host's).

use async_trait::async_trait;
use im_core::id::UserId;
use im_core::model::User;
use im_core::ports::{Authenticator, Identity, UserStore};
use im_core::{Error, Result};
use sqlx::PgPool;

fn db_err(what: &str, e: sqlx::Error) -> Error {
    Error::unavailable(format!("the application's database ({what})"), e)
}

/// im's `Authenticator`: the host's session tokens.
pub struct HostLogin {
    db: PgPool,
}

impl HostLogin {
    /// Sessions are looked up in `db`.
    pub fn new(db: PgPool) -> Self {
        HostLogin { db }
    }
}

#[async_trait]
impl Authenticator for HostLogin {
    async fn verify(&self, token: &str) -> Result<Identity> {
        match crate::host::session_user(&self.db, token).await {
            Ok(Some(id)) => Ok(Identity {
                user_id: UserId(id as u64),
                expires_at: None,
            }),
            Ok(None) => Err(Error::Unauthenticated(
                "not logged in to the application".into(),
            )),
            Err(e) => Err(db_err("session lookup", e)),
        }
    }
    // `issue` keeps its default (permission_denied): log in through the host.
}

/// im's `UserStore` over the host's `users` table.
pub struct HostUsers {
    db: PgPool,
}

impl HostUsers {
    /// Users are read from `db`.
    pub fn new(db: PgPool) -> Self {
        HostUsers { db }
    }
}

type Row = (i64, String, String, i64, Option<String>, Option<String>);
const COLUMNS: &str = "id, username, password_hash, created_at, display_name, avatar_url";

fn user((id, username, password_hash, created_at, display_name, avatar_url): Row) -> User {
    User {
        id: UserId(id as u64),
        username,
        password_hash,
        created_at,
        display_name,
        avatar_url,
    }
}

#[async_trait]
impl UserStore for HostUsers {
    async fn create(&self, _user: &User) -> Result<()> {
        Err(Error::PermissionDenied(
            "accounts are created by the application: sign up at /signup".into(),
        ))
    }

    async fn get(&self, id: UserId) -> Result<Option<User>> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
                .bind(id.0 as i64)
                .fetch_optional(&self.db)
                .await
                .map_err(|e| db_err("user", e))?;
        Ok(row.map(user))
    }

    async fn by_username(&self, username: &str) -> Result<Option<User>> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE username = $1"))
                .bind(username)
                .fetch_optional(&self.db)
                .await
                .map_err(|e| db_err("user", e))?;
        Ok(row.map(user))
    }

    async fn existing(&self, ids: &[UserId]) -> Result<Vec<UserId>> {
        let ids: Vec<i64> = ids.iter().map(|u| u.0 as i64).collect();
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&self.db)
            .await
            .map_err(|e| db_err("users", e))?;
        Ok(rows.into_iter().map(|(id,)| UserId(id as u64)).collect())
    }

    async fn get_many(&self, ids: &[UserId]) -> Result<Vec<User>> {
        let ids: Vec<i64> = ids.iter().map(|u| u.0 as i64).collect();
        let rows: Vec<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = ANY($1)"))
                .bind(&ids)
                .fetch_all(&self.db)
                .await
                .map_err(|e| db_err("users", e))?;
        Ok(rows.into_iter().map(user).collect())
    }

    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE users SET display_name = $2, avatar_url = $3 WHERE id = $1")
            .bind(id.0 as i64)
            .bind(display_name)
            .bind(avatar_url)
            .execute(&self.db)
            .await
            .map_err(|e| db_err("profile", e))?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("no user {id}")));
        }
        Ok(())
    }

    async fn search(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<User>> {
        // Byte-wise prefix order: a range on the C collation, no LIKE escaping.
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM users
             WHERE username COLLATE \"C\" >= $1 AND left(username, length($1)) = $1
               AND ($2::TEXT IS NULL OR username COLLATE \"C\" > $2)
             ORDER BY username COLLATE \"C\" LIMIT $3"
        ))
        .bind(prefix)
        .bind(after)
        .bind(limit.min(1000) as i64)
        .fetch_all(&self.db)
        .await
        .map_err(|e| db_err("user search", e))?;
        Ok(rows.into_iter().map(user).collect())
    }
}
