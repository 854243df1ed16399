//! The MySQL stores against a real MySQL / MariaDB (`DATABASE_URL`, default
//! `mysql://root@127.0.0.1:3306/test`): the message, user, group,
//! conversation, contact and device conformance suites, each in a freshly created database that is dropped at
//! the end (even when the suite fails).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use im_core::ports::MessageStore;
use im_core::testkit;
use im_store::mysql::{MySqlConfig, MySqlShards, MySqlStore};
use sqlx::Connection;

#[macro_use]
mod common;
use common::with_database;

fn url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// The second server, for the sharded archive.
fn shard1_url() -> String {
    std::env::var("DATABASE_SHARD1_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3307/test".into())
}

async fn admin() -> sqlx::MySqlConnection {
    admin_of(&url()).await
}

async fn admin_of(url: &str) -> sqlx::MySqlConnection {
    if url == shard1_url() {
        return sqlx::MySqlConnection::connect(url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the second MySQL/MariaDB (archive shard 1) is not reachable at {url} ({e}). \
                 `source scripts/services.sh` starts one on 127.0.0.1:3307 with its own data \
                 dir; or point DATABASE_SHARD1_URL at another server."
                )
            });
    }
    sqlx::MySqlConnection::connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "MySQL/MariaDB is not reachable at {url} ({e}). These tests need a real server: \
             start one with `service mariadb start` (or `docker run -d -p 3306:3306 \
             -e MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1 mariadb:10.11`), or point DATABASE_URL at one."
            )
        })
}

/// Runs `test` on a store in a fresh database, then drops the database.
async fn in_fresh_database<F, Fut>(test: F)
where
    F: FnOnce(MySqlStore) -> Fut,
    Fut: Future<Output = ()>,
{
    in_fresh_databases(&[url()], |mut stores| test(stores.remove(0))).await;
}

