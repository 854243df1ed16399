//! [`SqlContactStore`]: contacts (`contacts`, both directions), pending
//! requests (`contact_requests`) and blocks (`blocks`).
//!
//! `request`, `respond` and `block` are one transaction each, and each
//! starts by taking the pair's turn, so two users asking each other at once
//! serialize and a pair never ends up both contacts and pending:
//! - MySQL: it deletes the rows it replaces first, so it holds their locks
//!   before it reads (one of two crossing requests may be rolled back as a
//!   deadlock, a retryable `Unavailable`);
//! - SQLite: that first delete takes the database's write lock;
//! - PostgreSQL: a transaction-scoped advisory lock on the pair
//!   (`pg_advisory_xact_lock`), since deleting a missing row locks nothing.
//!
//! Lists are in u64 id order (see [`super::Dialect`]). `reach` is one query.

use std::collections::HashSet;

use async_trait::async_trait;
use im_core::id::UserId;
use im_core::ports::{Contact, ContactRequest, ContactStore, Direction, Reach, RequestOutcome};
use im_core::{Error, Result};

use super::db::{fail, store, Tx};
use super::engine::{to_signed, Arg, Dialect, Engine};
use super::{chunks, padded, values_list};

store! {
    /// Contacts, requests and blocks on any SQL engine.
    SqlContactStore
}

fn request_row<E: Engine>(r: &E::Row) -> Result<ContactRequest> {
    let read = || -> std::result::Result<ContactRequest, sqlx::Error> {
        Ok(ContactRequest {
            from: UserId(E::u64(r, "from_id")?),
            to: UserId(E::u64(r, "to_id")?),
            message: E::opt_text(r, "message")?,
            ts: E::i64(r, "ts")?,
        })
    };
    read().map_err(fail::<E>("read contact request"))
}

/// PostgreSQL: waits for the pair's turn (an advisory lock held until the
/// transaction ends; both orders of the pair take the same lock).
async fn take_turn<E: Engine>(tx: &mut Tx<E>, a: UserId, b: UserId, what: &str) -> Result<()> {
    if E::DIALECT != Dialect::Postgres {
        return Ok(());
    }
    let (lo, hi) = if a.0 <= b.0 { (a.0, b.0) } else { (b.0, a.0) };
    let key = to_signed(lo.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ hi);
    tx.execute(what, "SELECT pg_advisory_xact_lock(?)", vec![Arg::I64(key)])
        .await?;
    Ok(())
}

/// Deletes the pending request `from → to`; whether there was one.
async fn drop_request<E: Engine>(
    tx: &mut Tx<E>,
    from: UserId,
    to: UserId,
    what: &str,
) -> Result<bool> {
    let d = E::DIALECT;
    let n = tx
        .execute(
            what,
            "DELETE FROM contact_requests WHERE from_id = ? AND to_id = ?",
            vec![d.id(from.0), d.id(to.0)],
        )
        .await?;
    Ok(n > 0)
}

/// Makes `a` and `b` contacts (both directions) since `since`.
async fn link<E: Engine>(
    tx: &mut Tx<E>,
    a: UserId,
    b: UserId,
    since: i64,
    what: &str,
) -> Result<()> {
    let d = E::DIALECT;
    tx.execute(
        what,
        &d.insert_ignore(
            "contacts (user_id, contact_id, since)",
            "(?, ?, ?), (?, ?, ?)",
        ),
        vec![
            d.id(a.0),
            d.id(b.0),
            since.into(),
            d.id(b.0),
            d.id(a.0),
            since.into(),
        ],
    )
    .await?;
    Ok(())
}

const UNLINK: &str =
    "DELETE FROM contacts WHERE (user_id = ? AND contact_id = ?) OR (user_id = ? AND contact_id = ?)";

fn unlink_args(d: Dialect, a: UserId, b: UserId) -> Vec<Arg<'static>> {
    vec![d.id(a.0), d.id(b.0), d.id(b.0), d.id(a.0)]
}

/// `SELECT … WHERE mine = ? [AND after] ORDER BY id LIMIT ?` with its binds.
fn page(
    d: Dialect,
    select: &str,
    mine: &str,
    order: &str,
    user: UserId,
    after: Option<UserId>,
    limit: usize,
) -> (String, Vec<Arg<'static>>) {
    let mut args = vec![d.id(user.0)];
    let after_clause = match after {
        Some(a) => {
            let (clause, binds) = d.id_after(order, a);
            args.extend(binds);
            clause
        }
        None => String::new(),
    };
    args.push(d.limit(limit));
    (
        format!(
            "{select} WHERE {mine} = ? {after_clause} ORDER BY {} LIMIT ?",
            d.id_order(order)
        ),
        args,
    )
}

