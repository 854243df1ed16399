//! Conformance suite of `MessageQueue`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{random_direct, sample_envelope, unique};
use crate::model::Entry;
use crate::ports::{Delivery, MessageQueue, QueueConsumer};

async fn drain(c: &mut dyn QueueConsumer, want: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    for _ in 0..50 {
        if got.len() >= want {
            break;
        }
        let batch = c
            .fetch(want - got.len(), Duration::from_millis(100))
            .await
            .unwrap_or_else(|e| panic!("queue: fetch failed: {e}"));
        got.extend(batch);
    }
    got
}

/// The seqs of the message entries handed out, in order.
fn seqs_of(got: &[Delivery]) -> Vec<u64> {
    got.iter()
        .map(|d| d.entry.message().map_or(0, |m| m.seq))
        .collect()
}

fn envelopes(n: u64) -> Vec<Entry> {
    let (_, _, conv) = random_direct();
    (1..=n)
        .map(|seq| sample_envelope(conv, seq).into())
        .collect()
}

/// Runs every `MessageQueue` check on fresh queues from `make`.
pub async fn queue_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn MessageQueue>>,
{
    publish_fetch_ack(make().await).await;
    consumers_never_share_an_entry(make().await).await;
    unacked_entries_are_claimable_after_idle_only(make().await).await;
    entries_survive_until_every_group_acked(make().await).await;
    fetch_wakes_on_publish(make().await).await;
    assigned_partitions_only(make().await).await;
    a_new_holder_takes_over_in_order(make().await).await;
}

/// The partition of an entry in `q`.
fn partition(q: &dyn MessageQueue, e: &Entry) -> u32 {
    crate::ports::partition_of(e.shard_hash(), q.partitions())
}

/// Conversations until one falls in partition `p` of `q`.
fn conversation_in(q: &dyn MessageQueue, p: u32) -> crate::id::ConversationId {
    loop {
        let (_, _, conv) = random_direct();
        if crate::ports::partition_of(conv.shard_hash(), q.partitions()) == p {
            return conv;
        }
    }
}

async fn assigned_partitions_only(q: Arc<dyn MessageQueue>) {
    assert!(q.partitions() >= 1, "queue: at least one partition");
    let group = unique("g");
    let mut c = q.consumer(&group, "c").await.expect("consumer");
    let last = q.partitions() - 1;
    c.assign(&[last])
        .await
        .expect("queue: a consumer can be assigned partitions");
    assert!(
        c.assign(&[q.partitions()]).await.is_err(),
        "queue: assigning a partition that does not exist is an error"
    );
    c.assign(&[last]).await.expect("assign");
    let mine = conversation_in(q.as_ref(), last);
    let mut batch: Vec<Entry> = (1..=5).map(|s| sample_envelope(mine, s).into()).collect();
    if q.partitions() > 1 {
        let other = conversation_in(q.as_ref(), 0);
        batch.extend((1..=5).map(|s| sample_envelope(other, s).into()));
    }
    q.publish(&batch).await.expect("publish");
    let got = drain(c.as_mut(), 10).await;
    assert!(
        got.iter().all(|d| partition(q.as_ref(), &d.entry) == last),
        "queue: a consumer reads only its assigned partitions"
    );
    assert_eq!(
        seqs_of(&got),
        vec![1, 2, 3, 4, 5],
        "queue: every entry of the assigned partition, in order"
    );
}

