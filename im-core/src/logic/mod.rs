//! The Logic layer: accounts and tokens, sessions, the send path (validate,
//! authorize, dedup, seq, enqueue, ack), sync/history, and groups.
//!
//! [`Logic`] holds the business rules and talks only to ports. [`LogicApi`] is
//! its interface as the API and Connect layers see it: implemented by
//! [`Logic`] in one process and by a gRPC client in a cluster.

mod accounts;
mod attachments;
mod coalesce;
mod conversations;
mod events;
mod groups;
mod people;
mod reach;
mod send;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::id::{ConversationId, GroupId, MessageId, SessionId, Snowflake, UserId};
use crate::model::{Group, Member, Message, NodeId, Presence, SessionRoute, Target};
use crate::ports::{
    Authenticator, ConversationEntry, ConversationStore, GroupStore, Identity, MessageQueue,
    MessageStore, ScheduledSend, SendPipeline, SessionStore, UserStore,
};
use crate::protocol::{SendAck, SendRequest};

pub use accounts::{validate_password, validate_username, LOGGED_OUT};
pub use coalesce::CoalescingLogic;
pub use groups::GroupCommand;
pub use people::{validate_display_name, Command, ContactView, ReadCursor, Reply, RequestView};
pub use send::SendJob;

/// Limits and timings of the Logic layer.
#[derive(Debug, Clone)]
pub struct LogicConfig {
    /// Largest body in bytes (UTF-8 of a text body, compact JSON otherwise).
    pub max_body_bytes: usize,
    /// Longest `client_msg_id`.
    pub max_client_msg_id: usize,
    /// How long a send's idempotency key is remembered.
    pub dedup_ttl: Duration,
    /// TTL of a session route; connect nodes refresh well within it.
    pub session_ttl: Duration,
    /// Most sends admitted in one batch (one pipeline round trip).
    pub max_batch: usize,
    /// Send batchers working in parallel. Sends are spread over them by
    /// conversation, so one conversation's sends stay in order while several
    /// batches (pipeline round trips) are in flight.
    pub batchers: usize,
    /// Default and largest page of history/sync.
    pub default_page: u32,
    /// Largest page of history/sync (larger asks are clamped).
    pub max_page: u32,
    /// Byte budget of one page of history/sync (its messages' JSON); a page
    /// holds at least one message and stops before passing it, with
    /// `has_more` set. Keeps a `sync_result` under the WebSocket frame limit.
    pub max_page_bytes: usize,
    /// Snowflake worker id of this Logic instance (0..=1023), unique per instance.
    pub worker_id: u16,
    /// How long after sending a message may be recalled (group owners and
    /// admins are bound by it too).
    pub recall_window: Duration,
    /// What happens to a user's older sessions of the same device label when a
    /// new one connects; labels not listed allow many sessions.
    pub device_policies: std::collections::HashMap<String, DevicePolicy>,
    /// How long a presence subscription lasts.
    pub presence_ttl: Duration,
    /// Most users one presence request or subscription may name.
    pub max_presence_users: usize,
    /// Default page of the conversation list.
    pub default_conversations_page: u32,
    /// Largest page of the conversation list.
    pub max_conversations_page: u32,
    /// How far ahead a send may be scheduled (`deliver_at`).
    pub schedule_horizon: Duration,
    /// How long a logged-out token stays revoked when its authenticator gives
    /// it no expiry (tokens with one stay revoked until they expire).
    pub revocation_ttl: Duration,
    /// Password hashes (argon2id, 19 MiB and tens of milliseconds each)
    /// computed at once; default: the number of cores. Bounds the memory a
    /// login or registration flood can take to this × 19 MiB.
    pub hash_concurrency: usize,
    /// Logins and registrations that may wait for a hashing slot; beyond it
    /// they are answered `unavailable` (503 with `Retry-After`) at once.
    /// Default: 32 per hashing slot.
    pub hash_queue: usize,
    /// Limits of attachments (used when [`LogicPorts::objects`] is set).
    pub attachments: crate::attachments::AttachmentPolicy,
    /// How long after sending its sender may edit a text message (v1.2).
    pub edit_window: Duration,
    /// Who may start or continue a 1:1 conversation (v1.2).
    pub direct_messages: DirectMessages,
    /// Default and largest page of contacts, requests and blocks.
    pub people_page: u32,
    /// Shortest username prefix a search accepts.
    pub search_min_prefix: usize,
    /// Largest page of a search.
    pub search_max_page: usize,
    /// Most results one search prefix reaches over all its pages: a search
    /// cannot list the user base.
    pub search_max_results: usize,
    /// Searches per user (token bucket on [`LogicPorts::throttle`]).
    pub search_rate: crate::ports::Rate,
    /// Most users one message may mention.
    pub max_mentions: usize,
    /// Most members whose read cursors one `reads` request returns.
    pub max_group_reads: usize,
    /// Check blocks (and [`DirectMessages::ContactsOnly`]) on 1:1 sends: one
    /// batched [`ContactStore::reach`](crate::ports::ContactStore::reach)
    /// per send batch. On by default; off only to measure what it costs.
    pub relation_checks: bool,
    /// How long an answer of the block/contacts check is reused for the same
    /// (sender, peer) pair. Changes made through this instance apply at
    /// once; changes made through another Logic instance within this time.
    /// Zero asks the store for every batch.
    pub relation_cache_ttl: Duration,
    /// Whether new groups show their history to members added later (v1.2;
    /// default `false`: the join cutoff). Each group can change it.
    pub new_groups_show_history: bool,
}

