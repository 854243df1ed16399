//! Redis backends: the partitioned Streams queue, the partition-batched send
//! pipeline, partition leases, session routing, sequences, dedup keys,
//! scheduled sends and token revocations, sharing one connection, on a
//! standalone Redis or a Redis Cluster.
//!
//! # Connections
//! [`RedisConn::connect`] opens, on a standalone server, one
//! `redis::aio::ConnectionManager` (a multiplexed, auto-reconnecting
//! connection) shared by every store built from it; each queue consumer opens
//! a dedicated connection of its own for its blocking `XREADGROUP`, so a
//! blocked read never stalls the shared one. With
//! [`RedisConfig::cluster_urls`] it opens redis-rs's async cluster client
//! instead (routing by slot, following MOVED/ASK); commands that span slots are
//! split per slot (`RedisConn::per_slot`) and run in parallel.
//! A call that fails because the connection dropped returns
//! [`Error::Unavailable`]; the manager reconnects in the background and the
//! next call goes through. Nothing is retried automatically (a blind retry of
//! `XADD` could enqueue twice).
//!
//! # Key layout
//! With prefix `P` (default `im`), `N` partitions (default 64) and `K` key
//! partitions (default 1 standalone, 16 on a cluster). A partition's keys all
//! carry its hash tag `{pN}`: one partition is one slot, every script touches
//! one slot, and a cluster spreads partitions over its masters.
//!
//! | key | type | what |
//! |---|---|---|
//! | `P:{pN}:stream` | stream | queue partition `N` (`N = entry.shard_hash() % partitions`, a message's is its conversation's); each entry is a batch: field `b` = entries' JSON, one per line (messages or events), optional `s` = their seqs, comma-separated (0: a retry, skipped); the older single-entry field `e` is still read |
//! | `P:{pN}:dead` | stream | dead letters of partition `N`: undecodable entries or lines (`id`, `line`, `group`, `error`, original fields) |
//! | `P:{pN}:seq` | hash | last seq of each conversation of partition `N` (field `u:<a>:<b>` or `g:<id>`) |
//! | `P:{pN}:dedup:<bucket>` | hash | sends admitted in time bucket `floor(now / dedup_ttl)` of partition `N`: field = key (32 hex), value `seq:msg_id:ts:conversation`; expires `2 × dedup_ttl` after its last write |
//! | `P:{pK}:claim:<bucket>` | hash | idempotency claims of key partition `K` (`K = key % key_partitions`): field = key, value = the conversation its send went to; same buckets |
//! | `P:{pN}:lease:<scope>` | string | who works partition `N` for a consumer group (`push`, `persist`): the holder, PX lease TTL |
//! | `P:{lease}:<scope>:members` | sorted set | live holders of a scope: member = holder, score = expiry (Unix ms) |
//! | `P:dedup:<32 hex>` | string | [`RedisDedupStore`]'s keys (the composed pipeline's), with a PX TTL |
//! | `P:sess:{<user>}` | hash | a user's routes: field `<session>@<node>`, value: the expiry (Unix ms), a bar, the route JSON; the key's PEXPIRE is the latest expiry |
//! | `P:node:{<node>}` | set | the routes of a node: members `<user>:<session>`, for `drop_node` |
//! | `P:seen` | hash | last-seen time of each user: field `<user>`, value Unix ms (written with every bind, refresh, unbind and drop_node) |
//! | `P:psub:{<user>}` | sorted set | presence subscribers of a user: member `<subscriber>`, score its expiry (Unix ms); the key's PEXPIRE is the latest expiry |
//! | `P:{sched}:due` | sorted set | every held scheduled send: member its msg_id, score its `deliver_at` (Unix ms) |
//! | `P:{sched}:items` | hash | msg_id → the held `ScheduledSend` JSON |
//! | `P:{sched}:user:<user>` | sorted set | a user's held scheduled sends: member msg_id, score `deliver_at` |
//! | `P:{sched}:key:<32 hex>` | string | a scheduled send's idempotency key: the JSON of the send first held under it, PX `key_ttl` (at least until `deliver_at + key_ttl`) |
//! | `P:{sched}:dead` | hash | msg_id → an undecodable scheduled send, moved out of the due set |
//! | `P:revoked:<token id>` | string | a logged-out token (by its id, a hash: never the token): value its expiry (Unix ms), `PXAT` the same |
//!
//! # Redis Cluster
//! Every command and script touches one slot (the conformance suites run on a
//! 3-master cluster, which answers `CROSSSLOT` otherwise). Hot single slots
//! to know about: `P:seen` (every session change), `P:{sched}:…` (all
//! scheduling) and `P:{lease}:…` (a few heartbeats a second). A consumer on a
//! cluster cannot block on several streams at once (they are different
//! slots): it polls its partitions without blocking, backing off up to 16 ms
//! while all are empty. A publish of events spanning partitions is one `XADD`
//! per partition there (atomic as a whole only on a standalone server).
//!
//! # Durability
//! Redis replication is asynchronous: after a failover, acked writes can be
//! lost. Deployments that need the queue itself durable should run Redis with
//! `appendonly yes` and `appendfsync always` (at a throughput cost).

