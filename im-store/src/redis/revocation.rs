//! `RedisTokenRevocations`: revoked token ids as Redis strings that expire
//! at the token's own expiry (`PXAT`), so Redis forgets a revocation exactly
//! when it stops mattering. Expiry uses the Redis server's clock.

use async_trait::async_trait;
use im_core::id::now_ms;
use im_core::ports::TokenRevocations;
use im_core::Result;

use super::{map_err, RedisConn};

/// Revoked token ids `P:revoked:<token id>` (value: the end, Unix ms).
#[derive(Debug, Clone)]
pub struct RedisTokenRevocations {
    conn: RedisConn,
}

impl RedisTokenRevocations {
    pub(crate) fn new(conn: RedisConn) -> Self {
        RedisTokenRevocations { conn }
    }
}

#[async_trait]
impl TokenRevocations for RedisTokenRevocations {
    async fn revoke(&self, token_id: &str, until_ms: i64) -> Result<()> {
        if until_ms <= now_ms() {
            return Ok(());
        }
        let key = self.conn.keys().revoked(token_id);
        // NX keeps a longer revocation; PEXPIREAT GT extends a shorter one.
        let mut p = redis::pipe();
        p.cmd("SET")
            .arg(&key)
            .arg(until_ms)
            .arg("NX")
            .arg("PXAT")
            .arg(until_ms)
            .ignore();
        p.cmd("PEXPIREAT")
            .arg(&key)
            .arg(until_ms)
            .arg("GT")
            .ignore();
        let mut con = self.conn.con();
        p.query_async::<()>(&mut con)
            .await
            .map_err(|e| map_err("SET PXAT", e))
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        let mut con = self.conn.con();
        let n: u64 = redis::cmd("EXISTS")
            .arg(self.conn.keys().revoked(token_id))
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("EXISTS", e))?;
        Ok(n > 0)
    }
}