/// Who may send a 1:1 message to whom (v1.2 deployment policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectMessages {
    /// Anyone not blocked by the recipient (the default).
    #[default]
    Anyone,
    /// Contacts only.
    ContactsOnly,
}

/// The number of cores (what [`LogicConfig::hash_concurrency`] defaults to).
pub fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// The multi-device policy of one device label (platform).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DevicePolicy {
    /// Any number of sessions of this label stay connected together.
    #[default]
    Many,
    /// A new session replaces the user's older sessions of this label: they
    /// receive a `kicked` frame and are closed with 4001.
    Single,
}

impl Default for LogicConfig {
    fn default() -> Self {
        LogicConfig {
            max_body_bytes: 16_384,
            max_client_msg_id: 128,
            dedup_ttl: Duration::from_secs(600),
            session_ttl: Duration::from_secs(90),
            max_batch: 512,
            batchers: 4,
            default_page: 50,
            max_page: 100,
            max_page_bytes: 512 * 1024,
            worker_id: 0,
            recall_window: Duration::from_secs(120),
            device_policies: std::collections::HashMap::new(),
            presence_ttl: Duration::from_secs(3600),
            max_presence_users: 200,
            default_conversations_page: 20,
            max_conversations_page: 100,
            schedule_horizon: Duration::from_secs(30 * 86_400),
            revocation_ttl: Duration::from_secs(30 * 86_400),
            hash_concurrency: default_hash_concurrency(),
            hash_queue: 32 * default_hash_concurrency(),
            attachments: crate::attachments::AttachmentPolicy::default(),
            edit_window: Duration::from_secs(86_400),
            direct_messages: DirectMessages::Anyone,
            people_page: 50,
            search_min_prefix: 2,
            search_max_page: 20,
            search_max_results: 100,
            search_rate: people::default_search_rate(),
            max_mentions: 50,
            max_group_reads: 500,
            relation_checks: true,
            relation_cache_ttl: Duration::from_secs(2),
            new_groups_show_history: false,
        }
    }
}

/// Who sends, as established by the transport (never taken from the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The authenticated user.
    pub user: UserId,
    /// The WebSocket session the send came from (it gets only the ack), or
    /// `None` for HTTP sends (all of the user's sessions get the message).
    pub origin: Option<(NodeId, SessionId)>,
    /// The transport's rate limit refused this send: Logic admits nothing
    /// and answers the original ack if it is the retry of an accepted send
    /// (PROTOCOL.md v1.2 "Retries first"), else `resource_exhausted`.
    pub throttled: bool,
}

impl Sender {
    /// A sender over HTTP.
    pub fn http(user: UserId) -> Self {
        Sender {
            user,
            origin: None,
            throttled: false,
        }
    }

