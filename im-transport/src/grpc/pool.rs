//! [`LogicPool`]: a [`LogicApi`] over every live Logic instance of a
//! discovery watch, for API and Connect processes in a cluster.
//!
//! - One lazily connected [`LogicGrpcClient`] per live instance, created and
//!   dropped as the watched set changes.
//! - Calls go round-robin to the instances whose circuit breaker admits them.
//! - A breaker opens after [`BreakerConfig::failure_threshold`] consecutive
//!   retryable failures ([`Error::is_retryable`]), stays open for
//!   [`BreakerConfig::open_for`], then lets one probe call through
//!   (half-open): its success closes the breaker, its failure re-opens it.
//! - Calls that are safe to repeat (reads, logins, session routing, sends,
//!   which Logic deduplicates by `(sender, client_msg_id)`, read cursors,
//!   recalls, presence subscriptions, scheduled-send listings and cancels)
//!   are retried once on another instance after a retryable failure. Calls
//!   that are not idempotent (`register`, `create_group`, `add_member`,
//!   `remove_member`, `administer_group`, `typing`) are retried only when
//!   the connection was refused, which proves the request never reached the
//!   server.
//!
//! Metrics: `im_rpc_errors_total{peer}` counts failed calls per instance
//! (the retryable failures that count against its breaker) and the gauge
//! `im_logic_breakers_open` the instances whose breaker is not closed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use im_core::error::{Error, Result};
use im_core::id::{ConversationId, GroupId, MessageId, SessionId, UserId};
use im_core::logic::{ConversationPage, GroupCommand, LogicApi, Login, Page, Sender};
use im_core::model::{Group, Member as GroupMember, NodeId, Presence, SessionRoute, Target};
use im_core::ports::{Identity, ScheduledSend, ServiceInstance};
use im_core::protocol::{SendAck, SendRequest};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::client::{GrpcClientConfig, LogicGrpcClient};

/// The message of the [`Error::Unavailable`] answered when no instance can
/// take a call (none is live, or every breaker is open).
pub const NO_INSTANCE: &str = "no logic instance available";

/// Circuit breaker settings of a [`LogicPool`].
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive retryable failures that open an instance's breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before letting a probe through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(2),
        }
    }
}

/// The state of an instance's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// The cool-down ended: one probe call decides whether it closes.
    HalfOpen,
}

/// One live instance as the pool sees it (see [`LogicPool::instances`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// The instance id in discovery.
    pub id: String,
    /// Its LogicRpc address.
    pub addr: String,
    /// Its breaker's state.
    pub state: BreakerState,
    /// Retryable failures in a row (reset by a success).
    pub consecutive_failures: u32,
    /// Calls sent to it since it joined the pool.
    pub calls: u64,
    /// Of those, the ones that failed with a retryable error.
    pub failures: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// How a call was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Normal,
    Probe,
}

/// The state machine of one breaker; time is passed in so it can be tested.
#[derive(Debug)]
struct Breaker {
    state: State,
    failures: u32,
}

impl Breaker {
    fn new() -> Self {
        Breaker {
            state: State::Closed,
            failures: 0,
        }
    }

    fn public_state(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go now, and as what.
    fn admit(&mut self, now: Instant) -> Option<Admit> {
        match self.state {
            State::Closed => Some(Admit::Normal),
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probing: true };
                Some(Admit::Probe)
            }
            State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Some(Admit::Probe)
            }
            State::Open { .. } | State::HalfOpen { probing: true } => None,
        }
    }

    /// The instance answered (or failed in a way that is not its fault).
    /// Only a probe closes a breaker that is not closed: a late answer of a
    /// call let through before it opened says nothing about now.
    fn on_success(&mut self, admit: Admit) {
        match (self.state, admit) {
            (State::Closed, _) | (State::HalfOpen { .. }, Admit::Probe) => {
                self.state = State::Closed;
                self.failures = 0;
            }
            _ => {}
        }
    }

    /// The call failed with a retryable error.
    fn on_failure(&mut self, admit: Admit, now: Instant, config: &BreakerConfig) {
        match (self.state, admit) {
            (State::Closed, _) => {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= config.failure_threshold.max(1) {
                    self.state = State::Open {
                        until: now + config.open_for,
                    };
                }
            }
            (State::HalfOpen { .. }, Admit::Probe) => {
                self.failures = self.failures.saturating_add(1);
                self.state = State::Open {
                    until: now + config.open_for,
                };
            }
            _ => {}
        }
    }

    /// The call was dropped before it finished: let another probe go.
    fn on_abandon(&mut self, admit: Admit) {
        if admit == Admit::Probe && self.state == (State::HalfOpen { probing: true }) {
            self.state = State::HalfOpen { probing: false };
        }
    }
}

