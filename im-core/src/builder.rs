//! [`NodeBuilder`]: a node's ports from defaults and overrides, each set
//! exactly once.
//!
//! Every port starts in memory. Replace one with its `with_*` method and
//! everything derived from it follows: the archive you give is the one Logic
//! reads history from *and* the one the persist workers write to; the queue
//! you give is the one the send pipeline enqueues to, the one Logic posts
//! events to and the one the Task workers read; the sequence allocator is the
//! pipeline's and Logic's. Nothing has to be set twice.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use im_core::prelude::*;
//!
//! let node = NodeBuilder::new().start().await?;
//! let alice = node.logic.register("alice", "correct horse").await?;
//! assert_eq!(node.logic.login("alice", "correct horse").await?.user_id, alice);
//! node.shutdown().await;
//! # Ok::<(), im_core::Error>(())
//! # }).unwrap();
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::auth::JwtAuthenticator;
use crate::compose::{ComposedSendPipeline, SeededSequenceAllocator};
use crate::error::{Error, Result};
use crate::logic::{LogicConfig, LogicPorts};
use crate::memory::{
    MemoryContactStore, MemoryConversationStore, MemoryDedupStore, MemoryGroupStore,
    MemoryMessageStore, MemoryPartitionLeases, MemoryQueue, MemoryScheduleStore,
    MemorySequenceAllocator, MemorySessionStore, MemoryThrottle, MemoryTokenRevocations,
    MemoryUserStore,
};
use crate::node::{Backends, Node, NodeConfig};
use crate::ports::{
    Authenticator, ContactStore, ConversationStore, DedupStore, GroupStore, MessageQueue,
    MessageStore, ObjectStorage, PartitionLeases, ScheduleStore, SendHook, SendPipeline,
    SequenceAllocator, SessionStore, Throttle, TokenRevocations, UserStore,
};
use crate::task::OfflineSink;

/// Builds the authenticator over the final user store.
type MakeAuth = Box<dyn FnOnce(Arc<dyn UserStore>) -> Arc<dyn Authenticator> + Send>;
/// Builds the offline sink over the final ports.
type MakeOffline = Box<dyn FnOnce(&LogicPorts) -> Arc<dyn OfflineSink> + Send>;

/// How the authenticator is made: given, or built over the user store.
enum AuthSource {
    /// JWTs signed with the builder's secret.
    Jwt,
    /// A ready authenticator.
    Given(Arc<dyn Authenticator>),
    /// Built from the final user store (e.g. one that provisions accounts).
    From(MakeAuth),
}

/// Assembles the ports of a node (and starts it): defaults in memory,
/// overrides set once each. See the [module docs](self).
///
/// The setters come in three kinds:
/// - **stores and services** (`with_users`, `with_messages`, `with_queue`, …):
///   replace one port;
/// - **authentication** (`with_secret`, `with_token_ttl`, `with_auth`,
///   `with_auth_from`): JWTs signed with a secret by default;
/// - **settings** (`with_config`, `with_logic_config`).
///
/// Then [`build`](Self::build) returns the [`Backends`] (for
/// [`Node::start`] or to run a single layer), [`logic_ports`](Self::logic_ports)
/// only Logic's ports, and [`start`](Self::start) starts the node.
#[must_use]
pub struct NodeBuilder {
    secret: Option<Vec<u8>>,
    token_ttl: Duration,
    auth: AuthSource,
    users: Option<Arc<dyn UserStore>>,
    groups: Option<Arc<dyn GroupStore>>,
    messages: Option<Arc<dyn MessageStore>>,
    conversations: Option<Arc<dyn ConversationStore>>,
    contacts: Option<Arc<dyn ContactStore>>,
    sessions: Option<Arc<dyn SessionStore>>,
    queue: Option<Arc<dyn MessageQueue>>,
    sequences: Option<Arc<dyn SequenceAllocator>>,
    dedup: Option<Arc<dyn DedupStore>>,
    pipeline: Option<Arc<dyn SendPipeline>>,
    schedules: Option<Arc<dyn ScheduleStore>>,
    revocations: Option<Arc<dyn TokenRevocations>>,
    throttle: Option<Arc<dyn Throttle>>,
    objects: Option<Arc<dyn ObjectStorage>>,
    hooks: Vec<Arc<dyn SendHook>>,
    leases: Option<Arc<dyn PartitionLeases>>,
    offline: Option<OfflineSource>,
    config: NodeConfig,
}

