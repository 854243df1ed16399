//! End-to-end behaviour of the Logic, Task and Connect services on the memory
//! backends, through their public API (no network).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use im_core::connect::SessionHandle;
use im_core::connect::{SessionCtx, CLOSE_KICKED, CLOSE_SLOW_CONSUMER};
use im_core::id::{ConversationId, GroupId, MessageId, UserId};
use im_core::logic::{LogicApi, Sender};
use im_core::model::{Message, MessageKind, Target, User};
use im_core::node::{Backends, Node, NodeConfig};
use im_core::ports::MessageStore;
use im_core::protocol::{ClientFrame, SendAck, SendRequest, ServerFrame};
use im_core::task::{PersistWorker, PushWorker, WorkerConfig, PERSIST_GROUP, PUSH_GROUP};
use im_core::{Error, ErrorCode};
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"test secret test secret test secret!";

async fn start(config: NodeConfig) -> Node {
    Node::start(Backends::memory(SECRET), config).await.unwrap()
}

async fn user(node: &Node, name: &str) -> UserId {
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
    id
}

async fn session(node: &Node, u: UserId) -> (SessionCtx, SessionHandle) {
    node.connect.open(u, "test").await.unwrap()
}

fn text(cmid: &str, to: Target, body: &str) -> SendRequest {
    SendRequest {
        client_msg_id: cmid.into(),
        to,
        kind: MessageKind::Text,
        body: serde_json::json!(body),
        deliver_at: None,
        mentions: None,
    }
}

async fn send_ws(
    node: &Node,
    ctx: &SessionCtx,
    req: SendRequest,
) -> Result<SendAck, (ErrorCode, String)> {
    match node.connect.handle(ctx, ClientFrame::Send(req)).await {
        Some(ServerFrame::SendAck(a)) => Ok(a),
        Some(ServerFrame::Error { code, message, .. }) => Err((code, message)),
        other => panic!("unexpected reply {other:?}"),
    }
}

async fn next_message(h: &mut SessionHandle) -> Message {
    let bytes = tokio::time::timeout(Duration::from_secs(5), h.outbound.recv())
        .await
        .expect("a message within 5 s")
        .expect("session open");
    match ServerFrame::decode(&bytes).unwrap() {
        ServerFrame::Message(m) => m,
        other => panic!("expected a message frame, got {other:?}"),
    }
}

async fn assert_quiet(h: &mut SessionHandle) {
    if let Ok(Some(b)) = tokio::time::timeout(Duration::from_millis(200), h.outbound.recv()).await {
        panic!("unexpected frame {}", String::from_utf8_lossy(&b));
    }
}

