//! `MySqlContactStore`: contacts (`contacts`, both directions), pending
//! requests (`contact_requests`) and blocks (`blocks`) on MySQL.
//!
//! `request`, `respond` and `block` are one transaction each, and each starts
//! by deleting the rows it replaces, so it holds their locks before it reads:
//! two users asking each other at once serialize on the request rows (one
//! of them may be rolled back as a deadlock, a retryable `Unavailable`), and
//! a pair never ends up both contacts and pending. `reach` is one query.

use std::collections::HashSet;

use async_trait::async_trait;
use im_core::id::UserId;
use im_core::ports::{Contact, ContactRequest, ContactStore, Direction, Reach, RequestOutcome};
use im_core::{Error, Result};
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::{MySql, Row, Transaction};

use super::{map_err, opt_text};
use crate::sql::{chunks, padded, values_list};

/// Contacts, requests and blocks on MySQL.
#[derive(Debug, Clone)]
pub struct MySqlContactStore {
    pool: MySqlPool,
}

impl MySqlContactStore {
    pub(crate) fn new(pool: MySqlPool) -> Self {
        MySqlContactStore { pool }
    }
}

fn limit_of(limit: usize) -> u64 {
    u64::try_from(limit).unwrap_or(u64::MAX)
}

fn request_row(r: &MySqlRow) -> Result<ContactRequest> {
    let read = || -> std::result::Result<ContactRequest, sqlx::Error> {
        Ok(ContactRequest {
            from: UserId(r.try_get("from_id")?),
            to: UserId(r.try_get("to_id")?),
            message: opt_text(r, "message")?,
            ts: r.try_get("ts")?,
        })
    };
    read().map_err(|e| map_err("read contact request", e))
}

/// Deletes the pending request `from → to`; whether there was one.
async fn drop_request(
    tx: &mut Transaction<'_, MySql>,
    from: UserId,
    to: UserId,
    what: &str,
) -> Result<bool> {
    let n = sqlx::query("DELETE FROM contact_requests WHERE from_id = ? AND to_id = ?")
        .bind(from.0)
        .bind(to.0)
        .execute(&mut **tx)
        .await
        .map_err(|e| map_err(what, e))?
        .rows_affected();
    Ok(n > 0)
}

/// Makes `a` and `b` contacts (both directions) since `since`.
async fn link(
    tx: &mut Transaction<'_, MySql>,
    a: UserId,
    b: UserId,
    since: i64,
    what: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT IGNORE INTO contacts (user_id, contact_id, since) VALUES (?, ?, ?), (?, ?, ?)",
    )
    .bind(a.0)
    .bind(b.0)
    .bind(since)
    .bind(b.0)
    .bind(a.0)
    .bind(since)
    .execute(&mut **tx)
    .await
    .map_err(|e| map_err(what, e))?;
    Ok(())
}

/// Ends the contact relation of `a` and `b`; whether there was one.
async fn unlink<'e, E>(exec: E, a: UserId, b: UserId, what: &str) -> Result<bool>
where
    E: sqlx::Executor<'e, Database = MySql>,
{
    let n = sqlx::query(
        "DELETE FROM contacts WHERE (user_id = ? AND contact_id = ?) OR (user_id = ? AND contact_id = ?)",
    )
    .bind(a.0)
    .bind(b.0)
    .bind(b.0)
    .bind(a.0)
    .execute(exec)
    .await
    .map_err(|e| map_err(what, e))?
    .rows_affected();
    Ok(n > 0)
}