/// One live instance with its client and breaker.
#[derive(Debug)]
struct Member {
    id: String,
    addr: String,
    client: LogicGrpcClient,
    breaker: Mutex<Breaker>,
    calls: AtomicU64,
    failures: AtomicU64,
}

impl Member {
    fn status(&self) -> InstanceStatus {
        let breaker = self.breaker.lock();
        InstanceStatus {
            id: self.id.clone(),
            addr: self.addr.clone(),
            state: breaker.public_state(),
            consecutive_failures: breaker.failures,
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

struct PoolInner {
    /// The pool's view of the watch: what has been applied to `members`.
    watch: Mutex<watch::Receiver<Vec<ServiceInstance>>>,
    /// The live members, sorted as discovery sorts them (by id).
    members: RwLock<Arc<Vec<Arc<Member>>>>,
    config: GrpcClientConfig,
    breaker: BreakerConfig,
    next: AtomicUsize,
    /// Stops the watching task when the last clone of the pool is dropped.
    _stop: DropGuard,
}

impl PoolInner {
    /// Applies the watched set if it changed since last applied.
    fn refresh(&self) {
        let mut watch = self.watch.lock();
        // A closed watch keeps its last set in force.
        if !watch.has_changed().unwrap_or(false) {
            return;
        }
        let live = watch.borrow_and_update().clone();
        self.apply(&live);
    }

    /// Makes `members` follow `live`: keeps members whose id and address are
    /// unchanged (with their breaker), creates the others, drops the rest.
    fn apply(&self, live: &[ServiceInstance]) {
        let mut members = self.members.write();
        let old: HashMap<&str, &Arc<Member>> = members.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut next: Vec<Arc<Member>> = Vec::with_capacity(live.len());
        for instance in live {
            if next.iter().any(|m| m.id == instance.id) {
                continue;
            }
            if let Some(member) = old.get(instance.id.as_str()) {
                if member.addr == instance.addr {
                    next.push(Arc::clone(member));
                    continue;
                }
            }
            match LogicGrpcClient::new(&instance.addr, self.config.clone()) {
                Ok(client) => {
                    tracing::info!(id = %instance.id, addr = %instance.addr, "logic instance joined the pool");
                    next.push(Arc::new(Member {
                        id: instance.id.clone(),
                        addr: instance.addr.clone(),
                        client,
                        breaker: Mutex::new(Breaker::new()),
                        calls: AtomicU64::new(0),
                        failures: AtomicU64::new(0),
                    }));
                }
                Err(e) => {
                    tracing::warn!(id = %instance.id, addr = %instance.addr, error = %e, "skipping logic instance with a bad address");
                }
            }
        }
        for gone in members
            .iter()
            .filter(|m| !next.iter().any(|n| Arc::ptr_eq(n, m)))
        {
            tracing::info!(id = %gone.id, addr = %gone.addr, "logic instance left the pool");
        }
        *members = Arc::new(next);
        let open = open_count(&members);
        drop(members);
        metrics::gauge!("im_logic_breakers_open").set(open as f64);
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Member>>> {
        Arc::clone(&self.members.read())
    }

    /// The next instance (round-robin) whose breaker admits a call, skipping
    /// `exclude`.
    fn pick(&self, exclude: Option<&str>) -> Result<Permit<'_>> {
        self.refresh();
        let members = self.snapshot();
        let n = members.len();
        if n > 0 {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            for i in 0..n {
                let Some(member) = members.get((start + i) % n) else {
                    continue;
                };
                if exclude == Some(member.id.as_str()) {
                    continue;
                }
                let admit = member.breaker.lock().admit(now);
                if let Some(admit) = admit {
                    member.calls.fetch_add(1, Ordering::Relaxed);
                    return Ok(Permit {
                        pool: self,
                        member: Arc::clone(member),
                        admit,
                        settled: false,
                    });
                }
            }
        }
        Err(Error::unavailable_msg(NO_INSTANCE))
    }

    fn publish_open(&self) {
        let open = open_count(&self.snapshot());
        metrics::gauge!("im_logic_breakers_open").set(open as f64);
    }
}

fn open_count(members: &[Arc<Member>]) -> usize {
    members
        .iter()
        .filter(|m| m.breaker.lock().public_state() != BreakerState::Closed)
        .count()
}

/// A call let through by a breaker; settles the breaker with the outcome
/// (or releases a probe if the call is dropped unfinished).
struct Permit<'a> {
    pool: &'a PoolInner,
    member: Arc<Member>,
    admit: Admit,
    settled: bool,
}

impl Permit<'_> {
    fn client(&self) -> LogicGrpcClient {
        self.member.client.clone()
    }

    fn id(&self) -> &str {
        &self.member.id
    }

    /// Records the outcome: `failed` is true for a retryable failure.
    fn settle(mut self, failed: bool) {
        self.settled = true;
        let changed = {
            let mut breaker = self.member.breaker.lock();
            let before = breaker.public_state();
            if failed {
                breaker.on_failure(self.admit, Instant::now(), &self.pool.breaker);
            } else {
                breaker.on_success(self.admit);
            }
            let after = breaker.public_state();
            if after == BreakerState::Open && before != BreakerState::Open {
                tracing::warn!(id = %self.member.id, addr = %self.member.addr, failures = breaker.failures, "logic instance circuit opened");
            } else if after == BreakerState::Closed && before != BreakerState::Closed {
                tracing::info!(id = %self.member.id, "logic instance circuit closed");
            }
            before != after
        };
        if failed {
            self.member.failures.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("im_rpc_errors_total", "peer" => self.member.id.clone()).increment(1);
        }
        if changed {
            self.pool.publish_open();
        }
    }

    /// Retryable failures (unavailable, deadline passed) count against the
    /// breaker: a hung instance only ever times out. Under overload every
    /// instance may time out too; sends reach Logic in batches
    /// (`CoalescingLogic`), which keeps RPCs few and far from the deadline.
    fn settle_result<T>(self, result: &Result<T>) {
        let failed = matches!(result, Err(e) if e.is_retryable());
        self.settle(failed);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.member.breaker.lock().on_abandon(self.admit);
        }
    }
}

