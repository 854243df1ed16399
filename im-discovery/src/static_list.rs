//! `StaticDiscovery`: a fixed instance list from configuration.
//!
//! For deployments without a registry (a handful of known hosts, tests,
//! single-machine setups). The list is given once; [`Discovery::register`]
//! and [`Discovery::deregister`] change it in memory only, and every watcher
//! of a service sees those changes. Nothing ever expires on its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use im_core::ports::{Discovery, ServiceInstance};
use im_core::{Error, Result};
use tokio::sync::watch;

type Entry = (
    BTreeMap<String, ServiceInstance>,
    watch::Sender<Vec<ServiceInstance>>,
);

/// A discovery over a list of instances known up front.
///
/// ```
/// use im_core::ports::{Discovery, ServiceInstance};
/// use im_discovery::StaticDiscovery;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let d = StaticDiscovery::from_json(
///     r#"[{"service":"logic","id":"l1","addr":"http://10.0.0.1:7001"},
///         {"service":"logic","id":"l2","addr":"http://10.0.0.2:7001","metadata":{"zone":"b"}}]"#,
/// )
/// .unwrap();
/// let rx = d.watch("logic").await.unwrap();
/// assert_eq!(rx.borrow().len(), 2);
/// d.deregister("logic", "l1").await.unwrap();
/// assert_eq!(rx.borrow()[0].id, "l2");
/// # });
/// ```
#[derive(Debug, Default)]
pub struct StaticDiscovery {
    services: Mutex<HashMap<String, Entry>>,
}

impl StaticDiscovery {
    /// A registry holding `instances` (a later duplicate `(service, id)` wins).
    pub fn new(instances: impl IntoIterator<Item = ServiceInstance>) -> Self {
        let d = StaticDiscovery::default();
        for inst in instances {
            d.insert(inst);
        }
        d
    }

    /// A registry from a JSON array of [`ServiceInstance`] objects
    /// (`service`, `id`, `addr`, optional `metadata`).
    pub fn from_json(json: &str) -> Result<Self> {
        let list: Vec<ServiceInstance> = serde_json::from_str(json).map_err(|e| {
            Error::InvalidArgument(format!("static discovery: bad instance list: {e}"))
        })?;
        Ok(Self::new(list))
    }

    /// The current instances of `service`, sorted by id.
    pub fn instances(&self, service: &str) -> Vec<ServiceInstance> {
        self.lock()
            .get(service)
            .map(|(set, _)| set.values().cloned().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // No code path panics while holding the lock; recover the map if one did.
        self.services.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, instance: ServiceInstance) {
        let mut services = self.lock();
        let (set, tx) = services
            .entry(instance.service.clone())
            .or_insert_with(|| (BTreeMap::new(), watch::channel(Vec::new()).0));
        set.insert(instance.id.clone(), instance);
        tx.send_replace(set.values().cloned().collect());
    }
}

#[async_trait]
impl Discovery for StaticDiscovery {
    async fn register(&self, instance: ServiceInstance) -> Result<()> {
        self.insert(instance);
        Ok(())
    }

    async fn deregister(&self, service: &str, id: &str) -> Result<()> {
        let mut services = self.lock();
        if let Some((set, tx)) = services.get_mut(service) {
            if set.remove(id).is_some() {
                tx.send_replace(set.values().cloned().collect());
            }
        }
        Ok(())
    }

    async fn watch(&self, service: &str) -> Result<watch::Receiver<Vec<ServiceInstance>>> {
        let mut services = self.lock();
        let (_, tx) = services
            .entry(service.to_owned())
            .or_insert_with(|| (BTreeMap::new(), watch::channel(Vec::new()).0));
        Ok(tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn passes_the_discovery_suite() {
        im_core::testkit::discovery_suite(|| async {
            Arc::new(StaticDiscovery::new(Vec::new())) as Arc<dyn Discovery>
        })
        .await;
    }

    #[tokio::test]
    async fn starts_with_the_configured_list_sorted_by_id() {
        let d = StaticDiscovery::new(vec![
            ServiceInstance::new("logic", "b", "http://b"),
            ServiceInstance::new("logic", "a", "http://a"),
            ServiceInstance::new("connect", "c", "http://c"),
        ]);
        let rx = d.watch("logic").await.unwrap();
        let ids: Vec<_> = rx.borrow().iter().map(|i| i.id.clone()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(d.instances("connect").len(), 1);
        assert!(d.instances("nope").is_empty());
    }

    #[test]
    fn rejects_a_bad_list() {
        let err = StaticDiscovery::from_json("[{\"service\":1}]").unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
}
