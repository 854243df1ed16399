//! The API role: the HTTP API and the web page, reaching Logic through the
//! discovery-aware pool; `GET /api/v1/connect` picks the least loaded live
//! connect node from discovery.

use std::sync::Arc;

use im_core::logic::CoalescingLogic;
use im_core::ports::{Discovery, ServiceInstance};
use im_transport::app::AppBuilder;
use im_transport::grpc::{DiscoveryLocator, LogicPool};
use im_transport::http::attachments::Attachments;
use im_transport::http::ApiConfig;
use im_transport::server::serve_maybe_tls;
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
    let mut app = AppBuilder::new()
        .with_api(logic)
        .with_locator(locator)
        .with_api_config(ApiConfig {
            send_rate: rate,
            send_burst: c.api.send_rate.max(1.0) * 2.0,
            ..ApiConfig::default()
        })
        .with_front_door(infra::front_door(&c, &shutdown).await?)
        .with_ready(Arc::new(infra::EtcdReady(etcd.clone())))
        .with_web_page(true);
    if let Some(objects) = infra::objects(&c)? {
        app = app.with_attachments(Attachments::new(objects, c.attachments.limits.clone()));
    }
    if c.notifications.enabled {
        // Push tokens live on the primary database, where task reads them.
        let mysql = infra::until_up("MySQL", &shutdown, || infra::mysql(&c)).await?;
        app = app.with_devices(Arc::new(mysql.devices()));
    }
    let router = app.build();
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
