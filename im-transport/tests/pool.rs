//! `LogicPool` and `DiscoveryLocator` against real LogicRpc servers on
//! loopback: two servers over the same in-process node, registered in a
//! `MemoryDiscovery` under `logic`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use im_core::id::{ConversationId, UserId};
use im_core::logic::{GroupCommand, LogicApi, Sender};
use im_core::memory::MemoryDiscovery;
use im_core::model::{MessageKind, Target};
use im_core::node::{Backends, Node, NodeConfig};
use im_core::ports::{Discovery, ServiceInstance};
use im_core::protocol::{SendAck, SendRequest};
use im_core::{Error, ErrorCode};
use im_transport::grpc::{
    BreakerConfig, BreakerState, DiscoveryLocator, GrpcClientConfig, InstanceStatus, LogicPool,
    LogicRpcServer, NO_INSTANCE,
};
use im_transport::http::WsLocator;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"test secret test secret test secret!";
const PASSWORD: &str = "correct horse battery";
const LOGIC: &str = "logic";

/// One LogicRpc server registered in discovery.
struct Server {
    id: String,
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<im_core::Result<()>>,
}

impl Server {
    /// Graceful shutdown: in-flight calls finish, then the port is closed.
    async fn kill(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn serve_on(node: &Node, listener: TcpListener, id: &str) -> Server {
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        LogicRpcServer::new(node.logic.clone()).serve(listener, stop.clone().cancelled_owned()),
    );
    Server {
        id: id.to_owned(),
        addr,
        stop,
        task,
    }
}

async fn serve(node: &Node, discovery: &MemoryDiscovery, id: &str) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = serve_on(node, listener, id).await;
    discovery
        .register(ServiceInstance::new(
            LOGIC,
            id,
            format!("http://{}", server.addr),
        ))
        .await
        .unwrap();
    server
}

struct Setup {
    node: Node,
    discovery: Arc<MemoryDiscovery>,
    a: Server,
    b: Server,
    pool: Arc<LogicPool>,
}

fn client_config() -> GrpcClientConfig {
    GrpcClientConfig {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(3),
        ..GrpcClientConfig::default()
    }
}

async fn setup(breaker: BreakerConfig) -> Setup {
    let node = Node::start(Backends::memory(SECRET), NodeConfig::default())
        .await
        .unwrap();
    let discovery = Arc::new(MemoryDiscovery::new());
    let a = serve(&node, &discovery, "a").await;
    let b = serve(&node, &discovery, "b").await;
    let pool = Arc::new(LogicPool::with_breaker(
        discovery.watch(LOGIC).await.unwrap(),
        client_config(),
        breaker,
    ));
    Setup {
        node,
        discovery,
        a,
        b,
        pool,
    }
}

impl Setup {
    async fn shutdown(self) {
        drop(self.pool);
        self.a.stop.cancel();
        self.b.stop.cancel();
        let _ = self.a.task.await;
        let _ = self.b.task.await;
        self.node.shutdown().await;
    }
}

fn status(pool: &LogicPool, id: &str) -> InstanceStatus {
    pool.instances()
        .into_iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("{id} not in the pool"))
}

fn text(cmid: &str, to: Target) -> SendRequest {
    SendRequest {
        client_msg_id: cmid.into(),
        to,
        kind: MessageKind::Text,
        body: serde_json::json!(cmid),
        deliver_at: None,
        mentions: None,
    }
}

