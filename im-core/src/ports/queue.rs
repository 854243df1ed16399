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

/// Backlog figures of one consumer group, in the backend's stored records:
/// entries, or batches for a backend that stores the entries one publish
/// put in one partition as one record (Redis). Zero means zero either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupStats {
    /// Entries handed out and not yet acked.
    pub pending: u64,
    /// Entries not yet handed out to the group (consumer lag).
    pub lag: u64,
}

/// The partition of an entry or conversation hash
/// ([`Entry::shard_hash`](crate::model::Entry::shard_hash)) among `partitions`.
///
/// ```
/// use im_core::ports::partition_of;
/// assert_eq!(partition_of(130, 64), 2);
/// assert_eq!(partition_of(7, 0), 0, "no partitions means one");
/// ```
pub fn partition_of(hash: u64, partitions: u32) -> u32 {
    (hash % u64::from(partitions.max(1))) as u32
}

/// The default number of partitions of a queue (fixed per deployment:
/// changing it moves conversations between partitions, see docs/deployment.md).
pub const DEFAULT_PARTITIONS: u32 = 64;

/// A durable, partitioned message log with consumer groups.
///
/// Entries are spread over [`MessageQueue::partitions`] partitions by
/// [`partition_of`] their [`Entry::shard_hash`](crate::model::Entry::shard_hash)
/// (a message's is its conversation's), and each partition is an ordered log.
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
/// - Within a partition, a consumer is handed entries in publish order, and
///   the entries of one `publish` call that fall in one partition stay
///   contiguous and in call order.
/// - After [`QueueConsumer::assign`], a consumer reads only the assigned
///   partitions; the entries of a newly assigned partition that other
///   consumers of the group left pending come first (in order), then new ones.
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

    /// How many partitions the queue has (fixed for its lifetime).
    fn partitions(&self) -> u32;
}

/// Which partitions a consumer reads: the bookkeeping of
/// [`QueueConsumer::assign`] that every backend needs (a consumer starts
/// with all partitions, none of them taken over).
///
/// ```
/// use im_core::ports::Assignment;
/// let mut a = Assignment::all(4);
/// assert_eq!(a.partitions(), &[0, 1, 2, 3]);
/// assert_eq!(a.reassign(&[2, 1], 4).unwrap(), vec![1, 2], "the first assignment takes all over");
/// assert_eq!(a.reassign(&[1, 3], 4).unwrap(), vec![3], "only new ones after that");
/// assert!(a.contains(3) && !a.contains(2));
/// assert!(a.reassign(&[4], 4).is_err(), "no partition 4");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    partitions: Vec<u32>,
    explicit: bool,
}

impl Assignment {
    /// Every one of `total` partitions, before any `assign`.
    pub fn all(total: u32) -> Assignment {
        Assignment {
            partitions: (0..total.max(1)).collect(),
            explicit: false,
        }
    }

    /// The partitions read now (sorted).
    pub fn partitions(&self) -> &[u32] {
        &self.partitions
    }

    /// Whether partition `p` is read.
    pub fn contains(&self, p: u32) -> bool {
        self.partitions.binary_search(&p).is_ok()
    }

    /// Moves to `partitions` (of `total`); answers the newly assigned ones,
    /// whose pending entries the consumer takes over first (all of them on
    /// the first call: until then nothing was taken over).
    pub fn reassign(&mut self, partitions: &[u32], total: u32) -> crate::error::Result<Vec<u32>> {
        if let Some(bad) = partitions.iter().find(|p| **p >= total) {
            return Err(crate::error::Error::InvalidArgument(format!(
                "partition {bad} does not exist (the queue has {total})"
            )));
        }
        let mut new = partitions.to_vec();
        new.sort_unstable();
        new.dedup();
        let newly = new
            .iter()
            .copied()
            .filter(|p| !self.explicit || self.partitions.binary_search(p).is_err())
            .collect();
        self.partitions = new;
        self.explicit = true;
        Ok(newly)
    }
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

    /// Reads only `partitions` from now on (a consumer starts with all). The
    /// caller must be the only consumer of its group working these partitions
    /// (it holds their [`PartitionLeases`](super::PartitionLeases)): entries
    /// of a newly assigned partition pending for other consumers are taken
    /// over and handed out first, in order, before its new entries. Entries
    /// already fetched from partitions no longer assigned stay pending (a
    /// successor takes them over).
    async fn assign(&mut self, partitions: &[u32]) -> Result<()> {
        let _ = partitions;
        Err(crate::error::Error::Internal(
            "this queue consumer cannot be assigned partitions".into(),
        ))
    }
}
