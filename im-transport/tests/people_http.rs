//! v1.2 people routes over real HTTP and WebSocket (the quickstart stack
//! in-process on 127.0.0.1:0, memory backends): profiles and search,
//! contacts with `contact` frames, blocks, join cutoff, read cursors, edits
//! (HTTP and the `edit` frame) and mentions, with their error codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use im_core::node::Backends;
use reqwest::Method;
use serde_json::{json, Value};
use support::{recv_until, send as ws_send, Server, Via, Ws, PASSWORD, SECRET};

async fn start() -> Server {
    support::start(Backends::memory(SECRET)).await
}

/// `Server::call` with a token.
async fn call(
    s: &Server,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    s.call(method, path, Some(token), body).await
}

/// Registers (with a display name) and logs in; returns (user_id, token).
async fn user(s: &Server, name: &str, display: &str) -> (String, String) {
    let (st, _) = s
        .post(
            "/users",
            None,
            json!({"username": name, "password": PASSWORD, "display_name": display}),
        )
        .await;
    assert_eq!(st, 201);
    let (st, v) = s
        .post(
            "/sessions",
            None,
            json!({"username": name, "password": PASSWORD}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    (
        v["user_id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

async fn connect(s: &Server, token: &str) -> Ws {
    s.ws_open(Via::Header(token)).await
}

/// The next frame of `type` (others are skipped), within 5 s.
async fn frame_of(ws: &mut Ws, kind: &str) -> Value {
    recv_until(ws, Duration::from_secs(5), |v| v["type"] == kind).await
}

fn err(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_search_contacts_and_blocks_over_http() {
    let s = start().await;
    let (a, at) = user(&s, "alice", "Alice L.").await;
    let (b, bt) = user(&s, "bob", "Bob S.").await;
    // A bad display name at registration creates no account.
    let (st, _) = s
        .post(
            "/users",
            None,
            json!({"username": "carol", "password": PASSWORD, "display_name": " "}),
        )
        .await;
    assert_eq!(st, 400);
    let (st, v) = call(
        &s,
        Method::POST,
        "/users/lookup",
        &at,
        Some(json!({"usernames": ["carol"]})),
    )
    .await;
    assert_eq!((st, v["users"].as_array().unwrap().len()), (200, 0));

    let (st, me) = call(&s, Method::GET, "/users/me", &at, None).await;
    assert_eq!((st, me["display_name"].as_str()), (200, Some("Alice L.")));
    let (st, v) = call(&s, Method::GET, &format!("/users/{b}"), &at, None).await;
    assert_eq!(
        (st, v["username"].as_str(), v["display_name"].as_str()),
        (200, Some("bob"), Some("Bob S."))
    );
    assert_eq!(
        call(&s, Method::GET, "/users/12345", &at, None).await.0,
        404
    );
    assert_eq!(call(&s, Method::GET, "/users/nope", &at, None).await.0, 400);
    let (st, v) = call(
        &s,
        Method::PUT,
        "/users/me/profile",
        &at,
        Some(json!({"display_name": "Alice", "avatar_url": "https://x.test/a.png"})),
    )
    .await;
    assert_eq!(
        (st, v["avatar_url"].as_str()),
        (200, Some("https://x.test/a.png"))
    );
    let (st, v) = call(
        &s,
        Method::PUT,
        "/users/me/profile",
        &at,
        Some(json!({"avatar_url": "ftp://x"})),
    )
    .await;
    assert_eq!((st, err(&v)), (400, "invalid_argument"));

    let (st, v) = call(&s, Method::GET, "/users/search?prefix=bo", &at, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["users"][0]["user_id"].as_str(), Some(b.as_str()));
    assert!(v["next_cursor"].is_null());
    let (st, v) = call(&s, Method::GET, "/users/search?prefix=b", &at, None).await;
    assert_eq!((st, err(&v)), (400, "invalid_argument"));
    let (st, v) = call(
        &s,
        Method::GET,
        "/users/search?prefix=bo&cursor=100~bob",
        &at,
        None,
    )
    .await;
    assert_eq!(
        (st, err(&v)),
        (400, "invalid_argument"),
        "paging past the bound"
    );

    // Contacts: request, the frame on bob's socket, accept, list.
    let mut bws = connect(&s, &bt).await;
    let (st, v) = call(
        &s,
        Method::POST,
        "/contacts/requests",
        &at,
        Some(json!({"user_id": b, "message": "hi"})),
    )
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("pending")));
    let f = frame_of(&mut bws, "contact").await;
    assert_eq!(
        f,
        json!({"type": "contact", "event": "requested", "from": a, "to": b})
    );
    let (st, v) = call(
        &s,
        Method::GET,
        "/contacts/requests?direction=incoming",
        &bt,
        None,
    )
    .await;
    assert_eq!(
        (st, v["requests"][0]["user"]["display_name"].as_str()),
        (200, Some("Alice"))
    );
    assert_eq!(
        call(
            &s,
            Method::GET,
            "/contacts/requests?direction=sideways",
            &bt,
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            &s,
            Method::POST,
            &format!("/contacts/requests/{a}/accept"),
            &bt,
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            &s,
            Method::POST,
            &format!("/contacts/requests/{a}/accept"),
            &bt,
            None
        )
        .await
        .0,
        404
    );
    let (_, v) = call(&s, Method::GET, "/contacts", &at, None).await;
    assert_eq!(
        v["contacts"][0]["user"]["user_id"].as_str(),
        Some(b.as_str())
    );

    // Bob blocks alice: her 1:1 send and contact request are refused, the
    // contact is gone; after unblocking she can write again.
    assert_eq!(
        call(&s, Method::PUT, &format!("/blocks/{a}"), &bt, None)
            .await
            .0,
        204
    );
    let send = json!({"client_msg_id": "c-1", "to": {"user": b}, "body": "hi"});
    let (st, v) = call(&s, Method::POST, "/messages", &at, Some(send.clone())).await;
    assert_eq!((st, err(&v)), (403, "permission_denied"));
    assert_eq!(
        v["error"]["message"],
        "you cannot send messages to this user"
    );
    let (st, _) = call(
        &s,
        Method::POST,
        "/contacts/requests",
        &at,
        Some(json!({"user_id": b})),
    )
    .await;
    assert_eq!(st, 403);
    let (_, v) = call(&s, Method::GET, "/contacts", &at, None).await;
    assert_eq!(v["contacts"], json!([]));
    let (_, v) = call(&s, Method::GET, "/blocks", &bt, None).await;
    assert_eq!(v["users"][0]["user_id"].as_str(), Some(a.as_str()));
    assert_eq!(
        call(&s, Method::PUT, &format!("/blocks/{b}"), &bt, None)
            .await
            .0,
        400
    );
    assert_eq!(
        call(&s, Method::DELETE, &format!("/blocks/{a}"), &bt, None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&s, Method::POST, "/messages", &at, Some(send)).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_mentions_reads_and_the_join_cutoff_over_http_and_websocket() {
    let s = start().await;
    let (a, at) = user(&s, "alice", "Alice").await;
    let (b, bt) = user(&s, "bob", "Bob").await;
    let (c, ct) = user(&s, "carol", "Carol").await;
    let mut bws = connect(&s, &bt).await;

    // Edit over HTTP, seen live by bob and in history.
    let (_, ack) = call(
        &s,
        Method::POST,
        "/messages",
        &at,
        Some(json!({"client_msg_id": "e-1", "to": {"user": b}, "body": "helo"})),
    )
    .await;
    let id = ack["msg_id"].as_str().unwrap().to_owned();
    let conv = ack["conversation_id"].as_str().unwrap().to_owned();
    let (st, m) = call(
        &s,
        Method::PATCH,
        &format!("/messages/{id}"),
        &at,
        Some(json!({"body": "hello"})),
    )
    .await;
    assert_eq!((st, m["body"].as_str()), (200, Some("hello")), "{m}");
    assert!(m["edited_at"].is_i64());
    let f = frame_of(&mut bws, "edited").await;
    assert_eq!(
        (f["msg_id"].as_str(), f["body"].as_str(), f["by"].as_str()),
        (Some(id.as_str()), Some("hello"), Some(a.as_str()))
    );
    let (st, v) = call(
        &s,
        Method::PATCH,
        &format!("/messages/{id}"),
        &bt,
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!((st, err(&v)), (403, "permission_denied"));
    let (st, v) = call(
        &s,
        Method::PATCH,
        &format!("/messages/{id}"),
        &at,
        Some(json!({"body": {"x": 1}})),
    )
    .await;
    assert_eq!((st, err(&v)), (400, "invalid_argument"));
    // Edit over WebSocket.
    let mut aws = connect(&s, &at).await;
    ws_send(
        &mut aws,
        json!({"type": "edit", "msg_id": id, "body": "hello!"}),
    )
    .await;
    let f = frame_of(&mut bws, "edited").await;
    assert_eq!(f["body"], "hello!");

    // Peer read cursor in the list, and the reads route.
    let seq = ack["seq"].as_u64().unwrap();
    assert_eq!(
        call(
            &s,
            Method::POST,
            &format!("/conversations/{conv}/read"),
            &bt,
            Some(json!({"seq": seq}))
        )
        .await
        .0,
        204
    );
    let row = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (_, v) = call(&s, Method::GET, "/conversations", &at, None).await;
            if v["conversations"][0]["peer_read_seq"] == json!(seq) {
                return v["conversations"][0].clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("listed with the peer's cursor");
    assert_eq!(row["mentioned"], false);
    let (st, v) = call(
        &s,
        Method::GET,
        &format!("/conversations/{conv}/reads"),
        &at,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["reads"].as_array().unwrap().len(), 2);

    // Join cutoff: carol, added after two messages, sees neither.
    let (_, g) = call(
        &s,
        Method::POST,
        "/groups",
        &at,
        Some(json!({"name": "team"})),
    )
    .await;
    let gid = g["group_id"].as_str().unwrap().to_owned();
    for i in 0..2 {
        call(
            &s,
            Method::POST,
            "/messages",
            &at,
            Some(
                json!({"client_msg_id": format!("g-{i}"), "to": {"group": gid}, "body": "before"}),
            ),
        )
        .await;
    }
    assert_eq!(
        call(
            &s,
            Method::POST,
            &format!("/groups/{gid}/members"),
            &at,
            Some(json!({"user_id": c}))
        )
        .await
        .0,
        204
    );
    let (st, v) = call(&s, Method::POST, "/messages", &at, Some(json!({"client_msg_id": "g-m", "to": {"group": gid}, "body": "@carol hi", "mentions": [c]})))
        .await;
    assert_eq!(st, 200, "{v}");
    let last = v["seq"].as_u64().unwrap();
    let history = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (_, h) = call(
                &s,
                Method::GET,
                &format!("/conversations/g:{gid}/messages?after_seq=0"),
                &ct,
                None,
            )
            .await;
            if h["messages"]
                .as_array()
                .unwrap()
                .last()
                .and_then(|m| m["seq"].as_u64())
                == Some(last)
            {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("carol's history reaches the new message");
    let bodies: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert!(
        !bodies.contains(&"before"),
        "nothing from before the join: {bodies:?}"
    );
    assert!(bodies.contains(&"@carol hi"));
    let (_, members) = call(
        &s,
        Method::GET,
        &format!("/groups/{gid}/members"),
        &at,
        None,
    )
    .await;
    assert!(members["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["user_id"] == c && m["joined_seq"].as_u64().unwrap() > 0));
    let (_, list) = call(&s, Method::GET, "/conversations", &ct, None).await;
    let row = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["conversation_id"] == format!("g:{gid}"))
        .unwrap()
        .clone();
    assert_eq!(row["mentioned"], true);
    // A plain member cannot show the history; the owner can.
    let (st, v) = call(
        &s,
        Method::PUT,
        &format!("/groups/{gid}/history"),
        &ct,
        Some(json!({"visible": true})),
    )
    .await;
    assert_eq!((st, err(&v)), (403, "permission_denied"));
    assert_eq!(
        call(
            &s,
            Method::PUT,
            &format!("/groups/{gid}/history"),
            &at,
            Some(json!({"visible": true}))
        )
        .await
        .0,
        204
    );
    let (_, info) = call(&s, Method::GET, &format!("/groups/{gid}"), &ct, None).await;
    assert_eq!(info["history_visible"], true);
    // `all` from a plain member: refused; mentions in 1:1: refused.
    let (st, _) = call(
        &s,
        Method::POST,
        "/messages",
        &ct,
        Some(
            json!({"client_msg_id": "m-all", "to": {"group": gid}, "body": "x", "mentions": "all"}),
        ),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(
        &s,
        Method::POST,
        "/messages",
        &ct,
        Some(json!({"client_msg_id": "m-1", "to": {"user": a}, "body": "x", "mentions": [a]})),
    )
    .await;
    assert_eq!(st, 400);
}
