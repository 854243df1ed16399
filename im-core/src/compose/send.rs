//! The send pipeline out of a dedup store, a sequence allocator and a queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::ports::{
    Admission, Admitted, DedupKey, DedupStore, MessageQueue, SendPipeline, SequenceAllocator,
};
use crate::protocol::SendAck;

/// The marker a claimed key holds until its send is enqueued.
const IN_FLIGHT: &str = "";

/// A [`SendPipeline`] composed of three ports: one dedup claim, one seq
/// allocation and one publish per batch (three round trips on networked
/// backends; the Redis backend has a one-round-trip pipeline of its own).
///
/// A retry that arrives while the original is still being enqueued waits for
/// it (up to `in_flight_wait`), then answers `unavailable` so the client retries.
///
/// Admissions run one call at a time (a lock around seq allocation and
/// publish), so conversations are enqueued in seq order and a failed publish
/// can give its seqs back ([`SequenceAllocator::rewind`]): no hole. Several
/// processes composing over shared networked ports would not be serialized
/// against each other; they should use a backend's own pipeline (Redis has one).
pub struct ComposedSendPipeline {
    dedup: Arc<dyn DedupStore>,
    seq: Arc<dyn SequenceAllocator>,
    queue: Arc<dyn MessageQueue>,
    in_flight_wait: Duration,
    turn: tokio::sync::Mutex<()>,
}

