//! The audit consumer over a real Redis queue: every acked message is in the
//! log exactly once, across rotations and a restart of the consumer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use audit_log::{run, AuditLog, ConsumerConfig, LogConfig};
use im_core::id::{MessageId, UserId};
use im_core::logic::{LogicApi, Sender};
use im_core::model::{MessageKind, Target, User};
use im_core::node::{Backends, Node, NodeConfig};
use im_core::protocol::SendRequest;
use im_core::testkit;
use im_store::redis::{RedisConfig, RedisConn};
use tokio_util::sync::CancellationToken;

async fn redis() -> RedisConn {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    RedisConn::connect(RedisConfig::new(url.clone()).with_prefix(testkit::unique("imaudit")))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis is not reachable at {url} ({e}). This test needs a real Redis 7: \
                 start one with `redis-server --daemonize yes`, or point REDIS_URL at one."
            )
        })
}

async fn user(node: &Node, name: &str) -> UserId {
    let id = UserId(node.logic.next_id());
    node.backends
        .logic
        .users
        .create(&User {
            id,
            username: name.into(),
            password_hash: "x".into(),
            created_at: 0,
            avatar_url: None,
            display_name: None,
        })
        .await
        .unwrap();
    id
}

async fn send_many(node: &Node, from: UserId, to: Target, n: usize, tag: &str) -> Vec<MessageId> {
    let sends = (0..n)
        .map(|i| {
            (
                Sender::http(from),
                SendRequest {
                    client_msg_id: format!("{tag}-{i}"),
                    to,
                    kind: MessageKind::Text,
                    body: serde_json::json!(format!("{tag} {i}")),
                    deliver_at: None,
                    mentions: None,
                },
            )
        })
        .collect();
    node.logic
        .send_batch(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap().msg_id)
        .collect()
}

/// msg_id → how many message records name it, over every log file.
fn audited(dir: &Path) -> (HashMap<String, usize>, usize) {
    let mut seen = HashMap::new();
    let mut files = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        files += 1;
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", path.display()));
            assert_eq!(v["v"], 1);
            assert!(v["entry_id"].is_string() && v["audited_at"].is_i64());
            if v["type"] == "message" {
                let id = v["message"]["msg_id"].as_str().unwrap().to_owned();
                *seen.entry(id).or_default() += 1;
            } else {
                assert_eq!(v["type"], "event", "{line}");
            }
        }
    }
    (seen, files)
}

async fn wait_audited(dir: &Path, want: &HashSet<String>) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (seen, _) = audited(dir);
            if want.iter().all(|id| seen.contains_key(id)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every acked message audited within 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_message_is_audited_exactly_once() {
    let redis = redis().await;
    let mut backends = Backends::memory(b"audit test secret audit test secret!");
    let queue: Arc<dyn im_core::ports::MessageQueue> = Arc::new(redis.queue());
    backends.queue = queue.clone();
    backends.logic.queue = queue.clone();
    backends.logic.sequences = Arc::new(redis.sequences());
    backends.logic.pipeline = Arc::new(redis.send_pipeline(redis.queue()));
    let node = Node::start(
        backends,
        NodeConfig {
            audit: true,
            ..NodeConfig::default()
        },
    )
    .await
    .unwrap();
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let g = node.logic.create_group(a, "audited").await.unwrap();
    node.logic.add_member(a, g, b).await.unwrap();

    // Sent before the consumer ever ran: the group created at startup keeps them.
    let mut want: HashSet<String> = send_many(&node, a, Target::User(b), 150, "early")
        .await
        .into_iter()
        .map(|m| m.to_string())
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let log_config = LogConfig {
        dir: dir.path().to_owned(),
        max_bytes: 16 * 1024,
        keep: 1000,
    };
    let consumer = ConsumerConfig {
        consumer: "audit-test".into(),
        block: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let stop = CancellationToken::new();
    let task = {
        let (queue, stop, consumer) = (queue.clone(), stop.clone(), consumer.clone());
        let mut log = AuditLog::open(log_config.clone()).unwrap();
        tokio::spawn(async move { run(queue.as_ref(), &mut log, &consumer, stop).await })
    };
    want.extend(
        send_many(&node, b, Target::Group(g), 150, "group")
            .await
            .into_iter()
            .map(|m| m.to_string()),
    );
    wait_audited(dir.path(), &want).await;
    stop.cancel();
    let first = task.await.unwrap().unwrap();
    assert!(first >= 300, "wrote {first} records");

    // A restarted consumer continues where the first stopped.
    let more: Vec<String> = send_many(&node, a, Target::User(b), 100, "late")
        .await
        .into_iter()
        .map(|m| m.to_string())
        .collect();
    want.extend(more);
    let stop = CancellationToken::new();
    let task = {
        let (queue, stop) = (queue.clone(), stop.clone());
        let mut log = AuditLog::open(log_config).unwrap();
        tokio::spawn(async move { run(queue.as_ref(), &mut log, &consumer, stop).await })
    };
    wait_audited(dir.path(), &want).await;
    stop.cancel();
    task.await.unwrap().unwrap();

    let (seen, files) = audited(dir.path());
    for id in &want {
        assert_eq!(seen.get(id), Some(&1), "message {id} audited exactly once");
    }
    assert!(files > 2, "the log rotated ({files} files)");
    node.shutdown().await;
    redis.delete_namespace().await.unwrap();
}
