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

/// How long a connection may take to send a complete request head (the
/// first one, and each later one on a kept-alive connection) before it is
/// closed: sockets that never finish a handshake do not hold a file forever.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` fires (in-flight requests finish).
///
/// Each connection is served by hyper with a timer, so a connection that
/// does not deliver a complete request head within [`HEADER_READ_TIMEOUT`] is
/// closed (slowloris, half-open handshakes, idle keep-alive). Upgraded
/// connections (WebSockets) are handed over and live on their own.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::Service;

    let mut make = app.into_make_service_with_connect_info::<SocketAddr>();
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // accept: not fatal; back off briefly and go on.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = match make.call(peer).await {
            Ok(s) => s,
            Err(never) => match never {},
        };
        let stop = shutdown.clone();
        connections.spawn(async move {
            // hyper arms its header timer at the first byte: a connection that
            // never sends one is closed here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let hyper_svc = hyper_util::service::TowerToHyperService::new(svc);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), hyper_svc);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}
