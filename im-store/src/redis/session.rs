//! `RedisSessionStore`: the routing table of online sessions.
//!
//! Each user has a hash `P:sess:{<user>}` with one field per route
//! (`<session>@<node>`) whose value is `<expiry ms>|<route JSON>`; the key's
//! own PEXPIRE follows the latest route expiry, and routes past their stored
//! expiry are never returned (and are deleted lazily by `lookup`). Each node has
//! a set `P:node:{<node>}` of `<user>:<session>` so `drop_node` finds every
//! route of a dead node. Expiry uses the caller's clock (Unix ms).
//!
//! Last-seen times live in one hash `P:seen` (user → Unix ms), written in the
//! same pipeline as the route change (bind, refresh, unbind, drop_node).
//! Presence subscriptions are a sorted set per watched user `P:psub:{<user>}`
//! (member: the subscriber, score: its expiry in Unix ms); expired members are
//! removed whenever the set is written or read, and the key itself expires
//! with its latest subscription.

use std::time::Duration;

use async_trait::async_trait;
use im_core::id::{now_ms, UserId};
use im_core::model::{NodeId, SessionRoute};
use im_core::ports::SessionStore;
use im_core::{Error, Result};
use redis::Value;

use super::dedup::ttl_ms;
use super::{as_map, as_string, map_err, RedisConn};

/// Session routes in Redis hashes with per-route expiry.
#[derive(Debug, Clone)]
pub struct RedisSessionStore {
    conn: RedisConn,
}

fn field(r: &SessionRoute) -> String {
    format!("{}@{}", r.session_id, r.node)
}

fn member(r: &SessionRoute) -> String {
    format!("{}:{}", r.user_id, r.session_id)
}

/// Decodes a stored route value; `None` when expired or malformed.
fn live(value: &str, now: i64) -> Option<SessionRoute> {
    let (exp, json) = value.split_once('|')?;
    let exp: i64 = exp.parse().ok()?;
    if exp <= now {
        return None;
    }
    serde_json::from_str(json).ok()
}

impl RedisSessionStore {
    pub(crate) fn new(conn: RedisConn) -> Self {
        RedisSessionStore { conn }
    }

