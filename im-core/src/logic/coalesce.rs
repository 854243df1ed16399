//! Coalescing of concurrent sends for a remote Logic: [`CoalescingLogic`]
//! wraps any [`LogicApi`] (typically the gRPC pool) and turns the sends of
//! many sessions into one `send_batch` call per batch, so a connect or API
//! node pays one RPC per batch instead of one per message. Every other call
//! passes straight through.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::id::{ConversationId, GroupId, MessageId, SessionId, UserId};
use crate::model::{Group, Member, NodeId, Presence, SessionRoute, Target};
use crate::ports::Identity;
use crate::protocol::{SendAck, SendRequest};

use super::{ConversationPage, GroupCommand, LogicApi, Login, Page, Sender};

type Job = ((Sender, SendRequest), oneshot::Sender<Result<SendAck>>);

/// A [`LogicApi`] whose concurrent `send`s are batched into `send_batch`.
pub struct CoalescingLogic {
    inner: Arc<dyn LogicApi>,
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for CoalescingLogic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoalescingLogic").finish_non_exhaustive()
    }
}

impl CoalescingLogic {
    /// Wraps `inner`; at most `max_batch` sends per call and `in_flight`
    /// batches outstanding at once (needs a Tokio runtime).
    pub fn new(inner: Arc<dyn LogicApi>, max_batch: usize, in_flight: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(max_batch.max(1) * 64);
        let target = inner.clone();
        let slots = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
        tokio::spawn(async move {
            let mut buf = Vec::new();
            loop {
                // Wait for a free slot first: while every batch is in flight,
                // sends accumulate and the next batch is bigger.
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                if rx.recv_many(&mut buf, max_batch.max(1)).await == 0 {
                    return;
                }
                let jobs = std::mem::take(&mut buf);
                let target = target.clone();
                tokio::spawn(async move {
                    let (sends, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
                    let results = target.send_batch(sends).await;
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(r);
                    }
                    drop(permit);
                });
            }
        });
        CoalescingLogic { inner, tx }
    }
}

#[async_trait]
impl LogicApi for CoalescingLogic {
    async fn register(&self, username: &str, password: &str) -> Result<UserId> {
        self.inner.register(username, password).await
    }
    async fn login(&self, username: &str, password: &str) -> Result<Login> {
        self.inner.login(username, password).await
    }
    async fn verify_token(&self, token: &str) -> Result<Identity> {
        self.inner.verify_token(token).await
    }
    async fn logout(&self, token: &str) -> Result<()> {
        self.inner.logout(token).await
    }
    async fn connect_session(&self, route: SessionRoute) -> Result<()> {
        self.inner.connect_session(route).await
    }
    async fn refresh_sessions(&self, routes: Vec<SessionRoute>) -> Result<()> {
        self.inner.refresh_sessions(routes).await
    }
    async fn disconnect_session(&self, route: SessionRoute) -> Result<()> {
        self.inner.disconnect_session(route).await
    }
    async fn send(&self, sender: Sender, request: SendRequest) -> Result<SendAck> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(((sender, request), reply))
            .await
            .map_err(|_| Error::unavailable_msg("send batcher stopped"))?;
        rx.await
            .map_err(|_| Error::unavailable_msg("send batcher stopped"))?
    }
    async fn send_batch(&self, sends: Vec<(Sender, SendRequest)>) -> Vec<Result<SendAck>> {
        self.inner.send_batch(sends).await
    }
    async fn sync(
        &self,
        user: UserId,
        conversation: ConversationId,
        after_seq: u64,
        limit: Option<u32>,
    ) -> Result<Page> {
        self.inner.sync(user, conversation, after_seq, limit).await
    }
    async fn create_group(&self, actor: UserId, name: &str) -> Result<GroupId> {
        self.inner.create_group(actor, name).await
    }
    async fn add_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()> {
        self.inner.add_member(actor, group, user).await
    }
    async fn remove_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()> {
        self.inner.remove_member(actor, group, user).await
    }
    async fn members(&self, actor: UserId, group: GroupId) -> Result<Vec<Member>> {
        self.inner.members(actor, group).await
    }
    async fn group(&self, actor: UserId, group: GroupId) -> Result<Group> {
        self.inner.group(actor, group).await
    }
    async fn administer_group(
        &self,
        actor: UserId,
        group: GroupId,
        command: GroupCommand,
    ) -> Result<()> {
        self.inner.administer_group(actor, group, command).await
    }
    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
        origin: Option<(NodeId, SessionId)>,
    ) -> Result<()> {
        self.inner.mark_read(user, conversation, seq, origin).await
    }
    async fn recall(&self, actor: UserId, msg_id: MessageId) -> Result<()> {
        self.inner.recall(actor, msg_id).await
    }
    async fn typing(&self, user: UserId, to: Target) -> Result<()> {
        self.inner.typing(user, to).await
    }
    async fn conversations(
        &self,
        user: UserId,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<ConversationPage> {
        self.inner.conversations(user, cursor, limit).await
    }
    async fn cancel_scheduled(&self, user: UserId, msg_id: MessageId) -> Result<()> {
        self.inner.cancel_scheduled(user, msg_id).await
    }
    async fn scheduled(&self, user: UserId) -> Result<Vec<crate::ports::ScheduledSend>> {
        self.inner.scheduled(user).await
    }
    async fn presence(&self, users: Vec<UserId>) -> Result<Vec<Presence>> {
        self.inner.presence(users).await
    }
    async fn subscribe_presence(
        &self,
        subscriber: UserId,
        users: Vec<UserId>,
    ) -> Result<Vec<Presence>> {
        self.inner.subscribe_presence(subscriber, users).await
    }

    async fn execute(&self, actor: UserId, command: super::Command) -> Result<super::Reply> {
        self.inner.execute(actor, command).await
    }
}