/// The offline sink, given or built over the final ports.
enum OfflineSource {
    Given(Arc<dyn OfflineSink>),
    From(MakeOffline),
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for NodeBuilder {
    fn default() -> Self {
        NodeBuilder::new()
    }
}

/// The least secret length [`NodeBuilder::with_secret`] accepts.
pub const MIN_SECRET_LEN: usize = 32;

impl NodeBuilder {
    /// Every port in memory; tokens are JWTs signed with a random secret
    /// (valid for a day, and only until the process ends — set
    /// [`with_secret`](Self::with_secret) to keep them across restarts).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// let node = im_core::builder::NodeBuilder::new().start().await?;
    /// assert_eq!(node.hub.session_count(), 0);
    /// node.shutdown().await;
    /// # Ok::<(), im_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn new() -> Self {
        NodeBuilder {
            secret: None,
            token_ttl: Duration::from_secs(86_400),
            auth: AuthSource::Jwt,
            users: None,
            groups: None,
            messages: None,
            conversations: None,
            contacts: None,
            sessions: None,
            queue: None,
            sequences: None,
            dedup: None,
            pipeline: None,
            schedules: None,
            revocations: None,
            throttle: None,
            objects: None,
            hooks: Vec::new(),
            leases: None,
            offline: None,
            config: NodeConfig::default(),
        }
    }

    /// [`new`](Self::new), with the token secret from `IM_AUTH_SECRET` (at
    /// least 32 bytes) and the token lifetime from `IM_TOKEN_TTL_SECS` when
    /// they are set; a bad value is `invalid_argument` naming the variable.
    ///
    /// ```
    /// let builder = im_core::builder::NodeBuilder::from_env()?;
    /// # let _ = builder;
    /// # Ok::<(), im_core::Error>(())
    /// ```
    pub fn from_env() -> Result<Self> {
        let mut b = NodeBuilder::new();
        if let Ok(secret) = std::env::var("IM_AUTH_SECRET") {
            if secret.len() < MIN_SECRET_LEN {
                return Err(Error::InvalidArgument(format!(
                    "IM_AUTH_SECRET must be at least {MIN_SECRET_LEN} bytes"
                )));
            }
            b.secret = Some(secret.into_bytes());
        }
        if let Ok(ttl) = std::env::var("IM_TOKEN_TTL_SECS") {
            let secs: u64 = ttl.trim().parse().map_err(|_| {
                Error::InvalidArgument(format!("IM_TOKEN_TTL_SECS={ttl:?} is not a number"))
            })?;
            b.token_ttl = Duration::from_secs(secs.max(1));
        }
        Ok(b)
    }

    /// Signs the built-in JWTs with `secret` (at least 32 bytes; checked by
    /// [`build`](Self::build)), so tokens survive a restart and every node
    /// of a deployment accepts the others' tokens.
    ///
    /// ```
    /// use im_core::builder::NodeBuilder;
    /// let ports = NodeBuilder::new().with_secret(b"a secret of at least 32 bytes....").build()?;
    /// # let _ = ports;
    /// # Ok::<(), im_core::Error>(())
    /// ```
    pub fn with_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// How long a built-in JWT is valid (default a day).
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = im_core::builder::NodeBuilder::new().with_token_ttl(Duration::from_secs(3600));
    /// # let _ = b;
    /// ```
    pub fn with_token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Your own [`Authenticator`] (your login, your tokens) instead of the
    /// built-in JWTs.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use im_core::auth::JwtAuthenticator;
    /// let auth = JwtAuthenticator::new(b"a secret of at least 32 bytes....", std::time::Duration::from_secs(60));
    /// let b = im_core::builder::NodeBuilder::new().with_auth(Arc::new(auth));
    /// # let _ = b;
    /// ```
    pub fn with_auth(mut self, auth: Arc<dyn Authenticator>) -> Self {
        self.auth = AuthSource::Given(auth);
        self
    }

