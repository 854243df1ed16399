//! `AuditingMessageStore` keeps the `MessageStore` contract (the conformance
//! suite), and the whole node works with both custom parts plugged in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use custom_auth::audit::AuditingMessageStore;
use custom_auth::token::HmacTokenAuthenticator;
use im_core::id::{now_ms, ConversationId, UserId};
use im_core::logic::{LogicApi, Sender};
use im_core::memory::MemoryMessageStore;
use im_core::model::{MessageKind, Target};
use im_core::protocol::SendRequest;
use im_core::{testkit, Error};

#[tokio::test]
async fn auditing_store_passes_the_message_suite() {
    // Each call of the factory gets a fresh, isolated store.
    testkit::message_suite(|| async {
        Arc::new(AuditingMessageStore::new(Arc::new(
            MemoryMessageStore::default(),
        ))) as _
    })
    .await;
}

#[tokio::test]
async fn auditing_store_counts_new_messages_and_replays() {
    let store = AuditingMessageStore::new(Arc::new(MemoryMessageStore::default()));
    let (_, _, conv) = testkit::random_direct();
    let batch: Vec<_> = (1..=3)
        .map(|seq| testkit::sample_message(conv, seq, "x"))
        .collect();
    use im_core::ports::MessageStore;
    assert_eq!(store.append(&batch).await.unwrap(), 3);
    assert_eq!(store.append(&batch).await.unwrap(), 0);
    let s = store.stats();
    assert_eq!((s.batches, s.offered, s.stored, s.failures), (2, 6, 3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_on_the_custom_parts() {
    let secret = b"our-identity-system-shared-secret!!";
    let (builder, audited) = custom_auth::builder(secret);
    let node = builder.start().await.unwrap();
    let minter = HmacTokenAuthenticator::new(secret);
    let (a, b) = (UserId(1001), UserId(1002));
    let exp = now_ms() + 60_000;

    // Nobody has seen b yet: sending to it is not_found.
    let ta = minter.mint(a, exp).unwrap();
    assert_eq!(node.logic.verify_token(&ta).await.unwrap().user_id, a);
    let send = |id: &str| SendRequest {
        client_msg_id: id.into(),
        to: Target::User(b),
        kind: MessageKind::Text,
        body: serde_json::json!("hello"),
        deliver_at: None,
        mentions: None,
    };
    assert!(matches!(
        node.logic.send(Sender::http(a), send("c0")).await,
        Err(Error::NotFound(_))
    ));

    // b's first token use provisions it; now a can send to b.
    let tb = minter.mint(b, exp).unwrap();
    assert_eq!(node.logic.verify_token(&tb).await.unwrap().user_id, b);
    let ack = node.logic.send(Sender::http(a), send("c1")).await.unwrap();
    assert_eq!(ack.seq, 1);

    // The persist worker archives it through the auditing store.
    let conv = ConversationId::direct(a, b).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let page = node.logic.sync(b, conv, 0, None).await.unwrap();
        if page.messages.len() == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not archived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(audited.stats().stored, 1);

    // Bad tokens are refused; password logins get no token.
    assert!(matches!(
        node.logic.verify_token("1001.1.00").await,
        Err(Error::Unauthenticated(_))
    ));
    node.logic.register("alice", "password123").await.unwrap();
    assert!(matches!(
        node.logic.login("alice", "password123").await,
        Err(Error::PermissionDenied(_))
    ));
    node.shutdown().await;
}
