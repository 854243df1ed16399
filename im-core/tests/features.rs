//! The v1.1 IM features through the Logic, Task and Connect services on the
//! memory backends: read cursors and unread counts, the conversation list,
//! recall, typing, presence, group administration and multi-device policy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use im_core::connect::{SessionCtx, SessionHandle, CLOSE_KICKED};
use im_core::id::{ConversationId, GroupId, UserId};
use im_core::logic::{DevicePolicy, GroupCommand, LogicApi, Sender};
use im_core::model::{Message, MessageKind, Role, Target, User};
use im_core::node::{Backends, Node, NodeConfig};
use im_core::protocol::{ClientFrame, SendAck, SendRequest, ServerFrame};
use im_core::ErrorCode;

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

async fn session(node: &Node, u: UserId, device: &str) -> (SessionCtx, SessionHandle) {
    node.connect.open(u, device).await.unwrap()
}

async fn send(node: &Node, from: UserId, to: Target, body: &str) -> SendAck {
    try_send(node, from, to, body).await.unwrap()
}

/// A text send over HTTP with a fresh `client_msg_id`.
async fn try_send(node: &Node, from: UserId, to: Target, body: &str) -> im_core::Result<SendAck> {
    node.logic
        .send(
            Sender::http(from),
            SendRequest {
                client_msg_id: format!("c-{}", node.logic.next_id()),
                to,
                kind: MessageKind::Text,
                body: serde_json::json!(body),
                deliver_at: None,
                mentions: None,
            },
        )
        .await
}

/// The next frame of a session, within 5 s.
async fn next_frame(h: &mut SessionHandle) -> ServerFrame {
    let bytes = tokio::time::timeout(Duration::from_secs(5), h.outbound.recv())
        .await
        .expect("a frame within 5 s")
        .expect("session open");
    ServerFrame::decode(&bytes).unwrap()
}

/// Frames until one matches, within 5 s.
async fn wait_for(h: &mut SessionHandle, want: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
    loop {
        let f = next_frame(h).await;
        if want(&f) {
            return f;
        }
    }
}

/// Asserts that no frame matching `bad` arrives within 300 ms.
async fn assert_no(h: &mut SessionHandle, bad: impl Fn(&ServerFrame) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(b)) = tokio::time::timeout_at(deadline, h.outbound.recv()).await {
        let f = ServerFrame::decode(&b).unwrap();
        assert!(!bad(&f), "unexpected frame {f:?}");
    }
}

/// Polls until the persist worker has stored `seq` of `conv`.
async fn wait_persisted(node: &Node, conv: ConversationId, seq: u64) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while node.backends.messages.last_seq(conv).await.unwrap() < seq {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("persisted within 5 s");
}