#[async_trait]
impl ContactStore for MySqlContactStore {
    async fn request(&self, request: &ContactRequest) -> Result<RequestOutcome> {
        let what = "contact request";
        let (a, b) = (request.from, request.to);
        let mut tx = self.pool.begin().await.map_err(|e| map_err("begin", e))?;
        // b asked first: both requests go, and they are contacts.
        if drop_request(&mut tx, b, a, what).await? {
            drop_request(&mut tx, a, b, what).await?;
            link(&mut tx, a, b, request.ts, what).await?;
            tx.commit().await.map_err(|e| map_err("commit", e))?;
            return Ok(RequestOutcome::Accepted);
        }
        let contacts: Option<i64> = sqlx::query_scalar(
            "SELECT since FROM contacts WHERE user_id = ? AND contact_id = ? FOR UPDATE",
        )
        .bind(a.0)
        .bind(b.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| map_err(what, e))?;
        if contacts.is_some() {
            tx.commit().await.map_err(|e| map_err("commit", e))?;
            return Ok(RequestOutcome::AlreadyContacts);
        }
        sqlx::query(
            "INSERT INTO contact_requests (from_id, to_id, message, ts) VALUES (?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE message = VALUES(message), ts = VALUES(ts)",
        )
        .bind(a.0)
        .bind(b.0)
        .bind(request.message.as_deref())
        .bind(request.ts)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err(what, e))?;
        tx.commit().await.map_err(|e| map_err("commit", e))?;
        Ok(RequestOutcome::Pending)
    }

    async fn respond(&self, user: UserId, from: UserId, accept: bool, now: i64) -> Result<()> {
        let what = "respond to contact request";
        let mut tx = self.pool.begin().await.map_err(|e| map_err("begin", e))?;
        if !drop_request(&mut tx, from, user, what).await? {
            return Err(Error::NotFound(format!(
                "no pending contact request from user {from}"
            )));
        }
        if accept {
            drop_request(&mut tx, user, from, what).await?;
            link(&mut tx, user, from, now, what).await?;
        }
        tx.commit().await.map_err(|e| map_err("commit", e))
    }

    async fn cancel(&self, from: UserId, to: UserId) -> Result<()> {
        let n = sqlx::query("DELETE FROM contact_requests WHERE from_id = ? AND to_id = ?")
            .bind(from.0)
            .bind(to.0)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("cancel contact request", e))?
            .rows_affected();
        if n == 0 {
            return Err(Error::NotFound(format!(
                "no pending contact request to user {to}"
            )));
        }
        Ok(())
    }

    async fn remove(&self, user: UserId, other: UserId) -> Result<bool> {
        unlink(&self.pool, user, other, "remove contact").await
    }

    async fn contacts(
        &self,
        user: UserId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<Contact>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT contact_id, since FROM contacts WHERE user_id = ? {} \
             ORDER BY contact_id LIMIT ?",
            if after.is_some() {
                "AND contact_id > ?"
            } else {
                ""
            }
        );
        let mut q = sqlx::query(&sql).bind(user.0);
        if let Some(a) = after {
            q = q.bind(a.0);
        }
        let rows = q
            .bind(limit_of(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("contacts", e))?;
        rows.iter()
            .map(|r| -> std::result::Result<Contact, sqlx::Error> {
                Ok(Contact {
                    user_id: UserId(r.try_get("contact_id")?),
                    since: r.try_get("since")?,
                })
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| map_err("read contact", e))
    }

    async fn requests(
        &self,
        user: UserId,
        direction: Direction,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<ContactRequest>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (mine, other) = match direction {
            Direction::Incoming => ("to_id", "from_id"),
            Direction::Outgoing => ("from_id", "to_id"),
        };
        let sql = format!(
            "SELECT from_id, to_id, message, ts FROM contact_requests WHERE {mine} = ? {} \
             ORDER BY {other} LIMIT ?",
            if after.is_some() {
                format!("AND {other} > ?")
            } else {
                String::new()
            }
        );
        let mut q = sqlx::query(&sql).bind(user.0);
        if let Some(a) = after {
            q = q.bind(a.0);
        }
        let rows = q
            .bind(limit_of(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("contact requests", e))?;
        rows.iter().map(request_row).collect()
    }

    async fn block(&self, user: UserId, other: UserId, now: i64) -> Result<bool> {
        let what = "block";
        let mut tx = self.pool.begin().await.map_err(|e| map_err("begin", e))?;
        unlink(&mut *tx, user, other, what).await?;
        drop_request(&mut tx, user, other, what).await?;
        drop_request(&mut tx, other, user, what).await?;
        let n =
            sqlx::query("INSERT IGNORE INTO blocks (user_id, blocked_id, since) VALUES (?, ?, ?)")
                .bind(user.0)
                .bind(other.0)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| map_err(what, e))?
                .rows_affected();
        tx.commit().await.map_err(|e| map_err("commit", e))?;
        Ok(n > 0)
    }

    async fn unblock(&self, user: UserId, other: UserId) -> Result<bool> {
        let n = sqlx::query("DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?")
            .bind(user.0)
            .bind(other.0)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("unblock", e))?
            .rows_affected();
        Ok(n > 0)
    }

    async fn blocked(
        &self,
        user: UserId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<UserId>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT blocked_id FROM blocks WHERE user_id = ? {} ORDER BY blocked_id LIMIT ?",
            if after.is_some() {
                "AND blocked_id > ?"
            } else {
                ""
            }
        );
        let mut q = sqlx::query_scalar::<MySql, u64>(&sql).bind(user.0);
        if let Some(a) = after {
            q = q.bind(a.0);
        }
        let ids = q
            .bind(limit_of(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("blocked", e))?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    async fn reach(&self, pairs: &[(UserId, UserId)]) -> Result<Vec<Reach>> {
        // One statement per chunk: the blocks of each `to` on `from`, and the
        // contact rows of each `from` with `to`, told apart by `kind`.
        let mut blocked: HashSet<(u64, u64)> = HashSet::new();
        let mut contacts: HashSet<(u64, u64)> = HashSet::new();
        for (start, len, shape) in chunks(pairs.len()) {
            let list = values_list(shape, 2);
            let sql = format!(
                "SELECT 0 AS kind, blocked_id AS from_id, user_id AS to_id FROM blocks \
                 WHERE (blocked_id, user_id) IN ({list}) \
                 UNION ALL \
                 SELECT 1, user_id, contact_id FROM contacts \
                 WHERE (user_id, contact_id) IN ({list})"
            );
            let mut q = sqlx::query(&sql);
            for _ in 0..2 {
                for i in padded(start, len, shape) {
                    q = q.bind(pairs[i].0 .0).bind(pairs[i].1 .0);
                }
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err("reach", e))?;
            for r in &rows {
                let read = || -> std::result::Result<_, sqlx::Error> {
                    Ok((
                        r.try_get::<i64, _>("kind")?,
                        r.try_get::<u64, _>("from_id")?,
                        r.try_get::<u64, _>("to_id")?,
                    ))
                };
                let (kind, from, to) = read().map_err(|e| map_err("reach", e))?;
                if kind == 0 {
                    blocked.insert((from, to));
                } else {
                    contacts.insert((from, to));
                }
            }
        }
        Ok(pairs
            .iter()
            .map(|(from, to)| Reach {
                blocked: blocked.contains(&(from.0, to.0)),
                contacts: contacts.contains(&(from.0, to.0)),
            })
            .collect())
    }
}
