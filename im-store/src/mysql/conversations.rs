//! `MySqlConversationStore`: conversation lists, read cursors and unread
//! counts on MySQL (`conversations` and `user_conversations`, next to the
//! `messages` archive it reads the last messages and unread counts from).
//!
//! `record` is one transaction of batched upserts (a few fixed shapes, see
//! [`crate::sql::SHAPES`]): the last message of each conversation only moves
//! to a higher seq, and both parties of a 1:1 conversation get it listed with
//! their read cursors kept. `list` is one query (see
//! [`crate::sql::list_query`]). The store expects what it records to be in
//! the archive already (the persist worker appends, then records).

use async_trait::async_trait;
use im_core::id::{ConversationId, UserId};
use im_core::model::Message;
use im_core::ports::{ConversationEntry, ConversationStore, ListCursor};
use im_core::Result;
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::Row;

use std::collections::HashMap;

use super::messages::message;
use super::{map_err, text};
use crate::sql::{
    chunks, list_query, mention_rows, padded, party_values, placeholders, recorded, values_list,
    CONVERSATION_COLUMNS,
};

/// Conversation lists and read cursors on MySQL.
#[derive(Debug, Clone)]
pub struct MySqlConversationStore {
    pool: MySqlPool,
}

impl MySqlConversationStore {
    pub(crate) fn new(pool: MySqlPool) -> Self {
        MySqlConversationStore { pool }
    }
}

/// The upsert of `rows` conversations. MySQL assigns left to right, so
/// `last_seq` comes last and the conditions compare with the old value.
/// (`VALUES(col)` rather than a row alias: MariaDB has no row aliases.)
fn upsert_conversations(rows: usize) -> String {
    format!(
        "INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES {} \
         ON DUPLICATE KEY UPDATE \
           last_msg_id = IF(VALUES(last_seq) > last_seq, VALUES(last_msg_id), last_msg_id), \
           last_ts = IF(VALUES(last_seq) > last_seq, VALUES(last_ts), last_ts), \
           last_seq = GREATEST(last_seq, VALUES(last_seq))",
        values_list(rows, 4)
    )
}

/// Lists `rows` `(user, conversation)` pairs, keeping their read cursors.
fn upsert_parties(rows: usize) -> String {
    format!(
        "INSERT INTO user_conversations (user_id, conversation_id, read_seq, listed) VALUES {} \
         ON DUPLICATE KEY UPDATE listed = 1",
        party_values(rows)
    )
}

/// Raises `rows` (conversation, user) mention seqs.
fn upsert_mentions(rows: usize) -> String {
    format!(
        "INSERT INTO conversation_mentions (conversation_id, user_id, seq) VALUES {} \
         ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))",
        values_list(rows, 3)
    )
}

/// Moves `rows` conversations' latest `all` mention (and its sender) up.
/// MySQL assigns left to right: `sender` compares with the old `seq`.
fn upsert_all_mentions(rows: usize) -> String {
    format!(
        "INSERT INTO conversation_all_mentions (conversation_id, seq, sender) VALUES {} \
         ON DUPLICATE KEY UPDATE \
           sender = IF(VALUES(seq) > seq, VALUES(sender), sender), \
           seq = GREATEST(seq, VALUES(seq))",
        values_list(rows, 3)
    )
}

fn entry(r: &MySqlRow) -> Result<ConversationEntry> {
    let last = message(r)?;
    let read_seq: u64 = r
        .try_get("read_seq")
        .map_err(|e| map_err("read conversation", e))?;
    let unread: i64 = r
        .try_get("unread")
        .map_err(|e| map_err("read conversation", e))?;
    Ok(ConversationEntry::new(
        last,
        read_seq,
        u64::try_from(unread).unwrap_or(0),
    ))
}

#[async_trait]
impl ConversationStore for MySqlConversationStore {
    async fn record(&self, batch: &[Message]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rec = recorded(batch);
        let mut tx = self.pool.begin().await.map_err(|e| map_err("begin", e))?;
        for (start, len, shape) in chunks(rec.lasts.len()) {
            let sql = upsert_conversations(shape);
            let mut q = sqlx::query(&sql);
            // Pad the tail by repeating its last row (an idempotent upsert).
            for i in (start..start + len).chain(std::iter::repeat_n(start + len - 1, shape - len)) {
                let (c, m) = &rec.lasts[i];
                q = q.bind(c).bind(m.seq).bind(m.msg_id.0).bind(m.ts);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| map_err("record conversations", e))?;
        }
        for (start, len, shape) in chunks(rec.parties.len()) {
            let sql = upsert_parties(shape);
            let mut q = sqlx::query(&sql);
            for i in (start..start + len).chain(std::iter::repeat_n(start + len - 1, shape - len)) {
                let (u, c) = &rec.parties[i];
                q = q.bind(u.0).bind(c);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| map_err("list conversations", e))?;
        }
        let mentions = mention_rows(batch);
        for (start, len, shape) in chunks(mentions.users.len()) {
            let sql = upsert_mentions(shape);
            let mut q = sqlx::query(&sql);
            for i in padded(start, len, shape) {
                let (c, u, seq) = &mentions.users[i];
                q = q.bind(c).bind(u.0).bind(*seq);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| map_err("record mentions", e))?;
        }
        for (start, len, shape) in chunks(mentions.all.len()) {
            let sql = upsert_all_mentions(shape);
            let mut q = sqlx::query(&sql);
            for i in padded(start, len, shape) {
                let (c, seq, from) = &mentions.all[i];
                q = q.bind(c).bind(*seq).bind(from.0);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| map_err("record mentions", e))?;
        }
        tx.commit().await.map_err(|e| map_err("commit", e))
    }

