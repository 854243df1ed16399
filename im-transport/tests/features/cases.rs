// The tests of `features.rs` and `features_tls.rs` (included by both; each
// defines `TLS`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use im_core::logic::{DevicePolicy, LogicConfig};
use im_core::node::{Backends, Node, NodeConfig};
use im_transport::http::routes::SameHostLocator;
use im_transport::http::{ApiConfig, ApiState};
use im_transport::server::{app, serve, serve_tls, AppParts};
use im_transport::ws::{WsConfig, WsState};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;


/// The server's certificate files and the clients' trust, in TLS builds.
fn tls() -> Option<(
    Arc<im_transport::tls::ServerTls>,
    im_client::ClientOptions,
)> {
    if !TLS {
        return None;
    }
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "im-features-tls-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    let server =
        im_transport::tls::ServerTls::load(im_transport::tls::TlsFiles::new(&cert, &key)).unwrap();
    let trust = im_transport::tls::ClientTls::from_ca_file(&cert, None).unwrap();
    let options = im_client::ClientOptions::with_tls(&trust).unwrap();
    Some((Arc::new(server), options))
}

/// Opens a WebSocket (over TLS in TLS builds).
async fn ws_connect(
    srv: &Server,
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let connector = srv.tls.clone().map(tokio_tungstenite::Connector::Rustls);
    tokio_tungstenite::connect_async_tls_with_config(req, None, true, connector)
        .await
        .map(|(ws, _)| ws)
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(5);

struct Server {
    base: String,
    ws: String,
    http: reqwest::Client,
    /// How clients reach it (TLS in `features_tls`).
    options: im_client::ClientOptions,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    shutdown: CancellationToken,
    node: Node,
}

async fn start() -> Server {
    start_with(LogicConfig::default()).await
}

async fn start_with(logic: LogicConfig) -> Server {
    let node = Node::start(
        Backends::memory(SECRET),
        NodeConfig {
            logic,
            ..NodeConfig::default()
        },
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let config = ApiConfig::default();
    let router = app(AppParts {
        api: Some((
            ApiState::new(
                node.logic.clone(),
                Arc::new(SameHostLocator {
                    secure: TLS,
                    ..SameHostLocator::default()
                }),
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
        metrics: None,
        web_page: false,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (scheme, ws, options, tls) = match tls() {
        Some((server_tls, options)) => {
            tokio::spawn(serve_tls(listener, router, server_tls, shutdown.clone()));
            let tls = options.rustls_config();
            ("https", "wss", options, tls)
        }
        None => {
            tokio::spawn(serve(listener, router, shutdown.clone()));
            (
                "http",
                "ws",
                im_client::ClientOptions::default(),
                None,
            )
        }
    };
    Server {
        base: format!("{scheme}://{addr}/api/v1"),
        ws: format!("{ws}://{addr}/ws"),
        http: options.http_client().unwrap(),
        options,
        tls,
        shutdown,
        node,
    }
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        self.node.shutdown().await;
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        if status == 204 {
            assert!(text.is_empty(), "204 with a body: {text}");
        }
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::GET, path, Some(token), &[], None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(token), &[], Some(body))
            .await
    }

    async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(token), &[], Some(body))
            .await
    }

    async fn patch(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, Some(token), &[], Some(body))
            .await
    }

    async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, Some(token), &[], None)
            .await
    }

    async fn conversations(&self, token: &str, query: &[(&str, &str)]) -> (u16, Value) {
        self.call(Method::GET, "/conversations", Some(token), query, None)
            .await
    }

    /// Registers and logs in; returns (user_id, token).
    async fn user(&self, name: &str) -> (String, String) {
        let creds = json!({"username": name, "password": "password123"});
        let (s, v) = self
            .call(Method::POST, "/users", None, &[], Some(creds.clone()))
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = self
            .call(Method::POST, "/sessions", None, &[], Some(creds))
            .await;
        assert_eq!(s, 200, "{v}");
        (
            v["user_id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    /// An HTTP send that must succeed; returns the answer.
    async fn send(&self, token: &str, to: Value, cmid: &str, body: &str) -> Value {
        let (s, v) = self
            .post(
                "/messages",
                token,
                json!({"client_msg_id": cmid, "to": to, "body": body}),
            )
            .await;
        assert_eq!(s, 200, "send {cmid}: {v}");
        v
    }

    /// The whole history of a conversation as `reader` sees it.
    async fn history(&self, token: &str, conversation: &str) -> Vec<Value> {
        let (s, v) = self
            .call(
                Method::GET,
                &format!("/conversations/{conversation}/messages"),
                Some(token),
                &[("limit", "100")],
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["messages"].as_array().unwrap().clone()
    }

    /// Polls the history until `done` holds (it is persisted asynchronously).
    async fn history_until(
        &self,
        token: &str,
        conversation: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        eventually(what, || async {
            let h = self.history(token, conversation).await;
            done(&h).then_some(h)
        })
        .await
    }

    /// Opens a WebSocket and waits until the session is registered (its
    /// `ping` is answered only after that).
    async fn connect(&self, token: &str, device: Option<&str>) -> Ws {
        let url = match device {
            Some(d) => format!("{}?device={d}", self.ws),
            None => self.ws.clone(),
        };
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let mut ws = ws_connect(self, req).await.unwrap();
        send(&mut ws, json!({"type": "ping"})).await;
        recv_until(&mut ws, "pong", is_type("pong")).await;
        ws
    }
}

/// Polls `f` (every 20 ms, for at most 10 s) until it answers `Some`.
async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within 10 s"))
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON text frame (pings and pongs skipped).
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .unwrap();
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads frames until one satisfies `pred`; returns the frames read before
/// it, and it.
async fn recv_until(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> (Vec<Value>, Value) {
    let mut before = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let f = recv(ws).await;
            if pred(&f) {
                return f;
            }
            before.push(f);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within 5 s"));
    (before, found)
}

fn is_type(t: &'static str) -> impl Fn(&Value) -> bool {
    move |f| f["type"] == t
}

fn is_message_with_body(body: &'static str) -> impl Fn(&Value) -> bool {
    move |f| f["type"] == "message" && f["body"] == body
}

/// Reads until the server closes the socket; returns the frames before the
/// close and its code.
async fn closed(ws: &mut Ws) -> (Vec<Value>, u16) {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a close within 5 s")
        {
            Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(Some(f)))) => return (frames, u16::from(f.code)),
            Some(Ok(Message::Close(None))) => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn direct(a: &str, b: &str) -> String {
    let (x, y): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
    format!("u:{}:{}", x.min(y), x.max(y))
}

fn row<'a>(list: &'a Value, conversation: &str) -> &'a Value {
    list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["conversation_id"] == conversation)
        .unwrap_or_else(|| panic!("{conversation} not listed in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_list_unread_counts_and_read_cursors() {
    let srv = start().await;
    let (a, at) = srv.user("alice").await;
    let (b, bt) = srv.user("bob").await;
    let (c, ct) = srv.user("carol").await;
    let ab = direct(&a, &b);
    let ac = direct(&a, &c);

    // Nothing yet: an empty list, no cursor.
    let (s, v) = srv.conversations(&at, &[]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"conversations": [], "next_cursor": null}));

    // Alice sends one to Bob, Bob two to Alice; then Carol writes to Alice,
    // strictly later (a message in the same millisecond would tie on time).
    srv.send(&at, json!({"user": b}), "a1", "hi bob").await;
    srv.send(&bt, json!({"user": a}), "b1", "hi alice").await;
    let b2 = srv.send(&bt, json!({"user": a}), "b2", "you there?").await;
    let mut from_carol = 0;
    loop {
        from_carol += 1;
        let ack = srv
            .send(&ct, json!({"user": a}), &format!("c{from_carol}"), "hey")
            .await;
        if ack["ts"].as_i64() > b2["ts"].as_i64() {
            break;
        }
        assert!(from_carol < 100, "the clock does not move");
    }
    let list = eventually("both conversations listed", || async {
        let (s, v) = srv.conversations(&at, &[]).await;
        assert_eq!(s, 200, "{v}");
        let rows = v["conversations"].as_array().unwrap();
        let ab_done = rows
            .iter()
            .any(|r| r["conversation_id"] == ab && r["last_seq"] == 3);
        let ac_done = rows
            .iter()
            .any(|r| r["conversation_id"] == ac && r["last_seq"] == from_carol);
        (ab_done && ac_done).then_some(v)
    })
    .await;
    // Newest last message first.
    let order: Vec<&str> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [ac.as_str(), ab.as_str()]);
    assert_eq!(list["next_cursor"], Value::Null);
    // Unread counts messages from others only.
    let r = row(&list, &ab);
    assert_eq!(
        (
            r["last_seq"].as_u64(),
            r["read_seq"].as_u64(),
            r["unread"].as_u64()
        ),
        (Some(3), Some(0), Some(2))
    );
    assert_eq!(r["last_message"]["msg_id"], b2["msg_id"]);
    assert_eq!(r["last_message"]["body"], "you there?");
    assert_eq!(r["last_message"]["from"], b.as_str());
    assert_eq!(row(&list, &ac)["unread"], from_carol);
    let (_, bobs) = srv.conversations(&bt, &[]).await;
    assert_eq!(row(&bobs, &ab)["unread"], 1, "bob's own two do not count");

    // Paging with the cursor.
    let (s, p1) = srv.conversations(&at, &[("limit", "1")]).await;
    assert_eq!(s, 200);
    assert_eq!(p1["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(p1["conversations"][0]["conversation_id"], ac.as_str());
    let cursor = p1["next_cursor"].as_str().expect("a cursor").to_owned();
    let (s, p2) = srv
        .conversations(&at, &[("limit", "1"), ("cursor", &cursor)])
        .await;
    assert_eq!(s, 200, "{p2}");
    assert_eq!(p2["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(p2["conversations"][0]["conversation_id"], ab.as_str());
    assert_eq!(p2["next_cursor"], Value::Null);
    // An empty value counts as absent; malformed ones are 400.
    let (s, _) = srv
        .conversations(&at, &[("limit", ""), ("cursor", "")])
        .await;
    assert_eq!(s, 200);
    for q in [[("limit", "x")], [("limit", "-1")], [("cursor", "junk")]] {
        let (s, v) = srv.conversations(&at, &q).await;
        assert_eq!((s, code(&v)), (400, "invalid_argument"), "{q:?}");
    }
    let (s, v) = srv
        .call(Method::GET, "/conversations", None, &[], None)
        .await;
    assert_eq!((s, code(&v)), (401, "unauthenticated"));

    // Reading: Bob's socket gets the read event, and so does Alice's.
    let mut wb = srv.connect(&bt, None).await;
    let mut wa = srv.connect(&at, None).await;
    let (s, v) = srv
        .post(&format!("/conversations/{ab}/read"), &at, json!({"seq": 3}))
        .await;
    assert_eq!(s, 204, "{v}");
    let (_, read) = recv_until(&mut wb, "a read event", is_type("read")).await;
    assert_eq!(
        read,
        json!({"type": "read", "conversation_id": ab, "user_id": a, "seq": 3})
    );
    let (_, own) = recv_until(&mut wa, "a read event", is_type("read")).await;
    assert_eq!(own, read, "every participant's sessions get it");
    let (_, list) = srv.conversations(&at, &[]).await;
    let r = row(&list, &ab);
    assert_eq!(
        (r["read_seq"].as_u64(), r["unread"].as_u64()),
        (Some(3), Some(0))
    );

    // Past the last seq: 400. Not a participant: 403. Unknown group: 404.
    let (s, v) = srv
        .post(&format!("/conversations/{ab}/read"), &at, json!({"seq": 4}))
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_argument"));
    let (s, v) = srv
        .post(&format!("/conversations/{ab}/read"), &ct, json!({"seq": 1}))
        .await;
    assert_eq!((s, code(&v)), (403, "permission_denied"));
    let (s, v) = srv
        .post("/conversations/g:424242/read", &at, json!({"seq": 1}))
        .await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    // Malformed ids and bodies: 400.
    for (path, body) in [
        ("/conversations/u:2:1/read".to_owned(), json!({"seq": 1})),
        (format!("/conversations/u:0{a}:{b}/read"), json!({"seq": 1})),
        (format!("/conversations/{ab}/read"), json!({"seq": "3"})),
        (format!("/conversations/{ab}/read"), json!({"seq": -1})),
        (format!("/conversations/{ab}/read"), json!({})),
    ] {
        let (s, v) = srv.post(&path, &at, body.clone()).await;
        assert_eq!((s, code(&v)), (400, "invalid_argument"), "{path} {body}");
    }

    // A lower seq is a no-op without an event: the next thing Bob's socket
    // gets in this conversation is the marker message.
    let (s, _) = srv
        .post(&format!("/conversations/{ab}/read"), &at, json!({"seq": 1}))
        .await;
    assert_eq!(s, 204);
    srv.send(&at, json!({"user": b}), "a2", "marker 1").await;
    let (before, _) = recv_until(&mut wb, "the marker", is_message_with_body("marker 1")).await;
    assert!(before.iter().all(|f| f["type"] != "read"), "{before:?}");
    // Alice's own message does not move her cursor nor count as unread.
    let list = eventually("the marker listed", || async {
        let (_, v) = srv.conversations(&at, &[]).await;
        (row(&v, &ab)["last_seq"] == 4).then_some(v)
    })
    .await;
    let r = row(&list, &ab);
    assert_eq!(
        (r["read_seq"].as_u64(), r["unread"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(
        list["conversations"][0]["conversation_id"],
        ab.as_str(),
        "newest first"
    );

    // Over WebSocket: Bob reads; Alice's socket gets it, Bob's reading
    // session does not (it did it), and Bob's list shows it.
    send(
        &mut wb,
        json!({"type": "read", "conversation_id": ab, "seq": 4}),
    )
    .await;
    let (_, read) = recv_until(&mut wa, "bob's read event", is_type("read")).await;
    assert_eq!(
        read,
        json!({"type": "read", "conversation_id": ab, "user_id": b, "seq": 4})
    );
    send(
        &mut wb,
        json!({"type": "read", "conversation_id": ab, "seq": 9}),
    )
    .await;
    let (before, err) = recv_until(&mut wb, "an error", is_type("error")).await;
    assert_eq!(err["code"], "invalid_argument");
    assert!(before.iter().all(|f| f["type"] != "read"), "{before:?}");
    let (_, bobs) = srv.conversations(&bt, &[]).await;
    assert_eq!(
        (
            row(&bobs, &ab)["read_seq"].as_u64(),
            row(&bobs, &ab)["unread"].as_u64()
        ),
        (Some(4), Some(0))
    );

    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_over_http_and_websocket() {
    let srv = start().await;
    let (a, at) = srv.user("alice").await;
    let (b, bt) = srv.user("bob").await;
    let (_c, ct) = srv.user("carol").await;
    let ab = direct(&a, &b);
    let mut wb = srv.connect(&bt, None).await;
    let ack = srv.send(&at, json!({"user": b}), "r1", "oops").await;
    let msg_id = ack["msg_id"].as_str().unwrap().to_owned();
    srv.history_until(&bt, &ab, "the message persisted", |h| h.len() == 1)
        .await;

    // Refusals: malformed id, unknown message, someone else's message, an
    // outsider (who learns nothing: 404).
    for bad in ["01", "x", "-1", "18446744073709551616"] {
        let (s, v) = srv
            .post(&format!("/messages/{bad}/recall"), &at, json!({}))
            .await;
        assert_eq!((s, code(&v)), (400, "invalid_argument"), "{bad}");
    }
    let (s, v) = srv.post("/messages/1/recall", &at, json!({})).await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    let (s, v) = srv
        .post(&format!("/messages/{msg_id}/recall"), &bt, json!({}))
        .await;
    assert_eq!((s, code(&v)), (403, "permission_denied"));
    let (s, v) = srv
        .post(&format!("/messages/{msg_id}/recall"), &ct, json!({}))
        .await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    let (s, _) = srv
        .call(
            Method::POST,
            &format!("/messages/{msg_id}/recall"),
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(s, 401);

    // The sender recalls (no body needed): the peer gets `recalled`.
    let (s, v) = srv
        .call(
            Method::POST,
            &format!("/messages/{msg_id}/recall"),
            Some(&at),
            &[],
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (_, ev) = recv_until(&mut wb, "a recalled event", is_type("recalled")).await;
    assert_eq!(
        ev,
        json!({"type": "recalled", "conversation_id": ab, "msg_id": msg_id, "by": a})
    );
    // History keeps it, recalled and without a body.
    let h = srv
        .history_until(&bt, &ab, "the recall stored", |h| h[0]["recalled"] == true)
        .await;
    assert_eq!(h[0]["msg_id"], msg_id.as_str());
    assert!(h[0].get("body").is_none(), "{}", h[0]);

    // Again: 204 and no second event (the marker comes first).
    let (s, _) = srv
        .post(&format!("/messages/{msg_id}/recall"), &at, json!({}))
        .await;
    assert_eq!(s, 204);
    srv.send(&at, json!({"user": b}), "r2", "marker").await;
    let (before, _) = recv_until(&mut wb, "the marker", is_message_with_body("marker")).await;
    assert!(before.iter().all(|f| f["type"] != "recalled"), "{before:?}");

    // Over WebSocket, the sender recalls the marker.
    let marker = srv
        .history_until(&bt, &ab, "the marker persisted", |h| h.len() == 2)
        .await[1]["msg_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut wa = srv.connect(&at, None).await;
    send(&mut wa, json!({"type": "recall", "msg_id": marker})).await;
    let (_, ev) = recv_until(&mut wb, "a recalled event", is_type("recalled")).await;
    assert_eq!(ev["msg_id"], marker.as_str());
    send(&mut wb, json!({"type": "recall", "msg_id": "1"})).await;
    let (_, err) = recv_until(&mut wb, "an error", is_type("error")).await;
    assert_eq!(err["code"], "not_found");

    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_after_the_window_is_refused() {
    let srv = start_with(LogicConfig {
        recall_window: Duration::from_millis(1),
        ..LogicConfig::default()
    })
    .await;
    let (a, at) = srv.user("alice").await;
    let (b, bt) = srv.user("bob").await;
    let ack = srv.send(&at, json!({"user": b}), "w1", "too late").await;
    srv.history_until(&bt, &direct(&a, &b), "the message persisted", |h| {
        h.len() == 1
    })
    .await;
    // Make sure the server's clock is past the window: a later send is
    // stamped more than 1 ms after the first.
    let mut n = 0;
    loop {
        n += 1;
        let later = srv
            .send(&at, json!({"user": b}), &format!("w-later-{n}"), "tick")
            .await;
        if later["ts"].as_i64().unwrap() > ack["ts"].as_i64().unwrap() + 1 {
            break;
        }
        assert!(n < 100, "the clock does not move");
    }
    let (s, v) = srv
        .post(
            &format!("/messages/{}/recall", ack["msg_id"].as_str().unwrap()),
            &at,
            json!({}),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "permission_denied"), "{v}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_others_only_and_is_never_stored() {
    let srv = start().await;
    let (a, at) = srv.user("alice").await;
    let (b, bt) = srv.user("bob").await;
    let (_c, ct) = srv.user("carol").await;
    let ab = direct(&a, &b);
    let mut typist = srv.connect(&at, None).await;
    let mut other_tab = srv.connect(&at, None).await;
    let mut wb = srv.connect(&bt, None).await;

    send(&mut typist, json!({"type": "typing", "to": {"user": b}})).await;
    let (_, ev) = recv_until(&mut wb, "a typing event", is_type("typing")).await;
    assert_eq!(
        ev,
        json!({"type": "typing", "conversation_id": ab, "from": a})
    );
    // Alice's sessions get no typing: Bob's marker message reaches them first.
    srv.send(&bt, json!({"user": a}), "t1", "marker").await;
    for ws in [&mut typist, &mut other_tab] {
        let (before, _) = recv_until(ws, "the marker", is_message_with_body("marker")).await;
        assert!(before.iter().all(|f| f["type"] != "typing"), "{before:?}");
    }
    // Never in history.
    let h = srv
        .history_until(&at, &ab, "the marker persisted", |h| !h.is_empty())
        .await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["body"], "marker");

    // Refusals: to oneself, to a group one is not in.
    send(&mut typist, json!({"type": "typing", "to": {"user": a}})).await;
    let (_, err) = recv_until(&mut typist, "an error", is_type("error")).await;
    assert_eq!(err["code"], "invalid_argument");
    let (s, g) = srv.post("/groups", &ct, json!({"name": "carols"})).await;
    assert_eq!(s, 201);
    send(
        &mut typist,
        json!({"type": "typing", "to": {"group": g["group_id"]}}),
    )
    .await;
    let (_, err) = recv_until(&mut typist, "an error", is_type("error")).await;
    assert_eq!(err["code"], "permission_denied");

    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_over_http_and_subscriptions() {
    let srv = start().await;
    let (a, at) = srv.user("alice").await;
    let (b, bt) = srv.user("bob").await;

    // Never connected.
    let (s, v) = srv.get(&format!("/users/{b}/presence"), &at).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"user_id": b, "online": false, "last_seen": null}));
    // Refusals.
    let (s, v) = srv.get("/users/424242/presence", &at).await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    let (s, v) = srv.get(&format!("/users/0{b}/presence"), &at).await;
    assert_eq!((s, code(&v)), (400, "invalid_argument"));
    let (s, _) = srv
        .call(
            Method::GET,
            &format!("/users/{b}/presence"),
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(s, 401);

    // Alice subscribes over WebSocket.
    let mut wa = srv.connect(&at, None).await;
    send(
        &mut wa,
        json!({"type": "subscribe_presence", "user_ids": [b]}),
    )
    .await;
    let (_, r) = recv_until(&mut wa, "presence_result", is_type("presence_result")).await;
    assert_eq!(
        r,
        json!({"type": "presence_result", "presences": [{"user_id": b, "online": false, "last_seen": null}]})
    );
    send(
        &mut wa,
        json!({"type": "subscribe_presence", "user_ids": ["424242"]}),
    )
    .await;
    let (_, err) = recv_until(&mut wa, "an error", is_type("error")).await;
    assert_eq!(err["code"], "not_found");

    // Bob connects: online, and Alice hears of it.
    let mut wb = srv.connect(&bt, None).await;
    let (_, ev) = recv_until(&mut wa, "a presence event", is_type("presence")).await;
    assert_eq!((&ev["user_id"], &ev["online"]), (&json!(b), &json!(true)));
    let (s, v) = srv.get(&format!("/users/{b}/presence"), &at).await;
    assert_eq!(s, 200);
    assert_eq!(v["online"], true);
    assert!(v["last_seen"].is_i64(), "{v}");

    // Bob leaves: offline, last seen set; Alice hears of it.
    wb.close(None).await.unwrap();
    let (_, ev) = recv_until(&mut wa, "an offline event", |f| {
        f["type"] == "presence" && f["online"] == false
    })
    .await;
    assert_eq!(ev["user_id"], b.as_str());
    assert!(ev["last_seen"].is_i64(), "{ev}");
    let v = eventually("bob offline", || async {
        let (_, v) = srv.get(&format!("/users/{b}/presence"), &at).await;
        (v["online"] == false).then_some(v)
    })
    .await;
    assert!(v["last_seen"].as_i64().unwrap() > 0, "{v}");
    assert_eq!(v["user_id"], b.as_str());
    let (_, me) = srv.get(&format!("/users/{a}/presence"), &bt).await;
    assert_eq!(me["online"], true);

    srv.stop().await;
}

/// The `event` field of every system message of a history.
fn system_events(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .filter(|m| m["kind"] == "system")
        .map(|m| m["body"]["event"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_administration() {
    let srv = start().await;
    let (o, ot) = srv.user("owner").await;
    let (m, mt) = srv.user("mia").await;
    let (n, nt) = srv.user("noah").await;
    let (p, pt) = srv.user("pia").await;
    let (s, g) = srv.post("/groups", &ot, json!({"name": "team"})).await;
    assert_eq!(s, 201);
    let gid = g["group_id"].as_str().unwrap().to_owned();
    let conv = format!("g:{gid}");
    for u in [&m, &n] {
        let (s, v) = srv
            .post(
                &format!("/groups/{gid}/members"),
                &ot,
                json!({"user_id": u}),
            )
            .await;
        assert_eq!(s, 204, "{v}");
    }

    // Details: members only.
    let (s, v) = srv.get(&format!("/groups/{gid}"), &mt).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["group_id"], gid.as_str());
    assert_eq!(
        (v["name"].as_str(), v["owner"].as_str()),
        (Some("team"), Some(o.as_str()))
    );
    assert!(v["created_at"].is_i64());
    assert!(v.get("muted_until").is_none(), "{v}");
    let (s, v) = srv.get(&format!("/groups/{gid}"), &pt).await;
    assert_eq!((s, code(&v)), (403, "permission_denied"));
    let (s, v) = srv.get("/groups/424242", &ot).await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    for bad in ["0424", "x", "-1"] {
        let (s, v) = srv.get(&format!("/groups/{bad}"), &ot).await;
        assert_eq!((s, code(&v)), (400, "invalid_argument"), "{bad}");
        let (s, v) = srv
            .put(
                &format!("/groups/{bad}/members/{n}/role"),
                &ot,
                json!({"role": "admin"}),
            )
            .await;
        assert_eq!((s, code(&v)), (400, "invalid_argument"), "{bad}");
        let (s, v) = srv
            .put(
                &format!("/groups/{gid}/members/{bad}/mute"),
                &ot,
                json!({"muted": true}),
            )
            .await;
        assert_eq!((s, code(&v)), (400, "invalid_argument"), "{bad}");
    }

    // A plain member cannot rename, kick, mute, promote, transfer or dissolve.
    let denied = [
        srv.patch(&format!("/groups/{gid}"), &mt, json!({"name": "mine"}))
            .await,
        srv.delete(&format!("/groups/{gid}/members/{n}"), &mt).await,
        srv.put(&format!("/groups/{gid}/mute"), &mt, json!({"muted": true}))
            .await,
        srv.put(
            &format!("/groups/{gid}/members/{n}/mute"),
            &mt,
            json!({"muted": true}),
        )
        .await,
        srv.put(
            &format!("/groups/{gid}/members/{n}/role"),
            &mt,
            json!({"role": "admin"}),
        )
        .await,
        srv.put(
            &format!("/groups/{gid}/members/{m}/role"),
            &mt,
            json!({"role": "admin"}),
        )
        .await,
        srv.post(
            &format!("/groups/{gid}/transfer"),
            &mt,
            json!({"user_id": n}),
        )
        .await,
        srv.delete(&format!("/groups/{gid}"), &mt).await,
        srv.post(
            &format!("/groups/{gid}/members"),
            &mt,
            json!({"user_id": p}),
        )
        .await,
    ];
    for (i, (s, v)) in denied.iter().enumerate() {
        assert_eq!((*s, code(v)), (403, "permission_denied"), "#{i}: {v}");
    }
    // Bad role changes and bodies.
    for (body, why) in [
        (json!({"role": "owner"}), "owner only by transfer"),
        (json!({"role": "king"}), "unknown role"),
        (json!({}), "missing role"),
    ] {
        let (s, v) = srv
            .put(&format!("/groups/{gid}/members/{n}/role"), &ot, body)
            .await;
        assert_eq!((s, code(&v)), (400, "invalid_argument"), "{why}: {v}");
    }
    let (s, v) = srv
        .put(
            &format!("/groups/{gid}/members/{o}/role"),
            &ot,
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (400, "invalid_argument"),
        "the owner's role: {v}"
    );
    let (s, v) = srv
        .put(
            &format!("/groups/{gid}/members/{p}/role"),
            &ot,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!((s, code(&v)), (404, "not_found"), "not a member: {v}");
    let (s, v) = srv
        .put(
            &format!("/groups/{gid}/mute"),
            &ot,
            json!({"muted": true, "duration_ms": 0}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_argument"));
    let (s, v) = srv
        .patch(&format!("/groups/{gid}"), &ot, json!({"name": " "}))
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_argument"));

    // The owner renames and promotes Mia; the admin adds Pia.
    let (s, v) = srv
        .patch(&format!("/groups/{gid}"), &ot, json!({"name": "crew"}))
        .await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = srv
        .put(
            &format!("/groups/{gid}/members/{m}/role"),
            &ot,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = srv
        .post(
            &format!("/groups/{gid}/members"),
            &mt,
            json!({"user_id": p}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (_, v) = srv.get(&format!("/groups/{gid}/members"), &pt).await;
    let roles: HashMap<String, String> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["user_id"].as_str().unwrap().to_owned(),
                x["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(roles[&m], "admin");
    assert_eq!(roles[&p], "member");

    // Mute the group: a plain member's send is refused, an admin's is not.
    let (s, v) = srv
        .put(&format!("/groups/{gid}/mute"), &mt, json!({"muted": true}))
        .await;
    assert_eq!(s, 204, "{v}");
    let (_, v) = srv.get(&format!("/groups/{gid}"), &nt).await;
    assert_eq!(v["muted_until"], i64::MAX);
    let (s, v) = srv
        .post(
            "/messages",
            &nt,
            json!({"client_msg_id": "n1", "to": {"group": gid}, "body": "hello?"}),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "permission_denied"), "{v}");
    srv.send(&mt, json!({"group": gid}), "m1", "admins speak")
        .await;
    srv.send(&ot, json!({"group": gid}), "o1", "owners too")
        .await;
    let (s, _) = srv
        .put(&format!("/groups/{gid}/mute"), &ot, json!({"muted": false}))
        .await;
    assert_eq!(s, 204);
    let (_, v) = srv.get(&format!("/groups/{gid}"), &nt).await;
    assert!(v.get("muted_until").is_none(), "{v}");
    srv.send(&nt, json!({"group": gid}), "n2", "unmuted").await;

    // Mute one member for an hour: its sends are refused, it shows in the
    // member list; then unmute.
    let (s, v) = srv
        .put(
            &format!("/groups/{gid}/members/{n}/mute"),
            &mt,
            json!({"muted": true, "duration_ms": 3_600_000}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (_, v) = srv.get(&format!("/groups/{gid}/members"), &nt).await;
    let noah = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["user_id"] == n.as_str())
        .unwrap()
        .clone();
    let until = noah["muted_until"].as_i64().expect("muted_until");
    let (_, now) = srv.get(&format!("/groups/{gid}"), &nt).await;
    assert!(
        until > now["created_at"].as_i64().unwrap() + 3_000_000,
        "{noah}"
    );
    let (s, v) = srv
        .post(
            "/messages",
            &nt,
            json!({"client_msg_id": "n3", "to": {"group": gid}, "body": "muted?"}),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "permission_denied"), "{v}");
    // An admin cannot mute the owner or another admin.
    let (s, v) = srv
        .put(
            &format!("/groups/{gid}/members/{o}/mute"),
            &mt,
            json!({"muted": true}),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "permission_denied"));
    let (s, _) = srv
        .put(
            &format!("/groups/{gid}/members/{n}/mute"),
            &mt,
            json!({"muted": false}),
        )
        .await;
    assert_eq!(s, 204);
    srv.send(&nt, json!({"group": gid}), "n4", "free again")
        .await;

    // Transfer: Mia owns the group, the old owner becomes an admin.
    let (s, v) = srv
        .post(
            &format!("/groups/{gid}/transfer"),
            &ot,
            json!({"user_id": o}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_argument"), "to oneself");
    let (s, v) = srv
        .post(
            &format!("/groups/{gid}/transfer"),
            &ot,
            json!({"user_id": "424242"}),
        )
        .await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    let (s, v) = srv
        .post(
            &format!("/groups/{gid}/transfer"),
            &ot,
            json!({"user_id": m}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (_, v) = srv.get(&format!("/groups/{gid}"), &ot).await;
    assert_eq!(
        (v["owner"].as_str(), v["name"].as_str()),
        (Some(m.as_str()), Some("crew"))
    );
    let (s, v) = srv.delete(&format!("/groups/{gid}"), &ot).await;
    assert_eq!(
        (s, code(&v)),
        (403, "permission_denied"),
        "no longer the owner"
    );

    // Every change is a system message in the group's history, in order;
    // refused changes left none (read by the creator: a member added later
    // reads from its join on, v1.2).
    let expected = [
        "group_created",
        "member_added",
        "member_added",
        "group_renamed",
        "role_changed",
        "member_added",
        "group_muted",
        "group_unmuted",
        "member_muted",
        "member_unmuted",
        "owner_changed",
    ];
    let h = srv
        .history_until(&ot, &conv, "every system message", |h| {
            system_events(h).len() == expected.len()
        })
        .await;
    assert_eq!(system_events(&h), expected);
    let renamed = h
        .iter()
        .find(|x| x["body"]["event"] == "group_renamed")
        .unwrap();
    assert_eq!(renamed["from"], o.as_str());
    assert_eq!(renamed["body"]["actor"], o.as_str());
    assert_eq!(renamed["body"]["name"], "crew");
    let promoted = h
        .iter()
        .find(|x| x["body"]["event"] == "role_changed")
        .unwrap();
    assert_eq!(
        (
            promoted["body"]["user"].as_str(),
            promoted["body"]["role"].as_str()
        ),
        (Some(m.as_str()), Some("admin"))
    );
    let muted = h
        .iter()
        .find(|x| x["body"]["event"] == "group_muted")
        .unwrap();
    assert_eq!(
        (muted["body"]["actor"].as_str(), &muted["body"]["until"]),
        (Some(m.as_str()), &json!(i64::MAX))
    );
    let plain: Vec<&str> = h
        .iter()
        .filter(|x| x["kind"] == "text")
        .map(|x| x["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        plain,
        ["admins speak", "owners too", "unmuted", "free again"]
    );

    // Dissolve: members hear of it, then sends are 404.
    let mut wn = srv.connect(&nt, None).await;
    let (s, v) = srv.delete(&format!("/groups/{gid}"), &mt).await;
    assert_eq!(s, 204, "{v}");
    let (_, last) = recv_until(&mut wn, "group_dissolved", |f| {
        f["type"] == "message" && f["kind"] == "system" && f["body"]["event"] == "group_dissolved"
    })
    .await;
    assert_eq!(last["conversation_id"], conv.as_str());
    assert_eq!(last["body"]["actor"], m.as_str());
    let (s, v) = srv
        .post(
            "/messages",
            &nt,
            json!({"client_msg_id": "n5", "to": {"group": gid}, "body": "anyone?"}),
        )
        .await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    let (s, v) = srv.get(&format!("/groups/{gid}"), &mt).await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    let (s, v) = srv.delete(&format!("/groups/{gid}"), &mt).await;
    assert_eq!((s, code(&v)), (404, "not_found"));

    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_device_policy() {
    let srv = start_with(LogicConfig {
        device_policies: HashMap::from([("mobile".to_owned(), DevicePolicy::Single)]),
        ..LogicConfig::default()
    })
    .await;
    let (a, at) = srv.user("alice").await;
    let (_b, bt) = srv.user("bob").await;

    let mut web1 = srv.connect(&at, None).await;
    let mut web2 = srv.connect(&at, Some("web")).await;
    let mut phone1 = srv.connect(&at, Some("mobile")).await;
    // A second mobile session replaces the first.
    let mut phone2 = srv.connect(&at, Some("mobile")).await;
    let (frames, code) = closed(&mut phone1).await;
    assert_eq!(code, 4001);
    let kicked = frames.last().expect("a kicked frame before the close");
    assert_eq!(kicked["type"], "kicked", "{frames:?}");
    assert!(kicked["reason"].is_string());

    // Both web sessions and the new phone stay, and all get Bob's message.
    srv.send(&bt, json!({"user": a}), "b1", "to every device")
        .await;
    for ws in [&mut web1, &mut web2, &mut phone2] {
        recv_until(ws, "bob's message", is_message_with_body("to every device")).await;
    }

    // A bad device label is refused before the upgrade.
    for bad in ["bad%20label", "a.b", &"x".repeat(33)] {
        let mut req = format!("{}?device={bad}", srv.ws)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {at}").parse().unwrap());
        match ws_connect(&srv, req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status().as_u16(), 400, "{bad}")
            }
            other => panic!("expected 400 for {bad}, got {:?}", other.map(|_| ())),
        }
    }

    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_rust_client_stops_instead_of_kicking_back() {
    use im_core::model::Target;
    use im_client::{ClientError, ImClient};
    let srv = start_with(LogicConfig {
        device_policies: HashMap::from([("web".to_owned(), DevicePolicy::Single)]),
        ..LogicConfig::default()
    })
    .await;
    let (a, at) = srv.user("alice").await;
    let (b, bt) = srv.user("bob").await;
    let api = srv.base.trim_end_matches("/api/v1").to_owned();
    let alice = ImClient::login_with(&srv.options, &api, "alice", "password123")
        .await
        .unwrap();
    let mut conn = alice.connect().await.unwrap();
    // An acked send proves the client's session is registered.
    conn.send(Target::User(b.parse().unwrap()), "first".into())
        .await
        .unwrap();

    // Another `web` session of Alice replaces the client's.
    let mut web = srv.connect(&at, None).await;
    tokio::time::timeout(WAIT, async { while conn.next_message().await.is_some() {} })
        .await
        .expect("the client's connection ends");
    assert!(matches!(
        conn.send(Target::User(b.parse().unwrap()), "again".into())
            .await,
        Err(ClientError::Closed | ClientError::Kicked(_))
    ));
    // The new session was not kicked back: it gets Bob's message.
    srv.send(&bt, json!({"user": a}), "b1", "still here").await;
    let (before, _) = recv_until(
        &mut web,
        "bob's message",
        is_message_with_body("still here"),
    )
    .await;
    assert!(before.iter().all(|f| f["type"] != "kicked"), "{before:?}");
    srv.stop().await;
}

/// The frame of a message with `body` (a scheduled one, once delivered).
fn message_with_body(body: &str) -> impl Fn(&Value) -> bool + '_ {
    move |f| f["type"] == "message" && f["body"] == body
}

/// Reads until the message with `body` arrives; checks that it arrived, and
/// was stamped, within 1 s after `deliver_at` (the scheduler ticks every
/// 100 ms), with a seq.
async fn delivered(ws: &mut Ws, body: &str, deliver_at: i64) -> Value {
    let (_, m) = recv_until(ws, body, message_with_body(body)).await;
    let arrived = im_core::id::now_ms();
    assert!(
        arrived >= deliver_at,
        "{body} arrived {arrived} before {deliver_at}"
    );
    assert!(
        arrived <= deliver_at + 1000,
        "{body} arrived {} ms after deliver_at",
        arrived - deliver_at
    );
    let ts = m["ts"].as_i64().unwrap();
    assert!((deliver_at..=deliver_at + 1000).contains(&ts), "{m}");
    assert!(m["seq"].as_u64().unwrap() >= 1, "{m}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_delivery_over_http_and_websocket() {
    let srv = start().await;
    let (a, at) = srv.user("alice").await;
    let (b, bt) = srv.user("bob").await;
    let (_c, ct) = srv.user("carol").await;
    let ab = direct(&a, &b);
    let mut wa = srv.connect(&at, None).await;
    let mut wb = srv.connect(&bt, None).await;
    let mut wc = srv.connect(&ct, None).await;
    let now = im_core::id::now_ms;
    let scheduled = |cmid: &str, body: &str, when: i64| json!({"client_msg_id": cmid, "to": {"user": b}, "body": body, "deliver_at": when});

    // Refused: beyond the 30-day horizon, or not a time.
    let (s, v) = srv
        .post(
            "/messages",
            &at,
            scheduled("far", "too far", now() + 365 * 86_400_000),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_argument"), "{v}");
    let (s, v) = srv
        .post(
            "/messages",
            &at,
            json!({"client_msg_id": "nan", "to": {"user": b}, "body": "x", "deliver_at": "soon"}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_argument"), "{v}");
    // A time in the past sends now: the usual answer, without deliver_at.
    let (s, v) = srv
        .post("/messages", &at, scheduled("past", "past", now() - 1000))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["seq"], 1, "{v}");
    assert!(v.get("deliver_at").is_none(), "{v}");
    recv_until(
        &mut wb,
        "the past-dated message",
        is_message_with_body("past"),
    )
    .await;

    // Over HTTP: acked at once with seq 0 and deliver_at (ts = deliver_at).
    // The later one is sent first: the list is soonest first.
    let t2 = now() + 800;
    let (s, ack2) = srv
        .post("/messages", &at, scheduled("s2", "cancelled over http", t2))
        .await;
    assert_eq!(
        (s, &ack2["seq"], &ack2["deliver_at"]),
        (200, &json!(0), &json!(t2))
    );
    let s2 = ack2["msg_id"].as_str().unwrap().to_owned();
    let t1 = now() + 500;
    let (s, ack1) = srv
        .post("/messages", &at, scheduled("s1", "later over http", t1))
        .await;
    assert_eq!(s, 200, "{ack1}");
    let s1 = ack1["msg_id"].as_str().unwrap().to_owned();
    assert_eq!(
        ack1,
        json!({"msg_id": s1, "conversation_id": ab, "seq": 0, "ts": t1, "deliver_at": t1})
    );
    // A retry with the same client_msg_id gets the same answer.
    let (s, again) = srv
        .post("/messages", &at, scheduled("s1", "later over http", t1))
        .await;
    assert_eq!((s, &again), (200, &ack1));

    let (s, list) = srv.get("/messages/scheduled", &at).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(
        list["scheduled"],
        json!([
            {"msg_id": s1, "conversation_id": ab, "from": a, "to": {"user": b}, "kind": "text",
             "body": "later over http", "client_msg_id": "s1", "ts": t1, "deliver_at": t1},
            {"msg_id": s2, "conversation_id": ab, "from": a, "to": {"user": b}, "kind": "text",
             "body": "cancelled over http", "client_msg_id": "s2", "ts": t2, "deliver_at": t2},
        ])
    );
    let (s, list) = srv.get("/messages/scheduled", &bt).await;
    assert_eq!((s, &list), (200, &json!({"scheduled": []})));
    let (s, _) = srv
        .call(Method::GET, "/messages/scheduled", None, &[], None)
        .await;
    assert_eq!(s, 401);

    // Cancel: only the sender's own held send, once.
    let cancel = format!("/messages/{s2}/schedule");
    for token in [&bt, &ct] {
        let (s, v) = srv.delete(&cancel, token).await;
        assert_eq!((s, code(&v)), (404, "not_found"), "someone else's: {v}");
    }
    let (s, v) = srv.delete("/messages/x1/schedule", &at).await;
    assert_eq!((s, code(&v)), (400, "invalid_argument"), "{v}");
    let (s, v) = srv.delete("/messages/1/schedule", &at).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    let (s, v) = srv.delete(&cancel, &at).await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = srv.delete(&cancel, &at).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "cancelled twice: {v}");
    let (_, list) = srv.get("/messages/scheduled", &at).await;
    assert!(
        list["scheduled"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["msg_id"] != s2.as_str()),
        "{list}"
    );

    // Over WebSocket: the send_ack carries seq 0 and deliver_at; the
    // cancel_scheduled frame cancels (no reply, or an error).
    let tw2 = now() + 800;
    send(
        &mut wa,
        json!({"type": "send", "client_msg_id": "w2", "to": {"user": b},
               "body": "cancelled over ws", "deliver_at": tw2}),
    )
    .await;
    let (_, wack2) = recv_until(&mut wa, "the w2 ack", is_type("send_ack")).await;
    assert_eq!(
        (wack2["seq"].clone(), wack2["deliver_at"].clone()),
        (json!(0), json!(tw2))
    );
    let w2 = wack2["msg_id"].as_str().unwrap().to_owned();
    let tw1 = now() + 500;
    send(
        &mut wa,
        json!({"type": "send", "client_msg_id": "w1", "to": {"user": b},
               "body": "later over ws", "deliver_at": tw1}),
    )
    .await;
    let (_, wack1) = recv_until(&mut wa, "the w1 ack", is_type("send_ack")).await;
    let w1 = wack1["msg_id"].as_str().unwrap().to_owned();
    assert_eq!(
        wack1,
        json!({"type": "send_ack", "client_msg_id": "w1", "msg_id": w1,
               "conversation_id": ab, "seq": 0, "ts": tw1, "deliver_at": tw1})
    );
    send(&mut wc, json!({"type": "cancel_scheduled", "msg_id": w2})).await;
    let (_, err) = recv_until(&mut wc, "an error", is_type("error")).await;
    assert_eq!(err["code"], "not_found", "someone else's: {err}");
    send(&mut wa, json!({"type": "cancel_scheduled", "msg_id": w2})).await;
    eventually("w2 cancelled", || async {
        let (_, list) = srv.get("/messages/scheduled", &at).await;
        list["scheduled"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["msg_id"] != w2.as_str())
            .then_some(())
    })
    .await;
    send(&mut wa, json!({"type": "cancel_scheduled", "msg_id": w2})).await;
    let (_, err) = recv_until(&mut wa, "an error", is_type("error")).await;
    assert_eq!(err["code"], "not_found", "cancelled twice: {err}");

    // Delivered to the peer within 1 s after deliver_at, with their seqs,
    // and to every session of the sender.
    let m1 = delivered(&mut wb, "later over http", t1).await;
    assert_eq!(
        (m1["msg_id"].as_str(), m1["seq"].as_u64()),
        (Some(s1.as_str()), Some(2))
    );
    let mw = delivered(&mut wb, "later over ws", tw1).await;
    assert_eq!(
        (mw["msg_id"].as_str(), mw["seq"].as_u64()),
        (Some(w1.as_str()), Some(3))
    );
    recv_until(
        &mut wa,
        "w1 at its sender",
        message_with_body("later over ws"),
    )
    .await;
    let (s, v) = srv.delete(&format!("/messages/{s1}/schedule"), &at).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "delivered: {v}");

    // The cancelled ones never arrive: wait past their time (and a few
    // ticks), then a marker comes with nothing cancelled before it.
    let past = t2.max(tw2) + 400 - now();
    if past > 0 {
        tokio::time::sleep(Duration::from_millis(past as u64)).await;
    }
    srv.send(&at, json!({"user": b}), "mark", "marker").await;
    let (before, _) = recv_until(&mut wb, "the marker", is_message_with_body("marker")).await;
    assert!(before.iter().all(|f| f["type"] != "message"), "{before:?}");
    let h = srv
        .history_until(&bt, &ab, "the marker persisted", |h| {
            h.len() >= 4 && h.iter().any(|m| m["body"] == "marker")
        })
        .await;
    assert_eq!(
        h.iter()
            .map(|m| m["body"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["past", "later over http", "later over ws", "marker"]
    );
    let (_, list) = srv.get("/messages/scheduled", &at).await;
    assert_eq!(list, json!({"scheduled": []}));

    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_gets_its_scheduled_send_once_delivered() {
    use im_core::model::{MessageKind, Target};
    use im_core::protocol::SendRequest;
    use im_client::ImClient;
    let srv = start().await;
    let (b, _bt) = srv.user("bob").await;
    srv.user("alice").await;
    let api = srv.base.trim_end_matches("/api/v1").to_owned();
    let alice = ImClient::login_with(&srv.options, &api, "alice", "password123")
        .await
        .unwrap();
    let mut conn = alice.connect().await.unwrap();
    let deliver_at = im_core::id::now_ms() + 300;
    let ack = conn
        .send_request(SendRequest {
            client_msg_id: String::new(),
            to: Target::User(b.parse().unwrap()),
            kind: MessageKind::Text,
            body: json!("later"),
            deliver_at: Some(deliver_at),
            mentions: None,
        })
        .await
        .unwrap();
    assert_eq!((ack.seq, ack.deliver_at), (0, Some(deliver_at)));
    // Not at the ack (seq 0), but when delivered, with its seq.
    let m = tokio::time::timeout(WAIT, conn.next_message())
        .await
        .expect("the scheduled send in time")
        .expect("open");
    assert_eq!((m.msg_id, m.seq), (ack.msg_id, 1));
    assert!(m.ts >= deliver_at, "{m:?}");
    let ack = conn
        .send(Target::User(b.parse().unwrap()), "now".into())
        .await
        .unwrap();
    assert_eq!(ack.seq, 2);
    let m = tokio::time::timeout(WAIT, conn.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((m.seq, m.body), (2, json!("now")));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_speaks_tls_exactly_in_the_tls_build() {
    let srv = start().await;
    assert_eq!(srv.base.starts_with("https://"), TLS, "{}", srv.base);
    assert_eq!(srv.ws.starts_with("wss://"), TLS, "{}", srv.ws);
    // The other scheme is refused.
    let other = if TLS {
        srv.base.replacen("https://", "http://", 1)
    } else {
        srv.base.replacen("http://", "https://", 1)
    };
    let plain = reqwest::Client::new()
        .get(format!("{other}/openapi.json"))
        .send()
        .await;
    assert!(
        plain.map_or(true, |r| !r.status().is_success()),
        "the other scheme must not be served"
    );
    let (status, _) = srv.call(Method::GET, "/openapi.json", None, &[], None).await;
    assert_eq!(status, 200);
    srv.stop().await;
}
