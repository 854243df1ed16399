//! Composition: wires the services of all four layers over any set of ports,
//! so one process can run everything (the quickstart) — or use the pieces
//! one by one (`Logic::new`, `PushWorker::new`, …) to run a single layer.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use im_core::node::{Backends, Node, NodeConfig};
//! let node = Node::start(Backends::memory(b"a secret of at least 32 bytes...."), NodeConfig::default())
//!     .await
//!     .unwrap();
//! assert_eq!(node.hub.session_count(), 0);
//! node.shutdown().await;
//! # });
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::JwtAuthenticator;
use crate::connect::{ConnectConfig, ConnectService, Hub, LocalPusher};
use crate::error::Result;
use crate::logic::{Logic, LogicConfig, LogicPorts};
use crate::memory::MemoryUserStore;
use crate::model::NodeId;
use crate::ports::{MessageQueue, MessageStore, PartitionLeases, Pusher};
use crate::task::{PersistWorker, PushWorker, Scheduler, SchedulerConfig, WorkerConfig};

/// Every port a full node needs.
#[derive(Clone)]
pub struct Backends {
    /// Ports of the Logic layer.
    pub logic: LogicPorts,
    /// The queue (read by the Task layer).
    pub queue: Arc<dyn MessageQueue>,
    /// The archive (written by the persist worker).
    pub messages: Arc<dyn MessageStore>,
    /// The partition leases push workers share (one pusher per partition).
    /// In memory by default: right as long as this node is the only one
    /// pushing from its queue; give several nodes on one queue shared ones.
    pub leases: Arc<dyn PartitionLeases>,
    /// Where push workers hand messages whose recipient has no online
    /// session (offline notifications; `None`: nobody is notified).
    pub offline: Option<Arc<dyn crate::task::OfflineSink>>,
}

impl Backends {
    /// The embedded default: every port in memory, JWTs signed with `secret`
    /// and valid for a day.
    pub fn memory(secret: &[u8]) -> Backends {
        let auth = Arc::new(JwtAuthenticator::new(secret, Duration::from_secs(86_400)));
        crate::builder::NodeBuilder::new()
            .assemble(Arc::new(MemoryUserStore::new()), auth)
            .0
    }
}

/// Settings of a single-process node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's connect id.
    pub node: NodeId,
    /// Logic settings.
    pub logic: LogicConfig,
    /// Connect settings.
    pub connect: ConnectConfig,
    /// Task worker settings (the consumer name gets a suffix per worker).
    pub worker: WorkerConfig,
    /// Push workers (consumers of the `push` group).
    pub push_workers: usize,
    /// Persist workers (consumers of the `persist` group).
    pub persist_workers: usize,
    /// Create the `audit` consumer group at startup, so an audit consumer
    /// attached later still sees every entry (they are kept until it acks).
    pub audit: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node: NodeId::new("node-1"),
            logic: LogicConfig::default(),
            connect: ConnectConfig::default(),
            worker: WorkerConfig {
                block: Duration::from_millis(500),
                ..WorkerConfig::default()
            },
            push_workers: 1,
            persist_workers: 1,
            audit: false,
        }
    }
}

/// All four layers' services running in this process.
pub struct Node {
    /// The Logic service.
    pub logic: Arc<Logic>,
    /// This node's Connect service.
    pub connect: Arc<ConnectService>,
    /// This node's hub.
    pub hub: Arc<Hub>,
    /// The ports it runs on.
    pub backends: Backends,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts Logic, the Task workers and the Connect service (needs a Tokio runtime).
    ///
    /// The `push` and `persist` consumer groups are created before Logic
    /// accepts a send, so neither group can miss an entry.
    pub async fn start(backends: Backends, config: NodeConfig) -> Result<Node> {
        backends.queue.create_group(crate::task::PUSH_GROUP).await?;
        backends
            .queue
            .create_group(crate::task::PERSIST_GROUP)
            .await?;
        if config.audit {
            backends
                .queue
                .create_group(crate::task::AUDIT_GROUP)
                .await?;
        }
        let logic = Logic::new(backends.logic.clone(), config.logic.clone())?;
        let hub = Arc::new(Hub::new(config.node.clone(), config.connect.session_queue));
        let connect = Arc::new(ConnectService::new(
            hub.clone(),
            logic.clone(),
            config.connect.clone(),
        ));
        let pusher: Arc<dyn Pusher> = Arc::new(LocalPusher::new([hub.clone()]));
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for i in 0..config.push_workers.max(1) {
            let w = PushWorker::new(
                backends.queue.clone(),
                backends.logic.sessions.clone(),
                backends.logic.groups.clone(),
                pusher.clone(),
                WorkerConfig {
                    consumer: format!("{}-push-{i}", config.node),
                    ..config.worker.clone()
                },
            )
            .with_leases(backends.leases.clone());
            let w = match &backends.offline {
                Some(sink) => w.with_offline(sink.clone()),
                None => w,
            };
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = w.run(stop).await {
                    tracing::error!(error = %e, "push worker stopped");
                }
            }));
        }
        for i in 0..config.persist_workers.max(1) {
            let w = PersistWorker::new(
                backends.queue.clone(),
                backends.messages.clone(),
                backends.logic.conversations.clone(),
                WorkerConfig {
                    consumer: format!("{}-persist-{i}", config.node),
                    linger: crate::task::PERSIST_LINGER,
                    ..config.worker.clone()
                },
            )
            .with_leases(backends.leases.clone());
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = w.run(stop).await {
                    tracing::error!(error = %e, "persist worker stopped");
                }
            }));
        }
        tasks.push(tokio::spawn(
            Scheduler::new(
                backends.logic.schedules.clone(),
                backends.logic.pipeline.clone(),
                SchedulerConfig {
                    dedup_ttl: config.logic.dedup_ttl,
                    ..SchedulerConfig::default()
                },
            )
            .run(stop.clone()),
        ));
        tasks.push(tokio::spawn(connect.clone().run_heartbeats(stop.clone())));
        Ok(Node {
            logic,
            connect,
            hub,
            backends,
            stop,
            tasks,
        })
    }

    /// A token cancelled on shutdown (for servers wrapping this node).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops the workers (un-acked work stays in the queue) and closes sessions with 1001.
    pub async fn shutdown(self) {
        self.hub
            .close_all(crate::connect::CLOSE_GOING_AWAY, "server shutting down");
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
