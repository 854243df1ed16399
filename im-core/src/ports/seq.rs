//! `SequenceAllocator`: the per-conversation seq counter.

use async_trait::async_trait;

use crate::error::Result;
use crate::id::ConversationId;

/// Gap-free, strictly increasing seqs per conversation.
///
/// Contract: `allocate(&[(c, n)])` reserves the next `n` seqs of `c` and
/// returns the first; concurrent callers never get overlapping blocks and the
/// blocks of one conversation are contiguous. A conversation repeated within
/// one call gets consecutive blocks in call order.
#[async_trait]
pub trait SequenceAllocator: Send + Sync + 'static {
    /// Reserves blocks of seqs, one per request, in one round trip.
    async fn allocate(&self, requests: &[(ConversationId, u32)]) -> Result<Vec<u64>>;

    /// The last allocated seq of a conversation (0 if none).
    async fn current(&self, conversation: ConversationId) -> Result<u64>;

    /// Gives back blocks that were allocated but never used (their publish
    /// failed), so no hole is left: for each `(c, first, n)`, if the last seq
    /// of `c` is still `first + n - 1`, it becomes `first - 1`; a block that
    /// is no longer the last one is left as it is. Returns how many blocks
    /// were given back.
    async fn rewind(&self, blocks: &[(ConversationId, u64, u32)]) -> Result<usize>;
}
