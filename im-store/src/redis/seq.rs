//! `RedisSequenceAllocator`: per-conversation seq counters (`INCRBY`, many
//! conversations pipelined in one round trip).

use async_trait::async_trait;
use im_core::id::ConversationId;
use im_core::ports::SequenceAllocator;
use im_core::{Error, Result};
use redis::Value;

use super::{as_u64, map_err, RedisConn};

/// Seq counters in Redis strings `P:{qS}:seq:<conversation>`.
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
        let mut p = redis::pipe();
        for (c, n) in requests {
            p.cmd("INCRBY").arg(keys.seq(*c)).arg(*n);
        }
        let mut con = self.conn.con();
        let ends: Vec<u64> = p
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("INCRBY", e))?;
        Ok(requests
            .iter()
            .zip(ends)
            .map(|((_, n), end)| end + 1 - u64::from(*n).min(end + 1))
            .collect())
    }

    async fn current(&self, conversation: ConversationId) -> Result<u64> {
        let mut con = self.conn.con();
        let v: Value = redis::cmd("GET")
            .arg(self.conn.keys().seq(conversation))
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("GET", e))?;
        match v {
            Value::Nil => Ok(0),
            other => as_u64(&other).ok_or_else(|| Error::Backend {
                message: format!("seq counter of {conversation} is not a number: {other:?}"),
                source: None,
            }),
        }
    }
}