/// Every persisted message of a conversation (history is written
/// asynchronously, so wait until at least `expected` are there).
async fn history(
    node: &Node,
    user: UserId,
    conversation: ConversationId,
    expected: usize,
) -> usize {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut count = 0;
            let mut after = 0;
            loop {
                let page = node
                    .logic
                    .sync(user, conversation, after, Some(100))
                    .await
                    .unwrap();
                count += page.messages.len();
                after = page.messages.last().map_or(after, |m| m.seq);
                if !page.has_more {
                    break;
                }
            }
            if count >= expected {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("history persisted within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_every_instance() {
    let s = setup(BreakerConfig::default()).await;
    let ids: Vec<String> = s.pool.instances().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["a", "b"]);

    let alice = s.pool.register("alice", PASSWORD).await.unwrap();
    let bob = s.pool.register("bob", PASSWORD).await.unwrap();
    let login = s.pool.login("alice", PASSWORD).await.unwrap();
    for i in 0..20 {
        assert_eq!(
            s.pool.verify_token(&login.token).await.unwrap().user_id,
            alice
        );
        s.pool
            .send(
                Sender::http(alice),
                text(&format!("m{i}"), Target::User(bob)),
            )
            .await
            .unwrap();
    }
    // Errors the server answers come through unchanged and are not retried.
    let e = s.pool.register("alice", PASSWORD).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    let e = s.pool.login("alice", "wrong password").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unauthenticated);

    let (a, b) = (status(&s.pool, "a"), status(&s.pool, "b"));
    assert_eq!(a.calls + b.calls, 45, "{a:?} {b:?}");
    assert!(a.calls >= 20 && b.calls >= 20, "uneven: {a:?} {b:?}");
    assert_eq!((a.failures, b.failures), (0, 0));
    assert_eq!(a.state, BreakerState::Closed);
    assert_eq!(b.state, BreakerState::Closed);

    // A batch goes to one instance and answers every item.
    let batch: Vec<_> = (0..5)
        .map(|i| {
            (
                Sender::http(bob),
                text(&format!("b{i}"), Target::User(alice)),
            )
        })
        .collect();
    let acks = s.pool.send_batch(batch).await;
    assert_eq!(acks.len(), 5);
    assert!(acks.iter().all(Result::is_ok), "{acks:?}");
    assert!(s.pool.send_batch(Vec::new()).await.is_empty());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_an_instance_mid_stream_loses_no_acknowledged_send() {
    let s = setup(BreakerConfig {
        failure_threshold: 3,
        // Long enough that the dead instance gets no probe during the test.
        open_for: Duration::from_secs(60),
    })
    .await;
    let alice = s.pool.register("alice", PASSWORD).await.unwrap();
    let bob = s.pool.register("bob", PASSWORD).await.unwrap();

    const WORKERS: usize = 4;
    const PER_WORKER: usize = 60;
    const TOTAL: usize = WORKERS * PER_WORKER;
    let done = Arc::new(AtomicUsize::new(0));
    let halfway = Arc::new(Notify::new());
    let workers: Vec<JoinHandle<Vec<Result<SendAck, Error>>>> = (0..WORKERS)
        .map(|w| {
            let (pool, done, halfway) = (s.pool.clone(), done.clone(), halfway.clone());
            tokio::spawn(async move {
                let mut results = Vec::with_capacity(PER_WORKER);
                for i in 0..PER_WORKER {
                    let r = pool
                        .send(
                            Sender::http(alice),
                            text(&format!("w{w}-{i}"), Target::User(bob)),
                        )
                        .await;
                    results.push(r);
                    if done.fetch_add(1, Ordering::SeqCst) + 1 == TOTAL / 2 {
                        halfway.notify_one();
                    }
                }
                results
            })
        })
        .collect();
    halfway.notified().await;
    let Setup {
        node,
        discovery,
        a,
        b,
        pool,
    } = s;
    // Killed while the workers keep sending; it stays in discovery (as a
    // crashed process does until its lease expires).
    b.kill().await;
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await.unwrap());
    }
    assert_eq!(results.len(), TOTAL);

    let acks: Vec<&SendAck> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let failures: Vec<&Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.iter().all(|e| e.is_retryable()),
        "only retryable failures: {failures:?}"
    );
    println!("{} ok, {} failed", acks.len(), failures.len());
    let ids: HashSet<_> = acks.iter().map(|a| a.msg_id).collect();
    assert_eq!(ids.len(), acks.len(), "every ack is a distinct message");

    // Every acknowledged send exists, and nothing else does.
    let conversation = ConversationId::direct(alice, bob).unwrap();
    let stored = history(&node, alice, conversation, acks.len()).await;
    assert_eq!(stored, acks.len());

    // The dead instance's breaker is open and it gets no more calls.
    let dead = status(&pool, "b");
    assert_eq!(dead.state, BreakerState::Open, "{dead:?}");
    assert!(dead.failures >= 3, "{dead:?}");
    assert_eq!(status(&pool, "a").state, BreakerState::Closed);
    for i in 0..20 {
        pool.send(
            Sender::http(alice),
            text(&format!("after-{i}"), Target::User(bob)),
        )
        .await
        .unwrap();
    }
    let later = status(&pool, "b");
    assert_eq!(later.calls, dead.calls, "no call went to the dead instance");
    assert_eq!(later.failures, dead.failures);
    assert_eq!(later.state, BreakerState::Open);

    drop(pool);
    drop(discovery);
    a.kill().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_retry_even_non_idempotent_calls() {
    let s = setup(BreakerConfig::default()).await;
    let Setup {
        node,
        discovery,
        a,
        b,
        pool,
    } = s;
    // b is dead before the pool ever used it: every call that picks it is
    // refused at connect, which proves the request never left.
    b.kill().await;
    let alice = pool.register("alice", PASSWORD).await.unwrap();
    let bob = pool.register("bob", PASSWORD).await.unwrap();
    let group = pool.create_group(alice, "team").await.unwrap();
    pool.add_member(alice, group, bob).await.unwrap();
    let members = pool.members(alice, group).await.unwrap();
    assert_eq!(members.len(), 2);
    pool.remove_member(alice, group, bob).await.unwrap();
    assert_eq!(pool.members(alice, group).await.unwrap().len(), 1);
    let dead = status(&pool, "b");
    assert!(dead.failures >= 1, "b was tried: {dead:?}");

    drop(pool);
    drop(discovery);
    a.kill().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_half_opens_and_closes_when_the_instance_is_back() {
    let s = setup(BreakerConfig {
        failure_threshold: 3,
        open_for: Duration::from_millis(300),
    })
    .await;
    let Setup {
        node,
        discovery,
        a,
        b,
        pool,
    } = s;
    let token = {
        pool.register("alice", PASSWORD).await.unwrap();
        pool.login("alice", PASSWORD).await.unwrap().token
    };
    let b_addr = b.addr;
    let b_id = b.id.clone();
    b.kill().await;
    // Calls keep succeeding (retried on a) until b's breaker opens.
    tokio::time::timeout(Duration::from_secs(5), async {
        while status(&pool, &b_id).state != BreakerState::Open {
            pool.verify_token(&token).await.unwrap();
        }
    })
    .await
    .expect("b's breaker opens");

    // b comes back on the same address; after the cool-down a probe closes it.
    let b = serve_on(&node, TcpListener::bind(b_addr).await.unwrap(), &b_id).await;
    let before = status(&pool, &b_id).calls;
    tokio::time::timeout(Duration::from_secs(5), async {
        while status(&pool, &b_id).state != BreakerState::Closed {
            pool.verify_token(&token).await.unwrap();
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("b's breaker closes after a successful probe");
    for _ in 0..10 {
        pool.verify_token(&token).await.unwrap();
    }
    assert!(
        status(&pool, &b_id).calls >= before + 5,
        "b takes calls again"
    );

    drop(pool);
    drop(discovery);
    a.kill().await;
    b.kill().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistered_instances_leave_the_pool() {
    let s = setup(BreakerConfig::default()).await;
    assert_eq!(s.pool.instances().len(), 2);
    let b_client = status(&s.pool, "b");
    assert_eq!(b_client.addr, format!("http://{}", s.b.addr));

    s.discovery.deregister(LOGIC, "b").await.unwrap();
    // The pool's background task follows the watch without any call.
    tokio::time::timeout(Duration::from_secs(5), async {
        while s.pool.instances().len() != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("b's client dropped");
    assert_eq!(s.pool.instances()[0].id, "a");

    // Every call now goes to a.
    let before = status(&s.pool, "a").calls;
    s.pool.register("alice", PASSWORD).await.unwrap();
    for _ in 0..5 {
        s.pool.login("alice", PASSWORD).await.unwrap();
    }
    assert_eq!(status(&s.pool, "a").calls, before + 6);

    // Re-registered, it comes back with a fresh client and breaker; a call
    // right after registering already sees it.
    s.discovery
        .register(ServiceInstance::new(
            LOGIC,
            "b",
            format!("http://{}", s.b.addr),
        ))
        .await
        .unwrap();
    s.pool.login("alice", PASSWORD).await.unwrap();
    let b = status(&s.pool, "b");
    assert_eq!((b.state, b.failures), (BreakerState::Closed, 0));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_instance_is_unavailable() {
    let node = Node::start(Backends::memory(SECRET), NodeConfig::default())
        .await
        .unwrap();
    let discovery = MemoryDiscovery::new();
    let pool = LogicPool::new(discovery.watch(LOGIC).await.unwrap(), client_config());
    assert!(pool.instances().is_empty());

    let e = pool.login("alice", PASSWORD).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert_eq!(e.to_string(), NO_INSTANCE);
    assert!(e.is_retryable());
    let e = pool.register("alice", PASSWORD).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    let batch = pool
        .send_batch(vec![(
            Sender::http(UserId(1)),
            text("x", Target::User(UserId(2))),
        )])
        .await;
    assert_eq!(batch.len(), 1);
    assert_eq!(
        batch[0].as_ref().unwrap_err().code(),
        ErrorCode::Unavailable
    );

    // An instance registered later is used at once.
    let a = serve(&node, &discovery, "a").await;
    pool.register("alice", PASSWORD).await.unwrap();
    assert_eq!(pool.instances().len(), 1);

    drop(pool);
    a.kill().await;
    node.shutdown().await;
}

fn connect_node(id: &str, ws: Option<&str>, sessions: Option<u64>) -> ServiceInstance {
    let mut i = ServiceInstance::new("connect", id, format!("http://{id}:7100"));
    if let Some(ws) = ws {
        i = i.with_meta("ws_url", ws);
    }
    if let Some(n) = sessions {
        i = i.with_meta("sessions", n.to_string());
    }
    i
}

#[tokio::test]
async fn locator_picks_the_least_loaded_connect_node() {
    let discovery = MemoryDiscovery::new();
    let locator = DiscoveryLocator::new(discovery.watch("connect").await.unwrap());
    let user = UserId(1);

    let e = locator.locate(user, Some("api:8080")).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");

    // A node without ws_url is never picked.
    discovery
        .register(connect_node("n0", None, Some(0)))
        .await
        .unwrap();
    assert_eq!(
        locator.locate(user, None).await.unwrap_err().code(),
        ErrorCode::Unavailable
    );

    discovery
        .register(connect_node("n1", Some("ws://n1/ws"), Some(5)))
        .await
        .unwrap();
    discovery
        .register(connect_node("n2", Some("ws://n2/ws"), Some(2)))
        .await
        .unwrap();
    discovery
        .register(connect_node("n3", Some("ws://n3/ws"), Some(9)))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(locator.locate(user, None).await.unwrap(), "ws://n2/ws");
    }

    // n2's load is refreshed: n1 is now the least loaded.
    discovery
        .register(connect_node("n2", Some("ws://n2/ws"), Some(12)))
        .await
        .unwrap();
    assert_eq!(locator.locate(user, None).await.unwrap(), "ws://n1/ws");

    // Ties go round-robin.
    discovery
        .register(connect_node("n3", Some("ws://n3/ws"), Some(5)))
        .await
        .unwrap();
    let picks: HashSet<String> = [
        locator.locate(user, None).await.unwrap(),
        locator.locate(user, None).await.unwrap(),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        picks,
        HashSet::from(["ws://n1/ws".to_owned(), "ws://n3/ws".to_owned()])
    );

    // Leaving nodes are no longer picked.
    for id in ["n0", "n1", "n2"] {
        discovery.deregister("connect", id).await.unwrap();
    }
    assert_eq!(locator.locate(user, None).await.unwrap(), "ws://n3/ws");
    discovery.deregister("connect", "n3").await.unwrap();
    assert_eq!(
        locator.locate(user, None).await.unwrap_err().code(),
        ErrorCode::Unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_idempotent_calls_are_not_retried_after_a_timeout() {
    let node = Node::start(Backends::memory(SECRET), NodeConfig::default())
        .await
        .unwrap();
    let discovery = MemoryDiscovery::new();
    let a = serve(&node, &discovery, "a").await;
    // "hung" accepts TCP connections (the kernel does) but never answers,
    // so a request sent to it may have been received: no retry for
    // register, one retry for login.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    discovery
        .register(ServiceInstance::new(
            LOGIC,
            "hung",
            format!("http://{}", hung.local_addr().unwrap()),
        ))
        .await
        .unwrap();
    let pool = LogicPool::new(
        discovery.watch(LOGIC).await.unwrap(),
        GrpcClientConfig {
            connect_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(500),
            ..GrpcClientConfig::default()
        },
    );

    let mut created = Vec::new();
    for i in 0..4 {
        let name = format!("user{i}");
        match pool.register(&name, PASSWORD).await {
            Ok(_) => created.push(name),
            Err(e) => assert!(e.is_retryable(), "{e:?}"),
        }
    }
    assert_eq!(created.len(), 2, "the two registers sent to hung failed");
    assert_eq!(status(&pool, "hung").failures, 2);
    // Logins are retried on a, so all succeed (and hung's breaker opens).
    for name in &created {
        pool.login(name, PASSWORD).await.unwrap();
        pool.login(name, PASSWORD).await.unwrap();
    }
    let h = status(&pool, "hung");
    assert_eq!(h.state, BreakerState::Open, "{h:?}");

    drop(pool);
    drop(hung);
    a.kill().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_1_calls_retry_only_when_idempotent() {
    let node = Node::start(Backends::memory(SECRET), NodeConfig::default())
        .await
        .unwrap();
    let discovery = MemoryDiscovery::new();
    let a = serve(&node, &discovery, "a").await;
    // Accepts connections, never answers: a call sent to it may have arrived.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    discovery
        .register(ServiceInstance::new(
            LOGIC,
            "hung",
            format!("http://{}", hung.local_addr().unwrap()),
        ))
        .await
        .unwrap();
    let pool = LogicPool::with_breaker(
        discovery.watch(LOGIC).await.unwrap(),
        GrpcClientConfig {
            connect_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(300),
            ..GrpcClientConfig::default()
        },
        // Keep hung in rotation for the whole test.
        BreakerConfig {
            failure_threshold: 1000,
            open_for: Duration::from_secs(60),
        },
    );
    let alice = node.logic.register("alice", PASSWORD).await.unwrap();
    let bob = node.logic.register("bob", PASSWORD).await.unwrap();
    let group = node.logic.create_group(alice, "team").await.unwrap();
    node.logic.add_member(alice, group, bob).await.unwrap();
    let ack = node
        .logic
        .send(Sender::http(alice), text("p1", Target::User(bob)))
        .await
        .unwrap();
    history(&node, bob, ack.conversation_id, 1).await;
    let failures = |pool: &LogicPool| status(pool, "hung").failures;

    // Not idempotent: the calls that land on hung fail (round-robin: one in two).
    let mut failed = 0;
    for i in 0..4 {
        let rename = GroupCommand::Rename {
            name: format!("team {i}"),
        };
        if let Err(e) = pool.administer_group(alice, group, rename).await {
            assert!(e.is_retryable(), "{e:?}");
            failed += 1;
        }
    }
    assert_eq!(failed, 2);
    let mut failed = 0;
    for _ in 0..2 {
        if let Err(e) = pool.typing(alice, Target::User(bob)).await {
            assert!(e.is_retryable(), "{e:?}");
            failed += 1;
        }
    }
    assert_eq!(failed, 1);

    // Idempotent: retried on a, so every call succeeds; of two calls in a
    // row at least one lands on hung first.
    let before = failures(&pool);
    for _ in 0..2 {
        pool.group(bob, group).await.unwrap();
    }
    assert!(failures(&pool) > before, "group");
    let before = failures(&pool);
    for _ in 0..2 {
        pool.mark_read(bob, ack.conversation_id, ack.seq, None)
            .await
            .unwrap();
    }
    assert!(failures(&pool) > before, "mark_read");
    let before = failures(&pool);
    for _ in 0..2 {
        pool.recall(alice, ack.msg_id).await.unwrap();
    }
    assert!(failures(&pool) > before, "recall");
    let before = failures(&pool);
    for _ in 0..2 {
        pool.conversations(bob, None, None).await.unwrap();
    }
    assert!(failures(&pool) > before, "conversations");
    let before = failures(&pool);
    for _ in 0..2 {
        assert_eq!(pool.presence(vec![alice, bob]).await.unwrap().len(), 2);
    }
    assert!(failures(&pool) > before, "presence");
    let before = failures(&pool);
    for _ in 0..2 {
        pool.subscribe_presence(alice, vec![bob]).await.unwrap();
    }
    assert!(failures(&pool) > before, "subscribe_presence");
    let held = |cmid: &str| SendRequest {
        deliver_at: Some(im_core::id::now_ms() + 60_000),
        ..text(cmid, Target::User(bob))
    };
    let mut scheduled = Vec::new();
    for cmid in ["h1", "h2"] {
        let ack = pool.send(Sender::http(alice), held(cmid)).await.unwrap();
        assert_eq!((ack.seq, ack.deliver_at.is_some()), (0, true));
        scheduled.push(ack.msg_id);
    }
    let before = failures(&pool);
    for _ in 0..2 {
        assert_eq!(pool.scheduled(alice).await.unwrap().len(), 2);
    }
    assert!(failures(&pool) > before, "scheduled");
    let before = failures(&pool);
    for msg_id in &scheduled {
        pool.cancel_scheduled(alice, *msg_id).await.unwrap();
    }
    assert!(failures(&pool) > before, "cancel_scheduled");
    assert!(pool.scheduled(alice).await.unwrap().is_empty());
    // Answers keep their codes through the pool (an idempotent call, so it
    // reaches a even when hung comes first).
    assert_eq!(
        pool.presence(vec![UserId(424_242)])
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );

    drop(pool);
    drop(hung);
    a.kill().await;
    node.shutdown().await;
}
