//! Users, sends, deliveries, and the archive: what a scenario sends, what
//! reached whom, and what was persisted.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use im_client::{Connection, ImClient};
use im_core::id::UserId;
use im_core::model::MessageKind;
use reliability::report::Tally;
use serde_json::{json, Value};
use sqlx::MySqlPool;

use crate::harness::poll_until;
use crate::setup::PASSWORD;

// Users, sends, deliveries, the archive.

pub async fn users(base: &str, ns: &str, names: &[&str]) -> Vec<ImClient> {
    futures::future::join_all(names.iter().map(|n| async move {
        let name = format!("{ns}_{n}");
        // Right after a (re)start the api may not have discovered a logic
        // instance yet and answers 503 `unavailable`: retry for a while.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut registered = false;
        loop {
            if !registered {
                match ImClient::register(base, &name, PASSWORD).await {
                    Ok(_) => registered = true,
                    // A retry of a registration that went through.
                    Err(e) if format!("{e:?} {e}").contains("already_exists") => registered = true,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    Err(e) => panic!("registering {name}: {e:?}"),
                }
            }
            match ImClient::login(base, &name, PASSWORD).await {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("logging {name} in: {e:?}"),
            }
        }
    }))
    .await
}

/// An acked send: what it must reach.
#[derive(Debug, Clone)]
pub struct Acked {
    pub sender: UserId,
    pub cmid: String,
    pub msg_id: u64,
    pub conv: String,
    pub seq: u64,
    pub to: Vec<UserId>,
}

/// One `POST /api/v1/messages`: the ack, or (HTTP status, error code); and
/// how long it took.
pub async fn http_send(
    http: &reqwest::Client,
    base: &str,
    from: &ImClient,
    cmid: &str,
    to: &Value,
    recipients: &[UserId],
) -> (Result<Acked, (u16, String)>, Duration) {
    let t = Instant::now();
    let r = http
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(&from.token)
        .json(&json!({"client_msg_id": cmid, "to": to, "body": cmid}))
        .send()
        .await;
    let out = match r {
        Err(e) => Err((0, format!("transport: {e}"))),
        Ok(r) => {
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if status == 200 {
                Ok(Acked {
                    sender: from.user_id,
                    cmid: cmid.to_owned(),
                    msg_id: v["msg_id"].as_str().unwrap().parse().unwrap(),
                    conv: v["conversation_id"].as_str().unwrap().to_owned(),
                    seq: v["seq"].as_u64().unwrap(),
                    to: recipients.to_vec(),
                })
            } else {
                Err((
                    status,
                    v["error"]["code"].as_str().unwrap_or_default().to_owned(),
                ))
            }
        }
    };
    (out, t.elapsed())
}

/// Sends until acked (same `client_msg_id` on every retry); the ack and the
/// failed attempts.
pub async fn send_until_acked(
    http: &reqwest::Client,
    base: &str,
    from: &ImClient,
    cmid: &str,
    to: &Value,
    recipients: &[UserId],
) -> (Acked, Vec<(u16, String)>) {
    let mut failures = Vec::new();
    let t = Instant::now();
    loop {
        match http_send(http, base, from, cmid, to, recipients).await.0 {
            Ok(a) => return (a, failures),
            Err(e) => failures.push(e),
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "send {cmid} not acked within 60 s: {failures:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn to_user(u: UserId) -> Value {
    json!({"user": u.to_string()})
}

/// What each user's live connection received: user → msg_id → times.
#[derive(Clone, Default)]
pub struct Inbox(pub Arc<Mutex<HashMap<UserId, HashMap<u64, u32>>>>);

impl Inbox {
    /// Reads `conn` (of user `me`) into the inbox until aborted.
    pub fn listen(&self, mut conn: Connection, me: UserId) -> tokio::task::JoinHandle<()> {
        let inbox = self.clone();
        tokio::spawn(async move {
            while let Some(m) = conn.next_message().await {
                if m.from != me && m.kind != MessageKind::System {
                    inbox.add(me, m.msg_id.0);
                }
            }
        })
    }

    pub fn add(&self, user: UserId, msg: u64) {
        *self
            .0
            .lock()
            .unwrap()
            .entry(user)
            .or_default()
            .entry(msg)
            .or_insert(0) += 1;
    }

    pub fn has(&self, user: UserId, msg: u64) -> bool {
        self.0
            .lock()
            .unwrap()
            .get(&user)
            .is_some_and(|m| m.contains_key(&msg))
    }

    pub fn missing<'a>(&self, acked: &'a [Acked]) -> Vec<(UserId, &'a Acked)> {
        acked
            .iter()
            .flat_map(|a| a.to.iter().map(move |u| (*u, a)))
            .filter(|(u, a)| !self.has(*u, a.msg_id))
            .collect()
    }

    /// Messages some live connection got more than once (after the client's dedup).
    pub fn repeated(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .values()
            .flat_map(|m| m.values())
            .filter(|n| **n > 1)
            .count()
    }
}

/// Every message of a conversation, read as `user` over HTTP history.
pub async fn history(
    http: &reqwest::Client,
    base: &str,
    user: &ImClient,
    conv: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let r = http
            .get(format!(
                "{base}/api/v1/conversations/{conv}/messages?after_seq={after}&limit=100"
            ))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "history of {conv}: {}", r.status());
        let v: Value = r.json().await.unwrap();
        let page = v["messages"].as_array().cloned().unwrap_or_default();
        if let Some(last) = page.last() {
            after = last["seq"].as_u64().unwrap();
        }
        out.extend(page);
        if !v["has_more"].as_bool().unwrap_or(false) {
            return out;
        }
    }
}

