//! The Logic layer: accounts and tokens, sessions, the send path (validate,
//! authorize, dedup, seq, enqueue, ack), sync/history, and groups.
//!
//! [`Logic`] holds the business rules and talks only to ports. [`LogicApi`] is
//! its interface as the API and Connect layers see it: implemented by
//! [`Logic`] in one process and by a gRPC client in a cluster.

mod accounts;
mod coalesce;
mod groups;
mod send;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::id::{ConversationId, GroupId, SessionId, Snowflake, UserId};
use crate::model::{Member, Message, NodeId, SessionRoute};
use crate::ports::{
    Authenticator, GroupStore, Identity, MessageStore, SendPipeline, SessionStore, UserStore,
};
use crate::protocol::{SendAck, SendRequest};

pub use coalesce::CoalescingLogic;
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
    /// Default and largest page of history/sync.
    pub default_page: u32,
    /// Largest page of history/sync (larger asks are clamped).
    pub max_page: u32,
    /// Snowflake worker id of this Logic instance (0..=1023), unique per instance.
    pub worker_id: u16,
}

impl Default for LogicConfig {
    fn default() -> Self {
        LogicConfig {
            max_body_bytes: 16_384,
            max_client_msg_id: 128,
            dedup_ttl: Duration::from_secs(600),
            session_ttl: Duration::from_secs(90),
            max_batch: 512,
            default_page: 50,
            max_page: 100,
            worker_id: 0,
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
}

impl Sender {
    /// A sender over HTTP.
    pub fn http(user: UserId) -> Self {
        Sender { user, origin: None }
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
    /// Verifies a bearer token.
    async fn verify_token(&self, token: &str) -> Result<Identity>;
    /// Binds a new session's route.
    async fn connect_session(&self, route: SessionRoute) -> Result<()>;
    /// Heartbeat: refreshes the routes of live sessions.
    async fn refresh_sessions(&self, routes: Vec<SessionRoute>) -> Result<()>;
    /// Unbinds a closed session's route.
    async fn disconnect_session(&self, route: SessionRoute) -> Result<()>;
    /// Sends one message.
    async fn send(&self, sender: Sender, request: SendRequest) -> Result<SendAck>;
    /// Sends many messages (answers in the same order).
    async fn send_batch(&self, sends: Vec<(Sender, SendRequest)>) -> Vec<Result<SendAck>>;
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
    /// Tokens.
    pub auth: Arc<dyn Authenticator>,
}

/// The Logic service.
pub struct Logic {
    ports: LogicPorts,
    config: LogicConfig,
    ids: Snowflake,
    batcher: mpsc::Sender<SendJob>,
    /// Users known to exist (accounts are never deleted); bounded.
    known_users: parking_lot::RwLock<std::collections::HashSet<UserId>>,
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
        let (tx, rx) = mpsc::channel(config.max_batch * 64);
        let logic = Arc::new(Logic {
            ports,
            config,
            ids,
            batcher: tx,
            known_users: parking_lot::RwLock::new(std::collections::HashSet::new()),
        });
        tokio::spawn(send::run_batcher(Arc::downgrade(&logic), rx));
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
        self.register_user(username, password).await
    }

    async fn login(&self, username: &str, password: &str) -> Result<Login> {
        self.login_user(username, password).await
    }

    async fn verify_token(&self, token: &str) -> Result<Identity> {
        self.ports.auth.verify(token).await
    }

    async fn connect_session(&self, route: SessionRoute) -> Result<()> {
        self.ports
            .sessions
            .bind(&route, self.config.session_ttl)
            .await
    }

    async fn refresh_sessions(&self, routes: Vec<SessionRoute>) -> Result<()> {
        self.ports
            .sessions
            .refresh(&routes, self.config.session_ttl)
            .await
    }

    async fn disconnect_session(&self, route: SessionRoute) -> Result<()> {
        self.ports.sessions.unbind(&route).await
    }

    async fn send(&self, sender: Sender, request: SendRequest) -> Result<SendAck> {
        self.submit(sender, request).await
    }

    async fn send_batch(&self, sends: Vec<(Sender, SendRequest)>) -> Vec<Result<SendAck>> {
        let waits: Vec<_> = sends.into_iter().map(|(s, r)| self.submit(s, r)).collect();
        futures::future::join_all(waits).await
    }

    async fn sync(
        &self,
        user: UserId,
        conversation: ConversationId,
        after_seq: u64,
        limit: Option<u32>,
    ) -> Result<Page> {
        self.sync_conversation(user, conversation, after_seq, limit)
            .await
    }

    async fn create_group(&self, actor: UserId, name: &str) -> Result<GroupId> {
        self.create_group_owned(actor, name).await
    }

    async fn add_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()> {
        self.add_group_member(actor, group, user).await
    }

    async fn remove_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()> {
        self.remove_group_member(actor, group, user).await
    }

    async fn members(&self, actor: UserId, group: GroupId) -> Result<Vec<Member>> {
        self.list_members(actor, group).await
    }
}