/// Whether a failed call may be sent again to another instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Safe to repeat: retry after any retryable failure.
    Idempotent,
    /// Not safe to repeat: retry only when the request never left.
    NotIdempotent,
}

impl Retry {
    fn allows(self, e: &Error) -> bool {
        match self {
            Retry::Idempotent => e.is_retryable(),
            Retry::NotIdempotent => e.is_retryable() && never_sent(e),
        }
    }
}

/// Whether an error proves the request never reached a server: the
/// connection to it was refused.
fn never_sent(e: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// [`LogicApi`] over the live Logic instances of a discovery watch: what
/// API and Connect processes use to reach Logic in a cluster. Cheap to clone.
///
/// - One lazily connected [`LogicGrpcClient`] per live instance, created and
///   dropped as the watched set changes.
/// - Calls go round-robin to the instances whose circuit breaker admits
///   them. A breaker opens after [`BreakerConfig::failure_threshold`]
///   consecutive retryable failures ([`Error::is_retryable`]), refuses calls
///   for [`BreakerConfig::open_for`], then lets one probe through: its
///   success closes the breaker, its failure re-opens it.
/// - `verify_token`, `login`, `sync`, `members`, `group`, the session calls,
///   `send` and `send_batch` (Logic deduplicates sends by `(sender,
///   client_msg_id)`), `mark_read` (a cursor only moves forward), `recall`
///   (recalling again is a no-op), `conversations`, `presence`,
///   `subscribe_presence`, `scheduled` and `cancel_scheduled` (a repeated
///   cancel of a send the first attempt cancelled answers `not_found`) are
///   retried once on another instance after a retryable failure; `send_batch` retries only its items that failed
///   retryably. `register`, `create_group`, `add_member`, `remove_member`,
///   `administer_group` and `typing` are not idempotent: they are retried
///   only when the connection was refused, which proves the request never
///   reached a server.
/// - With no instance able to take a call it answers
///   [`Error::Unavailable`] ([`NO_INSTANCE`]); the per-call deadline is
///   [`GrpcClientConfig::request_timeout`].
/// - Metrics: `im_rpc_errors_total{peer}` counts each call that failed
///   retryably on an instance (application errors such as `not_found` are
///   answers, not RPC errors), and the gauge `im_logic_breakers_open` the
///   instances whose breaker is not closed.
#[derive(Clone)]
pub struct LogicPool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for LogicPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicPool")
            .field("config", &self.inner.config)
            .field("breaker", &self.inner.breaker)
            .field("instances", &self.instances())
            .finish()
    }
}

