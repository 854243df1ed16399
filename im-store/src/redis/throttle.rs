//! `RedisThrottle`: the front door's counters shared by every instance of a
//! cluster. A bucket is a hash `P:{t:<key>}:bucket` (tokens, last refill), a
//! failure record a hash `P:{t:<key>}:fail` (count, locked-until); each
//! script touches one key (one slot on Redis Cluster) and reads the Redis
//! server's clock, so all instances count with one clock. Keys expire when
//! they hold nothing any more (a full bucket, a forgotten failure).

use std::time::Duration;

use async_trait::async_trait;
use im_core::ports::{Backoff, Rate, Throttle};
use im_core::Result;

use super::script::{THROTTLE_FAIL, THROTTLE_LOCKOUT, THROTTLE_TAKE};
use super::{map_err, RedisConn};

/// Token buckets and failure counts in Redis (see the module doc).
#[derive(Debug, Clone)]
pub struct RedisThrottle {
    conn: RedisConn,
}

impl RedisThrottle {
    pub(crate) fn new(conn: RedisConn) -> Self {
        RedisThrottle { conn }
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl Throttle for RedisThrottle {
    async fn take(&self, key: &str, rate: Rate) -> Result<Option<Duration>> {
        let rate = Rate::per_second(rate.per_second, rate.burst);
        let mut inv = THROTTLE_TAKE.prepare_invoke();
        inv.key(self.conn.keys().throttle(key, "bucket"))
            .arg(rate.per_second)
            .arg(rate.burst);
        let mut con = self.conn.con();
        let wait: u64 = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| map_err("throttle take script", e))?;
        Ok((wait > 0).then(|| Duration::from_millis(wait)))
    }

    async fn fail(&self, key: &str, backoff: Backoff) -> Result<Option<Duration>> {
        let mut inv = THROTTLE_FAIL.prepare_invoke();
        inv.key(self.conn.keys().throttle(key, "fail"))
            .arg(backoff.free)
            .arg(Self::ms(backoff.base))
            .arg(Self::ms(backoff.max))
            .arg(Self::ms(backoff.forget_after).max(1));
        let mut con = self.conn.con();
        let lock: u64 = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| map_err("throttle fail script", e))?;
        Ok((lock > 0).then(|| Duration::from_millis(lock)))
    }

    async fn lockout(&self, key: &str) -> Result<Option<Duration>> {
        let mut inv = THROTTLE_LOCKOUT.prepare_invoke();
        inv.key(self.conn.keys().throttle(key, "fail"));
        let mut con = self.conn.con();
        let left: u64 = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| map_err("throttle lockout script", e))?;
        Ok((left > 0).then(|| Duration::from_millis(left)))
    }

    async fn clear(&self, key: &str) -> Result<()> {
        let mut con = self.conn.con();
        redis::cmd("DEL")
            .arg(self.conn.keys().throttle(key, "fail"))
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| map_err("DEL", e))
    }
}
