//! `RedisSendPipeline`: the send hot path (dedup claim, seq `INCR`, `XADD`,
//! ack stored under the dedup key) for a whole batch in one round trip, as one
//! Lua script (`scripts/admit.lua`) run with `EVALSHA`.
//!
//! It writes the same streams, shards and entry format as [`RedisQueue`]
//! (the envelope JSON in field `e`, which is the JSON of its
//! `Entry::Message`; the assigned seq in field `s`), so the queue's consumers
//! read what it admits as message entries, and the same dedup keys as
//! [`super::RedisDedupStore`].
//!
//! Failure semantics: an admission whose `XADD` fails leaves no key behind
//! (its seq is skipped, a gap `sync` closes). If the script as a whole fails
//! or times out after admitting part of the batch, the call reports an error,
//! but the admitted sends keep their keys: a retry of the batch gets their
//! original acks as `Duplicate`, so nothing is enqueued twice.

use std::time::Duration;

use async_trait::async_trait;
use im_core::ports::{Admission, Admitted, MessageQueue as _, SendPipeline};
use im_core::protocol::SendAck;
use im_core::{Error, Result};
use redis::Value;

use super::dedup::ttl_ms;
use super::queue::{encode, RedisQueue};
use super::script::ADMIT;
use super::{as_items, as_string, as_u64, bad_reply, map_err, RedisConn};

/// The one-round-trip [`SendPipeline`] on Redis.
#[derive(Debug, Clone)]
pub struct RedisSendPipeline {
    conn: RedisConn,
    queue: RedisQueue,
}

/// The sentinel seq split out of a serialized ack.
const SENTINEL: &str = "\"seq\":18446744073709551615";

/// The ack JSON of `a` around its seq: `(before, after)` such that
/// `before + seq + after` is the JSON of the ack with that seq.
fn ack_parts(a: &SendAck) -> Result<(String, String)> {
    let mut a = a.clone();
    a.seq = u64::MAX;
    let json = serde_json::to_string(&a)
        .map_err(|e| Error::Internal(format!("ack does not serialize: {e}")))?;
    // `"seq":` cannot occur inside a JSON string (its quotes would be
    // escaped), so the first match is the field.
    let (before, after) = json
        .split_once(SENTINEL)
        .ok_or_else(|| Error::Internal(format!("ack JSON without a seq: {json}")))?;
    Ok((format!("{before}\"seq\":"), after.to_owned()))
}

fn decode_ack(stored: &str) -> Result<Admitted> {
    if stored.is_empty() {
        // Claimed by a composed pipeline that is still enqueueing.
        return Err(Error::unavailable_msg(
            "a send with this client_msg_id is still in flight; retry",
        ));
    }
    serde_json::from_str(stored)
        .map(Admitted::Duplicate)
        .map_err(|e| Error::Internal(format!("corrupt dedup entry: {e}")))
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
        let mut acks = Vec::with_capacity(batch.len());
        let mut inv = ADMIT.prepare_invoke();
        inv.arg(ttl_ms(dedup_ttl));
        for a in &batch {
            let m = &a.envelope.message;
            let c = m.conversation_id;
            inv.key(keys.dedup(a.key))
                .key(keys.seq(c))
                .key(keys.stream(keys.shard_of(c)));
            let ack = SendAck {
                client_msg_id: m.client_msg_id.clone(),
                msg_id: m.msg_id,
                conversation_id: c,
                seq: 0,
                ts: m.ts,
                deliver_at: None,
            };
            let (before, after) = ack_parts(&ack)?;
            inv.arg(encode(&a.envelope)?).arg(before).arg(after);
            acks.push(ack);
        }
        let mut con = self.conn.con();
        let reply: Value = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| map_err("send script", e))?;
        let items = as_items(&reply);
        if items.len() != batch.len() {
            return Err(bad_reply("send script", &reply));
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut fresh = 0u64;
        for (item, mut ack) in items.iter().zip(acks) {
            if let Some(seq) = as_u64(item) {
                fresh += 1;
                ack.seq = seq;
                out.push(Ok(Admitted::New(ack)));
                continue;
            }
            let item = as_items(item);
            let res = match (
                item.first().and_then(as_u64),
                item.get(1).and_then(as_string),
            ) {
                (Some(0), Some(stored)) => decode_ack(&stored),
                (Some(2), Some(err)) => Err(Error::unavailable_msg(format!(
                    "redis refused to enqueue the message: {err}"
                ))),
                _ => Err(bad_reply("send script", &reply)),
            };
            out.push(res);
        }
        self.queue.note_published(fresh);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_core::id::{ConversationId, MessageId, UserId};

    #[test]
    fn ack_parts_rebuild_the_ack() {
        let a = SendAck {
            client_msg_id: "x\"seq\":1,".into(),
            msg_id: MessageId(7),
            conversation_id: ConversationId::Direct(UserId(1), UserId(2)),
            seq: 42,
            ts: 5,
            deliver_at: None,
        };
        let (b, c) = ack_parts(&a).unwrap();
        let back: SendAck = serde_json::from_str(&format!("{b}42{c}")).unwrap();
        assert_eq!(back, a);
    }
}
