//! [`SqlConversationStore`]: conversation lists, read cursors and unread
//! counts (`conversations` and `user_conversations`, next to the `messages`
//! archive it reads the last messages and unread counts from), and the
//! mention index (`conversation_mentions`, `conversation_all_mentions`).
//!
//! `record` is one transaction of batched upserts (a few fixed shapes, see
//! [`super::SHAPES`]): the last message of each conversation only moves to a
//! higher seq, and both parties of a 1:1 conversation get it listed with
//! their read cursors kept. `list` is one query (see [`super::list_query`]).
//! The store expects what it records to be in the archive already (the
//! persist worker appends, then records).

use std::collections::HashMap;

use async_trait::async_trait;
use im_core::id::{ConversationId, UserId};
use im_core::model::Message;
use im_core::ports::{ConversationEntry, ConversationStore, ListCursor};
use im_core::Result;

use super::db::{fail, store};
use super::engine::{Arg, Dialect, Engine};
use super::messages::message;
use super::{
    chunks, list_query, mention_rows, padded, party_values, placeholders, recorded, upsert_chunks,
    values_list, CONVERSATION_COLUMNS,
};

store! {
    /// Conversation lists and read cursors on any SQL engine.
    SqlConversationStore
}

/// The upsert of `rows` conversations: the last message only moves to a
/// higher seq. MySQL assigns left to right, so `last_seq` comes last and the
/// conditions compare with the old value (`VALUES(col)` rather than a row
/// alias: MariaDB has no row aliases).
fn upsert_conversations(d: Dialect, rows: usize) -> String {
    d.upsert(
        &format!(
            "INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES {}",
            values_list(rows, 4)
        ),
        "last_msg_id = IF(VALUES(last_seq) > last_seq, VALUES(last_msg_id), last_msg_id), \
         last_ts = IF(VALUES(last_seq) > last_seq, VALUES(last_ts), last_ts), \
         last_seq = GREATEST(last_seq, VALUES(last_seq))",
        "ON CONFLICT (conversation_id) DO UPDATE SET \
           last_seq = excluded.last_seq, last_msg_id = excluded.last_msg_id, \
           last_ts = excluded.last_ts \
         WHERE excluded.last_seq > conversations.last_seq",
    )
}

/// Lists `rows` `(user, conversation)` pairs, keeping their read cursors.
fn upsert_parties(d: Dialect, rows: usize) -> String {
    d.upsert(
        &format!(
            "INSERT INTO user_conversations (user_id, conversation_id, read_seq, listed) VALUES {}",
            party_values(rows)
        ),
        "listed = TRUE",
        "ON CONFLICT (user_id, conversation_id) DO UPDATE SET listed = TRUE \
         WHERE user_conversations.listed = FALSE",
    )
}

/// Raises `rows` (conversation, user) mention seqs.
fn upsert_mentions(d: Dialect, rows: usize) -> String {
    d.upsert(
        &format!(
            "INSERT INTO conversation_mentions (conversation_id, user_id, seq) VALUES {}",
            values_list(rows, 3)
        ),
        "seq = GREATEST(seq, VALUES(seq))",
        "ON CONFLICT (conversation_id, user_id) DO UPDATE SET seq = excluded.seq \
         WHERE excluded.seq > conversation_mentions.seq",
    )
}

/// Moves `rows` conversations' latest `all` mention (and its sender) up.
/// MySQL assigns left to right: `sender` compares with the old `seq`.
fn upsert_all_mentions(d: Dialect, rows: usize) -> String {
    d.upsert(
        &format!(
            "INSERT INTO conversation_all_mentions (conversation_id, seq, sender) VALUES {}",
            values_list(rows, 3)
        ),
        "sender = IF(VALUES(seq) > seq, VALUES(sender), sender), \
         seq = GREATEST(seq, VALUES(seq))",
        "ON CONFLICT (conversation_id) DO UPDATE SET seq = excluded.seq, sender = excluded.sender \
         WHERE excluded.seq > conversation_all_mentions.seq",
    )
}

fn entry<E: Engine>(r: &E::Row) -> Result<ConversationEntry> {
    let last = message::<E>(r)?;
    let read = || -> std::result::Result<_, sqlx::Error> {
        Ok((E::u64(r, "read_seq")?, E::i64(r, "unread")?))
    };
    let (read_seq, unread) = read().map_err(fail::<E>("read conversation"))?;
    Ok(ConversationEntry::new(
        last,
        read_seq,
        u64::try_from(unread).unwrap_or(0),
    ))
}