/// Like [`assert_quiet`], but `system` messages (group changes) may arrive.
async fn assert_quiet_but_system(h: &mut SessionHandle) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Some(b)) = tokio::time::timeout_at(deadline, h.outbound.recv()).await {
        match ServerFrame::decode(&b).unwrap() {
            ServerFrame::Message(m) if m.kind == MessageKind::System => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn wait_stored(store: &Arc<dyn MessageStore>, conv: ConversationId, seq: u64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while store.last_seq(conv).await.unwrap() < seq {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("persisted in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_reaches_every_session_but_the_sending_one() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let (a1, mut a1h) = session(&node, a).await;
    let (_a2, mut a2h) = session(&node, a).await;
    let (_b1, mut b1h) = session(&node, b).await;
    let (_b2, mut b2h) = session(&node, b).await;
    for i in 1..=3u64 {
        let ack = send_ws(
            &node,
            &a1,
            text(&format!("c{i}"), Target::User(b), &format!("hi {i}")),
        )
        .await
        .unwrap();
        assert_eq!(ack.seq, i);
        assert_eq!(ack.conversation_id, ConversationId::direct(a, b).unwrap());
    }
    for h in [&mut b1h, &mut b2h, &mut a2h] {
        for i in 1..=3u64 {
            let m = next_message(h).await;
            assert_eq!(
                (m.seq, m.from, m.body.as_str()),
                (i, a, Some(format!("hi {i}").as_str()))
            );
        }
    }
    assert_quiet(&mut a1h).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_fifty_gets_each_message_once_and_outsiders_are_refused() {
    let node = start(NodeConfig::default()).await;
    let owner = user(&node, "owner").await;
    let g = node.logic.create_group(owner, "fifty").await.unwrap();
    let mut members = vec![owner];
    for i in 1..50 {
        let u = user(&node, &format!("m{i}")).await;
        node.logic.add_member(owner, g, u).await.unwrap();
        members.push(u);
    }
    let outsider = user(&node, "outsider").await;
    let mut handles = Vec::new();
    for &u in &members {
        handles.push(session(&node, u).await);
    }
    let (octx, mut oh) = session(&node, outsider).await;
    let refused = send_ws(&node, &octx, text("x1", Target::Group(g), "let me in"))
        .await
        .unwrap_err();
    assert_eq!(refused.0, ErrorCode::PermissionDenied);
    // Creating the group and adding members posted system messages first.
    let base = node
        .backends
        .logic
        .sequences
        .current(ConversationId::Group(g))
        .await
        .unwrap();
    assert_eq!(base, 50, "one system message per change");
    let sender = handles[1].0.clone();
    for i in 1..=5 {
        let ack = send_ws(
            &node,
            &sender,
            text(&format!("g{i}"), Target::Group(g), "hello"),
        )
        .await
        .unwrap();
        assert_eq!(
            ack.seq,
            base + i,
            "the refused send took no seq and enqueued nothing"
        );
    }
    for (i, (_, h)) in handles.iter_mut().enumerate() {
        if i == 1 {
            continue;
        }
        let seqs: Vec<u64> = {
            let mut v = Vec::new();
            while v.len() < 5 {
                let m = next_message(h).await;
                if m.kind != MessageKind::System {
                    v.push(m.seq);
                }
            }
            v
        };
        assert_eq!(seqs, (base + 1..=base + 5).collect::<Vec<_>>());
        assert_quiet(h).await;
    }
    assert_quiet(&mut oh).await;
    assert_quiet_but_system(&mut handles[1].1).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_user_syncs_everything_in_order() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    for i in 1..=100 {
        node.logic
            .send(
                Sender::http(a),
                text(&format!("c{i}"), Target::User(b), &format!("m{i}")),
            )
            .await
            .unwrap();
    }
    let conv = ConversationId::direct(a, b).unwrap();
    wait_stored(&node.backends.messages, conv, 100).await;
    let (bctx, _bh) = session(&node, b).await;
    let all = match node
        .connect
        .handle(
            &bctx,
            ClientFrame::Sync {
                conversation_id: conv,
                after_seq: 0,
                limit: Some(100),
            },
        )
        .await
    {
        Some(ServerFrame::SyncResult {
            messages, has_more, ..
        }) => {
            assert!(!has_more);
            messages
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    let page = node.logic.sync(b, conv, 40, Some(100)).await.unwrap();
    assert_eq!(page.messages.len(), 60);
    assert_eq!(page.messages[0].seq, 41);
    let small = node.logic.sync(b, conv, 0, None).await.unwrap();
    assert_eq!(
        (small.messages.len(), small.has_more),
        (50, true),
        "default page is 50"
    );
    let outsider = user(&node, "eve").await;
    assert!(matches!(
        node.logic.sync(outsider, conv, 0, None).await,
        Err(Error::PermissionDenied(_))
    ));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_yield_one_message_and_identical_acks() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let (_bctx, mut bh) = session(&node, b).await;
    let req = text("same", Target::User(b), "once");
    let mut acks = Vec::new();
    for _ in 0..3 {
        acks.push(node.logic.send(Sender::http(a), req.clone()).await.unwrap());
    }
    // Concurrent retries of another key.
    let req2 = text("same-concurrent", Target::User(b), "once more");
    let concurrent =
        futures::future::join_all((0..3).map(|_| node.logic.send(Sender::http(a), req2.clone())))
            .await;
    let concurrent: Vec<SendAck> = concurrent.into_iter().map(Result::unwrap).collect();
    assert!(acks.windows(2).all(|w| w[0] == w[1]), "{acks:?}");
    assert!(
        concurrent.windows(2).all(|w| w[0] == w[1]),
        "{concurrent:?}"
    );
    // A retry with a different payload still gets the original ack.
    let changed = node
        .logic
        .send(Sender::http(a), text("same", Target::User(b), "changed"))
        .await
        .unwrap();
    assert_eq!(changed, acks[0]);
    assert_eq!(next_message(&mut bh).await.seq, 1);
    assert_eq!(next_message(&mut bh).await.seq, 2);
    assert_quiet(&mut bh).await;
    let conv = ConversationId::direct(a, b).unwrap();
    wait_stored(&node.backends.messages, conv, 2).await;
    assert_eq!(
        node.backends
            .messages
            .history(conv, 0, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_bodies_are_distinct_messages() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let sends = (0..50).map(|i| {
        (
            Sender::http(a),
            text(&format!("ok-{i}"), Target::User(b), "ok"),
        )
    });
    let acks = node.logic.send_batch(sends.collect()).await;
    let ids: HashSet<MessageId> = acks.into_iter().map(|a| a.unwrap().msg_id).collect();
    assert_eq!(ids.len(), 50);
    let conv = ConversationId::direct(a, b).unwrap();
    wait_stored(&node.backends.messages, conv, 50).await;
    assert_eq!(
        node.backends
            .messages
            .history(conv, 0, 100)
            .await
            .unwrap()
            .len(),
        50
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sends_get_typed_errors() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let s = Sender::http(a);
    let code = |r: Result<SendAck, Error>| r.unwrap_err().code();
    assert_eq!(
        code(
            node.logic
                .send(s.clone(), text("1", Target::User(a), "me"))
                .await
        ),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(
            node.logic
                .send(s.clone(), text("2", Target::User(UserId(424242)), "who"))
                .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(
            node.logic
                .send(
                    s.clone(),
                    text("3", Target::Group(GroupId(424242)), "where")
                )
                .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(
            node.logic
                .send(s.clone(), text("", Target::User(b), "no id"))
                .await
        ),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(
            node.logic
                .send(s.clone(), text("4", Target::User(b), &"x".repeat(16_385)))
                .await
        ),
        ErrorCode::ResourceExhausted
    );
    let mut obj = text("5", Target::User(b), "");
    obj.kind = MessageKind::Image;
    assert_eq!(
        code(node.logic.send(s.clone(), obj.clone()).await),
        ErrorCode::InvalidArgument
    );
    obj.body = serde_json::json!({"url": "https://x/y.png"});
    assert_eq!(
        node.logic.send(s.clone(), obj).await.unwrap().seq,
        1,
        "failed sends are not remembered and take no seq"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_session_is_closed_and_others_get_everything() {
    let mut config = NodeConfig::default();
    config.connect.session_queue = 16;
    let node = start(config).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let (_slow_ctx, slow) = session(&node, b).await;
    let (_fast_ctx, mut fast) = session(&node, b).await;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        for _ in 0..200 {
            seqs.push(next_message(&mut fast).await.seq);
            progress_tx.send_replace(seqs.len());
        }
        seqs
    });
    // Chunks of 10, each read by the fast session before the next: the fast
    // queue (16) never overflows, the slow one (never read) does.
    for chunk in 0..20 {
        for i in 0..10 {
            node.logic
                .send(
                    Sender::http(a),
                    text(&format!("c{chunk}-{i}"), Target::User(b), "x"),
                )
                .await
                .unwrap();
        }
        let want = (chunk + 1) * 10;
        tokio::time::timeout(Duration::from_secs(5), progress.wait_for(|n| *n >= want))
            .await
            .unwrap()
            .unwrap();
    }
    let seqs = reader.await.unwrap();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    assert!(
        slow.closed.is_cancelled(),
        "the session that never reads is closed"
    );
    assert_eq!(slow.close_reason().unwrap().code, CLOSE_SLOW_CONSUMER);
    node.shutdown().await;
}

/// A message store that fails while `down` is set.
struct FlakyStore {
    inner: Arc<dyn MessageStore>,
    down: AtomicBool,
}

#[async_trait]
impl MessageStore for FlakyStore {
    async fn append(&self, batch: &[Message]) -> im_core::Result<u64> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::unavailable_msg("store down (test)"));
        }
        self.inner.append(batch).await
    }
    async fn history(
        &self,
        c: ConversationId,
        after: u64,
        limit: usize,
    ) -> im_core::Result<Vec<Message>> {
        self.inner.history(c, after, limit).await
    }
    async fn last_seq(&self, c: ConversationId) -> im_core::Result<u64> {
        self.inner.last_seq(c).await
    }
    async fn get(&self, id: MessageId) -> im_core::Result<Option<Message>> {
        self.inner.get(id).await
    }
    async fn recall(&self, id: MessageId) -> im_core::Result<bool> {
        self.inner.recall(id).await
    }
    async fn edit(
        &self,
        id: MessageId,
        body: &serde_json::Value,
        at: i64,
    ) -> im_core::Result<bool> {
        self.inner.edit(id, body, at).await
    }
}

fn fast_worker(name: &str) -> WorkerConfig {
    WorkerConfig {
        consumer: name.into(),
        block: Duration::from_millis(50),
        claim_idle: Duration::from_millis(300),
        claim_every: Duration::from_millis(100),
        max_backoff: Duration::from_millis(100),
        ..WorkerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_retries_while_the_store_is_down() {
    let mut backends = Backends::memory(SECRET);
    let flaky = Arc::new(FlakyStore {
        inner: backends.messages.clone(),
        down: AtomicBool::new(true),
    });
    backends.messages = flaky.clone();
    let node = Node::start(
        backends,
        NodeConfig {
            worker: fast_worker("w"),
            ..NodeConfig::default()
        },
    )
    .await
    .unwrap();
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    for i in 0..30 {
        node.logic
            .send(
                Sender::http(a),
                text(&format!("c{i}"), Target::User(b), "x"),
            )
            .await
            .unwrap();
    }
    let conv = ConversationId::direct(a, b).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        flaky.inner.last_seq(conv).await.unwrap(),
        0,
        "nothing stored while down"
    );
    let stats = node.backends.queue.stats(PERSIST_GROUP).await.unwrap();
    assert_eq!(
        stats.pending + stats.lag,
        30,
        "the entries stay in the queue while the store is down"
    );
    flaky.down.store(false, Ordering::SeqCst);
    wait_stored(&node.backends.messages, conv, 30).await;
    let all = flaky.inner.history(conv, 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_entries_are_claimed_and_finished() {
    // Logic alone, no workers yet: the queue holds what Logic acked.
    let backends = Backends::memory(SECRET);
    let logic = im_core::logic::Logic::new(backends.logic.clone(), Default::default()).unwrap();
    let hub = Arc::new(im_core::connect::Hub::new(
        im_core::model::NodeId::new("n1"),
        1024,
    ));
    let pusher = Arc::new(im_core::connect::LocalPusher::new([hub.clone()]));
    let a = UserId(1);
    let b = UserId(2);
    for (id, name) in [(a, "alice"), (b, "bob")] {
        backends
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
    }
    let mut bh = hub.open(b, "web");
    backends
        .logic
        .sessions
        .bind(
            &im_core::model::SessionRoute {
                user_id: b,
                node: hub.node().clone(),
                session_id: bh.id,
                device: "web".into(),
                token_id: None,
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    // Both groups exist before the sends.
    let mut dead_push = backends
        .queue
        .consumer(PUSH_GROUP, "dead-push")
        .await
        .unwrap();
    let mut dead_persist = backends
        .queue
        .consumer(PERSIST_GROUP, "dead-persist")
        .await
        .unwrap();
    for i in 0..20 {
        logic
            .send(
                Sender::http(a),
                text(&format!("c{i}"), Target::User(b), "x"),
            )
            .await
            .unwrap();
    }
    // The dead consumers take everything and never ack.
    assert_eq!(
        dead_push
            .fetch(100, Duration::from_secs(1))
            .await
            .unwrap()
            .len(),
        20
    );
    assert_eq!(
        dead_persist
            .fetch(100, Duration::from_secs(1))
            .await
            .unwrap()
            .len(),
        20
    );
    let stop = CancellationToken::new();
    let push = PushWorker::new(
        backends.queue.clone(),
        backends.logic.sessions.clone(),
        backends.logic.groups.clone(),
        pusher,
        fast_worker("heir-push"),
    );
    let persist = PersistWorker::new(
        backends.queue.clone(),
        backends.messages.clone(),
        backends.logic.conversations.clone(),
        fast_worker("heir-persist"),
    );
    let t1 = tokio::spawn(push.run(stop.clone()));
    let t2 = tokio::spawn(persist.run(stop.clone()));
    let mut seqs = Vec::new();
    for _ in 0..20 {
        seqs.push(next_message(&mut bh).await.seq);
    }
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    let conv = ConversationId::direct(a, b).unwrap();
    wait_stored(&backends.messages, conv, 20).await;
    assert_eq!(
        backends.messages.history(conv, 0, 100).await.unwrap().len(),
        20,
        "each message stored exactly once"
    );
    stop.cancel();
    t1.await.unwrap().unwrap();
    t2.await.unwrap().unwrap();
    assert_eq!(
        backends.queue.stats(PERSIST_GROUP).await.unwrap().pending,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_enforce_roles() {
    let node = start(NodeConfig::default()).await;
    let owner = user(&node, "owner").await;
    let admin = user(&node, "admin").await;
    let m = user(&node, "member").await;
    let m2 = user(&node, "member2").await;
    let g = node.logic.create_group(owner, "team").await.unwrap();
    node.logic.add_member(owner, g, admin).await.unwrap();
    node.backends
        .logic
        .groups
        .set_role(g, admin, im_core::model::Role::Admin)
        .await
        .unwrap();
    node.logic.add_member(admin, g, m).await.unwrap();
    assert_eq!(
        node.logic.add_member(m, g, m2).await.unwrap_err().code(),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        node.logic.add_member(owner, g, m).await.unwrap_err().code(),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        node.logic
            .add_member(owner, g, UserId(99))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        node.logic
            .remove_member(m, g, admin)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        node.logic
            .remove_member(admin, g, owner)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        node.logic
            .remove_member(owner, g, owner)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::PermissionDenied,
        "the owner cannot leave"
    );
    assert_eq!(
        node.logic.members(m2, g).await.unwrap_err().code(),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        node.logic.members(m2, GroupId(1)).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    node.logic.remove_member(admin, g, m).await.unwrap();
    node.logic.add_member(owner, g, m2).await.unwrap();
    node.logic.remove_member(m2, g, m2).await.unwrap();
    let members = node.logic.members(owner, g).await.unwrap();
    assert_eq!(members.len(), 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_and_tokens() {
    let node = start(NodeConfig::default()).await;
    let id = node.logic.register("carol", "password1").await.unwrap();
    assert_eq!(
        node.logic
            .register("carol", "password2")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        node.logic
            .register("c", "password1")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        node.logic
            .register("carol2", "short")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidArgument
    );
    let login = node.logic.login("carol", "password1").await.unwrap();
    assert_eq!(login.user_id, id);
    assert_eq!(
        node.logic.verify_token(&login.token).await.unwrap().user_id,
        id
    );
    assert_eq!(
        node.logic
            .login("carol", "password2")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Unauthenticated
    );
    assert_eq!(
        node.logic
            .login("nobody", "password1")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Unauthenticated
    );
    assert_eq!(
        node.logic.verify_token("garbage").await.unwrap_err().code(),
        ErrorCode::Unauthenticated
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_frames_get_error_frames() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let (ctx, _h) = session(&node, a).await;
    for junk in [
        &b"{"[..],
        b"[]",
        br#"{"type":"fly"}"#,
        br#"{"type":"send"}"#,
        b"\xff\xfe",
    ] {
        match node.connect.handle_text(&ctx, junk).await {
            Some(ServerFrame::Error { code, .. }) => assert_eq!(code, ErrorCode::InvalidArgument),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        node.connect.handle_text(&ctx, br#"{"type":"ping"}"#).await,
        Some(ServerFrame::Pong)
    );
    node.shutdown().await;
}

/// The `kicked` frame and close code of a session the server closes.
async fn kicked(h: &mut SessionHandle) -> (String, u16) {
    let bytes = tokio::time::timeout(Duration::from_secs(2), h.outbound.recv())
        .await
        .expect("a kicked frame within 2 s")
        .expect("the frame is queued before the close");
    let reason = match ServerFrame::decode(&bytes).unwrap() {
        ServerFrame::Kicked { reason } => reason,
        other => panic!("expected kicked, got {other:?}"),
    };
    tokio::time::timeout(Duration::from_secs(2), h.closed.cancelled())
        .await
        .expect("closed");
    (reason, h.close_reason().unwrap().code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_token_and_kicks_only_its_sessions() {
    let node = start(NodeConfig::default()).await;
    let dave = node.logic.register("dave", "password1").await.unwrap();
    let erin = user(&node, "erin").await;
    let a = node.logic.login("dave", "password1").await.unwrap().token;
    let b = node.logic.login("dave", "password1").await.unwrap().token;
    assert_ne!(a, b, "two logins get two tokens");
    let auth_a = node.connect.authenticate_session(&a).await.unwrap();
    let auth_b = node.connect.authenticate_session(&b).await.unwrap();
    assert_eq!(auth_a.user, dave);
    assert_eq!(
        auth_a.token_id.as_deref(),
        Some(im_core::auth::token_id(&a).as_str())
    );
    assert!(auth_a.expires_at.is_some());
    let (a1c, mut a1) = node.connect.open_as(&auth_a, "web").await.unwrap();
    let (a2c, mut a2) = node.connect.open_as(&auth_a, "ios").await.unwrap();
    let (_, mut b1) = node.connect.open_as(&auth_b, "web").await.unwrap();

    node.logic.logout(&a).await.unwrap();
    for h in [&mut a1, &mut a2] {
        assert_eq!(
            kicked(h).await,
            (im_core::logic::LOGGED_OUT.to_owned(), CLOSE_KICKED)
        );
    }
    // What the transport does once a kicked socket has closed.
    node.connect.close(&a1c, "web").await;
    node.connect.close(&a2c, "ios").await;
    assert_eq!(
        node.logic.verify_token(&a).await.unwrap_err().code(),
        ErrorCode::Unauthenticated,
        "a logged-out token is refused"
    );
    node.logic
        .logout(&a)
        .await
        .expect("logging out again is a no-op");
    assert_eq!(
        node.logic.logout("garbage").await.unwrap_err().code(),
        ErrorCode::Unauthenticated
    );
    // A session opening with the revoked token after its check passed (a
    // race with the logout) is refused when its route is bound.
    assert_eq!(
        node.connect
            .open_as(&auth_a, "web")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Unauthenticated
    );
    // Token B and its session are untouched.
    assert_eq!(node.logic.verify_token(&b).await.unwrap().user_id, dave);
    assert!(!b1.closed.is_cancelled());
    node.logic
        .send(
            Sender::http(erin),
            text("still-1", Target::User(dave), "still here?"),
        )
        .await
        .unwrap();
    assert_eq!(next_message(&mut b1).await.body, "still here?");
    let routes = node.backends.logic.sessions.lookup(&[dave]).await.unwrap();
    assert_eq!(routes.len(), 1, "only token B's route is left: {routes:?}");
    assert_eq!(routes[0].token_id, auth_b.token_id);
    node.shutdown().await;
}
