//! Conformance suite of `SendPipeline` (together with the queue it feeds).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{random_direct, sample_envelope, unique};
use crate::id::ConversationId;
use crate::model::Envelope;
use crate::ports::{
    Admission, Admitted, DedupKey, Delivery, MessageQueue, QueueConsumer, SendPipeline,
};

fn admission(conv: ConversationId) -> Admission {
    let mut envelope = sample_envelope(conv, 0);
    envelope.message.seq = 0;
    Admission {
        key: DedupKey::of_send(envelope.message.from, &envelope.message.client_msg_id),
        envelope,
    }
}

async fn drain(c: &mut dyn QueueConsumer, want: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    for _ in 0..50 {
        if got.len() >= want {
            break;
        }
        got.extend(
            c.fetch(want - got.len(), Duration::from_millis(100))
                .await
                .unwrap_or_else(|e| panic!("send: fetch failed: {e}")),
        );
    }
    got
}

fn new_ack(r: &crate::Result<Admitted>) -> crate::protocol::SendAck {
    match r {
        Ok(Admitted::New(a)) => a.clone(),
        other => panic!("send: expected a new admission, got {other:?}"),
    }
}

/// Runs every `SendPipeline` check on fresh `(pipeline, queue)` pairs from
/// `make`, where the pipeline publishes into the queue.
pub async fn send_pipeline_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (Arc<dyn SendPipeline>, Arc<dyn MessageQueue>)>,
{
    admits_publishes_and_dedups(make().await).await;
    repeats_within_a_batch_are_admitted_once(make().await).await;
    keys_expire(make().await).await;
    concurrent_admissions_are_gap_free(make().await).await;
}

