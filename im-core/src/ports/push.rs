//! `Pusher`: delivering frames to the sessions of one connect node.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::id::SessionId;
use crate::model::NodeId;

/// One serialized server frame and the sessions that get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushItem {
    /// The frame as UTF-8 JSON text, serialized once and shared by every session.
    pub frame: Bytes,
    /// The target sessions on the node.
    pub sessions: Vec<SessionId>,
}

/// What one node receives in one call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushBatch {
    /// The frames, in delivery order.
    pub items: Vec<PushItem>,
}

/// What a node did with a batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushReport {
    /// Frames queued to live sessions.
    pub delivered: u64,
    /// Sessions that are not (or no longer) on the node; their routes are stale.
    pub gone: Vec<SessionId>,
}

/// Delivers batches to connect nodes (ConnectRpc in a cluster, a direct call
/// into the hub in one process).
#[async_trait]
pub trait Pusher: Send + Sync + 'static {
    /// Delivers one batch to the sessions of `node`.
    async fn push(&self, node: &NodeId, batch: PushBatch) -> Result<PushReport>;

    /// Closes one session on `node` with a `kicked` frame.
    async fn kick(&self, node: &NodeId, session: SessionId, reason: &str) -> Result<bool>;
}
