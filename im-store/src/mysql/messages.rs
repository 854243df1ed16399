//! `MySqlMessageStore`: the message archive on MySQL, appended with one
//! multi-row `INSERT IGNORE` per chunk (a few fixed shapes, see
//! [`crate::sql::SHAPES`]) inside one transaction per call. A recall sets
//! `recalled` and replaces the body with JSON `null`; a replayed append is
//! ignored by the primary key, so it never brings the body back.

use std::sync::LazyLock;

use async_trait::async_trait;
use im_core::id::{ConversationId, MessageId};
use im_core::model::Message;
use im_core::ports::MessageStore;
use im_core::Result;
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::Row;

use super::{map_err, opt_text, text};
use crate::sql::{
    check_message, chunks, encode_body, encode_mentions, encode_target, values_list, MessageRow,
    MESSAGE_COLUMNS, MESSAGE_COLUMN_COUNT, SHAPES,
};

/// The `INSERT IGNORE` of each shape, in [`SHAPES`] order.
static INSERTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    SHAPES
        .iter()
        .map(|&rows| {
            format!(
                "INSERT IGNORE INTO messages ({MESSAGE_COLUMNS}) VALUES {}",
                values_list(rows, MESSAGE_COLUMN_COUNT)
            )
        })
        .collect()
});

const SELECT: &str = "SELECT msg_id, conversation_id, seq, sender, target, kind, body, client_msg_id, ts, recalled, edited_at, mentions FROM messages";

/// The message archive on MySQL.
#[derive(Debug, Clone)]
pub struct MySqlMessageStore {
    pool: MySqlPool,
}

fn row(r: &MySqlRow) -> std::result::Result<MessageRow, sqlx::Error> {
    Ok(MessageRow {
        msg_id: r.try_get("msg_id")?,
        conversation_id: text(r, "conversation_id")?,
        seq: r.try_get("seq")?,
        sender: r.try_get("sender")?,
        target: text(r, "target")?,
        kind: text(r, "kind")?,
        body: text(r, "body")?,
        client_msg_id: text(r, "client_msg_id")?,
        ts: r.try_get("ts")?,
        recalled: r.try_get("recalled")?,
        edited_at: r.try_get("edited_at")?,
        mentions: opt_text(r, "mentions")?,
    })
}

pub(super) fn message(r: &MySqlRow) -> Result<Message> {
    row(r)
        .map_err(|e| map_err("read message", e))?
        .into_message()
}

impl MySqlMessageStore {
    pub(crate) fn new(pool: MySqlPool) -> Self {
        MySqlMessageStore { pool }
    }
}

#[async_trait]
impl MessageStore for MySqlMessageStore {
    async fn append(&self, batch: &[Message]) -> Result<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut bodies = Vec::with_capacity(batch.len());
        let mut mentions = Vec::with_capacity(batch.len());
        for m in batch {
            check_message(m)?;
            bodies.push(encode_body(m)?);
            mentions.push(encode_mentions(m)?);
        }
        let mut tx = self.pool.begin().await.map_err(|e| map_err("begin", e))?;
        let mut inserted = 0;
        for (start, len, shape) in chunks(batch.len()) {
            let sql = SHAPES
                .iter()
                .position(|&s| s == shape)
                .and_then(|i| INSERTS.get(i))
                .ok_or_else(|| {
                    im_core::Error::Internal(format!("no statement of shape {shape}"))
                })?;
            let mut q = sqlx::query(sql);
            // Pad the tail by repeating its last row: INSERT IGNORE drops the copies.
            for i in (start..start + len).chain(std::iter::repeat_n(start + len - 1, shape - len)) {
                let m = &batch[i];
                q = q
                    .bind(m.msg_id.0)
                    .bind(m.conversation_id.to_string())
                    .bind(m.seq)
                    .bind(m.from.0)
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
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(conversation.to_string())
        .bind(after_seq)
        .bind(u64::try_from(limit).unwrap_or(u64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| map_err("history", e))?;
        rows.iter().map(message).collect()
    }

    async fn last_seq(&self, conversation: ConversationId) -> Result<u64> {
        let seq: Option<u64> = sqlx::query_scalar(
            "SELECT seq FROM messages WHERE conversation_id = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(conversation.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| map_err("last_seq", e))?;
        Ok(seq.unwrap_or(0))
    }

    async fn get(&self, msg_id: MessageId) -> Result<Option<Message>> {
        let row = sqlx::query(&format!("{SELECT} WHERE msg_id = ?"))
            .bind(msg_id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map_err("get message", e))?;
        row.as_ref().map(message).transpose()
    }

    async fn recall(&self, msg_id: MessageId) -> Result<bool> {
        // The connection reports matched rows (CLIENT_FOUND_ROWS), and the
        // `recalled = 0` condition makes every matched row a changed one.
        let changed = sqlx::query(
            "UPDATE messages SET recalled = 1, body = 'null' WHERE msg_id = ? AND recalled = 0",
        )
        .bind(msg_id.0)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("recall", e))?
        .rows_affected();
        if changed > 0 {
            return Ok(true);
        }
        let exists: Option<bool> =
            sqlx::query_scalar("SELECT recalled FROM messages WHERE msg_id = ?")
                .bind(msg_id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| map_err("recall", e))?;
        match exists {
            Some(_) => Ok(false),
            None => Err(im_core::Error::NotFound(format!("no message {msg_id}"))),
        }
    }

    async fn edit(
        &self,
        msg_id: MessageId,
        body: &serde_json::Value,
        edited_at: i64,
    ) -> Result<bool> {
        let body = serde_json::to_string(body)
            .map_err(|e| im_core::Error::Internal(format!("body does not serialize: {e}")))?;
        // A recalled message keeps no body: `recalled = 0` leaves it alone.
        // A replayed append is ignored by the primary key, so the edit stays.
        let changed = sqlx::query(
            "UPDATE messages SET body = ?, edited_at = ? WHERE msg_id = ? AND recalled = 0",
        )
        .bind(&body)
        .bind(edited_at)
        .bind(msg_id.0)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("edit", e))?
        .rows_affected();
        if changed > 0 {
            return Ok(true);
        }
        let exists: Option<bool> =
            sqlx::query_scalar("SELECT recalled FROM messages WHERE msg_id = ?")
                .bind(msg_id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| map_err("edit", e))?;
        match exists {
            Some(_) => Ok(false),
            None => Err(im_core::Error::NotFound(format!("no message {msg_id}"))),
        }
    }
}