impl ComposedSendPipeline {
    /// Composes the three ports.
    pub fn new(
        dedup: Arc<dyn DedupStore>,
        seq: Arc<dyn SequenceAllocator>,
        queue: Arc<dyn MessageQueue>,
    ) -> Self {
        ComposedSendPipeline {
            dedup,
            seq,
            queue,
            in_flight_wait: Duration::from_secs(3),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    async fn wait_for_original(&self, key: DedupKey, ttl: Duration) -> Result<Admitted> {
        let deadline = tokio::time::Instant::now() + self.in_flight_wait;
        let mut pause = Duration::from_millis(2);
        loop {
            match self
                .dedup
                .claim(&[(key, IN_FLIGHT.to_owned())], ttl)
                .await?
                .pop()
                .flatten()
            {
                // The original failed and released its key: we now own it.
                None => {
                    self.dedup.release(&[key]).await?;
                    return Err(Error::unavailable_msg(
                        "an earlier send with this client_msg_id failed; retry",
                    ));
                }
                Some(v) if v != IN_FLIGHT => return decode_ack(&v).map(Admitted::Duplicate),
                Some(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::unavailable_msg(
                    "a send with this client_msg_id is still in flight; retry",
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

fn decode_ack(v: &str) -> Result<SendAck> {
    serde_json::from_str(v).map_err(|e| Error::Internal(format!("corrupt dedup entry: {e}")))
}

fn encode_ack(a: &SendAck) -> String {
    serde_json::to_string(a).unwrap_or_default()
}

#[async_trait]
impl SendPipeline for ComposedSendPipeline {
    async fn admit(
        &self,
        mut batch: Vec<Admission>,
        ttl: Duration,
    ) -> Result<Vec<Result<Admitted>>> {
        let claims = self
            .dedup
            .claim(
                &batch
                    .iter()
                    .map(|a| (a.key, IN_FLIGHT.to_owned()))
                    .collect::<Vec<_>>(),
                ttl,
            )
            .await?;
        enum Slot {
            Fresh,
            Repeat(usize),
            Stored(String),
        }
        let mut first_of: HashMap<DedupKey, usize> = HashMap::new();
        let slots: Vec<Slot> = batch
            .iter()
            .zip(claims)
            .enumerate()
            .map(|(i, (a, claim))| match (first_of.get(&a.key), claim) {
                (Some(&j), _) => Slot::Repeat(j),
                (None, None) => {
                    first_of.insert(a.key, i);
                    Slot::Fresh
                }
                (None, Some(v)) => Slot::Stored(v),
            })
            .collect();

        let fresh: Vec<usize> = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Slot::Fresh))
            .map(|(i, _)| i)
            .collect();
        let mut acks: HashMap<usize, SendAck> = HashMap::new();
        if !fresh.is_empty() {
            let requests: Vec<_> = fresh
                .iter()
                .map(|&i| (batch[i].envelope.conversation(), 1))
                .collect();
            let keys: Vec<DedupKey> = fresh.iter().map(|&i| batch[i].key).collect();
            let turn = self.turn.lock().await;
            let seqs = match self.seq.allocate(&requests).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = self.dedup.release(&keys).await;
                    return Err(e);
                }
            };
            for (&i, seq) in fresh.iter().zip(seqs) {
                batch[i].envelope.message.seq = seq;
            }
            let envelopes: Vec<_> = fresh
                .iter()
                .map(|&i| batch[i].envelope.clone().into())
                .collect::<Vec<crate::model::Entry>>();
            if let Err(e) = self.queue.publish(&envelopes).await {
                // Give the seqs back (no hole), then forget the keys.
                let blocks: Vec<_> = fresh
                    .iter()
                    .map(|&i| {
                        (
                            batch[i].envelope.conversation(),
                            batch[i].envelope.message.seq,
                            1,
                        )
                    })
                    .collect();
                if let Err(re) = self.seq.rewind(&blocks).await {
                    tracing::warn!(error = %re, "giving back the seqs of a failed publish failed");
                }
                drop(turn);
                let _ = self.dedup.release(&keys).await;
                return Err(e);
            }
            drop(turn);
            let mut entries = Vec::with_capacity(fresh.len());
            for &i in &fresh {
                let m = &batch[i].envelope.message;
                let ack = SendAck {
                    client_msg_id: m.client_msg_id.clone(),
                    msg_id: m.msg_id,
                    conversation_id: m.conversation_id,
                    seq: m.seq,
                    ts: m.ts,
                    deliver_at: None,
                };
                entries.push((batch[i].key, encode_ack(&ack)));
                acks.insert(i, ack);
            }
            self.dedup.put(&entries, ttl).await?;
        }

        let mut out = Vec::with_capacity(batch.len());
        for (i, slot) in slots.into_iter().enumerate() {
            out.push(match slot {
                Slot::Fresh => acks
                    .get(&i)
                    .cloned()
                    .map(Admitted::New)
                    .ok_or_else(|| Error::Internal("lost ack".into())),
                Slot::Repeat(j) => acks
                    .get(&j)
                    .cloned()
                    .map(Admitted::Duplicate)
                    .ok_or_else(|| Error::Internal("lost ack".into())),
                Slot::Stored(v) if v != IN_FLIGHT => decode_ack(&v).map(Admitted::Duplicate),
                Slot::Stored(_) => self.wait_for_original(batch[i].key, ttl).await,
            });
        }
        Ok(out)
    }

    async fn lookup(
        &self,
        keys: &[(DedupKey, crate::id::ConversationId)],
        _dedup_ttl: Duration,
    ) -> Result<Vec<Option<SendAck>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Peek without claiming: claim, and release what this call claimed.
        let claims = self
            .dedup
            .claim(
                &keys
                    .iter()
                    .map(|(k, _)| (*k, IN_FLIGHT.to_owned()))
                    .collect::<Vec<_>>(),
                Duration::from_secs(1),
            )
            .await?;
        let claimed_now: Vec<DedupKey> = keys
            .iter()
            .zip(&claims)
            .filter(|(_, c)| c.is_none())
            .map(|((k, _), _)| *k)
            .collect();
        if !claimed_now.is_empty() {
            self.dedup.release(&claimed_now).await?;
        }
        Ok(claims
            .into_iter()
            .map(|c| match c {
                Some(v) if v != IN_FLIGHT => decode_ack(&v).ok(),
                _ => None,
            })
            .collect())
    }
}
