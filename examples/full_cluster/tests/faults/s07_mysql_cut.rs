//! #7: MySQL unreachable (cut through the proxy).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use im_client::ImClient;
use im_core::id::UserId;
use im_core::task::PERSIST_GROUP;
use reliability::proxy::{Framing, Proxy};
use reliability::report::Tally;
use tokio_util::sync::CancellationToken;

use crate::harness::{metric, poll_until};
use crate::queue::{backlog, redis_con};
use crate::setup::{
    database_url, long_mode, new_cluster, redis_url, require_services, run, secs, server_of,
    through,
};
use crate::traffic::{http_send, settle, to_user, users, wait_persisted, Acked, Inbox};

#[test]
fn s07_mysql_cut_through_the_proxy() {
    run(mysql_cut());
}

async fn mysql_cut() {
    let http = reqwest::Client::new();
    let db = require_services(&http, true, true).await;
    let cut_for = Duration::from_secs(if long_mode() { 30 } else { 8 });
    let mysql = Proxy::start(server_of(&database_url()), Framing::Raw)
        .await
        .unwrap();
    let mut cluster = new_cluster("s07");
    cluster.set_env(
        "IM_CLUSTER__DATABASE_URL",
        &through(&database_url(), mysql.addr()),
    );
    cluster.start();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    let u = users(&base, &cluster.ns, &["s0", "s1", "r0", "r1"]).await;
    let who: HashMap<UserId, ImClient> = u.iter().map(|c| (c.user_id, c.clone())).collect();
    let inbox = Inbox::default();
    let mut listeners = Vec::new();
    for (i, c) in u[2..].iter().enumerate() {
        let mut c = c.clone();
        c.ws_url = Some(cluster.ws_url(&format!("connect-{}", i + 1)));
        listeners.push(inbox.listen(c.connect().await.unwrap(), c.user_id));
    }
    for node in ["connect-1", "connect-2"] {
        let m = cluster.metrics_url(node);
        assert!(
            poll_until(Duration::from_secs(10), || async {
                metric(&http, &m, "im_ws_connections").await >= 1.0
            })
            .await
            .is_some(),
            "the recipient's session on {node}"
        );
    }

    // Senders s0 → r0 and s1 → r1, about 100 sends/s each; a failed send is
    // retried with its client_msg_id.
    let stop = CancellationToken::new();
    let acks = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let pairs = [(u[0].clone(), u[2].user_id), (u[1].clone(), u[3].user_id)];
    for (i, (from, to)) in pairs.into_iter().enumerate() {
        let (http, base) = (http.clone(), base.clone());
        let (stop, acks) = (stop.clone(), acks.clone());
        senders.push(tokio::spawn(async move {
            let mut acked: Vec<(Instant, Acked)> = Vec::new();
            let mut failures = 0u64;
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            'sends: for k in 0.. {
                tick.tick().await;
                if stop.is_cancelled() {
                    break;
                }
                sent += 1;
                let cmid = format!("m{i}-{k}");
                loop {
                    match http_send(&http, &base, &from, &cmid, &to_user(to), &[to])
                        .await
                        .0
                    {
                        Ok(a) => {
                            acked.push((Instant::now(), a));
                            acks.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(_) => failures += 1,
                    }
                    if stop.is_cancelled() {
                        break 'sends;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            (sent, acked, failures)
        }));
    }
    // Warm up: both logic processes know both recipients (they cache user
    // existence, so sends do not need MySQL during the cut).
    assert!(
        poll_until(Duration::from_secs(30), || async {
            acks.load(Ordering::Relaxed) >= 100
        })
        .await
        .is_some(),
        "sends before the fault\n{}",
        cluster.log_tail()
    );

    let task1 = cluster.metrics_url("task-1");
    let mut con = redis_con(&redis_url()).await;
    let ns = cluster.ns.clone();
    mysql.cut();
    let cut_at = Instant::now();
    let acks_at_cut = acks.load(Ordering::Relaxed);
    let (mut peak_pending, mut peak_lag) = (0f64, 0f64);
    while cut_at.elapsed() < cut_for {
        // The fault lasts `cut_for`; meanwhile sample the backlog gauges.
        let p = metric(&http, &task1, "im_queue_pending{group=\"persist\"}").await;
        let l = metric(&http, &task1, "im_queue_lag{group=\"persist\"}").await;
        if p.is_finite() {
            peak_pending = peak_pending.max(p);
        }
        if l.is_finite() {
            peak_lag = peak_lag.max(l);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let acked_in_cut = acks.load(Ordering::Relaxed) - acks_at_cut;
    // Nothing acked in the persist group without a commit: everything acked
    // since the cut is still in the group's backlog (pending or not yet read).
    let (pend, lag) = backlog(&mut con, &ns, PERSIST_GROUP).await;
    mysql.restore();
    let restored = Instant::now();

    // Keep sending a moment after the restore, then stop.
    let resumed = acks.load(Ordering::Relaxed);
    poll_until(Duration::from_secs(30), || async {
        acks.load(Ordering::Relaxed) >= resumed + 50
    })
    .await;
    stop.cancel();
    let mut acked = Vec::new();
    let mut sent = 0;
    let mut failures = 0;
    for s in senders {
        let (n, a, f) = s.await.unwrap();
        sent += n;
        acked.extend(a);
        failures += f;
    }
    let during: Vec<Acked> = acked
        .iter()
        .filter(|(t, _)| *t >= cut_at && *t < restored)
        .map(|(_, a)| a.clone())
        .collect();
    let acked: Vec<Acked> = acked.into_iter().map(|(_, a)| a).collect();
    // The backlog drains: every acked message lands in the archive.
    wait_persisted(&db, &acked, Duration::from_secs(60)).await;
    let drain = restored.elapsed();
    let drained_queue = poll_until(Duration::from_secs(30), || {
        let (mut con, ns) = (con.clone(), ns.clone());
        async move { backlog(&mut con, &ns, PERSIST_GROUP).await == (0, 0) }
    })
    .await;

    let mut tally = Tally::new(
        "#7 MySQL unreachable",
        &format!(
            "proxy between logic/task and MariaDB cut for {} ({} mode) under ~200 sends/s",
            secs(cut_for),
            if long_mode() { "long" } else { "short" }
        ),
    );
    tally.sent = sent;
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
        "{} acked during the cut; persist backlog at the end of the cut {} (pending {pend} + lag {lag}); \
         peak im_queue_pending{{persist}} {peak_pending}, peak im_queue_lag{{persist}} {peak_lag}; \
         drained {} after the restore; {failures} failed send attempts; {by_sync} deliveries by sync",
        during.len(),
        pend + lag,
        secs(drain),
    );
    for l in listeners {
        l.abort();
    }
    tally.check();
    assert!(
        !during.is_empty(),
        "sends were acked during the cut (Logic caches users)"
    );
    assert!(
        pend + lag >= acked_in_cut,
        "persist acked {} entries without a commit during the cut (backlog {} < {acked_in_cut} acked)",
        acked_in_cut - (pend + lag),
        pend + lag
    );
    assert!(
        drained_queue.is_some(),
        "the persist group's backlog drains to 0\n{}",
        cluster.log_tail()
    );
    assert_eq!(inbox.repeated(), 0, "the client drops duplicates");
}