impl LogicPool {
    /// A pool over the live set of `instances` (e.g. from
    /// `Discovery::watch("logic")`) with the default [`BreakerConfig`].
    /// Spawns a task following the set until the pool is dropped, so it
    /// needs a Tokio runtime.
    pub fn new(instances: watch::Receiver<Vec<ServiceInstance>>, config: GrpcClientConfig) -> Self {
        Self::with_breaker(instances, config, BreakerConfig::default())
    }

    /// A pool with its own breaker settings (see [`LogicPool::new`]).
    pub fn with_breaker(
        instances: watch::Receiver<Vec<ServiceInstance>>,
        config: GrpcClientConfig,
        breaker: BreakerConfig,
    ) -> Self {
        let stop = CancellationToken::new();
        let mut own = instances.clone();
        let initial = own.borrow_and_update().clone();
        let inner = Arc::new(PoolInner {
            watch: Mutex::new(own),
            members: RwLock::new(Arc::new(Vec::new())),
            config,
            breaker,
            next: AtomicUsize::new(0),
            _stop: stop.clone().drop_guard(),
        });
        inner.apply(&initial);
        tokio::spawn(follow(Arc::downgrade(&inner), instances, stop));
        LogicPool { inner }
    }

    /// The instances in the pool with their breaker state, sorted by id.
    ///
    /// This is the set as last applied: the pool follows the watch in the
    /// background and also catches up at the start of every call.
    pub fn instances(&self) -> Vec<InstanceStatus> {
        let mut out: Vec<InstanceStatus> =
            self.inner.snapshot().iter().map(|m| m.status()).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Runs `f` on one instance; on a failure `retry` allows, runs it once
    /// more on another instance.
    async fn call<T, F, Fut>(&self, retry: Retry, f: F) -> Result<T>
    where
        F: Fn(LogicGrpcClient) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let first = self.inner.pick(None)?;
        let first_id = first.id().to_owned();
        let result = f(first.client()).await;
        first.settle_result(&result);
        let err = match result {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !retry.allows(&err) {
            return Err(err);
        }
        let Ok(second) = self.inner.pick(Some(&first_id)) else {
            return Err(err);
        };
        tracing::debug!(from = %first_id, to = %second.id(), error = %err, "retrying logic call on another instance");
        let result = f(second.client()).await;
        second.settle_result(&result);
        result
    }
}

/// Follows the watch until the pool is dropped or the watch ends.
async fn follow(
    inner: Weak<PoolInner>,
    mut instances: watch::Receiver<Vec<ServiceInstance>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = instances.changed() => {
                if changed.is_err() {
                    // The watch ended: the last set stays in force.
                    return;
                }
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        inner.refresh();
    }
}

/// Whether a batch failed as a whole for breaker purposes: some item failed
/// with a retryable error and none succeeded.
fn batch_failed(results: &[Result<SendAck>]) -> bool {
    results.iter().all(Result::is_err)
        && results
            .iter()
            .any(|r| matches!(r, Err(e) if e.is_retryable()))
}

#[async_trait]
impl LogicApi for LogicPool {
    async fn register(&self, username: &str, password: &str) -> Result<UserId> {
        self.call(Retry::NotIdempotent, |c| async move {
            c.register(username, password).await
        })
        .await
    }

    async fn login(&self, username: &str, password: &str) -> Result<Login> {
        self.call(Retry::Idempotent, |c| async move {
            c.login(username, password).await
        })
        .await
    }

    async fn verify_token(&self, token: &str) -> Result<Identity> {
        self.call(
            Retry::Idempotent,
            |c| async move { c.verify_token(token).await },
        )
        .await
    }

    async fn logout(&self, token: &str) -> Result<()> {
        // Idempotent: logging a revoked token out again is a no-op.
        self.call(Retry::Idempotent, |c| async move { c.logout(token).await })
            .await
    }

    async fn connect_session(&self, route: SessionRoute) -> Result<()> {
        self.call(Retry::Idempotent, |c| {
            let route = route.clone();
            async move { c.connect_session(route).await }
        })
        .await
    }

    async fn refresh_sessions(&self, routes: Vec<SessionRoute>) -> Result<()> {
        self.call(Retry::Idempotent, |c| {
            let routes = routes.clone();
            async move { c.refresh_sessions(routes).await }
        })
        .await
    }

    async fn disconnect_session(&self, route: SessionRoute) -> Result<()> {
        self.call(Retry::Idempotent, |c| {
            let route = route.clone();
            async move { c.disconnect_session(route).await }
        })
        .await
    }

