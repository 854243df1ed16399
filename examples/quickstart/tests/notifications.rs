//! Offline notifications end to end (protocol v1.2) on the quickstart, with
//! a signed webhook as the notifier (a local HTTP server here): a device
//! registers its token; a burst of 20 messages to an offline user is one
//! notification; an online user gets none; and a notifier that hangs does
//! not delay delivery to online sessions (p99 send→deliver with the notifier
//! up and down, measured in the same run and printed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use im_client::ImClient;
use im_core::model::Target;
use quickstart::{Quickstart, Settings};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const HOOK_SECRET: &str = "notification-hook-secret";

/// A webhook receiver: every verified notification, or one that never answers.
async fn receiver(hang: bool) -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                let ts = headers["x-im-timestamp"].to_str().unwrap();
                let sig = headers["x-im-signature"].to_str().unwrap();
                assert!(
                    im_transport::webhook::verify_signature(HOOK_SECRET.as_bytes(), ts, &body, sig),
                    "the notification is signed"
                );
                let _ = tx.send(serde_json::from_slice::<Value>(&body).unwrap());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

struct Life {
    qs: Quickstart,
    api: String,
}

async fn start(hook: &str) -> Life {
    let mut settings = Settings::new(SECRET);
    settings.web_page = false;
    settings.send_rate = 0.0;
    settings.notify_webhook = Some((hook.to_owned(), HOOK_SECRET.to_owned()));
    settings.notify_window = Duration::from_millis(300);
    let qs = Quickstart::start(&settings).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(im_transport::server::serve(
        listener,
        qs.router.clone(),
        qs.shutdown.clone(),
    ));
    Life {
        qs,
        api: format!("http://{addr}"),
    }
}

impl Life {
    async fn user(&self, name: &str) -> ImClient {
        ImClient::register(&self.api, name, "correct horse")
            .await
            .unwrap();
        ImClient::login(&self.api, name, "correct horse")
            .await
            .unwrap()
    }

    async fn call(
        &self,
        c: &ImClient,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}/api/v1{path}", self.api))
            .bearer_auth(&c.token);
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn device(&self, c: &ImClient, token: &str) {
        let body = json!({"platform": "webhook", "token": token, "device": "phone"});
        let (s, v) = self.call(c, reqwest::Method::POST, "/devices", body).await;
        assert_eq!(s, 201, "{v}");
    }
}

