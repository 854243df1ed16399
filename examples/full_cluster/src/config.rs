//! Configuration: defaults, then a TOML file (`--config`), then `IM_*`
//! environment variables (nested with `__`, e.g. `IM_CONNECT__NODE_ID`), then
//! command-line flags — each layer overriding the one before (figment).

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Settings every role shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cluster {
    /// Redis (queue, sessions, sequences, dedup): a standalone server.
    pub redis_url: String,
    /// Seed nodes of a Redis Cluster to use instead of `redis_url` (empty:
    /// standalone). Env: `IM_REDIS_CLUSTER_URLS` (comma-separated).
    pub redis_cluster_urls: Vec<String>,
    /// MySQL / MariaDB: users, groups and memberships, and the message
    /// archive unless `database_shard_urls` spreads it.
    pub database_url: String,
    /// The message archive (messages, conversation lists, read cursors) spread
    /// over these databases by conversation partition; shard *i* is entry *i*
    /// and the order must never change (resharding: docs/deployment.md).
    /// Empty: the archive is on `database_url`. Env: `DATABASE_SHARD_URLS`
    /// (comma-separated).
    pub database_shard_urls: Vec<String>,
    /// etcd endpoints (discovery).
    pub etcd_endpoints: Vec<String>,
    /// Namespace of Redis keys and etcd keys: deployments sharing servers must differ.
    pub namespace: String,
    /// Queue partitions (every process must agree; changing it needs a
    /// migration, see docs/deployment.md). `redis_shards` is its old name.
    #[serde(alias = "redis_shards")]
    pub partitions: u32,
    /// Secret signing login tokens (api and logic must agree; at least 32 bytes).
    pub jwt_secret: String,
    /// Token lifetime in seconds.
    pub token_ttl_secs: u64,
    /// etcd lease TTL of every registered instance, in seconds.
    pub lease_ttl_secs: u64,
    /// Seconds a graceful shutdown may take before the process exits anyway.
    pub shutdown_grace_secs: u64,
    /// MySQL pool size per process.
    pub mysql_pool: u32,
    /// Create the `audit` consumer group at startup, so an audit consumer
    /// (`examples/audit_log`) sees every entry from the first send. While it
    /// is enabled, entries stay in Redis until the audit consumer acks them.
    pub audit: bool,
    /// PEM certificate chain of every gRPC server (LogicRpc, ConnectRpc):
    /// with `grpc_tls_key`, they serve TLS and register `https://` URLs.
    /// Read at startup (restart to rotate).
    pub grpc_tls_cert: Option<PathBuf>,
    /// PEM private key of `grpc_tls_cert`.
    pub grpc_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) gRPC clients (api→logic, connect→logic,
    /// task→connect) verify servers with; set, they speak TLS. Default when
    /// `grpc_tls_cert` is set: that certificate (a self-signed one).
    pub grpc_tls_ca: Option<PathBuf>,
    /// The name gRPC server certificates carry, when it is not the host of
    /// the registered address (e.g. one certificate for `logic.internal`).
    pub grpc_tls_domain: Option<String>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_cluster_urls: Vec::new(),
            database_url: "mysql://root@127.0.0.1:3306/test".into(),
            database_shard_urls: Vec::new(),
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            namespace: "im".into(),
            partitions: im_core::ports::DEFAULT_PARTITIONS,
            jwt_secret: "change-me-change-me-change-me-change-me".into(),
            token_ttl_secs: 86_400,
            lease_ttl_secs: 5,
            shutdown_grace_secs: 10,
            mysql_pool: 16,
            audit: false,
            grpc_tls_cert: None,
            grpc_tls_key: None,
            grpc_tls_ca: None,
            grpc_tls_domain: None,
        }
    }
}

