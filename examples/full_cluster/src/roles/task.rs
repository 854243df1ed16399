//! The Task role: push and persist workers on the Redis Streams, pushing to
//! connect nodes found in etcd, persisting to MySQL; drops the routes of
//! connect nodes that vanish from discovery; exports queue backlog metrics.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use im_core::model::NodeId;
use im_core::ports::{
    DeviceStore, Discovery, MessageQueue, PartitionLeases, Pusher, ServiceInstance, SessionStore,
};
use im_core::task::notify::{NotifyConfig, NotifyDispatcher};
use im_core::task::{
    OfflineNotifier, OfflineSink, PersistWorker, PushWorker, Scheduler, SchedulerConfig,
    UnreadBadge, WorkerConfig, PERSIST_GROUP, PUSH_GROUP,
};
use im_transport::grpc::GrpcPusher;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::infra;

/// Runs until `shutdown`: workers stop (un-acked entries stay pending for others).
pub async fn run(c: Config, shutdown: CancellationToken) -> Result<(), String> {
    let grpc = infra::grpc_client_config(&c)?;
    let redis = infra::until_up("Redis", &shutdown, || infra::redis(&c)).await?;
    let db = infra::until_up("the database", &shutdown, || infra::database(&c)).await?;
    let archive = infra::until_up("the archive", &shutdown, || infra::archive(&c, &db)).await?;
    let etcd = infra::until_up("etcd", &shutdown, || infra::etcd(&c)).await?;
    let queue: Arc<dyn MessageQueue> = Arc::new(redis.queue());
    for g in [PUSH_GROUP, PERSIST_GROUP] {
        queue
            .create_group(g)
            .await
            .map_err(|e| format!("creating group {g}: {e}"))?;
    }
    let sessions: Arc<dyn SessionStore> = Arc::new(redis.sessions());
    // One pusher per partition across every task process (order per conversation).
    let leases: Arc<dyn PartitionLeases> = Arc::new(redis.leases());
    let connect_nodes = etcd
        .watch(super::CONNECT)
        .await
        .map_err(|e| e.to_string())?;
    let pusher: Arc<dyn Pusher> = Arc::new(GrpcPusher::new(connect_nodes.clone(), grpc));
    let stop_workers = CancellationToken::new();
    let mut workers = Vec::new();
    let base = WorkerConfig {
        batch: c.task.batch,
        claim_idle: Duration::from_secs(c.task.claim_idle_secs.max(1)),
        claim_every: Duration::from_secs((c.task.claim_idle_secs / 2).max(1)),
        block: Duration::from_millis(500),
        ..WorkerConfig::default()
    };
    if c.task.push_workers == 0 {
        tracing::warn!("push_workers = 0: this task process pushes nothing");
    }
    // Offline notifications: one dispatcher per process, fed by its pushers.
    let offline: Option<Arc<dyn OfflineSink>> = if c.notifications.enabled {
        let devices: Arc<dyn DeviceStore> = db.devices();
        let dispatcher = Arc::new(
            NotifyDispatcher::new(
                Arc::new(infra::notifier(&c)?),
                devices,
                NotifyConfig {
                    coalesce_window: Duration::from_millis(c.notifications.window_ms.max(1)),
                    ..NotifyConfig::default()
                },
            )
            .with_badge(Arc::new(UnreadBadge::new(archive.conversations.clone()))),
        );
        workers.push(tokio::spawn({
            let d = dispatcher.clone().spawn(stop_workers.clone());
            async move { d.await.map_err(|e| im_core::Error::Internal(e.to_string())) }
        }));
        let (sink, titles) =
            OfflineNotifier::start(db.users(), db.groups(), dispatcher, stop_workers.clone());
        workers.push(tokio::spawn(async move {
            titles
                .await
                .map_err(|e| im_core::Error::Internal(e.to_string()))
        }));
        Some(sink)
    } else {
        None
    };
    for i in 0..c.task.push_workers {
        let w = PushWorker::new(
            queue.clone(),
            sessions.clone(),
            db.groups(),
            pusher.clone(),
            WorkerConfig {
                consumer: format!("{}-push-{i}", c.task.id),
                ..base.clone()
            },
        )
        .with_leases(leases.clone());
        let w = match &offline {
            Some(sink) => w.with_offline(sink.clone()),
            None => w,
        };
        let stop = stop_workers.clone();
        workers.push(tokio::spawn(async move { w.run(stop).await }));
    }
    if c.task.persist_workers == 0 {
        tracing::warn!("persist_workers = 0: this task process persists nothing");
    }
    for i in 0..c.task.persist_workers {
        let w = PersistWorker::new(
            queue.clone(),
            archive.messages.clone(),
            archive.conversations.clone(),
            WorkerConfig {
                consumer: format!("{}-persist-{i}", c.task.id),
                linger: Duration::from_millis(c.task.persist_linger_ms),
                ..base.clone()
            },
        )
        .with_leases(leases.clone());
        let stop = stop_workers.clone();
        workers.push(tokio::spawn(async move { w.run(stop).await }));
    }
    // Scheduled sends: every task process runs a scheduler; the send path's
    // dedup admits a due send once even when two see it.
    {
        let scheduler = Scheduler::new(
            Arc::new(redis.schedules()),
            Arc::new(redis.send_pipeline(redis.queue())),
            SchedulerConfig::default(),
        );
        let stop = stop_workers.clone();
        workers.push(tokio::spawn(async move {
            scheduler.run(stop).await;
            Ok(())
        }));
    }
    let background = CancellationToken::new();
    tokio::spawn(drop_dead_nodes(
        connect_nodes,
        sessions.clone(),
        background.clone(),
    ));
    tokio::spawn(export_backlog(queue.clone(), background.clone()));

    let stop_ops = CancellationToken::new();
    let ops = infra::ops_server(
        c.task.ops_listen,
        [
            Arc::new(infra::RedisReady(redis.clone())) as _,
            infra::SqlReady::primary(&db),
            Arc::new(infra::EtcdReady(etcd.clone())),
        ]
        .into_iter()
        .chain(infra::SqlReady::shards(&archive))
        .collect(),
        stop_ops.clone(),
    )
    .await?;
    etcd.register(ServiceInstance::new(
        super::TASK,
        &c.task.id,
        format!("http://{}", c.task.ops_listen),
    ))
    .await
    .map_err(|e| format!("registering in etcd: {e}"))?;
    tracing::info!(id = %c.task.id, ops = %c.task.ops_listen, "task is up");

    shutdown.cancelled().await;
    stop_workers.cancel();
    infra::within_grace(&c, "task workers", futures::future::join_all(workers)).await;
    background.cancel();
    let _ = etcd.deregister(super::TASK, &c.task.id).await;
    stop_ops.cancel();
    let _ = ops.await;
    let _ = etcd.shutdown().await;
    tracing::info!("task stopped");
    Ok(())
}

