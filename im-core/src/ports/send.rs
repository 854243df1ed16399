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
/// Contract: an admission answered `New` is durable in the queue; a failed one
/// left no key behind (so it may be retried); a key repeated within the batch
/// is admitted once. Backends do the whole batch in one round trip where they
/// can (a Lua script on Redis); [`crate::compose::ComposedSendPipeline`] builds
/// one from the three separate ports.
#[async_trait]
pub trait SendPipeline: Send + Sync + 'static {
    /// Admits a batch; the outer error means nothing of the batch was admitted.
    async fn admit(
        &self,
        batch: Vec<Admission>,
        dedup_ttl: Duration,
    ) -> Result<Vec<Result<Admitted>>>;
}