    /// This sender, marked as refused by the transport's rate limit.
    pub fn throttled(mut self) -> Self {
        self.throttled = true;
        self
    }
}

/// A page of history.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Messages ordered by seq.
    pub messages: Vec<Message>,
    /// Whether more exist after the last one.
    pub has_more: bool,
}

/// A page of the conversation list.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationPage {
    /// Newest last message first.
    pub conversations: Vec<ConversationEntry>,
    /// Opaque cursor of the next page (`None` at the end).
    pub next_cursor: Option<String>,
}

/// The result of a password login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The user.
    pub user_id: UserId,
    /// Bearer token.
    pub token: String,
    /// Expiry, Unix milliseconds.
    pub expires_at: i64,
}

/// The Logic layer as its callers (API, Connect) see it.
#[async_trait]
pub trait LogicApi: Send + Sync + 'static {
    /// Creates an account.
    async fn register(&self, username: &str, password: &str) -> Result<UserId>;
    /// Checks a password and issues a token.
    async fn login(&self, username: &str, password: &str) -> Result<Login>;
    /// Verifies a bearer token (a revoked one is `unauthenticated`).
    async fn verify_token(&self, token: &str) -> Result<Identity>;
    /// Logs a token out: revokes it until its expiry and closes every live
    /// WebSocket opened with it, on any connect node (each gets a `kicked`
    /// frame and close code 4001); the user's sessions of other tokens stay.
    /// Logging out a revoked (but otherwise valid) token again is a no-op; an
    /// invalid or expired token is `unauthenticated`.
    async fn logout(&self, token: &str) -> Result<()>;
    /// Binds a new session's route.
    async fn connect_session(&self, route: SessionRoute) -> Result<()>;
    /// Heartbeat: refreshes the routes of live sessions.
    async fn refresh_sessions(&self, routes: Vec<SessionRoute>) -> Result<()>;
    /// Unbinds a closed session's route.
    async fn disconnect_session(&self, route: SessionRoute) -> Result<()>;
    /// Sends one message.
    async fn send(&self, sender: Sender, request: SendRequest) -> Result<SendAck>;
    /// Sends many messages (answers in the same order). Provided: every
    /// send at once through [`LogicApi::send`]; a remote implementation
    /// overrides it with one call per batch.
    async fn send_batch(&self, sends: Vec<(Sender, SendRequest)>) -> Vec<Result<SendAck>> {
        let waits: Vec<_> = sends.into_iter().map(|(s, r)| self.send(s, r)).collect();
        futures::future::join_all(waits).await
    }
    /// Messages of a conversation after a seq, for a participant.
    async fn sync(
        &self,
        user: UserId,
        conversation: ConversationId,
        after_seq: u64,
        limit: Option<u32>,
    ) -> Result<Page>;
    /// Creates a group owned by `actor`.
    async fn create_group(&self, actor: UserId, name: &str) -> Result<GroupId>;
    /// Adds a member (owner or admin only).
    async fn add_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()>;
    /// Removes a member (see the protocol's rules).
    async fn remove_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()>;
    /// Lists members (members only).
    async fn members(&self, actor: UserId, group: GroupId) -> Result<Vec<Member>>;
    /// A group's details (members only).
    async fn group(&self, actor: UserId, group: GroupId) -> Result<Group>;
    /// An administrative change to a group, authorized by the actor's role;
    /// each change is announced by a `system` message in the group.
    async fn administer_group(
        &self,
        actor: UserId,
        group: GroupId,
        command: GroupCommand,
    ) -> Result<()>;
    /// Moves the user's read cursor forward (a seq past the last is
    /// `invalid_argument`, a lower one a no-op) and tells the participants.
    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
        origin: Option<(NodeId, SessionId)>,
    ) -> Result<()>;
    /// Recalls a message (its sender, or a group owner or admin, within the
    /// recall window) and tells the participants; recalling again is a no-op.
    async fn recall(&self, actor: UserId, msg_id: MessageId) -> Result<()>;
    /// Relays an ephemeral typing indicator to the other participants.
    async fn typing(&self, user: UserId, to: Target) -> Result<()>;
    /// A page of the user's conversation list.
    async fn conversations(
        &self,
        user: UserId,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<ConversationPage>;
    /// Cancels one of the user's scheduled sends before its delivery
    /// (`not_found` when none such is held).
    async fn cancel_scheduled(&self, user: UserId, msg_id: MessageId) -> Result<()>;
    /// The user's scheduled sends not yet delivered, soonest first.
    async fn scheduled(&self, user: UserId) -> Result<Vec<ScheduledSend>>;
    /// Presence of users (unknown users are `not_found`).
    async fn presence(&self, users: Vec<UserId>) -> Result<Vec<Presence>>;
    /// Subscribes to presence changes of users and returns their presence now.
    async fn subscribe_presence(
        &self,
        subscriber: UserId,
        users: Vec<UserId>,
    ) -> Result<Vec<Presence>>;
    /// Runs one v1.2 people command (profiles, search, contacts, blocks,
    /// read cursors, edits) for `actor`.
    async fn execute(&self, actor: UserId, command: Command) -> Result<Reply>;
}

