//! The quickstart's wiring as a library: [`Quickstart::start`] builds the
//! node (all four layers) and the axum app from [`Settings`], so the binary
//! and the tests start exactly the same thing.
//!
//! Storage: by default every port is in memory. With
//! [`Settings::data`] = `sqlite://path/to/im.db` users, groups, messages and
//! conversation lists (read cursors) live in SQLite (durable across
//! restarts) while the queue, sessions, sequences and dedup stay in memory;
//! sequences are seeded from the stored messages by
//! [`SeededSequenceAllocator`].

use std::sync::Arc;

use axum::Router;
use im_core::attachments::AttachmentPolicy;
use im_core::builder::NodeBuilder;
use im_core::frontdoor::{FrontDoor, FrontDoorConfig};
use im_core::memory::{MemoryDeviceStore, MemoryObjectStorage, MemoryThrottle};
use im_core::node::{Node, NodeConfig};
use im_core::ports::{DeviceStore, Platform};
use im_core::task::notify::{NotifyConfig, NotifyDispatcher};
use im_core::task::{ByPlatform, OfflineNotifier, UnreadBadge};
use im_store::s3::{S3Config, S3ObjectStorage};
use im_store::sqlite::SqliteStore;
use im_transport::app::AppBuilder;
use im_transport::http::attachments::Attachments;
use im_transport::http::ApiConfig;
use im_transport::notify::WebhookNotifier;
use im_transport::tls::TlsFiles;
use tokio_util::sync::CancellationToken;

pub use im_core::compose::SeededSequenceAllocator;

/// What the quickstart runs with (flags, environment and config file merged).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Secret signing the login tokens.
    pub secret: String,
    /// Public WebSocket URL answered by `GET /api/v1/connect`.
    pub public_ws_url: Option<String>,
    /// Sends per second allowed per user (0 = unlimited).
    pub send_rate: f64,
    /// Where users, groups, messages and conversation lists live: `None` for
    /// memory, or a `sqlite:` URL.
    pub data: Option<String>,
    /// Serve the web chat page at `/`.
    pub web_page: bool,
    /// Who may send 1:1 messages to whom (v1.2; default anyone).
    pub direct_messages: im_core::logic::DirectMessages,
    /// Check blocks on 1:1 sends (default on; off only to measure their cost).
    pub relation_checks: bool,
    /// Limits on login, registration and WebSocket upgrades (on by default).
    pub front_door: FrontDoorConfig,
    /// Serve HTTPS and WSS with this certificate and key (reloaded when the
    /// files change); `None`: plain HTTP and WS.
    pub tls: Option<TlsFiles>,
    /// Attachments (uploads and downloads) in memory with these limits, the
    /// bytes served by this process under `/api/v1/objects/`; `None`: off.
    pub attachments: Option<AttachmentPolicy>,
    /// Most bytes the in-memory attachments may hold (default 256 MiB).
    pub attachments_max_bytes: u64,
    /// Keep attachments in this S3 bucket instead of memory (clients then
    /// upload and download there directly).
    pub attachments_s3: Option<S3Config>,
    /// Offline notifications through a signed webhook: `(url, secret)`.
    /// Devices register with `platform: "webhook"`; `None`: off.
    pub notify_webhook: Option<(String, String)>,
    /// How long a burst of messages to one offline user in one conversation
    /// is gathered into one notification (default 3 s).
    pub notify_window: std::time::Duration,
}

impl Settings {
    /// Defaults (200 sends/s, in memory, with the web page) around a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Settings {
            secret: secret.into(),
            public_ws_url: None,
            send_rate: 200.0,
            data: None,
            web_page: true,
            direct_messages: im_core::logic::DirectMessages::Anyone,
            relation_checks: true,
            front_door: FrontDoorConfig::default(),
            tls: None,
            attachments: Some(AttachmentPolicy::default()),
            attachments_max_bytes: 256 << 20,
            attachments_s3: None,
            notify_webhook: None,
            notify_window: std::time::Duration::from_secs(3),
        }
    }
}