    /// An [`Authenticator`] built over the final user store (the default one
    /// or the one given to [`with_users`](Self::with_users)), e.g. one that
    /// creates accounts for users it sees for the first time.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use im_core::auth::JwtAuthenticator;
    /// let b = im_core::builder::NodeBuilder::new().with_auth_from(|_users| {
    ///     Arc::new(JwtAuthenticator::new(b"a secret of at least 32 bytes....", std::time::Duration::from_secs(60)))
    /// });
    /// # let _ = b;
    /// ```
    pub fn with_auth_from(
        mut self,
        make: impl FnOnce(Arc<dyn UserStore>) -> Arc<dyn Authenticator> + Send + 'static,
    ) -> Self {
        self.auth = AuthSource::From(Box::new(make));
        self
    }

    /// Accounts and profiles.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_users(Arc::new(im_core::memory::MemoryUserStore::new()));
    /// # let _ = b;
    /// ```
    pub fn with_users(mut self, users: Arc<dyn UserStore>) -> Self {
        self.users = Some(users);
        self
    }

    /// Groups and their members.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_groups(Arc::new(im_core::memory::MemoryGroupStore::new()));
    /// # let _ = b;
    /// ```
    pub fn with_groups(mut self, groups: Arc<dyn GroupStore>) -> Self {
        self.groups = Some(groups);
        self
    }

    /// The message archive: Logic reads history from it and the persist
    /// workers write to it (a decorator given here wraps both). Without
    /// [`with_sequences`](Self::with_sequences), the in-memory seqs then
    /// continue each conversation after its stored messages
    /// ([`SeededSequenceAllocator`]), so a restart never reuses a seq.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_messages(Arc::new(im_core::memory::MemoryMessageStore::default()));
    /// # let _ = b;
    /// ```
    pub fn with_messages(mut self, messages: Arc<dyn MessageStore>) -> Self {
        self.messages = Some(messages);
        self
    }

    /// Conversation lists, read cursors and mentions.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_conversations(Arc::new(im_core::memory::MemoryConversationStore::default()));
    /// # let _ = b;
    /// ```
    pub fn with_conversations(mut self, conversations: Arc<dyn ConversationStore>) -> Self {
        self.conversations = Some(conversations);
        self
    }

    /// Contacts, contact requests and blocks.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_contacts(Arc::new(im_core::memory::MemoryContactStore::new()));
    /// # let _ = b;
    /// ```
    pub fn with_contacts(mut self, contacts: Arc<dyn ContactStore>) -> Self {
        self.contacts = Some(contacts);
        self
    }

