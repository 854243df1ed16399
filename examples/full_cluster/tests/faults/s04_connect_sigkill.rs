//! #4: a connect node SIGKILLed with 1,000 live sockets.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use im_client::ImClient;
use reliability::report::Tally;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::harness::{metric, poll_until};
use crate::raw_ws::{open_ws, Ws};
use crate::setup::{millis, new_cluster, percentile, require_services, run};
use crate::traffic::{send_until_acked, to_user, users, wait_persisted, Acked};

/// One raw WebSocket client's state, shared with the test.
#[derive(Debug, Default)]
struct Sock {
    /// Open and answered a sync since the last (re)connect.
    ready: bool,
    url: String,
    /// seq → msg_id of its conversation.
    seqs: BTreeMap<u64, u64>,
    /// Every seq up to this one is here.
    contiguous: u64,
    disconnects: u32,
    /// When it was usable again after its first disconnect.
    back: Option<Instant>,
}

impl Sock {
    fn add(&mut self, m: &Value) {
        let (Some(seq), Some(id)) = (
            m["seq"].as_u64(),
            m["msg_id"].as_str().and_then(|s| s.parse::<u64>().ok()),
        ) else {
            return;
        };
        self.seqs.insert(seq, id);
        while self.seqs.contains_key(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }

    fn gap(&self) -> bool {
        self.seqs
            .keys()
            .next_back()
            .is_some_and(|l| *l > self.contiguous)
    }
}

fn sync_frame(conv: &str, after: u64) -> WsMessage {
    WsMessage::Text(
        json!({"type": "sync", "conversation_id": conv, "after_seq": after, "limit": 100})
            .to_string()
            .into(),
    )
}

/// A client following protocol §7 by hand: on every (re)connect it asks
/// `GET /api/v1/connect`, syncs its conversation from its last contiguous
/// seq, and syncs again on a gap; backoff 50 ms doubling to 1 s.
async fn raw_client(
    http: reqwest::Client,
    base: String,
    token: String,
    conv: String,
    first_url: String,
    state: Arc<Mutex<Sock>>,
    stop: CancellationToken,
) {
    let mut url = first_url;
    let mut backoff = Duration::from_millis(50);
    let mut connected_once = false;
    loop {
        // Until the first connection the socket insists on `first_url`.
        if connected_once {
            let r = http
                .get(format!("{base}/api/v1/connect"))
                .bearer_auth(&token)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if let Ok(r) = r {
                if let Ok(v) = r.json::<Value>().await {
                    if let Some(u) = v["ws_url"].as_str() {
                        url = u.to_owned();
                    }
                }
            }
        }
        let ws = tokio::select! {
            _ = stop.cancelled() => return,
            ws = open_ws(&url, &token) => ws,
        };
        let Some(mut ws) = ws else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        backoff = Duration::from_millis(50);
        connected_once = true;
        state.lock().unwrap().url = url.clone();
        session(&mut ws, &conv, &state, &stop).await;
        if stop.is_cancelled() {
            let _ = ws.close(None).await;
            return;
        }
        let mut s = state.lock().unwrap();
        s.ready = false;
        s.disconnects += 1;
    }
}

async fn session(ws: &mut Ws, conv: &str, state: &Mutex<Sock>, stop: &CancellationToken) {
    let after = state.lock().unwrap().contiguous;
    if ws.send(sync_frame(conv, after)).await.is_err() {
        return;
    }
    let mut sync_sent = Some(Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                // A gap (storage lags the ack briefly), or no answer yet since
                // the (re)connect (an `error` answer, e.g. `unavailable` while
                // Logic is overloaded): sync again unless one is in flight
                // (or unanswered for 2 s).
                let (want, after) = {
                    let s = state.lock().unwrap();
                    (s.gap() || !s.ready, s.contiguous)
                };
                if want && sync_sent.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
                    if ws.send(sync_frame(conv, after)).await.is_err() {
                        return;
                    }
                    sync_sent = Some(Instant::now());
                }
                continue;
            }
            f = ws.next() => f,
        };
        let text = match frame {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return,
            Some(Ok(_)) => continue,
        };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let mut resync = None;
        {
            let mut s = state.lock().unwrap();
            match v["type"].as_str() {
                Some("message") if v["conversation_id"] == conv => {
                    s.add(&v);
                    if s.gap() && sync_sent.is_none() {
                        resync = Some(s.contiguous);
                    }
                }
                Some("sync_result") => {
                    sync_sent = None;
                    for m in v["messages"].as_array().into_iter().flatten() {
                        s.add(m);
                    }
                    if !s.ready {
                        s.ready = true;
                        if s.disconnects > 0 && s.back.is_none() {
                            s.back = Some(Instant::now());
                        }
                    }
                    if v["has_more"].as_bool() == Some(true) {
                        resync = Some(s.contiguous);
                    }
                }
                // An `error` answer (no sync_result): the tick asks again
                // 2 s after the sync was sent.
                _ => {}
            }
        }
        if let Some(after) = resync {
            if ws.send(sync_frame(conv, after)).await.is_err() {
                return;
            }
            sync_sent = Some(Instant::now());
        }
    }
}

