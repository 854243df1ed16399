//! The Logic role: LogicRpc over Redis (send pipeline, sessions, token
//! revocations, throttles) and MySQL (users, groups, contacts, history),
//! registered in etcd as `logic`.

use std::sync::Arc;
use std::time::Duration;

use im_core::builder::NodeBuilder;
use im_core::logic::{Logic, LogicConfig};
use im_core::ports::{Discovery, MessageQueue, ServiceInstance};
use im_core::task::{AUDIT_GROUP, PERSIST_GROUP, PUSH_GROUP};
use im_transport::grpc::LogicRpcServer;
use im_transport::webhook::{FailurePolicy, WebhookConfig, WebhookHook};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::infra;

/// Runs until `shutdown`: deregisters first, then lets in-flight calls finish.
pub async fn run(c: Config, shutdown: CancellationToken) -> Result<(), String> {
    let grpc_tls = infra::grpc_server_tls(&c)?;
    let redis = infra::until_up("Redis", &shutdown, || infra::redis(&c)).await?;
    let db = infra::until_up("the database", &shutdown, || infra::database(&c)).await?;
    let archive = infra::until_up("the archive", &shutdown, || infra::archive(&c, &db)).await?;
    let etcd = infra::until_up("etcd", &shutdown, || infra::etcd(&c)).await?;
    let queue: Arc<dyn MessageQueue> = Arc::new(redis.queue());
    let audit = c.cluster.audit.then_some(AUDIT_GROUP);
    for g in [PUSH_GROUP, PERSIST_GROUP].into_iter().chain(audit) {
        queue
            .create_group(g)
            .await
            .map_err(|e| format!("creating group {g}: {e}"))?;
    }
    let mut ports = NodeBuilder::new()
        .with_secret(c.cluster.jwt_secret.as_bytes())
        .with_token_ttl(Duration::from_secs(c.cluster.token_ttl_secs))
        .with_users(db.users())
        .with_groups(db.groups())
        // Contacts stay on the primary database, like users and groups.
        .with_contacts(db.contacts())
        .with_messages(archive.messages.clone())
        .with_conversations(archive.conversations.clone())
        .with_queue(queue)
        .with_pipeline(Arc::new(redis.send_pipeline(redis.queue())))
        .with_sequences(Arc::new(redis.sequences()))
        .with_sessions(Arc::new(redis.sessions()))
        .with_schedules(Arc::new(redis.schedules()))
        .with_revocations(Arc::new(redis.revocations()))
        // Logic's own limits (user search) count in Redis, like the front door's.
        .with_throttle(Arc::new(redis.throttle()));
    if let Some(objects) = infra::objects(&c)? {
        ports = ports.with_objects(objects);
    }
    if !c.logic.webhook_url.is_empty() {
        let mut config = WebhookConfig::new(
            c.logic.webhook_url.clone(),
            c.logic.webhook_secret.as_bytes(),
        );
        if c.logic.webhook_fail_open {
            config.failure_policy = FailurePolicy::Open;
        }
        ports = ports.with_hook(Arc::new(
            WebhookHook::new(config).map_err(|e| format!("webhook: {e}"))?,
        ));
    }
    let ports = ports.logic_ports().map_err(|e| e.to_string())?;
    let logic = Logic::new(
        ports,
        LogicConfig {
            worker_id: c.logic.worker_id,
            recall_window: Duration::from_millis(c.logic.recall_window_ms),
            device_policies: c.logic.device_policies.clone(),
            hash_concurrency: match c.logic.hash_concurrency {
                0 => im_core::logic::default_hash_concurrency(),
                n => n,
            },
            hash_queue: match (c.logic.hash_queue, c.logic.hash_concurrency) {
                (0, 0) => 32 * im_core::logic::default_hash_concurrency(),
                (0, n) => 32 * n,
                (q, _) => q,
            },
            attachments: c.attachments.limits.clone(),
            direct_messages: c.logic.direct_messages,
            relation_cache_ttl: Duration::from_millis(c.logic.relation_cache_ttl_ms),
            new_groups_show_history: c.logic.new_groups_show_history,
            edit_window: Duration::from_millis(c.logic.edit_window_ms),
            batchers: c.logic.send_batchers,
            ..LogicConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;

    let stop_rpc = CancellationToken::new();
    let listener = infra::bind(c.logic.grpc_listen).await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let rpc = {
        let stop = stop_rpc.clone();
        let server = LogicRpcServer::new(logic.clone());
        let tls = grpc_tls.clone();
        tokio::spawn(async move {
            server
                .serve_tls(
                    listener,
                    tls.as_ref(),
                    async move { stop.cancelled().await },
                )
                .await
        })
    };
    let stop_ops = CancellationToken::new();
    let ops = infra::ops_server(
        c.logic.ops_listen,
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
    let id = format!("logic-{}", c.logic.worker_id);
    let url = infra::grpc_url(&c.logic.advertise, addr, grpc_tls.is_some());
    etcd.register(ServiceInstance::new(super::LOGIC, &id, &url))
        .await
        .map_err(|e| format!("registering in etcd: {e}"))?;
    tracing::info!(%id, %url, ops = %c.logic.ops_listen, "logic is up");

    shutdown.cancelled().await;
    // Leave discovery first so clients stop picking us, then drain.
    if let Err(e) = etcd.deregister(super::LOGIC, &id).await {
        tracing::warn!(error = %e, "deregistering failed; the lease will expire");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_rpc.cancel();
    infra::within_grace(&c, "LogicRpc drain", rpc).await;
    stop_ops.cancel();
    let _ = ops.await;
    let _ = etcd.shutdown().await;
    tracing::info!("logic stopped");
    Ok(())
}
