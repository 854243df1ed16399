//! Resharding the archive: moving whole conversations between databases when
//! the shard list changes (docs/deployment.md, "Resharding the archive").
//!
//! Two steps, each safe to repeat and to interrupt:
//! 1. [`MySqlShards::copy_to`]: every conversation found on a shard of the old
//!    list whose home in the new list is another database is copied there
//!    (messages through the archive's idempotent `append`, the conversation
//!    row and the mention index through `record`, read cursors and list
//!    flags by upsert). Nothing is deleted, so readers still on the old list
//!    see everything.
//! 2. [`MySqlShards::remove_strays`], on the new list once every process uses
//!    it: each shard deletes the conversations it no longer homes, after
//!    checking that the home shard holds at least as many of its messages.
//!
//! Between the two, a shard may hold stale copies; the sharded stores only
//! read a conversation on its home shard, and lists skip rows found away from
//! home, so nothing shows twice.

use std::collections::BTreeSet;

use im_core::id::ConversationId;
use im_core::ports::{ConversationStore, MessageStore};
use im_core::Error;
use sqlx::Row;

use super::{map_err, text, MySqlShards, MySqlStore};

/// Messages read per page while copying a conversation.
const PAGE: usize = 1000;

/// What a resharding step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReshardReport {
    /// Conversations looked at on every shard.
    pub conversations_seen: u64,
    /// Conversations copied to (step 1) or deleted from (step 2) a shard.
    pub conversations_moved: u64,
    /// Message rows copied (step 1: new ones only) or deleted (step 2).
    pub messages: u64,
    /// Read cursor rows copied or deleted.
    pub cursors: u64,
}

/// Which database a store is connected to (two URLs may name the same one).
async fn identity(store: &MySqlStore) -> Result<String, Error> {
    let row = sqlx::query("SELECT CONCAT(@@hostname, ':', @@port, '/', DATABASE()) AS id")
        .fetch_one(store.pool())
        .await
        .map_err(|e| map_err("reshard", e))?;
    text(&row, "id").map_err(|e| map_err("reshard", e))
}

/// Every conversation with a row on `store`.
async fn conversations_on(store: &MySqlStore) -> Result<Vec<ConversationId>, Error> {
    let rows = sqlx::query(
        "SELECT conversation_id FROM messages GROUP BY conversation_id \
         UNION SELECT conversation_id FROM conversations \
         UNION SELECT conversation_id FROM user_conversations GROUP BY conversation_id",
    )
    .fetch_all(store.pool())
    .await
    .map_err(|e| map_err("reshard: list conversations", e))?;
    let mut out = BTreeSet::new();
    for r in &rows {
        let s = text(r, "conversation_id").map_err(|e| map_err("reshard", e))?;
        // A row whose id does not parse was not written by im: leave it.
        if let Ok(c) = s.parse::<ConversationId>() {
            out.insert(c);
        }
    }
    Ok(out.into_iter().collect())
}

async fn count_messages(store: &MySqlStore, c: ConversationId) -> Result<u64, Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE conversation_id = ?")
        .bind(c.to_string())
        .fetch_one(store.pool())
        .await
        .map_err(|e| map_err("reshard: count", e))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Copies one conversation from `from` to `to`; returns (new messages, cursors).
