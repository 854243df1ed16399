//! `RedisScheduleStore`: scheduled sends held in Redis until their
//! `deliver_at`, durable as far as the server is (run it with `appendonly
//! yes`, see the [module doc](super)), shared by every node of a deployment.
//!
//! # Keys
//! With prefix `P`; every key carries the hash tag `{sched}` because the
//! scripts touch several of them at once (on a Redis Cluster all scheduled
//! sends therefore live in one slot):
//!
//! | key | type | what |
//! |---|---|---|
//! | `P:{sched}:due` | sorted set | every held send: member its msg_id, score its `deliver_at` (Unix ms) |
//! | `P:{sched}:items` | hash | msg_id → the held [`ScheduledSend`] as JSON |
//! | `P:{sched}:user:<user>` | sorted set | an owner's held sends: member msg_id, score `deliver_at` |
//! | `P:{sched}:key:<32 hex>` | string | the idempotency key of a send ([`ScheduledSend::key`]): the JSON of the send first held under it, with a PX TTL of `key_ttl`, extended to `deliver_at + key_ttl` while the send waits |
//! | `P:{sched}:dead` | hash | msg_id → an undecodable item `due` came across (moved out of the due set so it cannot block it) |
//!
//! # Operations
//! - `hold`: one script — `SET NX PX` the key; only if it was set, add the
//!   send to the due set, the items and the owner's set; else return the
//!   stored JSON.
//! - `due`: one script — `ZRANGEBYSCORE -inf now LIMIT 0 max` and `HMGET` of
//!   the items. Nothing is removed, except undecodable or missing items
//!   (logged, moved to `P:{sched}:dead`).
//! - `release`: one `HMGET` to learn the owners, then one `MULTI` pipeline
//!   removing the sends from the due set, the items and their owners' sets.
//!   Keys stay.
//! - `cancel`: one script — only if the msg_id is in the owner's set is it
//!   removed from all three.
//! - `pending`: one script — the owner's set in score order and its items.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use im_core::id::{now_ms, MessageId, UserId};
use im_core::ports::{ScheduleStore, ScheduledSend};
use im_core::{Error, Result};
use redis::Value;

use super::dedup::ttl_ms;
use super::script::{SCHED_CANCEL, SCHED_DUE, SCHED_HOLD, SCHED_PENDING};
use super::{as_items, as_string, as_u64, bad_reply, map_err, RedisConn};

/// A stored item that is not a `ScheduledSend`: its bytes and why.
type Undecodable = (Vec<u8>, String);

/// Scheduled sends in Redis (see the module doc for the layout).
#[derive(Debug, Clone)]
pub struct RedisScheduleStore {
    conn: RedisConn,
}

impl RedisScheduleStore {
    pub(crate) fn new(conn: RedisConn) -> Self {
        RedisScheduleStore { conn }
    }

    /// Moves undecodable (`Some((raw, why))`) or missing (`None`) items out
    /// of the due set, so they stop taking places in every `due` batch (best
    /// effort: failures are logged).
    async fn bury(&self, bad: Vec<(String, Option<Undecodable>)>) {
        if bad.is_empty() {
            return;
        }
        let keys = self.conn.keys();
        let mut p = redis::pipe();
        p.atomic();
        for (id, raw) in &bad {
            match raw {
                Some((raw, why)) => {
                    tracing::warn!(
                        msg_id = %id,
                        error = %why,
                        "redis schedules: undecodable scheduled send moved to the dead-letter hash"
                    );
                    p.cmd("HSET")
                        .arg(keys.sched_dead())
                        .arg(id)
                        .arg(raw)
                        .ignore();
                    p.cmd("HDEL").arg(keys.sched_items()).arg(id).ignore();
                }
                None => tracing::warn!(
                    msg_id = %id,
                    "redis schedules: a due entry without its item was dropped"
                ),
            }
            p.cmd("ZREM").arg(keys.sched_due()).arg(id).ignore();
        }
        let mut con = self.conn.con();
        if let Err(e) = p.query_async::<()>(&mut con).await {
            tracing::warn!(error = %e, "redis schedules: removing bad entries failed");
        }
    }
}

/// How long a key is remembered, in ms: `key_ttl`, and at least until
/// `deliver_at + key_ttl` so a retry of a send still waiting is not held twice.
fn key_lifetime_ms(deliver_at: i64, key_ttl: Duration) -> u64 {
    let wait = u64::try_from(deliver_at.saturating_sub(now_ms())).unwrap_or(0);
    ttl_ms(key_ttl).saturating_add(wait)
}

fn encode(send: &ScheduledSend) -> Result<String> {
    serde_json::to_string(send)
        .map_err(|e| Error::Internal(format!("encoding a scheduled send: {e}")))
}

fn decode(raw: &[u8]) -> std::result::Result<ScheduledSend, serde_json::Error> {
    serde_json::from_slice(raw)
}

