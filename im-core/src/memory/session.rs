//! The in-memory `SessionStore`: routes with TTL and a per-node index.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::Result;
use crate::id::{SessionId, UserId};
use crate::model::{NodeId, SessionRoute};
use crate::ports::SessionStore;

type RouteKey = (NodeId, SessionId);

#[derive(Debug)]
struct State {
    by_user: HashMap<UserId, HashMap<RouteKey, (SessionRoute, Instant)>>,
    by_node: HashMap<NodeId, HashSet<(UserId, SessionId)>>,
    last_sweep: Instant,
    /// Last time each user had a live route, Unix ms.
    last_seen: HashMap<UserId, i64>,
    /// Presence subscribers of each user, with their expiry.
    subscribers: HashMap<UserId, HashMap<UserId, Instant>>,
}

impl State {
    fn insert(&mut self, route: &SessionRoute, exp: Instant) {
        self.by_user
            .entry(route.user_id)
            .or_default()
            .insert((route.node.clone(), route.session_id), (route.clone(), exp));
        self.by_node
            .entry(route.node.clone())
            .or_default()
            .insert((route.user_id, route.session_id));
    }

    /// Removes a route (unbind, drop_node): the user was seen until now.
    fn remove(&mut self, user: UserId, node: &NodeId, session: SessionId) {
        self.last_seen.insert(user, crate::id::now_ms());
        self.forget(user, node, session);
    }

    /// Removes a route without touching last_seen (an expired route was last
    /// seen at its last bind or refresh, not when it is swept).
    fn forget(&mut self, user: UserId, node: &NodeId, session: SessionId) {
        if let Some(routes) = self.by_user.get_mut(&user) {
            routes.remove(&(node.clone(), session));
            if routes.is_empty() {
                self.by_user.remove(&user);
            }
        }
        if let Some(idx) = self.by_node.get_mut(node) {
            idx.remove(&(user, session));
            if idx.is_empty() {
                self.by_node.remove(node);
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        let expired: Vec<(UserId, NodeId, SessionId)> = self
            .by_user
            .iter()
            .flat_map(|(u, routes)| {
                routes
                    .iter()
                    .filter(|(_, (_, exp))| *exp <= now)
                    .map(move |((n, s), _)| (*u, n.clone(), *s))
            })
            .collect();
        for (u, n, s) in expired {
            self.forget(u, &n, s);
        }
    }
}

/// Online routes in memory; expired routes are invisible at once and swept
/// at most once a second.
#[derive(Debug)]
pub struct MemorySessionStore {
    state: Mutex<State>,
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        MemorySessionStore {
            state: Mutex::new(State {
                by_user: HashMap::new(),
                by_node: HashMap::new(),
                last_sweep: Instant::now(),
                last_seen: HashMap::new(),
                subscribers: HashMap::new(),
            }),
        }
    }
}

impl MemorySessionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn bind(&self, route: &SessionRoute, ttl: Duration) -> Result<()> {
        self.refresh(std::slice::from_ref(route), ttl).await
    }

    async fn refresh(&self, routes: &[SessionRoute], ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let mut st = self.state.lock();
        if st.last_sweep.elapsed() >= Duration::from_secs(1) {
            st.last_sweep = now;
            st.sweep(now);
        }
        let ms = crate::id::now_ms();
        for r in routes {
            st.insert(r, now + ttl);
            st.last_seen.insert(r.user_id, ms);
        }
        Ok(())
    }

    async fn unbind(&self, route: &SessionRoute) -> Result<()> {
        self.state
            .lock()
            .remove(route.user_id, &route.node, route.session_id);
        Ok(())
    }

    async fn lookup(&self, users: &[UserId]) -> Result<Vec<SessionRoute>> {
        let now = Instant::now();
        let st = self.state.lock();
        let mut out = Vec::new();
        let mut seen = HashSet::with_capacity(users.len());
        for u in users {
            if !seen.insert(*u) {
                continue;
            }
            if let Some(routes) = st.by_user.get(u) {
                out.extend(
                    routes
                        .values()
                        .filter(|(_, exp)| *exp > now)
                        .map(|(r, _)| r.clone()),
                );
            }
        }
        Ok(out)
    }

    async fn drop_node(&self, node: &NodeId) -> Result<u64> {
        let mut st = self.state.lock();
        let Some(idx) = st.by_node.remove(node) else {
            return Ok(0);
        };
        let n = idx.len() as u64;
        for (u, s) in idx {
            st.remove(u, node, s);
        }
        Ok(n)
    }

    async fn last_seen(&self, users: &[UserId]) -> Result<Vec<Option<i64>>> {
        let st = self.state.lock();
        Ok(users.iter().map(|u| st.last_seen.get(u).copied()).collect())
    }

    async fn subscribe_presence(
        &self,
        subscriber: UserId,
        users: &[UserId],
        ttl: Duration,
    ) -> Result<()> {
        let now = Instant::now();
        let mut st = self.state.lock();
        for u in users {
            let subs = st.subscribers.entry(*u).or_default();
            subs.retain(|_, exp| *exp > now);
            subs.insert(subscriber, now + ttl);
        }
        Ok(())
    }

    async fn presence_subscribers(&self, user: UserId) -> Result<Vec<UserId>> {
        let now = Instant::now();
        let mut st = self.state.lock();
        let Some(subs) = st.subscribers.get_mut(&user) else {
            return Ok(Vec::new());
        };
        subs.retain(|_, exp| *exp > now);
        let out: Vec<UserId> = subs.keys().copied().collect();
        if out.is_empty() {
            st.subscribers.remove(&user);
        }
        Ok(out)
    }
}