async fn copy_conversation(
    from: &MySqlStore,
    to: &MySqlStore,
    c: ConversationId,
) -> Result<(u64, u64), Error> {
    let (src, dst) = (from.messages(), to.messages());
    let mut copied = 0;
    let mut after = 0;
    let mut last = None;
    loop {
        let page = src.history(c, after, PAGE).await?;
        let Some(tail) = page.last() else { break };
        after = tail.seq;
        copied += dst.append(&page).await?;
        // The mention index follows its messages (recording is idempotent
        // and never moves the conversation's last message back).
        let mentioning: Vec<_> = page
            .iter()
            .filter(|m| m.mentions.is_some())
            .cloned()
            .collect();
        if !mentioning.is_empty() {
            to.conversations().record(&mentioning).await?;
        }
        last = Some(tail.clone());
        if page.len() < PAGE {
            break;
        }
    }
    if let Some(m) = last {
        to.conversations().record(std::slice::from_ref(&m)).await?;
    }
    let cursors = sqlx::query(
        "SELECT user_id, read_seq, listed FROM user_conversations WHERE conversation_id = ?",
    )
    .bind(c.to_string())
    .fetch_all(from.pool())
    .await
    .map_err(|e| map_err("reshard: read cursors", e))?;
    for r in &cursors {
        let user: u64 = r.try_get("user_id").map_err(|e| map_err("reshard", e))?;
        let read_seq: u64 = r.try_get("read_seq").map_err(|e| map_err("reshard", e))?;
        let listed: bool = r.try_get("listed").map_err(|e| map_err("reshard", e))?;
        sqlx::query(
            "INSERT INTO user_conversations (user_id, conversation_id, read_seq, listed) \
             VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
             read_seq = GREATEST(read_seq, VALUES(read_seq)), listed = VALUES(listed)",
        )
        .bind(user)
        .bind(c.to_string())
        .bind(read_seq)
        .bind(listed)
        .execute(to.pool())
        .await
        .map_err(|e| map_err("reshard: write cursors", e))?;
    }
    Ok((copied, cursors.len() as u64))
}

impl MySqlShards {
    /// Step 1: copies every conversation of these (old) shards whose home in
    /// `to` is another database. Idempotent; deletes nothing. Run it while no
    /// persist worker writes (docs/deployment.md).
    pub async fn copy_to(&self, to: &MySqlShards) -> Result<ReshardReport, Error> {
        let mut targets = Vec::new();
        for s in to.stores() {
            targets.push(identity(s).await?);
        }
        let mut report = ReshardReport::default();
        for from in self.stores() {
            let here = identity(from).await?;
            for c in conversations_on(from).await? {
                report.conversations_seen += 1;
                let home = to.map().shard_of(c);
                if targets[home] == here {
                    continue;
                }
                let (messages, cursors) = copy_conversation(from, &to.stores()[home], c).await?;
                report.conversations_moved += 1;
                report.messages += messages;
                report.cursors += cursors;
            }
        }
        Ok(report)
    }

    /// Step 2: on each shard, deletes the conversations another shard homes,
    /// once the home shard holds at least as many of their messages
    /// (otherwise fails, deleting nothing more: run [`MySqlShards::copy_to`]
    /// first).
    pub async fn remove_strays(&self) -> Result<ReshardReport, Error> {
        let mut report = ReshardReport::default();
        for (i, shard) in self.stores().iter().enumerate() {
            for c in conversations_on(shard).await? {
                report.conversations_seen += 1;
                let home = self.map().shard_of(c);
                if home == i {
                    continue;
                }
                let (here, there) = (
                    count_messages(shard, c).await?,
                    count_messages(&self.stores()[home], c).await?,
                );
                if there < here {
                    return Err(Error::InvalidArgument(format!(
                        "reshard: conversation {c} has {here} messages on shard {i} but only \
                         {there} on its home shard {home}; run the copy step first"
                    )));
                }
                let mut tx = shard
                    .pool()
                    .begin()
                    .await
                    .map_err(|e| map_err("begin", e))?;
                let mut deleted = [0u64; 5];
                for (n, table) in [
                    "messages",
                    "user_conversations",
                    "conversations",
                    "conversation_mentions",
                    "conversation_all_mentions",
                ]
                .iter()
                .enumerate()
                {
                    deleted[n] =
                        sqlx::query(&format!("DELETE FROM {table} WHERE conversation_id = ?"))
                            .bind(c.to_string())
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| map_err("reshard: delete", e))?
                            .rows_affected();
                }
                tx.commit().await.map_err(|e| map_err("commit", e))?;
                report.conversations_moved += 1;
                report.messages += deleted[0];
                report.cursors += deleted[1];
            }
        }
        Ok(report)
    }
}
