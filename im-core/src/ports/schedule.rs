//! `ScheduleStore`: sends held until their `deliver_at` time (scheduled
//! delivery). Logic holds them; the [`Scheduler`](crate::task::Scheduler)
//! admits the due ones into the normal send path, where they get their seq.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::{MessageId, UserId};
use crate::model::Envelope;

use super::DedupKey;

/// A send held until `deliver_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledSend {
    /// The message as it will be enqueued (msg_id assigned, seq 0 until
    /// delivery; `ts` is replaced by the delivery time).
    pub envelope: Envelope,
    /// When to deliver, Unix milliseconds.
    pub deliver_at: i64,
}

impl ScheduledSend {
    /// The send's idempotency key: `(sender, client_msg_id)`.
    pub fn key(&self) -> DedupKey {
        let m = &self.envelope.message;
        DedupKey::of_send(m.from, &m.client_msg_id)
    }

    /// The message id.
    pub fn msg_id(&self) -> MessageId {
        self.envelope.message.msg_id
    }

    /// The sender.
    pub fn owner(&self) -> UserId {
        self.envelope.message.from
    }
}

/// Durable holding of scheduled sends.
///
/// Contract (see `testkit::schedule_suite`):
/// - `hold` is idempotent by [`ScheduledSend::key`]: while the key is
///   remembered (at least until `deliver_at + key_ttl`, also after delivery or
///   cancellation) it returns the send first held under it and holds nothing
///   new. Logic never holds one msg_id under two keys.
/// - `due` returns held sends with `deliver_at <= now`, soonest first, without
///   removing them (two schedulers may both see one; the send path's dedup
///   admits it once).
/// - `release` removes delivered sends; `cancel` removes a send of its owner
///   only and says whether it was held.
/// - `pending` lists an owner's held sends, soonest first.
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Holds a send; `Some(earlier)` if its key was held before.
    async fn hold(&self, send: &ScheduledSend, key_ttl: Duration) -> Result<Option<ScheduledSend>>;

    /// Up to `max` sends due at `now`, soonest first.
    async fn due(&self, now: i64, max: usize) -> Result<Vec<ScheduledSend>>;

    /// Forgets delivered sends (their keys stay remembered).
    async fn release(&self, ids: &[MessageId]) -> Result<()>;

    /// Cancels `owner`'s held send; false if none such is held.
    async fn cancel(&self, owner: UserId, msg_id: MessageId) -> Result<bool>;

    /// The owner's held sends, soonest first.
    async fn pending(&self, owner: UserId) -> Result<Vec<ScheduledSend>>;
}
