//! #6: Redis SIGKILLed and restarted (AOF, appendfsync always) under load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use im_client::ImClient;
use im_core::id::UserId;
use reliability::report::Tally;
use tokio_util::sync::CancellationToken;

use crate::harness::{free_port, metric, poll_until, rand_u32, Server};
use crate::setup::{
    long_mode, millis, new_cluster, percentile, require_binary, require_services, run, secs,
};
use crate::traffic::{http_send, settle, to_user, users, Inbox};

#[derive(Debug)]
struct Attempt {
    started: Instant,
    took: Duration,
    result: Result<(), (u16, String)>,
}

#[test]
fn s06_redis_restarted_under_load() {
    run(redis_restart());
}

async fn redis_restart() {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let db = require_services(&http, false, true).await;
    require_binary(
        "redis-server",
        "install it with `apt-get install redis-server` (scripts/services.sh does)",
    );
    let outage = Duration::from_secs(if long_mode() { 15 } else { 3 });
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("im-faults-redis-{port}-{:x}", rand_u32()));
    let mut redis_server = Server::new(
        "redis-server",
        dir.clone(),
        [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--dir",
            dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    redis_server.start();
    assert!(
        poll_until(Duration::from_secs(10), || redis_ping(&url))
            .await
            .is_some(),
        "the private redis-server on port {port} did not answer (log in {})",
        dir.display()
    );

    let mut cluster = new_cluster("s06");
    cluster.set_env("IM_CLUSTER__REDIS_URL", &url);
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

    // Two senders (s0 → r0, s1 → r1), each send retried with its
    // client_msg_id until acked.
    let stop = CancellationToken::new();
    let acks = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let pairs = [(u[0].clone(), u[2].user_id), (u[1].clone(), u[3].user_id)];
    for (i, (from, to)) in pairs.into_iter().enumerate() {
        let (http, base) = (http.clone(), base.clone());
        let (stop, acks) = (stop.clone(), acks.clone());
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut attempts = Vec::new();
            let mut sent = 0u64;
            'sends: for k in 0.. {
                if stop.is_cancelled() {
                    break;
                }
                sent += 1;
                let cmid = format!("r{i}-{k}");
                loop {
                    let started = Instant::now();
                    let (r, took) =
                        http_send(&http, &base, &from, &cmid, &to_user(to), &[to]).await;
                    match r {
                        Ok(a) => {
                            attempts.push(Attempt {
                                started,
                                took,
                                result: Ok(()),
                            });
                            acked.push(a);
                            acks.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => attempts.push(Attempt {
                            started,
                            took,
                            result: Err(e),
                        }),
                    }
                    if stop.is_cancelled() {
                        break 'sends;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (sent, acked, attempts)
        }));
    }
    assert!(
        poll_until(Duration::from_secs(30), || async {
            acks.load(Ordering::Relaxed) >= 100
        })
        .await
        .is_some(),
        "sends before the fault\n{}",
        cluster.log_tail()
    );

    redis_server.kill9();
    let killed = Instant::now();
    tokio::time::sleep(outage).await; // the length of the fault
    redis_server.start();
    let restarted = Instant::now();
    assert!(
        poll_until(Duration::from_secs(30), || redis_ping(&url))
            .await
            .is_some(),
        "redis-server restarted on port {port}"
    );
    let up = Instant::now();
    let before = acks.load(Ordering::Relaxed);
    let resumed = poll_until(Duration::from_secs(60), || async {
        acks.load(Ordering::Relaxed) >= before + 100
    })
    .await;
    stop.cancel();
    let mut acked = Vec::new();
    let mut attempts = Vec::new();
    let mut sent = 0;
    for s in senders {
        let (n, a, t) = s.await.unwrap();
        sent += n;
        acked.extend(a);
        attempts.extend(t);
    }
    assert!(
        resumed.is_some(),
        "sends succeed again after Redis is back\n{}",
        cluster.log_tail()
    );

    // Failures: only during the outage (and the reconnect right after it),
    // all `unavailable` (503), answered fast.
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.result.is_err()).collect();
    let mut fail_times: Vec<Duration> = failed.iter().map(|a| a.took).collect();
    fail_times.sort();
    let not_503: Vec<&(u16, String)> = failed
        .iter()
        .filter_map(|a| a.result.as_ref().err())
        .filter(|(s, c)| *s != 503 || c != "unavailable")
        .collect();
    let first_ok_after = attempts
        .iter()
        .filter(|a| a.result.is_ok() && a.started + a.took > up)
        .map(|a| a.started + a.took)
        .min()
        .unwrap();
    let recovery = first_ok_after.duration_since(up);
    let in_outage = attempts
        .iter()
        .filter(|a| a.started >= killed && a.started < restarted)
        .count();
    let ok_in_outage = attempts
        .iter()
        .filter(|a| a.started >= killed + Duration::from_millis(200) && a.started < restarted)
        .filter(|a| a.result.is_ok())
        .count();

    let mut tally = Tally::new(
        "#6 Redis restarted",
        &format!(
            "SIGKILL the private redis-server (AOF, appendfsync always) under load, restart it after {} on the same port and dir",
            secs(outage)
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
        "{} failed attempts ({} of them not 503 unavailable), answered in p50 {} ms / p99 {} ms / max {} ms \
         (client timeout 15 s); {in_outage} attempts during the outage, {ok_in_outage} acked; \
         first ack {} ms after Redis answered PING again; {by_sync} deliveries by sync",
        failed.len(),
        not_503.len(),
        millis(percentile(&fail_times, 0.5)),
        millis(percentile(&fail_times, 0.99)),
        millis(percentile(&fail_times, 1.0)),
        millis(recovery),
    );
    for l in listeners {
        l.abort();
    }
    tally.check();
    assert!(!failed.is_empty(), "sends during the outage failed");
    assert_eq!(ok_in_outage, 0, "nothing acked while Redis was down");
    assert!(
        not_503.is_empty(),
        "sends during the outage fail with 503 unavailable, got {not_503:?}"
    );
    assert!(
        percentile(&fail_times, 0.99) < Duration::from_secs(5),
        "failures are fast: p99 {} ms",
        millis(percentile(&fail_times, 0.99))
    );
    assert!(
        recovery < Duration::from_secs(15),
        "sends succeed within 15 s of Redis returning ({} ms)",
        millis(recovery)
    );
    assert_eq!(inbox.repeated(), 0, "the client drops duplicates");
}

async fn redis_ping(url: &str) -> bool {
    let Ok(c) = redis::Client::open(url) else {
        return false;
    };
    let Ok(Ok(mut con)) = tokio::time::timeout(
        Duration::from_millis(500),
        c.get_multiplexed_async_connection(),
    )
    .await
    else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut con)
        .await
        .is_ok()
}
