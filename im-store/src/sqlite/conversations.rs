//! `SqliteConversationStore`: conversation lists, read cursors and unread
//! counts on SQLite (`conversations` and `user_conversations`, next to the
//! `messages` archive it reads the last messages and unread counts from).
//!
//! `record` is one transaction of batched upserts (a few fixed shapes): the
//! last message of each conversation only moves to a higher seq (`ON
//! CONFLICT … DO UPDATE … WHERE excluded.last_seq > last_seq`), and both
//! parties of a 1:1 conversation get it listed with their read cursors kept.
//! `mark_read` is one upsert. `list` is one query (see
//! [`crate::sql::list_query`]). The store expects what it records to be in
//! the archive already (the persist worker appends, then records).

use async_trait::async_trait;
use im_core::id::{ConversationId, UserId};
use im_core::model::Message;
use im_core::ports::{ConversationEntry, ConversationStore, ListCursor};
use im_core::{Error, Result};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;

use super::messages::message;
use super::{from_db, map_err, to_db};
use std::collections::HashMap;

use crate::sql::{
    chunks, list_query, mention_rows, padded, party_values, placeholders, recorded, values_list,
    CONVERSATION_COLUMNS,
};

/// Conversation lists and read cursors on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteConversationStore {
    pool: SqlitePool,
}

impl SqliteConversationStore {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        SqliteConversationStore { pool }
    }
}

fn upsert_conversations(rows: usize) -> String {
    format!(
        "INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES {} \
         ON CONFLICT (conversation_id) DO UPDATE SET \
           last_seq = excluded.last_seq, last_msg_id = excluded.last_msg_id, \
           last_ts = excluded.last_ts \
         WHERE excluded.last_seq > conversations.last_seq",
        values_list(rows, 4)
    )
}

/// Lists `rows` `(user, conversation)` pairs, keeping their read cursors.
fn upsert_parties(rows: usize) -> String {
    format!(
        "INSERT INTO user_conversations (user_id, conversation_id, read_seq, listed) VALUES {} \
         ON CONFLICT (user_id, conversation_id) DO UPDATE SET listed = 1 \
         WHERE user_conversations.listed = 0",
        party_values(rows)
    )
}

/// Raises `rows` (conversation, user) mention seqs.
fn upsert_mentions(rows: usize) -> String {
    format!(
        "INSERT INTO conversation_mentions (conversation_id, user_id, seq) VALUES {} \
         ON CONFLICT (conversation_id, user_id) DO UPDATE SET seq = excluded.seq \
         WHERE excluded.seq > conversation_mentions.seq",
        values_list(rows, 3)
    )
}

/// Moves `rows` conversations' latest `all` mention (and its sender) up.
fn upsert_all_mentions(rows: usize) -> String {
    format!(
        "INSERT INTO conversation_all_mentions (conversation_id, seq, sender) VALUES {} \
         ON CONFLICT (conversation_id) DO UPDATE SET seq = excluded.seq, sender = excluded.sender \
         WHERE excluded.seq > conversation_all_mentions.seq",
        values_list(rows, 3)
    )
}

/// A seq as stored: seqs above `i64::MAX` do not fit (the message store
/// refuses them too).
fn seq_to_db(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::InvalidArgument(format!("seq {seq} out of range")))
}

fn entry(r: &SqliteRow) -> Result<ConversationEntry> {
    let last = message(r)?;
    let read_seq: i64 = r
        .try_get("read_seq")
        .map_err(|e| map_err("read conversation", e))?;
    let unread: i64 = r
        .try_get("unread")
        .map_err(|e| map_err("read conversation", e))?;
    Ok(ConversationEntry::new(
        last,
        from_db(read_seq),
        u64::try_from(unread).unwrap_or(0),
    ))
}

