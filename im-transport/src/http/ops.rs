//! Operations endpoints: `/healthz` (alive), `/readyz` (every dependency
//! reachable) and `/metrics` (Prometheus text from the `metrics` facade).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// One dependency checked by `/readyz`.
#[async_trait]
pub trait ReadyCheck: Send + Sync + 'static {
    /// The dependency's name (e.g. `redis`).
    fn name(&self) -> &str;
    /// Ok when reachable.
    async fn check(&self) -> Result<(), String>;
}

/// Installs the global Prometheus recorder once and returns its handle.
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_ok() {
                // From the first scrape on, /metrics is Prometheus text (not
                // an empty body until something has happened).
                metrics::gauge!("im_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            }
            handle
        })
        .clone()
}

#[derive(Clone)]
struct OpsState {
    checks: Arc<Vec<Arc<dyn ReadyCheck>>>,
    metrics: Option<PrometheusHandle>,
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn ops_router(checks: Vec<Arc<dyn ReadyCheck>>, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(OpsState {
            checks: Arc::new(checks),
            metrics,
        })
}

async fn readyz(State(s): State<OpsState>) -> Response {
    let mut failed = serde_json::Map::new();
    for c in s.checks.iter() {
        let r = tokio::time::timeout(Duration::from_secs(2), c.check()).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failed.insert(c.name().to_owned(), e.into());
            }
            Err(_) => {
                failed.insert(c.name().to_owned(), "timed out".into());
            }
        }
    }
    if failed.is_empty() {
        (StatusCode::OK, Json(serde_json::json!({"ready": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "failing": failed})),
        )
            .into_response()
    }
}

async fn render_metrics(State(s): State<OpsState>) -> Response {
    match s.metrics {
        Some(h) => ([("content-type", "text/plain; version=0.0.4")], h.render()).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}
