//! End-to-end: the real multi-process cluster (separate OS processes: 2 logic,
//! 2 task, 2 connect, 1 api) on the machine's Redis, MariaDB and etcd, driven
//! by real clients. Kills a connect node and a task process with SIGKILL and
//! sends SIGTERM to a logic process, and counts sent / acked / delivered /
//! persisted / lost / duplicated; the same on a 3-master Redis Cluster
//! (`REDIS_CLUSTER_URLS`) with the archive on two MariaDB servers
//! (`DATABASE_URL`, `DATABASE_SHARD1_URL`; all started by
//! `scripts/services.sh`), rows on both; and a burst of
//! six senders into two recipients on two connect nodes and a group, whose
//! pushes arrive per conversation in seq order, without holes or duplicates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

mod harness;

use harness::{env_or, metric, Cluster, CONNECT_NODES};
use im_client::{Connection, ImClient};
use im_core::id::UserId;
use im_core::model::{MessageKind, Target};
use serde_json::{json, Value};

/// One cluster at a time: each starts seven processes, and the machine has
/// two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts the seven processes with what every test here adds: attachments
/// on the test S3 server, room for every test user to register from
/// 127.0.0.1 (the login limits stay on), and `env`.
fn start_cluster(scenario: &str, env: &[(&str, &str)]) -> Cluster {
    let mut c = Cluster::new(scenario);
    // Attachments on the test S3 server (SeaweedFS, scripts/services.sh).
    let s3 = im_store::s3::S3Config::from_env();
    for (k, v) in [
        ("IM_ATTACHMENTS__ENABLED", "true"),
        ("IM_ATTACHMENTS__S3_ENDPOINT", &s3.endpoint),
        ("IM_ATTACHMENTS__S3_BUCKET", &s3.bucket),
        ("IM_ATTACHMENTS__S3_ACCESS_KEY_ID", &s3.access_key_id),
        (
            "IM_ATTACHMENTS__S3_SECRET_ACCESS_KEY",
            &s3.secret_access_key,
        ),
        ("IM_FRONT_DOOR__REGISTER_BURST", "1000"),
    ] {
        c.set_env(k, v);
    }
    for (k, v) in env {
        c.set_env(k, v);
    }
    c.start();
    c
}

