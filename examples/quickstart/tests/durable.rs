//! `--data sqlite://…` (and `postgres://…`): the quickstart started twice
//! on the same database keeps users, groups, messages, conversation lists and read cursors, and
//! seqs continue after the stored ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use quickstart::{Quickstart, Settings};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

struct Life {
    qs: Quickstart,
    base: String,
    http: reqwest::Client,
    server: JoinHandle<std::io::Result<()>>,
}

async fn start(db: &str) -> Life {
    let mut settings = Settings::new(SECRET);
    settings.data = Some(db.to_owned());
    settings.web_page = false;
    let qs = Quickstart::start(&settings).await.unwrap();
    assert!(qs.is_durable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(im_transport::server::serve(
        listener,
        qs.router.clone(),
        qs.shutdown.clone(),
    ));
    Life {
        qs,
        base: format!("http://{addr}/api/v1"),
        http: reqwest::Client::new(),
        server,
    }
}

impl Life {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    async fn login(&self, username: &str) -> (String, String) {
        let (s, v) = self
            .post(
                "/sessions",
                None,
                json!({"username": username, "password": "correct horse"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        (
            v["user_id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    async fn send(&self, token: &str, to: Value, key: &str, body: &str) -> Value {
        let (s, v) = self
            .post(
                "/messages",
                Some(token),
                json!({"client_msg_id": key, "to": to, "body": body}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// The whole history of a conversation, once it holds `n` messages
    /// (persisting is asynchronous).
    async fn history(&self, token: &str, conversation: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (s, v) = self
                .get(
                    &format!("/conversations/{conversation}/messages?limit=100"),
                    token,
                )
                .await;
            assert_eq!(s, 200, "{v}");
            let messages = v["messages"].as_array().unwrap().clone();
            if messages.len() >= n || Instant::now() > deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.qs.shutdown.cancel();
        self.server.await.unwrap().unwrap();
        self.qs.stop().await;
    }
}

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_groups_and_messages_survive_a_restart() {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "quickstart-durable-{}-{}",
        std::process::id(),
        rand_suffix()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("im.db");
    // No `mode` in the URL: the quickstart adds `mode=rwc` and creates the file.
    survives_a_restart(&format!("sqlite://{}", file.display())).await;
    assert!(file.exists());
}

/// `--data postgres://…`: the same two lives on a fresh PostgreSQL database
/// (`POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_postgres() {
    use sqlx::Connection;
    let admin = std::env::var("POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
            "PostgreSQL is not reachable at {admin} ({e}): start it (scripts/services.sh checks \
             it) or point POSTGRES_URL at one"
        )
        });
    let name = format!("quickstart_durable_{}", rand_suffix());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
    survives_a_restart(&format!("{base}/{name}")).await;
    let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
}

/// Two lives of the quickstart on the database of `db`.
async fn survives_a_restart(db: &str) {
    // First life: accounts, a group, messages.
    let life = start(db).await;
    for name in ["alice", "bob"] {
        let (s, v) = life
            .post(
                "/users",
                None,
                json!({"username": name, "password": "correct horse"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (alice, alice_token) = life.login("alice").await;
    let (bob, bob_token) = life.login("bob").await;
    let (s, v) = life
        .post("/groups", Some(&alice_token), json!({"name": "Team"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let group = v["group_id"].as_str().unwrap().to_owned();
    let (s, v) = life
        .post(
            &format!("/groups/{group}/members"),
            Some(&alice_token),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(s, 204, "{v}");

    let mut direct = String::new();
    for i in 1..=3u64 {
        let ack = life
            .send(
                &alice_token,
                json!({"user": bob}),
                &format!("d-{i}"),
                "hi bob",
            )
            .await;
        assert_eq!(ack["seq"], i);
        direct = ack["conversation_id"].as_str().unwrap().to_owned();
    }
    // The group's first seqs are its system messages (created, member added).
    let mut group_last = 0;
    for i in 1..=2u64 {
        let ack = life
            .send(
                &alice_token,
                json!({"group": group}),
                &format!("g-{i}"),
                "hi team",
            )
            .await;
        let seq = ack["seq"].as_u64().unwrap();
        assert!(seq > group_last, "group seqs grow");
        group_last = seq;
    }
    let group_count = usize::try_from(group_last).unwrap();
    let gconv = format!("g:{group}");
    assert_eq!(
        seqs(&life.history(&alice_token, &direct, 3).await),
        [1, 2, 3]
    );
    assert_eq!(
        seqs(&life.history(&alice_token, &gconv, group_count).await),
        (1..=group_last).collect::<Vec<_>>()
    );
    let (s, v) = life
        .post(
            &format!("/conversations/{direct}/read"),
            Some(&bob_token),
            json!({"seq": 2}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    life.stop().await;

    // Second life on the same file: a fresh process state, the same data.
    let life = start(db).await;
    let (s, v) = life
        .post(
            "/users",
            None,
            json!({"username": "alice", "password": "another pass"}),
        )
        .await;
    assert_eq!(s, 409, "the account survived: {v}");
    let (alice_again, alice_token) = life.login("alice").await;
    assert_eq!(alice_again, alice);
    let (bob_again, bob_token) = life.login("bob").await;
    assert_eq!(bob_again, bob);

    let history = life.history(&bob_token, &direct, 3).await;
    assert_eq!(seqs(&history), [1, 2, 3]);
    assert!(history
        .iter()
        .all(|m| m["from"] == alice.as_str() && m["body"] == "hi bob"));
    let (s, v) = life
        .get(&format!("/groups/{group}/members"), &bob_token)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["members"].as_array().unwrap().len(), 2);

    // Bob's conversation list and read cursor survived.
    let (s, v) = life.get("/conversations", &bob_token).await;
    assert_eq!(s, 200, "{v}");
    let rows: Vec<(String, u64, u64, u64)> = v["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["conversation_id"].as_str().unwrap().to_owned(),
                r["last_seq"].as_u64().unwrap(),
                r["read_seq"].as_u64().unwrap(),
                r["unread"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 2, "{v}");
    assert!(
        rows.contains(&(direct.clone(), 3, 2, 1)),
        "the direct conversation keeps its read cursor: {v}"
    );
    assert!(
        rows.iter()
            .any(|(c, last, read, _)| *c == gconv && *last == group_last && *read == 1),
        "the group conversation is listed for its member, read up to its join (seq 1, v1.2 cutoff): {v}"
    );

    // Seqs continue after the stored ones (seeded allocator), per conversation.
    let ack = life
        .send(&alice_token, json!({"user": bob}), "d-4", "again")
        .await;
    assert_eq!(ack["seq"], 4);
    assert_eq!(ack["conversation_id"], direct.as_str());
    let ack = life
        .send(&bob_token, json!({"group": group}), "g-3", "back")
        .await;
    assert_eq!(ack["seq"], group_last + 1);
    let history = life.history(&alice_token, &direct, 4).await;
    assert_eq!(seqs(&history), [1, 2, 3, 4]);
    assert_eq!(history[3]["body"], "again");
    assert_eq!(
        seqs(&life.history(&alice_token, &gconv, group_count + 1).await),
        (1..=group_last + 1).collect::<Vec<_>>()
    );
    life.stop().await;
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
