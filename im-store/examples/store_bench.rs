//! Micro-benchmark of the hot storage paths against the real servers.
//!
//! Run with:
//! ```sh
//! cargo run --release -p im-store --example store_bench            # REDIS_URL, DATABASE_URL
//! cargo run --release -p im-store --example store_bench -- 200000  # messages per case
//! STORE_BENCH_REDIS_ONLY=1 cargo run --release -p im-store --example store_bench
//! ```
//!
//! 1. The Redis send path (dedup claim + seq INCR + XADD + ack store), as
//!    `RedisSendPipeline` (one Lua round trip per batch) with batches of 1
//!    (batching off), 16, 128 and 512, and as the `ComposedSendPipeline` over
//!    the separate Redis ports (three round trips per batch), 8 concurrent
//!    callers each.
//! 2. Batch persist into MariaDB: `MySqlMessageStore::append` with 500-row
//!    batches (multi-row `INSERT IGNORE`), 4 concurrent writers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use im_core::compose::ComposedSendPipeline;
use im_core::id::{ConversationId, MessageId, UserId};
use im_core::model::{Envelope, Message, MessageKind, Target};
use im_core::ports::{Admission, DedupKey, MessageStore, SendPipeline};
use im_store::mysql::{MySqlConfig, MySqlStore};
use im_store::redis::{RedisConfig, RedisConn};

const CALLERS: usize = 8;

fn message(i: u64, run: u64) -> Message {
    let a = UserId(run * 1_000_000 + 2 * (i % 500));
    let b = UserId(a.0 + 1);
    Message {
        msg_id: MessageId(run << 24 | i),
        conversation_id: ConversationId::Direct(a, b),
        seq: 0,
        from: a,
        to: Target::User(b),
        kind: MessageKind::Text,
        body: serde_json::Value::String(format!("benchmark message {i}")),
        client_msg_id: format!("b{run}-{i}"),
        ts: 1_700_000_000_000,
        recalled: false,
        edited_at: None,
        mentions: None,
    }
}

/// Seconds of CPU the Redis server has used (user + system), from `INFO cpu`.
async fn redis_cpu_seconds() -> f64 {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut con)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .filter_map(|l| l.split_once(':')?.1.trim().parse::<f64>().ok())
        .sum()
}

async fn send_path(name: &str, p: Arc<dyn SendPipeline>, total: u64, batch: u64, run: u64) {
    let per = total / CALLERS as u64;
    let cpu_before = redis_cpu_seconds().await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CALLERS as u64 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = c * per;
            let end = i + per;
            while i < end {
                let n = batch.min(end - i);
                let adm: Vec<Admission> = (i..i + n)
                    .map(|k| {
                        let m = message(k, run);
                        Admission {
                            key: DedupKey::of_send(m.from, &m.client_msg_id),
                            envelope: Envelope {
                                message: m,
                                origin: None,
                                audience: None,
                            },
                        }
                    })
                    .collect();
                let r = p.admit(adm, Duration::from_secs(60)).await.unwrap();
                assert!(r.iter().all(|x| x.is_ok()));
                i += n;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let redis_us = (redis_cpu_seconds().await - cpu_before) * 1e6 / total as f64;
    println!(
        "{name:<44} batch {batch:>4}: {:>9.0} sends/s ({total} in {secs:.2} s), Redis CPU {redis_us:.1} µs/send",
        total as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let total: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let run = u64::from(std::process::id()) << 8
        | (Instant::now().elapsed().subsec_nanos() as u64 & 0xff);
    println!("store_bench: {total} messages per case, {CALLERS} concurrent callers");
    for batch in [1u64, 16, 128, 512] {
        let prefix = format!("bench{run:x}b{batch}");
        let conn = RedisConn::connect(RedisConfig::new(&redis_url).with_prefix(&prefix))
            .await
            .unwrap();
        let queue = conn.queue();
        let pipeline = Arc::new(conn.send_pipeline(queue.clone()));
        let n = if batch == 1 { total / 4 } else { total };
        send_path(
            "redis: Lua send pipeline (1 round trip)",
            pipeline,
            n,
            batch,
            run + batch,
        )
        .await;
        conn.delete_namespace().await.unwrap();
    }
    for batch in [1u64, 128] {
        let prefix = format!("bench{run:x}c{batch}");
        let conn = RedisConn::connect(RedisConfig::new(&redis_url).with_prefix(&prefix))
            .await
            .unwrap();
        let composed = Arc::new(ComposedSendPipeline::new(
            Arc::new(conn.dedup()),
            Arc::new(conn.sequences()),
            Arc::new(conn.queue()),
        ));
        let n = if batch == 1 { total / 4 } else { total };
        send_path(
            "redis: composed ports (3 round trips)",
            composed,
            n,
            batch,
            run + 1000 + batch,
        )
        .await;
        conn.delete_namespace().await.unwrap();
    }

    if std::env::var_os("STORE_BENCH_REDIS_ONLY").is_some() {
        return;
    }
    // MariaDB batch persist.
    let db_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let admin = MySqlStore::connect(&MySqlConfig {
        run_migrations: false,
        ..MySqlConfig::new(&db_url)
    })
    .await
    .unwrap();
    let db = format!("im_bench_{run:x}");
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(admin.pool())
        .await
        .unwrap();
    let base = db_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(db_url.clone());
    let store = MySqlStore::connect(&MySqlConfig::new(format!("{base}/{db}")))
        .await
        .unwrap();
    let messages = Arc::new(store.messages());
    let writers = 4u64;
    let per = total / writers;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let messages = messages.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w * per;
            let end = i + per;
            while i < end {
                let n = 500.min(end - i);
                let batch: Vec<Message> = (i..i + n)
                    .map(|k| {
                        let mut m = message(k, run);
                        m.seq = k + 1;
                        m.conversation_id =
                            ConversationId::Direct(UserId(run), UserId(run + 1 + w));
                        m
                    })
                    .collect();
                messages.append(&batch).await.unwrap();
                i += n;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{:<44} batch  500: {:>9.0} rows/s ({total} in {secs:.2} s, {writers} writers)",
        "mysql: MySqlMessageStore::append",
        total as f64 / secs
    );
    // Replay: idempotent, nothing new.
    let replay: Vec<Message> = (0..500)
        .map(|k| {
            let mut m = message(k, run);
            m.seq = k + 1;
            m.conversation_id = ConversationId::Direct(UserId(run), UserId(run + 1));
            m
        })
        .collect();
    assert_eq!(
        messages.append(&replay).await.unwrap(),
        0,
        "a replay inserts nothing"
    );
    sqlx::query(&format!("DROP DATABASE {db}"))
        .execute(admin.pool())
        .await
        .unwrap();
}