/// The API role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Api {
    /// HTTP listen address (API, web page, /healthz, /readyz, /metrics).
    pub listen: SocketAddr,
    /// Instance id in discovery.
    pub id: String,
    /// HTTP sends per second per user (0: unlimited).
    pub send_rate: f64,
    /// PEM certificate chain: with `tls_key`, `listen` serves HTTPS
    /// (re-read when the files change).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            id: "api-1".into(),
            send_rate: 200.0,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The Logic role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logic {
    /// gRPC listen address (LogicRpc).
    pub grpc_listen: SocketAddr,
    /// Address others reach it at (default: the listen address).
    pub advertise: Option<String>,
    /// HTTP listen address of /healthz, /readyz, /metrics.
    pub ops_listen: SocketAddr,
    /// Snowflake worker id (0..=1023), unique per logic process; also its instance id.
    pub worker_id: u16,
    /// How long after sending a message may be recalled, in milliseconds.
    pub recall_window_ms: u64,
    /// Multi-device policy per device label: `single` kicks the user's older
    /// sessions of that label when a new one connects; unlisted labels allow
    /// many (`[logic.device_policies] mobile = "single"`).
    pub device_policies: std::collections::HashMap<String, im_core::logic::DevicePolicy>,
    /// A send-hook endpoint called before and after sends (empty: none); see
    /// `im_transport::webhook`.
    pub webhook_url: String,
    /// The HMAC secret signing webhook calls.
    pub webhook_secret: String,
    /// Accept sends when the webhook fails (default: refuse them with `unavailable`).
    pub webhook_fail_open: bool,
    /// Password hashes computed at once (0: the number of cores); bounds a
    /// login flood's memory to this × 19 MiB.
    pub hash_concurrency: usize,
    /// Logins and registrations waiting for a hashing slot (0: 32 per slot);
    /// beyond it they answer 503 with `Retry-After`.
    pub hash_queue: usize,
    /// Who may send 1:1 messages to whom (v1.2): `anyone` (default; blocks
    /// still apply) or `contacts_only`.
    pub direct_messages: im_core::logic::DirectMessages,
    /// How long the block/contacts answer of a (sender, peer) pair is reused
    /// by this instance's send path, in ms (0: ask MySQL for every batch);
    /// a block made through another logic instance applies within it.
    pub relation_cache_ttl_ms: u64,
    /// Whether new groups show their history to members added later
    /// (default false: new members read from their join on).
    pub new_groups_show_history: bool,
    /// How long after sending its sender may edit a text message, in ms.
    pub edit_window_ms: u64,
    /// Send batchers of this instance (a conversation always goes to the
    /// same one). Fewer batchers make larger batches at a given rate (one
    /// Redis round trip per batch); more overlap more round trips.
    pub send_batchers: usize,
}

impl Default for Logic {
    fn default() -> Self {
        Logic {
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 7001)),
            advertise: None,
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9101)),
            worker_id: 1,
            recall_window_ms: 120_000,
            device_policies: std::collections::HashMap::new(),
            webhook_url: String::new(),
            webhook_secret: String::new(),
            webhook_fail_open: false,
            hash_concurrency: 0,
            hash_queue: 0,
            direct_messages: im_core::logic::DirectMessages::Anyone,
            relation_cache_ttl_ms: 2_000,
            new_groups_show_history: false,
            edit_window_ms: 86_400_000,
            send_batchers: im_core::logic::LogicConfig::default().batchers,
        }
    }
}

/// The Connect role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Connect {
    /// WebSocket listen address (`/ws`, plus /healthz, /readyz, /metrics).
    pub listen: SocketAddr,
    /// gRPC listen address (ConnectRpc).
    pub grpc_listen: SocketAddr,
    /// Address others reach the gRPC server at (default: the listen address).
    pub advertise: Option<String>,
    /// The node id session routes carry; unique per connect process.
    pub node_id: String,
    /// The URL clients are sent to (default: ws://{listen}/ws, or
    /// wss://{listen}/ws with TLS).
    pub public_ws_url: Option<String>,
    /// PEM certificate chain: with `tls_key`, `listen` serves WSS (and
    /// HTTPS ops endpoints), re-read when the files change.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Sends per second per user on this node (0: unlimited).
    pub send_rate: f64,
    /// Outbound frames queued per session before it is closed as too slow.
    pub session_queue: usize,
    /// Allowed Origin values (empty: any).
    pub allowed_origins: Vec<String>,
    /// `SendBatch` calls this node keeps in flight to Logic at once. Sends
    /// that arrive meanwhile wait and go in the next call, so fewer calls in
    /// flight make larger batches under load (fewer RPCs per message) at the
    /// cost of a little queueing when Logic is slow.
    pub logic_in_flight: usize,
}

