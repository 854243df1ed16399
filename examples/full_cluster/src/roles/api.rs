//! The API role: the HTTP API and the web page, reaching Logic through the
//! discovery-aware pool; `GET /api/v1/connect` picks the least loaded live
//! connect node from discovery.

use std::sync::Arc;

use im_core::logic::CoalescingLogic;
use im_core::ports::{Discovery, ServiceInstance};
use im_transport::grpc::{DiscoveryLocator, LogicPool};
use im_transport::http::attachments::Attachments;
use im_transport::http::{install_metrics, ApiConfig, ApiState};
use im_transport::server::{app, serve_maybe_tls, AppParts};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::infra;

/// Runs until `shutdown` (in-flight requests finish).
pub async fn run(c: Config, shutdown: CancellationToken) -> Result<(), String> {
    let tls = infra::http_tls(&c.api.tls_cert, &c.api.tls_key, "api.tls_cert/tls_key")?;
    let grpc = infra::grpc_client_config(&c)?;
    let etcd = infra::until_up("etcd", &shutdown, || infra::etcd(&c)).await?;
    let logic = Arc::new(CoalescingLogic::new(
        Arc::new(LogicPool::new(
            etcd.watch(super::LOGIC).await.map_err(|e| e.to_string())?,
            grpc,
        )),
        256,
        8,
    ));
    let locator = Arc::new(DiscoveryLocator::new(
        etcd.watch(super::CONNECT)
            .await
            .map_err(|e| e.to_string())?,
    ));
    let rate = (c.api.send_rate > 0.0).then_some(c.api.send_rate);
    let api_config = ApiConfig {
        send_rate: rate,
        send_burst: c.api.send_rate.max(1.0) * 2.0,
        ..ApiConfig::default()
    };
    let door = infra::front_door(&c, &shutdown).await?;
    let mut state = ApiState::new(logic, locator, &api_config).with_front_door(door);
    if let Some(objects) = infra::objects(&c)? {
        state = state.with_attachments(Attachments::new(objects, c.attachments.limits.clone()));
    }
    if c.notifications.enabled {
        // Push tokens live on the primary database, where task reads them.
        let mysql = infra::until_up("MySQL", &shutdown, || infra::mysql(&c)).await?;
        state = state.with_devices(Arc::new(mysql.devices()));
    }
    let router = app(AppParts {
        api: Some((state, api_config)),
        ready: vec![Arc::new(infra::EtcdReady(etcd.clone()))],
        metrics: Some(install_metrics()),
        web_page: true,
        ..AppParts::default()
    });
    let listener = infra::bind(c.api.listen).await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    etcd.register(ServiceInstance::new(
        super::API,
        &c.api.id,
        format!("{scheme}://{addr}"),
    ))
    .await
    .map_err(|e| format!("registering in etcd: {e}"))?;
    tracing::info!(%addr, "api is up: open {scheme}://{addr}/");
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move { serve_maybe_tls(listener, router, tls, stop).await })
    };
    shutdown.cancelled().await;
    let _ = etcd.deregister(super::API, &c.api.id).await;
    stop.cancel();
    infra::within_grace(&c, "api server", server).await;
    let _ = etcd.shutdown().await;
    tracing::info!("api stopped");
    Ok(())
}