#[async_trait]
impl ConversationStore for SqliteConversationStore {
    async fn record(&self, batch: &[Message]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rec = recorded(batch);
        let mut lasts = Vec::with_capacity(rec.lasts.len());
        for (c, m) in &rec.lasts {
            lasts.push((c, seq_to_db(m.seq)?, to_db(m.msg_id.0), m.ts));
        }
        let mut tx = self.pool.begin().await.map_err(|e| map_err("begin", e))?;
        for (start, len, shape) in chunks(lasts.len()) {
            let sql = upsert_conversations(shape);
            let mut q = sqlx::query(&sql);
            // Pad the tail by repeating its last row (an idempotent upsert).
            for i in (start..start + len).chain(std::iter::repeat_n(start + len - 1, shape - len)) {
                let (c, seq, id, ts) = lasts[i];
                q = q.bind(c).bind(seq).bind(id).bind(ts);
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
                q = q.bind(to_db(u.0)).bind(c);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| map_err("list conversations", e))?;
        }
        let mentions = mention_rows(batch);
        let mut users = Vec::with_capacity(mentions.users.len());
        for (c, u, seq) in &mentions.users {
            users.push((c, to_db(u.0), seq_to_db(*seq)?));
        }
        let mut all = Vec::with_capacity(mentions.all.len());
        for (c, seq, from) in &mentions.all {
            all.push((c, seq_to_db(*seq)?, to_db(from.0)));
        }
        for (start, len, shape) in chunks(users.len()) {
            let sql = upsert_mentions(shape);
            let mut q = sqlx::query(&sql);
            for i in padded(start, len, shape) {
                let (c, u, seq) = users[i];
                q = q.bind(c).bind(u).bind(seq);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| map_err("record mentions", e))?;
        }
        for (start, len, shape) in chunks(all.len()) {
            let sql = upsert_all_mentions(shape);
            let mut q = sqlx::query(&sql);
            for i in padded(start, len, shape) {
                let (c, seq, from) = all[i];
                q = q.bind(c).bind(seq).bind(from);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| map_err("record mentions", e))?;
        }
        tx.commit().await.map_err(|e| map_err("commit", e))
    }

    async fn join(&self, user: UserId, conversation: ConversationId) -> Result<()> {
        sqlx::query(&upsert_parties(1))
            .bind(to_db(user.0))
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
        .bind(to_db(user.0))
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
        // Inserted (a cursor of an unlisted conversation) or moved forward:
        // one changed row; at or past `seq` already: none.
        let changed = sqlx::query(
            "INSERT INTO user_conversations (user_id, conversation_id, read_seq, listed) \
             VALUES (?, ?, ?, 0) \
             ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_seq = excluded.read_seq \
             WHERE excluded.read_seq > user_conversations.read_seq",
        )
        .bind(to_db(user.0))
        .bind(conversation.to_string())
        .bind(seq_to_db(seq)?)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("mark read", e))?
        .rows_affected();
        Ok(changed > 0)
    }

    async fn read_seq(&self, user: UserId, conversation: ConversationId) -> Result<u64> {
        let seq: Option<i64> = sqlx::query_scalar(
            "SELECT read_seq FROM user_conversations WHERE user_id = ? AND conversation_id = ?",
        )
        .bind(to_db(user.0))
        .bind(conversation.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| map_err("read seq", e))?;
        Ok(seq.map(from_db).unwrap_or(0))
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
        let mut q = sqlx::query(&sql).bind(to_db(user.0)).bind(to_db(user.0));
        if let Some(a) = after {
            q = q.bind(a.ts).bind(a.conversation_id.to_string());
        }
        let rows = q
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("list conversations", e))?;
        rows.iter().map(entry).collect()
    }

    async fn read_seqs(&self, cursors: &[(UserId, ConversationId)]) -> Result<Vec<u64>> {
        let keys: Vec<(i64, String)> = cursors
            .iter()
            .map(|(u, c)| (to_db(u.0), c.to_string()))
            .collect();
        let mut found: HashMap<(i64, String), u64> = HashMap::with_capacity(keys.len());
        for (start, len, shape) in chunks(keys.len()) {
            // SQLite wants a subquery on the right of a row-value IN.
            let sql = format!(
                "SELECT user_id, conversation_id, read_seq FROM user_conversations \
                 WHERE (user_id, conversation_id) IN (VALUES {})",
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
                        r.try_get::<i64, _>("user_id")?,
                        r.try_get::<String, _>("conversation_id")?,
                        r.try_get::<i64, _>("read_seq")?,
                    ))
                };
                let (u, c, seq) = read().map_err(|e| map_err("read seqs", e))?;
                found.insert((u, c), from_db(seq));
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
            let mut q = sqlx::query(&sql).bind(to_db(user.0));
            for i in padded(start, len, shape) {
                q = q.bind(&keys[i]);
            }
            q = q.bind(to_db(user.0));
            for i in padded(start, len, shape) {
                q = q.bind(&keys[i]);
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err("mention seqs", e))?;
            for r in &rows {
                let read = || -> std::result::Result<_, sqlx::Error> {
                    Ok((
                        r.try_get::<String, _>("conversation_id")?,
                        r.try_get::<i64, _>("seq")?,
                    ))
                };
                let (c, seq) = read().map_err(|e| map_err("mention seqs", e))?;
                let slot = found.entry(c).or_insert(0);
                *slot = (*slot).max(from_db(seq));
            }
        }
        Ok(keys
            .iter()
            .map(|k| found.get(k).copied().unwrap_or(0))
            .collect())
    }
}
