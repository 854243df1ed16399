//! Putting the routers together: one axum app serving the API, `/ws`, the
//! operations endpoints and (optionally) the web chat page, with JSON 404s.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{api_router, ApiConfig, ApiState, ReadyCheck};
use crate::ws::{ws_router, WsState};

/// The embedded web chat page (plain HTML/JS speaking the public protocol).
pub const WEB_PAGE: &str = include_str!("../web/index.html");

/// Which parts an app serves.
#[derive(Default)]
pub struct AppParts {
    /// The HTTP API.
    pub api: Option<(ApiState, ApiConfig)>,
    /// The WebSocket endpoint.
    pub ws: Option<WsState>,
    /// Readiness checks for `/readyz`.
    pub ready: Vec<Arc<dyn ReadyCheck>>,
    /// Prometheus handle for `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// Serve the web page at `/`.
    pub web_page: bool,
}

/// Builds the axum app from its parts.
pub fn app(parts: AppParts) -> Router {
    let mut app = Router::new().merge(crate::http::ops::ops_router(parts.ready, parts.metrics));
    if let Some((state, config)) = parts.api {
        app = app.merge(api_router(state, &config));
    }
    if let Some(ws) = parts.ws {
        app = app.merge(ws_router(ws));
    }
    if parts.web_page {
        app = app.route("/", get(|| async { Html(WEB_PAGE).into_response() }));
    }
    app.fallback(crate::http::errors::not_found)
        .method_not_allowed_fallback(crate::http::errors::method_not_allowed)
}

/// Serves `app` on `listener` until `shutdown` fires (in-flight requests finish).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