/// Normalizes a `--data` URL for [`SqliteStore::open`]: only `sqlite:` URLs
/// are accepted, and a file database without a `mode` gets `mode=rwc`
/// (create the file if missing).
pub fn sqlite_url(data: &str) -> Result<String, String> {
    let data = data.trim();
    if !data.starts_with("sqlite:") {
        return Err(format!(
            "unsupported --data URL {data:?}: expected sqlite://path/to/im.db"
        ));
    }
    let path = data
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() {
        return Err(format!("--data URL {data:?} names no database file"));
    }
    let memory = data.contains(":memory:");
    let has_mode = data
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("mode=")));
    Ok(if memory || has_mode {
        data.to_owned()
    } else if data.contains('?') {
        format!("{data}&mode=rwc")
    } else {
        format!("{data}?mode=rwc")
    })
}

/// The node's builder with its storage set, and the SQLite database behind
/// some of its ports.
pub struct Storage {
    /// The node's ports so far (everything else is in memory).
    pub builder: NodeBuilder,
    /// The database holding users, groups and messages (with `--data`).
    pub sqlite: Option<SqliteStore>,
}

impl Storage {
    /// All in memory, or (with `data`) users, groups, contacts, messages and
    /// conversation lists in SQLite, with sequences seeded from the stored
    /// messages.
    pub async fn open(secret: &[u8], data: Option<&str>) -> Result<Storage, String> {
        let builder = NodeBuilder::new().with_secret(secret);
        let Some(data) = data else {
            return Ok(Storage {
                builder,
                sqlite: None,
            });
        };
        let url = sqlite_url(data)?;
        let store = SqliteStore::open(&url)
            .await
            .map_err(|e| format!("cannot open --data {url}: {e}"))?;
        // Seqs stay in memory: the builder seeds them from this archive.
        let builder = builder
            .with_users(Arc::new(store.users()))
            .with_groups(Arc::new(store.groups()))
            .with_messages(Arc::new(store.messages()))
            .with_conversations(Arc::new(store.conversations()))
            .with_contacts(Arc::new(store.contacts()));
        Ok(Storage {
            builder,
            sqlite: Some(store),
        })
    }
}

/// A started quickstart: the node and the app serving it.
pub struct Quickstart {
    /// All four layers.
    pub node: Node,
    /// The app: API (`/api/v1`, with `/api/v1/openapi.json`), `/ws`, the web
    /// page, `/healthz`, `/readyz`, `/metrics`.
    pub router: Router,
    /// Cancel to stop serving (WebSocket sessions close).
    pub shutdown: CancellationToken,
    sqlite: Option<SqliteStore>,
}

impl Quickstart {
    /// Opens the storage and starts the node and the app (not yet listening).
    pub async fn start(settings: &Settings) -> Result<Quickstart, String> {
        let storage = Storage::open(settings.secret.as_bytes(), settings.data.as_deref()).await?;
        let rate = (settings.send_rate > 0.0).then_some(settings.send_rate);
        let burst = settings.send_rate.max(1.0) * 2.0;
        let mut config = NodeConfig::default();
        config.connect.send_rate = rate;
        config.connect.send_burst = burst;
        config.logic.direct_messages = settings.direct_messages;
        config.logic.relation_checks = settings.relation_checks;
        let mut builder = storage.builder;
        // Attachments in memory, their signed URLs relative to this server;
        // or in an S3 bucket.
        let attachments = match (settings.attachments.clone(), &settings.attachments_s3) {
            (None, _) => None,
            (Some(policy), Some(s3)) => {
                let objects =
                    Arc::new(S3ObjectStorage::new(s3.clone()).map_err(|e| e.to_string())?);
                builder = builder.with_objects(objects.clone());
                config.logic.attachments = policy.clone();
                Some(Attachments::new(objects, policy))
            }
            (Some(policy), None) => {
                let key = format!("{}:objects", settings.secret);
                let objects = Arc::new(MemoryObjectStorage::new(
                    "",
                    key.as_bytes(),
                    settings.attachments_max_bytes,
                ));
                builder = builder.with_objects(objects.clone());
                config.logic.attachments = policy.clone();
                Some(Attachments::in_memory(objects, policy))
            }
        };
        let shutdown = CancellationToken::new();
        let (builder, devices) = notifications(settings, builder, &storage.sqlite, &shutdown)?;
        let node = builder
            .with_config(config)
            .start()
            .await
            .map_err(|e| e.to_string())?;
        // One node: its own counts in memory are the whole deployment's.
        let door = FrontDoor::new(Arc::new(MemoryThrottle::new()), settings.front_door.clone());
        let mut app = AppBuilder::for_node(&node)
            .with_api_config(ApiConfig {
                send_rate: rate,
                send_burst: burst,
                ..ApiConfig::default()
            })
            .with_tls_urls(settings.tls.is_some())
            .with_front_door(Arc::new(door))
            .with_web_page(settings.web_page)
            .with_shutdown(shutdown.clone());
        if let Some(url) = &settings.public_ws_url {
            app = app.with_public_ws_url(url);
        }
        if let Some(a) = attachments {
            app = app.with_attachments(a);
        }
        if let Some(d) = devices {
            app = app.with_devices(d);
        }
        Ok(Quickstart {
            node,
            router: app.build(),
            shutdown,
            sqlite: storage.sqlite,
        })
    }