/// The ports Logic runs on.
#[derive(Clone)]
pub struct LogicPorts {
    /// Accounts.
    pub users: Arc<dyn UserStore>,
    /// Groups.
    pub groups: Arc<dyn GroupStore>,
    /// History.
    pub messages: Arc<dyn MessageStore>,
    /// Online routes.
    pub sessions: Arc<dyn SessionStore>,
    /// Dedup + seq + enqueue.
    pub pipeline: Arc<dyn SendPipeline>,
    /// The queue, for events (read, recalled, typing, presence, kick).
    pub queue: Arc<dyn MessageQueue>,
    /// Conversation lists and read cursors.
    pub conversations: Arc<dyn ConversationStore>,
    /// Contacts, contact requests and blocks (v1.2).
    pub contacts: Arc<dyn crate::ports::ContactStore>,
    /// Last seqs (a read cursor may not pass the last seq).
    pub sequences: Arc<dyn crate::ports::SequenceAllocator>,
    /// Scheduled sends, held until their `deliver_at`.
    pub schedules: Arc<dyn crate::ports::ScheduleStore>,
    /// Application hooks around the send path, run in order (none by default).
    pub hooks: Vec<Arc<dyn crate::ports::SendHook>>,
    /// Tokens.
    pub auth: Arc<dyn Authenticator>,
    /// Tokens logged out before their expiry.
    pub revocations: Arc<dyn crate::ports::TokenRevocations>,
    /// Where attachments live (`None`: attachments are off, and image and
    /// file bodies stay unchecked objects as in protocol v1).
    pub objects: Option<Arc<dyn crate::ports::ObjectStorage>>,
    /// Per-user rate limits of Logic's own (user search).
    pub throttle: Arc<dyn crate::ports::Throttle>,
}

/// The Logic service.
pub struct Logic {
    ports: LogicPorts,
    config: LogicConfig,
    ids: Snowflake,
    /// One queue per send batcher; a conversation always maps to the same one.
    batchers: Vec<mpsc::Sender<SendJob>>,
    /// Users known to exist (accounts are never deleted); bounded.
    known_users: parking_lot::RwLock<std::collections::HashSet<UserId>>,
    /// Recent answers of the block/contacts check of 1:1 sends.
    reach: reach::ReachCache,
    /// Bounds password hashing (see [`LogicConfig::hash_concurrency`]).
    hashing: accounts::HashGate,
}

impl std::fmt::Debug for Logic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logic")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Logic {
    /// Builds the service and starts its send batcher (needs a Tokio runtime).
    pub fn new(ports: LogicPorts, config: LogicConfig) -> Result<Arc<Logic>> {
        let ids = Snowflake::new(config.worker_id)
            .map_err(|e| crate::Error::InvalidArgument(e.to_string()))?;
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..config.batchers.max(1))
            .map(|_| mpsc::channel(config.max_batch * 16))
            .unzip();
        let hashing = accounts::HashGate::new(config.hash_concurrency, config.hash_queue);
        let logic = Arc::new(Logic {
            ports,
            config,
            ids,
            batchers: txs,
            known_users: parking_lot::RwLock::new(std::collections::HashSet::new()),
            reach: reach::ReachCache::default(),
            hashing,
        });
        for rx in rxs {
            tokio::spawn(send::run_batcher(Arc::downgrade(&logic), rx));
        }
        Ok(logic)
    }

    /// The configuration.
    pub fn config(&self) -> &LogicConfig {
        &self.config
    }

    /// The ports.
    pub fn ports(&self) -> &LogicPorts {
        &self.ports
    }

    /// A fresh snowflake id from this instance's generator.
    pub fn next_id(&self) -> u64 {
        self.ids.next_id().0
    }
}

