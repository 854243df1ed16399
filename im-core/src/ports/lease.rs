//! `PartitionLeases`: who works a queue partition right now.
//!
//! Order within a conversation needs exactly one pusher per partition at a
//! time (ARCHITECTURE.md, "One pusher per partition"). Leases give that: a
//! worker works a partition only while it holds the partition's lease, renews
//! it well before it expires, and stops working the partition the moment a
//! renewal fails. A dead worker's leases expire after their TTL and live
//! workers take the partitions over (with the entries left pending).

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

/// Time-limited, exclusive claims on queue partitions, per scope (one scope
/// per consumer group, e.g. `push`).
///
/// Contract:
/// - `acquire` takes, for `holder`, every partition of the list that is free
///   (never held, released, or expired) and renews those it already holds;
///   it returns exactly the partitions `holder` holds afterwards, each until
///   `ttl` after the call started. A partition held by another live holder is
///   never returned.
/// - `release` frees partitions held by `holder` (others' leases untouched).
/// - `heartbeat` records `holder` as a live member of the scope for `ttl` and
///   returns how many members are live (itself included), so holders can
///   share partitions fairly.
/// - Scopes are independent.
#[async_trait]
pub trait PartitionLeases: Send + Sync + 'static {
    /// Takes free partitions and renews own ones; returns those held now.
    async fn acquire(
        &self,
        scope: &str,
        holder: &str,
        partitions: &[u32],
        ttl: Duration,
    ) -> Result<Vec<u32>>;

    /// Frees partitions held by `holder`.
    async fn release(&self, scope: &str, holder: &str, partitions: &[u32]) -> Result<()>;

    /// Announces `holder` as live for `ttl`; returns the live member count.
    async fn heartbeat(&self, scope: &str, holder: &str, ttl: Duration) -> Result<usize>;
}
