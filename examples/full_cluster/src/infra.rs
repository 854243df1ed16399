//! What every role needs: connections to Redis, MySQL and etcd, readiness
//! checks, the operations HTTP server, and shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use im_core::id::{ConversationId, GroupId};
use im_core::ports::{ConversationStore, MessageStore, SequenceAllocator};
use im_discovery::etcd::{EtcdConfig, EtcdDiscovery};
use im_store::mysql::{MySqlConfig, MySqlShards, MySqlStore};
use im_store::postgres::PgStore;
use im_store::redis::{RedisConfig, RedisConn};
use im_store::sql::{AnyStore, Dialect, SqlConfig};
use im_transport::grpc::GrpcClientConfig;
use im_transport::http::{install_metrics, ReadyCheck};
use im_transport::server::{app, serve, AppParts};
use im_transport::tls::{ClientTls, ServerTls, TlsFiles};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Cancelled on the first SIGTERM or SIGINT.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("signal received: shutting down");
        t.cancel();
    });
    token
}

/// Retries `connect` with capped backoff until it succeeds or `shutdown`
/// fires: a role started before its dependencies waits for them instead of
/// exiting (deployments start in any order).
pub async fn until_up<T, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut connect: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match connect().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "{what} not reachable yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(format!("stopped while waiting for {what}: {e}")),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Connects to Redis with the cluster's namespace and partitions.
pub async fn redis(c: &Config) -> Result<RedisConn, String> {
    let (base, target) = if c.cluster.redis_cluster_urls.is_empty() {
        (
            RedisConfig::new(&c.cluster.redis_url),
            format!("Redis at {}", c.cluster.redis_url),
        )
    } else {
        (
            RedisConfig::cluster(c.cluster.redis_cluster_urls.clone()),
            format!(
                "the Redis Cluster at {}",
                c.cluster.redis_cluster_urls.join(",")
            ),
        )
    };
    let cfg = base
        .with_prefix(&c.cluster.namespace)
        .with_partitions(c.cluster.partitions);
    RedisConn::connect(cfg)
        .await
        .map_err(|e| format!("{target}: {e}"))
}

/// The front door of the api and connect roles: its limits from
/// `[front_door]`, its counts in Redis (shared by every instance).
pub async fn front_door(
    c: &Config,
    shutdown: &CancellationToken,
) -> Result<Arc<im_core::frontdoor::FrontDoor>, String> {
    let config = c.front_door.to_config()?;
    if !c.front_door.enabled {
        tracing::warn!(
            "the front door is off: logins, registrations and connections are not limited"
        );
    }
    let conn = until_up("redis", shutdown, || redis(c)).await?;
    Ok(Arc::new(im_core::frontdoor::FrontDoor::new(
        Arc::new(conn.throttle()),
        config,
    )))
}

/// Connects to MySQL (applying migrations): the reshard tool's primary.
pub async fn mysql(c: &Config) -> Result<MySqlStore, String> {
    let mut cfg = MySqlConfig::new(&c.cluster.database_url);
    cfg.max_connections = c.cluster.mysql_pool;
    MySqlStore::connect(&cfg)
        .await
        .map_err(|e| format!("MySQL at {}: {e}", redact(&c.cluster.database_url)))
}

/// Connects to the primary database (applying migrations): MySQL / MariaDB
/// (`mysql://`, `mariadb://`) or PostgreSQL (`postgres://`); users, groups,
/// contacts and devices live there, and the archive unless it is sharded.
pub async fn database(c: &Config) -> Result<AnyStore, String> {
    let url = &c.cluster.database_url;
    match AnyStore::dialect_of(url) {
        Some(Dialect::MySql) => Ok(AnyStore::MySql(mysql(c).await?)),
        Some(Dialect::Postgres) => {
            let mut cfg = SqlConfig::new(url);
            cfg.max_connections = c.cluster.mysql_pool;
            PgStore::connect_with(&cfg)
                .await
                .map(AnyStore::Postgres)
                .map_err(|e| format!("PostgreSQL at {}: {e}", redact(url)))
        }
        _ => Err(format!(
            "cluster.database_url {:?}: expected mysql://, mariadb:// or postgres:// \
             (every process shares it, so SQLite cannot serve a cluster)",
            redact(url)
        )),
    }
}

fn redact(url: &str) -> String {
    im_store::mysql::redact(url)
}

/// The message archive and conversation lists, on the primary database or
/// (MySQL only) spread over `cluster.database_shard_urls`.
pub struct Archive {
    /// The messages.
    pub messages: Arc<dyn MessageStore>,
    /// Conversation lists and read cursors.
    pub conversations: Arc<dyn ConversationStore>,
    /// The MySQL shards, when the archive is sharded.
    pub shards: Option<MySqlShards>,
}