impl Default for Connect {
    fn default() -> Self {
        Connect {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 7101)),
            advertise: None,
            node_id: "connect-1".into(),
            public_ws_url: None,
            tls_cert: None,
            tls_key: None,
            send_rate: 200.0,
            session_queue: 1024,
            allowed_origins: Vec::new(),
            logic_in_flight: 8,
        }
    }
}

/// The Task role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Task {
    /// HTTP listen address of /healthz, /readyz, /metrics.
    pub ops_listen: SocketAddr,
    /// Instance id (also the prefix of its consumer names); unique per task process.
    pub id: String,
    /// Consumers in the `push` group (0: this process does not push, e.g. a
    /// persist-only fleet).
    pub push_workers: usize,
    /// Consumers in the `persist` group (0: this process does not persist,
    /// e.g. while the archive is resharded; the backlog waits in the queue).
    pub persist_workers: usize,
    /// Entries read per fetch.
    pub batch: usize,
    /// Seconds an entry may stay pending before another consumer takes it over.
    pub claim_idle_secs: u64,
    /// Milliseconds a persist fetch keeps reading for a fuller batch (rows
    /// are then written in fewer, larger transactions; 0: never).
    pub persist_linger_ms: u64,
}

impl Default for Task {
    fn default() -> Self {
        Task {
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9201)),
            id: "task-1".into(),
            push_workers: 2,
            persist_workers: 2,
            batch: 512,
            claim_idle_secs: 10,
            persist_linger_ms: 20,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Shared settings.
    pub cluster: Cluster,
    /// API role.
    pub api: Api,
    /// Logic role.
    pub logic: Logic,
    /// Connect role.
    pub connect: Connect,
    /// Task role.
    pub task: Task,
    /// Limits on login, registration and WebSocket upgrades (api and connect
    /// roles; counted in Redis), e.g. `IM_FRONT_DOOR__ENABLED=false`.
    pub front_door: im_core::frontdoor::FrontDoorSettings,
    /// Attachments on S3-compatible storage (api and logic roles), e.g.
    /// `IM_ATTACHMENTS__ENABLED=true`, `IM_ATTACHMENTS__S3_ENDPOINT=…`.
    pub attachments: Attachments,
    /// Offline notifications (task role sends them, api role registers
    /// devices), e.g. `IM_NOTIFICATIONS__ENABLED=true`.
    pub notifications: Notifications,
    /// Log JSON lines instead of text.
    pub log_json: bool,
}

/// `[attachments]`: uploads and downloads of attachments (protocol v1.2),
/// the bytes in an S3 bucket (clients upload and download there directly).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Attachments {
    /// Serve uploads and downloads (api) and check attachment messages
    /// (logic). Off: image and file bodies stay unchecked objects (v1).
    pub enabled: bool,
    /// S3 endpoint as im reaches it (`http://127.0.0.1:8333`; empty: AWS).
    pub s3_endpoint: String,
    /// S3 endpoint as clients reach it, when different (presigned URLs
    /// name it); empty: `s3_endpoint`.
    pub s3_public_endpoint: String,
    /// Bucket (must exist).
    pub s3_bucket: String,
    /// Region.
    pub s3_region: String,
    /// Access key id.
    pub s3_access_key_id: String,
    /// Secret access key.
    pub s3_secret_access_key: String,
    /// Per-kind size limits and mime allowlists, link lifetimes, delete on
    /// recall (`[attachments.limits]`, see `im_core::attachments::AttachmentPolicy`).
    pub limits: im_core::attachments::AttachmentPolicy,
}