/// When a connect node leaves discovery (its lease expired: it died), its
/// session routes are dropped at once instead of waiting for their TTL.
async fn drop_dead_nodes(
    mut nodes: tokio::sync::watch::Receiver<Vec<ServiceInstance>>,
    sessions: Arc<dyn SessionStore>,
    stop: CancellationToken,
) {
    let mut known: BTreeSet<String> = nodes.borrow().iter().map(|i| i.id.clone()).collect();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = nodes.changed() => if changed.is_err() { return },
        }
        let now: BTreeSet<String> = nodes
            .borrow_and_update()
            .iter()
            .map(|i| i.id.clone())
            .collect();
        for gone in known.difference(&now) {
            match sessions.drop_node(&NodeId::new(gone.clone())).await {
                Ok(n) => {
                    tracing::info!(node = %gone, routes = n, "connect node left; dropped its routes")
                }
                Err(e) => {
                    tracing::warn!(node = %gone, error = %e, "dropping routes of a dead node failed")
                }
            }
        }
        known = now;
    }
}

/// Queue pending and lag per group, as gauges, every 2 s.
async fn export_backlog(queue: Arc<dyn MessageQueue>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for g in [PUSH_GROUP, PERSIST_GROUP] {
            if let Ok(s) = queue.stats(g).await {
                metrics::gauge!("im_queue_pending", "group" => g).set(s.pending as f64);
                metrics::gauge!("im_queue_lag", "group" => g).set(s.lag as f64);
            }
        }
    }
}