mod conn;
mod dedup;
mod lease;
mod pipeline;
mod queue;
mod revocation;
mod schedule;
mod script;
mod seq;
mod session;
mod throttle;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use im_core::id::{ConversationId, UserId};
use im_core::model::NodeId;
use im_core::ports::{partition_of, DedupKey};
use im_core::Error;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Value};

pub use dedup::RedisDedupStore;
pub use lease::RedisPartitionLeases;
pub use pipeline::RedisSendPipeline;
pub use queue::{RedisConsumer, RedisQueue};
pub use revocation::RedisTokenRevocations;
pub use schedule::RedisScheduleStore;
pub use seq::RedisSequenceAllocator;
pub use session::RedisSessionStore;
pub use throttle::RedisThrottle;

/// The default Redis URL (`REDIS_URL` overrides it in [`RedisConfig::from_env`]).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// How to reach Redis and lay out keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// A `redis://` (or `rediss://`) URL of a standalone server.
    pub url: String,
    /// Seed nodes of a Redis Cluster (`redis://host:port` each). When not
    /// empty, the cluster is used and `url` is ignored.
    pub cluster_urls: Vec<String>,
    /// The namespace of every key (default `im`).
    pub prefix: String,
    /// How many partitions the queue has (default 64). Every process of a
    /// deployment must use the same value, and changing it needs a migration
    /// (conversations move between partitions; see docs/deployment.md).
    pub partitions: u32,
    /// How many slots the idempotency-key claims of the send pipeline are
    /// spread over (`None`: 1 on a standalone Redis, where one claim call
    /// per batch is cheapest; 16 on a cluster, so claims spread over its
    /// masters). Every process of a deployment must use the same value.
    pub key_partitions: Option<u32>,
    /// Deadline of establishing a connection.
    pub connect_timeout: Duration,
    /// Deadline of one command or pipeline on the shared connection (blocking
    /// reads add their block time to it).
    pub response_timeout: Duration,
    /// How many times a lost connection is re-dialled before calls fail
    /// (each call that finds the connection down fails fast meanwhile).
    pub reconnect_retries: usize,
    /// After how many published entries the queue trims its streams in the
    /// background (0: only when [`RedisQueue::trim`] is called).
    pub trim_every: u64,
    /// Trim with `MINID ~` (whole macro nodes, cheap) instead of exactly.
    pub trim_approx: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: DEFAULT_REDIS_URL.to_owned(),
            cluster_urls: Vec::new(),
            prefix: "im".to_owned(),
            partitions: im_core::ports::DEFAULT_PARTITIONS,
            key_partitions: None,
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(5),
            reconnect_retries: 3,
            trim_every: 4096,
            trim_approx: true,
        }
    }
}

impl RedisConfig {
    /// The defaults with another URL.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            ..RedisConfig::default()
        }
    }

    /// The defaults with the URL of `REDIS_URL` (or [`DEFAULT_REDIS_URL`]).
    pub fn from_env() -> Self {
        RedisConfig::new(std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.into()))
    }

    /// The defaults on a Redis Cluster reached through `seeds`.
    pub fn cluster<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> Self {
        RedisConfig {
            cluster_urls: seeds.into_iter().map(Into::into).collect(),
            ..RedisConfig::default()
        }
    }

    /// The defaults on the Redis Cluster of `REDIS_CLUSTER_URLS`
    /// (comma-separated seed URLs), or `None` when it is not set.
    pub fn cluster_from_env() -> Option<Self> {
        let urls = std::env::var("REDIS_CLUSTER_URLS").ok()?;
        let seeds: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        (!seeds.is_empty()).then(|| RedisConfig::cluster(seeds))
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the number of queue partitions (at least 1).
    pub fn with_partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// The old name of [`RedisConfig::with_partitions`].
    #[deprecated(note = "shards are partitions now: use with_partitions")]
    pub fn with_shards(self, shards: u32) -> Self {
        self.with_partitions(shards)
    }
}

