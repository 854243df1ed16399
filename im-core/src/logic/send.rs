//! The send path: validate, authorize, then admit whole batches through the
//! [`SendPipeline`](crate::ports::SendPipeline) (dedup + seq + enqueue in one
//! step) and answer each sender with its ack.
//!
//! Concurrent sends are queued to a batcher task (one of `batchers`, chosen by
//! conversation, so a conversation's sends stay in order while several batches
//! are in flight), which takes everything waiting (up to `max_batch`), checks
//! targets with one lookup per batch, and admits the batch at once: a
//! networked backend is paid once per batch, not once per message per step.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::id::{now_ms, ConversationId, GroupId, MessageId, UserId};
use crate::model::{Envelope, Mentions, Message, MessageKind, Role, Target};
use crate::ports::{Admission, DedupKey, HookVerdict, PendingSend, Reach, ScheduledSend};
use crate::protocol::{SendAck, SendRequest};

use super::{DirectMessages, Logic, Sender};

/// One queued send and where to answer it.
#[derive(Debug)]
pub struct SendJob {
    sender: Sender,
    request: SendRequest,
    /// A server-written message (already authorized; may pin its audience).
    system: Option<Option<Vec<UserId>>>,
    reply: oneshot::Sender<Result<SendAck>>,
}

impl Logic {
    pub(super) async fn send(&self, sender: Sender, request: SendRequest) -> Result<SendAck> {
        // Cheap, stateless checks first, before queueing; a refused send may
        // be the retry of an accepted one, which gets its original ack.
        let shape = self.check_shape(sender.user, &request).and_then(|()| {
            if request.kind == MessageKind::System {
                Err(Error::InvalidArgument(
                    "kind `system` is written by the server only".into(),
                ))
            } else {
                Ok(())
            }
        });
        let shape = if sender.throttled {
            Err(Error::ResourceExhausted(
                "send rate limit exceeded; slow down".into(),
            ))
        } else {
            shape
        };
        let shape = match shape {
            Ok(()) => self.check_attachment(sender.user, &request).await,
            Err(e) => Err(e),
        };
        if let Err(e) = shape {
            return match self.original_acks(&[(sender.user, &request)]).await.pop() {
                Some(Some(ack)) => Ok(ack),
                _ => Err(e),
            };
        }
        self.enqueue(SendJob {
            sender,
            request,
            system: None,
            reply: oneshot::channel().0,
        })
        .await
    }

    /// Sends a `system` message to a group on behalf of `actor` (the change
    /// it announces was authorized by the caller).
    pub(super) async fn submit_system(
        &self,
        actor: UserId,
        group: GroupId,
        body: serde_json::Value,
        audience: Option<Vec<UserId>>,
    ) -> Result<SendAck> {
        let request = SendRequest {
            client_msg_id: format!("system-{}", self.next_id()),
            to: Target::Group(group),
            kind: MessageKind::System,
            body,
            deliver_at: None,
            mentions: None,
        };
        self.enqueue(SendJob {
            sender: Sender::http(actor),
            request,
            system: Some(audience),
            reply: oneshot::channel().0,
        })
        .await
    }

    async fn enqueue(&self, mut job: SendJob) -> Result<SendAck> {
        let (reply, rx) = oneshot::channel();
        job.reply = reply;
        // Same conversation, same batcher: its sends keep their order.
        let lane = job
            .request
            .to
            .conversation(job.sender.user)
            .map(|c| c.shard_hash())
            .unwrap_or(0);
        let n = self.batchers.len().max(1) as u64;
        let Some(batcher) = self.batchers.get((lane % n) as usize) else {
            return Err(Error::unavailable_msg("logic has no send batcher"));
        };
        batcher
            .send(job)
            .await
            .map_err(|_| Error::unavailable_msg("logic is shutting down"))?;
        rx.await
            .map_err(|_| Error::unavailable_msg("logic is shutting down"))?
    }

