//! The in-memory backends pass every conformance suite.
#![cfg(feature = "testkit")]

use std::sync::Arc;

use im_core::memory::*;
use im_core::testkit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_queue_conforms() {
    testkit::queue_suite(|| async { Arc::new(MemoryQueue::new(10_000)) as _ }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_messages_conform() {
    testkit::message_suite(|| async { Arc::new(MemoryMessageStore::default()) as _ }).await;
}

#[tokio::test]
async fn memory_users_conform() {
    testkit::user_suite(|| async { Arc::new(MemoryUserStore::new()) as _ }).await;
}

#[tokio::test]
async fn memory_groups_conform() {
    testkit::group_suite(|| async { Arc::new(MemoryGroupStore::new()) as _ }).await;
}

#[tokio::test]
async fn memory_sessions_conform() {
    testkit::session_suite(|| async { Arc::new(MemorySessionStore::new()) as _ }).await;
}

#[tokio::test]
async fn memory_conversations_conform() {
    testkit::conversations_suite(|| async {
        (
            Arc::new(MemoryConversationStore::default()) as _,
            Arc::new(MemoryMessageStore::default()) as _,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_sequences_conform() {
    testkit::sequence_suite(|| async { Arc::new(MemorySequenceAllocator::new()) as _ }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_send_pipeline_conforms() {
    use im_core::compose::ComposedSendPipeline;
    testkit::send_pipeline_suite(|| async {
        let queue = Arc::new(MemoryQueue::new(10_000));
        let pipeline = ComposedSendPipeline::new(
            Arc::new(MemoryDedupStore::new()),
            Arc::new(MemorySequenceAllocator::new()),
            queue.clone(),
        );
        (Arc::new(pipeline) as _, queue as _)
    })
    .await;
}

#[tokio::test]
async fn memory_dedup_conforms() {
    testkit::dedup_suite(|| async { Arc::new(MemoryDedupStore::new()) as _ }).await;
}

#[tokio::test]
async fn memory_schedule_conforms() {
    testkit::schedule_suite(|| async { Arc::new(MemoryScheduleStore::new()) as _ }).await;
}

#[tokio::test]
async fn memory_discovery_conforms() {
    testkit::discovery_suite(|| async { Arc::new(MemoryDiscovery::new()) as _ }).await;
}

#[tokio::test]
async fn memory_queue_is_bounded() {
    use im_core::ports::MessageQueue;
    let q = MemoryQueue::new(3);
    q.create_group("g").await.unwrap();
    let (_, _, c) = testkit::random_direct();
    let batch: Vec<im_core::model::Entry> = (1..=3)
        .map(|s| testkit::sample_envelope(c, s).into())
        .collect();
    q.publish(&batch).await.unwrap();
    let err = q.publish(&batch[..1]).await.unwrap_err();
    assert_eq!(err.code(), im_core::ErrorCode::Unavailable);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn memory_throttle_conforms() {
    testkit::throttle_suite(|| async { Arc::new(im_core::memory::MemoryThrottle::new()) as _ })
        .await;
}

#[tokio::test]
async fn memory_revocations_conform() {
    testkit::revocation_suite(|| async { Arc::new(MemoryTokenRevocations::new()) as _ }).await;
}

#[tokio::test]
async fn memory_leases_conform() {
    testkit::lease_suite(|| async { Arc::new(im_core::memory::MemoryPartitionLeases::new()) as _ })
        .await;
}

#[tokio::test]
async fn memory_queue_conforms_with_one_partition() {
    testkit::queue_suite(|| async { Arc::new(MemoryQueue::with_partitions(10_000, 1)) as _ }).await;
}

/// The sharded archive (three memory shards) passes the message and
/// conversation suites: appends split by shard, lists merged across shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_memory_archive_conforms() {
    use im_core::compose::{ShardMap, ShardedConversationStore, ShardedMessageStore};
    use im_core::ports::{ConversationStore, MessageStore};
    let map = ShardMap::new(64, 3).expect("map");
    let messages = move || {
        let shards = (0..3)
            .map(|_| Arc::new(MemoryMessageStore::default()) as Arc<dyn MessageStore>)
            .collect();
        Arc::new(ShardedMessageStore::new(map, shards).expect("shards"))
    };
    testkit::message_suite(|| async move { messages() as _ }).await;
    testkit::conversations_suite(|| async move {
        let shards = (0..3)
            .map(|_| Arc::new(MemoryConversationStore::default()) as Arc<dyn ConversationStore>)
            .collect();
        (
            Arc::new(ShardedConversationStore::new(map, shards).expect("shards")) as _,
            messages() as _,
        )
    })
    .await;
}

#[tokio::test]
async fn memory_objects_conform() {
    testkit::objects_suite(|| async {
        Arc::new(MemoryObjectStorage::new(
            "http://127.0.0.1:1",
            b"objects-secret",
            1 << 20,
        )) as _
    })
    .await;
}

#[tokio::test]
async fn memory_devices_conform() {
    testkit::device_suite(|| async { Arc::new(MemoryDeviceStore::new()) as _ }).await;
}

#[tokio::test]
async fn memory_contacts_conform() {
    testkit::contacts_suite(|| async { Arc::new(MemoryContactStore::new()) as _ }).await;
}