/// Key names (see the module doc for the layout).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    partitions: u32,
    key_partitions: u32,
}

impl Keys {
    pub(crate) fn partitions(&self) -> u32 {
        self.partitions
    }

    pub(crate) fn partition_of(&self, c: ConversationId) -> u32 {
        partition_of(c.shard_hash(), self.partitions)
    }

    /// The partition of an entry hash ([`im_core::model::Entry::shard_hash`]).
    pub(crate) fn partition_of_hash(&self, hash: u64) -> u32 {
        partition_of(hash, self.partitions)
    }

    pub(crate) fn stream(&self, p: u32) -> String {
        format!("{}:{{p{p}}}:stream", self.prefix)
    }

    pub(crate) fn dead(&self, p: u32) -> String {
        format!("{}:{{p{p}}}:dead", self.prefix)
    }

    /// The seq hash of partition `p`: field = conversation, value = last seq.
    pub(crate) fn seqs(&self, p: u32) -> String {
        format!("{}:{{p{p}}}:seq", self.prefix)
    }

    /// Dedup bucket `bucket` of partition `p` (see `pipeline.rs`).
    pub(crate) fn dedup_bucket(&self, p: u32, bucket: u64) -> String {
        format!("{}:{{p{p}}}:dedup:{bucket}", self.prefix)
    }

    /// The key partition of an idempotency key (see
    /// [`RedisConfig::key_partitions`]).
    pub(crate) fn key_partition(&self, k: DedupKey) -> u32 {
        partition_of(k.0 as u64, self.key_partitions)
    }

    /// Claim bucket `bucket` of key partition `p`: key field → conversation.
    pub(crate) fn claim_bucket(&self, p: u32, bucket: u64) -> String {
        format!("{}:{{p{p}}}:claim:{bucket}", self.prefix)
    }

    /// The lease of partition `p` in `scope` (a consumer group).
    pub(crate) fn lease(&self, p: u32, scope: &str) -> String {
        format!("{}:{{p{p}}}:lease:{scope}", self.prefix)
    }

    /// The live members of a lease scope.
    pub(crate) fn lease_members(&self, scope: &str) -> String {
        format!("{}:{{lease}}:{scope}:members", self.prefix)
    }

    pub(crate) fn dedup(&self, k: DedupKey) -> String {
        format!("{}:dedup:{}", self.prefix, k.to_hex())
    }

    pub(crate) fn sessions(&self, user: UserId) -> String {
        format!("{}:sess:{{{user}}}", self.prefix)
    }

    pub(crate) fn node(&self, node: &NodeId) -> String {
        format!("{}:node:{{{node}}}", self.prefix)
    }

    pub(crate) fn seen(&self) -> String {
        format!("{}:seen", self.prefix)
    }

    pub(crate) fn presence_subscribers(&self, user: UserId) -> String {
        format!("{}:psub:{{{user}}}", self.prefix)
    }

    pub(crate) fn sched_due(&self) -> String {
        format!("{}:{{sched}}:due", self.prefix)
    }

    pub(crate) fn sched_items(&self) -> String {
        format!("{}:{{sched}}:items", self.prefix)
    }

    pub(crate) fn sched_user(&self, user: UserId) -> String {
        format!("{}:{{sched}}:user:{user}", self.prefix)
    }

    pub(crate) fn sched_key(&self, k: DedupKey) -> String {
        format!("{}:{{sched}}:key:{}", self.prefix, k.to_hex())
    }

    pub(crate) fn sched_dead(&self) -> String {
        format!("{}:{{sched}}:dead", self.prefix)
    }

    pub(crate) fn revoked(&self, token_id: &str) -> String {
        format!("{}:revoked:{token_id}", self.prefix)
    }