impl<E: Engine> SqlConversationStore<E> {
    /// MySQL's `mark_read`: move the cursor forward, else create it, else
    /// (a concurrent call just created it) move it again. `UPDATE`s count
    /// matched rows, and `read_seq < ?` makes a match a move.
    async fn mark_read_in_steps(&self, user: UserId, c: &str, seq: Arg<'_>) -> Result<bool> {
        let d = E::DIALECT;
        let forward = || vec![seq.clone(), d.id(user.0), Arg::Text(c), seq.clone()];
        let update = "UPDATE user_conversations SET read_seq = ? \
                      WHERE user_id = ? AND conversation_id = ? AND read_seq < ?";
        if self.db.execute("mark read", update, forward()).await? > 0 {
            return Ok(true);
        }
        // No row yet (or already at or past `seq`): a cursor of an unlisted
        // conversation.
        let insert = d.insert_ignore(
            "user_conversations (user_id, conversation_id, read_seq, listed)",
            "(?, ?, ?, FALSE)",
        );
        let inserted = self
            .db
            .execute(
                "mark read",
                &insert,
                vec![d.id(user.0), Arg::Text(c), seq.clone()],
            )
            .await?;
        if inserted > 0 {
            return Ok(true);
        }
        Ok(self.db.execute("mark read", update, forward()).await? > 0)
    }
}

#[async_trait]
impl<E: Engine> ConversationStore for SqlConversationStore<E> {
    async fn record(&self, batch: &[Message]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let d = E::DIALECT;
        let rec = recorded(batch);
        let mut lasts = Vec::with_capacity(rec.lasts.len());
        for (c, m) in &rec.lasts {
            lasts.push((c, d.seq(m.seq)?, d.id(m.msg_id.0), m.ts));
        }
        let mentions = mention_rows(batch);
        let mut users = Vec::with_capacity(mentions.users.len());
        for (c, u, seq) in &mentions.users {
            users.push((c, d.id(u.0), d.seq(*seq)?));
        }
        let mut all = Vec::with_capacity(mentions.all.len());
        for (c, seq, from) in &mentions.all {
            all.push((c, d.seq(*seq)?, d.id(from.0)));
        }
        let mut tx = self.db.begin().await?;
        // Tails are padded by repeating their last row (idempotent upserts),
        // except on PostgreSQL (see `upsert_chunks`).
        for (start, len, shape) in upsert_chunks(d, lasts.len()) {
            let mut args = Vec::with_capacity(shape * 4);
            for i in padded(start, len, shape) {
                let (c, seq, id, ts) = &lasts[i];
                args.extend([Arg::Text(c), seq.clone(), id.clone(), Arg::I64(*ts)]);
            }
            tx.execute(
                "record conversations",
                &upsert_conversations(d, shape),
                args,
            )
            .await?;
        }
        for (start, len, shape) in upsert_chunks(d, rec.parties.len()) {
            let mut args = Vec::with_capacity(shape * 2);
            for i in padded(start, len, shape) {
                let (u, c) = &rec.parties[i];
                args.extend([d.id(u.0), Arg::Text(c)]);
            }
            tx.execute("list conversations", &upsert_parties(d, shape), args)
                .await?;
        }
        for (start, len, shape) in upsert_chunks(d, users.len()) {
            let mut args = Vec::with_capacity(shape * 3);
            for i in padded(start, len, shape) {
                let (c, u, seq) = &users[i];
                args.extend([Arg::Text(c), u.clone(), seq.clone()]);
            }
            tx.execute("record mentions", &upsert_mentions(d, shape), args)
                .await?;
        }
        for (start, len, shape) in upsert_chunks(d, all.len()) {
            let mut args = Vec::with_capacity(shape * 3);
            for i in padded(start, len, shape) {
                let (c, seq, from) = &all[i];
                args.extend([Arg::Text(c), seq.clone(), from.clone()]);
            }
            tx.execute("record mentions", &upsert_all_mentions(d, shape), args)
                .await?;
        }
        tx.commit().await
    }

    async fn join(&self, user: UserId, conversation: ConversationId) -> Result<()> {
        let d = E::DIALECT;
        let c = conversation.to_string();
        self.db
            .execute(
                "join conversation",
                &upsert_parties(d, 1),
                vec![d.id(user.0), (&c).into()],
            )
            .await?;
        Ok(())
    }