    /// Validates everything that needs no lookup.
    fn check_shape(&self, sender: UserId, r: &SendRequest) -> Result<()> {
        let n = r.client_msg_id.chars().count();
        if n == 0 || r.client_msg_id.len() > self.config.max_client_msg_id {
            return Err(Error::InvalidArgument(format!(
                "client_msg_id must be 1-{} bytes",
                self.config.max_client_msg_id
            )));
        }
        if r.to == Target::User(sender) {
            return Err(Error::InvalidArgument("cannot send to yourself".into()));
        }
        match (&r.mentions, r.to) {
            (None, _) => {}
            (Some(_), Target::User(_)) => {
                return Err(Error::InvalidArgument(
                    "mentions are for group messages".into(),
                ))
            }
            (Some(Mentions::Users(users)), _) if users.len() > self.config.max_mentions => {
                return Err(Error::InvalidArgument(format!(
                    "a message mentions at most {} users",
                    self.config.max_mentions
                )))
            }
            (Some(_), _) => {}
        }
        let size = match (r.kind, &r.body) {
            (MessageKind::Text, serde_json::Value::String(s)) => s.len(),
            (MessageKind::Text, _) => {
                return Err(Error::InvalidArgument(
                    "a text body must be a string".into(),
                ))
            }
            (_, serde_json::Value::Object(_)) => serde_json::to_vec(&r.body)
                .map(|v| v.len())
                .unwrap_or(usize::MAX),
            (kind, _) => {
                return Err(Error::InvalidArgument(format!(
                    "a {kind} body must be a JSON object"
                )))
            }
        };
        if size > self.config.max_body_bytes {
            return Err(Error::ResourceExhausted(format!(
                "body is {size} bytes; the limit is {}",
                self.config.max_body_bytes
            )));
        }
        if let Some(at) = r.deliver_at {
            let horizon =
                i64::try_from(self.config.schedule_horizon.as_millis()).unwrap_or(i64::MAX);
            if at > now_ms().saturating_add(horizon) {
                return Err(Error::InvalidArgument(format!(
                    "deliver_at may be at most {} s ahead",
                    horizon / 1000
                )));
            }
        }
        Ok(())
    }