/// Notifications that arrive within `quiet` of each other (after the first,
/// waited for up to 10 s).
async fn drain(rx: &mut mpsc::UnboundedReceiver<Value>, quiet: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    if let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        got.push(v);
    }
    while let Ok(Some(v)) = tokio::time::timeout(quiet, rx.recv()).await {
        got.push(v);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_burst_is_one_notification_and_online_users_get_none() {
    let (hook, mut rx) = receiver(false).await;
    let life = start(&hook).await;
    let alice = life.user("alice").await;
    let bob = life.user("bob").await;
    let carol = life.user("carol").await;
    life.device(&bob, "bob-token").await;
    life.device(&carol, "carol-token").await;
    // Bad registrations are refused with a clear code.
    let (s, v) = life
        .call(
            &bob,
            reqwest::Method::POST,
            "/devices",
            json!({"platform": "pager", "token": "x"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = life
        .call(
            &bob,
            reqwest::Method::POST,
            "/devices",
            json!({"platform": "fcm", "token": "", "device": "d"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );
    let (s, list) = life
        .call(&bob, reqwest::Method::GET, "/devices", Value::Null)
        .await;
    assert_eq!(
        (s, list["devices"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{list}"
    );
    assert_eq!(list["devices"][0]["token_tail"], "-token");

    // Carol is online (a WebSocket session), Bob is not.
    let mut carol_ws = carol.connect().await.unwrap();
    let mut alice_ws = alice.connect().await.unwrap();
    for i in 1..=20 {
        alice_ws
            .send(Target::User(bob.user_id), format!("to bob {i}"))
            .await
            .unwrap();
        alice_ws
            .send(Target::User(carol.user_id), format!("to carol {i}"))
            .await
            .unwrap();
    }
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(5), carol_ws.next_message())
            .await
            .expect("carol gets her messages")
            .unwrap();
    }
    let got = drain(&mut rx, Duration::from_millis(1_500)).await;
    assert_eq!(got.len(), 1, "one notification for the burst: {got:?}");
    let n = &got[0]["notification"];
    assert_eq!(
        got[0]["token"], "bob-token",
        "only bob (offline) is notified"
    );
    assert_eq!(n["messages"], 20, "{n}");
    assert_eq!(n["title"], "alice");
    assert_eq!(n["preview"], "to bob 20", "the latest message");
    assert_eq!(n["badge"], 20, "bob's unread total");

    // Previews hidden: the text is not in the notification.
    let (s, _) = life
        .call(
            &bob,
            reqwest::Method::PUT,
            "/notifications/settings",
            json!({"preview": false}),
        )
        .await;
    assert_eq!(s, 204);
    alice_ws
        .send(Target::User(bob.user_id), "secret plans".into())
        .await
        .unwrap();
    let got = drain(&mut rx, Duration::from_millis(1_000)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0]["notification"]["preview"].is_null(), "{}", got[0]);
    assert!(!got[0].to_string().contains("secret plans"));

    // A session in the background gets no pushes: its user is notified;
    // back in the foreground it gets them again (and syncs what it missed).
    let _ = life
        .call(
            &bob,
            reqwest::Method::PUT,
            "/notifications/settings",
            json!({"preview": true}),
        )
        .await;
    let mut bob_ws = bob.connect().await.unwrap();
    alice_ws
        .send(Target::User(bob.user_id), "bob is online".into())
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), bob_ws.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.body, json!("bob is online"));
    assert!(
        tokio::time::timeout(Duration::from_millis(1_000), rx.recv())
            .await
            .is_err(),
        "an online user is not notified"
    );
    bob_ws
        .set_app_state(im_core::protocol::AppState::Background)
        .await
        .unwrap();
    // The frame has no reply: a presence lookup through the API shows when
    // the server has unbound the session.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, p) = life
            .call(
                &alice,
                reqwest::Method::GET,
                &format!("/users/{}/presence", bob.user_id),
                Value::Null,
            )
            .await;
        if p["online"] == false || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    alice_ws
        .send(Target::User(bob.user_id), "while in background".into())
        .await
        .unwrap();
    let got = drain(&mut rx, Duration::from_millis(1_000)).await;
    assert_eq!(
        got.len(),
        1,
        "a background session's user is notified: {got:?}"
    );
    assert_eq!(got[0]["notification"]["preview"], "while in background");
    bob_ws
        .set_app_state(im_core::protocol::AppState::Foreground)
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), bob_ws.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.body,
        json!("while in background"),
        "synced on return to the foreground"
    );
    bob_ws.close().await;

    // A removed device is not notified any more.
    let (s, _) = life
        .call(&bob, reqwest::Method::DELETE, "/devices/phone", Value::Null)
        .await;
    assert_eq!(s, 204);
    let (s, _) = life
        .call(&bob, reqwest::Method::DELETE, "/devices/phone", Value::Null)
        .await;
    assert_eq!(s, 404);
    alice_ws
        .send(Target::User(bob.user_id), "nobody hears".into())
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(1_200), rx.recv())
            .await
            .is_err(),
        "no device, no notification"
    );
    life.qs.stop().await;
}

/// p99 send→deliver of `n` messages to an online user while an offline
/// user with a device is sent as many (keeping the notifier busy).
async fn online_p99(hang: bool, n: usize) -> (Duration, Arc<Life>) {
    let (hook, _rx) = receiver(hang).await;
    let life = Arc::new(start(&hook).await);
    let alice = life.user("alice").await;
    let bob = life.user("bob").await;
    let carol = life.user("carol").await;
    life.device(&bob, "bob-token").await;
    let mut carol_ws = carol.connect().await.unwrap();
    let mut alice_ws = alice.connect().await.unwrap();
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        alice_ws
            .send(Target::User(bob.user_id), format!("b{i}"))
            .await
            .unwrap();
        let sent = Instant::now();
        alice_ws
            .send(Target::User(carol.user_id), format!("c{i}"))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), carol_ws.next_message())
            .await
            .expect("delivered while the notifier is busy")
            .unwrap();
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    (latencies[latencies.len() * 99 / 100], life)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_notifier_does_not_delay_online_delivery() {
    let (up, a) = online_p99(false, 300).await;
    let (down, b) = online_p99(true, 300).await;
    println!(
        "p99 send→deliver to an online user: notifier up {up:?}, notifier down (hanging) {down:?}"
    );
    assert!(
        down <= up * 3 + Duration::from_millis(30),
        "a hanging notifier slowed online delivery: p99 {down:?} against {up:?}"
    );
    for life in [a, b] {
        if let Ok(life) = Arc::try_unwrap(life) {
            life.qs.stop().await;
        }
    }
}
