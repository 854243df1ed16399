//! The SQLite stores: the message, user, group, conversation, contact and device
//! conformance suites on a temporary database file (WAL mode) and in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;

use futures::FutureExt;
use im_core::ports::MessageStore;
use im_core::testkit;
use im_store::sqlite::SqliteStore;

#[macro_use]
mod common;

/// Runs `test` on a store in a fresh temporary file, then deletes the file.
async fn in_temp_file<F, Fut>(test: F)
where
    F: FnOnce(SqliteStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let path: PathBuf = std::env::temp_dir().join(format!("{}.db", testkit::unique("im-test")));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = SqliteStore::open(&url).await.expect("open");
    let outcome = AssertUnwindSafe(test(store.clone())).catch_unwind().await;
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

sql_conformance!(
    in_temp_file: sqlite_messages_conform,
    sqlite_users_conform,
    sqlite_groups_conform,
    sqlite_conversations_conform,
    sqlite_contacts_conform,
    sqlite_devices_conform
);

#[tokio::test]
async fn sqlite_in_memory_conforms() {
    testkit::message_suite(|| async {
        Arc::new(SqliteStore::memory().await.unwrap().messages()) as _
    })
    .await;
    testkit::user_suite(|| async { Arc::new(SqliteStore::memory().await.unwrap().users()) as _ })
        .await;
    testkit::group_suite(|| async { Arc::new(SqliteStore::memory().await.unwrap().groups()) as _ })
        .await;
    testkit::conversations_suite(|| async {
        let s = SqliteStore::memory().await.unwrap();
        (
            Arc::new(s.conversations()) as _,
            Arc::new(s.messages()) as _,
        )
    })
    .await;
    testkit::device_suite(|| async {
        Arc::new(SqliteStore::memory().await.unwrap().devices()) as _
    })
    .await;
    testkit::contacts_suite(|| async {
        Arc::new(SqliteStore::memory().await.unwrap().contacts()) as _
    })
    .await;
}

#[tokio::test]
async fn sqlite_file_is_in_wal_mode_and_takes_large_batches() {
    in_temp_file(|s| async move {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(s.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let (_, _, conv) = testkit::random_direct();
        let msgs: Vec<_> = (1..=1234)
            .map(|seq| testkit::sample_message(conv, seq, "x"))
            .collect();
        assert_eq!(s.messages().append(&msgs).await.unwrap(), 1234);
        assert_eq!(s.messages().append(&msgs[600..]).await.unwrap(), 0);
        s.migrate().await.expect("migrations are idempotent");
        assert_eq!(s.messages().last_seq(conv).await.unwrap(), 1234);
        let mut big = testkit::sample_message(conv, 2000, "y");
        big.msg_id = im_core::id::MessageId(u64::MAX);
        s.messages()
            .append(std::slice::from_ref(&big))
            .await
            .unwrap();
        assert_eq!(
            s.messages().get(big.msg_id).await.unwrap(),
            Some(big),
            "every u64 id round-trips"
        );
    })
    .await;
}