/// A partition's pending entries move with it: the new holder gets what
/// the old one left un-acked first, then the rest, all in publish order.
async fn a_new_holder_takes_over_in_order(q: Arc<dyn MessageQueue>) {
    let group = unique("g");
    let p = q.partitions() / 2;
    let conv = conversation_in(q.as_ref(), p);
    let mut old = q.consumer(&group, "old").await.expect("consumer");
    old.assign(&[p]).await.expect("assign");
    for seq in 1..=6 {
        q.publish(&[sample_envelope(conv, seq).into()])
            .await
            .expect("publish");
    }
    let first = drain(old.as_mut(), 3).await;
    assert!(!first.is_empty(), "queue: the old holder read entries");
    // It acks the first, then dies with the rest pending.
    old.ack(&first[..1].iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .expect("ack");
    drop(old);
    for seq in 7..=9 {
        q.publish(&[sample_envelope(conv, seq).into()])
            .await
            .expect("publish");
    }
    let mut new = q.consumer(&group, "new").await.expect("consumer");
    new.assign(&[p]).await.expect("assign");
    let got = drain(new.as_mut(), 8).await;
    let seqs = seqs_of(&got);
    assert_eq!(
        seqs,
        (2..=9).collect::<Vec<_>>(),
        "queue: the new holder gets the left-over pending entries, then the new ones, in order"
    );
    new.ack(&got.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .expect("ack");
    let stats = q.stats(&group).await.expect("stats");
    assert_eq!((stats.pending, stats.lag), (0, 0), "queue: all done");
}

async fn publish_fetch_ack(q: Arc<dyn MessageQueue>) {
    let group = unique("g");
    let mut c = q.consumer(&group, "c1").await.expect("queue: consumer");
    let batch = envelopes(10);
    q.publish(&batch).await.expect("queue: publish");
    let got = drain(c.as_mut(), 10).await;
    assert_eq!(
        got.len(),
        10,
        "queue: fetch must return every published entry"
    );
    let seqs = seqs_of(&got);
    assert_eq!(
        seqs,
        (1..=10).collect::<Vec<_>>(),
        "queue: one conversation's entries keep publish order"
    );
    assert_eq!(
        got[0].entry, batch[0],
        "queue: the envelope survives the trip unchanged"
    );
    assert!(
        got.iter().all(|d| d.delivery_count == 1),
        "queue: first delivery counts 1"
    );
    let pending = q.stats(&group).await.expect("stats").pending;
    assert!(
        (1..=10).contains(&pending),
        "queue: fetched entries are pending (counted per entry, or per stored batch): {pending}"
    );
    let ids: Vec<_> = got.iter().map(|d| d.id.clone()).collect();
    c.ack(&ids).await.expect("queue: ack");
    let stats = q.stats(&group).await.expect("stats");
    assert_eq!(
        stats.pending, 0,
        "queue: acked entries are no longer pending"
    );
    assert_eq!(stats.lag, 0, "queue: nothing left to deliver");
    let again = c.fetch(10, Duration::from_millis(50)).await.expect("fetch");
    assert!(
        again.is_empty(),
        "queue: acked entries are not delivered again"
    );
}

async fn consumers_never_share_an_entry(q: Arc<dyn MessageQueue>) {
    let group = unique("g");
    let mut a = q.consumer(&group, "a").await.expect("consumer");
    let mut b = q.consumer(&group, "b").await.expect("consumer");
    q.publish(&envelopes(200)).await.expect("publish");
    let fa = async {
        // 40 × 7 ≥ 200: enough even if one consumer gets a whole stored batch.
        let mut got = Vec::new();
        for _ in 0..40 {
            got.extend(a.fetch(7, Duration::from_millis(20)).await.expect("fetch"));
        }
        got
    };
    let fb = async {
        let mut got = Vec::new();
        for _ in 0..40 {
            got.extend(b.fetch(7, Duration::from_millis(20)).await.expect("fetch"));
        }
        got
    };
    let (ga, gb) = tokio::join!(fa, fb);
    let ia: HashSet<_> = ga.iter().map(|d| d.id.clone()).collect();
    let ib: HashSet<_> = gb.iter().map(|d| d.id.clone()).collect();
    assert!(
        ia.is_disjoint(&ib),
        "queue: two consumers of one group got the same entry"
    );
    assert_eq!(
        ia.len() + ib.len(),
        200,
        "queue: the two consumers together get every entry once"
    );
}

async fn unacked_entries_are_claimable_after_idle_only(q: Arc<dyn MessageQueue>) {
    let group = unique("g");
    let mut dead = q.consumer(&group, "dead").await.expect("consumer");
    let mut heir = q.consumer(&group, "heir").await.expect("consumer");
    q.publish(&envelopes(5)).await.expect("publish");
    let taken = drain(dead.as_mut(), 5).await;
    assert_eq!(taken.len(), 5);
    let idle = Duration::from_millis(400);
    tokio::time::sleep(idle / 2).await;
    let early = heir.claim_stale(idle, 100).await.expect("claim");
    assert!(
        early.is_empty(),
        "queue: an entry must not be claimable before its idle time"
    );
    tokio::time::sleep(idle / 2 + Duration::from_millis(150)).await;
    let claimed = heir.claim_stale(idle, 100).await.expect("claim");
    let want: HashSet<_> = taken.iter().map(|d| d.id.clone()).collect();
    let got: HashSet<_> = claimed.iter().map(|d| d.id.clone()).collect();
    assert_eq!(
        got, want,
        "queue: every idle pending entry is claimable by another consumer"
    );
    assert!(
        claimed.iter().all(|d| d.delivery_count >= 2),
        "queue: a claimed entry counts its redelivery"
    );
    let again = heir.claim_stale(idle, 100).await.expect("claim");
    assert!(again.is_empty(), "queue: a just-claimed entry is not idle");
    heir.ack(&claimed.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .expect("ack");
    assert_eq!(q.stats(&group).await.expect("stats").pending, 0);
}

async fn entries_survive_until_every_group_acked(q: Arc<dyn MessageQueue>) {
    let g1 = unique("g1");
    let g2 = unique("g2");
    q.create_group(&g1).await.expect("group");
    q.create_group(&g1)
        .await
        .expect("queue: create_group must be idempotent");
    q.create_group(&g2).await.expect("group");
    q.publish(&envelopes(20)).await.expect("publish");
    let mut c1 = q.consumer(&g1, "c").await.expect("consumer");
    let got1 = drain(c1.as_mut(), 20).await;
    c1.ack(&got1.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .expect("ack");
    // More traffic after the first group acked, to give a backend a chance to trim.
    q.publish(&envelopes(20)).await.expect("publish");
    let got1b = drain(c1.as_mut(), 20).await;
    c1.ack(&got1b.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .expect("ack");
    let mut c2 = q.consumer(&g2, "c").await.expect("consumer");
    let got2 = drain(c2.as_mut(), 40).await;
    assert_eq!(
        got2.len(),
        40,
        "queue: entries acked by one group must survive for another"
    );
}

async fn fetch_wakes_on_publish(q: Arc<dyn MessageQueue>) {
    let group = unique("g");
    let mut c = q.consumer(&group, "c").await.expect("consumer");
    let q2 = q.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        q2.publish(&envelopes(1)).await
    });
    let started = std::time::Instant::now();
    let got = c.fetch(10, Duration::from_secs(5)).await.expect("fetch");
    assert_eq!(
        got.len(),
        1,
        "queue: a blocked fetch returns the entry published meanwhile"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "queue: a blocked fetch must wake on publish, not at its timeout"
    );
    publisher.await.expect("join").expect("publish");
}
