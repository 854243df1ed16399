//! The Task layer: what happens to a message after Logic acked it.
//!
//! Two consumer groups read the queue independently: [`PushWorker`] (group
//! `push`) delivers to the connect nodes of the recipients' sessions, and
//! [`PersistWorker`] (group `persist`) writes the archive. Both ack an entry
//! only after their step succeeded. Push workers share the partitions by
//! [`lease`]s (one pusher per partition keeps a conversation in order, and a
//! dead pusher's partitions move within seconds); persist workers read every
//! partition and take over entries a dead consumer left pending by idle time
//! ([`claim`]): rows are idempotent, so their order does not matter. A third group, [`AUDIT_GROUP`], is for
//! applications: it sees every entry too (see `examples/audit_log`).
//!
//! [`NotifyDispatcher`] is not a consumer group: it is offered the messages
//! of users without a live session (from the push path) and coalesces them
//! into notifications for their devices (FCM, APNs, a webhook).

pub mod claim;
pub mod lease;
pub mod notify;
pub mod offline;
mod persist;
mod push;
mod schedule;

use std::time::Duration;

pub use notify::{
    BadgeSource, NotifyConfig, NotifyDispatcher, NotifyStats, PendingNotification,
    MAX_PREVIEW_CHARS, MAX_TITLE_CHARS,
};
pub use offline::{ByPlatform, OfflineNotifier, UnreadBadge};
pub use persist::PersistWorker;
pub use push::{OfflineSink, PushWorker};
pub use schedule::{Scheduler, SchedulerConfig};

/// Name of the push consumer group.
pub const PUSH_GROUP: &str = "push";
/// Name of the persist consumer group.
pub const PERSIST_GROUP: &str = "persist";
/// Name of the audit consumer group: created at startup when auditing is
/// enabled (so it misses nothing), read by any application that attaches a
/// consumer to it.
pub const AUDIT_GROUP: &str = "audit";

/// Settings shared by the workers.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This consumer's name within its group (unique per process and worker).
    pub consumer: String,
    /// Most entries fetched at once.
    pub batch: usize,
    /// How long a fetch waits for entries.
    pub block: Duration,
    /// An entry pending this long is taken over from its (dead) consumer.
    /// Must exceed the longest legitimate processing time.
    pub claim_idle: Duration,
    /// How often to look for such entries.
    pub claim_every: Duration,
    /// Deadline of one push to one connect node.
    pub push_timeout: Duration,
    /// Longest backoff between retries of a failing step.
    pub max_backoff: Duration,
    /// Lifetime of a partition lease (workers with leases only): a dead
    /// worker's partitions move to the others after about this long.
    pub lease_ttl: Duration,
    /// How long a fetch that found fewer than `batch` entries keeps reading
    /// for more before the step runs (zero: never). For workers off the
    /// latency path only — the persist worker — so that a trickle of
    /// messages is written in few large transactions, not many small ones.
    pub linger: Duration,
}

/// The persist workers' [`WorkerConfig::linger`] in `Node` and the cluster's
/// task role: a row waits at most this long more before it is written.
pub const PERSIST_LINGER: Duration = Duration::from_millis(20);

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            consumer: "worker-0".into(),
            batch: 512,
            block: Duration::from_millis(1000),
            claim_idle: Duration::from_secs(15),
            claim_every: Duration::from_secs(5),
            push_timeout: Duration::from_secs(3),
            max_backoff: Duration::from_secs(5),
            lease_ttl: Duration::from_millis(1500),
            linger: Duration::ZERO,
        }
    }
}
