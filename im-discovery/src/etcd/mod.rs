//! `EtcdDiscovery`: the production [`Discovery`] on etcd v3.
//!
//! - **Registry** (`registry.rs`): an instance is stored as JSON under
//!   `{namespace}/{service}/{id}`, attached to a lease of `lease_ttl`. A
//!   background task keeps the lease alive; after any error (etcd restarted,
//!   connection lost, lease expired) it reconnects, grants a new lease and puts
//!   the key again, with capped exponential backoff. `etcd-client` does not
//!   resume keep-alive streams by itself, hence this loop.
//! - **Watch** (`watch.rs`): one task per watched service lists the prefix, then
//!   watches from that revision + 1; on compaction, error, end of stream or
//!   reconnect it lists again and resumes. All watchers of a service share one
//!   `tokio::sync::watch` channel whose value is the live set sorted by id; it
//!   keeps the last known set while etcd is unreachable. The task ends when
//!   the last receiver is dropped.
//!
//! Deregistering (or [`EtcdDiscovery::shutdown`]) revokes the lease, so the
//! instance disappears at once. Dropping the [`EtcdDiscovery`] (or calling
//! [`EtcdDiscovery::abandon`]) stops the keep-alives *without* revoking,
//! exactly like a crashed process: the instances vanish when their leases
//! expire (a lease TTL is a minimum; etcd may take somewhat longer).

mod registry;
mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions};
use im_core::ports::{Discovery, ServiceInstance};
use im_core::{Error, Result};
use tokio::task::JoinHandle;

/// Default key prefix of the registry.
pub const DEFAULT_NAMESPACE: &str = "/im/services";

/// The environment variable [`EtcdConfig::from_env`] reads.
pub const ENDPOINTS_ENV: &str = "ETCD_ENDPOINTS";

/// The endpoint used when none is configured.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";

/// Settings of an [`EtcdDiscovery`].
///
/// ```
/// use std::time::Duration;
/// use im_discovery::etcd::EtcdConfig;
///
/// let cfg = EtcdConfig::new(["http://10.0.0.1:2379", "http://10.0.0.2:2379"])
///     .with_namespace("/prod/im/services")
///     .with_lease_ttl(Duration::from_secs(3));
/// assert_eq!(cfg.namespace, "/prod/im/services");
/// assert_eq!(EtcdConfig::default().lease_ttl, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs of the etcd cluster, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix under which services are registered (no trailing `/`).
    pub namespace: String,
    /// TTL of each instance's lease: how long a dead process stays listed
    /// (at least; rounded up to whole seconds, minimum 1 s).
    pub lease_ttl: Duration,
    /// Timeout of establishing a connection to an endpoint.
    pub connect_timeout: Duration,
    /// Timeout of each unary request (get, put, grant, revoke, keep-alive reply).
    pub request_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec![DEFAULT_ENDPOINT.to_owned()],
            namespace: DEFAULT_NAMESPACE.to_owned(),
            lease_ttl: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
        }
    }
}

impl EtcdConfig {
    /// Defaults with the given endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Defaults with endpoints from `ETCD_ENDPOINTS` (comma-separated), or
    /// [`DEFAULT_ENDPOINT`] when it is unset or empty.
    pub fn from_env() -> Self {
        let eps: Vec<String> = std::env::var(ENDPOINTS_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if eps.is_empty() {
            Self::default()
        } else {
            Self::new(eps)
        }
    }

    /// Sets the key prefix (a trailing `/` is removed).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the lease TTL.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    fn ttl_secs(&self) -> i64 {
        let ms = self.lease_ttl.as_millis();
        i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX).max(1)
    }
}

/// State shared by the handle and its background tasks.
pub(crate) struct Shared {
    config: EtcdConfig,
    namespace: String,
    ttl_secs: i64,
    /// The current client and its generation (bumped on each reconnect).
    client: Mutex<(u64, Client)>,
    /// The live channel of each watched service.
    watches: Mutex<HashMap<String, Arc<watch::ServiceSender>>>,
}

impl Shared {
    /// The current client and its generation.
    pub(crate) fn client(&self) -> (u64, Client) {
        let guard = lock(&self.client);
        (guard.0, guard.1.clone())
    }

    /// Replaces the client by a fresh connection, unless another task already
    /// did since generation `seen`.
    pub(crate) async fn reconnect(&self, seen: u64) {
        if lock(&self.client).0 != seen {
            return;
        }
        match connect(&self.config).await {
            Ok(fresh) => {
                let mut guard = lock(&self.client);
                if guard.0 == seen {
                    guard.0 += 1;
                    guard.1 = fresh;
                    tracing::info!(generation = guard.0, "etcd: reconnected client");
                }
            }
            Err(e) => tracing::warn!(error = %e, "etcd: reconnect failed"),
        }
    }

