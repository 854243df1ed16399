#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Reliability scenarios against a server running in this process: the
//! quickstart stack (`Node` over the memory backends, plus the axum app with
//! `/api/v1` and `/ws`) on its own Tokio runtime whose threads are named
//! `im-srv-<n>`, so a panic on a server thread is counted and fails the
//! scenario. Clients are real: reqwest, tokio-tungstenite and `ImClient`,
//! some through the fault-injecting [`Proxy`].
//!
//! Every scenario prints one `RELIABILITY …` line (see `report::Tally`) and
//! fails when an acked message was lost or persisted twice. Scenarios run one
//! at a time (a process-wide lock), so their timing figures do not disturb
//! each other. `RELIABILITY_LONG=1` runs #11 with 5,000 sockets instead of 300.
//!
//! `docs/reliability.md` lists the scenarios and their figures.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Once};
use std::time::{Duration, Instant};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, Stream, StreamExt};
use im_client::ImClient;
use im_core::auth::JwtAuthenticator;
use im_core::id::{ConversationId, UserId};
use im_core::logic::{GroupCommand, LogicApi};
use im_core::model::Message as ImMessage;
use im_core::node::{Backends, Node, NodeConfig};
use im_core::ports::{Authenticator, MessageStore};
use im_core::protocol::SendRequest;
use im_core::task::{PERSIST_GROUP, PUSH_GROUP};
use im_transport::http::routes::SameHostLocator;
use im_transport::http::{ApiConfig, ApiState};
use im_transport::server::{app, serve, AppParts};
use im_transport::ws::{WsConfig, WsState};
use reliability::proxy::{Framing, Proxy, Trigger};
use reliability::report::Tally;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"reliability-suite-secret-0123456789abcdef";
const PASSWORD: &str = "password123";
/// How long any single expected frame may take.
const WAIT: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type WsTx = SplitSink<Ws, Message>;
type WsRx = SplitStream<Ws>;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// One scenario at a time: timing figures stay meaningful on 2 shared cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Names of server threads that panicked.
static PANICS: StdMutex<Vec<String>> = StdMutex::new(Vec::new());
static HOOK: Once = Once::new();
static NEXT_SERVER: AtomicUsize = AtomicUsize::new(1);

fn install_panic_hook() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(name) = std::thread::current().name() {
                if name.starts_with("im-srv-") {
                    if let Ok(mut p) = PANICS.lock() {
                        p.push(name.to_owned());
                    }
                }
            }
            default(info);
        }));
    });
}

fn long_mode() -> bool {
    std::env::var("RELIABILITY_LONG").is_ok_and(|v| v == "1")
}

#[derive(Clone, Default)]
struct Opts {
    node: NodeConfig,
    ws: WsConfig,
    api: ApiConfig,
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
struct User {
    name: String,
    id: String,
    uid: UserId,
    token: String,
}

/// The in-process server on its own runtime.
struct Server {
    name: String,
    addr: SocketAddr,
    api: String,
    ws: String,
    http: reqwest::Client,
    node: Node,
    shutdown: CancellationToken,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

async fn start(opts: Opts) -> Server {
    install_panic_hook();
    let name = format!("im-srv-{}", NEXT_SERVER.fetch_add(1, Ordering::SeqCst));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(&name)
        .enable_all()
        .build()
        .unwrap();
    let (node, addr, shutdown) = rt
        .spawn(async move {
            let node = Node::start(Backends::memory(SECRET), opts.node)
                .await
                .unwrap();
            let shutdown = CancellationToken::new();
            let router = app(AppParts {
                api: Some((
                    ApiState::new(
                        node.logic.clone(),
                        Arc::new(SameHostLocator::default()),
                        &opts.api,
                    ),
                    opts.api,
                )),
                ws: Some(WsState {
                    connect: node.connect.clone(),
                    config: Arc::new(opts.ws),
                    shutdown: shutdown.clone(),
                    front_door: None,
                }),
                ready: Vec::new(),
                metrics: None,
                web_page: false,
            });
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(serve(listener, router, shutdown.clone()));
            (node, addr, shutdown)
        })
        .await
        .unwrap();
    Server {
        name,
        addr,
        api: format!("http://{addr}"),
        ws: format!("ws://{addr}/ws"),
        // No pooled keep-alive connections: #11 counts the server's sockets.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        node,
        shutdown,
        rt: Some(rt),
    }
}

impl Server {
    /// Panics seen on this server's threads.
    fn panics(&self) -> usize {
        PANICS
            .lock()
            .map(|p| p.iter().filter(|n| **n == self.name).count())
            .unwrap_or(usize::MAX)
    }

    fn store(&self) -> &Arc<dyn MessageStore> {
        &self.node.backends.messages
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/api/v1{path}", self.api))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}/api/v1{path}", self.api));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn user(&self, name: &str) -> User {
        let creds = json!({"username": name, "password": PASSWORD});
        let (s, v) = self.post("/users", None, creds.clone()).await;
        assert_eq!(s, 201, "register {name}: {v}");
        let (s, v) = self.post("/sessions", None, creds).await;
        assert_eq!(s, 200, "login {name}: {v}");
        let id = v["user_id"].as_str().unwrap().to_owned();
        User {
            name: name.to_owned(),
            uid: id.parse().unwrap(),
            id,
            token: v["token"].as_str().unwrap().to_owned(),
        }
    }

    async fn users(&self, names: &[&str]) -> Vec<User> {
        futures::future::join_all(names.iter().map(|n| self.user(n))).await
    }

    /// A WebSocket of `token`, straight to the server.
    async fn connect(&self, token: &str) -> Ws {
        ws_open(&self.ws, token, None).await.unwrap()
    }

    /// An HTTP send; `Some(ack)` on 200.
    async fn http_send(&self, token: &str, cmid: &str, to: Value, body: &str) -> (u16, Value) {
        self.post(
            "/messages",
            Some(token),
            json!({"client_msg_id": cmid, "to": to, "body": body}),
        )
        .await
    }

    /// Waits until the push and persist groups have nothing pending or
    /// unread: every acked message was pushed and written to the archive.
    async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let push = self.node.backends.queue.stats(PUSH_GROUP).await.unwrap();
            let persist = self.node.backends.queue.stats(PERSIST_GROUP).await.unwrap();
            if push.pending + push.lag + persist.pending + persist.lag == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "queue not drained after 30 s: push {push:?}, persist {persist:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every stored message of a conversation, by seq.
    async fn stored(&self, conv: ConversationId) -> Vec<ImMessage> {
        let mut out: Vec<ImMessage> = Vec::new();
        let mut after = 0;
        loop {
            let page = self.store().history(conv, after, 1000).await.unwrap();
            let Some(last) = page.last() else {
                return out;
            };
            after = last.seq;
            out.extend(page);
        }
    }
}

async fn ws_open(url: &str, token: &str, origin: Option<&str>) -> Result<Ws, WsError> {
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().expect("header value"));
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP status of a refused upgrade (`None` if it was not an HTTP refusal).
fn refused_status(r: &Result<Ws, WsError>) -> Option<u16> {
    match r {
        Err(WsError::Http(res)) => Some(res.status().as_u16()),
        _ => None,
    }
}

async fn send_json<S>(tx: &mut S, v: Value)
where
    S: futures::Sink<Message> + Unpin,
    S::Error: std::fmt::Debug,
{
    tx.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON text frame within `within`; `None` on timeout or close.
async fn next_json<S>(rx: &mut S, within: Duration) -> Option<Value>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(serde_json::from_str(&t).unwrap_or(Value::Null))
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Reads until a close frame: its code (1005 without one), or why none came.
async fn close_code<S>(rx: &mut S, within: Duration) -> Result<u16, String>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => return Ok(u16::from(f.code)),
            Ok(Some(Ok(Message::Close(None)))) => return Ok(1005),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(format!("error before a close frame: {e}")),
            Ok(None) => return Err("EOF without a close frame".into()),
            Err(_) => return Err(format!("no close frame within {within:?}")),
        }
    }
}

/// Sends `ping` and returns every frame that arrived before the `pong`. Pushes
/// the hub queued before the ping are written first (the session loop serves
/// its outbound queue before replies), so after `settle` this drains them.
async fn barrier(ws: &mut Ws) -> Vec<Value> {
    send_json(ws, json!({"type": "ping"})).await;
    let mut before = Vec::new();
    loop {
        let f = next_json(ws, WAIT).await.expect("a pong");
        if f["type"] == "pong" {
            return before;
        }
        before.push(f);
    }
}

