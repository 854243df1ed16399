//! Conformance suite of `ScheduleStore`.
//!
//! Every check runs on a fresh store, so `due` sees only that check's sends.
//! Most sends are due in the past (around 2023-11), where a backend cannot
//! confuse them with real traffic; one check holds a send an hour ahead.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{random_id, sample_message};
use crate::id::{now_ms, ConversationId, MessageId, SessionId, UserId};
use crate::model::{Envelope, MessageKind, NodeId};
use crate::ports::{ScheduleStore, ScheduledSend};

/// A base time (Unix ms) the sends of the suite are due around.
const T: i64 = 1_700_000_000_000;

/// How long keys are remembered in the checks that do not test expiry.
const TTL: Duration = Duration::from_secs(60);

/// Runs every `ScheduleStore` check on fresh stores from `make`.
pub async fn schedule_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ScheduleStore>>,
{
    hold_and_pending(make().await.as_ref()).await;
    hold_is_idempotent_by_key(make().await.as_ref()).await;
    due_lists_due_sends_soonest_first(make().await.as_ref()).await;
    release_forgets_the_send_but_not_its_key(make().await.as_ref()).await;
    cancel_is_for_the_owner_only(make().await.as_ref()).await;
    keys_expire_after_their_ttl(make().await.as_ref()).await;
    many_sends_come_out_in_time_order(make().await.as_ref()).await;
}

/// A random user.
fn user() -> UserId {
    UserId(random_id())
}

/// A send by `owner` to a random peer, due at `deliver_at`, with a fresh
/// msg_id and client_msg_id.
fn send(owner: UserId, deliver_at: i64) -> ScheduledSend {
    let peer = UserId(random_id());
    let conversation = ConversationId::direct(owner, peer).expect("distinct users");
    let mut message = sample_message(conversation, 0, &format!("at {deliver_at}"));
    message.from = owner;
    message.to = crate::model::Target::User(peer);
    message.ts = T;
    ScheduledSend {
        envelope: Envelope {
            message,
            origin: None,
            audience: None,
        },
        deliver_at,
    }
}

/// A retry of `s`: the same key (sender and client_msg_id) with a new
/// msg_id, another time and another body.
fn retry_of(s: &ScheduledSend) -> ScheduledSend {
    let mut r = s.clone();
    r.envelope.message.msg_id = MessageId(random_id());
    r.envelope.message.body = serde_json::Value::String("the retry".into());
    r.deliver_at = s.deliver_at + 7;
    r
}

async fn hold(s: &dyn ScheduleStore, send: &ScheduledSend, ttl: Duration) -> Option<ScheduledSend> {
    s.hold(send, ttl)
        .await
        .unwrap_or_else(|e| panic!("schedule: hold failed: {e}"))
}

async fn hold_new(s: &dyn ScheduleStore, send: &ScheduledSend, rule: &str) {
    assert_eq!(
        hold(s, send, TTL).await,
        None,
        "schedule: hold of a fresh key holds the send and returns None ({rule})"
    );
}

async fn due(s: &dyn ScheduleStore, now: i64, max: usize) -> Vec<ScheduledSend> {
    s.due(now, max)
        .await
        .unwrap_or_else(|e| panic!("schedule: due failed: {e}"))
}

async fn pending(s: &dyn ScheduleStore, owner: UserId) -> Vec<ScheduledSend> {
    s.pending(owner)
        .await
        .unwrap_or_else(|e| panic!("schedule: pending failed: {e}"))
}

async fn release(s: &dyn ScheduleStore, ids: &[MessageId]) {
    s.release(ids)
        .await
        .unwrap_or_else(|e| panic!("schedule: release failed: {e}"));
}

async fn cancel(s: &dyn ScheduleStore, owner: UserId, id: MessageId) -> bool {
    s.cancel(owner, id)
        .await
        .unwrap_or_else(|e| panic!("schedule: cancel failed: {e}"))
}

fn ids(sends: &[ScheduledSend]) -> Vec<MessageId> {
    sends.iter().map(ScheduledSend::msg_id).collect()
}