    /// Checks targets for a whole batch: one existence lookup for all peers,
    /// one membership lookup per (group, sender).
    async fn authorize(&self, jobs: &[SendJob]) -> Vec<Result<()>> {
        let peers: Vec<UserId> = jobs
            .iter()
            .filter_map(|j| match j.request.to {
                Target::User(u) => Some(u),
                Target::Group(_) => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        // Accounts are never deleted, so a user seen once stays known: only
        // peers not seen before cost a store lookup.
        let unknown: Vec<UserId> = {
            let known = self.known_users.read();
            peers
                .iter()
                .filter(|u| !known.contains(u))
                .copied()
                .collect()
        };
        let existing: Result<HashSet<UserId>> = if unknown.is_empty() {
            Ok(peers.iter().copied().collect())
        } else {
            match self.ports.users.existing(&unknown).await {
                Ok(found) => {
                    let mut known = self.known_users.write();
                    if known.len() > 1_000_000 {
                        known.clear();
                    }
                    known.extend(found.iter().copied());
                    let found: HashSet<UserId> = found.into_iter().collect();
                    Ok(peers
                        .iter()
                        .filter(|u| found.contains(u) || known.contains(u))
                        .copied()
                        .collect())
                }
                Err(e) => Err(e),
            }
        };
        let reach = self.reach_of(jobs).await;
        let mut memberships: HashMap<(GroupId, UserId), Result<Role>> = HashMap::new();
        // Each group is read at most once per batch (existence and mute).
        let mut group_cache: HashMap<GroupId, Option<crate::model::Group>> = HashMap::new();
        let now = now_ms();
        for j in jobs {
            if j.system.is_some() {
                continue;
            }
            if let Target::Group(g) = j.request.to {
                let key = (g, j.sender.user);
                if memberships.contains_key(&key) {
                    continue;
                }
                let verdict = self
                    .group_send_allowed(g, j.sender.user, now, &mut group_cache)
                    .await;
                memberships.insert(key, verdict);
            }
        }
        jobs.iter()
            .map(|j| match j.request.to {
                _ if j.system.is_some() => Ok(()),
                Target::User(u) => match &existing {
                    Ok(set) if set.contains(&u) => self.may_reach(&reach, j.sender.user, u),
                    Ok(_) => Err(Error::NotFound(format!("no user {u}"))),
                    Err(e) => Err(clone_err(e)),
                },
                Target::Group(g) => match memberships.get(&(g, j.sender.user)) {
                    Some(Ok(Role::Member)) if j.request.mentions == Some(Mentions::All) => {
                        Err(Error::PermissionDenied(
                            "only the owner or an admin can mention all".into(),
                        ))
                    }
                    Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(clone_err(e)),
                    None => Err(Error::Internal("membership not checked".into())),
                },
            })
            .collect()
    }

    /// v1.2: how each 1:1 sender stands with its peer (blocks, contacts),
    /// one store call per batch; only asked when the batch has 1:1 sends.
    async fn reach_of(&self, jobs: &[SendJob]) -> Result<HashMap<(UserId, UserId), Reach>> {
        let pairs: Vec<(UserId, UserId)> = jobs
            .iter()
            .filter(|j| j.system.is_none())
            .filter_map(|j| match j.request.to {
                Target::User(peer) => Some((j.sender.user, peer)),
                Target::Group(_) => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if pairs.is_empty() || !self.config.relation_checks {
            return Ok(HashMap::new());
        }
        let ttl = self.config.relation_cache_ttl;
        let (mut known, missing) = self.reach.split(pairs, ttl);
        if !missing.is_empty() {
            let found = self.ports.contacts.reach(&missing).await?;
            let answers: Vec<_> = missing.into_iter().zip(found).collect();
            self.reach.store(&answers, ttl);
            known.extend(answers);
        }
        Ok(known)
    }

    /// Whether `from` may send a 1:1 message to `to` (blocked: refused
    /// without saying more; contacts only: by the deployment's policy).
    fn may_reach(
        &self,
        reach: &Result<HashMap<(UserId, UserId), Reach>>,
        from: UserId,
        to: UserId,
    ) -> Result<()> {
        let r = match reach {
            Ok(map) => map.get(&(from, to)).copied().unwrap_or_default(),
            Err(e) => return Err(clone_err(e)),
        };
        if r.blocked {
            return Err(Error::PermissionDenied(
                "you cannot send messages to this user".into(),
            ));
        }
        if self.config.direct_messages == DirectMessages::ContactsOnly && !r.contacts {
            return Err(Error::PermissionDenied(
                "you can send messages only to your contacts".into(),
            ));
        }
        Ok(())
    }

    async fn group_send_allowed(
        &self,
        g: GroupId,
        user: UserId,
        now: i64,
        groups: &mut HashMap<GroupId, Option<crate::model::Group>>,
    ) -> Result<Role> {
        let member = self.ports.groups.member(g, user).await?;
        if let Some(m) = member {
            if m.is_muted(now) {
                return Err(Error::PermissionDenied(format!(
                    "you are muted in group {g}"
                )));
            }
            if m.role != Role::Member {
                return Ok(m.role);
            }
        }
        let group = match groups.get(&g) {
            Some(cached) => cached.clone(),
            None => {
                let fetched = self.ports.groups.get(g).await?;
                groups.insert(g, fetched.clone());
                fetched
            }
        };
        match (member, group) {
            (_, None) => Err(Error::NotFound(format!("no group {g}"))),
            (None, Some(_)) => Err(Error::PermissionDenied(format!(
                "you are not a member of group {g}"
            ))),
            (Some(_), Some(group)) if group.is_muted(now) => Err(Error::PermissionDenied(format!(
                "group {g} is muted: only the owner and admins may send"
            ))),
            (Some(m), Some(_)) => Ok(m.role),
        }
    }

    /// The original acks of earlier accepted sends with these (sender,
    /// `client_msg_id`) in the conversations the requests name (PROTOCOL.md
    /// v1.2 "Retries first"). Asked only for sends about to be refused, so the
    /// hot path pays nothing; a failed lookup answers `None` (the refusal stands).
    async fn original_acks(&self, sends: &[(UserId, &SendRequest)]) -> Vec<Option<SendAck>> {
        let mut keys = Vec::with_capacity(sends.len());
        let mut at = Vec::with_capacity(sends.len());
        for (i, (sender, r)) in sends.iter().enumerate() {
            if r.client_msg_id.is_empty() || r.client_msg_id.len() > self.config.max_client_msg_id {
                continue;
            }
            if let Ok(c) = r.to.conversation(*sender) {
                keys.push((DedupKey::of_send(*sender, &r.client_msg_id), c));
                at.push(i);
            }
        }
        let mut out = vec![None; sends.len()];
        if keys.is_empty() {
            return out;
        }
        match self
            .ports
            .pipeline
            .lookup(&keys, self.config.dedup_ttl)
            .await
        {
            Ok(found) => {
                for (i, ack) in at.into_iter().zip(found) {
                    if let (Some(slot), Some(mut ack)) = (out.get_mut(i), ack) {
                        // The key is a hash: make sure it is this send's.
                        if ack.client_msg_id.is_empty() {
                            ack.client_msg_id = sends[i].1.client_msg_id.clone();
                        }
                        if ack.client_msg_id == sends[i].1.client_msg_id {
                            *slot = Some(ack);
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "looking up earlier sends failed"),
        }
        out
    }

    /// Answers refused sends: a retry of an accepted send gets its original
    /// ack, anything else its refusal.
    async fn refuse(&self, refused: Vec<(SendJob, Error)>) {
        if refused.is_empty() {
            return;
        }
        let originals = {
            let sends: Vec<(UserId, &SendRequest)> = refused
                .iter()
                .map(|(j, _)| (j.sender.user, &j.request))
                .collect();
            self.original_acks(&sends).await
        };
        for ((job, e), original) in refused.into_iter().zip(originals) {
            match original {
                Some(ack) => {
                    metrics::counter!("im_send_duplicates_total").increment(1);
                    let _ = job.reply.send(Ok(ack));
                }
                None => {
                    metrics::counter!("im_send_failures_total", "code" => e.code().as_str())
                        .increment(1);
                    let _ = job.reply.send(Err(e));
                }
            }
        }
    }

    async fn process(&self, jobs: Vec<SendJob>) {
        let verdicts = self.authorize(&jobs).await;
        let ts = now_ms();
        let mut pending = Vec::with_capacity(jobs.len());
        let mut refused = Vec::new();
        for (job, verdict) in jobs.into_iter().zip(verdicts) {
            if let Err(e) = verdict {
                refused.push((job, e));
                continue;
            }
            match job.request.to.conversation(job.sender.user) {
                Ok(c) => pending.push((job, c)),
                Err(e) => {
                    let _ = job.reply.send(Err(e.into()));
                }
            }
        }
        self.refuse(refused).await;
        if !self.ports.hooks.is_empty() {
            pending = self.run_before_hooks(pending).await;
        }
        let (scheduled, pending): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(j, _)| j.request.deliver_at.is_some_and(|at| at > ts));
        for (job, conversation) in scheduled {
            self.hold(job, conversation, ts).await;
        }
        let mut admitted_jobs = Vec::with_capacity(pending.len());
        let mut admissions = Vec::with_capacity(pending.len());
        for (job, conversation) in pending {
            admissions.push(self.admission(&job, conversation, ts));
            admitted_jobs.push(job);
        }
        if admissions.is_empty() {
            return;
        }
        let messages: Vec<Message> = if self.ports.hooks.is_empty() {
            Vec::new()
        } else {
            admissions
                .iter()
                .map(|a| a.envelope.message.clone())
                .collect()
        };
        match self
            .ports
            .pipeline
            .admit(admissions, self.config.dedup_ttl)
            .await
        {
            Ok(results) => {
                let mut accepted = 0u64;
                let mut fresh = Vec::new();
                for (i, (job, r)) in admitted_jobs.into_iter().zip(results).enumerate() {
                    match &r {
                        Ok(crate::ports::Admitted::New(ack)) => {
                            accepted += 1;
                            if let Some(m) = messages.get(i) {
                                let mut m = m.clone();
                                m.seq = ack.seq;
                                fresh.push(m);
                            }
                        }
                        Ok(crate::ports::Admitted::Duplicate(_)) => {
                            metrics::counter!("im_send_duplicates_total").increment(1)
                        }
                        Err(e) => {
                            metrics::counter!("im_send_failures_total", "code" => e.code().as_str())
                                .increment(1)
                        }
                    }
                    let _ = job.reply.send(r.map(|a| a.ack().clone()));
                }
                metrics::counter!("im_messages_accepted_total").increment(accepted);
                if !fresh.is_empty() {
                    let hooks = self.ports.hooks.clone();
                    // After the acks, off the send path.
                    tokio::spawn(async move {
                        for h in hooks {
                            h.after_send(&fresh).await;
                        }
                    });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "send batch failed");
                metrics::counter!("im_send_failures_total", "code" => e.code().as_str())
                    .increment(admitted_jobs.len() as u64);
                for job in admitted_jobs {
                    let _ = job.reply.send(Err(clone_err(&e)));
                }
            }
        }
    }

    /// Runs the before-hooks in order over the client sends of a batch
    /// (system messages skip them); refused sends are answered here.
    async fn run_before_hooks(
        &self,
        mut pending: Vec<(SendJob, ConversationId)>,
    ) -> Vec<(SendJob, ConversationId)> {
        for hook in &self.ports.hooks {
            let (system, client): (Vec<_>, Vec<_>) =
                pending.into_iter().partition(|(j, _)| j.system.is_some());
            pending = system;
            if client.is_empty() {
                continue;
            }
            let batch: Vec<PendingSend> = client
                .iter()
                .map(|(j, c)| PendingSend {
                    from: j.sender.user,
                    to: j.request.to,
                    conversation_id: *c,
                    kind: j.request.kind,
                    body: j.request.body.clone(),
                    client_msg_id: j.request.client_msg_id.clone(),
                })
                .collect();
            let verdicts = match hook.before_send(&batch).await {
                Ok(v) if v.len() == batch.len() => Ok(v),
                Ok(v) => Err(Error::Internal(format!(
                    "a send hook answered {} verdicts for {} sends",
                    v.len(),
                    batch.len()
                ))),
                Err(e) => Err(e),
            };
            let verdicts = match verdicts {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "a send hook failed; refusing its batch");
                    let refused = client
                        .into_iter()
                        .map(|(job, _)| (job, clone_err(&e)))
                        .collect();
                    self.refuse(refused).await;
                    continue;
                }
            };
            let mut refused = Vec::new();
            for ((mut job, c), verdict) in client.into_iter().zip(verdicts) {
                match verdict {
                    HookVerdict::Allow => pending.push((job, c)),
                    HookVerdict::Reject(reason) => {
                        metrics::counter!("im_send_rejected_by_hook_total").increment(1);
                        refused.push((job, Error::PermissionDenied(reason)));
                    }
                    HookVerdict::Rewrite(body) => {
                        job.request.body = body;
                        match self.check_shape(job.sender.user, &job.request) {
                            Ok(()) => pending.push((job, c)),
                            Err(e) => refused.push((job, e)),
                        }
                    }
                }
            }
            self.refuse(refused).await;
        }
        pending
    }

    /// Holds a scheduled send until its time and acks it with seq 0 (a retry
    /// gets the ack of the send first held under its key).
    async fn hold(&self, job: SendJob, conversation: ConversationId, ts: i64) {
        let Some(deliver_at) = job.request.deliver_at else {
            return;
        };
        let mut envelope = self.admission(&job, conversation, ts).envelope;
        // Every session of the sender gets it when it is delivered.
        envelope.origin = None;
        let send = ScheduledSend {
            envelope,
            deliver_at,
        };
        let held = match self
            .ports
            .schedules
            .hold(&send, self.config.dedup_ttl)
            .await
        {
            Ok(earlier) => Ok(earlier.unwrap_or(send)),
            Err(e) => Err(e),
        };
        let reply = held.map(|s| {
            metrics::counter!("im_messages_scheduled_total").increment(1);
            let m = &s.envelope.message;
            SendAck {
                client_msg_id: m.client_msg_id.clone(),
                msg_id: m.msg_id,
                conversation_id: m.conversation_id,
                seq: 0,
                ts: s.deliver_at,
                deliver_at: Some(s.deliver_at),
            }
        });
        let _ = job.reply.send(reply);
    }

    fn admission(&self, job: &SendJob, conversation: ConversationId, ts: i64) -> Admission {
        let r = &job.request;
        Admission {
            key: DedupKey::of_send(job.sender.user, &r.client_msg_id),
            envelope: Envelope {
                message: Message {
                    msg_id: MessageId(self.next_id()),
                    conversation_id: conversation,
                    seq: 0,
                    from: job.sender.user,
                    to: r.to,
                    kind: r.kind,
                    body: r.body.clone(),
                    client_msg_id: r.client_msg_id.clone(),
                    ts,
                    recalled: false,
                    edited_at: None,
                    mentions: r.mentions.clone(),
                },
                origin: job.sender.origin.clone(),
                audience: job.system.clone().flatten(),
            },
        }
    }
}

/// Answers each caller of a failed batch with an equivalent error.
pub(crate) fn clone_err(e: &Error) -> Error {
    e.duplicate()
}

/// The batcher loop: drains the queue into batches until Logic is dropped.
pub(super) async fn run_batcher(logic: Weak<Logic>, mut rx: mpsc::Receiver<SendJob>) {
    let mut buf = Vec::new();
    loop {
        let max = match logic.upgrade() {
            Some(l) => l.config.max_batch,
            None => return,
        };
        if rx.recv_many(&mut buf, max).await == 0 {
            return;
        }
        let Some(logic) = logic.upgrade() else {
            return;
        };
        let batch = std::mem::take(&mut buf);
        process_batch(&logic, batch).await;
    }
}

async fn process_batch(logic: &Arc<Logic>, batch: Vec<SendJob>) {
    logic.process(batch).await;
}
