//! The in-memory `SequenceAllocator`.

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::Result;
use crate::id::ConversationId;
use crate::ports::SequenceAllocator;

/// Per-conversation counters under one lock.
#[derive(Debug, Default)]
pub struct MemorySequenceAllocator {
    counters: Mutex<HashMap<ConversationId, u64>>,
}

impl MemorySequenceAllocator {
    /// An empty allocator.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SequenceAllocator for MemorySequenceAllocator {
    async fn allocate(&self, requests: &[(ConversationId, u32)]) -> Result<Vec<u64>> {
        let mut counters = self.counters.lock();
        Ok(requests
            .iter()
            .map(|(c, n)| {
                let slot = counters.entry(*c).or_insert(0);
                let first = *slot + 1;
                *slot += u64::from(*n);
                first
            })
            .collect())
    }

    async fn current(&self, conversation: ConversationId) -> Result<u64> {
        Ok(self
            .counters
            .lock()
            .get(&conversation)
            .copied()
            .unwrap_or(0))
    }

    async fn rewind(&self, blocks: &[(ConversationId, u64, u32)]) -> Result<usize> {
        let mut counters = self.counters.lock();
        let mut given_back = 0;
        // Latest blocks first, so consecutive blocks of one call all rewind.
        for (c, first, n) in blocks.iter().rev() {
            if let Some(slot) = counters.get_mut(c) {
                if *first >= 1 && *slot == first + u64::from(*n) - 1 {
                    *slot = first - 1;
                    given_back += 1;
                }
            }
        }
        Ok(given_back)
    }
}