impl std::fmt::Debug for Attachments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachments")
            .field("enabled", &self.enabled)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_bucket", &self.s3_bucket)
            .finish_non_exhaustive()
    }
}

impl Default for Attachments {
    fn default() -> Self {
        Attachments {
            enabled: false,
            s3_endpoint: String::new(),
            s3_public_endpoint: String::new(),
            s3_bucket: "im-attachments".into(),
            s3_region: "us-east-1".into(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
            limits: im_core::attachments::AttachmentPolicy::default(),
        }
    }
}

/// `[notifications]`: notifications for users with no online session
/// (protocol v1.2). Devices register tokens per platform; each platform
/// whose notifier is configured here is served.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Notifications {
    /// Register devices (api) and notify them (task).
    pub enabled: bool,
    /// A burst to one user in one conversation within this many ms is one
    /// notification.
    pub window_ms: u64,
    /// Signed webhook for `platform: "webhook"` tokens (your own push gateway).
    pub webhook_url: String,
    /// Its HMAC secret (same scheme as the send hook).
    pub webhook_secret: String,
    /// Google service-account JSON file for `fcm` tokens (FCM HTTP v1).
    pub fcm_service_account_file: Option<PathBuf>,
    /// APNs auth key (.p8) file for `apns` tokens.
    pub apns_key_file: Option<PathBuf>,
    /// APNs key id.
    pub apns_key_id: String,
    /// APNs team id.
    pub apns_team_id: String,
    /// APNs topic (the app's bundle id).
    pub apns_topic: String,
    /// Use the APNs sandbox.
    pub apns_sandbox: bool,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications")
            .field("enabled", &self.enabled)
            .field("webhook_url", &self.webhook_url)
            .field("fcm_service_account_file", &self.fcm_service_account_file)
            .field("apns_key_file", &self.apns_key_file)
            .finish_non_exhaustive()
    }
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            enabled: false,
            window_ms: 3_000,
            webhook_url: String::new(),
            webhook_secret: String::new(),
            fcm_service_account_file: None,
            apns_key_file: None,
            apns_key_id: String::new(),
            apns_team_id: String::new(),
            apns_topic: String::new(),
            apns_sandbox: false,
        }
    }
}

impl Attachments {
    /// The S3 client configuration.
    pub fn s3(&self) -> im_store::s3::S3Config {
        im_store::s3::S3Config::new(&self.s3_endpoint, &self.s3_bucket)
            .with_region(&self.s3_region)
            .with_credentials(&self.s3_access_key_id, &self.s3_secret_access_key)
            .with_public_endpoint(&self.s3_public_endpoint)
    }
}