async fn hold_and_pending(s: &dyn ScheduleStore) {
    let (a, b) = (user(), user());
    let later = send(a, T + 200);
    // A send with every optional part, to check it round-trips as held.
    let mut sooner = send(a, T + 100);
    sooner.envelope.message.kind = MessageKind::Custom;
    sooner.envelope.message.body = serde_json::json!({"k": [1, 2.5, "x", null], "u": "ü ✓"});
    sooner.envelope.origin = Some((NodeId("node-1".into()), SessionId(random_id())));
    sooner.envelope.audience = Some(vec![a, user()]);
    let theirs = send(b, T + 150);
    for x in [&later, &sooner, &theirs] {
        hold_new(s, x, "three sends of two users").await;
    }
    assert_eq!(
        pending(s, a).await,
        vec![sooner.clone(), later.clone()],
        "schedule: pending lists the owner's held sends, exactly as held, soonest first"
    );
    assert_eq!(
        pending(s, b).await,
        vec![theirs.clone()],
        "schedule: pending lists only the owner's sends"
    );
    assert_eq!(
        pending(s, user()).await,
        vec![],
        "schedule: pending of a user without held sends is empty"
    );
}

async fn hold_is_idempotent_by_key(s: &dyn ScheduleStore) {
    let a = user();
    let first = send(a, T + 100);
    hold_new(s, &first, "the first send of a key").await;
    let retry = retry_of(&first);
    assert_eq!(
        hold(s, &retry, TTL).await,
        Some(first.clone()),
        "schedule: hold under a held key (same sender and client_msg_id) returns the send first held"
    );
    assert_eq!(
        pending(s, a).await,
        vec![first.clone()],
        "schedule: hold under a held key holds nothing new (pending)"
    );
    assert_eq!(
        ids(&due(s, T + 1_000, 100).await),
        vec![first.msg_id()],
        "schedule: hold under a held key holds nothing new (due)"
    );

    // The key is (sender, client_msg_id): either alone is another key.
    let mut other_id = retry_of(&first);
    other_id.envelope.message.client_msg_id = format!("c-{}", random_id());
    hold_new(s, &other_id, "same sender, another client_msg_id").await;
    let b = user();
    let mut other_sender = retry_of(&first);
    other_sender.envelope.message.from = b;
    hold_new(s, &other_sender, "same client_msg_id, another sender").await;
    assert_eq!(
        ids(&pending(s, a).await),
        vec![first.msg_id(), other_id.msg_id()],
        "schedule: a send of the same sender under another client_msg_id is held too"
    );
    assert_eq!(
        ids(&pending(s, b).await),
        vec![other_sender.msg_id()],
        "schedule: the same client_msg_id of another sender is another key"
    );
}

async fn due_lists_due_sends_soonest_first(s: &dyn ScheduleStore) {
    let (a, b) = (user(), user());
    let s30 = send(a, T + 30);
    let s10 = send(b, T + 10);
    let s20 = send(a, T + 20);
    let s40 = send(b, T + 40);
    for x in [&s30, &s10, &s20, &s40] {
        hold_new(s, x, "four sends of two users").await;
    }
    assert_eq!(
        due(s, T + 9, 100).await,
        vec![],
        "schedule: due returns nothing before the first deliver_at"
    );
    assert_eq!(
        due(s, T + 20, 100).await,
        vec![s10.clone(), s20.clone()],
        "schedule: due returns the sends with deliver_at <= now (inclusive), of every owner, soonest first"
    );
    assert_eq!(
        ids(&due(s, T + 35, 2).await),
        ids(&[s10.clone(), s20.clone()]),
        "schedule: due returns at most `max` sends, the soonest"
    );
    assert_eq!(
        due(s, T + 35, 0).await,
        vec![],
        "schedule: due with max 0 returns nothing"
    );
    assert_eq!(
        ids(&due(s, T + 35, 100).await),
        ids(&[s10.clone(), s20.clone(), s30.clone()]),
        "schedule: due does not remove what it returns (a second call sees them again)"
    );
    assert_eq!(
        ids(&due(s, T + 1_000, 100).await),
        ids(&[s10, s20, s30, s40]),
        "schedule: due returns every due send, soonest first"
    );
}