async fn admits_publishes_and_dedups((p, q): (Arc<dyn SendPipeline>, Arc<dyn MessageQueue>)) {
    let ttl = Duration::from_secs(60);
    let group = unique("g");
    let mut c = q.consumer(&group, "c").await.expect("send: consumer");
    assert!(
        p.admit(Vec::new(), ttl).await.expect("admit").is_empty(),
        "send: an empty batch admits nothing"
    );
    let (_, _, conv) = random_direct();
    let (_, _, other) = random_direct();
    let batch: Vec<Admission> = vec![
        admission(conv),
        admission(conv),
        admission(other),
        admission(conv),
    ];
    let out = p.admit(batch.clone(), ttl).await.expect("send: admit");
    assert_eq!(out.len(), 4, "send: one outcome per admission");
    let acks: Vec<_> = out.iter().map(new_ack).collect();
    assert_eq!(
        acks.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![1, 2, 1, 3],
        "send: seqs are allocated per conversation, in batch order, from 1"
    );
    for (a, ack) in batch.iter().zip(&acks) {
        let m = &a.envelope.message;
        assert_eq!(
            (&ack.client_msg_id, ack.msg_id, ack.conversation_id, ack.ts),
            (&m.client_msg_id, m.msg_id, m.conversation_id, m.ts),
            "send: the ack echoes the message"
        );
    }

    let got = drain(c.as_mut(), 4).await;
    assert_eq!(got.len(), 4, "send: every new admission is in the queue");
    let mut want: Vec<Envelope> = batch
        .iter()
        .zip(&acks)
        .map(|(a, ack)| {
            let mut e = a.envelope.clone();
            e.message.seq = ack.seq;
            e
        })
        .collect();
    let mut seen: Vec<Envelope> = got
        .iter()
        .filter_map(|d| d.entry.envelope().cloned())
        .collect();
    want.sort_by_key(|e| e.message.msg_id);
    seen.sort_by_key(|e| e.message.msg_id);
    assert_eq!(
        seen, want,
        "send: the queue carries the envelopes with their assigned seqs"
    );
    let conv_seqs: Vec<u64> = got
        .iter()
        .filter(|d| d.entry.message().map(|m| m.conversation_id) == Some(conv))
        .map(|d| d.entry.message().map_or(0, |m| m.seq))
        .collect();
    assert_eq!(
        conv_seqs,
        vec![1, 2, 3],
        "send: a conversation stays in seq order"
    );
    c.ack(&got.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .expect("ack");

    // A retry of the same batch: the original acks, nothing enqueued.
    let again = p.admit(batch.clone(), ttl).await.expect("send: admit");
    for (r, ack) in again.iter().zip(&acks) {
        match r {
            Ok(Admitted::Duplicate(a)) => {
                assert_eq!(a, ack, "send: a retry gets the original ack")
            }
            other => panic!("send: a retried send must be a Duplicate, got {other:?}"),
        }
    }
    assert!(
        c.fetch(10, Duration::from_millis(200))
            .await
            .expect("fetch")
            .is_empty(),
        "send: a duplicate is not enqueued"
    );
    // A lookup finds the original acks (Logic asks before refusing a retry).
    let mut keys: Vec<(DedupKey, ConversationId)> = batch
        .iter()
        .map(|a| (a.key, a.envelope.message.conversation_id))
        .collect();
    keys.push((
        DedupKey::of_send(crate::id::UserId(1), &unique("never")),
        conv,
    ));
    let found = p.lookup(&keys, ttl).await.expect("send: lookup");
    assert_eq!(found.len(), keys.len(), "send: one answer per key");
    for (f, ack) in found.iter().zip(&acks) {
        let f = f.as_ref().expect("send: an admitted key is found");
        assert_eq!(
            (f.msg_id, f.seq, f.ts, f.conversation_id),
            (ack.msg_id, ack.seq, ack.ts, ack.conversation_id),
            "send: a lookup answers the original ack"
        );
    }
    assert!(found[4].is_none(), "send: an unknown key is not found");
    // A new send after the retries continues the conversation.
    let next = p.admit(vec![admission(conv)], ttl).await.expect("admit");
    assert_eq!(
        new_ack(&next[0]).seq,
        4,
        "send: duplicates do not consume seqs"
    );
}

async fn repeats_within_a_batch_are_admitted_once(
    (p, q): (Arc<dyn SendPipeline>, Arc<dyn MessageQueue>),
) {
    let ttl = Duration::from_secs(60);
    let group = unique("g");
    let mut c = q.consumer(&group, "c").await.expect("consumer");
    let (_, _, conv) = random_direct();
    let a = admission(conv);
    let b = admission(conv);
    let out = p
        .admit(vec![a.clone(), b, a], ttl)
        .await
        .expect("send: admit");
    let first = new_ack(&out[0]);
    assert_eq!(new_ack(&out[1]).seq, 2);
    match &out[2] {
        Ok(Admitted::Duplicate(d)) => assert_eq!(
            d, &first,
            "send: a key repeated in a batch gets the first one's ack"
        ),
        other => panic!("send: a key repeated in a batch must be a Duplicate, got {other:?}"),
    }
    let got = drain(c.as_mut(), 3).await;
    assert_eq!(
        got.len(),
        2,
        "send: a key repeated in a batch is enqueued once"
    );
}

async fn keys_expire((p, _q): (Arc<dyn SendPipeline>, Arc<dyn MessageQueue>)) {
    let (_, _, conv) = random_direct();
    let a = admission(conv);
    let first = p
        .admit(vec![a.clone()], Duration::from_millis(300))
        .await
        .expect("admit");
    assert_eq!(new_ack(&first[0]).seq, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later = p
        .admit(vec![a], Duration::from_secs(60))
        .await
        .expect("admit");
    assert_eq!(
        new_ack(&later[0]).seq,
        2,
        "send: a key is forgotten after its dedup TTL"
    );
}

async fn concurrent_admissions_are_gap_free(
    (p, q): (Arc<dyn SendPipeline>, Arc<dyn MessageQueue>),
) {
    let ttl = Duration::from_secs(60);
    let group = unique("g");
    let mut c = q.consumer(&group, "c").await.expect("consumer");
    let (_, _, conv) = random_direct();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..5 {
                let batch: Vec<_> = (0..5).map(|_| admission(conv)).collect();
                for r in p.admit(batch, ttl).await.expect("admit") {
                    seqs.push(new_ack(&r).seq);
                }
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=100).collect::<Vec<u64>>(),
        "send: concurrent admissions get gap-free, distinct seqs"
    );
    let got = drain(c.as_mut(), 100).await;
    let seqs: HashSet<u64> = got
        .iter()
        .map(|d| d.entry.message().map_or(0, |m| m.seq))
        .collect();
    assert_eq!(
        (got.len(), seqs.len()),
        (100, 100),
        "send: every concurrent admission is enqueued once"
    );
}