    /// A throttle record of `key` (`what`: bucket or fail). The key is its
    /// own hash tag: one record, one slot. Braces in the key would move the
    /// tag, so they are replaced.
    pub(crate) fn throttle(&self, key: &str, what: &str) -> String {
        let key = key.replace(['{', '}'], "_");
        format!("{}:{{t:{key}}}:{what}", self.prefix)
    }
}

/// A connection to Redis shared by the stores built from it (cheap to clone).
#[derive(Clone)]
pub struct RedisConn {
    /// For dedicated connections (standalone only).
    client: Option<redis::Client>,
    con: conn::Con,
    keys: Arc<Keys>,
    config: Arc<RedisConfig>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("prefix", &self.config.prefix)
            .field("partitions", &self.config.partitions)
            .finish_non_exhaustive()
    }
}

impl RedisConn {
    /// Connects (failing with [`Error::Unavailable`] if Redis cannot be reached
    /// within the connect timeout).
    pub async fn connect(config: RedisConfig) -> Result<RedisConn, Error> {
        let clustered = !config.cluster_urls.is_empty();
        let partitions = config.partitions.max(1);
        let keys = Arc::new(Keys {
            prefix: config.prefix.clone(),
            partitions,
            key_partitions: config
                .key_partitions
                .unwrap_or(if clustered { 16 } else { 1 })
                .clamp(1, partitions),
        });
        if clustered {
            let cluster = conn::connect_cluster(
                &config.cluster_urls,
                config.connect_timeout,
                config.response_timeout,
                u32::try_from(config.reconnect_retries).unwrap_or(u32::MAX),
            )
            .await
            .map_err(|e| map_err("connect to the cluster", e))?;
            return Ok(RedisConn {
                client: None,
                con: conn::Con::Cluster(cluster),
                keys,
                config: Arc::new(config),
            });
        }
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| Error::InvalidArgument(format!("bad Redis URL {:?}: {e}", config.url)))?;
        let manager = client
            .get_connection_manager_with_config(manager_config(
                &config,
                Some(config.response_timeout),
            ))
            .await
            .map_err(|e| map_err("connect", e))?;
        let mut named = manager.clone();
        set_name(&mut named, &client_name(&config.prefix, None)).await;
        Ok(RedisConn {
            client: Some(client),
            con: conn::Con::Single(manager),
            keys,
            config: Arc::new(config),
        })
    }

    /// Connects to `url` with the default configuration.
    pub async fn from_url(url: &str) -> Result<RedisConn, Error> {
        RedisConn::connect(RedisConfig::new(url)).await
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The stream-sharded message queue.
    pub fn queue(&self) -> RedisQueue {
        RedisQueue::new(self.clone())
    }

    /// The session routing table.
    pub fn sessions(&self) -> RedisSessionStore {
        RedisSessionStore::new(self.clone())
    }

    /// The per-conversation seq counters.
    pub fn sequences(&self) -> RedisSequenceAllocator {
        RedisSequenceAllocator::new(self.clone())
    }

    /// The partition leases (one holder per partition and scope).
    pub fn leases(&self) -> RedisPartitionLeases {
        RedisPartitionLeases::new(self.clone())
    }

    /// The dedup keys.
    pub fn dedup(&self) -> RedisDedupStore {
        RedisDedupStore::new(self.clone())
    }

    /// The scheduled sends (durable holding until `deliver_at`).
    pub fn schedules(&self) -> RedisScheduleStore {
        RedisScheduleStore::new(self.clone())
    }

    /// The revoked tokens (logouts).
    pub fn revocations(&self) -> RedisTokenRevocations {
        RedisTokenRevocations::new(self.clone())
    }

    /// The front door's counters (login, registration, upgrade limits).
    pub fn throttle(&self) -> RedisThrottle {
        RedisThrottle::new(self.clone())
    }

    /// The one-round-trip send pipeline, publishing into `queue` (build it
    /// from the same connection's [`RedisConn::queue`]).
    pub fn send_pipeline(&self, queue: RedisQueue) -> RedisSendPipeline {
        RedisSendPipeline::new(self.clone(), queue)
    }

    /// Deletes every key under the prefix (test teardown, resets); returns how
    /// many were deleted. Uses `SCAN`, so it is safe on a live server.
    pub async fn delete_namespace(&self) -> Result<u64, Error> {
        if self.is_cluster() {
            // SCAN is per node: scan every node named, delete through the cluster.
            let mut deleted = 0;
            for url in &self.config.cluster_urls {
                let client = redis::Client::open(url.as_str()).map_err(|e| {
                    Error::InvalidArgument(format!("bad Redis Cluster URL {url:?}: {e}"))
                })?;
                let node = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| map_err("connect to a cluster node", e))?;
                deleted += self.delete_matching(node).await?;
            }
            return Ok(deleted);
        }
        self.delete_matching(self.con()).await
    }

    /// SCANs `scan` for the prefix and deletes what it finds (one key per
    /// DEL, through the shared connection, so a cluster routes each).
    async fn delete_matching(
        &self,
        mut scan: impl redis::aio::ConnectionLike + Send,
    ) -> Result<u64, Error> {
        let pattern = format!("{}:*", self.config.prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut scan)
                .await
                .map_err(|e| map_err("SCAN", e))?;
            let dels = keys
                .into_iter()
                .map(|k| {
                    let mut c = redis::cmd("DEL");
                    c.arg(&k);
                    (k, c)
                })
                .collect();
            for r in self.per_slot("DEL", dels).await? {
                deleted += as_u64(&r.map_err(|e| map_err("DEL", e))?).unwrap_or(0);
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Whether this is a Redis Cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        self.con.is_cluster()
    }

    /// Runs independent commands in as few round trips as the server allows
    /// (one pipeline on a standalone Redis; one pipeline per slot, in
    /// parallel, on a cluster) and returns each command's own result in order.
    /// `key` is the key each command is routed by.
    pub(crate) async fn per_slot(
        &self,
        what: &str,
        cmds: Vec<(String, redis::Cmd)>,
    ) -> Result<Vec<redis::RedisResult<Value>>, Error> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.con();
        conn::query_per_slot(
            &mut con,
            cmds.into_iter().map(|(k, c)| (k.into_bytes(), c)).collect(),
        )
        .await
        .map_err(|e| map_err(what, e))
    }

    /// Runs one script call per `(keys, args)` through [`RedisConn::per_slot`]
    /// by `EVALSHA`; calls the server does not have the script for
    /// (`NOSCRIPT`: a restart, a failover, a new cluster node) are run again
    /// with `EVAL`, which also caches it.
    pub(crate) async fn run_script(
        &self,
        lua: &Lua,
        calls: Vec<(Vec<String>, Vec<Vec<u8>>)>,
    ) -> Result<Vec<redis::RedisResult<Value>>, Error> {
        let build = |full: bool, keys: &[String], args: &[Vec<u8>]| {
            let mut c = if full {
                let mut c = redis::cmd("EVAL");
                c.arg(lua.code);
                c
            } else {
                let mut c = redis::cmd("EVALSHA");
                c.arg(lua.hash.as_str());
                c
            };
            c.arg(keys.len()).arg(keys).arg(args);
            c
        };
        let cmds = calls
            .iter()
            .map(|(k, a)| (k.first().cloned().unwrap_or_default(), build(false, k, a)))
            .collect();
        let mut out = self.per_slot(lua.name, cmds).await?;
        let missing: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Err(e) if e.code() == Some("NOSCRIPT")))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            let again = missing
                .iter()
                .map(|&i| {
                    let (k, a) = &calls[i];
                    (k.first().cloned().unwrap_or_default(), build(true, k, a))
                })
                .collect();
            let redone = self.per_slot(lua.name, again).await?;
            for (i, r) in missing.into_iter().zip(redone) {
                out[i] = r;
            }
        }
        Ok(out)
    }

    pub(crate) fn con(&self) -> conn::Con {
        self.con.clone()
    }

    /// A new, dedicated connection (for blocking reads) named after `role`,
    /// without a response timeout of its own: the caller bounds each call.
    pub(crate) async fn dedicated(&self, role: &str) -> Result<ConnectionManager, Error> {
        let Some(client) = &self.client else {
            return Err(Error::Internal(
                "a Redis Cluster connection has no dedicated connections".into(),
            ));
        };
        let mut con = client
            .get_connection_manager_with_config(manager_config(&self.config, None))
            .await
            .map_err(|e| map_err("connect", e))?;
        set_name(&mut con, &client_name(&self.config.prefix, Some(role))).await;
        Ok(con)
    }
}

