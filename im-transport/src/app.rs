//! [`AppBuilder`]: turns a node (or a remote Logic and a Connect service)
//! into one axum [`Router`] — the HTTP API under `/api/v1`, the WebSocket
//! endpoint `/ws`, `/healthz`, `/readyz` and `/metrics` — that you serve
//! alone or `.nest()` into your own application.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use axum::routing::get;
//! use im_core::prelude::*;
//! use im_transport::prelude::*;
//!
//! let node = NodeBuilder::new().start().await?;
//! // Your application, with im mounted under /chat.
//! let app: axum::Router = axum::Router::new()
//!     .route("/", get(|| async { "my app" }))
//!     .nest("/chat", AppBuilder::for_node(&node).mounted_at("/chat").build());
//! # let _ = app;
//! node.shutdown().await;
//! # Ok::<(), im_core::Error>(())
//! # }).unwrap();
//! ```

use std::sync::Arc;

use axum::Router;
use im_core::connect::ConnectService;
use im_core::frontdoor::FrontDoor;
use im_core::logic::LogicApi;
use im_core::node::Node;
use im_core::ports::DeviceStore;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::http::attachments::Attachments;
use crate::http::{ApiConfig, ApiState, ReadyCheck, SameHostLocator, WsLocator};
use crate::server::{app, AppParts};
use crate::ws::{WsConfig, WsState};

/// Builds the axum app of a node: see the [module docs](self).
///
/// Parts: the HTTP API when a Logic is given ([`for_node`](Self::for_node)
/// or [`with_api`](Self::with_api)), the WebSocket endpoint when a Connect
/// service is given ([`with_ws`](Self::with_ws)); `/healthz`, `/readyz` and
/// `/metrics` always.
#[must_use]
pub struct AppBuilder {
    logic: Option<Arc<dyn LogicApi>>,
    connect: Option<Arc<ConnectService>>,
    api_config: ApiConfig,
    ws_config: WsConfig,
    locator: Option<Arc<dyn WsLocator>>,
    public_ws_url: Option<String>,
    secure: bool,
    mount: String,
    front_door: Option<Arc<FrontDoor>>,
    attachments: Option<Attachments>,
    devices: Option<Arc<dyn DeviceStore>>,
    ready: Vec<Arc<dyn ReadyCheck>>,
    metrics: Option<PrometheusHandle>,
    web_page: bool,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("mount", &self.mount)
            .field("api", &self.logic.is_some())
            .field("ws", &self.connect.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for AppBuilder {
    fn default() -> Self {
        AppBuilder::new()
    }
}

impl AppBuilder {
    /// An app with only `/healthz`, `/readyz` and `/metrics` (add the API
    /// and the WebSocket endpoint with [`with_api`](Self::with_api) and
    /// [`with_ws`](Self::with_ws)).
    ///
    /// ```
    /// let ops_only: axum::Router = im_transport::app::AppBuilder::new().build();
    /// # let _ = ops_only;
    /// ```
    pub fn new() -> Self {
        AppBuilder {
            logic: None,
            connect: None,
            api_config: ApiConfig::default(),
            ws_config: WsConfig::default(),
            locator: None,
            public_ws_url: None,
            secure: false,
            mount: String::new(),
            front_door: None,
            attachments: None,
            devices: None,
            ready: Vec::new(),
            metrics: None,
            web_page: false,
            shutdown: CancellationToken::new(),
        }
    }

    /// The API and the WebSocket endpoint of a node running all four layers
    /// in this process; `GET /api/v1/connect` answers this server's own
    /// `/ws`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// let node = im_core::builder::NodeBuilder::new().start().await?;
    /// let app = im_transport::app::AppBuilder::for_node(&node).build();
    /// # let _ = app;
    /// node.shutdown().await;
    /// # Ok::<(), im_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn for_node(node: &Node) -> Self {
        AppBuilder::new()
            .with_api(node.logic.clone())
            .with_ws(node.connect.clone())
    }

    /// Serves the HTTP API over this Logic (local, or remote through the
    /// gRPC pool).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// let node = im_core::builder::NodeBuilder::new().start().await?;
    /// let api_only = im_transport::app::AppBuilder::new().with_api(node.logic.clone()).build();
    /// # let _ = api_only;
    /// # node.shutdown().await;
    /// # Ok::<(), im_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn with_api(mut self, logic: Arc<dyn LogicApi>) -> Self {
        self.logic = Some(logic);
        self
    }

