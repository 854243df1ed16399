//! The webhook send hook against a real HTTP endpoint: signed calls, a
//! rejecting and rewriting before-hook, after-hook retries on a 500, and the
//! fail-open / fail-closed policies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use im_core::id::UserId;
use im_core::logic::{LogicApi, Sender};
use im_core::model::{MessageKind, Target, User};
use im_core::node::{Backends, Node, NodeConfig};
use im_core::protocol::SendRequest;
use im_core::ErrorCode;
use im_transport::webhook::{verify_signature, FailurePolicy, WebhookConfig, WebhookHook};
use parking_lot::Mutex;
use serde_json::{json, Value};

const SECRET: &[u8] = b"webhook secret";

#[derive(Default)]
struct Endpoint {
    /// (event, body, signature valid, status answered)
    calls: Mutex<Vec<(String, Value, bool, u16)>>,
    after_failures_left: Mutex<u32>,
}

async fn serve(endpoint: Arc<Endpoint>) -> String {
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let endpoint = endpoint.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let valid =
                    verify_signature(SECRET, &h("x-im-timestamp"), &body, &h("x-im-signature"));
                let v: Value = serde_json::from_slice(&body).unwrap();
                let event = h("x-im-event");
                let (status, answer) = match event.as_str() {
                    "before_send" => {
                        let verdicts: Vec<Value> = v["sends"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|s| match s["body"].as_str() {
                                Some(t) if t.contains("spam") => {
                                    json!({"action": "reject", "reason": "no spam please"})
                                }
                                Some(t) if t.contains("darn") => {
                                    json!({"action": "rewrite", "body": t.replace("darn", "d**n")})
                                }
                                _ => json!({"action": "allow"}),
                            })
                            .collect();
                        (200, json!({ "verdicts": verdicts }))
                    }
                    _ => {
                        let mut left = endpoint.after_failures_left.lock();
                        if *left > 0 {
                            *left -= 1;
                            (500, json!({}))
                        } else {
                            (200, json!({}))
                        }
                    }
                };
                endpoint.calls.lock().push((event, v, valid, status));
                (StatusCode::from_u16(status).unwrap(), axum::Json(answer))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

async fn node_with(hook: WebhookHook) -> (Node, UserId, UserId) {
    let mut backends = Backends::memory(b"webhook test secret webhook test secret");
    backends.logic.hooks.push(Arc::new(hook));
    let node = Node::start(backends, NodeConfig::default()).await.unwrap();
    let mut ids = Vec::new();
    for name in ["alice", "bob"] {
        let id = UserId(node.logic.next_id());
        node.backends
            .logic
            .users
            .create(&User {
                id,
                username: name.into(),
                password_hash: "x".into(),
                created_at: 0,
                avatar_url: None,
                display_name: None,
            })
            .await
            .unwrap();
        ids.push(id);
    }
    (node, ids[0], ids[1])
}

fn text(cmid: &str, to: Target, body: &str) -> SendRequest {
    SendRequest {
        client_msg_id: cmid.into(),
        to,
        kind: MessageKind::Text,
        body: json!(body),
        deliver_at: None,
        mentions: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_rejects_rewrites_and_gets_signed_after_calls_with_retries() {
    let endpoint = Arc::new(Endpoint::default());
    *endpoint.after_failures_left.lock() = 1;
    let url = serve(endpoint.clone()).await;
    let mut config = WebhookConfig::new(url, SECRET.to_vec());
    config.retry_backoff = Duration::from_millis(50);
    let (node, a, b) = node_with(WebhookHook::new(config).unwrap()).await;
    let conv = im_core::id::ConversationId::direct(a, b).unwrap();

    let err = node
        .logic
        .send(Sender::http(a), text("s1", Target::User(b), "buy spam"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    assert!(err.to_string().contains("no spam"), "{err}");
    let ack = node
        .logic
        .send(Sender::http(a), text("s2", Target::User(b), "darn"))
        .await
        .unwrap();
    assert_eq!(ack.seq, 1, "the rejected send was not stored");

    // The after-call failed once with a 500, then was retried.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let afters = loop {
        let afters: Vec<_> = endpoint
            .calls
            .lock()
            .iter()
            .filter(|c| c.0 == "after_send")
            .cloned()
            .collect();
        if afters.iter().any(|c| c.3 == 200) {
            break afters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no successful after_send call"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(afters[0].3, 500);
    assert_eq!(afters.last().unwrap().3, 200);
    let messages = afters.last().unwrap().1["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["msg_id"], json!(ack.msg_id.to_string()));
    assert_eq!(messages[0]["body"], json!("d**n"), "the rewritten body");
    assert_eq!(messages[0]["seq"], json!(1));
    assert!(
        endpoint.calls.lock().iter().all(|c| c.2),
        "every call is signed"
    );

    // What is stored is the rewrite.
    tokio::time::timeout(Duration::from_secs(5), async {
        while node.backends.messages.last_seq(conv).await.unwrap() < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let stored = node.logic.sync(b, conv, 0, None).await.unwrap().messages;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body, json!("d**n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_fails_closed_or_open_as_configured() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let mut closed = WebhookConfig::new(url.clone(), SECRET.to_vec());
    closed.timeout = Duration::from_millis(300);
    let (node, a, b) = node_with(WebhookHook::new(closed.clone()).unwrap()).await;
    let err = node
        .logic
        .send(Sender::http(a), text("c1", Target::User(b), "hello"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable);
    node.shutdown().await;

    let mut open = closed;
    open.failure_policy = FailurePolicy::Open;
    let (node, a, b) = node_with(WebhookHook::new(open).unwrap()).await;
    let ack = node
        .logic
        .send(Sender::http(a), text("o1", Target::User(b), "hello"))
        .await
        .unwrap();
    assert_eq!(ack.seq, 1);
}
