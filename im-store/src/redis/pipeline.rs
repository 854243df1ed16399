//! `RedisSendPipeline`: the send hot path, one script call per partition of
//! a batch (`scripts/admit.lua`), all calls pipelined in one round trip (one
//! per slot, in parallel, on Redis Cluster).
//!
//! Per partition the script does bulk work only: one `HMGET` of the dedup
//! fields (two: the current and the previous time bucket), one `HMGET` and
//! one `HSET` of the conversations' seqs, one `XADD` of a *batch entry*
//! carrying every admitted envelope (field `b`, one JSON per line; field `s`,
//! their seqs, 0 for a send that was a retry), one `HSET` of the new dedup
//! fields. Every key carries the partition's hash tag `{pN}`.
//!
//! Dedup buckets: the fields of keys first seen in time bucket
//! `floor(now / dedup_ttl)` go to that bucket's hash, which expires
//! `2 × dedup_ttl` after its last write; a lookup reads the current and the
//! previous bucket, so a key is remembered for at least `dedup_ttl` (Logic
//! hosts' clocks shift this window by their skew). A stored value is
//! `seq:msg_id:ts:conversation`, enough to rebuild the original ack.
//!
//! Idempotency is per (sender, `client_msg_id`) whatever the payload, target
//! included (PROTOCOL.md), but a conversation partition only sees its own
//! conversations. So phase 1 claims each key in its *key partition*
//! ([`RedisConfig::key_partitions`](super::RedisConfig), `scripts/claim.lua`:
//! key field → conversation, in the same
//! time buckets): a key held for another conversation is a retry that changed
//! its target, answered with the original ack from that conversation's
//! partition; phase 2 is the admission above. A send claimed in phase 1 and
//! not admitted in phase 2 gives its claim up (`scripts/unclaim.lua`).
//!
//! Failure semantics: the script writes nothing before its `XADD` and is
//! refused whole by a server out of memory, so a failed admission takes no
//! seq and leaves no key (PROTOCOL.md v1.2: no holes). A partition's call
//! that fails fails only that partition's sends.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use im_core::id::{ConversationId, MessageId};
use im_core::ports::{Admission, Admitted, DedupKey, MessageQueue as _, SendPipeline};
use im_core::protocol::SendAck;
use im_core::{Error, Result};
use redis::Value;

use super::dedup::ttl_ms;
use super::queue::{encode, RedisQueue};
use super::script::{ADMIT, CLAIM, UNCLAIM};
use super::{as_items, as_string, bad_reply, map_err, RedisConn};

/// The partition-batched [`SendPipeline`] on Redis.
#[derive(Debug, Clone)]
pub struct RedisSendPipeline {
    conn: RedisConn,
    queue: RedisQueue,
}

/// A field of either of two bucket hashes (one slot).
const EITHER_BUCKET: &str =
    "return redis.call('HGET', KEYS[1], ARGV[1]) or redis.call('HGET', KEYS[2], ARGV[1])";

/// The dedup buckets `(current, previous)` at `now_ms` for a TTL.
fn buckets(now_ms: i64, ttl: Duration) -> (u64, u64) {
    let b = u64::try_from(now_ms).unwrap_or(0) / ttl_ms(ttl);
    (b, b.saturating_sub(1))
}

/// Parses a stored value `seq:msg_id:ts:conversation` into the ack of
/// `client_msg_id`.
fn parse_stored(stored: &str, client_msg_id: &str) -> Result<SendAck> {
    let bad = || Error::Internal(format!("corrupt dedup entry {stored:?}"));
    let mut it = stored.splitn(4, ':');
    let seq = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let msg_id = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let ts = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let conversation_id: ConversationId = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok(SendAck {
        client_msg_id: client_msg_id.to_owned(),
        msg_id: MessageId(msg_id),
        conversation_id,
        seq,
        ts,
        deliver_at: None,
    })
}

impl RedisSendPipeline {
    pub(crate) fn new(conn: RedisConn, queue: RedisQueue) -> Self {
        RedisSendPipeline { conn, queue }
    }

    /// Makes sure the consumer `group` exists (so it sees what is admitted).
    pub async fn create_group(&self, group: &str) -> Result<()> {
        self.queue.create_group(group).await
    }
}