/// Rows in the archive per acked send, counted per logical message (sender,
/// `client_msg_id`): a retry stored under a new msg_id counts twice.
pub async fn persisted(db: &MySqlPool, acked: &[Acked]) -> HashMap<String, u64> {
    let convs: BTreeSet<&str> = acked.iter().map(|a| a.conv.as_str()).collect();
    let mut out = HashMap::new();
    if convs.is_empty() {
        return out;
    }
    // Conversation ids are `u:<digits>:<digits>` / `g:<digits>`: safe inline.
    let list = convs
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(",");
    let rows: Vec<(u64, Vec<u8>)> = sqlx::query_as(&format!(
        "SELECT sender, client_msg_id FROM messages WHERE conversation_id IN ({list})"
    ))
    .fetch_all(db)
    .await
    .unwrap();
    let keys: HashMap<(u64, &str), u64> = acked
        .iter()
        .map(|a| ((a.sender.0, a.cmid.as_str()), a.msg_id))
        .collect();
    for (sender, cmid) in rows {
        let cmid = String::from_utf8_lossy(&cmid);
        if let Some(id) = keys.get(&(sender, cmid.as_ref())) {
            *out.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// Waits until every acked send has a row (or `limit`); the rows and the wait.
pub async fn wait_persisted(
    db: &MySqlPool,
    acked: &[Acked],
    limit: Duration,
) -> (HashMap<String, u64>, Duration) {
    let t = Instant::now();
    loop {
        let rows = persisted(db, acked).await;
        if rows.len() >= acked.len() || t.elapsed() > limit {
            return (rows, t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fills the tally: waits up to `live` for live deliveries, reads what is
/// still missing by history (sync), waits for the archive. Returns how many
/// (recipient, message) pairs were found only by sync.
#[allow(clippy::too_many_arguments)]
pub async fn settle(
    tally: &mut Tally,
    acked: &[Acked],
    inbox: &Inbox,
    who: &HashMap<UserId, ImClient>,
    http: &reqwest::Client,
    base: &str,
    db: &MySqlPool,
    live: Duration,
) -> usize {
    poll_until(live, || async { inbox.missing(acked).is_empty() }).await;
    let missing = inbox.missing(acked);
    let mut by_sync = 0;
    let mut convs: BTreeSet<(UserId, String)> = BTreeSet::new();
    for (u, a) in &missing {
        convs.insert((*u, a.conv.clone()));
    }
    for (u, conv) in convs {
        for m in history(http, base, &who[&u], &conv).await {
            let id: u64 = m["msg_id"].as_str().unwrap().parse().unwrap();
            if missing.iter().any(|(mu, a)| *mu == u && a.msg_id == id) {
                inbox.add(u, id);
                by_sync += 1;
            }
        }
    }
    let (rows, _) = wait_persisted(db, acked, Duration::from_secs(40)).await;
    for a in acked {
        tally.acked.insert(a.msg_id.to_string());
        if a.to.iter().all(|u| inbox.has(*u, a.msg_id)) {
            tally.delivered.insert(a.msg_id.to_string(), 1);
        }
    }
    tally.persisted = rows;
    by_sync
}
