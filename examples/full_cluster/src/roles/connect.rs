//! The Connect role: WebSocket sessions on `/ws` (with /healthz, /readyz,
//! /metrics on the same port) and ConnectRpc for the Task layer; reaches Logic
//! through the discovery-aware pool; registered in etcd as `connect` with its
//! node id, its public ws:// URL and its session count (for load balancing).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use im_core::connect::{ConnectConfig, ConnectService, Hub, CLOSE_GOING_AWAY};
use im_core::logic::CoalescingLogic;
use im_core::model::NodeId;
use im_core::ports::{Discovery, ServiceInstance};
use im_transport::app::AppBuilder;
use im_transport::grpc::{ConnectRpcServer, LogicPool};
use im_transport::http::ReadyCheck;
use im_transport::server::serve_maybe_tls;
use im_transport::ws::WsConfig;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::infra;

/// Ready while at least one Logic instance is known.
struct LogicKnown(tokio::sync::watch::Receiver<Vec<ServiceInstance>>);

#[async_trait]
impl ReadyCheck for LogicKnown {
    fn name(&self) -> &str {
        "logic"
    }
    async fn check(&self) -> Result<(), String> {
        if self.0.borrow().is_empty() {
            Err("no logic instance in discovery".into())
        } else {
            Ok(())
        }
    }
}

/// Runs until `shutdown`: leaves discovery, closes sessions with 1001, stops.
pub async fn run(c: Config, shutdown: CancellationToken) -> Result<(), String> {
    let tls = infra::http_tls(
        &c.connect.tls_cert,
        &c.connect.tls_key,
        "connect.tls_cert/tls_key",
    )?;
    let grpc_tls = infra::grpc_server_tls(&c)?;
    let grpc = infra::grpc_client_config(&c)?;
    let etcd = infra::until_up("etcd", &shutdown, || infra::etcd(&c)).await?;
    let logic_set = etcd.watch(super::LOGIC).await.map_err(|e| e.to_string())?;
    // Sends of all sessions are coalesced into one SendBatch RPC per batch.
    let logic = Arc::new(CoalescingLogic::new(
        Arc::new(LogicPool::new(logic_set.clone(), grpc)),
        256,
        c.connect.logic_in_flight,
    ));
    let node = NodeId::new(c.connect.node_id.clone());
    let hub = Arc::new(Hub::new(node.clone(), c.connect.session_queue));
    let rate = (c.connect.send_rate > 0.0).then_some(c.connect.send_rate);
    let connect = Arc::new(ConnectService::new(
        hub.clone(),
        logic,
        ConnectConfig {
            session_queue: c.connect.session_queue,
            send_rate: rate,
            send_burst: c.connect.send_rate.max(1.0) * 2.0,
            ..ConnectConfig::default()
        },
    ));
    let background = CancellationToken::new();
    tokio::spawn(connect.clone().run_heartbeats(background.clone()));

    // WebSocket + ops on one port.
    let door = infra::front_door(&c, &shutdown).await?;
    let ws_stop = CancellationToken::new();
    let listener = infra::bind(c.connect.listen).await?;
    let ws_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let router = AppBuilder::new()
        .with_ws(connect.clone())
        .with_ws_config(WsConfig {
            allowed_origins: c.connect.allowed_origins.clone(),
            ..WsConfig::default()
        })
        .with_shutdown(ws_stop.clone())
        .with_front_door(door)
        .with_ready(Arc::new(infra::EtcdReady(etcd.clone())))
        .with_ready(Arc::new(LogicKnown(logic_set)))
        .build();
    let http_stop = CancellationToken::new();
    let ws_scheme = if tls.is_some() { "wss" } else { "ws" };
    let http = {
        let stop = http_stop.clone();
        tokio::spawn(async move { serve_maybe_tls(listener, router, tls, stop).await })
    };
    // ConnectRpc.
    let grpc_listener = infra::bind(c.connect.grpc_listen).await?;
    let grpc_addr = grpc_listener.local_addr().map_err(|e| e.to_string())?;
    let rpc_stop = CancellationToken::new();
    let rpc = {
        let stop = rpc_stop.clone();
        let server = ConnectRpcServer::new(hub.clone());
        let tls = grpc_tls.clone();
        tokio::spawn(async move {
            server
                .serve_tls(grpc_listener, tls.as_ref(), async move {
                    stop.cancelled().await
                })
                .await
        })
    };
    let ws_url = c
        .connect
        .public_ws_url
        .clone()
        .unwrap_or_else(|| format!("{ws_scheme}://{ws_addr}/ws"));
    let grpc_url = infra::grpc_url(&c.connect.advertise, grpc_addr, grpc_tls.is_some());
    let instance = |sessions: usize| {
        ServiceInstance::new(super::CONNECT, node.as_str(), &grpc_url)
            .with_meta("ws_url", &ws_url)
            .with_meta("sessions", sessions.to_string())
    };
    etcd.register(instance(0))
        .await
        .map_err(|e| format!("registering in etcd: {e}"))?;
    tracing::info!(node = %node, %ws_url, %grpc_url, "connect is up");
    tokio::spawn(rebind_after_lapse(
        etcd.clone(),
        connect.clone(),
        background.clone(),
    ));

    // Publish the session count every 3 s when it changed (for /api/v1/connect).
    let mut last = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let n = hub.session_count();
                metrics::gauge!("im_connect_sessions").set(n as f64);
                if n != last && etcd.register(instance(n)).await.is_ok() {
                    last = n;
                }
            }
        }
    }
    if let Err(e) = etcd.deregister(super::CONNECT, node.as_str()).await {
        tracing::warn!(error = %e, "deregistering failed; the lease will expire");
    }
    // Sessions close with 1001 and clients reconnect to another node.
    ws_stop.cancel();
    hub.close_all(CLOSE_GOING_AWAY, "server shutting down");
    tokio::time::sleep(Duration::from_millis(200)).await;
    rpc_stop.cancel();
    http_stop.cancel();
    background.cancel();
    infra::within_grace(&c, "connect servers", async {
        let _ = rpc.await;
        let _ = http.await;
    })
    .await;
    let _ = etcd.shutdown().await;
    tracing::info!("connect stopped");
    Ok(())
}

/// Re-binds this node's session routes as soon as etcd answers again after
/// an outage of this node's view of it.
///
/// While a connect node cannot reach etcd its lease runs out, the task
/// processes see it leave and drop its session routes, and pushes to its
/// sessions would be lost until the next route heartbeat (30 s). So when a
/// ping succeeds after failing (or after a stall of a second or more), every
/// live route is refreshed at once, which binds it again; a client that missed
/// a push meanwhile sees the gap at its next message and syncs.
async fn rebind_after_lapse(
    etcd: Arc<im_discovery::EtcdDiscovery>,
    connect: Arc<ConnectService>,
    stop: CancellationToken,
) {
    let mut last_ok = tokio::time::Instant::now();
    let mut failed = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(1), etcd.ping()).await,
            Ok(Ok(()))
        );
        if !ok {
            failed = true;
            continue;
        }
        let gap = last_ok.elapsed();
        last_ok = tokio::time::Instant::now();
        if failed || gap >= Duration::from_secs(1) {
            failed = false;
            match connect.heartbeat_once().await {
                Ok(()) => tracing::info!(
                    gap_ms = gap.as_millis() as u64,
                    sessions = connect.hub().session_count(),
                    "etcd answers again: session routes bound again"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "re-binding routes after an etcd outage failed; retrying");
                    failed = true;
                }
            }
        }
    }
}