    async fn send(&self, sender: Sender, request: SendRequest) -> Result<SendAck> {
        self.call(Retry::Idempotent, |c| {
            let (sender, request) = (sender.clone(), request.clone());
            async move { c.send(sender, request).await }
        })
        .await
    }

    async fn send_batch(&self, sends: Vec<(Sender, SendRequest)>) -> Vec<Result<SendAck>> {
        if sends.is_empty() {
            return Vec::new();
        }
        let first = match self.inner.pick(None) {
            Ok(p) => p,
            Err(_) => {
                return sends
                    .iter()
                    .map(|_| Err(Error::unavailable_msg(NO_INSTANCE)))
                    .collect()
            }
        };
        let first_id = first.id().to_owned();
        let mut results = first.client().send_batch(sends.clone()).await;
        first.settle(batch_failed(&results));
        // Sends are idempotent: the items that failed retryably go again.
        let again: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Err(e) if e.is_retryable()))
            .map(|(i, _)| i)
            .collect();
        if again.is_empty() {
            return results;
        }
        let Ok(second) = self.inner.pick(Some(&first_id)) else {
            return results;
        };
        let retried: Vec<(Sender, SendRequest)> = again
            .iter()
            .filter_map(|&i| sends.get(i).cloned())
            .collect();
        let answers = second.client().send_batch(retried).await;
        second.settle(batch_failed(&answers));
        for (i, answer) in again.into_iter().zip(answers) {
            if let Some(slot) = results.get_mut(i) {
                *slot = answer;
            }
        }
        results
    }

    async fn sync(
        &self,
        user: UserId,
        conversation: ConversationId,
        after_seq: u64,
        limit: Option<u32>,
    ) -> Result<Page> {
        self.call(Retry::Idempotent, |c| async move {
            c.sync(user, conversation, after_seq, limit).await
        })
        .await
    }

    async fn create_group(&self, actor: UserId, name: &str) -> Result<GroupId> {
        self.call(Retry::NotIdempotent, |c| async move {
            c.create_group(actor, name).await
        })
        .await
    }

    async fn add_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()> {
        self.call(Retry::NotIdempotent, |c| async move {
            c.add_member(actor, group, user).await
        })
        .await
    }

    async fn remove_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()> {
        self.call(Retry::NotIdempotent, |c| async move {
            c.remove_member(actor, group, user).await
        })
        .await
    }

    async fn members(&self, actor: UserId, group: GroupId) -> Result<Vec<GroupMember>> {
        self.call(Retry::Idempotent, |c| async move {
            c.members(actor, group).await
        })
        .await
    }

    async fn group(&self, actor: UserId, group: GroupId) -> Result<Group> {
        self.call(
            Retry::Idempotent,
            |c| async move { c.group(actor, group).await },
        )
        .await
    }

    async fn administer_group(
        &self,
        actor: UserId,
        group: GroupId,
        command: GroupCommand,
    ) -> Result<()> {
        // Not idempotent: a repeated change would be announced twice.
        self.call(Retry::NotIdempotent, |c| {
            let command = command.clone();
            async move { c.administer_group(actor, group, command).await }
        })
        .await
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
        origin: Option<(NodeId, SessionId)>,
    ) -> Result<()> {
        // A cursor only moves forward: marking again is a no-op.
        self.call(Retry::Idempotent, |c| {
            let origin = origin.clone();
            async move { c.mark_read(user, conversation, seq, origin).await }
        })
        .await
    }

    async fn recall(&self, actor: UserId, msg_id: MessageId) -> Result<()> {
        // Recalling again is a no-op.
        self.call(Retry::Idempotent, |c| async move {
            c.recall(actor, msg_id).await
        })
        .await
    }

    async fn typing(&self, user: UserId, to: Target) -> Result<()> {
        // Not idempotent (a repeat relays the indicator twice), and not worth
        // a retry either.
        self.call(
            Retry::NotIdempotent,
            |c| async move { c.typing(user, to).await },
        )
        .await
    }

    async fn conversations(
        &self,
        user: UserId,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<ConversationPage> {
        self.call(Retry::Idempotent, |c| {
            let cursor = cursor.clone();
            async move { c.conversations(user, cursor, limit).await }
        })
        .await
    }

    async fn presence(&self, users: Vec<UserId>) -> Result<Vec<Presence>> {
        self.call(Retry::Idempotent, |c| {
            let users = users.clone();
            async move { c.presence(users).await }
        })
        .await
    }

    async fn subscribe_presence(
        &self,
        subscriber: UserId,
        users: Vec<UserId>,
    ) -> Result<Vec<Presence>> {
        // Subscribing again only extends the subscription.
        self.call(Retry::Idempotent, |c| {
            let users = users.clone();
            async move { c.subscribe_presence(subscriber, users).await }
        })
        .await
    }

    async fn cancel_scheduled(&self, user: UserId, msg_id: MessageId) -> Result<()> {
        // Cancelling again changes nothing (it answers `not_found` if the
        // first attempt cancelled it).
        self.call(Retry::Idempotent, |c| async move {
            c.cancel_scheduled(user, msg_id).await
        })
        .await
    }

    async fn scheduled(&self, user: UserId) -> Result<Vec<ScheduledSend>> {
        self.call(
            Retry::Idempotent,
            |c| async move { c.scheduled(user).await },
        )
        .await
    }

    async fn execute(
        &self,
        actor: UserId,
        command: im_core::logic::Command,
    ) -> Result<im_core::logic::Reply> {
        use im_core::logic::Command as C;
        // Reads and idempotent changes may be retried elsewhere; a contact
        // request or answer, and an edit (its event), only if never sent.
        let retry = match &command {
            C::RequestContact { .. }
            | C::RespondContact { .. }
            | C::CancelContactRequest { .. }
            | C::RemoveContact { .. }
            | C::Edit { .. } => Retry::NotIdempotent,
            _ => Retry::Idempotent,
        };
        self.call(retry, |c| {
            let command = command.clone();
            async move { c.execute(actor, command).await }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(2),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (c, t0) = (config(), Instant::now());
        let mut b = Breaker::new();
        for _ in 0..2 {
            let a = b.admit(t0).unwrap();
            b.on_failure(a, t0, &c);
        }
        // A success in between resets the count.
        let a = b.admit(t0).unwrap();
        b.on_success(a);
        assert_eq!(b.failures, 0);
        for _ in 0..2 {
            let a = b.admit(t0).unwrap();
            b.on_failure(a, t0, &c);
        }
        assert_eq!(b.public_state(), BreakerState::Closed);
        let a = b.admit(t0).unwrap();
        b.on_failure(a, t0, &c);
        assert_eq!(b.public_state(), BreakerState::Open);
        assert_eq!(b.admit(t0 + Duration::from_millis(1999)), None);
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let (c, t0) = (config(), Instant::now());
        let mut b = Breaker::new();
        for _ in 0..3 {
            let a = b.admit(t0).unwrap();
            b.on_failure(a, t0, &c);
        }
        // A late call let through before opening changes nothing.
        b.on_success(Admit::Normal);
        assert_eq!(b.public_state(), BreakerState::Open);

        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(b.admit(t1), Some(Admit::Probe));
        assert_eq!(b.public_state(), BreakerState::HalfOpen);
        assert_eq!(b.admit(t1), None, "one probe at a time");
        // The probe fails: open again for a full cool-down.
        b.on_failure(Admit::Probe, t1, &c);
        assert_eq!(b.public_state(), BreakerState::Open);
        assert_eq!(b.admit(t1 + Duration::from_millis(1999)), None);

        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(b.admit(t2), Some(Admit::Probe));
        // An abandoned probe lets the next call probe.
        b.on_abandon(Admit::Probe);
        assert_eq!(b.admit(t2), Some(Admit::Probe));
        b.on_success(Admit::Probe);
        assert_eq!(b.public_state(), BreakerState::Closed);
        assert_eq!(b.failures, 0);
        assert_eq!(b.admit(t2), Some(Admit::Normal));
    }

    #[test]
    fn only_refused_connections_retry_non_idempotent_calls() {
        let refused = Error::unavailable(
            "rpc failed",
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        let reset = Error::unavailable(
            "rpc failed",
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        );
        let timeout = Error::Timeout("deadline".into());
        let conflict = Error::Conflict("taken".into());
        assert!(Retry::NotIdempotent.allows(&refused));
        assert!(!Retry::NotIdempotent.allows(&reset));
        assert!(!Retry::NotIdempotent.allows(&timeout));
        assert!(!Retry::NotIdempotent.allows(&conflict));
        assert!(Retry::Idempotent.allows(&refused));
        assert!(Retry::Idempotent.allows(&reset));
        assert!(Retry::Idempotent.allows(&timeout));
        assert!(!Retry::Idempotent.allows(&conflict));
    }
}