/// The archive over `primary` (see [`Archive`]).
pub async fn archive(c: &Config, primary: &AnyStore) -> Result<Archive, String> {
    match primary {
        AnyStore::MySql(m) => {
            let shards = mysql_archive(c, m).await?;
            Ok(Archive {
                messages: shards.messages(),
                conversations: shards.conversations(),
                shards: (!c.cluster.database_shard_urls.is_empty()).then_some(shards),
            })
        }
        other if c.cluster.database_shard_urls.is_empty() => Ok(Archive {
            messages: other.messages(),
            conversations: other.conversations(),
            shards: None,
        }),
        _ => Err("cluster.database_shard_urls: the archive shards on MySQL / MariaDB only".into()),
    }
}

/// The MySQL archive: on the primary database, or spread over
/// `cluster.database_shard_urls` (each connected and migrated).
pub async fn mysql_archive(c: &Config, primary: &MySqlStore) -> Result<MySqlShards, String> {
    if c.cluster.database_shard_urls.is_empty() {
        return MySqlShards::from_stores(vec![primary.clone()], c.cluster.partitions)
            .map_err(|e| e.to_string());
    }
    let mut cfg = MySqlConfig::new(&c.cluster.database_url);
    cfg.max_connections = c.cluster.mysql_pool;
    let shards = MySqlShards::connect(&cfg, &c.cluster.database_shard_urls, c.cluster.partitions)
        .await
        .map_err(|e| format!("archive shards: {e}"))?;
    tracing::info!(
        shards = shards.stores().len(),
        partitions = c.cluster.partitions,
        "message archive sharded by conversation partition"
    );
    Ok(shards)
}

/// The attachment storage, when `[attachments]` is enabled.
pub fn objects(c: &Config) -> Result<Option<Arc<im_store::s3::S3ObjectStorage>>, String> {
    if !c.attachments.enabled {
        return Ok(None);
    }
    im_store::s3::S3ObjectStorage::new(c.attachments.s3())
        .map(|s| Some(Arc::new(s)))
        .map_err(|e| format!("[attachments]: {e}"))
}

/// The notifier of every platform `[notifications]` configures.
pub fn notifier(c: &Config) -> Result<im_core::task::ByPlatform, String> {
    use im_core::ports::Platform;
    use im_transport::notify::{ApnsConfig, ApnsNotifier, FcmConfig, FcmNotifier, WebhookNotifier};
    let n = &c.notifications;
    let mut by = im_core::task::ByPlatform::new();
    if !n.webhook_url.is_empty() {
        let w = WebhookNotifier::new(n.webhook_url.clone(), n.webhook_secret.as_bytes().to_vec())
            .map_err(|e| format!("[notifications] webhook: {e}"))?;
        by = by.with(Platform::Webhook, Arc::new(w));
    }
    if let Some(path) = &n.fcm_service_account_file {
        let json = std::fs::read_to_string(path)
            .map_err(|e| format!("[notifications] {}: {e}", path.display()))?;
        let fcm = FcmConfig::from_service_account_json(&json)
            .and_then(FcmNotifier::new)
            .map_err(|e| format!("[notifications] FCM: {e}"))?;
        by = by.with(Platform::Fcm, Arc::new(fcm));
    }
    if let Some(path) = &n.apns_key_file {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("[notifications] {}: {e}", path.display()))?;
        let mut cfg = ApnsConfig::new(&n.apns_team_id, &n.apns_key_id, pem, &n.apns_topic);
        if n.apns_sandbox {
            cfg = cfg.sandbox();
        }
        let apns = ApnsNotifier::new(cfg).map_err(|e| format!("[notifications] APNs: {e}"))?;
        by = by.with(Platform::Apns, Arc::new(apns));
    }
    if by.is_empty() {
        return Err("[notifications] is enabled but no notifier is configured \
                    (webhook_url, fcm_service_account_file or apns_key_file)"
            .into());
    }
    Ok(by)
}

/// Connects to etcd with the cluster's namespace and lease TTL.
pub async fn etcd(c: &Config) -> Result<Arc<EtcdDiscovery>, String> {
    let cfg = EtcdConfig::new(c.cluster.etcd_endpoints.clone())
        .with_namespace(format!("/{}/services", c.cluster.namespace))
        .with_lease_ttl(Duration::from_secs(c.cluster.lease_ttl_secs.max(1)));
    EtcdDiscovery::connect(cfg)
        .await
        .map(Arc::new)
        .map_err(|e| format!("etcd at {:?}: {e}", c.cluster.etcd_endpoints))
}

/// Readiness of Redis: one GET.
pub struct RedisReady(pub RedisConn);

#[async_trait]
impl ReadyCheck for RedisReady {
    fn name(&self) -> &str {
        "redis"
    }
    async fn check(&self) -> Result<(), String> {
        self.0
            .sequences()
            .current(ConversationId::Group(GroupId(0)))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Readiness of a SQL database: `SELECT 1`.
pub struct SqlReady(pub AnyStore, pub String);

impl SqlReady {
    /// The primary database.
    pub fn primary(store: &AnyStore) -> Arc<dyn ReadyCheck> {
        let name = match store.dialect() {
            Dialect::Postgres => "postgres",
            _ => "mysql",
        };
        Arc::new(SqlReady(store.clone(), name.into()))
    }

    /// The archive shards, when the archive is sharded.
    pub fn shards(archive: &Archive) -> Vec<Arc<dyn ReadyCheck>> {
        let Some(shards) = &archive.shards else {
            return Vec::new();
        };
        shards
            .stores()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Arc::new(SqlReady(
                    AnyStore::MySql(s.clone()),
                    format!("mysql-shard-{i}"),
                )) as _
            })
            .collect()
    }
}