    async fn leave(&self, user: UserId, conversation: ConversationId) -> Result<()> {
        let c = conversation.to_string();
        self.db
            .execute(
                "leave conversation",
                "UPDATE user_conversations SET listed = FALSE \
                 WHERE user_id = ? AND conversation_id = ?",
                vec![E::DIALECT.id(user.0), (&c).into()],
            )
            .await?;
        Ok(())
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<bool> {
        if seq == 0 {
            return Ok(false);
        }
        let d = E::DIALECT;
        let c = conversation.to_string();
        let seq = d.seq(seq)?;
        if d == Dialect::MySql {
            return self.mark_read_in_steps(user, &c, seq).await;
        }
        // Inserted (a cursor of an unlisted conversation) or moved forward:
        // one changed row; at or past `seq` already: none.
        let changed = self
            .db
            .execute(
                "mark read",
                "INSERT INTO user_conversations (user_id, conversation_id, read_seq, listed) \
                 VALUES (?, ?, ?, FALSE) \
                 ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_seq = excluded.read_seq \
                 WHERE excluded.read_seq > user_conversations.read_seq",
                vec![d.id(user.0), (&c).into(), seq],
            )
            .await?;
        Ok(changed > 0)
    }

    async fn read_seq(&self, user: UserId, conversation: ConversationId) -> Result<u64> {
        let c = conversation.to_string();
        let row = self
            .db
            .fetch_optional(
                "read seq",
                "SELECT read_seq FROM user_conversations WHERE user_id = ? AND conversation_id = ?",
                vec![E::DIALECT.id(user.0), (&c).into()],
            )
            .await?;
        match row {
            Some(r) => E::u64(&r, "read_seq").map_err(fail::<E>("read seq")),
            None => Ok(0),
        }
    }

    async fn list(
        &self,
        user: UserId,
        after: Option<ListCursor>,
        limit: usize,
    ) -> Result<Vec<ConversationEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let d = E::DIALECT;
        let sql = list_query(after.is_some());
        let after_c = after.map(|a| (a.ts, a.conversation_id.to_string()));
        let mut args = vec![d.id(user.0), d.id(user.0)];
        if let Some((ts, c)) = &after_c {
            args.extend([Arg::I64(*ts), Arg::Text(c)]);
        }
        args.push(d.limit(limit));
        let rows = self.db.fetch_all("list conversations", &sql, args).await?;
        rows.iter().map(entry::<E>).collect()
    }

    async fn read_seqs(&self, cursors: &[(UserId, ConversationId)]) -> Result<Vec<u64>> {
        let d = E::DIALECT;
        let keys: Vec<(u64, String)> = cursors.iter().map(|(u, c)| (u.0, c.to_string())).collect();
        let mut found: HashMap<(u64, String), u64> = HashMap::with_capacity(keys.len());
        for (start, len, shape) in chunks(keys.len()) {
            let sql = format!(
                "SELECT user_id, conversation_id, read_seq FROM user_conversations \
                 WHERE (user_id, conversation_id) IN {}",
                d.rows_in(&values_list(shape, 2))
            );
            let mut args = Vec::with_capacity(shape * 2);
            for i in padded(start, len, shape) {
                args.extend([d.id(keys[i].0), Arg::Text(&keys[i].1)]);
            }
            for r in &self.db.fetch_all("read seqs", &sql, args).await? {
                let read = || -> std::result::Result<_, sqlx::Error> {
                    Ok((
                        E::u64(r, "user_id")?,
                        E::text(r, "conversation_id")?,
                        E::u64(r, "read_seq")?,
                    ))
                };
                let (u, c, seq) = read().map_err(fail::<E>("read seqs"))?;
                found.insert((u, c), seq);
            }
        }
        Ok(keys
            .iter()
            .map(|k| found.get(k).copied().unwrap_or(0))
            .collect())
    }

    async fn mention_seqs(
        &self,
        user: UserId,
        conversations: &[ConversationId],
    ) -> Result<Vec<u64>> {
        let d = E::DIALECT;
        let keys: Vec<String> = conversations.iter().map(|c| c.to_string()).collect();
        let mut found: HashMap<String, u64> = HashMap::with_capacity(keys.len());
        for (start, len, shape) in chunks(keys.len()) {
            // Mentions by id, and the latest `all` unless the user sent it.
            let list = placeholders(shape);
            let sql = format!(
                "SELECT conversation_id, seq FROM conversation_mentions \
                 WHERE user_id = ? AND conversation_id IN ({list}) \
                 UNION ALL \
                 SELECT conversation_id, seq FROM conversation_all_mentions \
                 WHERE sender <> ? AND conversation_id IN ({list})"
            );
            let mut args = Vec::with_capacity(2 * shape + 2);
            for _ in 0..2 {
                args.push(d.id(user.0));
                args.extend(padded(start, len, shape).map(|i| Arg::Text(&keys[i])));
            }
            for r in &self.db.fetch_all("mention seqs", &sql, args).await? {
                let read = || -> std::result::Result<_, sqlx::Error> {
                    Ok((E::text(r, "conversation_id")?, E::u64(r, "seq")?))
                };
                let (c, seq) = read().map_err(fail::<E>("mention seqs"))?;
                let slot = found.entry(c).or_insert(0);
                *slot = (*slot).max(seq);
            }
        }
        Ok(keys
            .iter()
            .map(|k| found.get(k).copied().unwrap_or(0))
            .collect())
    }
}