fn s(v: &Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

/// Adds persisted rows to a tally, counting rows per logical message
/// (sender, client_msg_id): a retry stored under a new msg_id shows up as a
/// duplicate of the acked one.
fn record_persisted(t: &mut Tally, rows: &[ImMessage]) {
    let mut by_key: BTreeMap<(UserId, String), Vec<String>> = BTreeMap::new();
    for m in rows {
        by_key
            .entry((m.from, m.client_msg_id.clone()))
            .or_default()
            .push(m.msg_id.to_string());
    }
    for ids in by_key.values() {
        let key = ids
            .iter()
            .find(|id| t.acked.contains(*id))
            .unwrap_or(&ids[0])
            .clone();
        *t.persisted.entry(key).or_default() += ids.len() as u64;
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

/// Server-side TCP connections on `port` the server has not closed yet
/// (ESTABLISHED or CLOSE_WAIT with local port `port`, from /proc/net/tcp).
fn server_conns(port: u16) -> usize {
    let want = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| {
            let mut f = l.split_whitespace();
            let local = f.nth(1).unwrap_or("");
            let state = f.nth(1).unwrap_or("");
            local.ends_with(&want) && (state == "01" || state == "08")
        })
        .count()
}

/// Polls `cond` every 20 ms until it holds or `within` passes; returns the
/// time it took, or `None`.
async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    loop {
        if cond() {
            return Some(t.elapsed());
        }
        if t.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Expectations of a scenario that keeps going after a failed one, so the
/// report lists every hole at once.
#[derive(Default)]
struct Checks {
    passed: Vec<String>,
    failed: Vec<String>,
}

impl Checks {
    fn expect(&mut self, what: impl Into<String>, ok: bool, detail: impl std::fmt::Display) {
        let what = what.into();
        if ok {
            self.passed.push(what);
        } else {
            self.failed.push(format!("{what}: got {detail}"));
        }
    }

    fn print(&self) {
        for p in &self.passed {
            println!("  ok: {p}");
        }
        for f in &self.failed {
            println!("  FAILED: {f}");
        }
    }
}

// ---------------------------------------------------------------------------
// #1 identical bodies
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_identical_bodies() {
    let _serial = SERIAL.lock().await;
    let srv = start(Opts::default()).await;
    let u = srv.users(&["alice", "bob"]).await;
    let (a, b) = (&u[0], &u[1]);
    let mut wa = srv.connect(&a.token).await;
    let mut wb = srv.connect(&b.token).await;
    let mut tally = Tally::new(
        "#1 identical bodies",
        "\"ok\" sent 50 times, distinct client_msg_ids",
    );
    let t0 = Instant::now();
    for i in 0..50 {
        send_json(
            &mut wa,
            json!({"type":"send","client_msg_id": format!("ok-{i}"),"to":{"user": b.id},"body":"ok"}),
        )
        .await;
        tally.sent += 1;
    }
    let mut acks: HashMap<String, Value> = HashMap::new();
    while acks.len() < 50 {
        let f = next_json(&mut wa, WAIT)
            .await
            .expect("an answer for every send");
        assert_eq!(f["type"], "send_ack", "every send is accepted: {f}");
        acks.insert(s(&f["client_msg_id"]), f);
    }
    tally.acked = acks.values().map(|f| s(&f["msg_id"])).collect();
    let mut last = Duration::ZERO;
    while tally.delivered.len() < 50 {
        let f = next_json(&mut wb, WAIT).await.expect("50 messages for bob");
        if f["type"] == "message" {
            assert_eq!((f["body"].as_str(), &f["from"]), (Some("ok"), &json!(a.id)));
            *tally.delivered.entry(s(&f["msg_id"])).or_default() += 1;
            last = t0.elapsed();
        }
    }
    srv.settle().await;
    for f in barrier(&mut wb).await {
        if f["type"] == "message" {
            *tally.delivered.entry(s(&f["msg_id"])).or_default() += 1;
        }
    }
    let conv: ConversationId = s(&acks["ok-0"]["conversation_id"]).parse().unwrap();
    let rows = srv.stored(conv).await;
    record_persisted(&mut tally, &rows);
    tally.figure = format!("last of 50 delivered {} after the first send", ms(last));
    tally.check();
    assert_eq!(tally.acked.len(), 50, "50 distinct msg_ids");
    assert_eq!(rows.len(), 50, "50 rows stored");
    assert_eq!(
        rows.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<u64>>()
    );
    assert!(rows.iter().all(|m| m.body == json!("ok")));
    assert!(
        tally.delivered.values().all(|n| *n == 1),
        "each delivered once"
    );
    assert_eq!(srv.panics(), 0);
}

// ---------------------------------------------------------------------------
// #2 lost ack
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02_lost_ack_then_retry() {
    let _serial = SERIAL.lock().await;
    let srv = start(Opts::default()).await;
    let u = srv.users(&["alice", "bob"]).await;
    let (a, b) = (&u[0], &u[1]);
    let proxy = Proxy::start(srv.addr, Framing::WebSocket).await.unwrap();
    let mut alice = ImClient::login(&srv.api, &a.name, PASSWORD).await.unwrap();
    alice.ws_url = Some(format!("ws://{}/ws", proxy.addr()));
    let mut ca = alice.connect().await.unwrap();
    let mut wb = srv.connect(&b.token).await;
    let mut tally = Tally::new(
        "#2 lost ack",
        "proxy swallows the send_ack of send 5 and cuts; client retries",
    );
    proxy.lose_downstream(
        Trigger::containing(&["\"type\":\"send_ack\"", "\"client_msg_id\":\"lost-5\""]),
        true,
    );
    let mut acks = Vec::new();
    let mut retry_took = Duration::ZERO;
    for i in 0..10 {
        let t = Instant::now();
        // Built from JSON, like a client would: robust to new optional fields.
        let req: SendRequest = serde_json::from_value(json!({
            "client_msg_id": format!("lost-{i}"),
            "to": {"user": b.id},
            "body": format!("m{i}"),
        }))
        .unwrap();
        let ack = ca
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("send {i} must be acked (retried): {e}"));
        tally.sent += 1;
        if i == 5 {
            retry_took = t.elapsed();
        }
        acks.push(ack);
    }
    assert!(
        proxy.wait_losses(1, WAIT).await,
        "the ack of lost-5 was swallowed"
    );
    let swallowed: Value = serde_json::from_slice(&proxy.dropped()[0]).unwrap();
    assert_eq!(swallowed["client_msg_id"], "lost-5", "{swallowed}");
    let retried = &acks[5];
    assert_eq!(
        (
            retried.msg_id.to_string(),
            retried.seq,
            retried.ts,
            retried.conversation_id.to_string()
        ),
        (
            s(&swallowed["msg_id"]),
            swallowed["seq"].as_u64().unwrap(),
            swallowed["ts"].as_i64().unwrap(),
            s(&swallowed["conversation_id"])
        ),
        "the retry's ack is the original ack"
    );
    assert!(
        proxy.accepted() >= 2,
        "the client reconnected through the proxy"
    );
    tally.acked = acks.iter().map(|a| a.msg_id.to_string()).collect();
    srv.settle().await;
    let mut by_cmid: HashMap<String, u64> = HashMap::new();
    loop {
        let frames = barrier(&mut wb).await;
        for f in frames.iter().filter(|f| f["type"] == "message") {
            *tally.delivered.entry(s(&f["msg_id"])).or_default() += 1;
            *by_cmid.entry(s(&f["client_msg_id"])).or_default() += 1;
        }
        if frames.is_empty() {
            break;
        }
    }
    let rows = srv.stored(acks[0].conversation_id).await;
    record_persisted(&mut tally, &rows);
    tally.figure = format!(
        "retry answered {} after the send (reconnect + resend), original seq {}",
        ms(retry_took),
        retried.seq
    );
    tally.check();
    assert_eq!(by_cmid.get("lost-5"), Some(&1), "delivered exactly once");
    assert_eq!(
        rows.iter().filter(|m| m.client_msg_id == "lost-5").count(),
        1,
        "stored exactly once"
    );
    assert_eq!(rows.len(), 10);
    assert_eq!(
        rows.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<u64>>(),
        "the retry consumed no seq"
    );
    assert_eq!(srv.panics(), 0);
}

// ---------------------------------------------------------------------------
// #5 session drops right after a push
// ---------------------------------------------------------------------------

/// What bob's client handed out: (seq, client_msg_id, when).
type Got = Vec<(u64, String, Instant)>;

/// Reads bob's client until it handed out `n` messages (in 30 s).
async fn bob_has(cb: &mut im_client::Connection, got: &mut Got, tally: &mut Tally, n: usize) {
    while got.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), cb.next_message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "bob has {} of {n} messages after 30 s (last seq {:?})",
                    got.len(),
                    got.last().map(|d| d.0)
                )
            })
            .expect("connection open");
        *tally.delivered.entry(m.msg_id.to_string()).or_default() += 1;
        got.push((m.seq, m.client_msg_id.clone(), Instant::now()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s05_session_drops_after_push() {
    let _serial = SERIAL.lock().await;
    let srv = start(Opts::default()).await;
    let u = srv.users(&["alice", "bob"]).await;
    let (a, b) = (&u[0], &u[1]);
    let proxy = Proxy::start(srv.addr, Framing::WebSocket).await.unwrap();
    let mut bob = ImClient::login(&srv.api, &b.name, PASSWORD).await.unwrap();
    bob.ws_url = Some(format!("ws://{}/ws", proxy.addr()));
    let mut cb = bob.connect().await.unwrap();
    let mut tally = Tally::new(
        "#5 session drop after push",
        "pushes p-50, p-150 written then socket cut; proxy cut at p-160; server close at p-180",
    );
    const N: usize = 200;
    let to = json!({"user": b.id});
    let mut acked_at: HashMap<String, Instant> = HashMap::new();
    let mut got: Got = Vec::new();
    let swallow = |cmid: &str| {
        Trigger::containing(&[
            "\"type\":\"message\"",
            &format!("\"client_msg_id\":\"{cmid}\""),
        ])
    };
    let mut conv = None;
    for i in 0..N {
        match i {
            // The first message makes the conversation known to bob's client.
            1 => {
                bob_has(&mut cb, &mut got, &mut tally, 1).await;
                proxy.lose_downstream(swallow("p-50"), true);
            }
            100 => {
                assert!(proxy.wait_losses(1, WAIT).await, "the push of p-50 was cut");
                bob_has(&mut cb, &mut got, &mut tally, 100).await;
                proxy.lose_downstream(swallow("p-150"), true);
            }
            160 => {
                assert!(
                    proxy.wait_losses(2, WAIT).await,
                    "the push of p-150 was cut"
                );
                bob_has(&mut cb, &mut got, &mut tally, 160).await;
                proxy.cut();
            }
            170 => proxy.restore(),
            180 => {
                bob_has(&mut cb, &mut got, &mut tally, 180).await;
                let closed = srv.node.hub.close_all(1012, "restart");
                assert!(closed >= 1, "bob's session was closed by the server");
            }
            _ => {}
        }
        let cmid = format!("p-{i}");
        let (st, v) = srv
            .http_send(&a.token, &cmid, to.clone(), &format!("m{i}"))
            .await;
        assert_eq!(st, 200, "{cmid}: {v}");
        tally.acked.insert(s(&v["msg_id"]));
        acked_at.insert(cmid, Instant::now());
        conv.get_or_insert_with(|| s(&v["conversation_id"]));
        tally.sent += 1;
    }
    let last_ack = Instant::now();
    bob_has(&mut cb, &mut got, &mut tally, N).await;
    let all_in = last_ack.elapsed();
    srv.settle().await;
    let rows = srv.stored(conv.unwrap().parse().unwrap()).await;
    record_persisted(&mut tally, &rows);
    let seqs: Vec<u64> = got.iter().map(|d| d.0).collect();
    let recovery = |cmid: &str| {
        got.iter()
            .find(|d| d.1 == cmid)
            .map(|d| d.2.saturating_duration_since(acked_at[cmid]))
            .map_or("?".into(), ms)
    };
    tally.figure = format!(
        "{} connections; swallowed p-50 reached bob {} and p-150 {} after their acks (by sync); \
         all {N} in order {} after the last ack",
        proxy.accepted(),
        recovery("p-50"),
        recovery("p-150"),
        ms(all_in)
    );
    tally.check();
    assert_eq!(
        seqs,
        (1..=N as u64).collect::<Vec<_>>(),
        "0 gaps: bob got every seq once, in order"
    );
    assert_eq!(proxy.dropped().len(), 2, "two pushes were swallowed");
    assert!(proxy.accepted() >= 4, "bob reconnected after each drop");
    assert_eq!(rows.len(), N);
    assert_eq!(srv.panics(), 0);
}

/// #5, recovery of big messages: a user offline while 100 messages near the
/// 16 KiB body limit arrived syncs them over WebSocket with the page size the
/// Rust client uses (100). A page is bounded in bytes (`max_page_bytes`), so it
/// stays under the WebSocket frame limit and says `has_more`; paging on
/// recovers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s05_sync_of_near_limit_messages() {
    let _serial = SERIAL.lock().await;
    let srv = start(Opts::default()).await;
    let u = srv.users(&["alice", "bob"]).await;
    let (a, b) = (&u[0], &u[1]);
    let mut tally = Tally::new(
        "#5 sync of near-limit messages",
        "bob offline while 100 messages of 16,000 bytes arrive; WS sync with limit 100",
    );
    let body = "z".repeat(16_000);
    let mut conv = String::new();
    for i in 0..100 {
        let (st, v) = srv
            .http_send(&a.token, &format!("big-{i}"), json!({"user": b.id}), &body)
            .await;
        assert_eq!(st, 200, "{v}");
        tally.sent += 1;
        tally.acked.insert(s(&v["msg_id"]));
        conv = s(&v["conversation_id"]);
    }
    srv.settle().await;
    let rows = srv.stored(conv.parse().unwrap()).await;
    record_persisted(&mut tally, &rows);
    assert_eq!(rows.len(), 100, "the messages are stored");
    // WebSocket sync, as the Rust client does it after a reconnect, page by page.
    let mut wb = srv.connect(&b.token).await;
    let mut after_seq = 0u64;
    let mut pages = Vec::new();
    let mut largest = 0usize;
    loop {
        send_json(
            &mut wb,
            json!({"type":"sync","conversation_id": conv,"after_seq": after_seq,"limit": 100}),
        )
        .await;
        let page = next_json(&mut wb, WAIT)
            .await
            .expect("every sync page is answered (within the frame limit)");
        assert_eq!(page["type"], "sync_result", "{page}");
        largest = largest.max(page.to_string().len());
        let msgs = page["messages"].as_array().cloned().unwrap_or_default();
        assert!(!msgs.is_empty(), "a page holds at least one message");
        for m in &msgs {
            *tally.delivered.entry(s(&m["msg_id"])).or_default() += 1;
            let seq = m["seq"].as_u64().unwrap();
            assert_eq!(seq, after_seq + 1, "pages continue without gaps");
            after_seq = seq;
        }
        pages.push(msgs.len());
        if page["has_more"] != true {
            break;
        }
        assert!(pages.len() < 100, "paging terminates");
    }
    tally.figure = format!(
        "{} WS sync pages of {:?} messages, largest frame {} bytes",
        pages.len(),
        pages,
        largest
    );
    assert_eq!(after_seq, 100, "all 100 recovered");
    assert!(
        largest < 1024 * 1024,
        "every frame under the 1 MiB write limit"
    );
    assert_eq!(srv.panics(), 0);
    tally.check();
}

// ---------------------------------------------------------------------------
// #9 ordering with parallel workers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s09_ordering_with_parallel_workers() {
    let _serial = SERIAL.lock().await;
    let mut opts = Opts::default();
    opts.node.push_workers = 4;
    opts.node.persist_workers = 4;
    let srv = start(opts).await;
    const SENDERS: usize = 4;
    const EACH: usize = 100;
    const TOTAL: usize = SENDERS * EACH;
    let u = srv
        .users(&["snd0", "snd1", "snd2", "snd3", "rcv0", "rcv1"])
        .await;
    let (st, g) = srv
        .post("/groups", Some(&u[0].token), json!({"name": "ordering"}))
        .await;
    assert_eq!(st, 201, "{g}");
    let gid = s(&g["group_id"]);
    // Every participant checks the whole timeline from seq 1: members added
    // below see the history from before their join (v1.2 cutoff off).
    let owner = u[0].uid;
    srv.node
        .logic
        .administer_group(
            owner,
            gid.parse().unwrap(),
            GroupCommand::SetHistoryVisible { visible: true },
        )
        .await
        .unwrap();
    for m in &u[1..] {
        let (st, v) = srv
            .post(
                &format!("/groups/{gid}/members"),
                Some(&u[0].token),
                json!({"user_id": m.id}),
            )
            .await;
        assert_eq!(st, 204, "{v}");
    }
    let conv: ConversationId = format!("g:{gid}").parse().unwrap();
    // Group administration writes system messages (seqs 1..=base); they are
    // pushed before the sockets below connect.
    srv.settle().await;
    let base = srv.store().last_seq(conv).await.unwrap();
    let mut tally = Tally::new(
        "#9 ordering",
        "4 concurrent senders x 100 into one group; 4 push + 4 persist workers",
    );
    let mut sockets = Vec::new();
    for user in &u {
        sockets.push(srv.connect(&user.token).await);
    }
    // Every participant reads in its own task; senders pipeline 100 sends.
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let gid = gid.clone();
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let sender = i < SENDERS;
            if sender {
                for k in 0..EACH {
                    send_json(
                        &mut tx,
                        json!({"type":"send","client_msg_id": format!("s{i}-{k}"),"to":{"group": gid},"body": format!("{i}/{k}")}),
                    )
                    .await;
                }
            }
            let want_acks = if sender { EACH } else { 0 };
            let want_pushes = if sender { TOTAL - EACH } else { TOTAL };
            let mut acks: Vec<Value> = Vec::new();
            let mut pushes: Vec<Value> = Vec::new();
            while acks.len() < want_acks || pushes.len() < want_pushes {
                let Some(f) = next_json(&mut rx, WAIT).await else {
                    break;
                };
                match f["type"].as_str() {
                    Some("send_ack") => acks.push(f),
                    Some("message") => pushes.push(f),
                    _ => panic!("participant {i}: unexpected frame {f}"),
                }
            }
            (tx.reunite(rx).unwrap(), acks, pushes)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let took = t0.elapsed();
    tally.sent = TOTAL as u64;
    for (_, acks, _) in &results {
        tally.acked.extend(acks.iter().map(|a| s(&a["msg_id"])));
    }
    let mut ack_seqs: Vec<u64> = results
        .iter()
        .flat_map(|(_, acks, _)| acks.iter().map(|a| a["seq"].as_u64().unwrap()))
        .collect();
    ack_seqs.sort_unstable();
    srv.settle().await;
    // Every participant syncs the group from 0 and checks its timeline.
    let mut out_of_order = 0usize;
    let mut pushed_total = 0usize;
    let mut complete_at: HashMap<String, usize> = HashMap::new();
    for (i, (ws, acks, pushes)) in results.iter_mut().enumerate() {
        pushed_total += pushes.len();
        out_of_order += pushes
            .windows(2)
            .filter(|w| w[1]["seq"].as_u64() < w[0]["seq"].as_u64())
            .count();
        let mut synced: Vec<Value> = Vec::new();
        let mut after = 0u64;
        loop {
            send_json(
                ws,
                json!({"type":"sync","conversation_id": conv.to_string(),"after_seq": after,"limit": 100}),
            )
            .await;
            let page = loop {
                let f = next_json(ws, WAIT).await.expect("a sync_result");
                if f["type"] == "sync_result" {
                    break f;
                }
                assert_eq!(f["type"], "message", "participant {i}: {f}");
                pushes.push(f);
            };
            let msgs = page["messages"].as_array().unwrap().clone();
            if let Some(last) = msgs.last() {
                after = last["seq"].as_u64().unwrap();
            }
            synced.extend(msgs);
            if page["has_more"] != true {
                break;
            }
        }
        let seqs: Vec<u64> = synced.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=base + TOTAL as u64).collect::<Vec<_>>(),
            "participant {i}: strictly increasing, gap-free seqs after sync"
        );
        let by_seq: HashMap<u64, String> = synced
            .iter()
            .map(|m| (m["seq"].as_u64().unwrap(), s(&m["msg_id"])))
            .collect();
        for p in pushes.iter() {
            assert_eq!(
                by_seq.get(&p["seq"].as_u64().unwrap()),
                Some(&s(&p["msg_id"])),
                "participant {i}: a pushed message matches the synced one at its seq"
            );
        }
        for a in acks.iter() {
            assert_eq!(
                by_seq.get(&a["seq"].as_u64().unwrap()),
                Some(&s(&a["msg_id"])),
                "participant {i}: an ack matches the synced message at its seq"
            );
        }
        for id in by_seq.values() {
            *complete_at.entry(id.clone()).or_default() += 1;
        }
    }
    // Delivered: every participant has the message (pushed, own ack, or synced).
    for (id, n) in complete_at {
        if n == results.len() {
            tally.delivered.insert(id, 1);
        }
    }
    let rows = srv.stored(conv).await;
    record_persisted(&mut tally, &rows);
    tally.figure = format!(
        "{TOTAL} acked in {}; pushes out of seq order {out_of_order} of {pushed_total}; 6 of 6 timelines 1..={} gap-free after sync ({base} system messages first)",
        ms(took),
        base + TOTAL as u64
    );
    tally.check();
    assert_eq!(
        ack_seqs,
        (base + 1..=base + TOTAL as u64).collect::<Vec<_>>(),
        "acks carry distinct, gap-free seqs"
    );
    assert_eq!(rows.len(), base as usize + TOTAL);
    assert_eq!(srv.panics(), 0);
}

