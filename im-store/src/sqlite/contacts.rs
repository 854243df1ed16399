//! `SqliteContactStore`: contacts (`contacts`, both directions), pending
//! requests (`contact_requests`) and blocks (`blocks`) on SQLite.
//!
//! `request`, `respond` and `block` are one transaction each that writes
//! first (a delete), so it holds the database's write lock before it reads.
//! Lists order by the u64 id: ids at or above 2^63 are stored as negative
//! INTEGERs, so they sort after the others (`col < 0, col`). `reach` is one
//! query.

use std::collections::HashSet;

use async_trait::async_trait;
use im_core::id::UserId;
use im_core::ports::{Contact, ContactRequest, ContactStore, Direction, Reach, RequestOutcome};
use im_core::{Error, Result};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};

use super::{from_db, map_err, to_db};
use crate::sql::{chunks, padded, values_list};

/// Contacts, requests and blocks on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteContactStore {
    pool: SqlitePool,
}

impl SqliteContactStore {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        SqliteContactStore { pool }
    }
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// `AND col > ?` in u64 order (binds: [`after_binds`]).
fn after_clause(col: &str) -> String {
    format!("AND ({col} < 0, {col}) > (?, ?)")
}

/// The binds of [`after_clause`] for `after`.
fn after_binds(after: UserId) -> (bool, i64) {
    let v = to_db(after.0);
    (v < 0, v)
}

fn request_row(r: &SqliteRow) -> Result<ContactRequest> {
    let read = || -> std::result::Result<ContactRequest, sqlx::Error> {
        Ok(ContactRequest {
            from: UserId(from_db(r.try_get("from_id")?)),
            to: UserId(from_db(r.try_get("to_id")?)),
            message: r.try_get("message")?,
            ts: r.try_get("ts")?,
        })
    };
    read().map_err(|e| map_err("read contact request", e))
}

/// Deletes the pending request `from → to`; whether there was one.
async fn drop_request(
    tx: &mut Transaction<'_, Sqlite>,
    from: UserId,
    to: UserId,
    what: &str,
) -> Result<bool> {
    let n = sqlx::query("DELETE FROM contact_requests WHERE from_id = ? AND to_id = ?")
        .bind(to_db(from.0))
        .bind(to_db(to.0))
        .execute(&mut **tx)
        .await
        .map_err(|e| map_err(what, e))?
        .rows_affected();
    Ok(n > 0)
}

/// Makes `a` and `b` contacts (both directions) since `since`.
async fn link(
    tx: &mut Transaction<'_, Sqlite>,
    a: UserId,
    b: UserId,
    since: i64,
    what: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT OR IGNORE INTO contacts (user_id, contact_id, since) VALUES (?, ?, ?), (?, ?, ?)",
    )
    .bind(to_db(a.0))
    .bind(to_db(b.0))
    .bind(since)
    .bind(to_db(b.0))
    .bind(to_db(a.0))
    .bind(since)
    .execute(&mut **tx)
    .await
    .map_err(|e| map_err(what, e))?;
    Ok(())
}

/// Ends the contact relation of `a` and `b`; whether there was one.
async fn unlink<'e, E>(exec: E, a: UserId, b: UserId, what: &str) -> Result<bool>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let n = sqlx::query(
        "DELETE FROM contacts WHERE (user_id = ? AND contact_id = ?) OR (user_id = ? AND contact_id = ?)",
    )
    .bind(to_db(a.0))
    .bind(to_db(b.0))
    .bind(to_db(b.0))
    .bind(to_db(a.0))
    .execute(exec)
    .await
    .map_err(|e| map_err(what, e))?
    .rows_affected();
    Ok(n > 0)
}

