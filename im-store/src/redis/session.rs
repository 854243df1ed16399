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
use super::{as_map, as_string, cmd_on, map_err, Ops, RedisConn};

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
    fn add_seen(&self, p: &mut Ops, users: impl IntoIterator<Item = UserId>) {
        let now = now_ms();
        let key = self.conn.keys().seen();
        let mut cmd = cmd_on("HSET", &key);
        let mut any = false;
        for u in users {
            cmd.arg(u.0).arg(now);
            any = true;
        }
        if any {
            p.add_ignored(key, cmd);
        }
    }

    fn add_bind(&self, p: &mut Ops, r: &SessionRoute, ttl: Duration) -> Result<()> {
        let keys = self.conn.keys();
        let ms = ttl_ms(ttl);
        let exp = now_ms().saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
        let json = serde_json::to_string(r)
            .map_err(|e| Error::Internal(format!("route does not serialize: {e}")))?;
        let user_key = keys.sessions(r.user_id);
        let node_key = keys.node(&r.node);
        let mut c = cmd_on("HSET", &user_key);
        c.arg(field(r)).arg(format!("{exp}|{json}"));
        p.add_ignored(user_key.clone(), c);
        // NX sets a TTL on a new key, GT extends an existing one.
        for k in [&user_key, &node_key] {
            if k == &node_key {
                let mut c = cmd_on("SADD", k);
                c.arg(member(r));
                p.add_ignored(k.clone(), c);
            }
            for mode in ["NX", "GT"] {
                let mut c = cmd_on("PEXPIRE", k);
                c.arg(ms).arg(mode);
                p.add_ignored(k.clone(), c);
            }
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
        let mut p = Ops::new();
        for r in routes {
            self.add_bind(&mut p, r, ttl)?;
        }
        self.add_seen(&mut p, routes.iter().map(|r| r.user_id));
        p.run(&self.conn, "HSET").await.map(drop)
    }

    async fn unbind(&self, route: &SessionRoute) -> Result<()> {
        let keys = self.conn.keys();
        let mut p = Ops::new();
        let user_key = keys.sessions(route.user_id);
        let mut c = cmd_on("HDEL", &user_key);
        c.arg(field(route));
        p.add_ignored(user_key, c);
        let node_key = keys.node(&route.node);
        let mut c = cmd_on("SREM", &node_key);
        c.arg(member(route));
        p.add_ignored(node_key, c);
        self.add_seen(&mut p, [route.user_id]);
        p.run(&self.conn, "HDEL").await.map(drop)
    }

    async fn lookup(&self, users: &[UserId]) -> Result<Vec<SessionRoute>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.conn.keys();
        let mut p = Ops::new();
        for u in users {
            let k = keys.sessions(*u);
            let c = cmd_on("HGETALL", &k);
            p.add(k, c);
        }
        let replies = p.run(&self.conn, "HGETALL").await?;
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
            let mut p = Ops::new();
            for (k, f) in &expired {
                let mut c = cmd_on("HDEL", k);
                c.arg(f);
                p.add_ignored(k.clone(), c);
            }
            if let Err(e) = p.run(&self.conn, "HDEL").await {
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
        let mut p = Ops::new();
        for (k, f) in &targets {
            let mut c = cmd_on("HGET", k);
            c.arg(f);
            p.add(k.clone(), c);
        }
        let values = p.run(&self.conn, "HGET").await?;
        let now = now_ms();
        let mut p = Ops::new();
        for (k, f) in &targets {
            let mut c = cmd_on("HDEL", k);
            c.arg(f);
            p.add(k.clone(), c);
        }
        let mut c = cmd_on("SREM", &node_key);
        c.arg(&members);
        p.add_ignored(node_key.clone(), c);
        self.add_seen(&mut p, users);
        let deleted = p.run(&self.conn, "HDEL").await?;
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
        let mut p = Ops::new();
        for u in users {
            let k = keys.presence_subscribers(*u);
            let mut c = cmd_on("ZREMRANGEBYSCORE", &k);
            c.arg("-inf").arg(now);
            p.add_ignored(k.clone(), c);
            // GT: subscribing again only ever extends a subscription.
            let mut c = cmd_on("ZADD", &k);
            c.arg("GT").arg(exp).arg(subscriber.0);
            p.add_ignored(k.clone(), c);
            for mode in ["NX", "GT"] {
                let mut c = cmd_on("PEXPIRE", &k);
                c.arg(ms).arg(mode);
                p.add_ignored(k.clone(), c);
            }
        }
        p.run(&self.conn, "ZADD").await.map(drop)
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