    /// `{namespace}/{service}/`
    pub(crate) fn prefix(&self, service: &str) -> String {
        format!("{}/{service}/", self.namespace)
    }

    /// `{namespace}/{service}/{id}`
    pub(crate) fn key(&self, service: &str, id: &str) -> String {
        format!("{}/{service}/{id}", self.namespace)
    }

    /// Runs one etcd request under the request timeout, mapping its errors.
    pub(crate) async fn call<T, F>(&self, what: &str, fut: F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.config.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::unavailable(format!("etcd: {what} failed"), e)),
            Err(_) => Err(Error::Timeout(format!(
                "etcd: {what} took longer than {:?}",
                self.config.request_timeout
            ))),
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code path panics while holding these locks; recover if one did.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn connect(config: &EtcdConfig) -> Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(config.connect_timeout)
        // etcd rejects pings more often than every 5 s, and pings without an
        // open stream: ping only while a watch or keep-alive is open.
        .with_keep_alive(Duration::from_secs(10), config.request_timeout)
        .with_keep_alive_while_idle(false);
    let fut = Client::connect(&config.endpoints, Some(options));
    match tokio::time::timeout(config.connect_timeout, fut).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(Error::unavailable(
            format!("etcd: cannot connect to {:?}", config.endpoints),
            e,
        )),
        Err(_) => Err(Error::Timeout(format!(
            "etcd: connecting to {:?} took longer than {:?}",
            config.endpoints, config.connect_timeout
        ))),
    }
}

/// Capped exponential backoff of the recovery loops.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Backoff {
            next: Duration::from_millis(100),
            max,
        }
    }

    /// Waits the current delay and doubles it (up to the cap).
    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }
}

fn check_name(kind: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.contains('/') {
        return Err(Error::InvalidArgument(format!(
            "discovery: {kind} {value:?} must be non-empty and must not contain '/'"
        )));
    }
    Ok(())
}

/// One registered instance: its keep-alive task and its current lease.
struct Registration {
    lease: Arc<AtomicI64>,
    task: JoinHandle<()>,
}

/// The etcd registry and watcher; see the [module docs](self).
///
/// Share it as `Arc<dyn Discovery>`. Dropping it stops the keep-alives
/// without revoking (like a crash); call [`shutdown`](Self::shutdown) for a
/// graceful exit. Watch channels live on until their last receiver is dropped.
///
/// `register` and `deregister` need etcd: while it is unreachable they fail
/// with [`Error::Unavailable`] or [`Error::Timeout`] (both retryable). A
/// failed `deregister` of an instance of this handle has still stopped its
/// keep-alive, so the instance vanishes when its lease expires. `deregister`
/// of an instance registered elsewhere deletes its key.
///
/// ```no_run
/// use im_core::ports::{Discovery, ServiceInstance};
/// use im_discovery::etcd::{EtcdConfig, EtcdDiscovery};
///
/// # async fn run() -> im_core::Result<()> {
/// let d = EtcdDiscovery::connect(EtcdConfig::from_env()).await?;
/// d.register(ServiceInstance::new("logic", "l1", "http://10.0.0.1:7001")).await?;
/// let live = d.watch("logic").await?;
/// println!("{:?}", *live.borrow());
/// d.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct EtcdDiscovery {
    shared: Arc<Shared>,
    registrations: Mutex<HashMap<(String, String), Registration>>,
}