// ---------------------------------------------------------------------------
// #10 oversized and malformed input
// ---------------------------------------------------------------------------

/// A pair of users exchanging messages in the background; returns latencies
/// and the tally of their messages when stopped.
/// Sorted latencies, delivered msg_ids, the tally and failed sends.
type VictimsEnd = (Vec<Duration>, Vec<String>, Tally, Vec<String>);

struct Victims {
    stop: CancellationToken,
    acked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<VictimsEnd>,
}

impl Victims {
    /// Waits until the victims got `n` more acks: they keep working between
    /// (and during) the attacks.
    async fn advance(&self, n: usize) {
        let target = self.acked.load(Ordering::SeqCst) + n;
        let ok = wait_until(WAIT, || self.acked.load(Ordering::SeqCst) >= target).await;
        assert!(ok.is_some(), "the victims stopped making progress");
    }
}

fn victims(srv: &Server, c: &User, d: &User, every: Duration, tally: Tally) -> Victims {
    let stop = CancellationToken::new();
    let url = srv.ws.clone();
    let (ct, dt, did) = (c.token.clone(), d.token.clone(), d.id.clone());
    let stop2 = stop.clone();
    let acked = Arc::new(AtomicUsize::new(0));
    let acked2 = acked.clone();
    let task = tokio::spawn(async move {
        let mut tally = tally;
        let mut wc = ws_open(&url, &ct, None).await.unwrap();
        let wd = ws_open(&url, &dt, None).await.unwrap();
        let (mut dtx, mut drx) = wd.split();
        let sent_at: Arc<StdMutex<HashMap<String, Instant>>> = Arc::default();
        let lat: Arc<StdMutex<Vec<Duration>>> = Arc::default();
        let got: Arc<StdMutex<Vec<String>>> = Arc::default();
        let reader = {
            let (sent_at, lat, got) = (sent_at.clone(), lat.clone(), got.clone());
            tokio::spawn(async move {
                while let Some(f) = next_json(&mut drx, Duration::from_secs(60)).await {
                    if f["type"] == "message" {
                        let now = Instant::now();
                        if let Some(t) = sent_at.lock().unwrap().get(&s(&f["client_msg_id"])) {
                            lat.lock().unwrap().push(now - *t);
                        }
                        got.lock().unwrap().push(s(&f["msg_id"]));
                    }
                    if f["type"] == "pong" {
                        return drx;
                    }
                }
                drx
            })
        };
        let mut errors = Vec::new();
        let mut k = 0u64;
        let mut tick = tokio::time::interval(every);
        while !stop2.is_cancelled() {
            tick.tick().await;
            let cmid = format!("v-{k}");
            k += 1;
            sent_at.lock().unwrap().insert(cmid.clone(), Instant::now());
            send_json(
                &mut wc,
                json!({"type":"send","client_msg_id": cmid,"to":{"user": did},"body":"still here"}),
            )
            .await;
            tally.sent += 1;
            match next_json(&mut wc, WAIT).await {
                Some(f) if f["type"] == "send_ack" => {
                    tally.acked.insert(s(&f["msg_id"]));
                    acked2.fetch_add(1, Ordering::SeqCst);
                }
                other => errors.push(format!("{cmid}: {other:?}")),
            }
        }
        // Let the last pushes land, then stop the reader with a pong.
        let want = tally.acked.len();
        let deadline = Instant::now() + WAIT;
        while got.lock().unwrap().len() < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        send_json(&mut dtx, json!({"type":"ping"})).await;
        let _ = reader.await;
        for id in got.lock().unwrap().iter() {
            *tally.delivered.entry(id.clone()).or_default() += 1;
        }
        let mut lat = lat.lock().unwrap().clone();
        lat.sort_unstable();
        let ids = got.lock().unwrap().clone();
        (lat, ids, tally, errors)
    });
    Victims { stop, acked, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_oversized_and_malformed_input() {
    let _serial = SERIAL.lock().await;
    let srv = start(Opts::default()).await;
    let u = srv.users(&["carol", "dave", "mallory"]).await;
    let (c, d, x) = (&u[0], &u[1], &u[2]);
    let rss0 = rss_kib();
    let v = victims(
        &srv,
        c,
        d,
        Duration::from_millis(20),
        Tally::new(
            "#10 oversized and malformed input",
            "frames > 64 KiB, 8 MiB headers, invalid UTF-8, deep JSON, unknown types, binary",
        ),
    );
    let mut checks = Checks::default();

    // Text frame over 64 KiB: 1009.
    v.advance(2).await;
    let mut w = srv.connect(&x.token).await;
    w.send(Message::Text("x".repeat(70_000).into()))
        .await
        .unwrap();
    let r = close_code(&mut w, WAIT).await;
    checks.expect(
        "text frame of 70,000 bytes closes 1009",
        r == Ok(1009),
        format!("{r:?}"),
    );

    // A message over 64 KiB in two 40,000-byte fragments: 1009.
    v.advance(2).await;
    let mut w = srv.connect(&x.token).await;
    let part = vec![b'a'; 40_000];
    w.send(Message::Frame(Frame::message(
        part.clone(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    let _ = w
        .send(Message::Frame(Frame::message(
            part,
            OpCode::Data(Data::Continue),
            true,
        )))
        .await;
    let r = close_code(&mut w, WAIT).await;
    checks.expect(
        "two fragments of 40,000 bytes close 1009",
        r == Ok(1009),
        format!("{r:?}"),
    );

    // 100,000 '[' (over the limit): 1009.
    v.advance(2).await;
    let mut w = srv.connect(&x.token).await;
    w.send(Message::Text("[".repeat(100_000).into()))
        .await
        .unwrap();
    let r = close_code(&mut w, WAIT).await;
    checks.expect("100,000 '[' closes 1009", r == Ok(1009), format!("{r:?}"));

    // Invalid UTF-8 in a text frame: 1007.
    v.advance(2).await;
    let mut w = srv.connect(&x.token).await;
    w.send(Message::Frame(Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        OpCode::Data(Data::Text),
        true,
    )))
    .await
    .unwrap();
    let r = close_code(&mut w, WAIT).await;
    checks.expect(
        "invalid UTF-8 text frame closes 1007",
        r == Ok(1007),
        format!("{r:?}"),
    );

    // An oversized control frame (ping of 200 bytes): protocol error 1002.
    v.advance(2).await;
    let mut w = srv.connect(&x.token).await;
    let _ = w.send(Message::Frame(Frame::ping(vec![0u8; 200]))).await;
    let r = close_code(&mut w, WAIT).await;
    checks.expect("200-byte ping closes 1002", r == Ok(1002), format!("{r:?}"));

    // Junk that fits: error frames, the socket stays open.
    v.advance(2).await;
    let mut w = srv.connect(&x.token).await;
    let deep_send = format!(
        r#"{{"type":"send","client_msg_id":"deep","to":{{"user":"{}"}},"body":{}{}}}"#,
        d.id,
        "[".repeat(30_000),
        "]".repeat(30_000)
    );
    let deep_obj = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let junk: Vec<(&str, String)> = vec![
        ("60,000 '['", "[".repeat(60_000)),
        ("deeply nested send body", deep_send),
        ("10,000 nested objects", deep_obj),
        ("unknown type", r#"{"type":"fly"}"#.into()),
        ("numeric type", r#"{"type":123}"#.into()),
        ("no type", "{}".into()),
        ("array", "[]".into()),
        ("null", "null".into()),
        ("send without fields", r#"{"type":"send"}"#.into()),
        (
            "numeric id",
            format!(
                r#"{{"type":"send","client_msg_id":"n","to":{{"user":{}}},"body":"x"}}"#,
                d.id
            ),
        ),
        (
            "huge seq",
            r#"{"type":"sync","conversation_id":"u:1:2","after_seq":1e400}"#.into(),
        ),
        ("NUL in JSON", "{\"type\":\"ping\u{0}\"}".into()),
    ];
    for (what, text) in &junk {
        v.advance(1).await;
        w.send(Message::Text(text.clone().into())).await.unwrap();
        let f = next_json(&mut w, WAIT).await;
        let ok = f
            .as_ref()
            .is_some_and(|f| f["type"] == "error" && f["code"] == "invalid_argument");
        checks.expect(format!("{what}: invalid_argument"), ok, format!("{f:?}"));
    }
    w.send(Message::Binary(vec![0u8, 159, 146, 150].into()))
        .await
        .unwrap();
    let f = next_json(&mut w, WAIT).await;
    checks.expect(
        "binary frame: invalid_argument",
        f.as_ref().is_some_and(|f| f["code"] == "invalid_argument"),
        format!("{f:?}"),
    );
    send_json(&mut w, json!({"type":"ping"})).await;
    let f = next_json(&mut w, WAIT).await;
    checks.expect(
        "socket still open after junk (pong)",
        f.as_ref().is_some_and(|f| f["type"] == "pong"),
        format!("{f:?}"),
    );
    drop(w);

    v.advance(2).await;
    // 8 MiB of handshake headers: refused, never upgraded.
    for (what, head) in [
        (
            "one 8 MiB header",
            format!("X-Pad: {}\r\n", "a".repeat(8 << 20)),
        ),
        (
            "100,000 small headers (8 MiB)",
            (0..100_000)
                .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(72)))
                .collect(),
        ),
    ] {
        v.advance(1).await;
        let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Authorization: Bearer {}\r\n{head}\r\n",
            x.token
        );
        let (mut rd, mut wr) = tcp.split();
        let write = async {
            let _ = wr.write_all(req.as_bytes()).await;
        };
        let read = async {
            let mut got = Vec::new();
            let ended = tokio::time::timeout(WAIT, rd.read_to_end(&mut got))
                .await
                .is_ok();
            (got, ended)
        };
        let ((), (got, ended)) = tokio::join!(write, read);
        let head_line = String::from_utf8_lossy(&got[..got.len().min(40)]).to_string();
        let refused = ended && !head_line.starts_with("HTTP/1.1 101");
        checks.expect(
            format!("{what}: refused and closed promptly"),
            refused,
            format!("answered {head_line:?}, closed: {ended}"),
        );
        println!(
            "  {what}: answered {:?}",
            head_line.lines().next().unwrap_or("(closed)")
        );
    }

    v.advance(2).await;
    // HTTP bodies: deep JSON (400) and 8 MiB (413 or the connection closed).
    let (st, body) = srv
        .post_raw("/messages", &x.token, "[".repeat(60_000).into_bytes())
        .await;
    checks.expect(
        "HTTP send of 60,000 '[': 400",
        st == Some(400),
        format!("{st:?} {body}"),
    );
    let (st, body) = srv
        .post_raw("/messages", &x.token, vec![b' '; 8 << 20])
        .await;
    checks.expect(
        "HTTP send of 8 MiB: 413 or closed",
        st.is_none() || st == Some(413),
        format!("{st:?} {body}"),
    );

    v.advance(2).await;
    // The server is fine.
    let health = reqwest::get(format!("{}/healthz", srv.api)).await.unwrap();
    checks.expect(
        "healthz 200",
        health.status() == 200,
        format!("{}", health.status()),
    );

    v.stop.cancel();
    let (lat, _, mut tally, errors) = v.task.await.unwrap();
    srv.settle().await;
    let conv = ConversationId::direct(c.uid, d.uid).unwrap();
    let rows = srv.stored(conv).await;
    record_persisted(&mut tally, &rows);
    let rss1 = rss_kib();
    tally.figure = format!(
        "{} checks; victims p50 {} p99 {} over {} sends; RSS {} -> {} MiB; server panics {}",
        checks.passed.len() + checks.failed.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        lat.len(),
        rss0 / 1024,
        rss1 / 1024,
        srv.panics()
    );
    tally.check();
    checks.print();
    assert!(
        checks.failed.is_empty(),
        "malformed input handled wrongly:\n{}",
        checks.failed.join("\n")
    );
    assert!(
        errors.is_empty(),
        "the victims' sends failed meanwhile: {errors:?}"
    );
    assert!(
        tally.acked.len() >= 10,
        "the victims kept sending: {}",
        tally.line()
    );
    assert_eq!(srv.panics(), 0, "server threads panicked");
    assert!(
        rss1 < rss0 + 256 * 1024,
        "memory bounded: RSS grew from {rss0} KiB to {rss1} KiB"
    );
}

impl Server {
    /// POSTs raw bytes as JSON; `None` status when the connection failed.
    async fn post_raw(&self, path: &str, token: &str, body: Vec<u8>) -> (Option<u16>, String) {
        let res = self
            .http
            .post(format!("{}/api/v1{path}", self.api))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match res {
            Ok(r) => {
                let st = r.status().as_u16();
                (Some(st), r.text().await.unwrap_or_default())
            }
            Err(e) => (None, e.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------
// #11 slow and idle clients
// ---------------------------------------------------------------------------

/// How many sockets #11 opens: 300, or 5,000 with `RELIABILITY_LONG=1`,
/// capped so that client plus server ends fit the fd limit.
fn idle_sockets() -> usize {
    let want = if long_mode() { 5_000 } else { 300 };
    let cap = fd_limit().saturating_sub(open_fds() + 256) / 2;
    want.min(cap)
}

/// A TCP connection to `addr` with a 4 KiB receive buffer (so a client that
/// never reads stalls the server's writes quickly).
async fn small_buffer_tcp(addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_never_completed_handshakes_are_closed() {
    let _serial = SERIAL.lock().await;
    let srv = start(Opts::default()).await;
    let port = srv.addr.port();
    let n = idle_sockets();
    let deadline = Duration::from_secs(
        std::env::var("RELIABILITY_HANDSHAKE_DEADLINE_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(35),
    );
    let fds0 = open_fds();
    let mut tally = Tally::new(
        "#11a never-completed handshakes",
        &format!(
            "{n} sockets: a third silent, a third send a partial request head, \
             a third idle after one keep-alive request"
        ),
    );
    const KINDS: [&str; 3] = ["silent", "partial head", "idle keep-alive"];
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        let mut t = TcpStream::connect(srv.addr).await.unwrap();
        match i % 3 {
            0 => {}
            1 => t
                .write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
                .await
                .unwrap(),
            _ => {
                t.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    .await
                    .unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 512];
                while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"ok")) {
                    let k = tokio::time::timeout(WAIT, t.read(&mut buf))
                        .await
                        .expect("a /healthz answer")
                        .unwrap();
                    assert!(k > 0, "the keep-alive request was answered");
                    got.extend_from_slice(&buf[..k]);
                }
            }
        }
        socks.push(t);
    }
    let opened = wait_until(WAIT, || server_conns(port) >= n).await;
    assert!(
        opened.is_some(),
        "the server accepted {n} connections ({})",
        server_conns(port)
    );
    // A legitimate user still gets in meanwhile.
    let ok = srv.user("latecomer").await;
    let mut w = srv.connect(&ok.token).await;
    send_json(&mut w, json!({"type":"ping"})).await;
    assert_eq!(next_json(&mut w, WAIT).await.unwrap()["type"], "pong");
    drop(w);
    let t0 = Instant::now();
    let closed_in = wait_until(deadline, || server_conns(port) == 0).await;
    let waited = t0.elapsed();
    // Which kinds the server left open: a read that would block means open.
    let mut open_by_kind = [0usize; 3];
    for (i, t) in socks.iter().enumerate() {
        let mut one = [0u8; 1];
        if matches!(t.try_read(&mut one), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            open_by_kind[i % 3] += 1;
        }
    }
    let still_open = server_conns(port);
    // The client side lets go; the server must release everything.
    drop(socks);
    let released = wait_until(WAIT, || server_conns(port) == 0 && open_fds() <= fds0 + 16).await;
    let by_kind = KINDS
        .iter()
        .zip(open_by_kind)
        .map(|(k, o)| format!("{k} {o}"))
        .collect::<Vec<_>>()
        .join(", ");
    tally.figure = format!(
        "server closed them: {}; after the clients closed: fds {} -> {} (released in {})",
        closed_in.map_or(
            format!(
                "NO, {still_open} of {n} still open after {} ({by_kind})",
                ms(waited)
            ),
            |d| format!("in {}", ms(d))
        ),
        fds0,
        open_fds(),
        released.map_or("never".into(), ms)
    );
    tally.check();
    assert!(
        released.is_some(),
        "fds returned to baseline: {}",
        tally.line()
    );
    assert_eq!(srv.panics(), 0);
    assert!(
        closed_in.is_some(),
        "{still_open} of {n} connections that never completed a request were still open \
         {deadline:?} later ({by_kind}): the server has no header-read/handshake or \
         keep-alive idle timeout (im-transport/src/server.rs `serve` runs `axum::serve`, which \
         gives hyper no timer, so hyper's 30 s `header_read_timeout` is never armed; nothing \
         else bounds a connection before the upgrade)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_idle_sockets_that_never_read_are_closed() {
    let _serial = SERIAL.lock().await;
    let mut opts = Opts::default();
    opts.ws.ping_every = Duration::from_secs(1);
    opts.ws.idle_timeout = Duration::from_secs(3);
    opts.ws.write_timeout = Duration::from_secs(2);
    let srv = start(opts).await;
    let port = srv.addr.port();
    let n = idle_sockets();
    let idler = srv.user("idler").await;
    let fds0 = open_fds();
    let rss0 = rss_kib();
    let mut tally = Tally::new(
        "#11b idle sockets",
        &format!("{n} upgraded sockets that never read or write (idle 3 s, ping 1 s)"),
    );
    let url = srv.ws.clone();
    let t_open = Instant::now();
    let socks: Vec<Ws> = futures::stream::iter(0..n)
        .map(|_| {
            let (url, token, addr) = (url.clone(), idler.token.clone(), srv.addr);
            async move {
                let mut req = url.as_str().into_client_request().unwrap();
                req.headers_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
                let tcp = small_buffer_tcp(addr).await;
                let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp))
                    .await
                    .unwrap();
                ws
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let opened = t_open.elapsed();
    // Every handshake succeeded (101); the sessions register right after,
    // and the first ones may already be timing out.
    let mut peak = 0;
    let _ = wait_until(Duration::from_secs(2), || {
        peak = peak.max(srv.node.hub.session_count());
        peak == n
    })
    .await;
    let rss_peak = rss_kib();
    let t0 = Instant::now();
    let closed = wait_until(Duration::from_secs(15), || {
        srv.node.hub.session_count() == 0 && server_conns(port) == 0
    })
    .await;
    let left = (srv.node.hub.session_count(), server_conns(port));
    drop(socks);
    let released = wait_until(WAIT, || open_fds() <= fds0 + 16).await;
    tally.figure = format!(
        "{n} opened in {} (peak {peak} sessions); all closed by the server {} (sessions, server sockets left {:?}); \
         fds {fds0} -> {}; RSS {} -> {} (peak) -> {} MiB",
        ms(opened),
        closed.map_or(format!("NO after {}", ms(t0.elapsed())), |d| format!(
            "in {}",
            ms(d)
        )),
        left,
        open_fds(),
        rss0 / 1024,
        rss_peak / 1024,
        rss_kib() / 1024
    );
    tally.check();
    assert!(
        closed.is_some(),
        "idle sockets closed by the idle timeout: {}",
        tally.line()
    );
    assert!(
        released.is_some(),
        "fds back near baseline: {}",
        tally.line()
    );
    assert_eq!(srv.panics(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_stalled_writes_are_closed() {
    let _serial = SERIAL.lock().await;
    let mut opts = Opts::default();
    // Only the write timeout can close these sessions.
    opts.ws.ping_every = Duration::from_secs(600);
    opts.ws.idle_timeout = Duration::from_secs(600);
    opts.ws.write_timeout = Duration::from_secs(2);
    let srv = start(opts).await;
    let m = if long_mode() { 100 } else { 10 };
    let u = srv.users(&["talker", "sink"]).await;
    let (talker, sink) = (&u[0], &u[1]);
    let mut tally = Tally::new(
        "#11c stalled writes",
        &format!("{m} sockets that never read while 16 KB messages are pushed (write timeout 2 s)"),
    );
    let mut socks = Vec::new();
    for _ in 0..m {
        let mut req = srv.ws.as_str().into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", sink.token).parse().unwrap(),
        );
        let tcp = small_buffer_tcp(srv.addr).await;
        let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
        socks.push(ws);
    }
    let registered = wait_until(WAIT, || srv.node.hub.sessions_of(sink.uid).len() == m).await;
    assert!(registered.is_some(), "{m} sink sessions registered");
    // Near the 16,384-byte body limit, 100 per second (under the HTTP limit).
    let body = "z".repeat(16_000);
    let t0 = Instant::now();
    let mut closed = None;
    let mut k = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while t0.elapsed() < Duration::from_secs(20) {
        tick.tick().await;
        let (st, v) = srv
            .http_send(
                &talker.token,
                &format!("w-{k}"),
                json!({"user": sink.id}),
                &body,
            )
            .await;
        k += 1;
        tally.sent += 1;
        assert_eq!(st, 200, "{v}");
        tally.acked.insert(s(&v["msg_id"]));
        if srv.node.hub.sessions_of(sink.uid).is_empty() {
            closed = Some(t0.elapsed());
            break;
        }
    }
    drop(socks);
    srv.settle().await;
    // Nothing is lost for the sink: a fresh session syncs everything.
    let conv = ConversationId::direct(talker.uid, sink.uid).unwrap();
    let mut w = srv.connect(&sink.token).await;
    let mut after = 0u64;
    loop {
        send_json(
            &mut w,
            // Pages of 20: a page of 100 such messages is over 1 MiB, which
            // the server cannot write (see s05_sync_of_near_limit_messages).
            json!({"type":"sync","conversation_id": conv.to_string(),"after_seq": after,"limit": 20}),
        )
        .await;
        let page = next_json(&mut w, WAIT).await.expect("sync_result");
        assert_eq!(page["type"], "sync_result", "{page}");
        for msg in page["messages"].as_array().unwrap() {
            *tally.delivered.entry(s(&msg["msg_id"])).or_default() += 1;
            after = msg["seq"].as_u64().unwrap();
        }
        if page["has_more"] != true {
            break;
        }
    }
    let rows = srv.stored(conv).await;
    record_persisted(&mut tally, &rows);
    tally.figure = format!(
        "{m} stalled sessions closed {} after the first push ({k} pushes of 16 KB, ~{} MB per socket before its write stalled, then the 2 s write timeout); the sink synced all {} afterwards",
        closed.map_or("NEVER (20 s)".into(), ms),
        k * 16_000 / 1_000_000,
        tally.delivered.len()
    );
    tally.check();
    assert!(
        closed.is_some(),
        "stalled sessions closed by the write timeout: {}",
        tally.line()
    );
    assert_eq!(srv.panics(), 0);
}

// ---------------------------------------------------------------------------
// #12 authorization
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_authorization() {
    let _serial = SERIAL.lock().await;
    const GOOD: &str = "https://chat.example";
    let mut opts = Opts::default();
    opts.ws.allowed_origins = vec![GOOD.to_owned()];
    let srv = start(opts).await;
    let u = srv.users(&["alice", "bob", "mallory"]).await;
    let (a, b, x) = (&u[0], &u[1], &u[2]);
    let mut tally = Tally::new(
        "#12 authorization",
        "non-member send, forged from, others' history, bad Origin, expired/bad/forged tokens",
    );
    let mut checks = Checks::default();
    let (st, g) = srv
        .post("/groups", Some(&a.token), json!({"name": "private"}))
        .await;
    assert_eq!(st, 201, "{g}");
    let gid = s(&g["group_id"]);
    let (st, v) = srv
        .post(
            &format!("/groups/{gid}/members"),
            Some(&a.token),
            json!({"user_id": b.id}),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    let group: ConversationId = format!("g:{gid}").parse().unwrap();
    let ab = ConversationId::direct(a.uid, b.uid).unwrap();
    let xb = ConversationId::direct(x.uid, b.uid).unwrap();
    let (st, v) = srv
        .http_send(&a.token, "a-1", json!({"user": b.id}), "hi bob")
        .await;
    assert_eq!(st, 200, "{v}");
    let mut wb = ws_open(&srv.ws, &b.token, Some(GOOD)).await.unwrap();
    let mut wx = ws_open(&srv.ws, &x.token, Some(GOOD)).await.unwrap();

    // Non-member group send, over WebSocket and HTTP.
    send_json(
        &mut wx,
        json!({"type":"send","client_msg_id":"nm-1","to":{"group": gid},"body":"sneaky"}),
    )
    .await;
    tally.sent += 1;
    let f = next_json(&mut wx, WAIT).await.unwrap();
    if f["type"] == "send_ack" {
        tally.acked.insert(s(&f["msg_id"]));
    }
    checks.expect(
        "non-member WS group send: permission_denied",
        f["code"] == "permission_denied",
        &f,
    );
    let (st, v) = srv
        .http_send(&x.token, "nm-2", json!({"group": gid}), "sneaky")
        .await;
    tally.sent += 1;
    if st == 200 {
        tally.acked.insert(s(&v["msg_id"]));
    }
    checks.expect(
        "non-member HTTP group send: 403",
        st == 403,
        format!("{st} {v}"),
    );

    // A forged `from` is ignored: the message is mallory's (or refused).
    send_json(
        &mut wx,
        json!({"type":"send","client_msg_id":"forge-1","from": a.id,"to":{"user": b.id},"body":"I am alice"}),
    )
    .await;
    let f = next_json(&mut wx, WAIT).await.unwrap();
    checks.expect(
        "forged from over WS: answered (ack as mallory, or refused)",
        f["type"] == "send_ack" || f["type"] == "error",
        &f,
    );
    let (st, v) = srv
        .post(
            "/messages",
            Some(&x.token),
            json!({"client_msg_id":"forge-2","from": a.id,"to":{"user": b.id},"body":"I am alice"}),
        )
        .await;
    checks.expect(
        "forged from over HTTP: answered (200 as mallory, or 400)",
        st == 200 || st == 400,
        format!("{st} {v}"),
    );

    // Someone else's conversation: history 403, sync refused.
    let (st, v) = srv
        .get(&format!("/conversations/{ab}/messages"), Some(&x.token))
        .await;
    checks.expect("others' 1:1 history: 403", st == 403, format!("{st} {v}"));
    let (st, v) = srv
        .get(&format!("/conversations/{group}/messages"), Some(&x.token))
        .await;
    checks.expect(
        "non-member group history: 403",
        st == 403,
        format!("{st} {v}"),
    );
    send_json(
        &mut wx,
        json!({"type":"sync","conversation_id": ab.to_string(),"after_seq": 0}),
    )
    .await;
    // (Mallory's HTTP send above is pushed to her socket too: skip it.)
    let f = loop {
        let f = next_json(&mut wx, WAIT).await.unwrap();
        if f["type"] != "message" {
            break f;
        }
    };
    checks.expect(
        "others' conversation over WS sync: permission_denied",
        f["code"] == "permission_denied",
        &f,
    );

    // The Origin allowlist.
    for (what, origin) in [
        ("bad Origin", Some("https://evil.example")),
        ("no Origin", None),
    ] {
        let r = ws_open(&srv.ws, &x.token, origin).await;
        checks.expect(
            format!("{what}: 403 before the upgrade"),
            refused_status(&r) == Some(403),
            format!("{:?}", refused_status(&r)),
        );
    }

    // Tokens: expired, bad, forged, of a user who does not exist.
    let short = JwtAuthenticator::new(SECRET, Duration::from_millis(1));
    let expired = short.issue(x.uid).unwrap().token;
    let deadline = Instant::now() + Duration::from_secs(5);
    while short.verify(&expired).await.is_ok() {
        assert!(Instant::now() < deadline, "the short token expires");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other_secret = JwtAuthenticator::new(
        b"another-secret-another-secret-0123",
        Duration::from_secs(3600),
    )
    .issue(x.uid)
    .unwrap()
    .token;
    let exp = im_core::id::now_ms() / 1000 + 3600;
    let claims_of_alice = format!(r#"{{"sub":"{}","iat":1,"exp":{exp}}}"#, a.id);
    let none_alg = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims_of_alice.as_bytes())
    );
    let tampered = {
        let mine: Vec<&str> = x.token.split('.').collect();
        format!(
            "{}.{}.{}",
            mine[0],
            b64url(claims_of_alice.as_bytes()),
            mine[2]
        )
    };
    let bad_tokens: Vec<(&str, String)> = vec![
        ("expired token", expired),
        ("garbage token", "not-a-jwt".into()),
        ("empty token", String::new()),
        ("token of another secret", other_secret),
        ("alg=none token", none_alg),
        ("tampered payload", tampered),
    ];
    for (what, token) in &bad_tokens {
        let r = ws_open(&srv.ws, token, Some(GOOD)).await;
        let status = refused_status(&r);
        if let Ok(mut ws) = r {
            // Let in: does a send go through?
            send_json(
                &mut ws,
                json!({"type":"send","client_msg_id": format!("{what}-ws"),"to":{"user": b.id},"body":"sneaky"}),
            )
            .await;
            tally.sent += 1;
            if let Some(f) = next_json(&mut ws, WAIT).await {
                if f["type"] == "send_ack" {
                    tally.acked.insert(s(&f["msg_id"]));
                }
            }
        }
        checks.expect(
            format!("{what}: WebSocket upgrade 401"),
            status == Some(401),
            format!("{status:?}"),
        );
        let (st, v) = srv
            .http_send(
                token,
                &format!("{what}-http"),
                json!({"user": b.id}),
                "sneaky",
            )
            .await;
        tally.sent += 1;
        if st == 200 {
            tally.acked.insert(s(&v["msg_id"]));
        }
        checks.expect(
            format!("{what}: HTTP send 401"),
            st == 401,
            format!("{st} {v}"),
        );
        let (st, v) = srv
            .get(&format!("/conversations/{ab}/messages"), Some(token))
            .await;
        checks.expect(
            format!("{what}: HTTP history 401"),
            st == 401,
            format!("{st} {v}"),
        );
    }
    // A good token with the good Origin is let in (the refusals above are
    // for the right reason).
    let ok = ws_open(&srv.ws, &x.token, Some(GOOD)).await;
    checks.expect("good token and Origin: upgraded", ok.is_ok(), "refused");

    srv.settle().await;
    let live_at_bob: Vec<Value> = barrier(&mut wb)
        .await
        .into_iter()
        .filter(|f| f["type"] == "message")
        .collect();
    let group_rows = srv.stored(group).await;
    let xb_rows = srv.stored(xb).await;
    let forged: Vec<&ImMessage> = xb_rows
        .iter()
        .filter(|m| m.client_msg_id.starts_with("forge"))
        .collect();
    checks.expect(
        "forged-from messages are stored as mallory's",
        forged.iter().all(|m| m.from == x.uid),
        format!("{forged:?}"),
    );
    checks.expect(
        "bob sees forged-from messages as mallory's",
        live_at_bob
            .iter()
            .filter(|f| s(&f["client_msg_id"]).starts_with("forge"))
            .all(|f| f["from"] == json!(x.id)),
        format!("{live_at_bob:?}"),
    );
    // Everything a refused attempt managed to store (they all say "sneaky";
    // the group also holds the system messages of its creation).
    let sneaky: Vec<ImMessage> = group_rows
        .into_iter()
        .chain(xb_rows)
        .filter(|m| m.body == json!("sneaky"))
        .collect();
    record_persisted(&mut tally, &sneaky);
    for f in &live_at_bob {
        if f["body"] == "sneaky" {
            *tally.delivered.entry(s(&f["msg_id"])).or_default() += 1;
        }
    }
    checks.expect(
        "refused attempts accepted nothing",
        tally.acked.is_empty(),
        format!("{} accepted", tally.acked.len()),
    );
    checks.expect(
        "refused attempts stored nothing",
        sneaky.is_empty(),
        format!(
            "{} stored: {:?}",
            sneaky.len(),
            sneaky
                .iter()
                .map(|m| format!("{} from {} to {:?}", m.client_msg_id, m.from, m.to))
                .collect::<Vec<_>>()
        ),
    );
    tally.figure = format!(
        "{} checks passed, {} failed; refused sends accepted {}, stored {}",
        checks.passed.len(),
        checks.failed.len(),
        tally.acked.len(),
        sneaky.len()
    );
    checks.print();
    if !checks.failed.is_empty() {
        // The report line first; the list of holes is the failure message.
        println!("RELIABILITY {}", tally.line());
        panic!("authorization holes:\n{}", checks.failed.join("\n"));
    }
    tally.check();
    assert_eq!(srv.panics(), 0);
}

/// #12, last case: a well-signed, unexpired token whose user does not exist
/// (a deleted account, a token from before a reset of the memory backends,
/// or any token minted with the secret). Expected: refused like a bad token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_token_of_a_user_who_does_not_exist() {
    let _serial = SERIAL.lock().await;
    let srv = start(Opts::default()).await;
    let u = srv.users(&["alice", "bob"]).await;
    let (a, b) = (&u[0], &u[1]);
    let mut tally = Tally::new(
        "#12 token of a missing user",
        "valid signature and expiry, but no such user",
    );
    let mut checks = Checks::default();
    let ghost_id = UserId(b.uid.0 + 1_000_000_007);
    let ghost = JwtAuthenticator::new(SECRET, Duration::from_secs(3600))
        .issue(ghost_id)
        .unwrap()
        .token;
    let mut wb = srv.connect(&b.token).await;
    let r = ws_open(&srv.ws, &ghost, None).await;
    let status = refused_status(&r);
    if let Ok(mut ws) = r {
        send_json(
            &mut ws,
            json!({"type":"send","client_msg_id":"ghost-ws","to":{"user": b.id},"body":"boo"}),
        )
        .await;
        tally.sent += 1;
        if let Some(f) = next_json(&mut ws, WAIT).await {
            if f["type"] == "send_ack" {
                tally.acked.insert(s(&f["msg_id"]));
            }
        }
    }
    checks.expect(
        "WebSocket upgrade 401",
        status == Some(401),
        format!("{status:?}"),
    );
    let (st, v) = srv
        .http_send(&ghost, "ghost-http", json!({"user": b.id}), "boo")
        .await;
    tally.sent += 1;
    if st == 200 {
        tally.acked.insert(s(&v["msg_id"]));
    }
    checks.expect("HTTP send 401", st == 401, format!("{st} {v}"));
    let ab = ConversationId::direct(a.uid, b.uid).unwrap();
    let (st, v) = srv
        .get(&format!("/conversations/{ab}/messages"), Some(&ghost))
        .await;
    checks.expect("HTTP history 401", st == 401, format!("{st} {v}"));
    let (st, v) = srv
        .post("/groups", Some(&ghost), json!({"name": "ghosts"}))
        .await;
    checks.expect("HTTP create group 401", st == 401, format!("{st} {v}"));
    srv.settle().await;
    for f in barrier(&mut wb).await {
        if f["type"] == "message" {
            *tally.delivered.entry(s(&f["msg_id"])).or_default() += 1;
        }
    }
    let rows = srv
        .stored(ConversationId::direct(ghost_id, b.uid).unwrap())
        .await;
    record_persisted(&mut tally, &rows);
    checks.expect(
        "nothing accepted or stored",
        tally.acked.is_empty() && rows.is_empty(),
        format!("{} accepted, {} stored", tally.acked.len(), rows.len()),
    );
    tally.figure = format!(
        "{} checks passed, {} failed; accepted {}, stored {}, delivered to bob {}",
        checks.passed.len(),
        checks.failed.len(),
        tally.acked.len(),
        rows.len(),
        tally.delivered.len()
    );
    checks.print();
    println!("RELIABILITY {}", tally.line());
    assert_eq!(srv.panics(), 0);
    assert!(
        checks.failed.is_empty(),
        "a token of a user who does not exist is accepted: the JWT is only checked for \
         signature and expiry (im-core/src/auth.rs JwtAuthenticator::verify via \
         Logic::verify_token, im-core/src/logic/mod.rs), the WebSocket upgrade \
         (im-transport/src/ws/server.rs) and the HTTP Caller extractor \
         (im-transport/src/http/routes.rs) trust it, and Logic::authorize \
         (im-core/src/logic/send.rs) checks peers and groups but never the sender:\n{}",
        checks.failed.join("\n")
    );
}

// ---------------------------------------------------------------------------
// #13 flooding
// ---------------------------------------------------------------------------

/// A sender socket and a receiver socket measuring send→deliver latency.
struct Probe {
    ptx: WsTx,
    prx: WsRx,
    qrx: WsRx,
    to: String,
}

impl Probe {
    /// Sends `n` messages at `every` and returns the sorted latencies.
    async fn run(
        &mut self,
        tag: &str,
        n: usize,
        every: Duration,
        tally: &mut Tally,
    ) -> Vec<Duration> {
        let Probe { ptx, prx, qrx, to } = self;
        probe_run(ptx, prx, qrx, to, tag, n, every, tally).await
    }
}

#[allow(clippy::too_many_arguments)]
async fn probe_run(
    ptx: &mut WsTx,
    prx: &mut WsRx,
    qrx: &mut WsRx,
    to: &str,
    tag: &str,
    n: usize,
    every: Duration,
    tally: &mut Tally,
) -> Vec<Duration> {
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut lat = Vec::new();
    let mut acks = 0usize;
    let mut tick = tokio::time::interval(every);
    let mut k = 0usize;
    let deadline = Instant::now() + every * n as u32 + Duration::from_secs(20);
    while (k < n || acks < n || lat.len() < n) && Instant::now() < deadline {
        tokio::select! {
            _ = tick.tick(), if k < n => {
                let cmid = format!("{tag}-{k}");
                k += 1;
                sent_at.insert(cmid.clone(), Instant::now());
                send_json(ptx, json!({"type":"send","client_msg_id": cmid,"to":{"user": to},"body":"probe"})).await;
                tally.sent += 1;
            }
            f = prx.next() => {
                if let Some(Ok(Message::Text(t))) = f {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(v["type"], "send_ack", "probe sends are accepted: {v}");
                    tally.acked.insert(s(&v["msg_id"]));
                    acks += 1;
                }
            }
            f = qrx.next() => {
                if let Some(Ok(Message::Text(t))) = f {
                    let now = Instant::now();
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "message" {
                        if let Some(t0) = sent_at.get(&s(&v["client_msg_id"])) {
                            lat.push(now - *t0);
                        }
                        *tally.delivered.entry(s(&v["msg_id"])).or_default() += 1;
                    }
                }
            }
        }
    }
    lat.sort_unstable();
    lat
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_flooding() {
    let _serial = SERIAL.lock().await;
    let srv = start(Opts::default()).await;
    let u = srv.users(&["flood", "sink", "probe", "peer"]).await;
    let (f, sink, p, q) = (&u[0], &u[1], &u[2], &u[3]);
    let mut tally = Tally::new(
        "#13 flooding",
        "one user sends 1,000 msgs/s over WebSocket (limit 200/s, burst 400)",
    );
    let (ptx, prx) = srv.connect(&p.token).await.split();
    let (_qtx, qrx) = srv.connect(&q.token).await.split();
    let mut probe = Probe {
        ptx,
        prx,
        qrx,
        to: q.id.clone(),
    };
    const N: usize = 300;
    let every = Duration::from_millis(8);
    // Warm-up, then the unloaded figure.
    let _ = probe.run("warm", 20, every, &mut tally).await;
    let unloaded = probe.run("calm", N, every, &mut tally).await;

    // The flood: 10 sends every 10 ms for the probe's duration; the sink reads all.
    let stop = CancellationToken::new();
    let ws_f = srv.connect(&f.token).await;
    let (mut stx, mut srx) = srv.connect(&sink.token).await.split();
    let sink_task = tokio::spawn(async move {
        let mut got: Vec<String> = Vec::new();
        while let Some(v) = next_json(&mut srx, Duration::from_secs(60)).await {
            match v["type"].as_str() {
                Some("message") => got.push(s(&v["msg_id"])),
                Some("pong") => break,
                _ => {}
            }
        }
        got
    });
    let flood = {
        let stop = stop.clone();
        let to = sink.id.clone();
        tokio::spawn(async move {
            let (mut tx, mut rx) = ws_f.split();
            let mut sent = 0usize;
            let mut acks: Vec<String> = Vec::new();
            let mut exhausted = 0usize;
            let mut other: Vec<Value> = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let t0 = Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick(), if !stop.is_cancelled() => {
                        for _ in 0..10 {
                            send_json(&mut tx, json!({"type":"send","client_msg_id": format!("f-{sent}"),"to":{"user": to},"body":"flood"})).await;
                            sent += 1;
                        }
                    }
                    v = next_json(&mut rx, Duration::from_secs(5)) => {
                        let Some(v) = v else { break };
                        match (v["type"].as_str(), v["code"].as_str()) {
                            (Some("send_ack"), _) => acks.push(s(&v["msg_id"])),
                            (Some("error"), Some("resource_exhausted")) => exhausted += 1,
                            _ => other.push(v),
                        }
                        if stop.is_cancelled() && acks.len() + exhausted + other.len() >= sent {
                            break;
                        }
                    }
                }
            }
            (sent, acks, exhausted, other, t0.elapsed())
        })
    };
    let loaded = probe.run("load", N, every, &mut tally).await;
    stop.cancel();
    let (sent, acks, exhausted, other, flood_for) = flood.await.unwrap();
    srv.settle().await;
    send_json(&mut stx, json!({"type":"ping"})).await;
    let sink_got = sink_task.await.unwrap();
    tally.sent += sent as u64;
    tally.acked.extend(acks.iter().cloned());
    for id in sink_got {
        *tally.delivered.entry(id).or_default() += 1;
    }
    let pq = srv
        .stored(ConversationId::direct(p.uid, q.uid).unwrap())
        .await;
    let fs = srv
        .stored(ConversationId::direct(f.uid, sink.uid).unwrap())
        .await;
    record_persisted(&mut tally, &pq);
    record_persisted(&mut tally, &fs);
    let (u50, u99) = (percentile(&unloaded, 0.5), percentile(&unloaded, 0.99));
    let (l50, l99) = (percentile(&loaded, 0.5), percentile(&loaded, 0.99));
    let limit = u99 * 2 + Duration::from_millis(5);
    let rate = sent as f64 / flood_for.as_secs_f64();
    tally.figure = format!(
        "probe p50/p99 unloaded {}/{}, flooded {}/{} (limit {}); flooder {sent} sends at {rate:.0}/s: {} acked, {exhausted} resource_exhausted",
        ms(u50),
        ms(u99),
        ms(l50),
        ms(l99),
        ms(limit),
        acks.len()
    );
    tally.check();
    assert!(
        other.is_empty(),
        "the flooder got only acks and resource_exhausted: {other:?}"
    );
    assert!(exhausted > 0, "the flooder was throttled: {}", tally.line());
    assert_eq!(
        acks.len() + exhausted,
        sent,
        "every flood send was answered"
    );
    assert!(rate > 700.0, "the flood ran near 1,000/s: {rate:.0}/s");
    assert_eq!(
        (unloaded.len(), loaded.len()),
        (N, N),
        "every probe delivered"
    );
    assert!(
        l99 <= limit,
        "other users' p99 stays within 2x (+5 ms): {}",
        tally.line()
    );
    assert_eq!(srv.panics(), 0);
}

#[test]
fn base64url_matches_rfc4648() {
    assert_eq!(b64url(b""), "");
    assert_eq!(b64url(b"f"), "Zg");
    assert_eq!(b64url(b"fo"), "Zm8");
    assert_eq!(b64url(b"foo"), "Zm9v");
    assert_eq!(b64url(b"foobar"), "Zm9vYmFy");
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
}

#[test]
fn percentiles() {
    let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
    assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
    assert_eq!(percentile(&[], 0.99), Duration::ZERO);
}
