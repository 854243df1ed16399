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
use crate::sql::{chunks, list_query, party_values, recorded, values_list, CONVERSATION_COLUMNS};

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
    Ok(ConversationEntry {
        conversation_id: last.conversation_id,
        last_seq: last.seq,
        read_seq: from_db(read_seq),
        unread: u64::try_from(unread).unwrap_or(0),
        last_message: last,
    })
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
}