impl std::fmt::Debug for EtcdDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDiscovery")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl EtcdDiscovery {
    /// Connects to etcd and checks that it answers (one `status` call), so a
    /// wrong endpoint fails here with [`Error::Unavailable`] or
    /// [`Error::Timeout`] rather than later.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(Error::InvalidArgument(
                "etcd: no endpoint configured".to_owned(),
            ));
        }
        let client = connect(&config).await?;
        let namespace = config.namespace.trim_end_matches('/').to_owned();
        let ttl_secs = config.ttl_secs();
        let shared = Arc::new(Shared {
            config,
            namespace,
            ttl_secs,
            client: Mutex::new((0, client)),
            watches: Mutex::new(HashMap::new()),
        });
        let (_, mut c) = shared.client();
        shared
            .call(
                &format!("status of {:?}", shared.config.endpoints),
                c.status(),
            )
            .await?;
        Ok(EtcdDiscovery {
            shared,
            registrations: Mutex::new(HashMap::new()),
        })
    }

    /// Checks that etcd answers now (one `status` call), for readiness probes.
    pub async fn ping(&self) -> Result<()> {
        let (_, mut c) = self.shared.client();
        self.shared
            .call(
                &format!("status of {:?}", self.shared.config.endpoints),
                c.status(),
            )
            .await
            .map(|_| ())
    }

    /// The configuration in use.
    pub fn config(&self) -> &EtcdConfig {
        &self.shared.config
    }

    /// The etcd key of an instance: `{namespace}/{service}/{id}`.
    pub fn key_of(&self, service: &str, id: &str) -> String {
        self.shared.key(service, id)
    }

    /// Gracefully withdraws every instance registered through this handle
    /// (revoking their leases) and stops their keep-alives. Returns the first
    /// error; the other instances are still withdrawn.
    pub async fn shutdown(&self) -> Result<()> {
        let regs: Vec<((String, String), Registration)> =
            lock(&self.registrations).drain().collect();
        let mut first_err = None;
        for ((service, id), reg) in regs {
            let key = self.shared.key(&service, &id);
            if let Err(e) = self.withdraw(reg, Some(&key)).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Stops every keep-alive of this handle WITHOUT revoking the leases, as
    /// if the process had died: the instances disappear once their leases
    /// expire. Dropping the handle does the same.
    pub fn abandon(&self) {
        for (_, reg) in lock(&self.registrations).drain() {
            reg.task.abort();
        }
    }

    /// Stops a registration's keep-alive and revokes its lease; with `key`,
    /// also deletes the key (in case an aborted recovery had just re-put it
    /// under a lease we never learnt of).
    async fn withdraw(&self, reg: Registration, key: Option<&str>) -> Result<()> {
        reg.task.abort();
        // Wait until the task is gone so it cannot grant a new lease after
        // we read the current one.
        let _ = reg.task.await;
        let lease = reg.lease.load(Ordering::SeqCst);
        let (_, mut c) = self.shared.client();
        let revoked = self
            .shared
            .call(&format!("revoke of lease {lease:x}"), c.lease_revoke(lease))
            .await;
        let Some(key) = key else {
            return revoked.map(|_| ());
        };
        if let Err(e) = &revoked {
            // An expired lease is not found; the delete below decides.
            tracing::debug!(error = %e, %key, "etcd: revoke failed, deleting the key");
        }
        self.shared
            .call(&format!("delete of {key}"), c.delete(key, None))
            .await?;
        Ok(())
    }
}

impl Drop for EtcdDiscovery {
    fn drop(&mut self) {
        self.abandon();
    }
}

#[async_trait]
impl Discovery for EtcdDiscovery {
    async fn register(&self, instance: ServiceInstance) -> Result<()> {
        check_name("service", &instance.service)?;
        check_name("id", &instance.id)?;
        let key = self.shared.key(&instance.service, &instance.id);
        let value = serde_json::to_string(&instance)
            .map_err(|e| Error::Internal(format!("discovery: cannot encode instance: {e}")))?;
        let lease = registry::grant_and_put(&self.shared, &key, &value).await?;
        tracing::info!(%key, lease = format_args!("{lease:x}"), "etcd: registered");
        let lease = Arc::new(AtomicI64::new(lease));
        let task = tokio::spawn(registry::keep_alive(
            Arc::clone(&self.shared),
            key,
            value,
            Arc::clone(&lease),
        ));
        let old = lock(&self.registrations).insert(
            (instance.service.clone(), instance.id.clone()),
            Registration { lease, task },
        );
        if let Some(old) = old {
            // The key now belongs to the new lease: revoking the old one
            // does not delete it.
            if let Err(e) = self.withdraw(old, None).await {
                tracing::warn!(error = %e, "etcd: could not revoke the replaced lease");
            }
        }
        Ok(())
    }

    async fn deregister(&self, service: &str, id: &str) -> Result<()> {
        let reg = lock(&self.registrations).remove(&(service.to_owned(), id.to_owned()));
        let key = self.shared.key(service, id);
        match reg {
            Some(reg) => self.withdraw(reg, Some(&key)).await?,
            None => {
                // Not ours (or already gone): delete the key if it exists.
                let (_, mut c) = self.shared.client();
                self.shared
                    .call(&format!("delete of {key}"), c.delete(key.clone(), None))
                    .await?;
            }
        }
        tracing::info!(%key, "etcd: deregistered");
        Ok(())
    }

    async fn watch(
        &self,
        service: &str,
    ) -> Result<tokio::sync::watch::Receiver<Vec<ServiceInstance>>> {
        check_name("service", service)?;
        watch::subscribe(&self.shared, service).await
    }
}