/// Loads defaults ← TOML file ← `IM_*` env ← `overrides` (from flags).
pub fn load(file: Option<&PathBuf>, overrides: figment::value::Dict) -> Result<Config, String> {
    let mut f = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        f = f.merge(Toml::file(path));
    }
    // Conventional variables of the machine, then IM_* which win.
    for (var, key) in [
        ("REDIS_URL", "cluster.redis_url"),
        ("DATABASE_URL", "cluster.database_url"),
    ] {
        if let Ok(v) = std::env::var(var) {
            f = f.merge(Serialized::global(key, v));
        }
    }
    for (var, key) in [
        ("ETCD_ENDPOINTS", "cluster.etcd_endpoints"),
        ("IM_REDIS_CLUSTER_URLS", "cluster.redis_cluster_urls"),
        ("DATABASE_SHARD_URLS", "cluster.database_shard_urls"),
        ("IM_DATABASE_SHARD_URLS", "cluster.database_shard_urls"),
    ] {
        if let Ok(v) = std::env::var(var) {
            let list: Vec<String> = v
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            f = f.merge(Serialized::global(key, list));
        }
    }
    f = f.merge(
        Env::prefixed("IM_")
            .filter(|k| k.as_str().contains("__") || k == "log_json")
            .split("__"),
    );
    for (k, v) in overrides {
        f = f.merge(Serialized::global(&k, v));
    }
    let c: Config = f.extract().map_err(|e| format!("configuration: {e}"))?;
    for (key, value) in [
        ("logic.send_batchers", c.logic.send_batchers),
        ("connect.logic_in_flight", c.connect.logic_in_flight),
    ] {
        if value == 0 {
            return Err(format!("configuration: {key} must be at least 1"));
        }
    }
    let shards = c.cluster.database_shard_urls.len();
    if shards > c.cluster.partitions.max(1) as usize {
        return Err(format!(
            "configuration: {shards} database_shard_urls over {} partitions: a shard is one or \
             more whole partitions, so at most `partitions` shards",
            c.cluster.partitions
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn shard_urls_come_from_toml() {
        let dir = std::env::temp_dir().join(format!("im-config-shards-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("im.toml");
        std::fs::write(
            &path,
            "[cluster]\ndatabase_shard_urls = [\"mysql://a/im\", \"mysql://b/im\"]\n",
        )
        .unwrap();
        let c = load(Some(&path), figment::value::Dict::new()).unwrap();
        assert_eq!(
            c.cluster.database_shard_urls,
            ["mysql://a/im", "mysql://b/im"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn send_path_batching_settings_are_read_and_zero_is_refused() {
        let dir = std::env::temp_dir().join(format!("im-config-batching-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("im.toml");
        std::fs::write(
            &path,
            "[logic]\nsend_batchers = 1\n[connect]\nlogic_in_flight = 2\n",
        )
        .unwrap();
        let c = load(Some(&path), figment::value::Dict::new()).unwrap();
        assert_eq!((c.logic.send_batchers, c.connect.logic_in_flight), (1, 2));
        let defaults = load(None, figment::value::Dict::new()).unwrap();
        assert_eq!(
            (
                defaults.logic.send_batchers,
                defaults.connect.logic_in_flight
            ),
            (4, 8),
            "the defaults stay what they were"
        );
        std::fs::write(&path, "[connect]\nlogic_in_flight = 0\n").unwrap();
        let e = load(Some(&path), figment::value::Dict::new()).unwrap_err();
        assert!(
            e.contains("connect.logic_in_flight must be at least 1"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tls_keys_are_read_from_toml() {
        let dir = std::env::temp_dir().join(format!("im-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("im.toml");
        std::fs::write(
            &path,
            "[cluster]\ngrpc_tls_cert = \"g.pem\"\ngrpc_tls_key = \"gk.pem\"\n\
             grpc_tls_ca = \"ca.pem\"\ngrpc_tls_domain = \"im.internal\"\n\
             [api]\ntls_cert = \"a.pem\"\ntls_key = \"ak.pem\"\n\
             [connect]\ntls_cert = \"c.pem\"\ntls_key = \"ck.pem\"\n",
        )
        .unwrap();
        let c = load(Some(&path), figment::value::Dict::new()).unwrap();
        assert_eq!(c.cluster.grpc_tls_cert, Some(PathBuf::from("g.pem")));
        assert_eq!(c.cluster.grpc_tls_key, Some(PathBuf::from("gk.pem")));
        assert_eq!(c.cluster.grpc_tls_ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(c.cluster.grpc_tls_domain.as_deref(), Some("im.internal"));
        assert_eq!(c.api.tls_key, Some(PathBuf::from("ak.pem")));
        assert_eq!(c.connect.tls_cert, Some(PathBuf::from("c.pem")));
        // Without them everything is plain, as before.
        let plain = Config::default();
        assert!(plain.api.tls_cert.is_none() && plain.cluster.grpc_tls_ca.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