impl RedisSendPipeline {
    /// Phase 1: claims every key in its key partition (one script call per
    /// key partition, pipelined): see [`Claim`].
    async fn claim(&self, batch: &[Admission], dedup_ttl: Duration) -> Result<Vec<Claim>> {
        let keys = self.conn.keys();
        let (cur, prev) = buckets(im_core::id::now_ms(), dedup_ttl);
        let bucket_life = ttl_ms(dedup_ttl).saturating_mul(2).to_string();
        let mut parts: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, a) in batch.iter().enumerate() {
            parts.entry(keys.key_partition(a.key)).or_default().push(i);
        }
        let calls = parts
            .iter()
            .map(|(&p, idx)| {
                let mut args: Vec<Vec<u8>> = Vec::with_capacity(2 + 2 * idx.len());
                args.push(bucket_life.clone().into_bytes());
                args.push(idx.len().to_string().into_bytes());
                args.extend(idx.iter().map(|&i| batch[i].key.to_hex().into_bytes()));
                args.extend(idx.iter().map(|&i| {
                    batch[i]
                        .envelope
                        .message
                        .conversation_id
                        .to_string()
                        .into_bytes()
                }));
                (
                    vec![keys.claim_bucket(p, cur), keys.claim_bucket(p, prev)],
                    args,
                )
            })
            .collect();
        let replies = self.conn.run_script(&CLAIM, calls).await?;
        let mut out: Vec<Claim> = (0..batch.len()).map(|_| Claim::Failed(None)).collect();
        for ((_, idx), reply) in parts.iter().zip(replies) {
            let items = match reply {
                Ok(v) => v,
                Err(e) => {
                    let e = map_err("claim script", e);
                    for &i in idx {
                        out[i] = Claim::Failed(Some(e.duplicate()));
                    }
                    continue;
                }
            };
            let values = as_items(&items);
            if values.len() != idx.len() {
                return Err(bad_reply("claim script", &items));
            }
            for (&i, v) in idx.iter().zip(values) {
                out[i] = match v {
                    Value::Int(0) => Claim::Mine,
                    Value::Int(_) => Claim::Held,
                    other => match as_string(other).and_then(|c| c.parse().ok()) {
                        Some(c) => Claim::Elsewhere(c),
                        None => return Err(bad_reply("claim script", &items)),
                    },
                };
            }
        }
        Ok(out)
    }

    /// Gives up the claims of sends that were claimed now but not admitted.
    async fn unclaim(&self, sends: &[&Admission], dedup_ttl: Duration) {
        if sends.is_empty() {
            return;
        }
        let keys = self.conn.keys();
        let (cur, prev) = buckets(im_core::id::now_ms(), dedup_ttl);
        let mut parts: BTreeMap<u32, Vec<&Admission>> = BTreeMap::new();
        for a in sends {
            parts.entry(keys.key_partition(a.key)).or_default().push(a);
        }
        let calls = parts
            .iter()
            .map(|(&p, sends)| {
                let mut args: Vec<Vec<u8>> =
                    sends.iter().map(|a| a.key.to_hex().into_bytes()).collect();
                args.extend(
                    sends
                        .iter()
                        .map(|a| a.envelope.message.conversation_id.to_string().into_bytes()),
                );
                (
                    vec![keys.claim_bucket(p, cur), keys.claim_bucket(p, prev)],
                    args,
                )
            })
            .collect();
        match self.conn.run_script(&UNCLAIM, calls).await {
            Ok(rs) if rs.iter().all(|r| r.is_ok()) => {}
            _ => tracing::warn!(
                "giving up the claims of failed sends failed; a retry naming another \
                 conversation answers unavailable until they expire"
            ),
        }
    }

    /// The stored acks of keys in the given conversations' partitions.
    async fn acks_in(
        &self,
        keys: &[(DedupKey, ConversationId)],
        dedup_ttl: Duration,
    ) -> Result<Vec<Option<SendAck>>> {
        let k = self.conn.keys();
        let (cur, prev) = buckets(im_core::id::now_ms(), dedup_ttl);
        let cmds = keys
            .iter()
            .map(|(key, c)| {
                let p = k.partition_of(*c);
                let hex = key.to_hex();
                let mut cmd = redis::cmd("EVAL");
                // Both buckets in one call (one slot).
                cmd.arg(EITHER_BUCKET)
                    .arg(2)
                    .arg(k.dedup_bucket(p, cur))
                    .arg(k.dedup_bucket(p, prev))
                    .arg(hex);
                (k.dedup_bucket(p, cur), cmd)
            })
            .collect();
        let replies = self.conn.per_slot("dedup lookup", cmds).await?;
        replies
            .into_iter()
            .map(|r| {
                let v = r.map_err(|e| map_err("dedup lookup", e))?;
                Ok(as_string(&v).and_then(|s| parse_stored(&s, "").ok()))
            })
            .collect()
    }

    /// Phase 2: admits `idx` of `batch`, one script call per conversation
    /// partition; answers each send's outcome.
    async fn enqueue(
        &self,
        batch: &[Admission],
        idx: &[usize],
        dedup_ttl: Duration,
    ) -> Result<Vec<(usize, Result<Admitted>)>> {
        if idx.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.conn.keys();
        let (cur, prev) = buckets(im_core::id::now_ms(), dedup_ttl);
        let bucket_life = ttl_ms(dedup_ttl).saturating_mul(2).to_string();
        // Sends by partition, in batch order.
        let mut parts: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for &i in idx {
            let a = &batch[i];
            parts
                .entry(keys.partition_of(a.envelope.message.conversation_id))
                .or_default()
                .push(i);
        }
        let mut calls = Vec::with_capacity(parts.len());
        for (&p, idx) in &parts {
            let n = idx.len();
            let mut blob = Vec::with_capacity(n * 320);
            let mut args: Vec<Vec<u8>> = Vec::with_capacity(3 + 3 * n);
            for (k, &i) in idx.iter().enumerate() {
                if k > 0 {
                    blob.push(b'\n');
                }
                blob.extend_from_slice(&encode(&batch[i].envelope)?);
            }
            args.push(bucket_life.clone().into_bytes());
            args.push(blob);
            args.push(n.to_string().into_bytes());
            for &i in idx {
                args.push(batch[i].key.to_hex().into_bytes());
            }
            for &i in idx {
                args.push(
                    batch[i]
                        .envelope
                        .message
                        .conversation_id
                        .to_string()
                        .into_bytes(),
                );
            }
            for &i in idx {
                let m = &batch[i].envelope.message;
                args.push(format!("{}:{}:{}", m.msg_id.0, m.ts, m.conversation_id).into_bytes());
            }
            calls.push((
                vec![
                    keys.stream(p),
                    keys.seqs(p),
                    keys.dedup_bucket(p, cur),
                    keys.dedup_bucket(p, prev),
                ],
                args,
            ));
        }
        let replies = self.conn.run_script(&ADMIT, calls).await?;
        let mut out: Vec<(usize, Result<Admitted>)> = Vec::with_capacity(idx.len());
        let mut enqueued = 0u64;
        for ((_, idx), reply) in parts.iter().zip(replies) {
            let items = match reply {
                Ok(v) => v,
                Err(e) => {
                    let e = map_err("admit script", e);
                    for &i in idx {
                        out.push((i, Err(e.duplicate())));
                    }
                    continue;
                }
            };
            let values = as_items(&items);
            if values.len() != idx.len() {
                return Err(bad_reply("admit script", &items));
            }
            let mut fresh_any = false;
            let mut acks: Vec<Option<SendAck>> = vec![None; idx.len()];
            for (k, (&i, v)) in idx.iter().zip(values).enumerate() {
                let m = &batch[i].envelope.message;
                let r = match v {
                    Value::Int(seq) if *seq > 0 => {
                        fresh_any = true;
                        let ack = SendAck {
                            client_msg_id: m.client_msg_id.clone(),
                            msg_id: m.msg_id,
                            conversation_id: m.conversation_id,
                            seq: *seq as u64,
                            ts: m.ts,
                            deliver_at: None,
                        };
                        acks[k] = Some(ack.clone());
                        Ok(Admitted::New(ack))
                    }
                    Value::Int(j) if *j < 0 => {
                        let j = usize::try_from(-*j - 1).unwrap_or(usize::MAX);
                        match acks.get(j).cloned().flatten() {
                            Some(ack) => Ok(Admitted::Duplicate(ack)),
                            None => Err(bad_reply("admit script", &items)),
                        }
                    }
                    other => match as_string(other) {
                        Some(stored) => {
                            parse_stored(&stored, &m.client_msg_id).map(Admitted::Duplicate)
                        }
                        None => Err(bad_reply("admit script", &items)),
                    },
                };
                out.push((i, r));
            }
            if fresh_any {
                enqueued += 1;
            }
        }
        self.queue.note_published(enqueued);
        Ok(out)
    }
}