#[async_trait]
impl ReadyCheck for SqlReady {
    fn name(&self) -> &str {
        &self.1
    }
    async fn check(&self) -> Result<(), String> {
        let done = match &self.0 {
            AnyStore::MySql(s) => sqlx::query("SELECT 1").execute(s.pool()).await.map(|_| ()),
            AnyStore::Postgres(s) => sqlx::query("SELECT 1").execute(s.pool()).await.map(|_| ()),
            AnyStore::Sqlite(s) => sqlx::query("SELECT 1").execute(s.pool()).await.map(|_| ()),
        };
        done.map_err(|e| e.to_string())
    }
}

/// Readiness of etcd: one `status` call.
pub struct EtcdReady(pub Arc<EtcdDiscovery>);

#[async_trait]
impl ReadyCheck for EtcdReady {
    fn name(&self) -> &str {
        "etcd"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// Serves /healthz, /readyz and /metrics on `addr` until `stop`.
pub async fn ops_server(
    addr: SocketAddr,
    checks: Vec<Arc<dyn ReadyCheck>>,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let router = app(AppParts {
        ready: checks,
        metrics: Some(install_metrics()),
        ..AppParts::default()
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = serve(listener, router, stop).await {
            tracing::error!(error = %e, "ops server failed");
        }
    }))
}

/// Binds a TCP listener with a clear error.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// The URL peers use to reach a gRPC server (`https://` when it serves TLS).
pub fn grpc_url(advertise: &Option<String>, listen: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    match advertise {
        Some(a) if a.starts_with("http") => a.clone(),
        Some(a) => format!("{scheme}://{a}"),
        None => format!("{scheme}://{listen}"),
    }
}

/// The certificate and key of this process's gRPC servers, checked now
/// (a bad file is a startup error naming it); `None`: plain gRPC.
pub fn grpc_server_tls(c: &Config) -> Result<Option<TlsFiles>, String> {
    let files = TlsFiles::from_options(
        c.cluster.grpc_tls_cert.clone(),
        c.cluster.grpc_tls_key.clone(),
        "cluster.grpc_tls_cert/grpc_tls_key",
    )
    .map_err(|e| e.to_string())?;
    if let Some(f) = &files {
        f.read_pem().map_err(|e| e.to_string())?;
    }
    Ok(files)
}

/// The gRPC client settings: TLS with `cluster.grpc_tls_ca` (or the
/// servers' own certificate) when either is set.
pub fn grpc_client_config(c: &Config) -> Result<GrpcClientConfig, String> {
    let ca = c
        .cluster
        .grpc_tls_ca
        .as_ref()
        .or(c.cluster.grpc_tls_cert.as_ref());
    let tls = match ca {
        Some(path) => Some(
            ClientTls::from_ca_file(path, c.cluster.grpc_tls_domain.clone())
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    Ok(GrpcClientConfig {
        tls,
        ..GrpcClientConfig::default()
    })
}

/// The HTTPS/WSS settings of a listener from its `tls_cert` / `tls_key`,
/// loaded now (a bad file is a startup error naming it); `None`: plain.
pub fn http_tls(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    what: &str,
) -> Result<Option<Arc<ServerTls>>, String> {
    let files =
        TlsFiles::from_options(cert.clone(), key.clone(), what).map_err(|e| e.to_string())?;
    match files {
        Some(f) => Ok(Some(Arc::new(
            ServerTls::load(f).map_err(|e| e.to_string())?,
        ))),
        None => Ok(None),
    }
}

/// Waits for `fut` at most the configured grace period.
pub async fn within_grace<F: std::future::Future>(c: &Config, what: &str, fut: F) {
    if tokio::time::timeout(
        Duration::from_secs(c.cluster.shutdown_grace_secs.max(1)),
        fut,
    )
    .await
    .is_err()
    {
        tracing::warn!("{what} did not finish within the grace period");
    }
}

#[cfg(test)]
mod tests {
    use super::grpc_url;

    #[test]
    fn grpc_urls_say_https_when_the_server_speaks_tls() {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 7001));
        assert_eq!(grpc_url(&None, listen, false), "http://127.0.0.1:7001");
        assert_eq!(grpc_url(&None, listen, true), "https://127.0.0.1:7001");
        assert_eq!(
            grpc_url(&Some("logic-1:7001".into()), listen, true),
            "https://logic-1:7001"
        );
        assert_eq!(
            grpc_url(&Some("https://l.example:443".into()), listen, false),
            "https://l.example:443"
        );
    }
}
