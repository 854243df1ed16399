//! `RedisPartitionLeases`: one string per partition and scope,
//! `P:{pN}:lease:<scope>` = holder with a PX TTL, taken or renewed by a tiny
//! script (compare holder, then `SET PX`), so a lease lives in its
//! partition's slot and works on Redis Cluster. Members of a scope are a
//! sorted set `P:{lease}:<scope>:members` scored by expiry.

use std::time::Duration;

use async_trait::async_trait;
use im_core::ports::PartitionLeases;
use im_core::Result;
use redis::Value;

use super::dedup::ttl_ms;
use super::script::{LEASE_ACQUIRE, LEASE_RELEASE};
use super::{as_u64, map_err, RedisConn};

/// Partition leases in Redis.
#[derive(Debug, Clone)]
pub struct RedisPartitionLeases {
    conn: RedisConn,
}

impl RedisPartitionLeases {
    pub(crate) fn new(conn: RedisConn) -> Self {
        RedisPartitionLeases { conn }
    }
}

#[async_trait]
impl PartitionLeases for RedisPartitionLeases {
    async fn acquire(
        &self,
        scope: &str,
        holder: &str,
        partitions: &[u32],
        ttl: Duration,
    ) -> Result<Vec<u32>> {
        let keys = self.conn.keys();
        let ttl = ttl_ms(ttl).to_string();
        let calls = partitions
            .iter()
            .map(|&p| {
                (
                    vec![keys.lease(p, scope)],
                    vec![holder.as_bytes().to_vec(), ttl.as_bytes().to_vec()],
                )
            })
            .collect();
        let replies = self.conn.run_script(&LEASE_ACQUIRE, calls).await?;
        let mut held = Vec::new();
        for (&p, r) in partitions.iter().zip(replies) {
            match r {
                Ok(v) if as_u64(&v) == Some(1) => held.push(p),
                Ok(_) => {}
                Err(e) => return Err(map_err("lease acquire", e)),
            }
        }
        Ok(held)
    }

    async fn release(&self, scope: &str, holder: &str, partitions: &[u32]) -> Result<()> {
        let keys = self.conn.keys();
        let calls = partitions
            .iter()
            .map(|&p| (vec![keys.lease(p, scope)], vec![holder.as_bytes().to_vec()]))
            .collect();
        for r in self.conn.run_script(&LEASE_RELEASE, calls).await? {
            r.map_err(|e| map_err("lease release", e))?;
        }
        Ok(())
    }

    async fn heartbeat(&self, scope: &str, holder: &str, ttl: Duration) -> Result<usize> {
        let key = self.conn.keys().lease_members(scope);
        let now = im_core::id::now_ms();
        let until = now.saturating_add(i64::try_from(ttl_ms(ttl)).unwrap_or(i64::MAX));
        let mut p = redis::pipe();
        p.cmd("ZADD")
            .arg(&key)
            .arg(until)
            .arg(holder)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now)
            .ignore()
            .cmd("ZCARD")
            .arg(&key)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms(ttl).saturating_mul(4))
            .ignore();
        let mut con = self.conn.con();
        let (n,): (Value,) = p
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("lease members", e))?;
        Ok(as_u64(&n).unwrap_or(1).max(1) as usize)
    }
}