    /// Serves the WebSocket endpoint `/ws` over this Connect service.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// let node = im_core::builder::NodeBuilder::new().start().await?;
    /// let ws_only = im_transport::app::AppBuilder::new().with_ws(node.connect.clone()).build();
    /// # let _ = ws_only;
    /// # node.shutdown().await;
    /// # Ok::<(), im_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn with_ws(mut self, connect: Arc<ConnectService>) -> Self {
        self.connect = Some(connect);
        self
    }

    /// HTTP API settings (body limit, send rate).
    ///
    /// ```
    /// use im_transport::http::ApiConfig;
    /// let b = im_transport::app::AppBuilder::new().with_api_config(ApiConfig {
    ///     send_rate: None,
    ///     ..ApiConfig::default()
    /// });
    /// # let _ = b;
    /// ```
    pub fn with_api_config(mut self, config: ApiConfig) -> Self {
        self.api_config = config;
        self
    }

    /// WebSocket session settings.
    ///
    /// ```
    /// use im_transport::ws::WsConfig;
    /// let b = im_transport::app::AppBuilder::new().with_ws_config(WsConfig::default());
    /// # let _ = b;
    /// ```
    pub fn with_ws_config(mut self, config: WsConfig) -> Self {
        self.ws_config = config;
        self
    }

    /// Where the router is nested in your application (e.g. `"/chat"`), so
    /// the WebSocket URL answered by `GET /api/v1/connect` is
    /// `ws://<host>/chat/ws`.
    ///
    /// ```
    /// let b = im_transport::app::AppBuilder::new().mounted_at("/chat");
    /// # let _ = b;
    /// ```
    pub fn mounted_at(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.mount = format!("/{}", prefix.trim_matches('/'));
        if self.mount == "/" {
            self.mount.clear();
        }
        self
    }

    /// A fixed public WebSocket URL for `GET /api/v1/connect` (e.g. behind a
    /// load balancer: `wss://chat.example.com/ws`) instead of one built from
    /// the request's `Host`.
    ///
    /// ```
    /// let b = im_transport::app::AppBuilder::new().with_public_ws_url("wss://chat.example.com/ws");
    /// # let _ = b;
    /// ```
    pub fn with_public_ws_url(mut self, url: impl Into<String>) -> Self {
        self.public_ws_url = Some(url.into());
        self
    }

    /// The server speaks TLS: WebSocket URLs built from `Host` are `wss://`.
    ///
    /// ```
    /// let b = im_transport::app::AppBuilder::new().with_tls_urls(true);
    /// # let _ = b;
    /// ```
    pub fn with_tls_urls(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Your own answer to `GET /api/v1/connect` (e.g. the least loaded
    /// connect node of a cluster); overrides
    /// [`with_public_ws_url`](Self::with_public_ws_url) and
    /// [`mounted_at`](Self::mounted_at)'s URL.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use im_transport::http::WsLocator;
    /// struct Fixed;
    /// #[async_trait::async_trait]
    /// impl WsLocator for Fixed {
    ///     async fn locate(&self, _user: im_core::id::UserId, _host: Option<&str>) -> Result<String, im_core::Error> {
    ///         Ok("wss://edge-1.example.com/ws".into())
    ///     }
    /// }
    /// let b = im_transport::app::AppBuilder::new().with_locator(Arc::new(Fixed));
    /// # let _ = b;
    /// ```
    pub fn with_locator(mut self, locator: Arc<dyn WsLocator>) -> Self {
        self.locator = Some(locator);
        self
    }

    /// Limits on login, registration and WebSocket upgrades.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use im_core::frontdoor::{FrontDoor, FrontDoorConfig};
    /// use im_core::memory::MemoryThrottle;
    /// let door = FrontDoor::new(Arc::new(MemoryThrottle::new()), FrontDoorConfig::default());
    /// let b = im_transport::app::AppBuilder::new().with_front_door(Arc::new(door));
    /// # let _ = b;
    /// ```
    pub fn with_front_door(mut self, door: Arc<FrontDoor>) -> Self {
        self.front_door = Some(door);
        self
    }

    /// Upload and download routes for attachments.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use im_core::attachments::AttachmentPolicy;
    /// use im_core::memory::MemoryObjectStorage;
    /// use im_transport::http::attachments::Attachments;
    /// let objects = Arc::new(MemoryObjectStorage::new("", b"a key signing object URLs", 1 << 20));
    /// let b = im_transport::app::AppBuilder::new()
    ///     .with_attachments(Attachments::in_memory(objects, AttachmentPolicy::default()));
    /// # let _ = b;
    /// ```
    pub fn with_attachments(mut self, attachments: Attachments) -> Self {
        self.attachments = Some(attachments);
        self
    }

    /// Device registration routes (push tokens for offline notifications).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let b = im_transport::app::AppBuilder::new()
    ///     .with_devices(Arc::new(im_core::memory::MemoryDeviceStore::new()));
    /// # let _ = b;
    /// ```
    pub fn with_devices(mut self, devices: Arc<dyn DeviceStore>) -> Self {
        self.devices = Some(devices);
        self
    }

    /// Adds a readiness check to `/readyz`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use im_transport::http::ReadyCheck;
    /// struct Always;
    /// #[async_trait::async_trait]
    /// impl ReadyCheck for Always {
    ///     fn name(&self) -> &str { "always" }
    ///     async fn check(&self) -> Result<(), String> { Ok(()) }
    /// }
    /// let b = im_transport::app::AppBuilder::new().with_ready(Arc::new(Always));
    /// # let _ = b;
    /// ```
    pub fn with_ready(mut self, check: Arc<dyn ReadyCheck>) -> Self {
        self.ready.push(check);
        self
    }

    /// Serves `/metrics` from this Prometheus recorder (default: the one
    /// [`install_metrics`](crate::http::install_metrics) installs for the
    /// process, so every layer's metrics are exported).
    ///
    /// ```
    /// let handle = im_transport::http::install_metrics();
    /// let b = im_transport::app::AppBuilder::new().with_metrics(handle);
    /// # let _ = b;
    /// ```
    pub fn with_metrics(mut self, metrics: PrometheusHandle) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves the embedded web chat page at `/` (off by default; it expects
    /// to be served at the root).
    ///
    /// ```
    /// let b = im_transport::app::AppBuilder::new().with_web_page(true);
    /// # let _ = b;
    /// ```
    pub fn with_web_page(mut self, on: bool) -> Self {
        self.web_page = on;
        self
    }

    /// Cancel this token to close every WebSocket session of the app (with
    /// 1001) before the server stops; sessions also close when the node
    /// shuts down.
    ///
    /// ```
    /// let stop = tokio_util::sync::CancellationToken::new();
    /// let b = im_transport::app::AppBuilder::new().with_shutdown(stop.clone());
    /// # let _ = b;
    /// ```
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// The router.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use tower::ServiceExt;
    /// let node = im_core::builder::NodeBuilder::new().start().await?;
    /// let app = im_transport::app::AppBuilder::for_node(&node).build();
    /// let health = axum::http::Request::get("/healthz").body(axum::body::Body::empty()).unwrap();
    /// assert_eq!(app.oneshot(health).await.unwrap().status(), 200);
    /// # node.shutdown().await;
    /// # Ok::<(), im_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn build(self) -> Router {
        let locator: Arc<dyn WsLocator> = match self.locator {
            Some(l) => l,
            None => Arc::new(SameHostLocator {
                public_url: self.public_ws_url,
                secure: self.secure,
                mount: self.mount,
            }),
        };
        let api = self.logic.map(|logic| {
            let mut state = ApiState::new(logic, locator, &self.api_config);
            if let Some(door) = &self.front_door {
                state = state.with_front_door(door.clone());
            }
            if let Some(a) = self.attachments {
                state = state.with_attachments(a);
            }
            if let Some(d) = self.devices {
                state = state.with_devices(d);
            }
            (state, self.api_config)
        });
        let ws = self.connect.map(|connect| WsState {
            connect,
            config: Arc::new(self.ws_config),
            shutdown: self.shutdown,
            front_door: self.front_door,
        });
        app(AppParts {
            api,
            ws,
            ready: self.ready,
            metrics: Some(self.metrics.unwrap_or_else(crate::http::install_metrics)),
            web_page: self.web_page,
        })
    }
}

/// `node.router()`: the one-call form of [`AppBuilder::for_node`].
pub trait NodeRouter {
    /// The node's API, `/ws` and operations endpoints as one router, to
    /// serve alone or `.merge()` into your application at its root (use
    /// [`AppBuilder::mounted_at`] to nest it under a prefix).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use im_transport::prelude::*;
    /// let node = im_core::builder::NodeBuilder::new().start().await?;
    /// let app = axum::Router::new().merge(node.router());
    /// # let _ = app;
    /// # node.shutdown().await;
    /// # Ok::<(), im_core::Error>(())
    /// # }).unwrap();
    /// ```
    fn router(&self) -> Router;
}

impl NodeRouter for Node {
    fn router(&self) -> Router {
        AppBuilder::for_node(self).build()
    }
}
