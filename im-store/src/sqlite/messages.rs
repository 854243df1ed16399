//! `SqliteMessageStore`: the message archive on SQLite, appended with one
//! multi-row `INSERT OR IGNORE` per chunk (a few fixed shapes) inside one
//! transaction per call. A recall sets `recalled` and replaces the body with
//! JSON `null`; a replayed append is ignored, so it never brings the body back.

use async_trait::async_trait;
use im_core::id::{ConversationId, MessageId};
use im_core::model::Message;
use im_core::ports::MessageStore;
use im_core::{Error, Result};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;

use super::{from_db, map_err, to_db};
use crate::sql::{
    check_message, chunks, encode_body, encode_mentions, encode_target, values_list, MessageRow,
    MESSAGE_COLUMNS, MESSAGE_COLUMN_COUNT,
};

const SELECT: &str = "SELECT msg_id, conversation_id, seq, sender, target, kind, body, client_msg_id, ts, recalled, edited_at, mentions FROM messages";

/// The message archive on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteMessageStore {
    pool: SqlitePool,
}

pub(super) fn message(r: &SqliteRow) -> Result<Message> {
    let f = || -> std::result::Result<MessageRow, sqlx::Error> {
        Ok(MessageRow {
            msg_id: from_db(r.try_get("msg_id")?),
            conversation_id: r.try_get("conversation_id")?,
            seq: from_db(r.try_get("seq")?),
            sender: from_db(r.try_get("sender")?),
            target: r.try_get("target")?,
            kind: r.try_get("kind")?,
            body: r.try_get("body")?,
            client_msg_id: r.try_get("client_msg_id")?,
            ts: r.try_get("ts")?,
            recalled: r.try_get("recalled")?,
            edited_at: r.try_get("edited_at")?,
            mentions: r.try_get("mentions")?,
        })
    };
    f().map_err(|e| map_err("read message", e))?.into_message()
}

impl SqliteMessageStore {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        SqliteMessageStore { pool }
    }
}

#[async_trait]
impl MessageStore for SqliteMessageStore {
    async fn append(&self, batch: &[Message]) -> Result<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut bodies = Vec::with_capacity(batch.len());
        let mut mentions = Vec::with_capacity(batch.len());
        for m in batch {
            check_message(m)?;
            if i64::try_from(m.seq).is_err() {
                return Err(Error::InvalidArgument(format!(
                    "seq {} out of range",
                    m.seq
                )));
            }
            bodies.push(encode_body(m)?);
            mentions.push(encode_mentions(m)?);
        }
        let mut tx = self.pool.begin().await.map_err(|e| map_err("begin", e))?;
        let mut inserted = 0;
        for (start, len, shape) in chunks(batch.len()) {
            let sql = format!(
                "INSERT OR IGNORE INTO messages ({MESSAGE_COLUMNS}) VALUES {}",
                values_list(shape, MESSAGE_COLUMN_COUNT)
            );
            let mut q = sqlx::query(&sql);
            // Pad the tail by repeating its last row: OR IGNORE drops the copies.
            for i in (start..start + len).chain(std::iter::repeat_n(start + len - 1, shape - len)) {
                let m = &batch[i];
                q = q
                    .bind(to_db(m.msg_id.0))
                    .bind(m.conversation_id.to_string())
                    .bind(to_db(m.seq))
                    .bind(to_db(m.from.0))
                    .bind(encode_target(m.to))
                    .bind(m.kind.as_str())
                    .bind(&bodies[i])
                    .bind(&m.client_msg_id)
                    .bind(m.ts)
                    .bind(m.recalled)
                    .bind(m.edited_at)
                    .bind(&mentions[i]);
            }
            inserted += q
                .execute(&mut *tx)
                .await
                .map_err(|e| map_err("insert messages", e))?
                .rows_affected();
        }
        tx.commit().await.map_err(|e| map_err("commit", e))?;
        Ok(inserted)
    }

    async fn history(
        &self,
        conversation: ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(conversation.to_string())
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| map_err("history", e))?;
        rows.iter().map(message).collect()
    }

    async fn last_seq(&self, conversation: ConversationId) -> Result<u64> {
        let seq: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM messages WHERE conversation_id = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(conversation.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| map_err("last_seq", e))?;
        Ok(seq.map(from_db).unwrap_or(0))
    }

    async fn get(&self, msg_id: MessageId) -> Result<Option<Message>> {
        let row = sqlx::query(&format!("{SELECT} WHERE msg_id = ?"))
            .bind(to_db(msg_id.0))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map_err("get message", e))?;
        row.as_ref().map(message).transpose()
    }

    async fn recall(&self, msg_id: MessageId) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE messages SET recalled = 1, body = 'null' WHERE msg_id = ? AND recalled = 0",
        )
        .bind(to_db(msg_id.0))
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("recall", e))?
        .rows_affected();
        if changed > 0 {
            return Ok(true);
        }
        let exists: Option<bool> =
            sqlx::query_scalar("SELECT recalled FROM messages WHERE msg_id = ?")
                .bind(to_db(msg_id.0))
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| map_err("recall", e))?;
        match exists {
            Some(_) => Ok(false),
            None => Err(Error::NotFound(format!("no message {msg_id}"))),
        }
    }

    async fn edit(
        &self,
        msg_id: MessageId,
        body: &serde_json::Value,
        edited_at: i64,
    ) -> Result<bool> {
        let body = serde_json::to_string(body)
            .map_err(|e| Error::Internal(format!("body does not serialize: {e}")))?;
        // A recalled message keeps no body: `recalled = 0` leaves it alone.
        // A replayed append is ignored by the primary key, so the edit stays.
        let changed = sqlx::query(
            "UPDATE messages SET body = ?, edited_at = ? WHERE msg_id = ? AND recalled = 0",
        )
        .bind(&body)
        .bind(edited_at)
        .bind(to_db(msg_id.0))
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("edit", e))?
        .rows_affected();
        if changed > 0 {
            return Ok(true);
        }
        let exists: Option<bool> =
            sqlx::query_scalar("SELECT recalled FROM messages WHERE msg_id = ?")
                .bind(to_db(msg_id.0))
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| map_err("edit", e))?;
        match exists {
            Some(_) => Ok(false),
            None => Err(Error::NotFound(format!("no message {msg_id}"))),
        }
    }
}
