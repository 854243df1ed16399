//! `MessageQueue`: the durable log between Logic (publish) and Task (consume).

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::Entry;

/// The opaque id of one queue entry (backend-specific, e.g. `"3/1700000000000-0"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub String);

/// One entry handed to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The entry's id, to ack.
    pub id: EntryId,
    /// The carried entry (a message envelope or an event).
    pub entry: Entry,
    /// How many times this entry was handed out (1 on first delivery).
    pub delivery_count: u32,
}

/// Backlog figures of one consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupStats {
    /// Entries handed out and not yet acked.
    pub pending: u64,
    /// Entries not yet handed out to the group (consumer lag).
    pub lag: u64,
}

/// A durable, sharded message log with consumer groups.
///
/// Contract:
/// - `publish` returns only once every envelope of the batch is durable in the
///   queue; a failed publish published nothing that a consumer will see twice.
/// - Every group sees every entry published after the group was created
///   (groups are created from the start of the retained log).
/// - Two consumers of one group never get the same entry from `fetch`.
/// - An entry fetched and not acked stays pending; `claim_stale` hands it to
///   another consumer once it has been idle for at least `min_idle`, never before.
/// - An entry is never dropped while some group has not acked it.
#[async_trait]
pub trait MessageQueue: Send + Sync + 'static {
    /// Appends a batch (one round trip where the backend allows).
    async fn publish(&self, batch: &[Entry]) -> Result<()>;

    /// Creates a consumer group if it does not exist (idempotent).
    async fn create_group(&self, group: &str) -> Result<()>;

    /// Opens a consumer named `consumer` in `group` (creating the group if needed).
    async fn consumer(&self, group: &str, consumer: &str) -> Result<Box<dyn QueueConsumer>>;

    /// Pending and lag figures of a group.
    async fn stats(&self, group: &str) -> Result<GroupStats>;
}

/// One consumer of a group. Not shared between tasks: each worker owns one.
#[async_trait]
pub trait QueueConsumer: Send + 'static {
    /// Up to `max` new entries, waiting up to `block` when none is ready.
    async fn fetch(&mut self, max: usize, block: Duration) -> Result<Vec<Delivery>>;

    /// Acknowledges processed entries (one round trip per call).
    async fn ack(&mut self, ids: &[EntryId]) -> Result<()>;

    /// Takes over up to `max` entries of this group pending for at least
    /// `min_idle` (their consumer probably died).
    async fn claim_stale(&mut self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>>;
}
