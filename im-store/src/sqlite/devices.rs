//! `SqliteDeviceStore`: push tokens (`push_devices`) and notification
//! settings (`notify_settings`) on SQLite.
//!
//! `register` is one transaction whose first statement writes (the user's
//! settings row, created with the defaults), so it holds the database's
//! write lock from its start: registrations take turns and the bound of
//! [`MAX_DEVICES_PER_USER`] holds under concurrency.

use async_trait::async_trait;
use im_core::id::UserId;
use im_core::ports::{DeviceStore, PushToken, MAX_DEVICES_PER_USER};
use im_core::{Error, Result};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;

use super::{map_err, to_db};
use crate::sql::device_row;

/// Push tokens and notification settings on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteDeviceStore {
    pool: SqlitePool,
}

impl SqliteDeviceStore {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        SqliteDeviceStore { pool }
    }
}

fn push_token(r: &SqliteRow) -> Result<PushToken> {
    let read = || -> std::result::Result<(String, String, String, i64), sqlx::Error> {
        Ok((
            r.try_get("platform")?,
            r.try_get("token")?,
            r.try_get("device")?,
            r.try_get("registered_at")?,
        ))
    };
    let (platform, token, device, registered_at) = read().map_err(|e| map_err("read device", e))?;
    device_row(&platform, token, device, registered_at)
}

#[async_trait]
impl DeviceStore for SqliteDeviceStore {
    async fn register(&self, user: UserId, token: &PushToken) -> Result<()> {
        token.validate()?;
        let what = "register device";
        let uid = to_db(user.0);
        let mut tx = self.pool.begin().await.map_err(|e| map_err("begin", e))?;
        // A write first: the transaction takes the write lock here.
        sqlx::query(
            "INSERT INTO notify_settings (user_id, preview) VALUES (?, 1) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(uid)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err(what, e))?;
        // The token moves here from any other device or user.
        sqlx::query(
            "DELETE FROM push_devices WHERE token = ? AND NOT (user_id = ? AND device = ?)",
        )
        .bind(&token.token)
        .bind(uid)
        .bind(&token.device)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err(what, e))?;
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM push_devices WHERE user_id = ? AND device <> ?",
        )
        .bind(uid)
        .bind(&token.device)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| map_err(what, e))?;
        if usize::try_from(others).unwrap_or(usize::MAX) >= MAX_DEVICES_PER_USER {
            // Dropping the transaction rolls it back.
            return Err(Error::ResourceExhausted(format!(
                "at most {MAX_DEVICES_PER_USER} devices per user"
            )));
        }
        sqlx::query(
            "INSERT INTO push_devices (user_id, device, platform, token, registered_at) \
             VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (user_id, device) DO UPDATE SET platform = excluded.platform, \
               token = excluded.token, registered_at = excluded.registered_at",
        )
        .bind(uid)
        .bind(&token.device)
        .bind(token.platform.as_str())
        .bind(&token.token)
        .bind(token.registered_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err(what, e))?;
        tx.commit().await.map_err(|e| map_err("commit", e))
    }

    async fn list(&self, user: UserId) -> Result<Vec<PushToken>> {
        let rows = sqlx::query(
            "SELECT device, platform, token, registered_at FROM push_devices \
             WHERE user_id = ? ORDER BY device",
        )
        .bind(to_db(user.0))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| map_err("list devices", e))?;
        rows.iter().map(push_token).collect()
    }

    async fn remove(&self, user: UserId, device: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM push_devices WHERE user_id = ? AND device = ?")
            .bind(to_db(user.0))
            .bind(device)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("remove device", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn remove_token(&self, user: UserId, token: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM push_devices WHERE user_id = ? AND token = ?")
            .bind(to_db(user.0))
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("remove token", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_preview(&self, user: UserId, show: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO notify_settings (user_id, preview) VALUES (?, ?) \
             ON CONFLICT (user_id) DO UPDATE SET preview = excluded.preview",
        )
        .bind(to_db(user.0))
        .bind(show)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("set preview", e))?;
        Ok(())
    }

    async fn preview(&self, user: UserId) -> Result<bool> {
        let show: Option<bool> =
            sqlx::query_scalar("SELECT preview FROM notify_settings WHERE user_id = ?")
                .bind(to_db(user.0))
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| map_err("read preview", e))?;
        Ok(show.unwrap_or(true))
    }
}