    /// Whether users, groups and messages are kept in SQLite.
    pub fn is_durable(&self) -> bool {
        self.sqlite.is_some()
    }

    /// Stops the node (workers, sessions) and closes the database.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.node.shutdown().await;
        if let Some(db) = self.sqlite {
            db.close().await;
        }
    }
}

/// Offline notifications (with `--notify-webhook`): a device store next to
/// the users, and the coalescing dispatcher behind the push workers'
/// offline sink, reading the same stores as the node.
fn notifications(
    settings: &Settings,
    builder: NodeBuilder,
    sqlite: &Option<SqliteStore>,
    shutdown: &CancellationToken,
) -> Result<(NodeBuilder, Option<Arc<dyn DeviceStore>>), String> {
    let Some((url, secret)) = &settings.notify_webhook else {
        return Ok((builder, None));
    };
    let devices: Arc<dyn DeviceStore> = match sqlite {
        Some(db) => Arc::new(db.devices()),
        None => Arc::new(MemoryDeviceStore::new()),
    };
    let webhook = WebhookNotifier::new(url.clone(), secret.as_bytes().to_vec())
        .map_err(|e| format!("notification webhook: {e}"))?;
    let notifier = ByPlatform::new().with(Platform::Webhook, Arc::new(webhook));
    let config = NotifyConfig {
        coalesce_window: settings.notify_window,
        ..NotifyConfig::default()
    };
    let (stop, store) = (shutdown.clone(), devices.clone());
    let builder = builder.with_offline_from(move |ports| {
        let dispatcher = Arc::new(
            NotifyDispatcher::new(Arc::new(notifier), store, config)
                .with_badge(Arc::new(UnreadBadge::new(ports.conversations.clone()))),
        );
        dispatcher.clone().spawn(stop.clone());
        let users = ports.users.clone();
        OfflineNotifier::start(users, ports.groups.clone(), dispatcher, stop).0
    });
    Ok((builder, Some(devices)))
}

#[cfg(test)]
mod tests {
    use super::sqlite_url;

    #[test]
    fn data_urls() {
        assert_eq!(
            sqlite_url("sqlite://data/im.db").as_deref(),
            Ok("sqlite://data/im.db?mode=rwc")
        );
        assert_eq!(
            sqlite_url("sqlite:im.db").as_deref(),
            Ok("sqlite:im.db?mode=rwc")
        );
        assert_eq!(
            sqlite_url("sqlite://im.db?mode=rw").as_deref(),
            Ok("sqlite://im.db?mode=rw")
        );
        assert_eq!(
            sqlite_url("sqlite://im.db?cache=shared").as_deref(),
            Ok("sqlite://im.db?cache=shared&mode=rwc")
        );
        assert_eq!(
            sqlite_url("sqlite::memory:").as_deref(),
            Ok("sqlite::memory:")
        );
        assert!(sqlite_url("mysql://x/y").is_err());
        assert!(sqlite_url("sqlite://").is_err());
    }
}