/// Creates a group owned by `owner` with `members` added; answers its id.
async fn create_group(
    http: &reqwest::Client,
    base: &str,
    owner: &ImClient,
    name: &str,
    members: &[UserId],
) -> String {
    let g: Value = http
        .post(format!("{base}/api/v1/groups"))
        .bearer_auth(&owner.token)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gid = g["group_id"].as_str().unwrap().to_owned();
    for u in members {
        let s = http
            .post(format!("{base}/api/v1/groups/{gid}/members"))
            .bearer_auth(&owner.token)
            .json(&json!({"user_id": u.to_string()}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s.as_u16(), 204);
    }
    gid
}

/// Receives until `want` distinct msg_ids arrived or `timeout`.
async fn collect(
    conn: &mut Connection,
    me: UserId,
    seen: &mut HashMap<u64, u32>,
    want: usize,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while seen.len() < want {
        match tokio::time::timeout_at(deadline, conn.next_message()).await {
            Ok(Some(m)) => {
                // System messages (group changes) are not part of the tally.
                if m.from != me && m.kind != MessageKind::System {
                    *seen.entry(m.msg_id.0).or_insert(0) += 1;
                }
            }
            _ => return,
        }
    }
}

/// The seed URLs of the test Redis Cluster (what `scripts/services.sh` starts).
fn redis_cluster_urls() -> String {
    env_or(
        "REDIS_CLUSTER_URLS",
        "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003",
    )
}

/// Fails (never skips) when the Redis Cluster is not up, naming it.
fn require_redis_cluster(urls: &str) {
    for url in urls.split(',') {
        let ok = redis::Client::open(url)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
            .is_ok_and(|info| info.contains("cluster_state:ok"));
        assert!(
            ok,
            "the Redis Cluster is not reachable (or not ok) at {url}: start it with scripts/services.sh"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_loses_nothing_through_kills_and_restarts() {
    let _serial = SERIAL.lock().await;
    loses_nothing(start_cluster("cluster-kills", &[]), Vec::new()).await;
}

/// The primary database and the second server, as the archive's two shards.
fn db_shard_urls() -> Vec<String> {
    vec![
        env_or("DATABASE_URL", "mysql://root@127.0.0.1:3306/test"),
        env_or("DATABASE_SHARD1_URL", "mysql://root@127.0.0.1:3307/test"),
    ]
}

/// Fails (never skips) when an archive shard is not up, naming it.
async fn require_databases(urls: &[String]) {
    for url in urls {
        let ok = sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await;
        assert!(
            ok.is_ok(),
            "the archive shard database is not reachable at {url} ({:?}): `source \
             scripts/services.sh` starts the second MariaDB on 127.0.0.1:3307 \
             (DATABASE_SHARD1_URL)",
            ok.err()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_loses_nothing_on_a_redis_cluster_and_two_db_shards() {
    let _serial = SERIAL.lock().await;
    let urls = redis_cluster_urls();
    require_redis_cluster(&urls);
    let shards = db_shard_urls();
    require_databases(&shards).await;
    let cluster = start_cluster(
        "cluster-sharded",
        &[
            ("IM_REDIS_CLUSTER_URLS", &urls),
            ("DATABASE_SHARD_URLS", &shards.join(",")),
        ],
    );
    loses_nothing(cluster, shards).await;
}

/// `archive`: the archive's shards (empty: the archive is on `DATABASE_URL`).
async fn loses_nothing(mut cluster: Cluster, archive: Vec<String>) {
    let http = reqwest::Client::new();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    // Six users: three on each connect node (placement by GET /connect: least loaded / round robin).
    let mut users = Vec::new();
    for i in 0..6 {
        let name = format!("{}_u{i}", cluster.ns);
        ImClient::register(&base, &name, "password123")
            .await
            .unwrap();
        users.push(ImClient::login(&base, &name, "password123").await.unwrap());
    }
    // The front door counts in Redis: six wrong passwords (five are free)
    // lock the account for a second, with its password too.
    let door_user = format!("{}_door", cluster.ns);
    ImClient::register(&base, &door_user, "password123")
        .await
        .unwrap();
    let try_login = |password: &'static str| {
        let (http, base, user) = (http.clone(), base.clone(), door_user.clone());
        async move {
            let res = http
                .post(format!("{base}/api/v1/sessions"))
                .json(&serde_json::json!({"username": user, "password": password}))
                .send()
                .await
                .unwrap();
            (
                res.status().as_u16(),
                res.headers().contains_key("retry-after"),
            )
        }
    };
    for _ in 0..6 {
        assert_eq!(try_login("wrong-password").await.0, 401);
    }
    assert_eq!(
        try_login("password123").await,
        (429, true),
        "a locked-out account is refused with Retry-After"
    );
    let mut conns = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mut u = u.clone();
        u.ws_url = Some(cluster.ws_url(CONNECT_NODES[i % 2]));
        conns.push(u.connect().await.unwrap());
    }
    // Stable placement done: later reconnects ask GET /api/v1/connect.
    let ids: Vec<UserId> = users.iter().map(|u| u.user_id).collect();

    // 1:1 from user 0 (node 1) to each other user (on both nodes) and a group of all six.
    let mut acked: Vec<u64> = Vec::new();
    let mut expected: HashMap<usize, HashSet<u64>> = HashMap::new();
    // Five 1:1 conversations and the group: on two archive shards, the
    // chance that every conversation lands on one shard is 2/64, not 1/2.
    for k in 0..10 {
        let r = 1 + k % 5;
        let ack = conns[0]
            .send(Target::User(ids[r]), format!("direct {k}"))
            .await
            .unwrap();
        acked.push(ack.msg_id.0);
        expected.entry(r).or_default().insert(ack.msg_id.0);
    }
    let gid = create_group(&http, &base, &users[0], "all", &ids[1..]).await;
    let group = Target::Group(gid.parse().unwrap());
    for k in 0..10 {
        let sender = k % 6;
        let ack = conns[sender]
            .send(group, format!("group {k}"))
            .await
            .unwrap();
        acked.push(ack.msg_id.0);
        for r in 0..6 {
            if r != sender {
                expected.entry(r).or_default().insert(ack.msg_id.0);
            }
        }
    }
    let mut seen: Vec<HashMap<u64, u32>> = vec![HashMap::new(); 6];
    for r in 0..6 {
        let want = expected.get(&r).map_or(0, HashSet::len);
        collect(
            &mut conns[r],
            ids[r],
            &mut seen[r],
            want,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            seen[r].len(),
            want,
            "user {r} before faults\n{}",
            cluster.log_tail()
        );
    }
    println!("phase 1 (1:1 and group across two connect nodes): ok");

    // SIGKILL connect-1: its clients (users 0, 2, 4) reconnect to connect-2 and sync.
    // Their clients first retry node 1, then ask GET /api/v1/connect, which
    // stops answering node 1 once its lease expired (TTL 2 s).
    cluster.kill9("connect-1");
    // Meanwhile, users on node 2 send to everyone.
    for k in 0..10 {
        let sender = 1 + 2 * (k % 3);
        let ack = conns[sender]
            .send(group, format!("during failover {k}"))
            .await
            .unwrap();
        acked.push(ack.msg_id.0);
        for r in 0..6 {
            if r != sender {
                expected.entry(r).or_default().insert(ack.msg_id.0);
            }
        }
    }

    // SIGKILL task-1 under load; SIGTERM logic-1 during sends over HTTP.
    let sends = 300;
    let mut http_acks = 0;
    let mut http_failed = 0;
    for k in 0..sends {
        if k == 100 {
            cluster.kill9("task-1");
        }
        if k == 200 {
            let status = cluster.term("logic-1").await;
            assert!(
                status.success(),
                "logic-1 exited with {status} after SIGTERM"
            );
        }
        let r = http
            .post(format!("{base}/api/v1/messages"))
            .bearer_auth(&users[3].token)
            .json(&json!({"client_msg_id": format!("load-{k}"), "to": {"user": ids[5].to_string()}, "body": format!("load {k}")}))
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            let v: Value = r.json().await.unwrap();
            let id: u64 = v["msg_id"].as_str().unwrap().parse().unwrap();
            http_acks += 1;
            acked.push(id);
            expected.entry(5).or_default().insert(id);
        } else {
            http_failed += 1;
        }
    }
    assert_eq!(
        http_failed,
        0,
        "sends through the API failed while logic-1 drained\n{}",
        cluster.log_tail()
    );

    // Everyone gets everything (live or by sync after reconnect); wait for claims (3 s idle).
    for r in 0..6 {
        let want = expected.get(&r).map_or(0, HashSet::len);
        collect(
            &mut conns[r],
            ids[r],
            &mut seen[r],
            want,
            Duration::from_secs(40),
        )
        .await;
    }
    let mut lost = 0;
    let mut duplicated = 0;
    let mut delivered = 0;
    for r in 0..6 {
        let want = expected.get(&r).cloned().unwrap_or_default();
        let got: HashSet<u64> = seen[r].keys().copied().collect();
        lost += want.difference(&got).count();
        duplicated += seen[r].values().filter(|n| **n > 1).count();
        delivered += got.len();
    }

    // Persisted exactly once: on one shard each, every shard holding some.
    let archive = if archive.is_empty() {
        vec![env_or("DATABASE_URL", "mysql://root@127.0.0.1:3306/test")]
    } else {
        archive
    };
    let mut dbs = Vec::new();
    for url in &archive {
        dbs.push(
            sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .unwrap(),
        );
    }
    let list = acked
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let deadline = Instant::now() + Duration::from_secs(30);
    let per_shard: Vec<Vec<u64>> = loop {
        let mut per_shard = Vec::new();
        for db in &dbs {
            let ids: Vec<u64> = sqlx::query_scalar(&format!(
                "SELECT msg_id FROM messages WHERE msg_id IN ({list})"
            ))
            .fetch_all(db)
            .await
            .unwrap();
            per_shard.push(ids);
        }
        let rows: usize = per_shard.iter().map(Vec::len).sum();
        if rows >= acked.len() || Instant::now() > deadline {
            break per_shard;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rows: usize = per_shard.iter().map(Vec::len).sum();
    let distinct = per_shard.iter().flatten().collect::<HashSet<_>>().len();
    let shard_rows: Vec<usize> = per_shard.iter().map(Vec::len).collect();
    println!("rows per archive shard: {shard_rows:?}");
    assert!(
        shard_rows.iter().all(|n| *n > 0),
        "every archive shard holds rows: {shard_rows:?}"
    );
    println!(
        "sent {} acked {} delivered {} persisted {} lost {} duplicated {} (http sends {} ok, {} failed)",
        acked.len(), acked.len(), delivered, rows, lost, duplicated, http_acks, http_failed
    );
    assert_eq!(
        lost,
        0,
        "every acked message reaches every recipient\n{}",
        cluster.log_tail()
    );
    assert_eq!(duplicated, 0, "the client drops duplicates");
    assert_eq!(
        rows,
        acked.len(),
        "every acked message is persisted\n{}",
        cluster.log_tail()
    );
    assert_eq!(rows, distinct, "and exactly once");

    // Metrics parse and moved.
    let logic2 = cluster.metrics_url("logic-2");
    let task2 = cluster.metrics_url("task-2");
    assert!(
        metric(&http, &logic2, "im_messages_accepted_total").await > 0.0,
        "logic-2 accepted messages"
    );
    assert!(
        metric(&http, &task2, "im_messages_persisted_total").await > 0.0,
        "task-2 persisted messages"
    );
    assert!(
        metric(&http, &task2, "im_messages_pushed_total").await > 0.0,
        "task-2 pushed messages"
    );
    let connect2 = cluster.metrics_url("connect-2");
    assert!(metric(&http, &connect2, "im_ws_connections").await >= 1.0);

    // Graceful stop of the rest: exit 0 on SIGTERM.
    for name in ["api", "connect-2", "task-2", "logic-2"] {
        let s = cluster.term(name).await;
        assert!(s.success(), "{name} exit status {s}");
    }
}

/// Waits for a message with `msg_id`; answers when it arrived (Unix ms) and
/// every other msg_id seen meanwhile.
async fn wait_for_msg(
    conn: &mut Connection,
    msg_id: u64,
    timeout: Duration,
) -> (Option<i64>, Vec<u64>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut others = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, conn.next_message()).await {
            Ok(Some(m)) if m.msg_id.0 == msg_id => return (Some(im_core::id::now_ms()), others),
            Ok(Some(m)) => others.push(m.msg_id.0),
            _ => return (None, others),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_sends_survive_a_task_restart() {
    let _serial = SERIAL.lock().await;
    let mut cluster = start_cluster("cluster-scheduled", &[]);
    let http = reqwest::Client::new();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    let mut users = Vec::new();
    for i in 0..2 {
        let name = format!("{}_s{i}", cluster.ns);
        ImClient::register(&base, &name, "password123")
            .await
            .unwrap();
        users.push(ImClient::login(&base, &name, "password123").await.unwrap());
    }
    let mut b = users[1].clone();
    b.ws_url = Some(cluster.ws_url("connect-1"));
    let mut conn = b.connect().await.unwrap();
    let to = json!({"user": users[1].user_id.to_string()});

    // Two sends held for 6 s; one of them is cancelled.
    let deliver_at = im_core::id::now_ms() + 6_000;
    let mut ids = Vec::new();
    for cmid in ["keep", "cancel"] {
        let r = http
            .post(format!("{base}/api/v1/messages"))
            .bearer_auth(&users[0].token)
            .json(&json!({"client_msg_id": cmid, "to": to, "body": cmid, "deliver_at": deliver_at}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["seq"], 0, "held: no seq yet");
        assert_eq!(v["deliver_at"], deliver_at);
        ids.push(v["msg_id"].as_str().unwrap().parse::<u64>().unwrap());
    }
    let r = http
        .delete(format!("{base}/api/v1/messages/{}/schedule", ids[1]))
        .bearer_auth(&users[0].token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    // Every task process dies; one comes back before the time.
    cluster.kill9("task-1");
    cluster.kill9("task-2");
    cluster.restart("task-1");
    cluster.wait_ready(&http, "task-1").await;
    assert!(
        im_core::id::now_ms() < deliver_at,
        "the restart took too long for this test to mean anything"
    );

    let (arrived, others) = wait_for_msg(&mut conn, ids[0], Duration::from_secs(20)).await;
    let arrived = arrived.unwrap_or_else(|| {
        panic!(
            "the scheduled message never arrived\n{}",
            cluster.log_tail()
        )
    });
    let late = arrived - deliver_at;
    println!("scheduled message arrived {late} ms after deliver_at (task processes restarted in between)");
    assert!(late >= 0, "not before its time ({late} ms)");
    assert!(late < 1_000, "within 1 s of deliver_at, was {late} ms");
    assert!(
        !others.contains(&ids[1]),
        "the cancelled send never arrives"
    );

    // A marker sent now arrives after anything else due: the cancelled one is not coming.
    let marker = http
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(&users[0].token)
        .json(&json!({"client_msg_id": "marker", "to": to, "body": "marker"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let marker: u64 = marker["msg_id"].as_str().unwrap().parse().unwrap();
    let (got, others) = wait_for_msg(&mut conn, marker, Duration::from_secs(10)).await;
    assert!(got.is_some(), "marker delivered");
    assert!(
        !others.contains(&ids[1]),
        "the cancelled send never arrives"
    );
}

type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw_ws(port: u16, token: &str) -> RawWs {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// Six senders burst into two recipients on two connect nodes and into a
/// group, all at once: every recipient session sees, per conversation,
/// strictly increasing seqs without a hole or a duplicate (PROTOCOL.md v1.2
/// "Order"), and everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_are_pushed_in_seq_order() {
    let _serial = SERIAL.lock().await;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    const N: usize = 100;
    let mut cluster = start_cluster("cluster-bursts", &[]);
    let http = reqwest::Client::new();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    let mut users = Vec::new();
    for i in 0..8 {
        let name = format!("{}_b{i}", cluster.ns);
        ImClient::register(&base, &name, "password123")
            .await
            .unwrap();
        users.push(ImClient::login(&base, &name, "password123").await.unwrap());
    }
    let members: Vec<UserId> = users[1..].iter().map(|u| u.user_id).collect();
    let gid = create_group(&http, &base, &users[0], "burst", &members).await;
    // Recipients 6 (node 1) and 7 (node 2) listen first.
    let mut receivers = Vec::new();
    for r in 6..8 {
        let mut ws = raw_ws(cluster.ws[CONNECT_NODES[r - 6]], &users[r].token).await;
        let want = 12 * N; // N direct from each sender + N group messages from each
        receivers.push(tokio::spawn(async move {
            let mut by_conv: HashMap<String, Vec<u64>> = HashMap::new();
            let mut got = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while got < want {
                let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, ws.next()).await else {
                    break;
                };
                let WsMessage::Text(text) = frame else {
                    continue;
                };
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "message" && v["kind"] != "system" {
                    got += 1;
                    by_conv
                        .entry(v["conversation_id"].as_str().unwrap().to_owned())
                        .or_default()
                        .push(v["seq"].as_u64().unwrap());
                }
            }
            (got, by_conv)
        }));
    }
    // Six senders, alternating nodes, write all their sends before reading.
    let targets = [
        json!({"user": users[6].user_id.to_string()}),
        json!({"user": users[7].user_id.to_string()}),
        json!({"group": gid}),
    ];
    let mut senders = Vec::new();
    for s in 0..6 {
        let mut ws = raw_ws(cluster.ws[CONNECT_NODES[s % 2]], &users[s].token).await;
        let targets = targets.clone();
        senders.push(tokio::spawn(async move {
            for k in 0..N {
                for (t, to) in targets.iter().enumerate() {
                    let frame = json!({"type": "send", "client_msg_id": format!("b{s}-{t}-{k}"),
                        "to": to, "body": format!("burst {s} {t} {k}")});
                    ws.feed(WsMessage::Text(frame.to_string().into()))
                        .await
                        .unwrap();
                }
            }
            ws.flush().await.unwrap();
            let mut acks = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while acks < 3 * N {
                let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, ws.next()).await else {
                    break;
                };
                if let WsMessage::Text(text) = frame {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    assert_ne!(v["type"], "error", "a burst send was refused: {v}");
                    if v["type"] == "send_ack" {
                        acks += 1;
                    }
                }
            }
            acks
        }));
    }
    for s in senders {
        assert_eq!(s.await.unwrap(), 3 * N, "every burst send is acked");
    }
    for (i, r) in receivers.into_iter().enumerate() {
        let (got, by_conv) = r.await.unwrap();
        assert_eq!(
            got,
            12 * N,
            "recipient {i} got every message\n{}",
            cluster.log_tail()
        );
        assert_eq!(by_conv.len(), 7, "six direct conversations and the group");
        for (conv, seqs) in &by_conv {
            let ordered = seqs.windows(2).all(|w| w[1] == w[0] + 1);
            assert!(
                ordered,
                "recipient {i}: conversation {conv} was pushed out of order, with a hole or a duplicate: {seqs:?}"
            );
        }
    }
}

/// Attachments through the cluster on the S3 server: the api role hands out
/// the upload, the client PUTs straight to S3, logic (another process) checks
/// the object before accepting the message, the recipient downloads the same
/// bytes from S3, and a non-participant is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_go_through_the_cluster_on_s3() {
    let _serial = SERIAL.lock().await;
    let s3 = im_store::s3::S3Config::from_env();
    let probe = im_store::s3::S3ObjectStorage::new(s3.clone()).unwrap();
    if let Err(e) = probe.check().await {
        panic!(
            "the S3 server is not reachable at {} ({e}): `source scripts/services.sh` starts \
             SeaweedFS's S3 gateway on 127.0.0.1:8333",
            s3.endpoint
        );
    }
    let mut cluster = start_cluster("cluster-attachments", &[]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    let mut users = Vec::new();
    for who in ["a", "b", "e"] {
        let name = format!("{}_att_{who}", cluster.ns);
        ImClient::register(&base, &name, "password123")
            .await
            .unwrap();
        users.push(ImClient::login(&base, &name, "password123").await.unwrap());
    }
    let to = json!({"user": users[1].user_id.to_string()});
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let granted: Value = http
        .post(format!("{base}/api/v1/uploads"))
        .bearer_auth(&users[0].token)
        .json(&json!({"to": to, "name": "report.pdf", "size": bytes.len(), "mime": "application/pdf"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = granted["upload"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{granted}"));
    assert!(
        url.starts_with(&s3.endpoint),
        "the client uploads to S3 itself: {url}"
    );
    let put = http
        .put(url)
        .header("content-type", "application/pdf")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let sent = http
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(&users[0].token)
        .json(&json!({"client_msg_id": "att-1", "to": to, "kind": "file", "body": granted["body"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200, "{}", sent.text().await.unwrap());
    let file = format!("{base}/api/v1/files/{}", granted["key"].as_str().unwrap());
    let link = http
        .get(&file)
        .bearer_auth(&users[1].token)
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 302);
    let location = link.headers()["location"].to_str().unwrap().to_owned();
    let got = http.get(&location).send().await.unwrap();
    assert!(got.status().is_success(), "{}", got.status());
    assert_eq!(
        got.bytes().await.unwrap().as_ref(),
        &bytes[..],
        "the recipient gets the bytes"
    );
    let refused = http
        .get(&file)
        .bearer_auth(&users[2].token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "a non-participant is refused");
    // An upload that never happened is refused by logic.
    let ghost = json!({"key": format!("att/{}/{}/1/ghost.pdf",
        im_core::id::ConversationId::direct(users[0].user_id, users[1].user_id).unwrap(), users[0].user_id),
        "name": "ghost.pdf", "size": 5, "mime": "application/pdf"});
    let refused = http
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(&users[0].token)
        .json(&json!({"client_msg_id": "att-2", "to": to, "kind": "file", "body": ghost}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "{}", refused.text().await.unwrap());
}

/// Offline notifications through the cluster: the api role stores the
/// device token (MySQL), a task process notices the recipient has no
/// session and notifies the signed webhook once per burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipients_are_notified_through_the_cluster() {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    let _serial = SERIAL.lock().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let ts = headers["x-im-timestamp"].to_str().unwrap_or_default();
                let sig = headers["x-im-signature"].to_str().unwrap_or_default();
                if im_transport::webhook::verify_signature(b"cluster-hook-secret", ts, &body, sig) {
                    let _ = tx.send(serde_json::from_slice::<Value>(&body).unwrap_or_default());
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut cluster = start_cluster(
        "cluster-notify",
        &[
            ("IM_NOTIFICATIONS__ENABLED", "true"),
            ("IM_NOTIFICATIONS__WEBHOOK_URL", &hook),
            ("IM_NOTIFICATIONS__WEBHOOK_SECRET", "cluster-hook-secret"),
            ("IM_NOTIFICATIONS__WINDOW_MS", "2000"),
        ],
    );
    let http = reqwest::Client::new();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    let mut users = Vec::new();
    for who in ["a", "b"] {
        let name = format!("{}_nt_{who}", cluster.ns);
        ImClient::register(&base, &name, "password123")
            .await
            .unwrap();
        users.push(ImClient::login(&base, &name, "password123").await.unwrap());
    }
    let res = http
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(&users[1].token)
        .json(&json!({"platform": "webhook", "token": format!("{}-phone", cluster.ns), "device": "phone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let to = json!({"user": users[1].user_id.to_string()});
    // The burst: 20 sends at once (well within the 2 s window).
    let sends = (0..20).map(|i| {
        http.post(format!("{base}/api/v1/messages"))
            .bearer_auth(&users[0].token)
            .json(&json!({"client_msg_id": format!("n{i}"), "to": to, "body": format!("note {i}")}))
            .send()
    });
    for r in futures::future::join_all(sends).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    let mut got = Vec::new();
    if let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
        got.push(v);
    }
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        got.push(v);
    }
    let total: u64 = got
        .iter()
        .map(|v| v["notification"]["messages"].as_u64().unwrap_or(0))
        .sum();
    println!("notifications for the burst: {}", got.len());
    assert_eq!(
        total,
        20,
        "every message of the burst is counted once\n{got:?}\n{}",
        cluster.log_tail()
    );
    // One notification per burst; two only if a partition lease moved
    // between task processes during it (the cluster just started).
    assert!(!got.is_empty() && got.len() <= 2, "{got:?}");
    assert_eq!(got[0]["token"], format!("{}-phone", cluster.ns));
    assert_eq!(
        got[0]["notification"]["title"],
        format!("{}_nt_a", cluster.ns)
    );
}

/// v1.2 people rules through the real roles (api → logic over gRPC → MySQL
/// and Redis; events through the queue, task and connect): names, a contact
/// request told on another connect node, a block, an edit told live, the
/// join cutoff and a mention in the conversation list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_rules_hold_through_the_cluster() {
    let _serial = SERIAL.lock().await;
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let mut cluster = start_cluster("cluster-people", &[]);
    let http = reqwest::Client::new();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    let mut users = Vec::new();
    for who in ["a", "b", "c"] {
        let name = format!("{}_pp_{who}", cluster.ns);
        ImClient::register(&base, &name, "password123")
            .await
            .unwrap();
        users.push(ImClient::login(&base, &name, "password123").await.unwrap());
    }
    let call = |method: reqwest::Method, path: String, who: usize, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(&users[who].token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    use reqwest::Method;
    let id = |i: usize| users[i].user_id.to_string();
    let (st, p) = call(
        Method::PUT,
        "/users/me/profile".into(),
        0,
        Some(json!({"display_name": "Alice"})),
    )
    .await;
    assert_eq!((st, p["display_name"].as_str()), (200, Some("Alice")));
    let (_, p) = call(Method::GET, format!("/users/{}", id(0)), 1, None).await;
    assert_eq!(p["display_name"], "Alice");

    // b listens on connect node 2, c on node 1.
    let mut bws = raw_ws(cluster.ws["connect-2"], &users[1].token).await;
    let mut cws = raw_ws(cluster.ws["connect-1"], &users[2].token).await;
    async fn frame_of(ws: &mut RawWs, kind: &str) -> Value {
        loop {
            let f = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("open")
                .unwrap();
            if let WsMessage::Text(t) = f {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == kind {
                    return v;
                }
            }
        }
    }
    let (st, v) = call(
        Method::POST,
        "/contacts/requests".into(),
        0,
        Some(json!({"user_id": id(1)})),
    )
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("pending")));
    let f = frame_of(&mut bws, "contact").await;
    assert_eq!(
        (f["event"].as_str(), f["from"].as_str()),
        (Some("requested"), Some(id(0).as_str()))
    );
    assert_eq!(
        call(
            Method::POST,
            format!("/contacts/requests/{}/accept", id(0)),
            1,
            None
        )
        .await
        .0,
        204
    );
    let (_, v) = call(Method::GET, "/contacts".into(), 0, None).await;
    assert_eq!(
        v["contacts"][0]["user"]["user_id"].as_str(),
        Some(id(1).as_str())
    );

    // b blocks a: a's 1:1 send is refused (the block is read from MySQL).
    assert_eq!(
        call(Method::PUT, format!("/blocks/{}", id(0)), 1, None)
            .await
            .0,
        204
    );
    let (st, v) = call(
        Method::POST,
        "/messages".into(),
        0,
        Some(json!({"client_msg_id": "pp-1", "to": {"user": id(1)}, "body": "hi"})),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("permission_denied"))
    );

    // An edit reaches c's session on the other node.
    let (st, ack) = call(
        Method::POST,
        "/messages".into(),
        0,
        Some(json!({"client_msg_id": "pp-2", "to": {"user": id(2)}, "body": "helo"})),
    )
    .await;
    assert_eq!(st, 200, "{ack}");
    let msg = ack["msg_id"].as_str().unwrap().to_owned();
    let (st, m) = call(
        Method::PATCH,
        format!("/messages/{msg}"),
        0,
        Some(json!({"body": "hello"})),
    )
    .await;
    assert_eq!((st, m["body"].as_str()), (200, Some("hello")), "{m}");
    let f = frame_of(&mut cws, "edited").await;
    assert_eq!(f["body"], "hello");

    // Join cutoff and a mention: c joins after "before", is mentioned after.
    let gid = create_group(&http, &base, &users[0], "people", &[]).await;
    let (st, _) = call(
        Method::POST,
        "/messages".into(),
        0,
        Some(json!({"client_msg_id": "pp-3", "to": {"group": gid}, "body": "before"})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        call(
            Method::POST,
            format!("/groups/{gid}/members"),
            0,
            Some(json!({"user_id": id(2)}))
        )
        .await
        .0,
        204
    );
    let (st, last) = call(Method::POST, "/messages".into(), 0, Some(json!({"client_msg_id": "pp-4", "to": {"group": gid}, "body": "@c", "mentions": [id(2)]}))).await;
    assert_eq!(st, 200, "{last}");
    let seq = last["seq"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let row = loop {
        let (_, list) = call(Method::GET, "/conversations".into(), 2, None).await;
        let row = list["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["conversation_id"] == format!("g:{gid}") && r["last_seq"] == json!(seq))
            .cloned();
        if let Some(row) = row {
            break row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group is listed for c with its last message"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row["mentioned"], true, "{row}");
    let (_, history) = call(
        Method::GET,
        format!("/conversations/g:{gid}/messages?after_seq=0"),
        2,
        None,
    )
    .await;
    let bodies: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert!(
        bodies.contains(&"@c") && !bodies.contains(&"before"),
        "{bodies:?}"
    );
}

/// `cluster.database_url = postgres://…`: the seven processes on a fresh
/// PostgreSQL database (`POSTGRES_URL`'s server): accounts, a group, a
/// push across connect nodes, and every acked message persisted there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_runs_on_postgres() {
    let _serial = SERIAL.lock().await;
    use sqlx::Connection;
    let admin = env_or("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin} ({e}): start it (scripts/services.sh \
             checks it) or point POSTGRES_URL at one"
            )
        });
    let name = format!("cluster_pg_{:08x}", harness::rand_u32());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let mut cluster = start_cluster("cluster-postgres", &[("IM_CLUSTER__DATABASE_URL", &url)]);
    let http = reqwest::Client::new();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    let mut users = Vec::new();
    for who in ["a", "b"] {
        let name = format!("{}_pg_{who}", cluster.ns);
        ImClient::register(&base, &name, "password123")
            .await
            .unwrap();
        users.push(ImClient::login(&base, &name, "password123").await.unwrap());
    }
    let mut conns = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mut u = u.clone();
        u.ws_url = Some(cluster.ws_url(CONNECT_NODES[i % 2]));
        conns.push(u.connect().await.unwrap());
    }
    let gid = create_group(&http, &base, &users[0], "pg", &[users[1].user_id]).await;
    let mut acked = HashSet::new();
    for (k, to) in [
        Target::User(users[1].user_id),
        Target::Group(gid.parse().unwrap()),
    ]
    .into_iter()
    .enumerate()
    {
        let ack = conns[0].send(to, format!("on postgres {k}")).await.unwrap();
        acked.insert(ack.msg_id.0);
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match conns[1].next_message().await {
                    Some(m) if m.msg_id == ack.msg_id => return m,
                    Some(_) => continue,
                    None => panic!("b's connection closed"),
                }
            }
        })
        .await
        .expect("pushed across connect nodes within 10 s");
        assert_eq!(got.from, users[0].user_id);
    }
    // Persisted in PostgreSQL (off the delivery path: poll, bounded).
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT msg_id FROM messages")
            .fetch_all(&mut db)
            .await
            .unwrap();
        let stored: HashSet<u64> = ids.into_iter().map(|i| i as u64).collect();
        if acked.is_subset(&stored) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acked {acked:?}, in PostgreSQL {stored:?}\n{}",
            cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (users_in_pg,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(users_in_pg >= 2, "{users_in_pg} accounts in PostgreSQL");
    for c in conns {
        c.close().await;
    }
    drop(cluster);
    drop(db);
    let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
}