async fn release_forgets_the_send_but_not_its_key(s: &dyn ScheduleStore) {
    let a = user();
    let s1 = send(a, T + 10);
    let s2 = send(a, T + 20);
    let s3 = send(a, T + 30);
    for x in [&s1, &s2, &s3] {
        hold_new(s, x, "three sends").await;
    }
    release(s, &[]).await;
    release(s, &[s1.msg_id(), s3.msg_id(), MessageId(random_id())]).await;
    assert_eq!(
        ids(&due(s, T + 1_000, 100).await),
        vec![s2.msg_id()],
        "schedule: release removes the sends from due (an unknown id is ignored)"
    );
    assert_eq!(
        ids(&pending(s, a).await),
        vec![s2.msg_id()],
        "schedule: release removes the sends from pending"
    );
    release(s, &[s1.msg_id()]).await;
    assert_eq!(
        ids(&due(s, T + 1_000, 100).await),
        vec![s2.msg_id()],
        "schedule: releasing again changes nothing"
    );
    assert_eq!(
        hold(s, &retry_of(&s1), TTL).await,
        Some(s1.clone()),
        "schedule: after release, a hold under the key (remembered for key_ttl) returns the original send"
    );
    assert_eq!(
        ids(&pending(s, a).await),
        vec![s2.msg_id()],
        "schedule: after release, a hold under the remembered key holds nothing new"
    );
    assert!(
        !cancel(s, a, s1.msg_id()).await,
        "schedule: cancel of a released send is false"
    );
}

async fn cancel_is_for_the_owner_only(s: &dyn ScheduleStore) {
    let (a, b) = (user(), user());
    let mine = send(a, T + 10);
    let other = send(a, T + 20);
    hold_new(s, &mine, "a send to cancel").await;
    hold_new(s, &other, "a send to keep").await;
    assert!(
        !cancel(s, b, mine.msg_id()).await,
        "schedule: cancel by another user than the owner is false"
    );
    assert_eq!(
        ids(&pending(s, a).await),
        vec![mine.msg_id(), other.msg_id()],
        "schedule: cancel by another user keeps the send (pending)"
    );
    assert_eq!(
        ids(&due(s, T + 1_000, 100).await),
        vec![mine.msg_id(), other.msg_id()],
        "schedule: cancel by another user keeps the send (due)"
    );
    assert!(
        cancel(s, a, mine.msg_id()).await,
        "schedule: cancel by the owner of a held send is true"
    );
    assert_eq!(
        ids(&pending(s, a).await),
        vec![other.msg_id()],
        "schedule: a cancelled send is gone from pending (the owner's others stay)"
    );
    assert_eq!(
        ids(&due(s, T + 1_000, 100).await),
        vec![other.msg_id()],
        "schedule: a cancelled send is gone from due"
    );
    assert!(
        !cancel(s, a, mine.msg_id()).await,
        "schedule: cancelling again is false"
    );
    assert!(
        !cancel(s, a, MessageId(random_id())).await,
        "schedule: cancel of an unknown msg_id is false"
    );
    assert_eq!(
        hold(s, &retry_of(&mine), TTL).await,
        Some(mine.clone()),
        "schedule: after cancel, a hold under the key (remembered for key_ttl) returns the original send"
    );
    assert_eq!(
        ids(&pending(s, a).await),
        vec![other.msg_id()],
        "schedule: after cancel, a hold under the remembered key holds nothing new"
    );
}

