//! The push worker (consumer group `push`): resolve recipients, look their
//! sessions up in one call, and push one batch per connect node in parallel.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::id::{ConversationId, GroupId, SessionId, UserId};
use crate::model::{Entry, Event, EventAudience, Message, MessageKind, NodeId, SessionRoute};
use crate::ports::{
    Delivery, GroupStore, MessageQueue, PartitionLeases, PushBatch, PushItem, Pusher, SessionStore,
};
use crate::protocol::ServerFrame;

use super::claim::{run_loop, Outcome};
use super::{WorkerConfig, PUSH_GROUP};

/// Where the push worker hands the messages of recipients that have no
/// online session (offline notifications). Called on the push path: it must
/// not block or wait (queue and return).
pub trait OfflineSink: Send + Sync + 'static {
    /// `message` reached no session of `user`.
    fn offline(&self, user: UserId, message: &Message);
}

/// Delivers queued messages to the sessions of their recipients.
pub struct PushWorker {
    queue: Arc<dyn MessageQueue>,
    sessions: Arc<dyn SessionStore>,
    groups: Arc<dyn GroupStore>,
    pusher: Arc<dyn Pusher>,
    config: WorkerConfig,
    leases: Option<Arc<dyn PartitionLeases>>,
    offline: Option<Arc<dyn OfflineSink>>,
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
            leases: None,
            offline: None,
        }
    }

    /// Hands messages whose recipient has no online session to `sink`
    /// (e.g. the offline notifications of [`super::notify`]).
    pub fn with_offline(mut self, sink: Arc<dyn OfflineSink>) -> Self {
        self.offline = Some(sink);
        self
    }

    /// Shares the partitions with the other push workers through `leases`:
    /// at most one worker pushes a partition at a time, so every session gets
    /// a conversation's messages in seq order. Without leases the worker reads
    /// every partition: run exactly one per deployment then.
    pub fn with_leases(mut self, leases: Arc<dyn PartitionLeases>) -> Self {
        self.leases = Some(leases);
        self
    }

    /// Runs until `stop` fires.
    pub async fn run(self, stop: CancellationToken) -> Result<()> {
        let consumer = self
            .queue
            .consumer(PUSH_GROUP, &self.config.consumer)
            .await?;
        let mut keeping = super::lease::Keeping::start(
            self.leases.as_ref(),
            PUSH_GROUP,
            &self.config.consumer,
            self.config.lease_ttl,
            self.queue.partitions(),
        );
        let this = Arc::new(self);
        let config = this.config.clone();
        run_loop(consumer, &config, stop, keeping.handle(), |batch| {
            let this = this.clone();
            async move {
                this.deliver(&batch).await;
                Outcome::Done
            }
        })
        .await;
        keeping.finish().await;
        Ok(())
    }

    /// Delivers one batch to every live recipient session (failures to one node
    /// do not hold back the others; clients of a dead node resync on reconnect).
    pub async fn deliver(&self, batch: &[Delivery]) {
        let started = Instant::now();
        let (by_node, offline) = match self.plan(batch).await {
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
        if let Some(sink) = &self.offline {
            for (user, message) in offline {
                sink.offline(user, message);
            }
        }
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
        for (session, reason) in &push.kicks {
            let call = self.pusher.kick(&node, *session, reason);
            match tokio::time::timeout(self.config.push_timeout, call).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(node = %node, error = %e, "kicking a session failed"),
                Err(_) => tracing::warn!(node = %node, "kicking a session timed out"),
            }
        }
        if push.batch.items.is_empty() {
            return Vec::new();
        }
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

    /// The pushes per connect node, and the (recipient, message) pairs that
    /// reach no session (only when an offline sink wants them).
    async fn plan<'b>(
        &self,
        batch: &'b [Delivery],
    ) -> Result<(BTreeMap<NodeId, NodePush>, Vec<(UserId, &'b Message)>)> {
        let now = crate::id::now_ms();
        // What each entry is, to whom, and as which frame.
        let items: Vec<Planned> = batch.iter().filter_map(|d| Planned::of(d, now)).collect();
        // Members of every group whose audience is "the members at push time".
        let mut groups: HashMap<GroupId, Vec<UserId>> = HashMap::new();
        for p in &items {
            if let Audience::Conversation(ConversationId::Group(g), _) = p.audience {
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
        for p in &items {
            match p.audience {
                Audience::Conversation(ConversationId::Direct(a, b), _) => {
                    users.insert(a);
                    users.insert(b);
                }
                Audience::Conversation(ConversationId::Group(g), _) => {
                    users.extend(groups.get(&g).into_iter().flatten().copied());
                }
                Audience::Users(list) => users.extend(list.iter().copied()),
                Audience::Sessions(_) => {}
            }
        }
        let users: Vec<UserId> = users.into_iter().collect();
        let routes = if users.is_empty() {
            Vec::new()
        } else {
            self.sessions.lookup(&users).await?
        };
        let mut by_user: HashMap<UserId, Vec<&SessionRoute>> = HashMap::new();
        for r in &routes {
            by_user.entry(r.user_id).or_default().push(r);
        }

        let mut plan: BTreeMap<NodeId, NodePush> = BTreeMap::new();
        let mut offline = Vec::new();
        for p in &items {
            if let Audience::Sessions(targets) = p.audience {
                for r in targets {
                    let entry = plan.entry(r.node.clone()).or_default();
                    match &p.kick {
                        Some(reason) => entry.kicks.push((r.session_id, reason.clone())),
                        None => entry.batch.items.push(PushItem {
                            frame: p.frame.clone(),
                            sessions: vec![r.session_id],
                        }),
                    }
                }
                continue;
            }
            let pair;
            let (recipients, except): (&[UserId], Option<UserId>) = match p.audience {
                Audience::Conversation(ConversationId::Direct(a, b), except) => {
                    pair = [a, b];
                    (&pair[..], except)
                }
                Audience::Conversation(ConversationId::Group(g), except) => {
                    (groups.get(&g).map(Vec::as_slice).unwrap_or(&[]), except)
                }
                Audience::Users(list) => (list, None),
                Audience::Sessions(_) => continue,
            };
            let mut per_node: BTreeMap<&NodeId, Vec<SessionId>> = BTreeMap::new();
            for u in recipients.iter().filter(|u| Some(**u) != except) {
                if let (Some(m), Some(_)) = (p.message, &self.offline) {
                    if m.from != *u && m.kind != MessageKind::System && !by_user.contains_key(u) {
                        offline.push((*u, m));
                    }
                }
                for r in by_user.get(u).into_iter().flatten() {
                    if p.origin
                        .is_some_and(|(n, s)| *n == r.node && *s == r.session_id)
                    {
                        continue;
                    }
                    per_node.entry(&r.node).or_default().push(r.session_id);
                }
            }
            for (node, sessions) in per_node {
                let entry = plan.entry(node.clone()).or_default();
                entry.batch.items.push(PushItem {
                    frame: p.frame.clone(),
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
        Ok((plan, offline))
    }
}

/// Ephemeral events older than this are not delivered (a typing indicator
/// that arrives late is wrong, not late).
const EPHEMERAL_MAX_AGE_MS: i64 = 5_000;

/// Who receives one planned entry.
enum Audience<'a> {
    /// The participants (members at push time for a group), minus one user.
    Conversation(ConversationId, Option<UserId>),
    /// Every session of these users.
    Users(&'a [UserId]),
    /// Exactly these sessions.
    Sessions(&'a [SessionRoute]),
}

/// One entry of a batch, ready to route.
struct Planned<'a> {
    audience: Audience<'a>,
    origin: Option<&'a (NodeId, SessionId)>,
    /// The frame, serialized once.
    frame: Bytes,
    /// A kick instead of a frame.
    kick: Option<String>,
    /// The message, when the entry is one.
    message: Option<&'a Message>,
}

impl<'a> Planned<'a> {
    fn of(d: &'a Delivery, now: i64) -> Option<Planned<'a>> {
        match &d.entry {
            Entry::Message(env) => {
                let m = &env.message;
                let audience = match (&env.audience, m.conversation_id) {
                    (Some(users), ConversationId::Group(_)) => Audience::Users(users),
                    (_, c) => Audience::Conversation(c, None),
                };
                Some(Planned {
                    audience,
                    origin: env.origin.as_ref(),
                    frame: Bytes::from(ServerFrame::Message(m.clone()).encode()),
                    kick: None,
                    message: Some(m),
                })
            }
            Entry::Event(ev) => {
                if matches!(ev.event, Event::Typing { .. })
                    && now.saturating_sub(ev.ts) > EPHEMERAL_MAX_AGE_MS
                {
                    return None;
                }
                let audience = match &ev.to {
                    EventAudience::Conversation {
                        conversation_id,
                        except,
                    } => Audience::Conversation(*conversation_id, *except),
                    EventAudience::Users(users) => Audience::Users(users),
                    EventAudience::Sessions(routes) => Audience::Sessions(routes),
                };
                let (frame, kick) = match &ev.event {
                    Event::Kick { reason } => (Bytes::new(), Some(reason.clone())),
                    other => (Bytes::from(ServerFrame::from_event(other)?.encode()), None),
                };
                Some(Planned {
                    audience,
                    origin: ev.origin.as_ref(),
                    frame,
                    kick,
                    message: None,
                })
            }
        }
    }
}

#[derive(Default)]
struct NodePush {
    batch: PushBatch,
    kicks: Vec<(SessionId, String)>,
    routes: HashMap<SessionId, SessionRoute>,
}
