//! LogicRpc and ConnectRpc end to end: an in-process node on the memory
//! backends behind real gRPC servers on loopback, driven through
//! `LogicGrpcClient` and `GrpcPusher`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use im_core::connect::SessionHandle;
use im_core::id::{ConversationId, GroupId, MessageId, SessionId, UserId};
use im_core::logic::{GroupCommand, LogicApi, Sender};
use im_core::model::{Message, MessageKind, NodeId, Role, SessionRoute, Target};
use im_core::node::{Backends, Node, NodeConfig};
use im_core::ports::{PushBatch, PushItem, Pusher, ServiceInstance};
use im_core::protocol::{SendRequest, ServerFrame};
use im_core::{Error, ErrorCode};
use im_transport::grpc::{
    ConnectRpcServer, GrpcClientConfig, GrpcPusher, LogicGrpcClient, LogicRpcServer,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"test secret test secret test secret!";
const PASSWORD: &str = "correct horse battery";

struct Cluster {
    node: Node,
    logic_addr: SocketAddr,
    connect_addr: SocketAddr,
    stop: CancellationToken,
    servers: Vec<JoinHandle<im_core::Result<()>>>,
}

async fn start() -> Cluster {
    let node = Node::start(Backends::memory(SECRET), NodeConfig::default())
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let logic_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let connect_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let logic_addr = logic_listener.local_addr().unwrap();
    let connect_addr = connect_listener.local_addr().unwrap();
    let servers = vec![
        tokio::spawn(
            LogicRpcServer::new(node.logic.clone())
                .serve(logic_listener, stop.clone().cancelled_owned()),
        ),
        tokio::spawn(
            ConnectRpcServer::new(node.hub.clone())
                .serve(connect_listener, stop.clone().cancelled_owned()),
        ),
    ];
    Cluster {
        node,
        logic_addr,
        connect_addr,
        stop,
        servers,
    }
}

impl Cluster {
    async fn shutdown(self) {
        self.stop.cancel();
        for s in self.servers {
            s.await.unwrap().unwrap();
        }
        self.node.shutdown().await;
    }
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

async fn next_frame(h: &mut SessionHandle) -> Bytes {
    tokio::time::timeout(Duration::from_secs(5), h.outbound.recv())
        .await
        .expect("a frame within 5 s")
        .expect("session open")
}

fn is_system(bytes: &[u8]) -> bool {
    matches!(ServerFrame::decode(bytes), Ok(ServerFrame::Message(m)) if m.kind == MessageKind::System)
}

/// The next message frame that is not a `system` message (group changes are
/// announced by system messages, which may reach a session opened right after
/// the change).
async fn next_message(h: &mut SessionHandle) -> Message {
    loop {
        let bytes = next_frame(h).await;
        match ServerFrame::decode(&bytes).unwrap() {
            ServerFrame::Message(m) if m.kind == MessageKind::System => continue,
            ServerFrame::Message(m) => return m,
            other => panic!("expected a message frame, got {other:?}"),
        }
    }
}

/// Nothing but (possibly late) system messages arrives for 200 ms.
async fn assert_quiet(h: &mut SessionHandle) {
    while let Ok(Some(b)) =
        tokio::time::timeout(Duration::from_millis(200), h.outbound.recv()).await
    {
        if !is_system(&b) {
            panic!("unexpected frame {}", String::from_utf8_lossy(&b));
        }
    }
}

fn route(node: &Node, user: UserId, h: &SessionHandle) -> SessionRoute {
    SessionRoute {
        user_id: user,
        node: node.hub.node().clone(),
        session_id: h.id,
        device: "test".into(),
        token_id: None,
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorCode {
    r.expect_err("an error").code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logic_over_grpc_keeps_behaviour_and_error_codes() {
    let c = start().await;
    let client = LogicGrpcClient::connect(
        &format!("http://{}", c.logic_addr),
        GrpcClientConfig::default(),
    )
    .await
    .unwrap();

    // Accounts and tokens.
    let alice = client.register("alice", PASSWORD).await.unwrap();
    let bob = client.register("bob", PASSWORD).await.unwrap();
    let carol = client.register("carol", PASSWORD).await.unwrap();
    assert_eq!(
        code(client.register("alice", PASSWORD).await),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        code(client.register("x", PASSWORD).await),
        ErrorCode::InvalidArgument
    );
    let login = client.login("alice", PASSWORD).await.unwrap();
    assert_eq!(login.user_id, alice);
    let identity = client.verify_token(&login.token).await.unwrap();
    assert_eq!(identity.user_id, alice);
    assert_eq!(identity.expires_at, Some(login.expires_at));
    assert_eq!(
        code(client.login("alice", "wrong password").await),
        ErrorCode::Unauthenticated
    );
    assert_eq!(
        code(client.verify_token("not.a.token").await),
        ErrorCode::Unauthenticated
    );

    // Groups.
    let group = client.create_group(alice, "friends").await.unwrap();
    client.add_member(alice, group, bob).await.unwrap();
    assert_eq!(
        code(client.add_member(alice, group, bob).await),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        code(client.add_member(carol, group, carol).await),
        ErrorCode::PermissionDenied
    );
    let mut members = client.members(alice, group).await.unwrap();
    members.sort_by_key(|m| m.role);
    assert_eq!(members.len(), 2);
    assert_eq!((members[0].user_id, members[0].role), (alice, Role::Owner));
    assert_eq!((members[1].user_id, members[1].role), (bob, Role::Member));
    assert_eq!(
        code(client.members(carol, group).await),
        ErrorCode::PermissionDenied
    );

    // Sessions on the hub, routes bound through the client.
    let mut ha = c.node.hub.open(alice, "test");
    let mut hb = c.node.hub.open(bob, "test");
    client
        .connect_session(route(&c.node, alice, &ha))
        .await
        .unwrap();
    client
        .connect_session(route(&c.node, bob, &hb))
        .await
        .unwrap();
    client
        .refresh_sessions(vec![route(&c.node, alice, &ha), route(&c.node, bob, &hb)])
        .await
        .unwrap();

    // 1:1 over "HTTP" (no origin): the peer and all of the sender's sessions get it.
    let ack = client
        .send(Sender::http(alice), text("c1", Target::User(bob), "hi bob"))
        .await
        .unwrap();
    assert_eq!(ack.client_msg_id, "c1");
    assert_eq!(ack.seq, 1);
    let direct = ConversationId::direct(alice, bob).unwrap();
    assert_eq!(ack.conversation_id, direct);
    let m = next_message(&mut hb).await;
    assert_eq!((m.msg_id, m.from, m.seq), (ack.msg_id, alice, 1));
    assert_eq!(m.body, serde_json::json!("hi bob"));
    assert_eq!(next_message(&mut ha).await.msg_id, ack.msg_id);

    // Group send from alice's WebSocket session: bob gets it, the origin only the ack.
    let from_ws = Sender {
        user: alice,
        origin: Some((c.node.hub.node().clone(), ha.id)),
        throttled: false,
    };
    let g_ack = client
        .send(
            from_ws.clone(),
            SendRequest {
                client_msg_id: "g1".into(),
                to: Target::Group(group),
                kind: MessageKind::Custom,
                body: serde_json::json!({"sticker": 7}),
                deliver_at: None,
                mentions: None,
            },
        )
        .await
        .unwrap();
    let m = next_message(&mut hb).await;
    assert_eq!(m.msg_id, g_ack.msg_id);
    assert_eq!(m.kind, MessageKind::Custom);
    assert_eq!(m.body, serde_json::json!({"sticker": 7}));
    assert_quiet(&mut ha).await;

    // Typed errors cross the wire with their codes.
    assert_eq!(
        code(
            client
                .send(Sender::http(carol), text("x1", Target::Group(group), "hey"))
                .await
        ),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(
            client
                .send(
                    Sender::http(alice),
                    text("x2", Target::User(UserId(424_242)), "who?")
                )
                .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(
            client
                .send(Sender::http(alice), text("", Target::User(bob), "no key"))
                .await
        ),
        ErrorCode::InvalidArgument
    );

    // A batch: a duplicated client_msg_id gets identical acks; a bad item fails alone.
    let results = client
        .send_batch(vec![
            (Sender::http(bob), text("b1", Target::User(alice), "one")),
            (Sender::http(bob), text("b1", Target::User(alice), "one")),
            (Sender::http(carol), text("b2", Target::Group(group), "no")),
            (Sender::http(bob), text("b3", Target::Group(group), "two")),
        ])
        .await;
    assert_eq!(results.len(), 4);
    let first = results[0].as_ref().unwrap();
    assert_eq!(results[1].as_ref().unwrap(), first);
    assert_eq!(
        results[2].as_ref().unwrap_err().code(),
        ErrorCode::PermissionDenied
    );
    let b3 = results[3].as_ref().unwrap();
    // The group's seqs also count its system messages (created, member added).
    assert_eq!(b3.seq, g_ack.seq + 1);
    // A later retry of the same key still gets the original ack.
    let again = client
        .send(Sender::http(bob), text("b1", Target::User(alice), "one"))
        .await
        .unwrap();
    assert_eq!(&again, first);
    assert!(client.send_batch(Vec::new()).await.is_empty());

    // Sync (history is persisted asynchronously: wait for it).
    let page = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let page = client.sync(bob, direct, 0, None).await.unwrap();
            if page.messages.len() == 2 {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("history persisted");
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(page.messages[0].body, serde_json::json!("hi bob"));
    assert!(!page.has_more);
    let page = client.sync(bob, direct, 1, Some(1)).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].msg_id, first.msg_id);
    assert_eq!(
        code(client.sync(carol, direct, 0, None).await),
        ErrorCode::PermissionDenied
    );

    // Membership changes and session teardown.
    client.remove_member(alice, group, bob).await.unwrap();
    assert_eq!(
        code(
            client
                .send(Sender::http(bob), text("b4", Target::Group(group), "gone"))
                .await
        ),
        ErrorCode::PermissionDenied
    );
    client
        .disconnect_session(route(&c.node, bob, &hb))
        .await
        .unwrap();

    c.shutdown().await;
}

/// The next frame that is not a message (events: read, recalled, typing, presence).
async fn next_event(h: &mut SessionHandle) -> ServerFrame {
    loop {
        let bytes = next_frame(h).await;
        match ServerFrame::decode(&bytes).unwrap() {
            ServerFrame::Message(_) => continue,
            other => return other,
        }
    }
}

/// Polls `f` until it answers `Some` (persistence is asynchronous).
async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_1_calls_over_grpc_keep_behaviour_and_error_codes() {
    let c = start().await;
    let client = LogicGrpcClient::connect(
        &format!("http://{}", c.logic_addr),
        GrpcClientConfig::default(),
    )
    .await
    .unwrap();
    let alice = client.register("alice", PASSWORD).await.unwrap();
    let bob = client.register("bob", PASSWORD).await.unwrap();
    let carol = client.register("carol", PASSWORD).await.unwrap();

    // Presence: never connected, then online through a bound route.
    let p = client.presence(vec![bob]).await.unwrap();
    assert_eq!(
        (p[0].user_id, p[0].online, p[0].last_seen),
        (bob, false, None)
    );
    assert_eq!(
        code(client.presence(vec![UserId(424_242)]).await),
        ErrorCode::NotFound
    );
    let mut ha = c.node.hub.open(alice, "test");
    client
        .connect_session(route(&c.node, alice, &ha))
        .await
        .unwrap();
    let subscribed = client.subscribe_presence(alice, vec![bob]).await.unwrap();
    assert_eq!(subscribed.len(), 1);
    assert!(!subscribed[0].online);
    let mut hb = c.node.hub.open(bob, "test");
    client
        .connect_session(route(&c.node, bob, &hb))
        .await
        .unwrap();
    match next_event(&mut ha).await {
        ServerFrame::Presence(p) => assert_eq!((p.user_id, p.online), (bob, true)),
        other => panic!("expected presence, got {other:?}"),
    }
    let p = client.presence(vec![bob, alice]).await.unwrap();
    assert_eq!(
        p.iter().map(|p| p.user_id).collect::<Vec<_>>(),
        [bob, alice]
    );
    assert!(p.iter().all(|p| p.online && p.last_seen.is_some()));

    // Read cursors and the conversation list.
    let direct = ConversationId::direct(alice, bob).unwrap();
    let ack = client
        .send(Sender::http(alice), text("d1", Target::User(bob), "hello"))
        .await
        .unwrap();
    assert_eq!(
        code(client.mark_read(bob, direct, ack.seq + 1, None).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(client.mark_read(carol, direct, 1, None).await),
        ErrorCode::PermissionDenied
    );
    let page = eventually("the conversation listed", || async {
        let page = client.conversations(bob, None, None).await.unwrap();
        (page.conversations.len() == 1).then_some(page)
    })
    .await;
    let row = &page.conversations[0];
    assert_eq!(
        (row.conversation_id, row.last_seq, row.read_seq, row.unread),
        (direct, 1, 0, 1)
    );
    assert_eq!(row.last_message.msg_id, ack.msg_id);
    assert_eq!(page.next_cursor, None);
    // Bob reads from his session: alice gets the event, bob's origin does not.
    client
        .mark_read(
            bob,
            direct,
            ack.seq,
            Some((c.node.hub.node().clone(), hb.id)),
        )
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut ha).await,
        ServerFrame::Read {
            conversation_id: direct,
            user_id: bob,
            seq: ack.seq
        }
    );
    let page = client.conversations(bob, None, Some(5)).await.unwrap();
    assert_eq!(page.conversations[0].unread, 0);
    assert_eq!(
        code(client.conversations(bob, Some("junk".into()), None).await),
        ErrorCode::InvalidArgument
    );

    // Typing reaches the peer only.
    client.typing(alice, Target::User(bob)).await.unwrap();
    assert_eq!(
        next_event(&mut hb).await,
        ServerFrame::Typing {
            conversation_id: direct,
            from: alice
        }
    );
    assert_eq!(
        code(client.typing(alice, Target::User(alice)).await),
        ErrorCode::InvalidArgument
    );

    // Recall: unknown, someone else's, then the sender (twice).
    assert_eq!(
        code(client.recall(alice, MessageId(1)).await),
        ErrorCode::NotFound
    );
    eventually("the message persisted", || async {
        let page = client.sync(alice, direct, 0, None).await.unwrap();
        (!page.messages.is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        code(client.recall(bob, ack.msg_id).await),
        ErrorCode::PermissionDenied
    );
    client.recall(alice, ack.msg_id).await.unwrap();
    client.recall(alice, ack.msg_id).await.unwrap();
    let recalled = eventually("the recall stored", || async {
        let page = client.sync(bob, direct, 0, None).await.unwrap();
        page.messages.into_iter().find(|m| m.recalled)
    })
    .await;
    assert_eq!(recalled.body, serde_json::Value::Null);

    // Group details and every administrative command.
    let group = client.create_group(alice, "team").await.unwrap();
    client.add_member(alice, group, bob).await.unwrap();
    client.add_member(alice, group, carol).await.unwrap();
    let g = client.group(bob, group).await.unwrap();
    assert_eq!(
        (g.id, g.name.as_str(), g.owner, g.muted_until),
        (group, "team", alice, None)
    );
    assert_eq!(
        code(client.group(bob, GroupId(9)).await),
        ErrorCode::NotFound
    );
    let rename = GroupCommand::Rename {
        name: "renamed".into(),
    };
    assert_eq!(
        code(client.administer_group(bob, group, rename.clone()).await),
        ErrorCode::PermissionDenied
    );
    client.administer_group(alice, group, rename).await.unwrap();
    assert_eq!(
        code(
            client
                .administer_group(
                    alice,
                    group,
                    GroupCommand::SetRole {
                        user: bob,
                        role: Role::Owner
                    }
                )
                .await
        ),
        ErrorCode::InvalidArgument
    );
    client
        .administer_group(
            alice,
            group,
            GroupCommand::SetRole {
                user: bob,
                role: Role::Admin,
            },
        )
        .await
        .unwrap();
    client
        .administer_group(
            bob,
            group,
            GroupCommand::MuteMember {
                user: carol,
                until: Some(i64::MAX),
            },
        )
        .await
        .unwrap();
    let members = client.members(alice, group).await.unwrap();
    let carol_row = members.iter().find(|m| m.user_id == carol).unwrap();
    assert_eq!(carol_row.muted_until, Some(i64::MAX));
    client
        .administer_group(
            bob,
            group,
            GroupCommand::Mute {
                until: Some(i64::MAX),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        client.group(carol, group).await.unwrap().muted_until,
        Some(i64::MAX)
    );
    client
        .administer_group(alice, group, GroupCommand::Transfer { to: bob })
        .await
        .unwrap();
    let g = client.group(alice, group).await.unwrap();
    assert_eq!((g.name.as_str(), g.owner), ("renamed", bob));
    assert_eq!(
        code(
            client
                .administer_group(alice, group, GroupCommand::Dissolve)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    client
        .administer_group(bob, group, GroupCommand::Dissolve)
        .await
        .unwrap();
    assert_eq!(code(client.group(bob, group).await), ErrorCode::NotFound);
    assert_eq!(
        code(
            client
                .send(Sender::http(bob), text("gone", Target::Group(group), "x"))
                .await
        ),
        ErrorCode::NotFound
    );

    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_sends_over_grpc() {
    let c = start().await;
    let client = LogicGrpcClient::connect(
        &format!("http://{}", c.logic_addr),
        GrpcClientConfig::default(),
    )
    .await
    .unwrap();
    let alice = client.register("alice", PASSWORD).await.unwrap();
    let bob = client.register("bob", PASSWORD).await.unwrap();
    let mut hb = c.node.hub.open(bob, "test");
    client
        .connect_session(route(&c.node, bob, &hb))
        .await
        .unwrap();
    let at = |ms: i64| im_core::id::now_ms() + ms;
    let scheduled = |cmid: &str, body: &str, deliver_at: i64| SendRequest {
        deliver_at: Some(deliver_at),
        ..text(cmid, Target::User(bob), body)
    };

    // deliver_at crosses the wire both ways: held, seq 0, ts = deliver_at.
    let t1 = at(300);
    let ack = client
        .send(Sender::http(alice), scheduled("s1", "later", t1))
        .await
        .unwrap();
    assert_eq!((ack.seq, ack.ts, ack.deliver_at), (0, t1, Some(t1)));
    let again = client
        .send(Sender::http(alice), scheduled("s1", "later", t1))
        .await
        .unwrap();
    assert_eq!(again, ack);
    let t2 = at(60_000);
    let results = client
        .send_batch(vec![(Sender::http(alice), scheduled("s2", "never", t2))])
        .await;
    let ack2 = results[0].as_ref().unwrap().clone();
    assert_eq!((ack2.seq, ack2.deliver_at), (0, Some(t2)));
    assert_eq!(
        code(
            client
                .send(
                    Sender::http(alice),
                    scheduled("far", "too far", at(365 * 86_400_000))
                )
                .await
        ),
        ErrorCode::InvalidArgument
    );

    // Listed soonest first, with the message as it will be delivered.
    let held = client.scheduled(alice).await.unwrap();
    assert_eq!(
        held.iter()
            .map(|s| (s.msg_id(), s.deliver_at))
            .collect::<Vec<_>>(),
        [(ack.msg_id, t1), (ack2.msg_id, t2)]
    );
    let m = &held[0].envelope.message;
    assert_eq!((m.from, m.to, m.seq), (alice, Target::User(bob), 0));
    assert_eq!(m.body, serde_json::json!("later"));
    assert_eq!(m.client_msg_id, "s1");
    assert!(client.scheduled(bob).await.unwrap().is_empty());

    // Cancel: the owner's only, once.
    assert_eq!(
        code(client.cancel_scheduled(bob, ack2.msg_id).await),
        ErrorCode::NotFound
    );
    client.cancel_scheduled(alice, ack2.msg_id).await.unwrap();
    assert_eq!(
        code(client.cancel_scheduled(alice, ack2.msg_id).await),
        ErrorCode::NotFound
    );

    // Delivered with a seq once due.
    let m = next_message(&mut hb).await;
    assert_eq!((m.msg_id, m.seq), (ack.msg_id, 1));
    assert!(m.ts >= t1, "{m:?}");
    // The scheduler drops a due send from the list after enqueueing it, so
    // the delivery can arrive just before the list empties.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !client.scheduled(alice).await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "a delivered scheduled send stays listed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_over_grpc_revokes_and_kicks_by_token_id() {
    let c = start().await;
    let client = LogicGrpcClient::connect(
        &format!("http://{}", c.logic_addr),
        GrpcClientConfig::default(),
    )
    .await
    .unwrap();
    let dave = client.register("dave", PASSWORD).await.unwrap();
    let a = client.login("dave", PASSWORD).await.unwrap().token;
    let b = client.login("dave", PASSWORD).await.unwrap().token;
    let (id_a, id_b) = (im_core::auth::token_id(&a), im_core::auth::token_id(&b));
    let mut ha = c.node.hub.open_with_token(dave, "test", Some(id_a.clone()));
    let hb = c.node.hub.open_with_token(dave, "test", Some(id_b.clone()));
    for (h, id) in [(&ha, &id_a), (&hb, &id_b)] {
        client
            .connect_session(SessionRoute {
                token_id: Some(id.clone()),
                ..route(&c.node, dave, h)
            })
            .await
            .unwrap();
    }
    let mut stored: Vec<Option<String>> = c
        .node
        .backends
        .logic
        .sessions
        .lookup(&[dave])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.token_id)
        .collect();
    stored.sort();
    let mut want = vec![Some(id_a.clone()), Some(id_b.clone())];
    want.sort();
    assert_eq!(stored, want, "the token id travels on the route");

    client.logout(&a).await.unwrap();
    let f = next_frame(&mut ha).await;
    assert_eq!(
        ServerFrame::decode(&f).unwrap(),
        ServerFrame::Kicked {
            reason: im_core::logic::LOGGED_OUT.into()
        }
    );
    tokio::time::timeout(Duration::from_secs(2), ha.closed.cancelled())
        .await
        .unwrap();
    assert_eq!(
        ha.close_reason().unwrap().code,
        im_core::connect::CLOSE_KICKED
    );
    assert!(!hb.closed.is_cancelled(), "token B's session stays");
    assert_eq!(
        code(client.verify_token(&a).await),
        ErrorCode::Unauthenticated
    );
    client
        .logout(&a)
        .await
        .expect("logging out again is a no-op");
    assert_eq!(
        code(client.logout("not.a.token").await),
        ErrorCode::Unauthenticated
    );
    assert_eq!(client.verify_token(&b).await.unwrap().user_id, dave);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_reaches_the_hub_over_connect_rpc() {
    let c = start().await;
    let node = c.node.hub.node().clone();
    let (tx, rx) = watch::channel(vec![ServiceInstance::new(
        "connect",
        node.as_str(),
        format!("http://{}", c.connect_addr),
    )]);
    let pusher = GrpcPusher::new(rx, GrpcClientConfig::default());

    let mut s1 = c.node.hub.open(UserId(1), "test");
    let mut s2 = c.node.hub.open(UserId(2), "test");
    assert_eq!(pusher.session_count(&node).await.unwrap(), 2);

    let f1 = Bytes::from_static(br#"{"type":"pong"}"#);
    let f2 = Bytes::from_static(br#"{"type":"kicked","reason":"x"}"#);
    let stale = SessionId(1);
    let report = pusher
        .push(
            &node,
            PushBatch {
                items: vec![
                    PushItem {
                        frame: f1.clone(),
                        sessions: vec![s1.id, s2.id, stale],
                    },
                    PushItem {
                        frame: f2.clone(),
                        sessions: vec![s2.id],
                    },
                ],
            },
        )
        .await
        .unwrap();
    assert_eq!(report.delivered, 3);
    assert_eq!(report.gone, vec![stale]);
    assert_eq!(next_frame(&mut s1).await, f1);
    assert_eq!(next_frame(&mut s2).await, f1);
    assert_eq!(next_frame(&mut s2).await, f2);
    assert_eq!(pusher.connected_nodes(), vec![node.clone()]);

    // Unknown node: unavailable, retryable.
    let other = NodeId::new("node-9");
    let err = pusher.push(&other, PushBatch::default()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert!(err.is_retryable());
    assert!(matches!(
        pusher.kick(&other, s1.id, "x").await,
        Err(Error::Unavailable { .. })
    ));

    // A different node now answering at this address: nothing is delivered,
    // every session is reported gone.
    let (tx2, rx2) = watch::channel(vec![ServiceInstance::new(
        "connect",
        "impostor",
        format!("http://{}", c.connect_addr),
    )]);
    let confused = GrpcPusher::new(rx2, GrpcClientConfig::default());
    let report = confused
        .push(
            &NodeId::new("impostor"),
            PushBatch {
                items: vec![PushItem {
                    frame: f1.clone(),
                    sessions: vec![s1.id],
                }],
            },
        )
        .await
        .unwrap();
    assert_eq!((report.delivered, report.gone), (0, vec![s1.id]));
    assert_quiet(&mut s1).await;
    drop(tx2);

    // Kick: a kicked frame, then the session is closed.
    assert!(pusher.kick(&node, s1.id, "replaced").await.unwrap());
    let kicked = next_frame(&mut s1).await;
    assert_eq!(
        ServerFrame::decode(&kicked).unwrap(),
        ServerFrame::Kicked {
            reason: "replaced".into()
        }
    );
    assert!(s1.closed.is_cancelled());
    assert!(!pusher.kick(&node, s1.id, "again").await.unwrap());
    assert_eq!(pusher.session_count(&node).await.unwrap(), 1);

    // The node leaves the set: its channel is dropped and pushes are refused.
    tx.send(Vec::new()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !pusher.connected_nodes().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("channel dropped");
    assert_eq!(
        pusher
            .push(&node, PushBatch::default())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Unavailable
    );

    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_are_retryable_errors() {
    // A port nothing listens on.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let config = GrpcClientConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        ..GrpcClientConfig::default()
    };
    let url = format!("http://{addr}");
    let err = LogicGrpcClient::connect(&url, config.clone())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    let lazy = LogicGrpcClient::new(&url, config.clone()).unwrap();
    let err = lazy.register("dave", PASSWORD).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Unavailable);
    let batch = lazy
        .send_batch(vec![
            (
                Sender::http(UserId(1)),
                text("a", Target::User(UserId(2)), "x"),
            ),
            (
                Sender::http(UserId(1)),
                text("b", Target::User(UserId(2)), "y"),
            ),
        ])
        .await;
    assert!(batch.iter().all(|r| r.as_ref().unwrap_err().is_retryable()));

    let (_tx, rx) = watch::channel(vec![ServiceInstance::new("connect", "n1", url)]);
    let pusher = GrpcPusher::new(rx, config.clone());
    let err = pusher
        .push(&NodeId::new("n1"), PushBatch::default())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    // A server that accepts connections but never answers: the deadline fires.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let hung = LogicGrpcClient::new(&silent_url, config.clone()).unwrap();
    let started = std::time::Instant::now();
    let err = hung.login("dave", PASSWORD).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(silent);

    assert_eq!(
        LogicGrpcClient::new("not a url", GrpcClientConfig::default())
            .unwrap_err()
            .code(),
        ErrorCode::InvalidArgument
    );
}

/// v1.2 people commands, mentions, edits and the join cutoff keep their
/// behaviour and error codes through `Execute` and the converted types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_commands_over_grpc() {
    use im_core::logic::{Command, Reply};
    use im_core::model::Mentions;
    let c = start().await;
    let client = LogicGrpcClient::connect(
        &format!("http://{}", c.logic_addr),
        GrpcClientConfig::default(),
    )
    .await
    .unwrap();
    let alice = client.register("alice", PASSWORD).await.unwrap();
    let bob = client.register("bob", PASSWORD).await.unwrap();
    let carol = client.register("carol", PASSWORD).await.unwrap();
    let set = Command::SetProfile {
        display_name: Some("Alice".into()),
        avatar_url: None,
    };
    let Reply::Profile { profile } = client.execute(alice, set).await.unwrap() else {
        panic!("a profile")
    };
    assert_eq!(profile.display_name, "Alice");
    let bad = Command::Search {
        prefix: "a".into(),
        cursor: None,
        limit: None,
    };
    assert_eq!(
        code(client.execute(alice, bad).await),
        ErrorCode::InvalidArgument
    );
    client
        .execute(bob, Command::Block { user_id: alice })
        .await
        .unwrap();
    assert_eq!(
        code(
            client
                .send(Sender::http(alice), text("b1", Target::User(bob), "hi"))
                .await
        ),
        ErrorCode::PermissionDenied
    );
    // Mentions, edits and the join cutoff cross the wire.
    let g = client.create_group(alice, "g").await.unwrap();
    // Bob blocks alice: she cannot add him to her group.
    assert_eq!(
        code(client.add_member(alice, g, bob).await),
        ErrorCode::PermissionDenied
    );
    client
        .send(Sender::http(alice), text("g0", Target::Group(g), "before"))
        .await
        .unwrap();
    client.add_member(alice, g, carol).await.unwrap();
    let ack = client
        .send(
            Sender::http(alice),
            SendRequest {
                mentions: Some(Mentions::Users(vec![carol])),
                ..text("g1", Target::Group(g), "hi carol")
            },
        )
        .await
        .unwrap();
    let members = client.members(alice, g).await.unwrap();
    assert!(members
        .iter()
        .any(|m| m.user_id == carol && m.joined_seq > 0));
    let edited = eventually("the message is stored and edited", || {
        let client = &client;
        async move {
            match client
                .execute(
                    alice,
                    Command::Edit {
                        msg_id: ack.msg_id,
                        body: serde_json::json!("hi, carol"),
                    },
                )
                .await
            {
                Ok(Reply::Edited { message }) => Some(message),
                _ => None,
            }
        }
    })
    .await;
    assert!(edited.edited_at.is_some());
    let page = client
        .sync(carol, ConversationId::Group(g), 0, None)
        .await
        .unwrap();
    assert!(page
        .messages
        .iter()
        .all(|m| m.body != serde_json::json!("before")));
    let last = page.messages.last().unwrap();
    assert_eq!(last.mentions, Some(Mentions::Users(vec![carol])));
    assert_eq!(last.body, serde_json::json!("hi, carol"));
    assert!(last.edited_at.is_some());
}