async fn keys_expire_after_their_ttl(s: &dyn ScheduleStore) {
    let a = user();
    let short = Duration::from_secs(1);
    let past = send(a, T + 10);
    let started = Instant::now();
    assert_eq!(
        hold(s, &past, short).await,
        None,
        "schedule: hold of a fresh key returns None"
    );
    // Held an hour ahead: remembered while it waits, beyond its short key_ttl.
    let ahead = send(a, now_ms() + 3_600_000);
    assert_eq!(
        hold(s, &ahead, short).await,
        None,
        "schedule: hold of a fresh key returns None"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let accepted = loop {
        let retry = retry_of(&past);
        match hold(s, &retry, TTL).await {
            None => break retry,
            Some(earlier) => {
                assert_eq!(
                    earlier, past,
                    "schedule: until its key expires, a hold under it returns the original send"
                );
                assert!(
                    Instant::now() < deadline,
                    "schedule: a key expires after its key_ttl (1 s): still remembered after 10 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "schedule: a key is remembered for at least key_ttl (1 s); forgotten after {:?}",
        started.elapsed()
    );
    assert_eq!(
        ids(&due(s, T + 1_000, 100).await),
        vec![past.msg_id(), accepted.msg_id()],
        "schedule: after its key expired, a hold under it holds the new send beside the old one"
    );
    assert_eq!(
        hold(s, &retry_of(&ahead), TTL).await,
        Some(ahead.clone()),
        "schedule: the key of a send still waiting for its deliver_at is remembered past key_ttl \
         (until deliver_at + key_ttl), so a late retry does not schedule it twice"
    );
}

async fn many_sends_come_out_in_time_order(s: &dyn ScheduleStore) {
    const N: usize = 500;
    const SPAN: i64 = 100_000;
    let owners: Vec<UserId> = (0..5).map(|_| user()).collect();
    let sends: Vec<ScheduledSend> = (0..N)
        .map(|i| {
            // Some times repeat (ties), most are spread.
            let at = T + (rand::random::<u64>() % (SPAN as u64 / 4)) as i64 * 4;
            send(owners[i % owners.len()], at)
        })
        .collect();
    for chunk in sends.chunks(50) {
        let held = futures::future::join_all(chunk.iter().map(|x| s.hold(x, TTL))).await;
        for r in held {
            assert_eq!(
                r.unwrap_or_else(|e| panic!("schedule: hold failed: {e}")),
                None,
                "schedule: every one of many fresh keys is held"
            );
        }
    }
    let times = |v: &[ScheduledSend]| v.iter().map(|x| x.deliver_at).collect::<Vec<_>>();
    let mut want = sends.clone();
    want.sort_by_key(|x| x.deliver_at);

    let mid = T + SPAN / 2;
    let half = due(s, mid, N + 10).await;
    let want_half: Vec<_> = want
        .iter()
        .filter(|x| x.deliver_at <= mid)
        .cloned()
        .collect();
    assert_eq!(
        times(&half),
        times(&want_half),
        "schedule: due returns exactly the sends with deliver_at <= now, soonest first ({N} random times)"
    );
    let mut got_half = ids(&half);
    got_half.sort();
    let mut want_half = ids(&want_half);
    want_half.sort();
    assert_eq!(
        got_half, want_half,
        "schedule: due returns exactly the sends with deliver_at <= now ({N} random times)"
    );

    for owner in &owners {
        let p = pending(s, *owner).await;
        let mut mine: Vec<_> = want
            .iter()
            .filter(|x| x.owner() == *owner)
            .cloned()
            .collect();
        assert_eq!(
            times(&p),
            times(&mine),
            "schedule: pending lists all of an owner's many sends, soonest first"
        );
        let mut got = ids(&p);
        got.sort();
        mine.sort_by_key(ScheduledSend::msg_id);
        assert_eq!(
            got,
            ids(&mine),
            "schedule: pending lists exactly the owner's sends"
        );
    }

    // Drain as the scheduler does: a batch of the soonest, then release it.
    let mut drained: Vec<ScheduledSend> = Vec::new();
    for _ in 0..N {
        let batch = due(s, T + SPAN, 64).await;
        if batch.is_empty() {
            break;
        }
        assert!(
            batch.len() <= 64,
            "schedule: due returns at most `max` sends"
        );
        release(s, &ids(&batch)).await;
        drained.extend(batch);
    }
    assert_eq!(
        times(&drained),
        times(&want),
        "schedule: batches of due, each released, come out in deliver_at order ({N} random times)"
    );
    let mut got = ids(&drained);
    got.sort();
    let mut all = ids(&sends);
    all.sort();
    assert_eq!(
        got, all,
        "schedule: draining due and releasing returns every held send once"
    );
    for owner in &owners {
        assert_eq!(
            pending(s, *owner).await,
            vec![],
            "schedule: after everything is released, pending is empty"
        );
    }
}