/// Runs `test` on one fresh database on each server of `urls`, then drops
/// them (even when `test` fails).
async fn in_fresh_databases<F, Fut>(urls: &[String], test: F)
where
    F: FnOnce(Vec<MySqlStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = format!("im_test_{:x}", testkit::random_id());
    let mut admins = Vec::new();
    let mut stores = Vec::new();
    for u in urls {
        let mut admin = admin_of(u).await;
        sqlx::query(&format!("CREATE DATABASE `{db}`"))
            .execute(&mut admin)
            .await
            .expect("create database");
        admins.push(admin);
        stores.push(
            MySqlStore::connect(&MySqlConfig::new(with_database(u, &db)))
                .await
                .expect("connect and migrate"),
        );
    }
    let outcome = AssertUnwindSafe(test(stores.clone())).catch_unwind().await;
    for (store, mut admin) in stores.into_iter().zip(admins) {
        store.close().await;
        sqlx::query(&format!("DROP DATABASE `{db}`"))
            .execute(&mut admin)
            .await
            .expect("drop database");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Fresh databases on both servers (`DATABASE_URL`, `DATABASE_SHARD1_URL`).
async fn in_fresh_shards<F, Fut>(test: F)
where
    F: FnOnce(Vec<MySqlStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    in_fresh_databases(&[url(), shard1_url()], test).await;
}

sql_conformance!(
    in_fresh_database: mysql_messages_conform,
    mysql_users_conform,
    mysql_groups_conform,
    mysql_conversations_conform,
    mysql_contacts_conform,
    mysql_devices_conform
);

/// The archive over two servers passes the message and conversation suites.
#[tokio::test]
async fn mysql_sharded_archive_conforms() {
    in_fresh_shards(|stores| async move {
        let shards = MySqlShards::from_stores(stores, 64).unwrap();
        testkit::message_suite(|| async { shards.messages() as _ }).await;
        testkit::conversations_suite(|| async {
            (shards.conversations() as _, shards.messages() as _)
        })
        .await;
    })
    .await;
}

/// Rows land on both servers, each conversation wholly on the shard the map
/// names, and a user's list merges conversations from both.
#[tokio::test]
async fn mysql_shards_split_by_conversation() {
    use im_core::id::{ConversationId, UserId};
    use im_core::ports::ConversationStore;
    in_fresh_shards(|stores| async move {
        let shards = MySqlShards::from_stores(stores.clone(), 64).unwrap();
        let map = shards.map();
        let me = UserId(testkit::random_id());
        let convs: Vec<ConversationId> = (0..40)
            .map(|_| ConversationId::direct(me, UserId(testkit::random_id())).unwrap())
            .collect();
        let mut batch = Vec::new();
        for (i, c) in convs.iter().enumerate() {
            for seq in 1..=3 {
                let mut m = testkit::sample_message(*c, seq, "hi");
                m.from = me;
                m.ts = 1_000 + i as i64;
                batch.push(m);
            }
        }
        assert_eq!(shards.messages().append(&batch).await.unwrap(), 120);
        shards.conversations().record(&batch).await.unwrap();
        let mut per_shard = [0usize; 2];
        for c in &convs {
            let home = map.shard_of(*c);
            per_shard[home] += 1;
            let here = stores[home].messages().history(*c, 0, 10).await.unwrap();
            let there = stores[1 - home]
                .messages()
                .history(*c, 0, 10)
                .await
                .unwrap();
            assert_eq!(
                (here.len(), there.len()),
                (3, 0),
                "{c} lives on shard {home} only"
            );
        }
        assert!(
            per_shard[0] > 0 && per_shard[1] > 0,
            "both shards hold rows: {per_shard:?}"
        );
        // The list merges both shards, newest first, and pages across them.
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = shards.conversations().list(me, after, 7).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(im_core::ports::ListCursor::after);
            seen.extend(page.into_iter().map(|e| e.conversation_id));
        }
        let mut expected = convs.clone();
        expected.reverse();
        assert_eq!(seen, expected, "newest first, every conversation once");
        // Lookups by message id find the row on whichever shard holds it.
        let far = batch
            .iter()
            .find(|m| map.shard_of(m.conversation_id) == 1)
            .unwrap();
        let got = shards.messages().get(far.msg_id).await.unwrap().unwrap();
        assert_eq!(got.msg_id, far.msg_id);
        assert!(shards.messages().recall(far.msg_id).await.unwrap());
        let unknown = im_core::id::MessageId(testkit::random_id());
        assert!(shards.messages().get(unknown).await.unwrap().is_none());
        assert!(matches!(
            shards.messages().recall(unknown).await,
            Err(im_core::Error::NotFound(_))
        ));
    })
    .await;
}

/// Large batches cross every chunk shape; replays and migrations are idempotent.
#[tokio::test]
async fn mysql_large_batches_are_chunked() {
    in_fresh_database(|s| async move {
        let (_, _, conv) = testkit::random_direct();
        let msgs: Vec<_> = (1..=1234)
            .map(|seq| testkit::sample_message(conv, seq, "x"))
            .collect();
        let store = s.messages();
        assert_eq!(store.append(&msgs).await.unwrap(), 1234);
        assert_eq!(store.append(&msgs[..617]).await.unwrap(), 0);
        assert_eq!(store.last_seq(conv).await.unwrap(), 1234);
        let page = store.history(conv, 1200, 100).await.unwrap();
        assert_eq!(page.len(), 34);
        assert_eq!(page[0], msgs[1200]);
        s.migrate().await.expect("migrations are idempotent");
    })
    .await;
}

/// Several processes starting at once on a fresh database (a cluster's
/// first start) must all migrate successfully: MariaDB ignores sqlx's own
/// lock, which left migration 2 marked failed and every process retrying
/// forever.
#[tokio::test]
async fn mysql_concurrent_migrations_all_succeed() {
    let db = format!("im_test_{:x}", testkit::random_id());
    let mut admin = admin().await;
    sqlx::query(&format!("CREATE DATABASE `{db}`"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let url = with_database(&url(), &db);
    let outcome = AssertUnwindSafe(async {
        let config = MySqlConfig::new(url.clone());
        let starts = (0..6).map(|_| MySqlStore::connect(&config));
        let stores = futures::future::join_all(starts).await;
        let mut ok = Vec::new();
        for (i, s) in stores.into_iter().enumerate() {
            ok.push(s.unwrap_or_else(|e| panic!("process {i} failed to migrate: {e}")));
        }
        let rows: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
                .fetch_all(ok[0].pool())
                .await
                .unwrap();
        assert_eq!(rows.len(), im_store::mysql::MIGRATOR.iter().count());
        assert!(rows.iter().all(|(_, success)| *success), "{rows:?}");
        for s in ok {
            s.close().await;
        }
    })
    .catch_unwind()
    .await;
    sqlx::query(&format!("DROP DATABASE `{db}`"))
        .execute(&mut admin)
        .await
        .expect("drop database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(
        with_database("mysql://root@127.0.0.1:3306/test", "x"),
        "mysql://root@127.0.0.1:3306/x"
    );
    assert_eq!(
        with_database("mysql://u:p@h/db?ssl-mode=disabled", "x"),
        "mysql://u:p@h/x?ssl-mode=disabled"
    );
    assert_eq!(with_database("mysql://h:1", "x"), "mysql://h:1/x");
}

/// Resharding from one database to two loses nothing: the copy step makes
/// every conversation readable on its new home (history, list, cursors,
/// recalls) before anything is deleted; the cleanup refuses to run before the
/// copy, then removes exactly the moved conversations from the old database.
#[tokio::test]
async fn mysql_reshard_from_one_to_two_databases_loses_nothing() {
    use im_core::id::{ConversationId, GroupId, UserId};
    use im_core::ports::{ConversationStore, ListCursor};
    in_fresh_shards(|stores| async move {
        let old = MySqlShards::from_stores(vec![stores[0].clone()], 64).unwrap();
        let new = MySqlShards::from_stores(stores.clone(), 64).unwrap();
        let me = UserId(testkit::random_id());
        let mut convs: Vec<ConversationId> = (0..24)
            .map(|_| ConversationId::direct(me, UserId(testkit::random_id())).unwrap())
            .collect();
        convs.extend((0..6).map(|_| ConversationId::Group(GroupId(testkit::random_id()))));
        let mut batch = Vec::new();
        for (i, c) in convs.iter().enumerate() {
            if matches!(c, ConversationId::Group(_)) {
                old.conversations().join(me, *c).await.unwrap();
            }
            for seq in 1..=5 {
                let mut m = testkit::sample_message(*c, seq, &format!("m{seq}"));
                m.ts = 10_000 + i as i64;
                batch.push(m);
            }
            old.conversations().mark_read(me, *c, 2).await.unwrap();
        }
        // v1.2: every group conversation mentions `me` (seq 3) and all (seq 4).
        for m in batch.iter_mut() {
            if matches!(m.conversation_id, ConversationId::Group(_)) {
                m.mentions = match m.seq {
                    3 => Some(im_core::model::Mentions::Users(vec![me])),
                    4 => Some(im_core::model::Mentions::All),
                    _ => None,
                };
            }
        }
        assert_eq!(old.messages().append(&batch).await.unwrap(), 150);
        old.conversations().record(&batch).await.unwrap();
        let recalled = batch[7].msg_id;
        assert!(old.messages().recall(recalled).await.unwrap());
        let edited = batch[8].msg_id;
        let new_body = serde_json::json!("edited");
        assert!(old
            .messages()
            .edit(edited, &new_body, 99_999)
            .await
            .unwrap());
        let mentioned = old.conversations().mention_seqs(me, &convs).await.unwrap();
        let list_all = |s: MySqlShards| async move {
            let mut out = Vec::new();
            let mut after = None;
            loop {
                let page = s.conversations().list(me, after, 4).await.unwrap();
                if page.is_empty() {
                    return out;
                }
                after = page.last().map(ListCursor::after);
                out.extend(page);
            }
        };
        let before = list_all(old.clone()).await;
        assert_eq!(before.len(), 30);

        assert!(
            matches!(
                new.remove_strays().await,
                Err(im_core::Error::InvalidArgument(_))
            ),
            "the cleanup refuses to delete what has no copy"
        );
        let copied = old.copy_to(&new).await.unwrap();
        let moved: Vec<_> = convs
            .iter()
            .filter(|c| new.map().shard_of(**c) == 1)
            .collect();
        assert!(!moved.is_empty() && moved.len() < convs.len(), "{moved:?}");
        assert_eq!(copied.conversations_moved, moved.len() as u64);
        assert_eq!(copied.messages, 5 * moved.len() as u64);
        let again = old.copy_to(&new).await.unwrap();
        assert_eq!(again.messages, 0, "the copy is idempotent");

        // Readers on the new list see everything, once, before any delete.
        for c in &convs {
            let h = new.messages().history(*c, 0, 100).await.unwrap();
            assert_eq!(h.len(), 5, "{c}");
            assert_eq!(new.conversations().read_seq(me, *c).await.unwrap(), 2);
        }
        let got = new.messages().get(recalled).await.unwrap().unwrap();
        assert!(got.recalled, "the recall moved with the message");
        let got = new.messages().get(edited).await.unwrap().unwrap();
        assert_eq!(
            (got.body, got.edited_at),
            (new_body.clone(), Some(99_999)),
            "the edit moved with the message"
        );
        assert_eq!(
            new.conversations().mention_seqs(me, &convs).await.unwrap(),
            mentioned,
            "the mention index moved with the messages"
        );
        assert!(mentioned.iter().filter(|s| **s == 4).count() == 6);
        assert_eq!(
            list_all(new.clone()).await,
            before,
            "stale copies never show twice"
        );

        let cleaned = new.remove_strays().await.unwrap();
        assert_eq!(cleaned.conversations_moved, moved.len() as u64);
        assert_eq!(cleaned.messages, 5 * moved.len() as u64);
        for c in &moved {
            let left = stores[0].messages().history(**c, 0, 100).await.unwrap();
            assert!(left.is_empty(), "{c} left the old database");
        }
        assert_eq!(list_all(new.clone()).await, before);
        assert_eq!(
            new.conversations().mention_seqs(me, &convs).await.unwrap(),
            mentioned,
            "the cleanup keeps the mention index of the home shards"
        );
        for c in &moved {
            let left: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM conversation_mentions WHERE conversation_id = ?",
            )
            .bind(c.to_string())
            .fetch_one(stores[0].pool())
            .await
            .unwrap();
            assert_eq!(left, 0, "{c}'s mention rows left the old database");
        }
        assert_eq!(new.remove_strays().await.unwrap().conversations_moved, 0);
    })
    .await;
}
