//! `Discovery`: registering service instances and watching the live set.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::Result;

/// One running instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// The service name, e.g. `logic` or `connect`.
    pub service: String,
    /// Unique within the service (for connect nodes: the node id).
    pub id: String,
    /// Where to reach it, e.g. `http://127.0.0.1:7001`.
    pub addr: String,
    /// Free-form metadata (zone, weight, ws_url …).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl ServiceInstance {
    /// An instance without metadata.
    pub fn new(service: impl Into<String>, id: impl Into<String>, addr: impl Into<String>) -> Self {
        ServiceInstance {
            service: service.into(),
            id: id.into(),
            addr: addr.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// Adds a metadata entry.
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// A registry of live instances.
///
/// Contract: a registered instance appears in every watcher's set of its
/// service until it is deregistered (then it disappears promptly) or its
/// process dies (then it disappears after the backend's lease/TTL). The watch
/// set is sorted by id and keeps its last value while the backend is unreachable.
#[async_trait]
pub trait Discovery: Send + Sync + 'static {
    /// Registers (and keeps alive) an instance.
    async fn register(&self, instance: ServiceInstance) -> Result<()>;

    /// Withdraws an instance at once.
    async fn deregister(&self, service: &str, id: &str) -> Result<()>;

    /// The live set of a service, updated as it changes.
    async fn watch(&self, service: &str) -> Result<watch::Receiver<Vec<ServiceInstance>>>;
}