#[async_trait]
impl ContactStore for SqliteContactStore {
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
        let contacts: Option<i64> =
            sqlx::query_scalar("SELECT since FROM contacts WHERE user_id = ? AND contact_id = ?")
                .bind(to_db(a.0))
                .bind(to_db(b.0))
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| map_err(what, e))?;
        if contacts.is_some() {
            tx.commit().await.map_err(|e| map_err("commit", e))?;
            return Ok(RequestOutcome::AlreadyContacts);
        }
        sqlx::query(
            "INSERT INTO contact_requests (from_id, to_id, message, ts) VALUES (?, ?, ?, ?) \
             ON CONFLICT (from_id, to_id) DO UPDATE SET message = excluded.message, ts = excluded.ts",
        )
        .bind(to_db(a.0))
        .bind(to_db(b.0))
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
            .bind(to_db(from.0))
            .bind(to_db(to.0))
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
             ORDER BY contact_id < 0, contact_id LIMIT ?",
            if after.is_some() {
                after_clause("contact_id")
            } else {
                String::new()
            }
        );
        let mut q = sqlx::query(&sql).bind(to_db(user.0));
        if let Some(a) = after {
            let (neg, v) = after_binds(a);
            q = q.bind(neg).bind(v);
        }
        let rows = q
            .bind(limit_of(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("contacts", e))?;
        rows.iter()
            .map(|r| -> std::result::Result<Contact, sqlx::Error> {
                Ok(Contact {
                    user_id: UserId(from_db(r.try_get("contact_id")?)),
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
             ORDER BY {other} < 0, {other} LIMIT ?",
            if after.is_some() {
                after_clause(other)
            } else {
                String::new()
            }
        );
        let mut q = sqlx::query(&sql).bind(to_db(user.0));
        if let Some(a) = after {
            let (neg, v) = after_binds(a);
            q = q.bind(neg).bind(v);
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
        let n = sqlx::query(
            "INSERT OR IGNORE INTO blocks (user_id, blocked_id, since) VALUES (?, ?, ?)",
        )
        .bind(to_db(user.0))
        .bind(to_db(other.0))
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
            .bind(to_db(user.0))
            .bind(to_db(other.0))
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
            "SELECT blocked_id FROM blocks WHERE user_id = ? {} \
             ORDER BY blocked_id < 0, blocked_id LIMIT ?",
            if after.is_some() {
                after_clause("blocked_id")
            } else {
                String::new()
            }
        );
        let mut q = sqlx::query_scalar::<Sqlite, i64>(&sql).bind(to_db(user.0));
        if let Some(a) = after {
            let (neg, v) = after_binds(a);
            q = q.bind(neg).bind(v);
        }
        let ids = q
            .bind(limit_of(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("blocked", e))?;
        Ok(ids.into_iter().map(|id| UserId(from_db(id))).collect())
    }

    async fn reach(&self, pairs: &[(UserId, UserId)]) -> Result<Vec<Reach>> {
        // One statement per chunk: the blocks of each `to` on `from`, and the
        // contact rows of each `from` with `to`, told apart by `kind`.
        let mut blocked: HashSet<(i64, i64)> = HashSet::new();
        let mut contacts: HashSet<(i64, i64)> = HashSet::new();
        for (start, len, shape) in chunks(pairs.len()) {
            let list = values_list(shape, 2);
            let sql = format!(
                "SELECT 0 AS kind, blocked_id AS from_id, user_id AS to_id FROM blocks \
                 WHERE (blocked_id, user_id) IN (VALUES {list}) \
                 UNION ALL \
                 SELECT 1, user_id, contact_id FROM contacts \
                 WHERE (user_id, contact_id) IN (VALUES {list})"
            );
            let mut q = sqlx::query(&sql);
            for _ in 0..2 {
                for i in padded(start, len, shape) {
                    q = q.bind(to_db(pairs[i].0 .0)).bind(to_db(pairs[i].1 .0));
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
                        r.try_get::<i64, _>("from_id")?,
                        r.try_get::<i64, _>("to_id")?,
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
                blocked: blocked.contains(&(to_db(from.0), to_db(to.0))),
                contacts: contacts.contains(&(to_db(from.0), to_db(to.0))),
            })
            .collect())
    }
}