    /// Where online sessions are routed.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_sessions(Arc::new(im_core::memory::MemorySessionStore::new()));
    /// # let _ = b;
    /// ```
    pub fn with_sessions(mut self, sessions: Arc<dyn SessionStore>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// The queue between Logic and the Task workers: the default send
    /// pipeline enqueues to it, Logic posts its events to it, and the push
    /// and persist workers read it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_queue(Arc::new(im_core::memory::MemoryQueue::default()));
    /// # let _ = b;
    /// ```
    pub fn with_queue(mut self, queue: Arc<dyn MessageQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Per-conversation seqs: the default send pipeline allocates from it and
    /// Logic reads last seqs from it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_sequences(Arc::new(im_core::memory::MemorySequenceAllocator::new()));
    /// # let _ = b;
    /// ```
    pub fn with_sequences(mut self, sequences: Arc<dyn SequenceAllocator>) -> Self {
        self.sequences = Some(sequences);
        self
    }

    /// The dedup window of the default send pipeline.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_dedup(Arc::new(im_core::memory::MemoryDedupStore::new()));
    /// # let _ = b;
    /// ```
    pub fn with_dedup(mut self, dedup: Arc<dyn DedupStore>) -> Self {
        self.dedup = Some(dedup);
        self
    }

    /// A whole send pipeline (dedup + seq + enqueue in one, e.g. Redis's
    /// one-script pipeline) instead of the one composed from
    /// [`with_dedup`](Self::with_dedup), [`with_sequences`](Self::with_sequences)
    /// and [`with_queue`](Self::with_queue). It must enqueue to the queue
    /// given to `with_queue`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use im_core::compose::ComposedSendPipeline;
    /// use im_core::memory::{MemoryDedupStore, MemoryQueue, MemorySequenceAllocator};
    /// let queue = Arc::new(MemoryQueue::default());
    /// let sequences = Arc::new(MemorySequenceAllocator::new());
    /// let pipeline = ComposedSendPipeline::new(Arc::new(MemoryDedupStore::new()), sequences.clone(), queue.clone());
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_queue(queue)
    ///     .with_sequences(sequences)
    ///     .with_pipeline(Arc::new(pipeline));
    /// # let _ = b;
    /// ```
    pub fn with_pipeline(mut self, pipeline: Arc<dyn SendPipeline>) -> Self {
        self.pipeline = Some(pipeline);
        self
    }

    /// Scheduled sends, held until their delivery time.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_schedules(Arc::new(im_core::memory::MemoryScheduleStore::new()));
    /// # let _ = b;
    /// ```
    pub fn with_schedules(mut self, schedules: Arc<dyn ScheduleStore>) -> Self {
        self.schedules = Some(schedules);
        self
    }

    /// Tokens logged out before their expiry.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_revocations(Arc::new(im_core::memory::MemoryTokenRevocations::new()));
    /// # let _ = b;
    /// ```
    pub fn with_revocations(mut self, revocations: Arc<dyn TokenRevocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Logic's own rate limits (user search); share one across instances.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_throttle(Arc::new(im_core::memory::MemoryThrottle::new()));
    /// # let _ = b;
    /// ```
    pub fn with_throttle(mut self, throttle: Arc<dyn Throttle>) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Where attachments live (off without it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use im_core::memory::MemoryObjectStorage;
    /// let objects = MemoryObjectStorage::new("", b"a key signing object URLs", 1 << 20);
    /// let b = im_core::builder::NodeBuilder::new().with_objects(Arc::new(objects));
    /// # let _ = b;
    /// ```
    pub fn with_objects(mut self, objects: Arc<dyn ObjectStorage>) -> Self {
        self.objects = Some(objects);
        self
    }

    /// Adds an application hook around the send path (hooks run in the order
    /// they were added).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use im_core::model::Message;
    /// use im_core::ports::SendHook;
    /// struct Counter(std::sync::atomic::AtomicUsize);
    /// #[async_trait::async_trait]
    /// impl SendHook for Counter {
    ///     async fn after_send(&self, batch: &[Message]) {
    ///         self.0.fetch_add(batch.len(), std::sync::atomic::Ordering::Relaxed);
    ///     }
    /// }
    /// let b = im_core::builder::NodeBuilder::new().with_hook(Arc::new(Counter(Default::default())));
    /// # let _ = b;
    /// ```
    pub fn with_hook(mut self, hook: Arc<dyn SendHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// The partition leases push workers share (in memory by default: right
    /// while this node is the only one pushing from its queue).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_leases(Arc::new(im_core::memory::MemoryPartitionLeases::new()));
    /// # let _ = b;
    /// ```
    pub fn with_leases(mut self, leases: Arc<dyn PartitionLeases>) -> Self {
        self.leases = Some(leases);
        self
    }

    /// Where push workers hand messages whose recipient has no online
    /// session (offline notifications; nobody is notified without it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use im_core::model::Message;
    /// use im_core::id::UserId;
    /// use im_core::task::OfflineSink;
    /// struct Log;
    /// impl OfflineSink for Log {
    ///     fn offline(&self, user: UserId, message: &Message) {
    ///         println!("{user} missed {}", message.msg_id);
    ///     }
    /// }
    /// let b = im_core::builder::NodeBuilder::new().with_offline(Arc::new(Log));
    /// # let _ = b;
    /// ```
    pub fn with_offline(mut self, offline: Arc<dyn OfflineSink>) -> Self {
        self.offline = Some(OfflineSource::Given(offline));
        self
    }

    /// An offline sink built over the final ports (e.g. a notifier that
    /// reads user names and unread counts from the same stores the node
    /// runs on); it is made when the ports are built, inside the runtime.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use im_core::model::Message;
    /// use im_core::id::UserId;
    /// use im_core::ports::UserStore;
    /// use im_core::task::OfflineSink;
    /// struct Named(Arc<dyn UserStore>);
    /// impl OfflineSink for Named {
    ///     fn offline(&self, user: UserId, _message: &Message) {
    ///         let _users = &self.0; // look the user up, notify their devices …
    ///     }
    /// }
    /// let b = im_core::builder::NodeBuilder::new()
    ///     .with_offline_from(|ports| Arc::new(Named(ports.users.clone())));
    /// # let _ = b;
    /// ```
    pub fn with_offline_from(
        mut self,
        make: impl FnOnce(&LogicPorts) -> Arc<dyn OfflineSink> + Send + 'static,
    ) -> Self {
        self.offline = Some(OfflineSource::From(Box::new(make)));
        self
    }

    /// The node's settings (all layers; default [`NodeConfig::default`]).
    ///
    /// ```
    /// use im_core::node::NodeConfig;
    /// let b = im_core::builder::NodeBuilder::new().with_config(NodeConfig {
    ///     push_workers: 2,
    ///     ..NodeConfig::default()
    /// });
    /// # let _ = b;
    /// ```
    pub fn with_config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    /// Logic's settings only (the rest of the node's stay).
    ///
    /// ```
    /// use im_core::logic::{DirectMessages, LogicConfig};
    /// let b = im_core::builder::NodeBuilder::new().with_logic_config(LogicConfig {
    ///     direct_messages: DirectMessages::ContactsOnly,
    ///     ..LogicConfig::default()
    /// });
    /// # let _ = b;
    /// ```
    pub fn with_logic_config(mut self, logic: LogicConfig) -> Self {
        self.config.logic = logic;
        self
    }

    /// The settings [`start`](Self::start) will use.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Every port, defaults filled in and derived ports built once:
    /// `invalid_argument` for a secret shorter than 32 bytes.
    ///
    /// ```
    /// let backends = im_core::builder::NodeBuilder::new().build()?;
    /// // The archive Logic reads is the one the persist workers write.
    /// assert!(std::sync::Arc::ptr_eq(&backends.messages, &backends.logic.messages));
    /// # Ok::<(), im_core::Error>(())
    /// ```
    pub fn build(self) -> Result<Backends> {
        Ok(self.into_parts()?.0)
    }

    /// Only the Logic layer's ports (to run Logic alone, e.g. behind gRPC).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// let ports = im_core::builder::NodeBuilder::new().logic_ports()?;
    /// let logic = im_core::logic::Logic::new(ports, Default::default())?;
    /// # drop(logic);
    /// # Ok::<(), im_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn logic_ports(self) -> Result<LogicPorts> {
        Ok(self.build()?.logic)
    }

    /// Builds the ports and starts all four layers (needs a Tokio runtime).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// let node = im_core::builder::NodeBuilder::new().start().await?;
    /// node.shutdown().await;
    /// # Ok::<(), im_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn start(self) -> Result<Node> {
        let (backends, config) = self.into_parts()?;
        Node::start(backends, config).await
    }

    fn into_parts(mut self) -> Result<(Backends, NodeConfig)> {
        let users: Arc<dyn UserStore> = self
            .users
            .take()
            .unwrap_or_else(|| Arc::new(MemoryUserStore::new()));
        let auth: Arc<dyn Authenticator> = match std::mem::replace(&mut self.auth, AuthSource::Jwt)
        {
            AuthSource::Given(a) => a,
            AuthSource::From(make) => make(users.clone()),
            AuthSource::Jwt => {
                let secret = match self.secret.take() {
                    Some(s) if s.len() < MIN_SECRET_LEN => {
                        return Err(Error::InvalidArgument(format!(
                            "the token secret must be at least {MIN_SECRET_LEN} bytes"
                        )))
                    }
                    Some(s) => s,
                    None => {
                        use rand::RngCore;
                        let mut s = vec![0u8; 32];
                        rand::rng().fill_bytes(&mut s);
                        s
                    }
                };
                Arc::new(JwtAuthenticator::new(&secret, self.token_ttl))
            }
        };
        Ok(self.assemble(users, auth))
    }

    /// Fills in the defaults around a user store and an authenticator
    /// (cannot fail: every check is done before).
    pub(crate) fn assemble(
        self,
        users: Arc<dyn UserStore>,
        auth: Arc<dyn Authenticator>,
    ) -> (Backends, NodeConfig) {
        let queue: Arc<dyn MessageQueue> = self
            .queue
            .unwrap_or_else(|| Arc::new(MemoryQueue::default()));
        let memory_seqs = || Arc::new(MemorySequenceAllocator::new());
        let (messages, sequences): (Arc<dyn MessageStore>, Arc<dyn SequenceAllocator>) =
            match (self.messages, self.sequences) {
                (messages, Some(sequences)) => (
                    messages.unwrap_or_else(|| Arc::new(MemoryMessageStore::default())),
                    sequences,
                ),
                // A given (durable) archive and seqs in memory: continue each
                // conversation after its stored seqs.
                (Some(messages), None) => {
                    let seeded = SeededSequenceAllocator::new(memory_seqs(), messages.clone());
                    (messages, Arc::new(seeded))
                }
                (None, None) => (Arc::new(MemoryMessageStore::default()), memory_seqs()),
            };
        let pipeline: Arc<dyn SendPipeline> = match self.pipeline {
            Some(p) => p,
            None => Arc::new(ComposedSendPipeline::new(
                self.dedup
                    .unwrap_or_else(|| Arc::new(MemoryDedupStore::new())),
                sequences.clone(),
                queue.clone(),
            )),
        };
        let logic = LogicPorts {
            users,
            groups: self
                .groups
                .unwrap_or_else(|| Arc::new(MemoryGroupStore::new())),
            messages: messages.clone(),
            sessions: self
                .sessions
                .unwrap_or_else(|| Arc::new(MemorySessionStore::new())),
            pipeline,
            queue: queue.clone(),
            conversations: self
                .conversations
                .unwrap_or_else(|| Arc::new(MemoryConversationStore::default())),
            contacts: self
                .contacts
                .unwrap_or_else(|| Arc::new(MemoryContactStore::new())),
            sequences,
            schedules: self
                .schedules
                .unwrap_or_else(|| Arc::new(MemoryScheduleStore::new())),
            hooks: self.hooks,
            auth,
            revocations: self
                .revocations
                .unwrap_or_else(|| Arc::new(MemoryTokenRevocations::new())),
            objects: self.objects,
            throttle: self
                .throttle
                .unwrap_or_else(|| Arc::new(MemoryThrottle::new())),
        };
        let offline = match self.offline {
            None => None,
            Some(OfflineSource::Given(sink)) => Some(sink),
            Some(OfflineSource::From(make)) => Some(make(&logic)),
        };
        (
            Backends {
                logic,
                queue,
                messages,
                leases: self
                    .leases
                    .unwrap_or_else(|| Arc::new(MemoryPartitionLeases::new())),
                offline,
            },
            self.config,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::LogicApi;

    #[test]
    fn a_short_secret_is_refused() {
        let e = NodeBuilder::new().with_secret(b"short").build().err();
        assert!(matches!(e, Some(Error::InvalidArgument(_))), "{e:?}");
    }

    #[test]
    fn one_queue_and_one_archive_everywhere() {
        let queue: Arc<dyn MessageQueue> = Arc::new(MemoryQueue::default());
        let messages: Arc<dyn MessageStore> = Arc::new(MemoryMessageStore::default());
        let b = NodeBuilder::new()
            .with_queue(queue.clone())
            .with_messages(messages.clone())
            .build()
            .ok();
        let Some(b) = b else {
            panic!("the builder refused its defaults")
        };
        assert!(Arc::ptr_eq(&b.queue, &queue));
        assert!(Arc::ptr_eq(&b.logic.queue, &queue));
        assert!(Arc::ptr_eq(&b.messages, &messages));
        assert!(Arc::ptr_eq(&b.logic.messages, &messages));
    }

    #[tokio::test]
    async fn tokens_signed_with_the_secret_verify_on_another_node() {
        let secret = b"a secret of at least 32 bytes....";
        // Two nodes of one deployment: the same accounts, the same secret.
        let users: Arc<dyn UserStore> = Arc::new(MemoryUserStore::new());
        let node = || {
            NodeBuilder::new()
                .with_secret(secret)
                .with_users(users.clone())
                .start()
        };
        let (a, b) = (node().await, node().await);
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("nodes did not start")
        };
        let user = a.logic.register("alice", "correct horse").await;
        let login = a.logic.login("alice", "correct horse").await;
        let (Ok(user), Ok(login)) = (user, login) else {
            panic!("register/login failed")
        };
        let id = b.logic.verify_token(&login.token).await.ok();
        assert_eq!(id.map(|i| i.user_id), Some(user));
        a.shutdown().await;
        b.shutdown().await;
    }
}
