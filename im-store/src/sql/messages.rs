//! [`SqlMessageStore`]: the message archive, appended with one multi-row
//! insert-ignore per chunk (a few fixed shapes, see [`super::SHAPES`]) inside
//! one transaction per call. A recall sets `recalled` and replaces the body
//! with JSON `null`; a replayed append is ignored by the primary key, so it
//! never brings the body back.

use async_trait::async_trait;
use im_core::id::{ConversationId, MessageId};
use im_core::model::Message;
use im_core::ports::MessageStore;
use im_core::{Error, Result};

use super::db::{fail, store};
use super::engine::{Arg, Engine};
use super::{
    check_message, chunks, encode_body, encode_mentions, encode_target, padded, values_list,
    MessageRow, MESSAGE_COLUMNS, MESSAGE_COLUMN_COUNT,
};

const SELECT: &str = "SELECT msg_id, conversation_id, seq, sender, target, kind, body, client_msg_id, ts, recalled, edited_at, mentions FROM messages";

store! {
    /// The message archive on any SQL engine.
    SqlMessageStore
}

/// A row with the message columns (a `messages` row, or a conversation-list
/// row that carries its last message).
pub(super) fn message<E: Engine>(r: &E::Row) -> Result<Message> {
    let f = || -> std::result::Result<MessageRow, sqlx::Error> {
        Ok(MessageRow {
            msg_id: E::u64(r, "msg_id")?,
            conversation_id: E::text(r, "conversation_id")?,
            seq: E::u64(r, "seq")?,
            sender: E::u64(r, "sender")?,
            target: E::text(r, "target")?,
            kind: E::text(r, "kind")?,
            body: E::text(r, "body")?,
            client_msg_id: E::text(r, "client_msg_id")?,
            ts: E::i64(r, "ts")?,
            recalled: E::bool(r, "recalled")?,
            edited_at: E::opt_i64(r, "edited_at")?,
            mentions: E::opt_text(r, "mentions")?,
        })
    };
    f().map_err(fail::<E>("read message"))?.into_message()
}

impl<E: Engine> SqlMessageStore<E> {
    /// `Ok(false)` when the message exists (the update changed nothing),
    /// else `NotFound`.
    async fn exists_or_not_found(&self, what: &str, msg_id: MessageId) -> Result<bool> {
        let row = self
            .db
            .fetch_optional(
                what,
                "SELECT recalled FROM messages WHERE msg_id = ?",
                vec![E::DIALECT.id(msg_id.0)],
            )
            .await?;
        match row {
            Some(_) => Ok(false),
            None => Err(Error::NotFound(format!("no message {msg_id}"))),
        }
    }
}

#[async_trait]
impl<E: Engine> MessageStore for SqlMessageStore<E> {
    async fn append(&self, batch: &[Message]) -> Result<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let d = E::DIALECT;
        let mut bodies = Vec::with_capacity(batch.len());
        let mut mentions = Vec::with_capacity(batch.len());
        let mut seqs = Vec::with_capacity(batch.len());
        let mut convs = Vec::with_capacity(batch.len());
        let mut targets = Vec::with_capacity(batch.len());
        for m in batch {
            check_message(m)?;
            seqs.push(d.seq(m.seq)?);
            bodies.push(encode_body(m)?);
            mentions.push(encode_mentions(m)?);
            convs.push(m.conversation_id.to_string());
            targets.push(encode_target(m.to));
        }
        let mut tx = self.db.begin().await?;
        let mut inserted = 0;
        for (start, len, shape) in chunks(batch.len()) {
            let sql = d.insert_ignore(
                &format!("messages ({MESSAGE_COLUMNS})"),
                &values_list(shape, MESSAGE_COLUMN_COUNT),
            );
            let mut args: Vec<Arg<'_>> = Vec::with_capacity(shape * MESSAGE_COLUMN_COUNT);
            // Pad the tail by repeating its last row: the insert-ignore drops
            // the copies.
            for i in padded(start, len, shape) {
                let m = &batch[i];
                args.extend([
                    d.id(m.msg_id.0),
                    (&convs[i]).into(),
                    seqs[i].clone(),
                    d.id(m.from.0),
                    (&targets[i]).into(),
                    m.kind.as_str().into(),
                    (&bodies[i]).into(),
                    (&m.client_msg_id).into(),
                    m.ts.into(),
                    m.recalled.into(),
                    m.edited_at.into(),
                    mentions[i].as_deref().into(),
                ]);
            }
            inserted += tx.execute("insert messages", &sql, args).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn history(
        &self,
        conversation: ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let d = E::DIALECT;
        let c = conversation.to_string();
        let rows = self
            .db
            .fetch_all(
                "history",
                &format!("{SELECT} WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?"),
                vec![(&c).into(), d.seq_floor(after_seq), d.limit(limit)],
            )
            .await?;
        rows.iter().map(message::<E>).collect()
    }

    async fn last_seq(&self, conversation: ConversationId) -> Result<u64> {
        let c = conversation.to_string();
        let row = self
            .db
            .fetch_optional(
                "last_seq",
                "SELECT seq FROM messages WHERE conversation_id = ? ORDER BY seq DESC LIMIT 1",
                vec![(&c).into()],
            )
            .await?;
        match row {
            Some(r) => E::u64(&r, "seq").map_err(fail::<E>("last_seq")),
            None => Ok(0),
        }
    }

    async fn get(&self, msg_id: MessageId) -> Result<Option<Message>> {
        let row = self
            .db
            .fetch_optional(
                "get message",
                &format!("{SELECT} WHERE msg_id = ?"),
                vec![E::DIALECT.id(msg_id.0)],
            )
            .await?;
        row.as_ref().map(message::<E>).transpose()
    }

    async fn recall(&self, msg_id: MessageId) -> Result<bool> {
        // UPDATEs count matched rows, and the `recalled = FALSE` condition
        // makes every matched row a changed one.
        let changed = self
            .db
            .execute(
                "recall",
                "UPDATE messages SET recalled = TRUE, body = 'null' \
                 WHERE msg_id = ? AND recalled = FALSE",
                vec![E::DIALECT.id(msg_id.0)],
            )
            .await?;
        if changed > 0 {
            return Ok(true);
        }
        self.exists_or_not_found("recall", msg_id).await
    }

    async fn edit(
        &self,
        msg_id: MessageId,
        body: &serde_json::Value,
        edited_at: i64,
    ) -> Result<bool> {
        let body = serde_json::to_string(body)
            .map_err(|e| Error::Internal(format!("body does not serialize: {e}")))?;
        // A recalled message keeps no body: `recalled = FALSE` leaves it alone.
        // A replayed append is ignored by the primary key, so the edit stays.
        let changed = self
            .db
            .execute(
                "edit",
                "UPDATE messages SET body = ?, edited_at = ? WHERE msg_id = ? AND recalled = FALSE",
                vec![(&body).into(), edited_at.into(), E::DIALECT.id(msg_id.0)],
            )
            .await?;
        if changed > 0 {
            return Ok(true);
        }
        self.exists_or_not_found("edit", msg_id).await
    }
}