/// The bytes of a bulk reply (`None` for nil or other shapes).
fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.clone().into_bytes()),
        _ => None,
    }
}

#[async_trait]
impl ScheduleStore for RedisScheduleStore {
    async fn hold(&self, send: &ScheduledSend, key_ttl: Duration) -> Result<Option<ScheduledSend>> {
        let keys = self.conn.keys();
        let json = encode(send)?;
        let mut inv = SCHED_HOLD.prepare_invoke();
        inv.key(keys.sched_key(send.key()))
            .key(keys.sched_due())
            .key(keys.sched_items())
            .key(keys.sched_user(send.owner()))
            .arg(&json)
            .arg(key_lifetime_ms(send.deliver_at, key_ttl))
            .arg(send.msg_id().0)
            .arg(send.deliver_at);
        let mut con = self.conn.con();
        let reply: Value = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| map_err("schedule hold script", e))?;
        match reply {
            Value::Nil => Ok(None),
            other => {
                let raw = bytes(&other).ok_or_else(|| bad_reply("schedule hold script", &other))?;
                decode(&raw).map(Some).map_err(|e| {
                    tracing::warn!(key = %send.key().to_hex(), error = %e, "redis schedules: undecodable key");
                    Error::Internal(format!("corrupt scheduled-send key: {e}"))
                })
            }
        }
    }

    async fn due(&self, now: i64, max: usize) -> Result<Vec<ScheduledSend>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let keys = self.conn.keys();
        let mut inv = SCHED_DUE.prepare_invoke();
        inv.key(keys.sched_due())
            .key(keys.sched_items())
            .arg(now)
            .arg(max);
        let mut con = self.conn.con();
        let reply: Value = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| map_err("schedule due script", e))?;
        let items = as_items(&reply);
        if items.len() % 2 != 0 {
            return Err(bad_reply("schedule due script", &reply));
        }
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut bad = Vec::new();
        for pair in items.chunks(2) {
            let id = as_string(&pair[0]).ok_or_else(|| bad_reply("schedule due script", &reply))?;
            match bytes(&pair[1]) {
                None => bad.push((id, None)),
                Some(raw) => match decode(&raw) {
                    Ok(s) => out.push(s),
                    Err(e) => bad.push((id, Some((raw, e.to_string())))),
                },
            }
        }
        self.bury(bad).await;
        Ok(out)
    }

    async fn release(&self, ids: &[MessageId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys = self.conn.keys();
        let members: Vec<String> = ids.iter().map(|id| id.0.to_string()).collect();
        let mut con = self.conn.con();
        let stored: Vec<Value> = redis::cmd("HMGET")
            .arg(keys.sched_items())
            .arg(&members)
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("HMGET", e))?;
        let mut by_owner: HashMap<UserId, Vec<&str>> = HashMap::new();
        for (member, v) in members.iter().zip(&stored) {
            // An undecodable item's owner is unknown: its owner's set keeps
            // the id until `pending` drops it (the item is gone by then).
            if let Some(s) = bytes(v).and_then(|raw| decode(&raw).ok()) {
                by_owner.entry(s.owner()).or_default().push(member);
            }
        }
        let mut p = redis::pipe();
        p.atomic();
        p.cmd("ZREM").arg(keys.sched_due()).arg(&members).ignore();
        p.cmd("HDEL").arg(keys.sched_items()).arg(&members).ignore();
        for (owner, ids) in by_owner {
            p.cmd("ZREM").arg(keys.sched_user(owner)).arg(ids).ignore();
        }
        p.query_async::<()>(&mut con)
            .await
            .map_err(|e| map_err("schedule release", e))
    }

    async fn cancel(&self, owner: UserId, msg_id: MessageId) -> Result<bool> {
        let keys = self.conn.keys();
        let mut inv = SCHED_CANCEL.prepare_invoke();
        inv.key(keys.sched_user(owner))
            .key(keys.sched_due())
            .key(keys.sched_items())
            .arg(msg_id.0);
        let mut con = self.conn.con();
        let reply: Value = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| map_err("schedule cancel script", e))?;
        as_u64(&reply)
            .map(|n| n > 0)
            .ok_or_else(|| bad_reply("schedule cancel script", &reply))
    }

    async fn pending(&self, owner: UserId) -> Result<Vec<ScheduledSend>> {
        let keys = self.conn.keys();
        let mut inv = SCHED_PENDING.prepare_invoke();
        inv.key(keys.sched_user(owner)).key(keys.sched_items());
        let mut con = self.conn.con();
        let reply: Value = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| map_err("schedule pending script", e))?;
        Ok(as_items(&reply)
            .iter()
            .filter_map(|v| {
                let raw = bytes(v)?;
                decode(&raw)
                    .map_err(|e| {
                        tracing::warn!(user = %owner, error = %e, "redis schedules: undecodable item skipped");
                    })
                    .ok()
            })
            .collect())
    }
}