/// Independent commands to run through [`RedisConn::per_slot`], like a
/// pipeline whose commands may live in different slots: each is routed by
/// its key. `run` answers the values of the commands not ignored, in order,
/// and fails on the first error.
#[derive(Default)]
pub(crate) struct Ops {
    cmds: Vec<(String, redis::Cmd)>,
    keep: Vec<bool>,
}

impl Ops {
    pub(crate) fn new() -> Ops {
        Ops::default()
    }

    /// Adds a command routed by `key` whose value `run` returns.
    pub(crate) fn add(&mut self, key: impl Into<String>, cmd: redis::Cmd) -> &mut Ops {
        self.cmds.push((key.into(), cmd));
        self.keep.push(true);
        self
    }

    /// Adds a command routed by `key` whose value is not returned.
    pub(crate) fn add_ignored(&mut self, key: impl Into<String>, cmd: redis::Cmd) -> &mut Ops {
        self.cmds.push((key.into(), cmd));
        self.keep.push(false);
        self
    }

    pub(crate) async fn run(self, conn: &RedisConn, what: &str) -> Result<Vec<Value>, Error> {
        let results = conn.per_slot(what, self.cmds).await?;
        let mut out = Vec::new();
        for (r, keep) in results.into_iter().zip(self.keep) {
            let v = r.map_err(|e| map_err(what, e))?;
            if keep {
                out.push(v);
            }
        }
        Ok(out)
    }
}

