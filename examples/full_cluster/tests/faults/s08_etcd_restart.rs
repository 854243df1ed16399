//! #8: etcd restarted, and a connect node partitioned from it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use im_client::ImClient;
use im_core::id::UserId;
use reliability::report::Tally;

use crate::etcd_rig::{
    api_view, await_sessions, await_view, etcd_rig, etcd_up, nodes, partition_connect2, registry,
    sessions_on,
};
use crate::harness::poll_until;
use crate::setup::{millis, require_services, run, secs};
use crate::traffic::{http_send, settle, to_user, users, Acked, Inbox};

#[test]
fn s08_etcd_restarted_and_a_connect_node_partitioned() {
    run(etcd_faults());
}

async fn etcd_faults() {
    let http = reqwest::Client::new();
    let db = require_services(&http, true, false).await;
    let ttl = 3u64;
    let mut rig = etcd_rig(&http, "s08", ttl).await;
    let endpoint = rig.endpoint.clone();
    let base = rig.cluster.base();
    let ns = rig.cluster.ns.clone();
    let u = users(&base, &ns, &["a", "b"]).await;
    let (a, b) = (u[0].clone(), u[1].clone());
    let both = nodes(&["connect-1", "connect-2"]);
    let after = nodes(&["connect-2", "connect-3"]);
    await_view(
        &http,
        &rig.cluster,
        &a.token,
        &both,
        Duration::from_secs(20),
        "at start",
    )
    .await;

    let mut acked = Vec::new();
    let mut k = 0;
    let mut send = |n: usize| {
        let (http, base, a, b) = (http.clone(), base.clone(), a.clone(), b.user_id);
        let first = k;
        k += n;
        async move {
            let mut out = Vec::new();
            for i in first..first + n {
                let (r, _) = http_send(&http, &base, &a, &format!("e{i}"), &to_user(b), &[b]).await;
                out.push(r.expect("a send (the data path does not use etcd)"));
            }
            out
        }
    };
    acked.extend(send(5).await);

    // 1. etcd SIGKILLed; meanwhile connect-1 is SIGKILLed and connect-3 starts.
    rig.etcd.kill9();
    rig.cluster.kill9("connect-1");
    rig.cluster.spawn_connect("connect-3");
    let in_outage = send(5).await;
    let in_outage_n = in_outage.len();
    acked.extend(in_outage);
    let stale = api_view(&http, &rig.cluster, &a.token).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // the length of the outage
    rig.etcd.start();
    assert!(
        poll_until(Duration::from_secs(20), || etcd_up(&http, &endpoint))
            .await
            .is_some(),
        "etcd restarted on the same data dir"
    );
    let restarted = Instant::now();
    let (mut join3, mut leave1, mut task_saw) = (None, None, None);
    loop {
        let v = api_view(&http, &rig.cluster, &a.token).await;
        if v.contains("connect-3") && join3.is_none() {
            join3 = Some(restarted.elapsed());
        }
        if !v.contains("connect-1") && !v.is_empty() && leave1.is_none() {
            leave1 = Some(restarted.elapsed());
        }
        let logs = rig.cluster.log_of("task-1") + &rig.cluster.log_of("task-2");
        if task_saw.is_none()
            && logs
                .lines()
                .any(|l| l.contains("connect node left") && l.contains("connect-1"))
        {
            task_saw = Some(restarted.elapsed());
        }
        if v == after && task_saw.is_some() {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(40),
            "after the etcd restart: api sees {v:?}, registry {:?}, task dropped connect-1: {}\n{}",
            registry(&http, &endpoint, &ns, "connect").await,
            task_saw.is_some(),
            rig.cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        registry(&http, &endpoint, &ns, "connect").await,
        Some(after.clone()),
        "etcd's registry after the restart"
    );

    // b holds a session on each current node (one each: the api still
    // round-robins between them) and stays connected throughout.
    let (inboxes, listeners) =
        sessions_on(&http, &rig.cluster, &b, &["connect-2", "connect-3"]).await;
    let (on2, on3) = (&inboxes[0], &inboxes[1]);
    await_sessions(&http, &endpoint, &ns, &[("connect-2", 1), ("connect-3", 1)]).await;
    await_view(
        &http,
        &rig.cluster,
        &a.token,
        &after,
        Duration::from_secs(10),
        "one session on each node",
    )
    .await;
    let probe = send(1).await.remove(0);
    let probe_id = probe.msg_id;
    acked.push(probe);
    assert!(
        poll_until(Duration::from_secs(10), || async {
            on2.has(b.user_id, probe_id) && on3.has(b.user_id, probe_id)
        })
        .await
        .is_some(),
        "before the partition both of b's sessions get live pushes"
    );

    // 2. connect-2 partitioned from etcd (it keeps serving): its lease
    // expires and it leaves; healed, it registers again.
    let (reg_gone, api_gone) = partition_connect2(&http, &rig, &a.token, ttl).await;
    let in_partition = send(5).await;
    rig.partition.restore();
    let rejoined = await_view(
        &http,
        &rig.cluster,
        &a.token,
        &after,
        Duration::from_secs(30),
        "after the partition healed",
    )
    .await;
    let back = Instant::now();

    // 3. After the heal: one send a second until b's session on connect-2
    // (never disconnected) gets a live push again; it then closes the gap by
    // sync (product bug: its routes were dropped while it was out of
    // discovery and come back only with its next route heartbeat, 30 s).
    let mut after_heal: Vec<Acked> = Vec::new();
    let mut live3 = None;
    let mut live2 = None;
    while live2.is_none() && back.elapsed() < Duration::from_secs(45) {
        let m = send(1).await.remove(0);
        let sent = Instant::now();
        after_heal.push(m.clone());
        while sent.elapsed() < Duration::from_secs(1) {
            if live3.is_none() && on3.has(b.user_id, after_heal[0].msg_id) {
                live3 = Some(back.elapsed());
            }
            if after_heal.iter().any(|m| on2.has(b.user_id, m.msg_id)) {
                live2 = Some(back.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let missed: Vec<&Acked> = in_partition.iter().chain(after_heal.iter()).collect();
    let caught_up = poll_until(Duration::from_secs(10), || async {
        missed.iter().all(|m| on2.has(b.user_id, m.msg_id))
    })
    .await;
    let in_partition_n = in_partition.len();
    acked.extend(in_partition);
    acked.extend(after_heal.iter().cloned());

    let mut tally = Tally::new(
        "#8 etcd restarted, connect node partitioned",
        &format!(
            "private etcd SIGKILLed for 3 s (connect-1 SIGKILLed and connect-3 started meanwhile), \
             then connect-2 cut from etcd by the proxy while it serves a session; lease TTL {ttl} s"
        ),
    );
    tally.sent = acked.len() as u64;
    // Per user: either of b's sessions, or history for what neither got.
    let inbox = Inbox::default();
    for i in [on2, on3] {
        for (u, m) in i.0.lock().unwrap().iter() {
            for id in m.keys() {
                if !inbox.has(*u, *id) {
                    inbox.add(*u, *id);
                }
            }
        }
    }
    let who: HashMap<UserId, ImClient> = [(b.user_id, b.clone())].into_iter().collect();
    let by_sync = settle(
        &mut tally,
        &acked,
        &inbox,
        &who,
        &http,
        &base,
        &db,
        Duration::ZERO,
    )
    .await;
    let s = |d: Option<Duration>| d.map_or("never".to_owned(), secs);
    tally.figure = format!(
        "etcd restart: connect-3 (started during the outage) handed out after {}, SIGKILLed connect-1 \
         dropped after {}, its routes after {}; partition: etcd dropped connect-2 after {}, the api after {} \
         (TTL {ttl} s); back {} after healing; then a live push reached b's session on connect-3 after {} ms \
         and its session on connect-2 only after {} (routes restored by its heartbeat); \
         {in_outage_n} + {in_partition_n} sends during the faults; {by_sync} read by history",
        s(join3),
        s(leave1),
        s(task_saw),
        secs(reg_gone),
        secs(api_gone),
        secs(rejoined),
        live3.map_or("never".to_owned(), millis),
        s(live2),
    );
    for l in listeners {
        l.abort();
    }
    tally.check();
    assert_eq!(
        stale, both,
        "while etcd is down the api keeps its last known set"
    );
    assert!(
        api_gone <= Duration::from_secs(ttl + 4),
        "a partitioned node leaves within about the lease TTL ({} vs TTL {ttl} s)",
        secs(api_gone)
    );
    assert!(
        live3.is_some_and(|d| d < Duration::from_secs(5)),
        "task pushes live to b's session on connect-3 after the heal\n{}",
        rig.cluster.log_tail()
    );
    // Up to the connect node's route heartbeat (30 s): see s08b for the bug.
    assert!(
        live2.is_some(),
        "b's session on connect-2 gets live pushes again within 45 s of the heal\n{}",
        rig.cluster.log_tail()
    );
    assert!(
        caught_up.is_some(),
        "b's session on connect-2 recovers the messages it missed by sync"
    );
}
