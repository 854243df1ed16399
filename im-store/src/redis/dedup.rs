//! `RedisDedupStore`: idempotency keys as Redis strings with a PX TTL
//! (`SET NX PX GET`, many keys pipelined in one round trip).

use std::time::Duration;

use async_trait::async_trait;
use im_core::ports::{DedupKey, DedupStore};
use im_core::Result;
use redis::Value;

use super::{as_string, map_err, RedisConn};

/// Dedup keys `P:dedup:<hex>` holding the stored value (a send ack).
#[derive(Debug, Clone)]
pub struct RedisDedupStore {
    conn: RedisConn,
}

impl RedisDedupStore {
    pub(crate) fn new(conn: RedisConn) -> Self {
        RedisDedupStore { conn }
    }
}

/// A TTL in whole milliseconds, at least 1.
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl DedupStore for RedisDedupStore {
    async fn claim(
        &self,
        entries: &[(DedupKey, String)],
        ttl: Duration,
    ) -> Result<Vec<Option<String>>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.conn.keys();
        let ms = ttl_ms(ttl);
        let mut p = redis::pipe();
        for (k, v) in entries {
            // Redis ≥ 7.0: NX with GET returns the existing value and sets nothing.
            p.cmd("SET")
                .arg(keys.dedup(*k))
                .arg(v)
                .arg("NX")
                .arg("GET")
                .arg("PX")
                .arg(ms);
        }
        let mut con = self.conn.con();
        let replies: Vec<Value> = p
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("SET NX", e))?;
        Ok(replies
            .iter()
            .map(|v| match v {
                Value::Nil => None,
                other => Some(as_string(other).unwrap_or_default()),
            })
            .collect())
    }

    async fn put(&self, entries: &[(DedupKey, String)], ttl: Duration) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let keys = self.conn.keys();
        let ms = ttl_ms(ttl);
        let mut p = redis::pipe();
        for (k, v) in entries {
            p.cmd("SET")
                .arg(keys.dedup(*k))
                .arg(v)
                .arg("PX")
                .arg(ms)
                .ignore();
        }
        let mut con = self.conn.con();
        p.query_async::<()>(&mut con)
            .await
            .map_err(|e| map_err("SET", e))
    }

    async fn release(&self, keys: &[DedupKey]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = keys.iter().map(|k| self.conn.keys().dedup(*k)).collect();
        let mut con = self.conn.con();
        redis::cmd("DEL")
            .arg(names)
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| map_err("DEL", e))
    }
}
