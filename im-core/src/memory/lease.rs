//! The in-memory `PartitionLeases`: one table under a lock, expiry by clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::Result;
use crate::ports::PartitionLeases;

#[derive(Debug, Default)]
struct Table {
    /// (scope, partition) → (holder, expiry).
    leases: HashMap<(String, u32), (String, Instant)>,
    /// (scope, holder) → expiry.
    members: HashMap<(String, String), Instant>,
}

/// Partition leases of one process (workers of one node share it).
#[derive(Debug, Default)]
pub struct MemoryPartitionLeases {
    table: Mutex<Table>,
}

impl MemoryPartitionLeases {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PartitionLeases for MemoryPartitionLeases {
    async fn acquire(
        &self,
        scope: &str,
        holder: &str,
        partitions: &[u32],
        ttl: Duration,
    ) -> Result<Vec<u32>> {
        let now = Instant::now();
        let mut t = self.table.lock();
        let mut held = Vec::new();
        for &p in partitions {
            let slot = t.leases.entry((scope.to_owned(), p));
            let free = match &slot {
                std::collections::hash_map::Entry::Occupied(o) => {
                    let (h, until) = o.get();
                    h == holder || *until <= now
                }
                std::collections::hash_map::Entry::Vacant(_) => true,
            };
            if free {
                slot.insert_entry((holder.to_owned(), now + ttl));
                held.push(p);
            }
        }
        Ok(held)
    }

    async fn release(&self, scope: &str, holder: &str, partitions: &[u32]) -> Result<()> {
        let mut t = self.table.lock();
        for &p in partitions {
            let key = (scope.to_owned(), p);
            if t.leases.get(&key).is_some_and(|(h, _)| h == holder) {
                t.leases.remove(&key);
            }
        }
        Ok(())
    }

    async fn heartbeat(&self, scope: &str, holder: &str, ttl: Duration) -> Result<usize> {
        let now = Instant::now();
        let mut t = self.table.lock();
        t.members
            .insert((scope.to_owned(), holder.to_owned()), now + ttl);
        t.members.retain(|_, until| *until > now);
        Ok(t.members.keys().filter(|(s, _)| s == scope).count())
    }
}
