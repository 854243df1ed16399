//! #8b: the sessions of a connect node that rejoined discovery get live pushes.

use std::time::Duration;

use crate::etcd_rig::{
    await_sessions, await_view, etcd_rig, nodes, partition_connect2, sessions_on,
};
use crate::harness::poll_until;
use crate::setup::{require_services, run, secs};
use crate::traffic::{http_send, to_user, users};

/// Product bug B4 (see docs/reliability.md): a connect node cut from etcd
/// for longer than the lease TTL, but alive, has its session routes dropped
/// by task; when it registers again they are not restored until its next
/// route heartbeat (30 s), so its sessions miss live pushes meanwhile, and a
/// client only learns of them when a later message exposes the gap.
#[test]
fn s08b_sessions_of_a_rejoined_connect_node_get_live_pushes() {
    run(rejoined_node_pushes());
}

async fn rejoined_node_pushes() {
    let http = reqwest::Client::new();
    require_services(&http, true, false).await;
    let ttl = 3u64;
    let rig = etcd_rig(&http, "s08b", ttl).await;
    let base = rig.cluster.base();
    let u = users(&base, &rig.cluster.ns, &["a", "b"]).await;
    let (a, b) = (u[0].clone(), u[1].clone());
    let both = nodes(&["connect-1", "connect-2"]);
    let (inboxes, listeners) =
        sessions_on(&http, &rig.cluster, &b, &["connect-1", "connect-2"]).await;
    await_sessions(
        &http,
        &rig.endpoint,
        &rig.cluster.ns,
        &[("connect-1", 1), ("connect-2", 1)],
    )
    .await;
    await_view(
        &http,
        &rig.cluster,
        &a.token,
        &both,
        Duration::from_secs(20),
        "one session on each node",
    )
    .await;
    // A first message gives b's clients their baseline in the conversation,
    // so a later gap is noticed and synced.
    let (before, _) = http_send(
        &http,
        &base,
        &a,
        "before",
        &to_user(b.user_id),
        &[b.user_id],
    )
    .await;
    let before = before.unwrap();
    assert!(
        poll_until(Duration::from_secs(10), || async {
            inboxes[1].has(b.user_id, before.msg_id)
        })
        .await
        .is_some(),
        "b's session on connect-2 got the first message"
    );
    let (_, api_gone) = partition_connect2(&http, &rig, &a.token, ttl).await;
    let (during, _) = http_send(
        &http,
        &base,
        &a,
        "during",
        &to_user(b.user_id),
        &[b.user_id],
    )
    .await;
    let during = during.unwrap();
    rig.partition.restore();
    await_view(
        &http,
        &rig.cluster,
        &a.token,
        &both,
        Duration::from_secs(30),
        "after the heal",
    )
    .await;
    let (after, _) = http_send(&http, &base, &a, "after", &to_user(b.user_id), &[b.user_id]).await;
    let after = after.unwrap();
    // Once connect-2 is back in discovery, its session gets the next push
    // live, and with it (gap sync) the one pushed while it was out.
    let got = poll_until(Duration::from_secs(10), || async {
        inboxes[1].has(b.user_id, after.msg_id) && inboxes[1].has(b.user_id, during.msg_id)
    })
    .await;
    for l in listeners {
        l.abort();
    }
    assert!(
        inboxes[0].has(b.user_id, after.msg_id),
        "the control session on connect-1 got the push"
    );
    assert!(
        got.is_some(),
        "b's session on connect-2 (left discovery {} after the cut, then back) got neither the \
         message pushed after it was back nor, by sync, the one pushed while it was out",
        secs(api_gone)
    );
}
