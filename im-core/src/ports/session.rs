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
}
