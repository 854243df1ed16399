//! A decorator over any [`MessageStore`]: it forwards every call to the
//! wrapped store and counts (and logs) what the persist workers archive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use im_core::id::{ConversationId, MessageId};
use im_core::model::Message;
use im_core::ports::MessageStore;
use im_core::Result;

/// Counters of an [`AuditingMessageStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditStats {
    /// Successful `append` calls.
    pub batches: u64,
    /// Messages offered to `append`.
    pub offered: u64,
    /// Messages that were new (the rest were replays, ignored by the store).
    pub stored: u64,
    /// `append` calls that failed.
    pub failures: u64,
}

/// Wraps an `Arc<dyn MessageStore>` (memory, MySQL, SQLite or your own) and
/// audits appends (and logs recalls and edits). Reads pass through untouched; results
/// are the wrapped store's, so the wrapper keeps its contract (and passes
/// `message_suite`).
pub struct AuditingMessageStore {
    inner: Arc<dyn MessageStore>,
    batches: AtomicU64,
    offered: AtomicU64,
    stored: AtomicU64,
    failures: AtomicU64,
}

impl std::fmt::Debug for AuditingMessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditingMessageStore")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl AuditingMessageStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn MessageStore>) -> Self {
        AuditingMessageStore {
            inner,
            batches: AtomicU64::new(0),
            offered: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            batches: self.batches.load(Ordering::Relaxed),
            offered: self.offered.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

#[async_trait]
impl MessageStore for AuditingMessageStore {
    async fn append(&self, batch: &[Message]) -> Result<u64> {
        match self.inner.append(batch).await {
            Ok(new) => {
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.offered
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.stored.fetch_add(new, Ordering::Relaxed);
                tracing::info!(
                    offered = batch.len(),
                    stored = new,
                    replays = batch.len() as u64 - new.min(batch.len() as u64),
                    "audit: archived a batch"
                );
                Ok(new)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, offered = batch.len(), "audit: append failed");
                Err(e)
            }
        }
    }

    async fn history(
        &self,
        conversation: ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.inner.history(conversation, after_seq, limit).await
    }

    async fn last_seq(&self, conversation: ConversationId) -> Result<u64> {
        self.inner.last_seq(conversation).await
    }

    async fn get(&self, msg_id: MessageId) -> Result<Option<Message>> {
        self.inner.get(msg_id).await
    }

    async fn recall(&self, msg_id: MessageId) -> Result<bool> {
        let changed = self.inner.recall(msg_id).await?;
        if changed {
            tracing::info!(%msg_id, "audit: recalled a message");
        }
        Ok(changed)
    }

    async fn edit(
        &self,
        msg_id: MessageId,
        body: &serde_json::Value,
        edited_at: i64,
    ) -> Result<bool> {
        let changed = self.inner.edit(msg_id, body, edited_at).await?;
        if changed {
            tracing::info!(%msg_id, edited_at, "audit: edited a message");
        }
        Ok(changed)
    }
}