/// The outcome of claiming one key.
enum Claim {
    /// Claimed now: admit it (and give the claim up if that fails).
    Mine,
    /// Held for this send's conversation already: admit it (the partition's
    /// dedup fields answer a retry).
    Held,
    /// Held for another conversation: a retry naming another target.
    Elsewhere(ConversationId),
    /// The claim call failed (with its error).
    Failed(Option<Error>),
}

#[async_trait]
impl SendPipeline for RedisSendPipeline {
    async fn admit(
        &self,
        batch: Vec<Admission>,
        dedup_ttl: Duration,
    ) -> Result<Vec<Result<Admitted>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let claims = self.claim(&batch, dedup_ttl).await?;
        let mut out: Vec<Option<Result<Admitted>>> = (0..batch.len()).map(|_| None).collect();
        let mut go = Vec::with_capacity(batch.len());
        let mut elsewhere = Vec::new();
        for (i, c) in claims.iter().enumerate() {
            match c {
                Claim::Mine | Claim::Held => go.push(i),
                Claim::Elsewhere(c) => elsewhere.push((i, *c)),
                Claim::Failed(e) => {
                    out[i] = Some(Err(e.as_ref().map_or_else(
                        || Error::Internal("claim not answered".into()),
                        Error::duplicate,
                    )))
                }
            }
        }
        let admitted = self.enqueue(&batch, &go, dedup_ttl).await;
        let admitted = match admitted {
            Ok(a) => a,
            Err(e) => {
                let mine: Vec<&Admission> = go
                    .iter()
                    .filter(|&&i| matches!(claims[i], Claim::Mine))
                    .map(|&i| &batch[i])
                    .collect();
                self.unclaim(&mine, dedup_ttl).await;
                return Err(e);
            }
        };
        let mut failed = Vec::new();
        for (i, r) in admitted {
            if r.is_err() && matches!(claims[i], Claim::Mine) {
                failed.push(&batch[i]);
            }
            out[i] = Some(r);
        }
        self.unclaim(&failed, dedup_ttl).await;
        if !elsewhere.is_empty() {
            // Retries naming another conversation than their original: the
            // original ack is in that conversation's partition.
            let keys: Vec<(DedupKey, ConversationId)> =
                elsewhere.iter().map(|(i, c)| (batch[*i].key, *c)).collect();
            let found = self.acks_in(&keys, dedup_ttl).await?;
            for ((i, _), ack) in elsewhere.into_iter().zip(found) {
                out[i] = Some(match ack {
                    Some(mut ack) => {
                        ack.client_msg_id = batch[i].envelope.message.client_msg_id.clone();
                        Ok(Admitted::Duplicate(ack))
                    }
                    None => Err(Error::unavailable_msg(
                        "a send with this client_msg_id is still in flight; retry",
                    )),
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Internal("send not admitted".into()))))
            .collect())
    }

    async fn lookup(
        &self,
        keys: &[(DedupKey, ConversationId)],
        dedup_ttl: Duration,
    ) -> Result<Vec<Option<SendAck>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Which conversation holds each key (it may not be the one named now).
        let k = self.conn.keys();
        let (cur, prev) = buckets(im_core::id::now_ms(), dedup_ttl);
        let cmds = keys
            .iter()
            .map(|(key, _)| {
                let p = k.key_partition(*key);
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(EITHER_BUCKET)
                    .arg(2)
                    .arg(k.claim_bucket(p, cur))
                    .arg(k.claim_bucket(p, prev))
                    .arg(key.to_hex());
                (k.claim_bucket(p, cur), cmd)
            })
            .collect();
        let held = self.conn.per_slot("claim lookup", cmds).await?;
        let mut at = Vec::with_capacity(keys.len());
        for ((key, named), h) in keys.iter().zip(held) {
            let h = h.map_err(|e| map_err("claim lookup", e))?;
            let conv = as_string(&h).and_then(|c| c.parse().ok()).unwrap_or(*named);
            at.push((*key, conv));
        }
        self.acks_in(&at, dedup_ttl).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_core::id::UserId;

    #[test]
    fn stored_values_rebuild_the_ack() {
        let c = ConversationId::Direct(UserId(1), UserId(2));
        let ack = parse_stored(&format!("42:7:5:{c}"), "x").unwrap();
        assert_eq!(
            ack,
            SendAck {
                client_msg_id: "x".into(),
                msg_id: MessageId(7),
                conversation_id: c,
                seq: 42,
                ts: 5,
                deliver_at: None,
            }
        );
        assert!(parse_stored("42:7", "x").is_err());
        assert!(parse_stored("a:7:5:u:1:2", "x").is_err());
    }

    #[test]
    fn buckets_cover_a_ttl() {
        let ttl = Duration::from_secs(60);
        let (cur, prev) = buckets(120_000, ttl);
        assert_eq!((cur, prev), (2, 1));
        // A key written at t is found until t + ttl: in the current or previous bucket.
        let written = buckets(179_999, ttl).0;
        let later = buckets(179_999 + 60_000, ttl);
        assert!(written == later.0 || written == later.1);
    }
}
