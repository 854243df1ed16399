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
use super::script::ADMIT;
use super::{as_items, as_string, bad_reply, map_err, RedisConn};

/// The partition-batched [`SendPipeline`] on Redis.
#[derive(Debug, Clone)]
pub struct RedisSendPipeline {
    conn: RedisConn,
    queue: RedisQueue,
}

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

/// An equivalent error for each send of a failed partition call (errors
/// are not `Clone`).
fn clone_error(e: &Error) -> Error {
    match e {
        Error::Unavailable { message, .. } => Error::unavailable_msg(message.clone()),
        Error::Timeout(m) => Error::Timeout(m.clone()),
        other => Error::from_code(other.code(), other.public_message()),
    }
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
        let keys = self.conn.keys();
        let (cur, prev) = buckets(im_core::id::now_ms(), dedup_ttl);
        let bucket_life = ttl_ms(dedup_ttl).saturating_mul(2).to_string();
        // Sends by partition, in batch order.
        let mut parts: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, a) in batch.iter().enumerate() {
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
        let mut out: Vec<Option<Result<Admitted>>> = (0..batch.len()).map(|_| None).collect();
        let mut enqueued = 0u64;
        for ((_, idx), reply) in parts.iter().zip(replies) {
            let items = match reply {
                Ok(v) => v,
                Err(e) => {
                    let e = map_err("admit script", e);
                    for &i in idx {
                        out[i] = Some(Err(clone_error(&e)));
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
                out[i] = Some(r);
            }
            if fresh_any {
                enqueued += 1;
            }
        }
        self.queue.note_published(enqueued);
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
        let k = self.conn.keys();
        let (cur, prev) = buckets(im_core::id::now_ms(), dedup_ttl);
        let cmds = keys
            .iter()
            .map(|(key, c)| {
                let p = k.partition_of(*c);
                let hex = key.to_hex();
                let mut cmd = redis::cmd("EVAL");
                // Both buckets in one call (one slot).
                cmd.arg("return redis.call('HGET', KEYS[1], ARGV[1]) or redis.call('HGET', KEYS[2], ARGV[1])")
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
