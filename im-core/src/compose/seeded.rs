//! [`SeededSequenceAllocator`]: an in-memory sequence allocator that
//! continues after the seqs already stored in a durable message archive.
//!
//! # Why
//!
//! With a durable archive (e.g. the quickstart's `--data sqlite://…`) messages survive a
//! restart, but the sequence allocator stays in memory and would start every
//! conversation at seq 0 again. The next send would then get seq 1, which
//! the archive already holds: `INSERT OR IGNORE` drops the new message
//! (silently lost), and `after_seq` paging would never show it. Seqs must
//! continue after the stored ones.
//!
//! # How
//!
//! The first time this process allocates (or reads) a seq of a
//! conversation, the wrapper raises the inner counter to
//! `max(inner.current(conv), messages.last_seq(conv))`, then remembers that
//! the conversation is seeded; every later allocation goes straight to the
//! inner allocator. Seeding is serialized by one async lock, so concurrent
//! first sends of a conversation cannot race past the seed.
//!
//! This is exact for a single process whose in-memory queue died with it:
//! nothing of the previous life can still be persisted after the seed was
//! read. A message that was acked but not yet persisted when the previous
//! process stopped is lost with the in-memory queue, and its seq may be
//! reused. A cluster uses a durable allocator (Redis) instead.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::Result;
use crate::id::ConversationId;
use crate::ports::{MessageStore, SequenceAllocator};
use async_trait::async_trait;

/// A `SequenceAllocator` that seeds each conversation from the archive's
/// last stored seq on first use (see the module docs for why).
pub struct SeededSequenceAllocator {
    inner: Arc<dyn SequenceAllocator>,
    messages: Arc<dyn MessageStore>,
    seeded: Mutex<HashSet<ConversationId>>,
    seeding: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SeededSequenceAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededSequenceAllocator")
            .field("seeded", &self.seeded_set().len())
            .finish_non_exhaustive()
    }
}

impl SeededSequenceAllocator {
    /// Wraps `inner` (normally a fresh `MemorySequenceAllocator`), seeding
    /// from `messages`.
    pub fn new(inner: Arc<dyn SequenceAllocator>, messages: Arc<dyn MessageStore>) -> Self {
        SeededSequenceAllocator {
            inner,
            messages,
            seeded: Mutex::new(HashSet::new()),
            seeding: tokio::sync::Mutex::new(()),
        }
    }

    fn seeded_set(&self) -> MutexGuard<'_, HashSet<ConversationId>> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.seeded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Raises the inner counter of `conversation` to the archive's last seq, once.
    async fn seed(&self, conversation: ConversationId) -> Result<()> {
        if self.seeded_set().contains(&conversation) {
            return Ok(());
        }
        let _one_at_a_time = self.seeding.lock().await;
        if self.seeded_set().contains(&conversation) {
            return Ok(());
        }
        let stored = self.messages.last_seq(conversation).await?;
        let mut current = self.inner.current(conversation).await?;
        while current < stored {
            let step = u32::try_from(stored - current).unwrap_or(u32::MAX);
            self.inner.allocate(&[(conversation, step)]).await?;
            current += u64::from(step);
        }
        self.seeded_set().insert(conversation);
        Ok(())
    }
}

#[async_trait]
impl SequenceAllocator for SeededSequenceAllocator {
    async fn allocate(&self, requests: &[(ConversationId, u32)]) -> Result<Vec<u64>> {
        for (conversation, _) in requests {
            self.seed(*conversation).await?;
        }
        self.inner.allocate(requests).await
    }

    async fn current(&self, conversation: ConversationId) -> Result<u64> {
        self.seed(conversation).await?;
        self.inner.current(conversation).await
    }

    async fn rewind(&self, blocks: &[(ConversationId, u64, u32)]) -> Result<usize> {
        self.inner.rewind(blocks).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use crate::memory::{MemoryMessageStore, MemorySequenceAllocator};
    use crate::testkit::{random_direct, sample_message, sequence_suite};

    use super::*;

    fn seeded(messages: Arc<dyn MessageStore>) -> Arc<dyn SequenceAllocator> {
        Arc::new(SeededSequenceAllocator::new(
            Arc::new(MemorySequenceAllocator::new()),
            messages,
        ))
    }

    #[tokio::test]
    async fn conforms_on_an_empty_archive() {
        sequence_suite(|| async { seeded(Arc::new(MemoryMessageStore::default())) }).await;
    }

    #[tokio::test]
    async fn continues_after_the_stored_seqs() {
        let store = Arc::new(MemoryMessageStore::default());
        let (_, _, conv) = random_direct();
        let (_, _, fresh) = random_direct();
        store
            .append(&[sample_message(conv, 1, "a"), sample_message(conv, 7, "b")])
            .await
            .unwrap();
        let s = seeded(store);
        assert_eq!(s.current(conv).await.unwrap(), 7);
        assert_eq!(
            s.allocate(&[(conv, 2), (fresh, 1)]).await.unwrap(),
            vec![8, 1]
        );
        assert_eq!(s.allocate(&[(conv, 1)]).await.unwrap(), vec![10]);
        assert_eq!(s.current(conv).await.unwrap(), 10);
    }

    #[tokio::test]
    async fn concurrent_first_sends_do_not_collide() {
        let store = Arc::new(MemoryMessageStore::default());
        let (_, _, conv) = random_direct();
        store.append(&[sample_message(conv, 5, "x")]).await.unwrap();
        let s = seeded(store);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.allocate(&[(conv, 1)]).await.unwrap()[0] })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got.sort_unstable();
        assert_eq!(got, (6..22).collect::<Vec<u64>>());
    }
}
