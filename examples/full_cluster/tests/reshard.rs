//! `full_cluster reshard` end to end on the machine's two MariaDB servers
//! (`DATABASE_URL`, `DATABASE_SHARD1_URL`, both started by
//! `scripts/services.sh`): an archive on one database is copied to a
//! two-shard list, then cleaned up, and every message is on its home shard
//! exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{env_or, rand_u32};
use im_core::id::{ConversationId, MessageId, UserId};
use im_core::model::{Message, MessageKind, Target};
use im_core::ports::{ConversationStore, MessageStore};
use im_store::mysql::{MySqlShards, MySqlStore};
use sqlx::Connection;

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let (scheme, rest) = base.split_once("://").unwrap();
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}/{db}")
}

async fn admin(url: &str) -> sqlx::MySqlConnection {
    sqlx::MySqlConnection::connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!(
            "MySQL/MariaDB is not reachable at {url} ({e}): `source scripts/services.sh` starts \
             the second server on 127.0.0.1:3307 (DATABASE_SHARD1_URL) beside the first"
        )
        })
}

fn reshard(db_url: &str, shard_urls: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_full_cluster"));
    cmd.arg("reshard")
        .args(args)
        .env("DATABASE_URL", db_url)
        .env_remove("DATABASE_SHARD_URLS")
        .env_remove("IM_DATABASE_SHARD_URLS")
        .env("RUST_LOG", "warn");
    if let Some(urls) = shard_urls {
        cmd.env("DATABASE_SHARD_URLS", urls);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_copies_then_cleans_up_without_losing_a_message() {
    let servers = [
        env_or("DATABASE_URL", "mysql://root@127.0.0.1:3306/test"),
        env_or("DATABASE_SHARD1_URL", "mysql://root@127.0.0.1:3307/test"),
    ];
    let db = format!("im_reshard_{:x}", rand_u32());
    let urls: Vec<String> = servers.iter().map(|s| with_database(s, &db)).collect();
    let mut admins = Vec::new();
    for s in &servers {
        let mut a = admin(s).await;
        sqlx::query(&format!("CREATE DATABASE `{db}`"))
            .execute(&mut a)
            .await
            .unwrap();
        admins.push(a);
    }

    // An archive on the first database alone: 40 conversations × 3 messages.
    let old = MySqlStore::from_url(&urls[0]).await.unwrap();
    let me = UserId(7_000_000 + u64::from(rand_u32()));
    let mut batch = Vec::new();
    let mut convs = Vec::new();
    for i in 0..40u64 {
        let peer = UserId(me.0 + 1 + i);
        let c = ConversationId::direct(me, peer).unwrap();
        convs.push(c);
        for seq in 1..=3 {
            batch.push(Message {
                msg_id: MessageId((me.0 << 12) + i * 8 + seq),
                conversation_id: c,
                seq,
                from: me,
                to: Target::User(peer),
                kind: MessageKind::Text,
                body: serde_json::json!(format!("m{i}.{seq}")),
                client_msg_id: format!("c{i}.{seq}"),
                ts: 1_000 + i as i64,
                recalled: false,
                edited_at: None,
                mentions: None,
            });
        }
    }
    assert_eq!(old.messages().append(&batch).await.unwrap(), 120);
    old.conversations().record(&batch).await.unwrap();

    // Without --to or --cleanup it refuses (clap usage error).
    let none = reshard(&urls[0], None, &[]);
    assert_eq!(none.status.code(), Some(2), "{none:?}");

    let both = urls.join(",");
    let copy = reshard(&urls[0], None, &["--to", &both]);
    let out = String::from_utf8_lossy(&copy.stdout);
    assert!(
        copy.status.success(),
        "copy failed: {out}\n{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    assert!(out.contains("40 conversations looked at"), "{out}");

    let cleanup = reshard(&urls[0], Some(&both), &["--cleanup"]);
    let out = String::from_utf8_lossy(&cleanup.stdout);
    assert!(
        cleanup.status.success(),
        "cleanup failed: {out}\n{}",
        String::from_utf8_lossy(&cleanup.stderr)
    );

    let shards = MySqlShards::connect(&im_store::mysql::MySqlConfig::new(&urls[0]), &urls, 64)
        .await
        .unwrap();
    let mut per_shard = [0usize; 2];
    for c in &convs {
        let home = shards.map().shard_of(*c);
        let here = shards.stores()[home]
            .messages()
            .history(*c, 0, 10)
            .await
            .unwrap();
        let there = shards.stores()[1 - home]
            .messages()
            .history(*c, 0, 10)
            .await
            .unwrap();
        assert_eq!(
            (here.len(), there.len()),
            (3, 0),
            "{c} on shard {home} only"
        );
        per_shard[home] += 1;
    }
    assert!(per_shard.iter().all(|n| *n > 0), "{per_shard:?}");
    let listed = shards.conversations().list(me, None, 100).await.unwrap();
    assert_eq!(listed.len(), 40, "the list merges both shards");

    shards.close().await;
    old.close().await;
    for mut a in admins {
        sqlx::query(&format!("DROP DATABASE `{db}`"))
            .execute(&mut a)
            .await
            .unwrap();
    }
}
