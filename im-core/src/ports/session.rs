//! `SessionStore`: which connect node and session each online user is on.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::id::UserId;
use crate::model::{NodeId, SessionRoute};

/// The routing table of online sessions.
///
/// Contract: a bound route is visible to `lookup` until it is unbound, its
/// node is dropped, or `ttl` passes without a `refresh`; a user may hold many
/// routes (devices) at once.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Adds (or replaces) a route with a time to live.
    async fn bind(&self, route: &SessionRoute, ttl: Duration) -> Result<()>;

    /// Extends the TTL of many routes at once, re-adding any that expired.
    async fn refresh(&self, routes: &[SessionRoute], ttl: Duration) -> Result<()>;

    /// Removes one route.
    async fn unbind(&self, route: &SessionRoute) -> Result<()>;

    /// Every live route of any of `users`, in one round trip.
    async fn lookup(&self, users: &[UserId]) -> Result<Vec<SessionRoute>>;

    /// Drops every route of a node (it died); returns how many were dropped.
    async fn drop_node(&self, node: &NodeId) -> Result<u64>;

    /// When each user last had a live session (Unix ms; `None`: never), in the
    /// order of `users`. `bind`, `refresh`, `unbind` and `drop_node` record it.
    async fn last_seen(&self, users: &[UserId]) -> Result<Vec<Option<i64>>>;

    /// Subscribes `subscriber` to presence changes of `users` for `ttl`
    /// (subscribing again extends it).
    async fn subscribe_presence(
        &self,
        subscriber: UserId,
        users: &[UserId],
        ttl: Duration,
    ) -> Result<()>;

    /// The live subscribers of `user`'s presence.
    async fn presence_subscribers(&self, user: UserId) -> Result<Vec<UserId>>;
}