#[test]
fn s04_connect_node_sigkilled_with_1000_live_sockets() {
    run(connect_sigkill());
}

async fn connect_sigkill() {
    let http = reqwest::Client::new();
    let db = require_services(&http, true, true).await;
    let sockets = 1_000usize;
    let recipients = 10usize;
    let mut cluster = new_cluster("s04");
    cluster.start();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    let names: Vec<String> = std::iter::once("snd".to_owned())
        .chain((0..recipients).map(|i| format!("r{i}")))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let u = users(&base, &cluster.ns, &names).await;
    let sender = u[0].clone();
    let rs: Vec<ImClient> = u[1..].to_vec();
    let convs: Vec<String> = rs
        .iter()
        .map(|r| {
            let (a, b) = (
                sender.user_id.0.min(r.user_id.0),
                sender.user_id.0.max(r.user_id.0),
            );
            format!("u:{a}:{b}")
        })
        .collect();

    // 1,000 sockets (100 per recipient) on connect-1.
    let stop = CancellationToken::new();
    let states: Vec<Arc<Mutex<Sock>>> = (0..sockets)
        .map(|_| Arc::new(Mutex::new(Sock::default())))
        .collect();
    let first_url = cluster.ws_url("connect-1");
    let mut tasks = Vec::new();
    let mut all_ready = Some(Duration::ZERO);
    // Opened 100 at a time, each batch once the one before is usable.
    for (i, st) in states.iter().enumerate() {
        let r = i % recipients;
        tasks.push(tokio::spawn(raw_client(
            http.clone(),
            base.clone(),
            rs[r].token.clone(),
            convs[r].clone(),
            first_url.clone(),
            st.clone(),
            stop.clone(),
        )));
        if (i + 1) % 100 == 0 || i + 1 == sockets {
            all_ready = poll_until(Duration::from_secs(60), || async {
                states[..=i].iter().all(|s| s.lock().unwrap().ready)
            })
            .await;
            if all_ready.is_none() {
                break;
            }
        }
    }
    let ready_n = states.iter().filter(|s| s.lock().unwrap().ready).count();
    assert!(
        all_ready.is_some(),
        "only {ready_n} of {sockets} sockets opened on connect-1\n{}",
        cluster.log_tail()
    );
    let c1 = cluster.metrics_url("connect-1");
    let live = metric(&http, &c1, "im_ws_connections").await;
    assert_eq!(live as usize, sockets, "connect-1 holds every socket");

    // Sends: 3 per recipient before the kill, 3 during the reconnects, 1 after.
    let mut acked: Vec<Acked> = Vec::new();
    let send_round = |round: usize| {
        let (http, base, sender, rs) = (http.clone(), base.clone(), sender.clone(), rs.clone());
        async move {
            let all = futures::future::join_all(rs.iter().enumerate().map(|(i, r)| {
                let (http, base, sender) = (http.clone(), base.clone(), sender.clone());
                let to = r.user_id;
                async move {
                    let mut out = Vec::new();
                    for k in 0..3 {
                        out.push(
                            send_until_acked(
                                &http,
                                &base,
                                &sender,
                                &format!("c{round}-{i}-{k}"),
                                &to_user(to),
                                &[to],
                            )
                            .await
                            .0,
                        );
                    }
                    out
                }
            }))
            .await;
            all.into_iter().flatten().collect::<Vec<Acked>>()
        }
    };
    acked.extend(send_round(0).await);
    let got = poll_until(Duration::from_secs(30), || async {
        states.iter().all(|s| s.lock().unwrap().contiguous >= 3)
    })
    .await;
    assert!(
        got.is_some(),
        "the first 3 messages reached every socket\n{}",
        cluster.log_tail()
    );

    cluster.kill9("connect-1");
    let killed = Instant::now();
    let during = tokio::spawn(send_round(1));
    let back = poll_until(Duration::from_secs(90), || async {
        states.iter().all(|s| {
            let s = s.lock().unwrap();
            s.back.is_some() && s.ready
        })
    })
    .await;
    let back_n = states
        .iter()
        .filter(|s| s.lock().unwrap().back.is_some())
        .count();
    let ready_n = states.iter().filter(|s| s.lock().unwrap().ready).count();
    assert!(
        back.is_some(),
        "only {back_n} of {sockets} sockets usable again within 90 s ({ready_n} ready)\n{}",
        cluster.log_tail()
    );
    let rpc_errors = metric(
        &http,
        &cluster.metrics_url("connect-2"),
        "im_rpc_errors_total",
    )
    .await
        + metric(&http, &cluster.metrics_url("api"), "im_rpc_errors_total").await;
    acked.extend(during.await.unwrap());
    // One more each, so a socket that missed the tail sees a gap.
    for (i, r) in rs.iter().enumerate() {
        let to = r.user_id;
        acked.push(
            send_until_acked(
                &http,
                &base,
                &sender,
                &format!("c2-{i}"),
                &to_user(to),
                &[to],
            )
            .await
            .0,
        );
    }
    let last: HashMap<String, u64> = acked.iter().fold(HashMap::new(), |mut m, a| {
        let e = m.entry(a.conv.clone()).or_insert(0);
        *e = (*e).max(a.seq);
        m
    });
    let converged = poll_until(Duration::from_secs(30), || async {
        states
            .iter()
            .enumerate()
            .all(|(i, s)| s.lock().unwrap().contiguous >= last[&convs[i % recipients]])
    })
    .await;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }

    // Every socket: every acked message at its seq, no gap.
    let mut gaps = 0usize;
    let mut wrong = 0usize;
    let mut on_other = 0usize;
    let mut times: Vec<Duration> = Vec::new();
    let mut per_msg: HashMap<u64, usize> = HashMap::new();
    for (i, s) in states.iter().enumerate() {
        let s = s.lock().unwrap();
        let conv = &convs[i % recipients];
        gaps += (1..=last[conv]).filter(|q| !s.seqs.contains_key(q)).count();
        for a in acked.iter().filter(|a| &a.conv == conv) {
            match s.seqs.get(&a.seq) {
                Some(id) if *id == a.msg_id => *per_msg.entry(a.msg_id).or_insert(0) += 1,
                Some(_) => wrong += 1,
                None => {}
            }
        }
        if cluster.node_of_url(&s.url).as_deref() == Some("connect-2") {
            on_other += 1;
        }
        if let Some(b) = s.back {
            times.push(b.duration_since(killed));
        }
    }
    times.sort();
    let per_user = sockets / recipients;
    let mut tally = Tally::new(
        "#4 connect node SIGKILLed with 1,000 live sockets",
        "SIGKILL connect-1 holding 1,000 sockets (10 users × 100); 30 sends during the reconnects",
    );
    tally.sent = acked.len() as u64;
    for a in &acked {
        tally.acked.insert(a.msg_id.to_string());
        if per_msg.get(&a.msg_id) == Some(&per_user) {
            tally.delivered.insert(a.msg_id.to_string(), 1);
        }
    }
    tally.persisted = wait_persisted(&db, &acked, Duration::from_secs(30)).await.0;
    tally.figure = format!(
        "reconnect (kill → new socket answered a sync) p50 {} ms, p99 {} ms, max {} ms; \
         {on_other}/{sockets} on connect-2; gaps {gaps}; {rpc_errors} retryable LogicRpc errors \
         (connect-2 + api) during the reconnects",
        millis(percentile(&times, 0.50)),
        millis(percentile(&times, 0.99)),
        millis(percentile(&times, 1.0)),
    );
    tally.check();
    assert!(
        converged.is_some(),
        "every socket caught up by sync\n{}",
        cluster.log_tail()
    );
    assert_eq!(gaps, 0, "0 gaps on every socket");
    assert_eq!(wrong, 0, "every socket has the acked message at each seq");
    assert_eq!(
        on_other, sockets,
        "every socket reconnected to the other node"
    );
    assert!(
        percentile(&times, 0.99) < Duration::from_secs(30),
        "p99 reconnect under 30 s"
    );
}