#[async_trait]
impl LogicApi for Logic {
    async fn register(&self, username: &str, password: &str) -> Result<UserId> {
        Logic::register(self, username, password).await
    }

    async fn login(&self, username: &str, password: &str) -> Result<Login> {
        Logic::login(self, username, password).await
    }

    async fn verify_token(&self, token: &str) -> Result<Identity> {
        Logic::verify_token(self, token).await
    }

    async fn logout(&self, token: &str) -> Result<()> {
        Logic::logout(self, token).await
    }

    async fn connect_session(&self, route: SessionRoute) -> Result<()> {
        Logic::connect_session(self, route).await
    }

    async fn refresh_sessions(&self, routes: Vec<SessionRoute>) -> Result<()> {
        self.ports
            .sessions
            .refresh(&routes, self.config.session_ttl)
            .await
    }

    async fn disconnect_session(&self, route: SessionRoute) -> Result<()> {
        Logic::disconnect_session(self, route).await
    }

    async fn send(&self, sender: Sender, request: SendRequest) -> Result<SendAck> {
        Logic::send(self, sender, request).await
    }

    async fn sync(
        &self,
        user: UserId,
        conversation: ConversationId,
        after_seq: u64,
        limit: Option<u32>,
    ) -> Result<Page> {
        Logic::sync(self, user, conversation, after_seq, limit).await
    }

    async fn create_group(&self, actor: UserId, name: &str) -> Result<GroupId> {
        Logic::create_group(self, actor, name).await
    }

    async fn add_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()> {
        Logic::add_member(self, actor, group, user).await
    }

    async fn remove_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()> {
        Logic::remove_member(self, actor, group, user).await
    }

    async fn members(&self, actor: UserId, group: GroupId) -> Result<Vec<Member>> {
        Logic::members(self, actor, group).await
    }

    async fn group(&self, actor: UserId, group: GroupId) -> Result<Group> {
        Logic::group(self, actor, group).await
    }

    async fn administer_group(
        &self,
        actor: UserId,
        group: GroupId,
        command: GroupCommand,
    ) -> Result<()> {
        Logic::administer_group(self, actor, group, command).await
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
        origin: Option<(NodeId, SessionId)>,
    ) -> Result<()> {
        Logic::mark_read(self, user, conversation, seq, origin).await
    }

    async fn recall(&self, actor: UserId, msg_id: MessageId) -> Result<()> {
        Logic::recall(self, actor, msg_id).await
    }

    async fn typing(&self, user: UserId, to: Target) -> Result<()> {
        Logic::typing(self, user, to).await
    }

    async fn conversations(
        &self,
        user: UserId,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<ConversationPage> {
        Logic::conversations(self, user, cursor, limit).await
    }

    async fn cancel_scheduled(&self, user: UserId, msg_id: MessageId) -> Result<()> {
        if self.ports.schedules.cancel(user, msg_id).await? {
            Ok(())
        } else {
            Err(crate::Error::NotFound(format!(
                "no scheduled message {msg_id} of yours is pending"
            )))
        }
    }

    async fn scheduled(&self, user: UserId) -> Result<Vec<ScheduledSend>> {
        self.ports.schedules.pending(user).await
    }

    async fn presence(&self, users: Vec<UserId>) -> Result<Vec<Presence>> {
        Logic::presence(self, &users).await
    }

    async fn subscribe_presence(
        &self,
        subscriber: UserId,
        users: Vec<UserId>,
    ) -> Result<Vec<Presence>> {
        Logic::subscribe_presence(self, subscriber, users).await
    }

    async fn execute(&self, actor: UserId, command: Command) -> Result<Reply> {
        Logic::execute(self, actor, command).await
    }
}