/// A command with a key and arguments: `cmd("HSET", &k, (f, v))`.
pub(crate) fn cmd_on(name: &str, key: &str) -> redis::Cmd {
    let mut c = redis::cmd(name);
    c.arg(key);
    c
}

/// A Lua script: its source (for `EVAL`) and SHA1 (for `EVALSHA`).
#[derive(Debug)]
pub(crate) struct Lua {
    pub(crate) name: &'static str,
    pub(crate) code: &'static str,
    pub(crate) hash: String,
}

impl Lua {
    pub(crate) fn new(name: &'static str, code: &'static str) -> Lua {
        Lua {
            name,
            code,
            hash: redis::Script::new(code).get_hash().to_owned(),
        }
    }
}

/// The `CLIENT SETNAME` of a connection: `<prefix>` for the shared one,
/// `<prefix>:<role>` for a consumer's (spaces replaced, as names cannot hold them).
pub fn client_name(prefix: &str, role: Option<&str>) -> String {
    let name = match role {
        Some(r) => format!("{prefix}:{r}"),
        None => prefix.to_owned(),
    };
    name.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

/// Names a connection so operators can tell ours apart in `CLIENT LIST`
/// (best effort: a reconnected connection is unnamed).
async fn set_name(con: &mut ConnectionManager, name: &str) {
    let res: redis::RedisResult<()> = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .query_async(con)
        .await;
    if let Err(e) = res {
        tracing::debug!(error = %e, "redis: CLIENT SETNAME failed");
    }
}

fn manager_config(config: &RedisConfig, response: Option<Duration>) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(response)
        .set_number_of_retries(config.reconnect_retries)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
}

/// Maps a Redis failure of `what` onto the core error.
pub(crate) fn map_err(what: &str, e: RedisError) -> Error {
    use redis::{ErrorKind, ServerErrorKind};
    if e.is_timeout() {
        return Error::Timeout(format!("redis {what}: {e}"));
    }
    let down = e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        );
    if down {
        Error::unavailable(format!("redis unavailable ({what})"), e)
    } else {
        Error::backend(format!("redis {what} failed"), e)
    }
}

/// A reply value as text (bulk, simple or verbatim strings, and integers).
pub(crate) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

/// A reply value as an integer (integers, or numeric strings).
pub(crate) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => as_string(other).and_then(|s| s.parse().ok()),
    }
}

/// The items of an array-like reply (arrays, sets; empty for nil).
pub(crate) fn as_items(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// A key/value reply (RESP2 flat array of pairs, or a RESP3 map) as a map.
pub(crate) fn as_map(v: &Value) -> HashMap<String, Value> {
    match v {
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| as_string(k).map(|k| (k, v.clone())))
            .collect(),
        other => as_items(other)
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => as_string(k).map(|k| (k, v.clone())),
                _ => None,
            })
            .collect(),
    }
}

/// An error for a reply of an unexpected shape.
pub(crate) fn bad_reply(what: &str, v: &Value) -> Error {
    Error::Backend {
        message: format!("unexpected Redis reply to {what}: {v:?}"),
        source: None,
    }
}