#[async_trait]
impl<E: Engine> ContactStore for SqlContactStore<E> {
    async fn request(&self, request: &ContactRequest) -> Result<RequestOutcome> {
        let d = E::DIALECT;
        let what = "contact request";
        let (a, b) = (request.from, request.to);
        let mut tx = self.db.begin().await?;
        take_turn(&mut tx, a, b, what).await?;
        // b asked first: both requests go, and they are contacts.
        if drop_request(&mut tx, b, a, what).await? {
            drop_request(&mut tx, a, b, what).await?;
            link(&mut tx, a, b, request.ts, what).await?;
            tx.commit().await?;
            return Ok(RequestOutcome::Accepted);
        }
        let sql = format!(
            "SELECT since FROM contacts WHERE user_id = ? AND contact_id = ?{}",
            d.for_update()
        );
        let contacts = tx
            .fetch_optional(what, &sql, vec![d.id(a.0), d.id(b.0)])
            .await?;
        if contacts.is_some() {
            tx.commit().await?;
            return Ok(RequestOutcome::AlreadyContacts);
        }
        let upsert = d.upsert(
            "INSERT INTO contact_requests (from_id, to_id, message, ts) VALUES (?, ?, ?, ?)",
            "message = VALUES(message), ts = VALUES(ts)",
            "ON CONFLICT (from_id, to_id) DO UPDATE SET message = excluded.message, ts = excluded.ts",
        );
        tx.execute(
            what,
            &upsert,
            vec![
                d.id(a.0),
                d.id(b.0),
                request.message.as_deref().into(),
                request.ts.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(RequestOutcome::Pending)
    }

    async fn respond(&self, user: UserId, from: UserId, accept: bool, now: i64) -> Result<()> {
        let what = "respond to contact request";
        let mut tx = self.db.begin().await?;
        take_turn(&mut tx, user, from, what).await?;
        if !drop_request(&mut tx, from, user, what).await? {
            return Err(Error::NotFound(format!(
                "no pending contact request from user {from}"
            )));
        }
        if accept {
            drop_request(&mut tx, user, from, what).await?;
            link(&mut tx, user, from, now, what).await?;
        }
        tx.commit().await
    }

    async fn cancel(&self, from: UserId, to: UserId) -> Result<()> {
        let d = E::DIALECT;
        let n = self
            .db
            .execute(
                "cancel contact request",
                "DELETE FROM contact_requests WHERE from_id = ? AND to_id = ?",
                vec![d.id(from.0), d.id(to.0)],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(format!(
                "no pending contact request to user {to}"
            )));
        }
        Ok(())
    }

    async fn remove(&self, user: UserId, other: UserId) -> Result<bool> {
        let n = self
            .db
            .execute(
                "remove contact",
                UNLINK,
                unlink_args(E::DIALECT, user, other),
            )
            .await?;
        Ok(n > 0)
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
        let (sql, args) = page(
            E::DIALECT,
            "SELECT contact_id, since FROM contacts",
            "user_id",
            "contact_id",
            user,
            after,
            limit,
        );
        let rows = self.db.fetch_all("contacts", &sql, args).await?;
        rows.iter()
            .map(|r| -> std::result::Result<Contact, sqlx::Error> {
                Ok(Contact {
                    user_id: UserId(E::u64(r, "contact_id")?),
                    since: E::i64(r, "since")?,
                })
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(fail::<E>("read contact"))
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
        let (sql, args) = page(
            E::DIALECT,
            "SELECT from_id, to_id, message, ts FROM contact_requests",
            mine,
            other,
            user,
            after,
            limit,
        );
        let rows = self.db.fetch_all("contact requests", &sql, args).await?;
        rows.iter().map(request_row::<E>).collect()
    }

    async fn block(&self, user: UserId, other: UserId, now: i64) -> Result<bool> {
        let d = E::DIALECT;
        let what = "block";
        let mut tx = self.db.begin().await?;
        take_turn(&mut tx, user, other, what).await?;
        tx.execute(what, UNLINK, unlink_args(d, user, other))
            .await?;
        drop_request(&mut tx, user, other, what).await?;
        drop_request(&mut tx, other, user, what).await?;
        let n = tx
            .execute(
                what,
                &d.insert_ignore("blocks (user_id, blocked_id, since)", "(?, ?, ?)"),
                vec![d.id(user.0), d.id(other.0), now.into()],
            )
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn unblock(&self, user: UserId, other: UserId) -> Result<bool> {
        let d = E::DIALECT;
        let n = self
            .db
            .execute(
                "unblock",
                "DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?",
                vec![d.id(user.0), d.id(other.0)],
            )
            .await?;
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
        let (sql, args) = page(
            E::DIALECT,
            "SELECT blocked_id FROM blocks",
            "user_id",
            "blocked_id",
            user,
            after,
            limit,
        );
        let rows = self.db.fetch_all("blocked", &sql, args).await?;
        rows.iter()
            .map(|r| E::u64(r, "blocked_id").map(UserId))
            .collect::<std::result::Result<_, _>>()
            .map_err(fail::<E>("blocked"))
    }

    async fn reach(&self, pairs: &[(UserId, UserId)]) -> Result<Vec<Reach>> {
        let d = E::DIALECT;
        // One statement per chunk: the blocks of each `to` on `from`, and the
        // contact rows of each `from` with `to`, told apart by `kind`.
        let mut blocked: HashSet<(u64, u64)> = HashSet::new();
        let mut contacts: HashSet<(u64, u64)> = HashSet::new();
        for (start, len, shape) in chunks(pairs.len()) {
            let list = d.rows_in(&values_list(shape, 2));
            let sql = format!(
                "SELECT 0 AS kind, blocked_id AS from_id, user_id AS to_id FROM blocks \
                 WHERE (blocked_id, user_id) IN {list} \
                 UNION ALL \
                 SELECT 1, user_id, contact_id FROM contacts \
                 WHERE (user_id, contact_id) IN {list}"
            );
            let mut args = Vec::with_capacity(4 * shape);
            for _ in 0..2 {
                for i in padded(start, len, shape) {
                    args.extend([d.id(pairs[i].0 .0), d.id(pairs[i].1 .0)]);
                }
            }
            for r in &self.db.fetch_all("reach", &sql, args).await? {
                let read = || -> std::result::Result<_, sqlx::Error> {
                    Ok((
                        E::i64(r, "kind")?,
                        E::u64(r, "from_id")?,
                        E::u64(r, "to_id")?,
                    ))
                };
                let (kind, from, to) = read().map_err(fail::<E>("reach"))?;
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
