//! Putting the routers together: one axum app serving the API, `/ws`, the
//! operations endpoints and (optionally) the web chat page, with JSON 404s.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{api_router, ApiConfig, ApiState, ReadyCheck};
use crate::tls::ServerTls;
#[cfg(feature = "ws")]
use crate::ws::{ws_router, WsState};

/// The embedded web chat page (plain HTML/JS speaking the public protocol).
pub const WEB_PAGE: &str = include_str!("../web/index.html");

/// Which parts an app serves.
#[derive(Default)]
pub struct AppParts {
    /// The HTTP API.
    pub api: Option<(ApiState, ApiConfig)>,
    /// The WebSocket endpoint (feature `ws`).
    #[cfg(feature = "ws")]
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
    #[cfg(feature = "ws")]
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
    serve_with(listener, app, None, shutdown).await
}

/// [`serve`] over TLS: HTTPS, and WSS on `/ws`.
///
/// The TLS handshake runs in each connection's own task and must finish
/// within [`HEADER_READ_TIMEOUT`], so slow handshakes never hold up the
/// accept loop; a client speaking plain HTTP fails its handshake and is
/// closed. The certificate files are checked for changes every
/// [`ServerTls::reload_interval`] while serving (see [`ServerTls`]).
/// `ConnectInfo<SocketAddr>` is the TCP peer address, as with [`serve`].
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: Arc<ServerTls>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let watcher = shutdown.child_token();
    tokio::spawn(tls.clone().watch(watcher.clone()));
    let served = serve_with(listener, app, Some(tls), shutdown).await;
    watcher.cancel();
    served
}

/// [`serve_tls`] when `tls` is set, else [`serve`].
pub async fn serve_maybe_tls(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    match tls {
        Some(tls) => serve_tls(listener, app, tls, shutdown).await,
        None => serve(listener, app, shutdown).await,
    }
}

async fn serve_with(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use tower::Service;

    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config()));
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
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            // hyper arms its header timer at the first byte: a connection that
            // never sends one is closed here.
            let Some(acceptor) = acceptor else {
                let mut first = [0u8; 1];
                match tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
                serve_connection(stream, svc, stop).await;
                return;
            };
            // The handshake and the first byte of the request must both
            // arrive within the header timeout.
            let deadline = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
            let tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let mut stream = tokio::io::BufReader::with_capacity(FIRST_READ_BUFFER, tls);
            match tokio::time::timeout_at(deadline, stream.fill_buf()).await {
                Ok(Ok(b)) if !b.is_empty() => {}
                _ => return,
            }
            serve_connection(stream, svc, stop).await;
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// The buffer in front of a TLS stream that lets a connection wait for its
/// first byte (rustls buffers records itself; larger reads bypass it).
const FIRST_READ_BUFFER: usize = 1024;

async fn serve_connection<S, T>(stream: S, svc: T, stop: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    T::Future: Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;

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
}