    /// Records now as the last-seen time of `users` (one `HSET`).
    fn add_seen(&self, p: &mut redis::Pipeline, users: impl IntoIterator<Item = UserId>) {
        let now = now_ms();
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.conn.keys().seen());
        let mut any = false;
        for u in users {
            cmd.arg(u.0).arg(now);
            any = true;
        }
        if any {
            p.add_command(cmd).ignore();
        }
    }

    fn add_bind(&self, p: &mut redis::Pipeline, r: &SessionRoute, ttl: Duration) -> Result<()> {
        let keys = self.conn.keys();
        let ms = ttl_ms(ttl);
        let exp = now_ms().saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
        let json = serde_json::to_string(r)
            .map_err(|e| Error::Internal(format!("route does not serialize: {e}")))?;
        let user_key = keys.sessions(r.user_id);
        let node_key = keys.node(&r.node);
        p.cmd("HSET")
            .arg(&user_key)
            .arg(field(r))
            .arg(format!("{exp}|{json}"))
            .ignore();
        // NX sets a TTL on a new key, GT extends an existing one.
        for k in [&user_key, &node_key] {
            if k == &node_key {
                p.cmd("SADD").arg(k).arg(member(r)).ignore();
            }
            p.cmd("PEXPIRE").arg(k).arg(ms).arg("NX").ignore();
            p.cmd("PEXPIRE").arg(k).arg(ms).arg("GT").ignore();
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn bind(&self, route: &SessionRoute, ttl: Duration) -> Result<()> {
        self.refresh(std::slice::from_ref(route), ttl).await
    }

    async fn refresh(&self, routes: &[SessionRoute], ttl: Duration) -> Result<()> {
        if routes.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        for r in routes {
            self.add_bind(&mut p, r, ttl)?;
        }
        self.add_seen(&mut p, routes.iter().map(|r| r.user_id));
        let mut con = self.conn.con();
        p.query_async::<()>(&mut con)
            .await
            .map_err(|e| map_err("HSET", e))
    }

    async fn unbind(&self, route: &SessionRoute) -> Result<()> {
        let keys = self.conn.keys();
        let mut p = redis::pipe();
        p.cmd("HDEL")
            .arg(keys.sessions(route.user_id))
            .arg(field(route))
            .ignore();
        p.cmd("SREM")
            .arg(keys.node(&route.node))
            .arg(member(route))
            .ignore();
        self.add_seen(&mut p, [route.user_id]);
        let mut con = self.conn.con();
        p.query_async::<()>(&mut con)
            .await
            .map_err(|e| map_err("HDEL", e))
    }

    async fn lookup(&self, users: &[UserId]) -> Result<Vec<SessionRoute>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.conn.keys();
        let mut p = redis::pipe();
        for u in users {
            p.cmd("HGETALL").arg(keys.sessions(*u));
        }
        let mut con = self.conn.con();
        let replies: Vec<Value> = p
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("HGETALL", e))?;
        let now = now_ms();
        let mut out = Vec::new();
        let mut expired: Vec<(String, String)> = Vec::new();
        for (u, reply) in users.iter().zip(&replies) {
            let mut fields: Vec<(String, Value)> = as_map(reply).into_iter().collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            for (f, v) in fields {
                match as_string(&v).as_deref().and_then(|v| live(v, now)) {
                    Some(r) => out.push(r),
                    None => expired.push((keys.sessions(*u), f)),
                }
            }
        }
        if !expired.is_empty() {
            // Lazy cleanup; a failure only leaves garbage that the next lookup skips.
            let mut p = redis::pipe();
            for (k, f) in &expired {
                p.cmd("HDEL").arg(k).arg(f).ignore();
            }
            if let Err(e) = p.query_async::<()>(&mut con).await {
                tracing::debug!(error = %e, "redis sessions: lazy cleanup failed");
            }
        }
        Ok(out)
    }

    async fn drop_node(&self, node: &NodeId) -> Result<u64> {
        let keys = self.conn.keys();
        let node_key = keys.node(node);
        let mut con = self.conn.con();
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&node_key)
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("SMEMBERS", e))?;
        if members.is_empty() {
            return Ok(0);
        }
        let mut users = Vec::with_capacity(members.len());
        let targets: Vec<(String, String)> = members
            .iter()
            .filter_map(|m| {
                let (user, session) = m.split_once(':')?;
                let user: u64 = user.parse().ok()?;
                users.push(UserId(user));
                Some((keys.sessions(UserId(user)), format!("{session}@{node}")))
            })
            .collect();
        // Read the routes (to count only live ones), then delete them.
        let mut p = redis::pipe();
        for (k, f) in &targets {
            p.cmd("HGET").arg(k).arg(f);
        }
        let values: Vec<Value> = p
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("HGET", e))?;
        let now = now_ms();
        let mut p = redis::pipe();
        for (k, f) in &targets {
            p.cmd("HDEL").arg(k).arg(f);
        }
        p.cmd("SREM").arg(&node_key).arg(&members).ignore();
        self.add_seen(&mut p, users);
        let deleted: Vec<Value> = p
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("HDEL", e))?;
        let dropped = values
            .iter()
            .zip(&deleted)
            .filter(|(v, d)| {
                matches!(d, Value::Int(1))
                    && as_string(v).as_deref().and_then(|v| live(v, now)).is_some()
            })
            .count();
        Ok(dropped as u64)
    }

    async fn last_seen(&self, users: &[UserId]) -> Result<Vec<Option<i64>>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.conn.con();
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.conn.keys().seen())
            .arg(users.iter().map(|u| u.0).collect::<Vec<_>>())
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("HMGET", e))?;
        if values.len() != users.len() {
            return Err(Error::Backend {
                message: format!(
                    "redis HMGET returned {} values for {} users",
                    values.len(),
                    users.len()
                ),
                source: None,
            });
        }
        // A malformed value reads as never seen rather than failing presence.
        Ok(values
            .into_iter()
            .map(|v| v.and_then(|v| v.parse().ok()))
            .collect())
    }

    async fn subscribe_presence(
        &self,
        subscriber: UserId,
        users: &[UserId],
        ttl: Duration,
    ) -> Result<()> {
        if users.is_empty() {
            return Ok(());
        }
        let keys = self.conn.keys();
        let ms = ttl_ms(ttl);
        let now = now_ms();
        let exp = now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
        let mut p = redis::pipe();
        for u in users {
            let k = keys.presence_subscribers(*u);
            p.cmd("ZREMRANGEBYSCORE")
                .arg(&k)
                .arg("-inf")
                .arg(now)
                .ignore();
            // GT: subscribing again only ever extends a subscription.
            p.cmd("ZADD")
                .arg(&k)
                .arg("GT")
                .arg(exp)
                .arg(subscriber.0)
                .ignore();
            p.cmd("PEXPIRE").arg(&k).arg(ms).arg("NX").ignore();
            p.cmd("PEXPIRE").arg(&k).arg(ms).arg("GT").ignore();
        }
        let mut con = self.conn.con();
        p.query_async::<()>(&mut con)
            .await
            .map_err(|e| map_err("ZADD", e))
    }

    async fn presence_subscribers(&self, user: UserId) -> Result<Vec<UserId>> {
        let k = self.conn.keys().presence_subscribers(user);
        let now = now_ms();
        let mut p = redis::pipe();
        p.cmd("ZREMRANGEBYSCORE")
            .arg(&k)
            .arg("-inf")
            .arg(now)
            .ignore();
        p.cmd("ZRANGEBYSCORE")
            .arg(&k)
            .arg(format!("({now}"))
            .arg("+inf");
        let mut con = self.conn.con();
        let (members,): (Vec<String>,) = p
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("ZRANGEBYSCORE", e))?;
        Ok(members
            .iter()
            .filter_map(|m| m.parse().ok().map(UserId))
            .collect())
    }
}
