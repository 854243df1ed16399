//! `RedisSequenceAllocator`: per-conversation seq counters as fields of their
//! partition's seq hash `P:{pN}:seq` (the same hash the send pipeline's
//! script advances), `HINCRBY` for many conversations in one round trip.

use async_trait::async_trait;
use im_core::id::ConversationId;
use im_core::ports::SequenceAllocator;
use im_core::{Error, Result};
use redis::Value;

use super::script::SEQ_REWIND;
use super::{as_u64, map_err, RedisConn};

/// Seq counters in Redis hashes `P:{pN}:seq`, field = conversation.
#[derive(Debug, Clone)]
pub struct RedisSequenceAllocator {
    conn: RedisConn,
}

impl RedisSequenceAllocator {
    pub(crate) fn new(conn: RedisConn) -> Self {
        RedisSequenceAllocator { conn }
    }
}

#[async_trait]
impl SequenceAllocator for RedisSequenceAllocator {
    async fn allocate(&self, requests: &[(ConversationId, u32)]) -> Result<Vec<u64>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.conn.keys();
        let cmds = requests
            .iter()
            .map(|(c, n)| {
                let key = keys.seqs(keys.partition_of(*c));
                let mut cmd = redis::cmd("HINCRBY");
                cmd.arg(&key).arg(c.to_string()).arg(*n);
                (key, cmd)
            })
            .collect();
        let ends = self.conn.per_slot("HINCRBY", cmds).await?;
        requests
            .iter()
            .zip(ends)
            .map(|((_, n), end)| {
                let end = end.map_err(|e| map_err("HINCRBY", e))?;
                let end = as_u64(&end).ok_or_else(|| Error::Backend {
                    message: format!("HINCRBY answered {end:?}"),
                    source: None,
                })?;
                Ok(end + 1 - u64::from(*n).min(end + 1))
            })
            .collect()
    }

    async fn current(&self, conversation: ConversationId) -> Result<u64> {
        let keys = self.conn.keys();
        let mut con = self.conn.con();
        let v: Value = redis::cmd("HGET")
            .arg(keys.seqs(keys.partition_of(conversation)))
            .arg(conversation.to_string())
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("HGET", e))?;
        match v {
            Value::Nil => Ok(0),
            other => as_u64(&other).ok_or_else(|| Error::Backend {
                message: format!("seq counter of {conversation} is not a number: {other:?}"),
                source: None,
            }),
        }
    }

    async fn rewind(&self, blocks: &[(ConversationId, u64, u32)]) -> Result<usize> {
        let keys = self.conn.keys();
        let mut given_back = 0;
        // One at a time, latest first: consecutive blocks of one conversation
        // rewind in turn (each must be the last when its turn comes).
        for (c, first, n) in blocks.iter().rev() {
            if *first == 0 || *n == 0 {
                continue;
            }
            let last = first + u64::from(*n) - 1;
            let call = vec![(
                vec![keys.seqs(keys.partition_of(*c))],
                vec![
                    c.to_string().into_bytes(),
                    last.to_string().into_bytes(),
                    (first - 1).to_string().into_bytes(),
                ],
            )];
            for r in self.conn.run_script(&SEQ_REWIND, call).await? {
                if as_u64(&r.map_err(|e| map_err("seq rewind", e))?) == Some(1) {
                    given_back += 1;
                }
            }
        }
        Ok(given_back)
    }
}
