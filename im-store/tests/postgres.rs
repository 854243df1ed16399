//! The PostgreSQL stores against a real PostgreSQL (`POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`): the message, user, group,
//! conversation, contact and device conformance suites, each in a freshly
//! created database that is dropped at the end (even when the suite fails),
//! plus concurrent migrations, large batches and [`AnyStore`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use im_core::id::{ConversationId, UserId};
use im_core::ports::{ConversationStore, MessageStore};
use im_core::testkit;
use im_store::postgres::PgStore;
use im_store::sql::{AnyStore, Dialect};
use sqlx::Connection;

#[macro_use]
mod common;
use common::with_database;

fn url() -> String {
    std::env::var("POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn admin() -> sqlx::PgConnection {
    let url = url();
    sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url} ({e}). These tests need a real server: \
             start one with `service postgresql start` (Debian package `postgresql`; \
             `scripts/services.sh` checks it) or `docker run -d -p 5432:5432 \
             -e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test postgres:16`, \
             or point POSTGRES_URL at one."
        )
    })
}

/// Runs `test` with the URL of a fresh database, then drops the database
/// (even when `test` fails).
async fn in_fresh_url<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = format!("im_test_{:x}", testkit::random_id());
    let mut admin = admin().await;
    sqlx::query(&format!("CREATE DATABASE \"{db}\""))
        .execute(&mut admin)
        .await
        .expect("create database");
    let outcome = AssertUnwindSafe(test(with_database(&url(), &db)))
        .catch_unwind()
        .await;
    sqlx::query(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `test` on a store in a fresh database, then drops the database.
async fn in_fresh_database<F, Fut>(test: F)
where
    F: FnOnce(PgStore) -> Fut,
    Fut: Future<Output = ()>,
{
    in_fresh_url(|url| async move {
        let store = PgStore::connect(&url).await.expect("connect and migrate");
        test(store.clone()).await;
        store.close().await;
    })
    .await;
}

sql_conformance!(
    in_fresh_database: postgres_messages_conform,
    postgres_users_conform,
    postgres_groups_conform,
    postgres_conversations_conform,
    postgres_contacts_conform,
    postgres_devices_conform
);

/// Large batches cross every chunk shape (and the unpadded upsert tails);
/// replays and migrations are idempotent.
#[tokio::test]
async fn postgres_large_batches_are_chunked() {
    in_fresh_database(|s| async move {
        let (a, _, conv) = testkit::random_direct();
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

        // 1,234 conversations of one user recorded at once: every upsert
        // shape, with a 14-row tail.
        let convs: Vec<_> = (0..1234)
            .map(|_| ConversationId::direct(a, UserId(testkit::random_id())).unwrap())
            .collect();
        let lasts: Vec<_> = convs
            .iter()
            .map(|c| testkit::sample_message(*c, 1, "y"))
            .collect();
        store.append(&lasts).await.unwrap();
        let conversations = s.conversations();
        conversations.record(&lasts).await.unwrap();
        conversations.record(&lasts).await.unwrap();
        let listed = conversations.list(a, None, 2000).await.unwrap();
        assert_eq!(listed.len(), 1234);
        s.migrate().await.expect("migrations are idempotent");
    })
    .await;
}

/// Several processes starting at once on a fresh database (a cluster's
/// first start) must all migrate successfully, each migration applied once.
#[tokio::test]
async fn postgres_concurrent_migrations_all_succeed() {
    in_fresh_url(|url| async move {
        let starts = (0..6).map(|_| PgStore::connect(&url));
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
        assert_eq!(rows.len(), im_store::postgres::MIGRATOR.iter().count());
        assert!(rows.iter().all(|(_, success)| *success), "{rows:?}");
        for s in ok {
            s.close().await;
        }
    })
    .await;
}

/// `AnyStore` picks PostgreSQL from both schemes and serves the ports.
#[tokio::test]
async fn any_store_connects_by_scheme() {
    in_fresh_url(|url| async move {
        let alt = url.replacen("postgres://", "postgresql://", 1);
        for u in [&url, &alt] {
            let store = im_store::connect_sql(u).await.expect("connect");
            assert_eq!(store.dialect(), Dialect::Postgres);
            let (_, _, conv) = testkit::random_direct();
            let m = testkit::sample_message(conv, 1, "hi");
            let messages = store.messages();
            messages.append(std::slice::from_ref(&m)).await.unwrap();
            assert_eq!(messages.get(m.msg_id).await.unwrap(), Some(m));
            store.close().await;
        }
        assert!(matches!(
            AnyStore::connect("ftp://example.org/db").await,
            Err(im_core::Error::InvalidArgument(_))
        ));
    })
    .await;
}
