//! `RedisDedupStore`: idempotency keys as Redis strings with a PX TTL
//! (`SET NX PX GET`, many keys pipelined in one round trip).

use std::time::Duration;

use async_trait::async_trait;
use im_core::ports::{DedupKey, DedupStore};
use im_core::Result;
use redis::Value;

use super::{as_string, cmd_on, Ops, RedisConn};

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
        let mut ops = Ops::new();
        for (k, v) in entries {
            // Redis ≥ 7.0: NX with GET returns the existing value and sets nothing.
            let key = keys.dedup(*k);
            let mut c = cmd_on("SET", &key);
            c.arg(v).arg("NX").arg("GET").arg("PX").arg(ms);
            ops.add(key, c);
        }
        let replies = ops.run(&self.conn, "SET NX").await?;
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
        let mut ops = Ops::new();
        for (k, v) in entries {
            let key = keys.dedup(*k);
            let mut c = cmd_on("SET", &key);
            c.arg(v).arg("PX").arg(ms);
            ops.add_ignored(key, c);
        }
        ops.run(&self.conn, "SET").await.map(drop)
    }

    async fn release(&self, keys: &[DedupKey]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut ops = Ops::new();
        for k in keys {
            let key = self.conn.keys().dedup(*k);
            let c = cmd_on("DEL", &key);
            ops.add_ignored(key, c);
        }
        ops.run(&self.conn, "DEL").await.map(drop)
    }
}
