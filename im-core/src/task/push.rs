//! The push worker (consumer group `push`): resolve recipients, look their
//! sessions up in one call, and push one batch per connect node in parallel.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::id::{ConversationId, GroupId, SessionId, UserId};
use crate::model::{NodeId, SessionRoute};
use crate::ports::{Delivery, GroupStore, MessageQueue, PushBatch, PushItem, Pusher, SessionStore};
use crate::protocol::ServerFrame;

use super::claim::{run_loop, Outcome};
use super::{WorkerConfig, PUSH_GROUP};

/// Delivers queued messages to the sessions of their recipients.
pub struct PushWorker {
    queue: Arc<dyn MessageQueue>,
    sessions: Arc<dyn SessionStore>,
    groups: Arc<dyn GroupStore>,
    pusher: Arc<dyn Pusher>,
    config: WorkerConfig,
}

impl PushWorker {
    /// A worker over the ports.
    pub fn new(
        queue: Arc<dyn MessageQueue>,
        sessions: Arc<dyn SessionStore>,
        groups: Arc<dyn GroupStore>,
        pusher: Arc<dyn Pusher>,
        config: WorkerConfig,
    ) -> Self {
        PushWorker {
            queue,
            sessions,
            groups,
            pusher,
            config,
        }
    }

    /// Runs until `stop` fires.
    pub async fn run(self, stop: CancellationToken) -> Result<()> {
        let consumer = self
            .queue
            .consumer(PUSH_GROUP, &self.config.consumer)
            .await?;
        let this = Arc::new(self);
        let config = this.config.clone();
        run_loop(consumer, &config, stop, |batch| {
            let this = this.clone();
            async move {
                this.deliver(&batch).await;
                Outcome::Done
            }
        })
        .await;
        Ok(())
    }

    /// Delivers one batch to every live recipient session (failures to one node
    /// do not hold back the others; clients of a dead node resync on reconnect).
    pub async fn deliver(&self, batch: &[Delivery]) {
        let started = Instant::now();
        let by_node = match self.plan(batch).await {
            Ok(p) => p,
            Err(e) => {
                // Recipients unknown: retry the lookups once, then give up on
                // live delivery (the messages are persisted and sync finds them).
                tracing::warn!(error = %e, "resolving recipients failed; retrying once");
                tokio::time::sleep(Duration::from_millis(100)).await;
                match self.plan(batch).await {
                    Ok(p) => p,
                    Err(e) => {
                        metrics::counter!("im_push_failures_total", "reason" => "lookup")
                            .increment(batch.len() as u64);
                        tracing::error!(error = %e, "resolving recipients failed; clients will sync");
                        return;
                    }
                }
            }
        };
        let pushes = by_node
            .into_iter()
            .map(|(node, push)| self.push_node(node, push));
        let stale: Vec<SessionRoute> = futures::future::join_all(pushes)
            .await
            .into_iter()
            .flatten()
            .collect();
        for route in stale {
            let _ = self.sessions.unbind(&route).await;
        }
        metrics::counter!("im_messages_pushed_total").increment(batch.len() as u64);
        metrics::histogram!("im_push_batch_seconds").record(started.elapsed().as_secs_f64());
    }

    async fn push_node(&self, node: NodeId, push: NodePush) -> Vec<SessionRoute> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let call = self.pusher.push(&node, push.batch.clone());
            let res = match tokio::time::timeout(self.config.push_timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout(format!("push to {node}"))),
            };
            match res {
                Ok(report) => {
                    return report
                        .gone
                        .iter()
                        .filter_map(|sid| push.routes.get(sid).cloned())
                        .collect();
                }
                Err(e) if attempt < 2 && e.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    metrics::counter!("im_push_failures_total", "reason" => "node").increment(1);
                    tracing::warn!(node = %node, error = %e, "push to connect node failed; its sessions will resync");
                    return Vec::new();
                }
            }
        }
    }

    async fn plan(&self, batch: &[Delivery]) -> Result<BTreeMap<NodeId, NodePush>> {
        // Recipients per conversation: both parties, or the group's members.
        let mut groups: HashMap<GroupId, Vec<UserId>> = HashMap::new();
        for d in batch {
            if let ConversationId::Group(g) = d.envelope.message.conversation_id {
                if let std::collections::hash_map::Entry::Vacant(v) = groups.entry(g) {
                    v.insert(
                        self.groups
                            .members(g)
                            .await?
                            .into_iter()
                            .map(|m| m.user_id)
                            .collect(),
                    );
                }
            }
        }
        let mut users: HashSet<UserId> = HashSet::new();
        for d in batch {
            match d.envelope.message.conversation_id {
                ConversationId::Direct(a, b) => {
                    users.insert(a);
                    users.insert(b);
                }
                ConversationId::Group(g) => {
                    users.extend(groups.get(&g).into_iter().flatten().copied());
                }
            }
        }
        let users: Vec<UserId> = users.into_iter().collect();
        let routes = self.sessions.lookup(&users).await?;
        let mut by_user: HashMap<UserId, Vec<&SessionRoute>> = HashMap::new();
        for r in &routes {
            by_user.entry(r.user_id).or_default().push(r);
        }

        let mut plan: BTreeMap<NodeId, NodePush> = BTreeMap::new();
        for d in batch {
            let m = &d.envelope.message;
            let origin = d.envelope.origin.as_ref();
            let recipients: &[UserId] = match m.conversation_id {
                ConversationId::Direct(a, b) => &[a, b],
                ConversationId::Group(g) => groups.get(&g).map(Vec::as_slice).unwrap_or(&[]),
            };
            let frame = Bytes::from(ServerFrame::Message(m.clone()).encode());
            let mut per_node: BTreeMap<&NodeId, Vec<SessionId>> = BTreeMap::new();
            for u in recipients {
                for r in by_user.get(u).into_iter().flatten() {
                    if origin.is_some_and(|(n, s)| *n == r.node && *s == r.session_id) {
                        continue;
                    }
                    per_node.entry(&r.node).or_default().push(r.session_id);
                }
            }
            for (node, sessions) in per_node {
                let entry = plan.entry(node.clone()).or_default();
                entry.batch.items.push(PushItem {
                    frame: frame.clone(),
                    sessions,
                });
            }
        }
        // Remember routes per session so stale ones can be unbound.
        for r in routes {
            if let Some(p) = plan.get_mut(&r.node) {
                p.routes.insert(r.session_id, r);
            }
        }
        Ok(plan)
    }
}

#[derive(Default)]
struct NodePush {
    batch: PushBatch,
    routes: HashMap<SessionId, SessionRoute>,
}
