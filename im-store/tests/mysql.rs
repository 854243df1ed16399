//! The MySQL stores against a real MySQL / MariaDB (`DATABASE_URL`, default
//! `mysql://root@127.0.0.1:3306/test`): the message, user, group and
//! conversation conformance suites, each in a freshly created database that is dropped at
//! the end (even when the suite fails).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use im_core::ports::MessageStore;
use im_core::testkit;
use im_store::mysql::{MySqlConfig, MySqlStore};
use sqlx::Connection;

fn url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn admin() -> sqlx::MySqlConnection {
    let url = url();
    sqlx::MySqlConnection::connect(&url)
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
    let db = format!("im_test_{:x}", testkit::random_id());
    let mut admin = admin().await;
    sqlx::query(&format!("CREATE DATABASE `{db}`"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let store = MySqlStore::connect(&MySqlConfig::new(with_database(&url(), &db)))
        .await
        .expect("connect and migrate");
    let outcome = AssertUnwindSafe(test(store.clone())).catch_unwind().await;
    store.close().await;
    sqlx::query(&format!("DROP DATABASE `{db}`"))
        .execute(&mut admin)
        .await
        .expect("drop database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn mysql_messages_conform() {
    in_fresh_database(|s| async move {
        testkit::message_suite(|| async { Arc::new(s.messages()) as _ }).await;
    })
    .await;
}

#[tokio::test]
async fn mysql_users_conform() {
    in_fresh_database(|s| async move {
        testkit::user_suite(|| async { Arc::new(s.users()) as _ }).await;
    })
    .await;
}

#[tokio::test]
async fn mysql_groups_conform() {
    in_fresh_database(|s| async move {
        testkit::group_suite(|| async { Arc::new(s.groups()) as _ }).await;
    })
    .await;
}

#[tokio::test]
async fn mysql_conversations_conform() {
    in_fresh_database(|s| async move {
        testkit::conversations_suite(|| async {
            (
                Arc::new(s.conversations()) as _,
                Arc::new(s.messages()) as _,
            )
        })
        .await;
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
