//! [`SqlDeviceStore`]: push tokens (`push_devices`) and notification
//! settings (`notify_settings`).
//!
//! `register` is one transaction that first locks the user's settings row
//! (creating it with the defaults; on SQLite that write takes the database's
//! write lock), so registrations of one user take turns and the bound of
//! [`MAX_DEVICES_PER_USER`] holds under concurrency; then it takes the token
//! from whoever else holds it, counts the user's other devices and upserts.

use async_trait::async_trait;
use im_core::id::UserId;
use im_core::ports::{DeviceStore, PushToken, MAX_DEVICES_PER_USER};
use im_core::{Error, Result};

use super::db::{fail, store};
use super::device_row;
use super::engine::{Dialect, Engine};

store! {
    /// Push tokens and notification settings on any SQL engine.
    SqlDeviceStore
}

fn push_token<E: Engine>(r: &E::Row) -> Result<PushToken> {
    let read = || -> std::result::Result<_, sqlx::Error> {
        Ok((
            E::text(r, "platform")?,
            E::text(r, "token")?,
            E::text(r, "device")?,
            E::i64(r, "registered_at")?,
        ))
    };
    let (platform, token, device, registered_at) = read().map_err(fail::<E>("read device"))?;
    device_row(&platform, token, device, registered_at)
}

#[async_trait]
impl<E: Engine> DeviceStore for SqlDeviceStore<E> {
    async fn register(&self, user: UserId, token: &PushToken) -> Result<()> {
        token.validate()?;
        let d = E::DIALECT;
        let what = "register device";
        let mut tx = self.db.begin().await?;
        // An exclusive lock on the user's settings row (an upsert that
        // updates it, so an existing row is locked too): registrations of
        // one user take turns from here.
        let lock = d.upsert(
            "INSERT INTO notify_settings (user_id, preview) VALUES (?, TRUE)",
            "user_id = user_id",
            "ON CONFLICT (user_id) DO UPDATE SET preview = notify_settings.preview",
        );
        tx.execute(what, &lock, vec![d.id(user.0)]).await?;
        // The token moves here from any other device or user.
        tx.execute(
            what,
            "DELETE FROM push_devices WHERE token = ? AND NOT (user_id = ? AND device = ?)",
            vec![(&token.token).into(), d.id(user.0), (&token.device).into()],
        )
        .await?;
        // MySQL reads the rows as they are now with a locking read; on
        // PostgreSQL (read committed) each statement sees what committed
        // before it, and an aggregate cannot be locked.
        let count = format!(
            "SELECT COUNT(*) AS n FROM push_devices WHERE user_id = ? AND device <> ?{}",
            if d == Dialect::MySql {
                " FOR UPDATE"
            } else {
                ""
            }
        );
        let row = tx
            .fetch_optional(what, &count, vec![d.id(user.0), (&token.device).into()])
            .await?;
        let others = match row {
            Some(r) => E::i64(&r, "n").map_err(fail::<E>(what))?,
            None => 0,
        };
        if usize::try_from(others).unwrap_or(usize::MAX) >= MAX_DEVICES_PER_USER {
            // Dropping the transaction rolls it back.
            return Err(Error::ResourceExhausted(format!(
                "at most {MAX_DEVICES_PER_USER} devices per user"
            )));
        }
        let upsert = d.upsert(
            "INSERT INTO push_devices (user_id, device, platform, token, registered_at) \
             VALUES (?, ?, ?, ?, ?)",
            "platform = VALUES(platform), token = VALUES(token), \
             registered_at = VALUES(registered_at)",
            "ON CONFLICT (user_id, device) DO UPDATE SET platform = excluded.platform, \
             token = excluded.token, registered_at = excluded.registered_at",
        );
        tx.execute(
            what,
            &upsert,
            vec![
                d.id(user.0),
                (&token.device).into(),
                token.platform.as_str().into(),
                (&token.token).into(),
                token.registered_at.into(),
            ],
        )
        .await?;
        tx.commit().await
    }

    async fn list(&self, user: UserId) -> Result<Vec<PushToken>> {
        let rows = self
            .db
            .fetch_all(
                "list devices",
                "SELECT device, platform, token, registered_at FROM push_devices \
                 WHERE user_id = ? ORDER BY device",
                vec![E::DIALECT.id(user.0)],
            )
            .await?;
        rows.iter().map(push_token::<E>).collect()
    }

    async fn remove(&self, user: UserId, device: &str) -> Result<bool> {
        let n = self
            .db
            .execute(
                "remove device",
                "DELETE FROM push_devices WHERE user_id = ? AND device = ?",
                vec![E::DIALECT.id(user.0), device.into()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn remove_token(&self, user: UserId, token: &str) -> Result<bool> {
        let n = self
            .db
            .execute(
                "remove token",
                "DELETE FROM push_devices WHERE user_id = ? AND token = ?",
                vec![E::DIALECT.id(user.0), token.into()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn set_preview(&self, user: UserId, show: bool) -> Result<()> {
        let d = E::DIALECT;
        let upsert = d.upsert(
            "INSERT INTO notify_settings (user_id, preview) VALUES (?, ?)",
            "preview = VALUES(preview)",
            "ON CONFLICT (user_id) DO UPDATE SET preview = excluded.preview",
        );
        self.db
            .execute("set preview", &upsert, vec![d.id(user.0), show.into()])
            .await?;
        Ok(())
    }

    async fn preview(&self, user: UserId) -> Result<bool> {
        let row = self
            .db
            .fetch_optional(
                "read preview",
                "SELECT preview FROM notify_settings WHERE user_id = ?",
                vec![E::DIALECT.id(user.0)],
            )
            .await?;
        match row {
            Some(r) => E::bool(&r, "preview").map_err(fail::<E>("read preview")),
            None => Ok(true),
        }
    }
}