fn system_event(m: &Message) -> Option<&str> {
    (m.kind == MessageKind::System)
        .then(|| m.body.get("event").and_then(|e| e.as_str()))
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_cursor_moves_forward_counts_unread_and_tells_the_peer() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let conv = ConversationId::direct(a, b).unwrap();
    let (_actx, mut ah) = session(&node, a, "web").await;
    let (bctx, _bh) = session(&node, b, "web").await;
    for i in 1..=3 {
        send(&node, a, Target::User(b), &format!("a{i}")).await;
    }
    send(&node, b, Target::User(a), "b1").await;
    wait_persisted(&node, conv, 4).await;

    // Bob: three unread from Alice (his own message does not count).
    let page = node.logic.conversations(b, None, None).await.unwrap();
    assert_eq!(page.conversations.len(), 1);
    let row = &page.conversations[0];
    assert_eq!((row.last_seq, row.read_seq, row.unread), (4, 0, 3));
    assert_eq!(row.last_message.body, serde_json::json!("b1"));
    // Alice: one unread from Bob.
    let row = &node
        .logic
        .conversations(a, None, None)
        .await
        .unwrap()
        .conversations[0];
    assert_eq!(row.unread, 1);

    // Past the last seq: refused; nothing moved.
    let err = node.logic.mark_read(b, conv, 5, None).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);

    // Over the WebSocket frame: Alice is told.
    let reply = node
        .connect
        .handle(
            &bctx,
            ClientFrame::Read {
                conversation_id: conv,
                seq: 2,
            },
        )
        .await;
    assert!(reply.is_none(), "a read has no reply: {reply:?}");
    let f = wait_for(&mut ah, |f| matches!(f, ServerFrame::Read { .. })).await;
    assert_eq!(
        f,
        ServerFrame::Read {
            conversation_id: conv,
            user_id: b,
            seq: 2
        }
    );
    let row = &node
        .logic
        .conversations(b, None, None)
        .await
        .unwrap()
        .conversations[0];
    assert_eq!((row.read_seq, row.unread), (2, 1));

    // A lower seq is a no-op, with no event.
    node.logic.mark_read(b, conv, 1, None).await.unwrap();
    assert_no(&mut ah, |f| matches!(f, ServerFrame::Read { .. })).await;
    let row = &node
        .logic
        .conversations(b, None, None)
        .await
        .unwrap()
        .conversations[0];
    assert_eq!(row.read_seq, 2);

    // Someone else's conversation: refused.
    let c = user(&node, "carol").await;
    let err = node.logic.mark_read(c, conv, 1, None).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_list_is_newest_first_and_pages() {
    let node = start(NodeConfig::default()).await;
    let me = user(&node, "me").await;
    let mut peers = Vec::new();
    for i in 0..5 {
        let p = user(&node, &format!("peer{i}")).await;
        let ack = send(&node, p, Target::User(me), &format!("from {i}")).await;
        wait_persisted(&node, ack.conversation_id, ack.seq).await;
        // Distinct timestamps order the list.
        tokio::time::sleep(Duration::from_millis(3)).await;
        peers.push(p);
    }
    let g = node.logic.create_group(me, "team").await.unwrap();
    let ack = send(&node, me, Target::Group(g), "to the team").await;
    wait_persisted(&node, ConversationId::Group(g), ack.seq).await;

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = node
            .logic
            .conversations(me, cursor.clone(), Some(2))
            .await
            .unwrap();
        assert!(page.conversations.len() <= 2);
        seen.extend(page.conversations.iter().map(|r| r.conversation_id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut want = vec![ConversationId::Group(g)];
    want.extend(
        peers
            .iter()
            .rev()
            .map(|p| ConversationId::direct(me, *p).unwrap()),
    );
    assert_eq!(seen, want, "newest first, every conversation once");

    let err = node
        .logic
        .conversations(me, Some("garbage".into()), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_by_sender_within_the_window_is_stored_and_announced() {
    let mut config = NodeConfig::default();
    config.logic.recall_window = Duration::from_millis(800);
    let node = start(config).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let (_bctx, mut bh) = session(&node, b, "web").await;
    let ack = send(&node, a, Target::User(b), "oops").await;
    wait_persisted(&node, ack.conversation_id, ack.seq).await;

    // Not the sender: refused.
    let err = node.logic.recall(b, ack.msg_id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    // An outsider learns nothing.
    let c = user(&node, "carol").await;
    let err = node.logic.recall(c, ack.msg_id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);

    node.logic.recall(a, ack.msg_id).await.unwrap();
    let f = wait_for(&mut bh, |f| matches!(f, ServerFrame::Recalled { .. })).await;
    assert_eq!(
        f,
        ServerFrame::Recalled {
            conversation_id: ack.conversation_id,
            msg_id: ack.msg_id,
            by: a
        }
    );
    let page = node
        .logic
        .sync(b, ack.conversation_id, 0, None)
        .await
        .unwrap();
    assert!(page.messages[0].recalled);
    assert!(page.messages[0].body.is_null(), "the body is gone");
    let json = serde_json::to_value(&page.messages[0]).unwrap();
    assert!(json.get("body").is_none() && json["recalled"] == true);

    // Again: a no-op without a second event.
    node.logic.recall(a, ack.msg_id).await.unwrap();
    assert_no(&mut bh, |f| matches!(f, ServerFrame::Recalled { .. })).await;

    // Right after the ack, before the persist worker stored it: still found.
    let quick = send(&node, a, Target::User(b), "quick").await;
    node.logic.recall(a, quick.msg_id).await.unwrap();
    wait_for(
        &mut bh,
        |f| matches!(f, ServerFrame::Recalled { msg_id, .. } if *msg_id == quick.msg_id),
    )
    .await;
    // Recalling an already recalled message still needs the right to.
    let err = node.logic.recall(b, quick.msg_id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);

    // After the window: refused.
    let late = send(&node, a, Target::User(b), "late").await;
    wait_persisted(&node, late.conversation_id, late.seq).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let err = node.logic.recall(a, late.msg_id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let err = node
        .logic
        .recall(a, im_core::id::MessageId(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_admin_recalls_a_members_message() {
    let node = start(NodeConfig::default()).await;
    let owner = user(&node, "owner").await;
    let m = user(&node, "member").await;
    let g = node.logic.create_group(owner, "g").await.unwrap();
    node.logic.add_member(owner, g, m).await.unwrap();
    let ack = send(&node, m, Target::Group(g), "spam").await;
    wait_persisted(&node, ConversationId::Group(g), ack.seq).await;
    let other = send(&node, owner, Target::Group(g), "rules").await;
    wait_persisted(&node, ConversationId::Group(g), other.seq).await;
    // A plain member cannot recall the owner's message.
    let err = node.logic.recall(m, other.msg_id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    node.logic.recall(owner, ack.msg_id).await.unwrap();
    let msg = node
        .backends
        .messages
        .get(ack.msg_id)
        .await
        .unwrap()
        .unwrap();
    assert!(msg.recalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_others_only_and_is_never_stored() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let (actx, mut ah) = session(&node, a, "web").await;
    let (_a2, mut a2h) = session(&node, a, "web").await;
    let (_bctx, mut bh) = session(&node, b, "web").await;
    let reply = node
        .connect
        .handle(
            &actx,
            ClientFrame::Typing {
                to: Target::User(b),
            },
        )
        .await;
    assert!(reply.is_none(), "{reply:?}");
    let f = wait_for(&mut bh, |f| matches!(f, ServerFrame::Typing { .. })).await;
    assert_eq!(
        f,
        ServerFrame::Typing {
            conversation_id: ConversationId::direct(a, b).unwrap(),
            from: a
        }
    );
    assert_no(&mut ah, |f| matches!(f, ServerFrame::Typing { .. })).await;
    assert_no(&mut a2h, |f| matches!(f, ServerFrame::Typing { .. })).await;
    let page = node
        .logic
        .sync(a, ConversationId::direct(a, b).unwrap(), 0, None)
        .await
        .unwrap();
    assert!(page.messages.is_empty(), "typing is never stored");

    // To a group one is not in: refused.
    let c = user(&node, "carol").await;
    let g = node.logic.create_group(c, "private").await.unwrap();
    let err = node.logic.typing(a, Target::Group(g)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_asked_and_subscribed() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let p = node.logic.presence(vec![b]).await.unwrap();
    assert!(!p[0].online);
    assert_eq!(p[0].last_seen, None, "never connected");
    let err = node.logic.presence(vec![UserId(12345)]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);

    let (actx, mut ah) = session(&node, a, "web").await;
    let reply = node
        .connect
        .handle(&actx, ClientFrame::SubscribePresence { user_ids: vec![b] })
        .await;
    match reply {
        Some(ServerFrame::PresenceResult { presences }) => {
            assert_eq!(presences.len(), 1);
            assert!(!presences[0].online);
        }
        other => panic!("expected presence_result, got {other:?}"),
    }
    let (bctx, bh) = session(&node, b, "web").await;
    let f = wait_for(&mut ah, |f| matches!(f, ServerFrame::Presence(_))).await;
    let ServerFrame::Presence(p) = f else {
        unreachable!()
    };
    assert_eq!((p.user_id, p.online), (b, true));
    assert!(node.logic.presence(vec![b]).await.unwrap()[0].online);

    drop(bh);
    node.connect.close(&bctx, "web").await;
    let f = wait_for(&mut ah, |f| matches!(f, ServerFrame::Presence(_))).await;
    let ServerFrame::Presence(p) = f else {
        unreachable!()
    };
    assert!(!p.online);
    let now = node.logic.presence(vec![b]).await.unwrap()[0];
    assert!(!now.online);
    assert!(now.last_seen.is_some(), "last seen after a disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_device_policy_kicks_the_older_session() {
    let mut config = NodeConfig::default();
    config
        .logic
        .device_policies
        .insert("mobile".into(), DevicePolicy::Single);
    let node = start(config).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let (_m1, mut m1h) = session(&node, a, "mobile").await;
    let (_w1, mut w1h) = session(&node, a, "web").await;
    let (_w2, mut w2h) = session(&node, a, "web").await;
    let (_m2, mut m2h) = session(&node, a, "mobile").await;
    let f = wait_for(&mut m1h, |f| matches!(f, ServerFrame::Kicked { .. })).await;
    assert!(matches!(f, ServerFrame::Kicked { .. }));
    tokio::time::timeout(Duration::from_secs(5), m1h.closed.cancelled())
        .await
        .expect("the kicked session is closed");
    assert_eq!(m1h.close_reason().map(|r| r.code), Some(CLOSE_KICKED));

    // Everyone else stays and receives messages.
    let ack = send(&node, b, Target::User(a), "hello").await;
    for h in [&mut w1h, &mut w2h, &mut m2h] {
        let f = wait_for(h, |f| matches!(f, ServerFrame::Message(_))).await;
        let ServerFrame::Message(m) = f else {
            unreachable!()
        };
        assert_eq!(m.msg_id, ack.msg_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_administration_is_authorized_by_role_and_announced() {
    let node = start(NodeConfig::default()).await;
    let owner = user(&node, "owner").await;
    let x = user(&node, "x").await;
    let y = user(&node, "y").await;
    let z = user(&node, "z").await;
    let g = node.logic.create_group(owner, "g").await.unwrap();
    node.logic.add_member(owner, g, x).await.unwrap();
    node.logic.add_member(owner, g, y).await.unwrap();
    let (_yctx, mut yh) = session(&node, y, "web").await;

    // A plain member may do none of it.
    for cmd in [
        GroupCommand::Rename {
            name: "mine".into(),
        },
        GroupCommand::SetRole {
            user: y,
            role: Role::Admin,
        },
        GroupCommand::Transfer { to: x },
        GroupCommand::Mute { until: None },
        GroupCommand::MuteMember {
            user: y,
            until: None,
        },
        GroupCommand::Dissolve,
    ] {
        let err = node
            .logic
            .administer_group(x, g, cmd.clone())
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::PermissionDenied, "{cmd:?}");
    }
    let err = node.logic.remove_member(x, g, y).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let err = node.logic.add_member(x, g, z).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);

    // Promote x: now x adds z, renames, mutes the group.
    node.logic
        .administer_group(
            owner,
            g,
            GroupCommand::SetRole {
                user: x,
                role: Role::Admin,
            },
        )
        .await
        .unwrap();
    node.logic.add_member(x, g, z).await.unwrap();
    node.logic
        .administer_group(
            x,
            g,
            GroupCommand::Rename {
                name: "renamed".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(node.logic.group(y, g).await.unwrap().name, "renamed");
    node.logic
        .administer_group(
            x,
            g,
            GroupCommand::Mute {
                until: Some(i64::MAX),
            },
        )
        .await
        .unwrap();
    let muted = try_send(&node, y, Target::Group(g), "let me talk")
        .await
        .unwrap_err();
    assert_eq!(muted.code(), ErrorCode::PermissionDenied);
    send(&node, x, Target::Group(g), "admins still talk").await;
    node.logic
        .administer_group(x, g, GroupCommand::Mute { until: None })
        .await
        .unwrap();
    send(&node, y, Target::Group(g), "back").await;

    // Mute one member: an admin cannot mute the owner or another admin.
    node.logic
        .administer_group(
            x,
            g,
            GroupCommand::MuteMember {
                user: y,
                until: Some(i64::MAX),
            },
        )
        .await
        .unwrap();
    let err = try_send(&node, y, Target::Group(g), "hm")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let err = node
        .logic
        .administer_group(
            x,
            g,
            GroupCommand::MuteMember {
                user: owner,
                until: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);

    // A client may not forge a system message.
    let err = node
        .logic
        .send(
            Sender::http(owner),
            SendRequest {
                client_msg_id: "forged".into(),
                to: Target::Group(g),
                kind: MessageKind::System,
                body: serde_json::json!({"event": "owner_changed"}),
                deliver_at: None,
                mentions: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);

    // Transfer: the old owner becomes an admin.
    node.logic
        .administer_group(owner, g, GroupCommand::Transfer { to: z })
        .await
        .unwrap();
    let members = node.logic.members(z, g).await.unwrap();
    let role = |u| members.iter().find(|m| m.user_id == u).map(|m| m.role);
    assert_eq!(role(z), Some(Role::Owner));
    assert_eq!(role(owner), Some(Role::Admin));
    assert_eq!(node.logic.group(z, g).await.unwrap().owner, z);

    // Kick y: y is told by the system message although no longer a member.
    node.logic.remove_member(z, g, y).await.unwrap();
    let f = wait_for(
        &mut yh,
        |f| matches!(f, ServerFrame::Message(m) if system_event(m) == Some("member_removed")),
    )
    .await;
    let ServerFrame::Message(m) = f else {
        unreachable!()
    };
    assert_eq!(m.body["user"], serde_json::json!(y.to_string()));
    wait_persisted(&node, ConversationId::Group(g), m.seq).await;

    // Every change is in the history, in order (as the creator sees it: a
    // member added later reads from its join on, v1.2).
    let history = node
        .logic
        .sync(owner, ConversationId::Group(g), 0, Some(100))
        .await
        .unwrap();
    let events: Vec<&str> = history.messages.iter().filter_map(system_event).collect();
    assert_eq!(
        events,
        [
            "group_created",
            "member_added",
            "member_added",
            "role_changed",
            "member_added",
            "group_renamed",
            "group_muted",
            "group_unmuted",
            "member_muted",
            "owner_changed",
            "member_removed",
        ]
    );

    // Dissolve: the group is gone; sends are not_found.
    node.logic
        .administer_group(z, g, GroupCommand::Dissolve)
        .await
        .unwrap();
    let err = try_send(&node, x, Target::Group(g), "anyone?")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let err = node.logic.group(z, GroupId(g.0)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}

/// A profanity filter: rejects "forbidden", masks "darn".
struct Filter {
    seen: tokio::sync::mpsc::UnboundedSender<Message>,
}

#[async_trait::async_trait]
impl im_core::ports::SendHook for Filter {
    async fn before_send(
        &self,
        batch: &[im_core::ports::PendingSend],
    ) -> im_core::Result<Vec<im_core::ports::HookVerdict>> {
        use im_core::ports::HookVerdict;
        Ok(batch
            .iter()
            .map(|s| match s.body.as_str() {
                Some(t) if t.contains("forbidden") => {
                    HookVerdict::Reject("that word is not allowed here".into())
                }
                Some(t) if t.contains("darn") => {
                    HookVerdict::Rewrite(serde_json::json!(t.replace("darn", "d**n")))
                }
                _ => HookVerdict::Allow,
            })
            .collect())
    }

    async fn after_send(&self, batch: &[Message]) {
        for m in batch {
            let _ = self.seen.send(m.clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_hooks_reject_rewrite_and_observe() {
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let mut backends = Backends::memory(SECRET);
    backends
        .logic
        .hooks
        .push(std::sync::Arc::new(Filter { seen: tx }));
    let node = Node::start(backends, NodeConfig::default()).await.unwrap();
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let conv = ConversationId::direct(a, b).unwrap();
    let (_bctx, mut bh) = session(&node, b, "web").await;

    let err = try_send(&node, a, Target::User(b), "a forbidden word")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    assert!(err.to_string().contains("not allowed"), "{err}");

    let ack = send(&node, a, Target::User(b), "darn it").await;
    assert_eq!(ack.seq, 1, "the rejected send took no seq");
    let f = wait_for(&mut bh, |f| matches!(f, ServerFrame::Message(_))).await;
    let ServerFrame::Message(m) = f else {
        unreachable!()
    };
    assert_eq!(
        m.body,
        serde_json::json!("d**n it"),
        "recipients get the rewrite"
    );
    let after = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((after.msg_id, after.seq), (ack.msg_id, 1));
    assert_eq!(after.body, serde_json::json!("d**n it"));
    wait_persisted(&node, conv, 1).await;
    let stored = node.logic.sync(a, conv, 0, None).await.unwrap().messages;
    assert_eq!(stored.len(), 1, "nothing of the rejected send is stored");
    assert_eq!(stored[0].body, serde_json::json!("d**n it"));
}

fn scheduled(cmid: &str, to: Target, body: &str, at: i64) -> SendRequest {
    SendRequest {
        client_msg_id: cmid.into(),
        to,
        kind: MessageKind::Text,
        body: serde_json::json!(body),
        deliver_at: Some(at),
        mentions: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_sends_arrive_on_time_and_cancelled_ones_never() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let (_bctx, mut bh) = session(&node, b, "web").await;
    let at = im_core::id::now_ms() + 400;
    let ack = node
        .logic
        .send(
            Sender::http(a),
            scheduled("s1", Target::User(b), "later", at),
        )
        .await
        .unwrap();
    assert_eq!((ack.seq, ack.deliver_at, ack.ts), (0, Some(at), at));
    // A retry answers the same ack and holds nothing new.
    let again = node
        .logic
        .send(
            Sender::http(a),
            scheduled("s1", Target::User(b), "other", at + 5),
        )
        .await
        .unwrap();
    assert_eq!(again, ack);
    let cancelled = node
        .logic
        .send(
            Sender::http(a),
            scheduled("s2", Target::User(b), "never", at),
        )
        .await
        .unwrap();
    let pending = node.logic.scheduled(a).await.unwrap();
    assert_eq!(pending.len(), 2);
    assert!(node.logic.scheduled(b).await.unwrap().is_empty());
    // Only the sender may cancel.
    let err = node
        .logic
        .cancel_scheduled(b, cancelled.msg_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    node.logic
        .cancel_scheduled(a, cancelled.msg_id)
        .await
        .unwrap();

    let f = wait_for(&mut bh, |f| matches!(f, ServerFrame::Message(_))).await;
    let now = im_core::id::now_ms();
    let ServerFrame::Message(m) = f else {
        unreachable!()
    };
    assert_eq!(m.msg_id, ack.msg_id);
    assert_eq!(m.seq, 1, "the seq is taken at delivery");
    assert!(now >= at, "not before its time");
    assert!(
        now - at < 1_000,
        "delivered {} ms after deliver_at",
        now - at
    );
    assert_no(&mut bh, |f| matches!(f, ServerFrame::Message(_))).await;
    assert!(node.logic.scheduled(a).await.unwrap().is_empty());
    let err = node
        .logic
        .cancel_scheduled(a, ack.msg_id)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::NotFound,
        "delivered: nothing to cancel"
    );

    // Too far ahead: refused.
    let far = im_core::id::now_ms() + 365 * 86_400_000;
    let err = node
        .logic
        .send(Sender::http(a), scheduled("s3", Target::User(b), "x", far))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
}

/// PROTOCOL.md v1.2 "Retries first": a retry of an accepted send gets its
/// original ack whatever its payload is now (too big, a system kind, another
/// target, or throttled by the rate limit), and nothing new is admitted.
#[tokio::test]
async fn retries_get_their_original_ack_before_any_check() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "retry_a").await;
    let b = user(&node, "retry_b").await;
    let c = user(&node, "retry_c").await;
    let req = |to: Target, body: serde_json::Value, kind: MessageKind| SendRequest {
        client_msg_id: "once".into(),
        to,
        kind,
        body,
        deliver_at: None,
        mentions: None,
    };
    let first = node
        .logic
        .send(
            Sender::http(a),
            req(
                Target::User(b),
                serde_json::json!("hello"),
                MessageKind::Text,
            ),
        )
        .await
        .unwrap();
    assert_eq!(first.seq, 1);
    let too_big = serde_json::json!("x".repeat(100_000));
    let retries = [
        (
            Sender::http(a),
            req(Target::User(b), too_big.clone(), MessageKind::Text),
        ),
        (
            Sender::http(a),
            req(Target::User(b), serde_json::json!({}), MessageKind::System),
        ),
        (
            Sender::http(a),
            req(
                Target::User(c),
                serde_json::json!("other target"),
                MessageKind::Text,
            ),
        ),
        (
            Sender::http(a).throttled(),
            req(
                Target::User(b),
                serde_json::json!("hello"),
                MessageKind::Text,
            ),
        ),
    ];
    for (sender, r) in retries {
        let got = node.logic.send(sender, r.clone()).await;
        assert_eq!(
            got.as_ref().ok(),
            Some(&first),
            "a retry ({r:?}) gets the original ack: {got:?}"
        );
    }
    // A new send that is throttled or invalid is refused, and takes no seq.
    let throttled = node
        .logic
        .send(
            Sender::http(a).throttled(),
            SendRequest {
                client_msg_id: "new".into(),
                ..req(Target::User(b), serde_json::json!("x"), MessageKind::Text)
            },
        )
        .await;
    assert_eq!(throttled.unwrap_err().code(), ErrorCode::ResourceExhausted);
    let invalid = node
        .logic
        .send(
            Sender::http(a),
            SendRequest {
                client_msg_id: "new2".into(),
                ..req(Target::User(b), too_big, MessageKind::Text)
            },
        )
        .await;
    assert_eq!(invalid.unwrap_err().code(), ErrorCode::ResourceExhausted);
    assert_eq!(
        send(&node, a, Target::User(b), "next").await.seq,
        2,
        "refused sends take no seq: no hole"
    );
}

/// A send whose enqueue fails takes no seq: the next one continues without
/// a hole (PROTOCOL.md v1.2 "Seqs without holes").
#[tokio::test]
async fn a_failed_enqueue_leaves_no_hole() {
    use im_core::compose::ComposedSendPipeline;
    use im_core::memory::{MemoryDedupStore, MemoryQueue, MemorySequenceAllocator};
    use im_core::ports::{Admission, DedupKey, MessageQueue, SendPipeline};
    use std::sync::Arc;
    // A queue that holds two entries: the third publish fails.
    let queue = Arc::new(MemoryQueue::new(2));
    queue.create_group("g").await.unwrap();
    let seqs = Arc::new(MemorySequenceAllocator::new());
    let p = ComposedSendPipeline::new(Arc::new(MemoryDedupStore::new()), seqs, queue.clone());
    let (_, _, conv) = im_core::testkit::random_direct();
    let admit = |n: u64| {
        let mut envelope = im_core::testkit::sample_envelope(conv, 0);
        envelope.message.client_msg_id = format!("k{n}");
        Admission {
            key: DedupKey::of_send(envelope.message.from, &envelope.message.client_msg_id),
            envelope,
        }
    };
    let ttl = Duration::from_secs(60);
    let ok = p.admit(vec![admit(1), admit(2)], ttl).await.unwrap();
    assert!(ok.iter().all(|r| r.is_ok()));
    assert!(
        p.admit(vec![admit(3)], ttl).await.is_err(),
        "the full queue refuses"
    );
    // Make room, then the refused send is retried and gets seq 3, not 4.
    let mut c = queue.consumer("g", "c").await.unwrap();
    let got = c.fetch(10, Duration::from_millis(100)).await.unwrap();
    c.ack(&got.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    let retried = p.admit(vec![admit(3)], ttl).await.unwrap();
    match &retried[0] {
        Ok(im_core::ports::Admitted::New(ack)) => assert_eq!(ack.seq, 3, "no hole"),
        other => panic!("the retry is admitted: {other:?}"),
    }
}