    async fn join(&self, user: UserId, conversation: ConversationId) -> Result<()> {
        sqlx::query(&upsert_parties(1))
            .bind(user.0)
            .bind(conversation.to_string())
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("join conversation", e))?;
        Ok(())
    }

    async fn leave(&self, user: UserId, conversation: ConversationId) -> Result<()> {
        sqlx::query(
            "UPDATE user_conversations SET listed = 0 WHERE user_id = ? AND conversation_id = ?",
        )
        .bind(user.0)
        .bind(conversation.to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("leave conversation", e))?;
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
        let c = conversation.to_string();
        // The common case, the row exists: one statement. The connection
        // reports matched rows, and `read_seq < ?` makes a match a move.
        let forward = || {
            sqlx::query(
                "UPDATE user_conversations SET read_seq = ? \
                 WHERE user_id = ? AND conversation_id = ? AND read_seq < ?",
            )
            .bind(seq)
            .bind(user.0)
            .bind(&c)
            .bind(seq)
        };
        let moved = forward()
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("mark read", e))?
            .rows_affected();
        if moved > 0 {
            return Ok(true);
        }
        // No row yet (or already at or past `seq`): a cursor of an unlisted
        // conversation.
        let inserted = sqlx::query(
            "INSERT IGNORE INTO user_conversations (user_id, conversation_id, read_seq, listed) \
             VALUES (?, ?, ?, 0)",
        )
        .bind(user.0)
        .bind(&c)
        .bind(seq)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("mark read", e))?
        .rows_affected();
        if inserted > 0 {
            return Ok(true);
        }
        // The row existed, or a concurrent call just created it: try again.
        let moved = forward()
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("mark read", e))?
            .rows_affected();
        Ok(moved > 0)
    }

    async fn read_seq(&self, user: UserId, conversation: ConversationId) -> Result<u64> {
        let seq: Option<u64> = sqlx::query_scalar(
            "SELECT read_seq FROM user_conversations WHERE user_id = ? AND conversation_id = ?",
        )
        .bind(user.0)
        .bind(conversation.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| map_err("read seq", e))?;
        Ok(seq.unwrap_or(0))
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
        let sql = list_query(after.is_some());
        let mut q = sqlx::query(&sql).bind(user.0).bind(user.0);
        if let Some(a) = after {
            q = q.bind(a.ts).bind(a.conversation_id.to_string());
        }
        let rows = q
            .bind(u64::try_from(limit).unwrap_or(u64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("list conversations", e))?;
        rows.iter().map(entry).collect()
    }

    async fn read_seqs(&self, cursors: &[(UserId, ConversationId)]) -> Result<Vec<u64>> {
        let keys: Vec<(u64, String)> = cursors.iter().map(|(u, c)| (u.0, c.to_string())).collect();
        let mut found: HashMap<(u64, String), u64> = HashMap::with_capacity(keys.len());
        for (start, len, shape) in chunks(keys.len()) {
            let sql = format!(
                "SELECT user_id, conversation_id, read_seq FROM user_conversations \
                 WHERE (user_id, conversation_id) IN ({})",
                values_list(shape, 2)
            );
            let mut q = sqlx::query(&sql);
            for i in padded(start, len, shape) {
                q = q.bind(keys[i].0).bind(&keys[i].1);
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err("read seqs", e))?;
            for r in &rows {
                let read = || -> std::result::Result<_, sqlx::Error> {
                    Ok((
                        r.try_get::<u64, _>("user_id")?,
                        text(r, "conversation_id")?,
                        r.try_get::<u64, _>("read_seq")?,
                    ))
                };
                let (u, c, seq) = read().map_err(|e| map_err("read seqs", e))?;
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
            let mut q = sqlx::query(&sql).bind(user.0);
            for i in padded(start, len, shape) {
                q = q.bind(&keys[i]);
            }
            q = q.bind(user.0);
            for i in padded(start, len, shape) {
                q = q.bind(&keys[i]);
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err("mention seqs", e))?;
            for r in &rows {
                let read = || -> std::result::Result<_, sqlx::Error> {
                    Ok((text(r, "conversation_id")?, r.try_get::<u64, _>("seq")?))
                };
                let (c, seq) = read().map_err(|e| map_err("mention seqs", e))?;
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
