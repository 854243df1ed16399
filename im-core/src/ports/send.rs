//! `SendPipeline`: the send hot path of Logic (dedup, seq, enqueue) as one step.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::Envelope;
use crate::ports::DedupKey;
use crate::protocol::SendAck;

/// One send to admit: its idempotency key and its envelope (the message's
/// `msg_id`, `ts` and everything else are set; its `seq` is assigned here).
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    /// MurmurHash3 of (sender, client_msg_id).
    pub key: DedupKey,
    /// The envelope to publish.
    pub envelope: Envelope,
}

/// The outcome of one admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// Newly accepted: enqueued with this seq.
    New(SendAck),
    /// A retry of an accepted send: the original ack; nothing was enqueued.
    Duplicate(SendAck),
}

impl Admitted {
    /// The ack either way.
    pub fn ack(&self) -> &SendAck {
        match self {
            Admitted::New(a) | Admitted::Duplicate(a) => a,
        }
    }
}

/// Admits a batch of sends: for each, in order, claim its key; a key claimed
/// before yields the stored ack; otherwise allocate the next seq of its
/// conversation, publish the envelope with it, and remember the ack under the key.
///
/// Contract:
/// - An admission answered `New` is durable in the queue; a failed one left no
///   key behind (so it may be retried) and took no seq: a conversation's seqs
///   are 1, 2, 3, … with no value skipped.
/// - A key repeated within the batch is admitted once; later copies answer
///   `Duplicate` with the first one's ack.
/// - The key is remembered for at least `dedup_ttl` per conversation: a retry
///   names the same conversation (the idempotency scope is the sender's
///   `client_msg_id` within a conversation).
/// - Admissions of one conversation are enqueued in batch order, after those
///   of earlier calls that returned.
///
/// Backends do the whole batch in as few round trips as they can (on Redis one
/// script call per partition, all pipelined); [`crate::compose::ComposedSendPipeline`]
/// builds one from the three separate ports.
#[async_trait]
pub trait SendPipeline: Send + Sync + 'static {
    /// Admits a batch; the outer error means nothing of the batch was admitted.
    async fn admit(
        &self,
        batch: Vec<Admission>,
        dedup_ttl: Duration,
    ) -> Result<Vec<Result<Admitted>>>;

    /// The original acks of sends admitted before, by key and conversation
    /// (`None` for a key not remembered). Logic asks this only for sends it is
    /// about to refuse, so a retry of an accepted send gets its original
    /// answer whatever its payload is now (PROTOCOL.md v1.2, "Retries first").
    async fn lookup(
        &self,
        keys: &[(DedupKey, crate::id::ConversationId)],
        dedup_ttl: Duration,
    ) -> Result<Vec<Option<SendAck>>>;
}
