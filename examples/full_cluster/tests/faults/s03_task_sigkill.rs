//! #3: a task process SIGKILLed between read and ack under load.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use im_client::ImClient;
use im_core::id::UserId;
use im_core::task::PERSIST_GROUP;
use reliability::proxy::{Framing, Proxy};
use reliability::report::Tally;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::harness::{metric, poll_until};
use crate::queue::{pel, redis_con, Pending};
use crate::raw_ws::{open_ws, watch_order, Seen};
use crate::setup::{
    database_url, new_cluster, redis_url, require_services, run, secs, server_of, through,
};
use crate::traffic::{send_until_acked, settle, to_user, users, Inbox};

#[test]
fn s03_task_process_sigkilled_between_read_and_ack() {
    run(task_sigkill());
}

async fn task_sigkill() {
    let http = reqwest::Client::new();
    let db = require_services(&http, true, true).await;
    let claim_idle = 3u64;
    // task-1 reaches MySQL through a proxy: slowed down under load, so its
    // consumers sit on fetched, un-acked entries when it is killed.
    let mysql = Proxy::start(server_of(&database_url()), Framing::Raw)
        .await
        .unwrap();
    let mut cluster = new_cluster("s03");
    cluster.set_env("IM_TASK__CLAIM_IDLE_SECS", &claim_idle.to_string());
    cluster.set_env_of(
        "task-1",
        "IM_CLUSTER__DATABASE_URL",
        &through(&database_url(), mysql.addr()),
    );
    cluster.start();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();

    let u = users(&base, &cluster.ns, &["s0", "s1", "s2", "s3", "r0", "r1"]).await;
    let (r0, r1) = (u[4].user_id, u[5].user_id);
    let who: HashMap<UserId, ImClient> = u.iter().map(|c| (c.user_id, c.clone())).collect();
    // Eight groups {s0, r0, r1}: with the three 1:1 conversations the load
    // spans eleven conversations, so some land in partitions task-1 holds
    // (with four, all four fell to task-2's leases about once in sixteen
    // runs, and task-1 never held an entry to be killed with).
    let mut gids = Vec::new();
    for n in 0..8 {
        let g: Value = u[0]
            .call(
                reqwest::Method::POST,
                "/groups",
                Some(json!({"name": format!("faults-{n}")})),
            )
            .await
            .unwrap();
        let gid = g["group_id"].as_str().unwrap().to_owned();
        for m in [r0, r1] {
            u[0].call(
                reqwest::Method::POST,
                &format!("/groups/{gid}/members"),
                Some(json!({"user_id": m.to_string()})),
            )
            .await
            .unwrap();
        }
        gids.push(gid);
    }
    let inbox = Inbox::default();
    let mut listeners = Vec::new();
    for (i, c) in u[4..].iter().enumerate() {
        let mut c = c.clone();
        c.ws_url = Some(cluster.ws_url(&format!("connect-{}", i + 1)));
        listeners.push(inbox.listen(c.connect().await.unwrap(), c.user_id));
    }
    for node in ["connect-1", "connect-2"] {
        let url = cluster.metrics_url(node);
        let bound = poll_until(Duration::from_secs(10), || async {
            metric(&http, &url, "im_ws_connections").await >= 1.0
        })
        .await;
        assert!(bound.is_some(), "the recipient's session on {node}");
    }
    // A raw second session of r0 (no client-side reordering) records the
    // push order as it arrives (PROTOCOL.md v1.2 "Order").
    let watch_stop = CancellationToken::new();
    let raw = open_ws(&cluster.ws_url("connect-2"), &u[4].token)
        .await
        .expect("a raw session of r0");
    let seen: Seen = Arc::default();
    let order = tokio::spawn(watch_order(raw, seen.clone(), watch_stop.clone()));

    // 2,000 sends over HTTP: s0 into the groups {s0, r0, r1} in turn, s1..s3 to r0/r1.
    mysql.set_latency(Duration::from_millis(150));
    let per_sender = 500usize;
    let stop_at = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for (i, from) in u[..4].iter().enumerate() {
        let (http, base, from) = (http.clone(), base.clone(), from.clone());
        let (to, recipients) = match i {
            0 => (None, vec![r0, r1]),
            1 | 3 => (Some(to_user(r0)), vec![r0]),
            _ => (Some(to_user(r1)), vec![r1]),
        };
        let gids = gids.clone();
        let (stop_at, acks) = (stop_at.clone(), acks.clone());
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failures = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(8));
            for k in 0..per_sender {
                if stop_at.load(Ordering::Relaxed) {
                    break;
                }
                tick.tick().await;
                let to = to
                    .clone()
                    .unwrap_or_else(|| json!({"group": gids[k % gids.len()]}));
                let (a, f) =
                    send_until_acked(&http, &base, &from, &format!("l{i}-{k}"), &to, &recipients)
                        .await;
                acked.push(a);
                acks.fetch_add(1, Ordering::Relaxed);
                failures.extend(f);
            }
            (acked, failures)
        }));
    }

    // Mid-load (600 of 2,000 acked), kill task-1 while its consumers hold
    // fetched, un-acked entries.
    let mut con = redis_con(&redis_url()).await;
    let ns = cluster.ns.clone();
    let holding = poll_until(Duration::from_secs(30), || {
        let (mut con, ns, acks) = (con.clone(), ns.clone(), acks.clone());
        async move {
            acks.load(Ordering::Relaxed) >= 600
                && pel(&mut con, &ns)
                    .await
                    .iter()
                    .any(|(g, _, _, c)| g == PERSIST_GROUP && c.starts_with("task-1-"))
        }
    })
    .await;
    if holding.is_none() {
        stop_at.store(true, Ordering::Relaxed);
        panic!(
            "task-1 never held a pending persist entry mid-load within 30 s\n{}",
            cluster.log_tail()
        );
    }
    cluster.kill9("task-1");
    let killed = Instant::now();
    let acked_at_kill = acks.load(Ordering::Relaxed);
    let dead: Vec<Pending> = pel(&mut con, &ns)
        .await
        .into_iter()
        .filter(|(_, _, _, c)| c.starts_with("task-1-"))
        .collect();
    mysql.set_latency(Duration::ZERO);
    let dead_persist = dead.iter().filter(|p| p.0 == PERSIST_GROUP).count();
    let dead_push = dead.len() - dead_persist;
    assert!(
        dead_persist > 0,
        "the kill landed between read and ack: task-1 held pending persist entries"
    );

    // Every entry of the dead consumers is claimed and finished by task-2.
    let dead_ids: BTreeSet<(String, String, String)> = dead
        .iter()
        .map(|(g, s, id, _)| (g.clone(), s.clone(), id.clone()))
        .collect();
    let limit = Duration::from_secs(claim_idle + 30);
    let reclaim = poll_until(limit, || {
        let (mut con, ns, dead_ids) = (con.clone(), ns.clone(), &dead_ids);
        async move {
            !pel(&mut con, &ns)
                .await
                .into_iter()
                .any(|(g, s, id, _)| dead_ids.contains(&(g, s, id)))
        }
    })
    .await
    .map(|_| killed.elapsed());
    let reclaim = reclaim.unwrap_or_else(|| {
        panic!(
            "entries of the dead task-1 still pending {} s after the kill\n{}",
            limit.as_secs(),
            cluster.log_tail()
        )
    });

    let mut acked = Vec::new();
    let mut failures = Vec::new();
    for s in senders {
        let (a, f) = s.await.unwrap();
        acked.extend(a);
        failures.extend(f);
    }
    // The archive and every recipient have everything.
    let mut tally = Tally::new(
        "#3 task worker SIGKILLed under load",
        "SIGKILL task-1 (of 2) while it holds fetched, un-acked entries; 2,000 HTTP sends",
    );
    tally.sent = acked.len() as u64;
    let by_sync = settle(
        &mut tally,
        &acked,
        &inbox,
        &who,
        &http,
        &base,
        &db,
        Duration::from_secs(30),
    )
    .await;
    tally.figure = format!(
        "reclaim {} after SIGKILL ({dead_persist} persist + {dead_push} push entries of the dead consumers; \
         claim idle {claim_idle} s); killed after {acked_at_kill} acks; {} send retries; {by_sync} deliveries by sync",
        secs(reclaim),
        failures.len()
    );
    for l in listeners {
        l.abort();
    }
    assert_eq!(acked.len(), 4 * per_sender, "every send acked");
    assert_eq!(inbox.repeated(), 0, "the client drops duplicates");
    tally.check();
    // The successor of the dead pusher went on in order, with nothing lost:
    // every message to r0 reached its raw session live, in seq order per
    // conversation (a re-push of what the dead one had pushed is a duplicate,
    // never a step back to an unseen lower seq).
    let r0_msgs: BTreeSet<u64> = acked
        .iter()
        .filter(|a| a.to.contains(&r0))
        .map(|a| a.msg_id)
        .collect();
    let live = poll_until(Duration::from_secs(30), || {
        let (seen, r0_msgs) = (seen.clone(), &r0_msgs);
        async move { seen.lock().unwrap().is_superset(r0_msgs) }
    })
    .await;
    watch_stop.cancel();
    let out_of_order = order.await.unwrap();
    assert!(
        live.is_some(),
        "r0's raw session missed {} of {} messages pushed live",
        r0_msgs.difference(&seen.lock().unwrap()).count(),
        r0_msgs.len()
    );
    assert_eq!(
        out_of_order, 0,
        "pushes of a conversation arrived out of seq order across the takeover"
    );
    // XAUTOCLAIM runs every claim_idle / 2 s for entries idle claim_idle s:
    // everything is claimed within about claim_idle + claim_every + a batch.
    assert!(
        reclaim <= Duration::from_secs(claim_idle * 2 + 5),
        "reclaim took {} (claim idle {claim_idle} s)",
        secs(reclaim)
    );
}
