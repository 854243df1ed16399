//! The in-memory `Discovery`: a registry shared by the services of one process.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::Result;
use crate::ports::{Discovery, ServiceInstance};

type Services = HashMap<
    String,
    (
        BTreeMap<String, ServiceInstance>,
        watch::Sender<Vec<ServiceInstance>>,
    ),
>;

/// A process-local registry; clone the `Arc` to share it.
#[derive(Debug, Default)]
pub struct MemoryDiscovery {
    services: Mutex<Services>,
}

impl MemoryDiscovery {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_service<R>(
        &self,
        service: &str,
        f: impl FnOnce(
            &mut BTreeMap<String, ServiceInstance>,
            &watch::Sender<Vec<ServiceInstance>>,
        ) -> R,
    ) -> R {
        let mut services = self.services.lock();
        let (set, tx) = services
            .entry(service.to_owned())
            .or_insert_with(|| (BTreeMap::new(), watch::channel(Vec::new()).0));
        f(set, tx)
    }
}

#[async_trait]
impl Discovery for MemoryDiscovery {
    async fn register(&self, instance: ServiceInstance) -> Result<()> {
        let service = instance.service.clone();
        self.with_service(&service, |set, tx| {
            set.insert(instance.id.clone(), instance);
            tx.send_replace(set.values().cloned().collect());
        });
        Ok(())
    }

    async fn deregister(&self, service: &str, id: &str) -> Result<()> {
        self.with_service(service, |set, tx| {
            if set.remove(id).is_some() {
                tx.send_replace(set.values().cloned().collect());
            }
        });
        Ok(())
    }

    async fn watch(&self, service: &str) -> Result<watch::Receiver<Vec<ServiceInstance>>> {
        Ok(self.with_service(service, |_, tx| tx.subscribe()))
    }
}
