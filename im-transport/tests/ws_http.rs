//! The quickstart stack in-process on 127.0.0.1:0 (HTTP API, /ws, memory
//! backends), driven by real clients: reqwest and tokio-tungstenite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use im_core::node::{Backends, Node, NodeConfig};
use im_transport::http::routes::SameHostLocator;
use im_transport::http::{ApiConfig, ApiState};
use im_transport::server::{app, serve, AppParts};
use im_transport::ws::{WsConfig, WsState};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Server {
    base: String,
    ws: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _node: Node,
}

async fn start() -> Server {
    let node = Node::start(
        Backends::memory(b"0123456789abcdef0123456789abcdef"),
        NodeConfig::default(),
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let config = ApiConfig::default();
    let router = app(AppParts {
        api: Some((
            ApiState::new(
                node.logic.clone(),
                Arc::new(SameHostLocator::default()),
                &config,
            ),
            config,
        )),
        ws: Some(WsState {
            connect: node.connect.clone(),
            config: Arc::new(WsConfig::default()),
            shutdown: shutdown.clone(),
            front_door: None,
        }),
        ready: Vec::new(),
        metrics: Some(im_transport::http::install_metrics()),
        web_page: true,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router, shutdown.clone()));
    Server {
        base: format!("http://{addr}/api/v1"),
        ws: format!("ws://{addr}/ws"),
        http: reqwest::Client::new(),
        shutdown,
        _node: node,
    }
}

impl Server {
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Registers and logs in; returns (user_id, token).
    async fn user(&self, name: &str) -> (String, String) {
        let (s, v) = self
            .post(
                "/users",
                None,
                json!({"username": name, "password": "password123"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = self
            .post(
                "/sessions",
                None,
                json!({"username": name, "password": "password123"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        (
            v["user_id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    async fn connect(&self, token: &str) -> Ws {
        let mut req = self.ws.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        ws
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON text frame.
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("open")
            .unwrap();
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The next frame that is not a `system` message (group changes are
/// announced by system messages, which may reach a socket opened right after
/// the change).
async fn recv_non_system(ws: &mut Ws) -> Value {
    loop {
        let f = recv(ws).await;
        if !(f["type"] == "message" && f["kind"] == "system") {
            return f;
        }
    }
}

async fn quiet(ws: &mut Ws) {
    if let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(200), ws.next()).await
    {
        panic!("unexpected frame {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_over_websocket() {
    let srv = start().await;
    let (a, at) = srv.user("alice").await;
    let (b, bt) = srv.user("bob").await;
    let mut wa = srv.connect(&at).await;
    let mut wb = srv.connect(&bt).await;
    send(
        &mut wa,
        json!({"type":"send","client_msg_id":"m1","to":{"user": b},"body":"hello bob"}),
    )
    .await;
    let ack = recv(&mut wa).await;
    assert_eq!(ack["type"], "send_ack", "{ack}");
    assert_eq!(ack["client_msg_id"], "m1");
    assert_eq!(ack["seq"], 1);
    let msg = recv(&mut wb).await;
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["from"], a.as_str());
    assert_eq!(msg["body"], "hello bob");
    assert_eq!(msg["msg_id"], ack["msg_id"]);
    assert!(msg["msg_id"].is_string(), "ids are decimal strings");
    // And back.
    send(
        &mut wb,
        json!({"type":"send","client_msg_id":"r1","to":{"user": a},"body":"hi alice"}),
    )
    .await;
    assert_eq!(recv(&mut wb).await["seq"], 2);
    assert_eq!(recv(&mut wa).await["body"], "hi alice");
    quiet(&mut wa).await;
    srv.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_chat_and_refused_outsider() {
    let srv = start().await;
    let (_o, ot) = srv.user("owner").await;
    let (m, mt) = srv.user("member").await;
    let (_x, xt) = srv.user("outsider").await;
    let (s, g) = srv
        .post("/groups", Some(&ot), json!({"name": "team"}))
        .await;
    assert_eq!(s, 201);
    let gid = g["group_id"].as_str().unwrap().to_owned();
    let (s, _) = srv
        .post(
            &format!("/groups/{gid}/members"),
            Some(&ot),
            json!({"user_id": m}),
        )
        .await;
    assert_eq!(s, 204);
    let (s, v) = srv
        .post(
            &format!("/groups/{gid}/members"),
            Some(&ot),
            json!({"user_id": m}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("already_exists"))
    );
    let (s, v) = srv
        .post(
            &format!("/groups/{gid}/members"),
            Some(&mt),
            json!({"user_id": m}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("permission_denied"))
    );
    let (s, v) = srv.get(&format!("/groups/{gid}/members"), Some(&mt)).await;
    assert_eq!(s, 200);
    assert_eq!(v["members"].as_array().unwrap().len(), 2);
    let mut wo = srv.connect(&ot).await;
    let mut wm = srv.connect(&mt).await;
    let mut wx = srv.connect(&xt).await;
    send(
        &mut wx,
        json!({"type":"send","client_msg_id":"x1","to":{"group": gid},"body":"let me in"}),
    )
    .await;
    let err = recv(&mut wx).await;
    assert_eq!(
        (
            err["type"].as_str(),
            err["code"].as_str(),
            err["client_msg_id"].as_str()
        ),
        (Some("error"), Some("permission_denied"), Some("x1"))
    );
    send(&mut wx, json!({"type":"ping"})).await;
    assert_eq!(
        recv(&mut wx).await["type"],
        "pong",
        "the connection stays usable"
    );
    send(
        &mut wo,
        json!({"type":"send","client_msg_id":"g1","to":{"group": gid},"body":"hello team"}),
    )
    .await;
    assert_eq!(recv_non_system(&mut wo).await["type"], "send_ack");
    let got = recv_non_system(&mut wm).await;
    assert_eq!(
        (got["body"].as_str(), got["conversation_id"].as_str()),
        (Some("hello team"), Some(format!("g:{gid}").as_str()))
    );
    quiet(&mut wx).await;
    srv.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_send_reaches_websocket_and_offline_sync_and_retry() {
    let srv = start().await;
    let (a, at) = srv.user("alice").await;
    let (b, bt) = srv.user("bob").await;
    // Bob offline: five HTTP sends.
    let mut acks = Vec::new();
    for i in 1..=5 {
        let (s, v) = srv
            .post(
                "/messages",
                Some(&at),
                json!({"client_msg_id": format!("h{i}"), "to": {"user": b}, "body": format!("m{i}")}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        acks.push(v);
    }
    // The retry rule: same client_msg_id, different body: the original answer.
    let (s, again) = srv
        .post(
            "/messages",
            Some(&at),
            json!({"client_msg_id": "h5", "to": {"user": b}, "body": "changed"}),
        )
        .await;
    assert_eq!((s, &again), (200, &acks[4]));
    let conv = acks[0]["conversation_id"].as_str().unwrap().to_owned();
    // History over HTTP (persisted within a second).
    let mut hist = Value::Null;
    for _ in 0..50 {
        let (s, v) = srv
            .get(
                &format!("/conversations/{conv}/messages?after_seq=2&limit=2"),
                Some(&bt),
            )
            .await;
        assert_eq!(s, 200);
        if v["messages"].as_array().is_some_and(|m| m.len() == 2) {
            hist = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hist["messages"][0]["seq"], 3);
    assert_eq!(hist["has_more"], true);
    // Bob connects and syncs over WebSocket.
    let mut wb = srv.connect(&bt).await;
    send(
        &mut wb,
        json!({"type":"sync","conversation_id": conv, "after_seq": 0}),
    )
    .await;
    let r = recv(&mut wb).await;
    assert_eq!(r["type"], "sync_result");
    let seqs: Vec<u64> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3, 4, 5],
        "exactly five: the retry stored nothing"
    );
    // A live HTTP send now reaches Bob's socket, and Alice's socket too.
    let mut wa = srv.connect(&at).await;
    let (s, _) = srv
        .post(
            "/messages",
            Some(&at),
            json!({"client_msg_id": "h6", "to": {"user": b}, "body": "live"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(recv(&mut wb).await["body"], "live");
    let own = recv(&mut wa).await;
    assert_eq!(
        (own["body"].as_str(), own["from"].as_str()),
        (Some("live"), Some(a.as_str())),
        "an HTTP send reaches all of the sender's sessions"
    );
    srv.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_oversized_and_junk_frames() {
    let srv = start().await;
    let (_a, at) = srv.user("alice").await;
    // 401 before the upgrade.
    let mut req = srv.ws.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 401)
        }
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    match tokio_tungstenite::connect_async(srv.ws.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 401)
        }
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    // ?token= works too.
    let (mut wq, _) = tokio_tungstenite::connect_async(format!("{}?token={at}", srv.ws))
        .await
        .unwrap();
    send(&mut wq, json!({"type":"ping"})).await;
    assert_eq!(recv(&mut wq).await["type"], "pong");
    // Junk gets error frames; the socket stays.
    let mut w = srv.connect(&at).await;
    for junk in [
        "{",
        "[]",
        r#"{"type":"fly"}"#,
        r#"{"type":"send","client_msg_id":"j1","to":{"user":"01"},"body":"x"}"#,
    ] {
        w.send(Message::Text(junk.into())).await.unwrap();
        let e = recv(&mut w).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("invalid_argument")),
            "{junk}: {e}"
        );
    }
    w.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(recv(&mut w).await["code"], "invalid_argument");
    send(&mut w, json!({"type":"ping"})).await;
    assert_eq!(recv(&mut w).await["type"], "pong");
    // Oversized: 1009.
    w.send(Message::Text("x".repeat(70_000).into()))
        .await
        .unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(closed, 1009);
    // Others are unaffected.
    send(&mut wq, json!({"type":"ping"})).await;
    assert_eq!(recv(&mut wq).await["type"], "pong");
    srv.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_have_the_json_shape() {
    let srv = start().await;
    let (_a, at) = srv.user("alice").await;
    let (s, v) = srv.get("/nope", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let res = srv
        .http
        .delete(format!("{}/users", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 405);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_argument");
    let (s, v) = srv.get("/conversations/u:2:1/messages", Some(&at)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (s, _) = srv.get("/conversations/g:1/messages", None).await;
    assert_eq!(s, 401);
    let (s, v) = srv.get("/conversations/g:1/messages", Some(&at)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, v) = srv
        .post(
            "/users",
            None,
            json!({"username": "alice", "password": "password123"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("already_exists"))
    );
    let (s, v) = srv
        .post(
            "/sessions",
            None,
            json!({"username": "alice", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (s, _) = srv.post("/users", None, json!({"username": 5})).await;
    assert_eq!(s, 400);
    let (s, v) = srv
        .post(
            "/messages",
            Some(&at),
            json!({"client_msg_id": "big", "to": {"user": "1"}, "body": "x".repeat(17_000)}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("resource_exhausted"))
    );
    let (s, v) = srv.get("/connect", Some(&at)).await;
    assert_eq!(s, 200);
    assert_eq!(v["ws_url"].as_str(), Some(srv.ws.as_str()));
    let metrics = srv
        .http
        .get(srv.base.replace("/api/v1", "/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("im_build_info{version=") && text.contains("# TYPE"),
        "/metrics is Prometheus text: {text}"
    );
    srv.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_orders_dedups_and_survives_reconnects() {
    use im_client::ImClient;
    use im_core::model::Target;
    let srv = start().await;
    let api = srv.base.trim_end_matches("/api/v1").to_owned();
    ImClient::register(&api, "carol", "password123")
        .await
        .unwrap();
    ImClient::register(&api, "dave", "password123")
        .await
        .unwrap();
    let carol = ImClient::login(&api, "carol", "password123").await.unwrap();
    let dave = ImClient::login(&api, "dave", "password123").await.unwrap();
    let mut cc = carol.connect().await.unwrap();
    let mut dc = dave.connect().await.unwrap();
    for i in 1..=10 {
        let ack = cc
            .send(Target::User(dave.user_id), format!("m{i}"))
            .await
            .unwrap();
        assert_eq!(ack.seq, i);
    }
    // Every session is dropped by the server; both clients reconnect.
    srv._node.hub.close_all(1012, "restart");
    for i in 11..=20 {
        cc.send(Target::User(dave.user_id), format!("m{i}"))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let m = tokio::time::timeout(Duration::from_secs(10), dc.next_message())
            .await
            .expect("in time")
            .expect("open");
        got.push(m.seq);
    }
    assert_eq!(
        got,
        (1..=20).collect::<Vec<_>>(),
        "in order, no gaps, no duplicates"
    );
    // Carol's own sends are in her timeline too.
    let mine = tokio::time::timeout(Duration::from_secs(5), cc.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((mine.seq, mine.from), (1, carol.user_id));
    srv.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_people_contacts_blocks_and_edits() {
    use im_client::{ClientError, ClientOptions, Event, ImClient};
    use im_core::model::{ContactEvent, Target};
    use im_core::ports::{Direction, RequestOutcome};
    let srv = start().await;
    let api = srv.base.trim_end_matches("/api/v1").to_owned();
    let opts = ClientOptions::default();
    ImClient::register_named(&opts, &api, "erin", "password123", "Erin Brockovich")
        .await
        .unwrap();
    ImClient::register(&api, "frank", "password123")
        .await
        .unwrap();
    let erin = ImClient::login(&api, "erin", "password123").await.unwrap();
    let frank = ImClient::login(&api, "frank", "password123").await.unwrap();
    assert_eq!(erin.me().await.unwrap().display_name, "Erin Brockovich");
    let p = frank.set_profile(Some("Frank Castle"), None).await.unwrap();
    assert_eq!(
        (p.username.as_str(), p.display_name.as_str()),
        ("frank", "Frank Castle")
    );
    assert_eq!(
        erin.profile(frank.user_id).await.unwrap().display_name,
        "Frank Castle"
    );
    let found = erin
        .lookup(&[erin.user_id], &["frank", "nobody"])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    let page = erin.search_users("fr", Some(5), None).await.unwrap();
    assert_eq!(
        page.items.iter().map(|p| p.user_id).collect::<Vec<_>>(),
        vec![frank.user_id]
    );

    let mut fc = frank.connect().await.unwrap();
    let mut ec = erin.connect().await.unwrap();
    // Contacts: a request, its event, the lists, acceptance.
    assert_eq!(
        erin.request_contact(frank.user_id, Some("hi"))
            .await
            .unwrap(),
        RequestOutcome::Pending
    );
    let ev = tokio::time::timeout(Duration::from_secs(5), fc.next_event())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, Event::Contact { event: ContactEvent::Requested, from, .. } if from == erin.user_id),
        "{ev:?}"
    );
    let incoming = frank
        .contact_requests(Direction::Incoming, None, None)
        .await
        .unwrap();
    assert_eq!(incoming.items[0].user.user_id, erin.user_id);
    assert_eq!(incoming.items[0].message.as_deref(), Some("hi"));
    frank.accept_contact(erin.user_id).await.unwrap();
    assert_eq!(
        erin.contacts(None, None).await.unwrap().items[0]
            .user
            .user_id,
        frank.user_id
    );

    // Edit over WebSocket and HTTP: both sides get `edited` events.
    let ack = ec
        .send(Target::User(frank.user_id), "helo".into())
        .await
        .unwrap();
    ec.edit(ack.msg_id, "hello".into()).await.unwrap();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), fc.next_event())
            .await
            .unwrap()
            .unwrap();
        if let Event::Edited {
            msg_id, body, by, ..
        } = ev
        {
            assert_eq!(
                (msg_id, body, by),
                (ack.msg_id, serde_json::json!("hello"), erin.user_id)
            );
            break;
        }
    }
    let m = erin.edit_message(ack.msg_id, "hello!").await.unwrap();
    assert_eq!(m.body, serde_json::json!("hello!"));
    assert!(m.edited_at.is_some());
    // Frank reads; Erin sees his cursor.
    let reads = erin.reads(ack.conversation_id).await.unwrap();
    assert_eq!(reads.len(), 2);

    // Blocks: Frank blocks Erin; her send is refused; unblock.
    frank.block(erin.user_id).await.unwrap();
    assert_eq!(
        frank.blocked(None, None).await.unwrap().items[0].user_id,
        erin.user_id
    );
    let refused = ec.send(Target::User(frank.user_id), "there?".into()).await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Server {
                code: im_core::ErrorCode::PermissionDenied,
                ..
            })
        ),
        "{refused:?}"
    );
    frank.unblock(erin.user_id).await.unwrap();
    assert!(frank.blocked(None, None).await.unwrap().items.is_empty());
    ec.send(Target::User(frank.user_id), "back".into())
        .await
        .unwrap();
    srv.shutdown.cancel();
}
