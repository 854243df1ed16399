//! v1.2 people features through Logic on the memory backends: profiles and
//! search, contacts, blocks, the contacts-only policy, the join cutoff,
//! peer read cursors, edits and mentions, each with its refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use im_core::connect::SessionHandle;
use im_core::id::{now_ms, ConversationId, MessageId, UserId};
use im_core::logic::{Command, DirectMessages, GroupCommand, LogicApi, Reply, Sender};
use im_core::model::{ContactEvent, Mentions, Message, MessageKind, Target, User};
use im_core::node::{Backends, Node, NodeConfig};
use im_core::ports::{Direction, Rate, RequestOutcome};
use im_core::protocol::{SendAck, SendRequest, ServerFrame};
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
        .create(&User::new(id, name, "x", 0))
        .await
        .unwrap();
    id
}

async fn run(node: &Node, actor: UserId, c: Command) -> im_core::Result<Reply> {
    node.logic.execute(actor, c).await
}

fn code<T: std::fmt::Debug>(r: im_core::Result<T>) -> ErrorCode {
    r.expect_err("refused").code()
}

async fn try_send_with(
    node: &Node,
    from: UserId,
    to: Target,
    body: &str,
    mentions: Option<Mentions>,
) -> im_core::Result<SendAck> {
    node.logic
        .send(
            Sender::http(from),
            SendRequest {
                client_msg_id: format!("c-{}", node.logic.next_id()),
                to,
                kind: MessageKind::Text,
                body: serde_json::json!(body),
                deliver_at: None,
                mentions,
            },
        )
        .await
}

async fn try_send(node: &Node, from: UserId, to: Target, body: &str) -> im_core::Result<SendAck> {
    try_send_with(node, from, to, body, None).await
}

async fn next_frame(h: &mut SessionHandle) -> ServerFrame {
    let bytes = tokio::time::timeout(Duration::from_secs(5), h.outbound.recv())
        .await
        .expect("a frame within 5 s")
        .expect("session open");
    ServerFrame::decode(&bytes).unwrap()
}

async fn wait_for(h: &mut SessionHandle, want: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
    loop {
        let f = next_frame(h).await;
        if want(&f) {
            return f;
        }
    }
}

/// Polls until the user's conversation list shows `conv` at `seq` (the
/// persist worker indexes it asynchronously; there is no event to wait on).
async fn wait_listed(node: &Node, user: UserId, conv: ConversationId, seq: u64) {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let page = node.logic.conversations(user, None, None).await.unwrap();
            if page
                .conversations
                .iter()
                .any(|r| r.conversation_id == conv && r.last_seq >= seq)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("listed within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_set_looked_up_and_validated() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let set = |name: Option<&str>, url: Option<&str>| Command::SetProfile {
        display_name: name.map(str::to_owned),
        avatar_url: url.map(str::to_owned),
    };
    let Reply::Profile { profile } = run(
        &node,
        a,
        set(Some("Alice L."), Some("https://x.test/a.png")),
    )
    .await
    .unwrap() else {
        panic!("a profile")
    };
    assert_eq!(profile.display_name, "Alice L.");
    assert_eq!(profile.username, "alice");
    // Bad names and URLs: invalid_argument, nothing changes.
    for bad in [
        set(Some("   "), None),
        set(Some(&"x".repeat(65)), None),
        set(None, Some("javascript:alert(1)")),
        set(Some("a\u{7}"), None),
    ] {
        assert_eq!(code(run(&node, a, bad).await), ErrorCode::InvalidArgument);
    }
    let lookup = Command::Profiles {
        user_ids: vec![a, b, UserId(42)],
        usernames: vec!["bob".into(), "nobody".into()],
    };
    let Reply::Profiles { users } = run(&node, b, lookup).await.unwrap() else {
        panic!("profiles")
    };
    assert_eq!(
        users.len(),
        2,
        "unknown users are left out, bob once: {users:?}"
    );
    let alice = users.iter().find(|p| p.user_id == a).unwrap();
    assert_eq!(alice.display_name, "Alice L.");
    assert_eq!(alice.avatar_url.as_deref(), Some("https://x.test/a.png"));
    // Without a display name, the username is shown.
    assert_eq!(
        users.iter().find(|p| p.user_id == b).unwrap().display_name,
        "bob"
    );
    // A lookup past its bound is refused.
    let many = Command::Profiles {
        user_ids: (0..201).map(UserId).collect(),
        usernames: vec![],
    };
    assert_eq!(code(run(&node, a, many).await), ErrorCode::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_is_paged_bounded_and_rate_limited() {
    let mut config = NodeConfig::default();
    config.logic.search_max_page = 2;
    config.logic.search_max_results = 5;
    config.logic.search_rate = Rate::per_minute(1, 5);
    let node = start(config).await;
    let me = user(&node, "zed").await;
    for i in 0..7 {
        user(&node, &format!("al{i}")).await;
    }
    user(&node, "Al-upper").await;
    let search = |cursor: Option<String>| Command::Search {
        prefix: "al".into(),
        cursor,
        limit: Some(10),
    };
    let mut names = Vec::new();
    let mut cursor = None;
    loop {
        let Reply::Users { users, next_cursor } = run(&node, me, search(cursor)).await.unwrap()
        else {
            panic!("users")
        };
        assert!(users.len() <= 2, "pages are clamped");
        names.extend(users.into_iter().map(|p| p.username));
        match next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // Five results at most, in username order, case-sensitive.
    assert_eq!(names, ["al0", "al1", "al2", "al3", "al4"]);
    // A cursor crafted to page past the bound is refused.
    assert_eq!(
        code(run(&node, me, search(Some("5~al4".into()))).await),
        ErrorCode::InvalidArgument
    );
    // Too short a prefix.
    let short = Command::Search {
        prefix: "a".into(),
        cursor: None,
        limit: None,
    };
    assert_eq!(
        code(run(&node, me, short).await),
        ErrorCode::InvalidArgument
    );
    // Three searches ran, the bucket holds 5: two more, then throttled.
    run(&node, me, search(None)).await.unwrap();
    run(&node, me, search(None)).await.unwrap();
    let e = run(&node, me, search(None)).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ResourceExhausted);
    assert!(
        e.retry_after().is_some(),
        "a throttled search says when to retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_requested_answered_listed_and_removed_with_events() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let c = user(&node, "carol").await;
    let (_bctx, mut bh) = node.connect.open(b, "web").await.unwrap();
    let ask = |to: UserId| Command::RequestContact {
        user_id: to,
        message: Some("hi".into()),
    };
    assert_eq!(
        run(&node, a, ask(b)).await.unwrap(),
        Reply::Requested {
            status: RequestOutcome::Pending
        }
    );
    let f = wait_for(&mut bh, |f| matches!(f, ServerFrame::Contact { .. })).await;
    assert_eq!(
        f,
        ServerFrame::Contact {
            event: ContactEvent::Requested,
            from: a,
            to: b
        }
    );
    let Reply::Requests { requests, .. } = run(
        &node,
        b,
        Command::ContactRequests {
            direction: Direction::Incoming,
            cursor: None,
            limit: None,
        },
    )
    .await
    .unwrap() else {
        panic!("requests")
    };
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].user.user_id, a);
    assert_eq!(requests[0].message.as_deref(), Some("hi"));
    // Answering a request nobody made: not_found.
    let accept_c = Command::RespondContact {
        user_id: c,
        accept: true,
    };
    assert_eq!(code(run(&node, b, accept_c).await), ErrorCode::NotFound);
    run(
        &node,
        b,
        Command::RespondContact {
            user_id: a,
            accept: true,
        },
    )
    .await
    .unwrap();
    let f = wait_for(&mut bh, |f| matches!(f, ServerFrame::Contact { .. })).await;
    assert!(matches!(
        f,
        ServerFrame::Contact {
            event: ContactEvent::Accepted,
            ..
        }
    ));
    for (me, other) in [(a, b), (b, a)] {
        let Reply::Contacts { contacts, .. } = run(
            &node,
            me,
            Command::Contacts {
                cursor: None,
                limit: None,
            },
        )
        .await
        .unwrap() else {
            panic!("contacts")
        };
        assert_eq!(
            contacts.iter().map(|c| c.user.user_id).collect::<Vec<_>>(),
            [other]
        );
    }
    assert_eq!(
        run(&node, a, ask(b)).await.unwrap(),
        Reply::Requested {
            status: RequestOutcome::AlreadyContacts
        }
    );
    // Mutual requests meet: the second one makes them contacts.
    run(&node, a, ask(c)).await.unwrap();
    assert_eq!(
        run(&node, c, ask(a)).await.unwrap(),
        Reply::Requested {
            status: RequestOutcome::Accepted
        }
    );
    // Paging: one per page, ordered by id, a cursor to the next.
    let Reply::Contacts {
        contacts,
        next_cursor,
    } = run(
        &node,
        a,
        Command::Contacts {
            cursor: None,
            limit: Some(1),
        },
    )
    .await
    .unwrap()
    else {
        panic!("contacts")
    };
    assert_eq!(contacts.len(), 1);
    let Reply::Contacts {
        contacts: rest,
        next_cursor: end,
    } = run(
        &node,
        a,
        Command::Contacts {
            cursor: next_cursor,
            limit: Some(1),
        },
    )
    .await
    .unwrap()
    else {
        panic!("contacts")
    };
    assert_eq!(rest.len(), 1);
    assert!(end.is_none());
    assert_ne!(contacts[0].user.user_id, rest[0].user.user_id);
    // Remove (both sides lose it); removing again: not_found.
    run(&node, b, Command::RemoveContact { user_id: a })
        .await
        .unwrap();
    assert_eq!(
        code(run(&node, a, Command::RemoveContact { user_id: b }).await),
        ErrorCode::NotFound
    );
    // Cancel and decline; to oneself is refused.
    run(&node, a, ask(b)).await.unwrap();
    run(&node, a, Command::CancelContactRequest { user_id: b })
        .await
        .unwrap();
    assert_eq!(
        code(
            run(
                &node,
                b,
                Command::RespondContact {
                    user_id: a,
                    accept: false
                }
            )
            .await
        ),
        ErrorCode::NotFound
    );
    run(&node, a, ask(b)).await.unwrap();
    run(
        &node,
        b,
        Command::RespondContact {
            user_id: a,
            accept: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        code(run(&node, a, Command::CancelContactRequest { user_id: b }).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(run(&node, a, ask(a)).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(run(&node, a, ask(UserId(7))).await),
        ErrorCode::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_refuses_direct_sends_requests_and_group_adds_but_not_group_messages() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    // They were contacts; bob blocks alice.
    run(
        &node,
        a,
        Command::RequestContact {
            user_id: b,
            message: None,
        },
    )
    .await
    .unwrap();
    run(
        &node,
        b,
        Command::RespondContact {
            user_id: a,
            accept: true,
        },
    )
    .await
    .unwrap();
    try_send(&node, a, Target::User(b), "before").await.unwrap();
    run(&node, b, Command::Block { user_id: a }).await.unwrap();
    run(&node, b, Command::Block { user_id: a }).await.unwrap(); // idempotent

    let e = try_send(&node, a, Target::User(b), "blocked")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
    assert_eq!(e.public_message(), "you cannot send messages to this user");
    let e = run(
        &node,
        a,
        Command::RequestContact {
            user_id: b,
            message: None,
        },
    )
    .await;
    assert_eq!(code(e), ErrorCode::PermissionDenied);
    let Reply::Contacts { contacts, .. } = run(
        &node,
        a,
        Command::Contacts {
            cursor: None,
            limit: None,
        },
    )
    .await
    .unwrap() else {
        panic!("contacts")
    };
    assert!(contacts.is_empty(), "a block ends the contact relation");
    // The blocker can still write (blocks are one-way).
    try_send(&node, b, Target::User(a), "from bob")
        .await
        .unwrap();
    // Alice cannot add bob to her group.
    let g = node.logic.create_group(a, "team").await.unwrap();
    assert_eq!(
        code(node.logic.add_member(a, g, b).await),
        ErrorCode::PermissionDenied
    );
    // In a group they share, messages flow both ways.
    let g2 = node.logic.create_group(b, "bob's").await.unwrap();
    node.logic.add_member(b, g2, a).await.unwrap();
    try_send(&node, a, Target::Group(g2), "hello group")
        .await
        .unwrap();
    // The blocked list; then unblock and alice can write again.
    let Reply::Users { users, .. } = run(
        &node,
        b,
        Command::Blocked {
            cursor: None,
            limit: None,
        },
    )
    .await
    .unwrap() else {
        panic!("users")
    };
    assert_eq!(users.iter().map(|p| p.user_id).collect::<Vec<_>>(), [a]);
    assert_eq!(
        code(run(&node, b, Command::Block { user_id: b }).await),
        ErrorCode::InvalidArgument
    );
    run(&node, b, Command::Unblock { user_id: a })
        .await
        .unwrap();
    try_send(&node, a, Target::User(b), "after").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_only_deployments_refuse_strangers() {
    let mut config = NodeConfig::default();
    config.logic.direct_messages = DirectMessages::ContactsOnly;
    let node = start(config).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let e = try_send(&node, a, Target::User(b), "hi").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
    run(
        &node,
        a,
        Command::RequestContact {
            user_id: b,
            message: None,
        },
    )
    .await
    .unwrap();
    run(
        &node,
        b,
        Command::RespondContact {
            user_id: a,
            accept: true,
        },
    )
    .await
    .unwrap();
    try_send(&node, a, Target::User(b), "hi").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_reads_from_its_join_unless_the_group_shows_history() {
    let node = start(NodeConfig::default()).await;
    let owner = user(&node, "owner").await;
    let early = user(&node, "early").await;
    let late = user(&node, "late").await;
    let later = user(&node, "later").await;
    let g = node.logic.create_group(owner, "g").await.unwrap();
    let conv = ConversationId::Group(g);
    node.logic.add_member(owner, g, early).await.unwrap();
    for i in 0..3 {
        try_send(&node, owner, Target::Group(g), &format!("old {i}"))
            .await
            .unwrap();
    }
    let before = node.backends.logic.sequences.current(conv).await.unwrap();
    node.logic.add_member(owner, g, late).await.unwrap();
    try_send(&node, owner, Target::Group(g), "new")
        .await
        .unwrap();
    let last = node.backends.logic.sequences.current(conv).await.unwrap();
    wait_listed(&node, late, conv, last).await;

    let page = node.logic.sync(late, conv, 0, None).await.unwrap();
    assert!(
        page.messages.iter().all(|m| m.seq > before),
        "nothing before the join: {:?}",
        page.messages
    );
    assert_eq!(page.messages.last().unwrap().body, serde_json::json!("new"));
    assert!(
        page.messages.iter().any(|m| m.kind == MessageKind::System),
        "its own member_added notice"
    );
    // The early member (added before the old messages) sees them all.
    let seen = node
        .logic
        .sync(early, conv, 0, None)
        .await
        .unwrap()
        .messages;
    assert!(seen.iter().any(|m| m.body == serde_json::json!("old 0")));
    assert_eq!(seen.last().unwrap().seq, last);
    // Unread counts start at the join: the notice and "new".
    let row = node
        .logic
        .conversations(late, None, None)
        .await
        .unwrap()
        .conversations
        .remove(0);
    assert_eq!(row.read_seq, before);
    assert_eq!(
        row.unread, 2,
        "the join notice and the new message, nothing older"
    );
    let members = node.logic.members(owner, g).await.unwrap();
    assert_eq!(
        members
            .iter()
            .find(|m| m.user_id == late)
            .unwrap()
            .joined_seq,
        before
    );

    // Only the owner or an admin may show the history; then a new member sees all.
    let show = GroupCommand::SetHistoryVisible { visible: true };
    assert_eq!(
        code(node.logic.administer_group(late, g, show.clone()).await),
        ErrorCode::PermissionDenied
    );
    node.logic.administer_group(owner, g, show).await.unwrap();
    assert!(node.logic.group(owner, g).await.unwrap().history_visible);
    node.logic.add_member(owner, g, later).await.unwrap();
    let seen = node.logic.sync(later, conv, 0, None).await.unwrap();
    assert_eq!(
        seen.messages.first().unwrap().seq,
        1,
        "history shown to new members"
    );
    // A non-member reads nothing.
    let outsider = user(&node, "outsider").await;
    assert_eq!(
        code(node.logic.sync(outsider, conv, 0, None).await),
        ErrorCode::PermissionDenied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_carries_the_peers_read_cursor_and_groups_answer_reads() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let conv = ConversationId::direct(a, b).unwrap();
    try_send(&node, a, Target::User(b), "one").await.unwrap();
    let ack = try_send(&node, a, Target::User(b), "two").await.unwrap();
    wait_listed(&node, a, conv, ack.seq).await;
    let row = node
        .logic
        .conversations(a, None, None)
        .await
        .unwrap()
        .conversations
        .remove(0);
    assert_eq!(row.peer_read_seq, Some(0));
    node.logic.mark_read(b, conv, ack.seq, None).await.unwrap();
    let row = node
        .logic
        .conversations(a, None, None)
        .await
        .unwrap()
        .conversations
        .remove(0);
    assert_eq!(
        row.peer_read_seq,
        Some(ack.seq),
        "read ticks survive a reload"
    );

    let g = node.logic.create_group(a, "g").await.unwrap();
    node.logic.add_member(a, g, b).await.unwrap();
    let gack = try_send(&node, a, Target::Group(g), "hi").await.unwrap();
    node.logic
        .mark_read(b, ConversationId::Group(g), gack.seq, None)
        .await
        .unwrap();
    let Reply::Reads { reads } = run(
        &node,
        a,
        Command::Reads {
            conversation_id: ConversationId::Group(g),
        },
    )
    .await
    .unwrap() else {
        panic!("reads")
    };
    assert_eq!(reads.len(), 2);
    assert_eq!(
        reads.iter().find(|r| r.user_id == b).unwrap().read_seq,
        gack.seq
    );
    let outsider = user(&node, "outsider").await;
    let e = run(
        &node,
        outsider,
        Command::Reads {
            conversation_id: ConversationId::Group(g),
        },
    )
    .await;
    assert_eq!(code(e), ErrorCode::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_edits_a_text_within_the_window_and_participants_see_it() {
    let node = start(NodeConfig::default()).await;
    let a = user(&node, "alice").await;
    let b = user(&node, "bob").await;
    let (_bctx, mut bh) = node.connect.open(b, "web").await.unwrap();
    let ack = try_send(&node, a, Target::User(b), "helo").await.unwrap();
    wait_listed(&node, b, ack.conversation_id, ack.seq).await;
    let edit = |msg_id: MessageId, body: serde_json::Value| Command::Edit { msg_id, body };
    let Reply::Edited { message } = run(&node, a, edit(ack.msg_id, serde_json::json!("hello")))
        .await
        .unwrap()
    else {
        panic!("edited")
    };
    assert_eq!(message.body, serde_json::json!("hello"));
    let at = message.edited_at.expect("edited_at");
    let f = wait_for(&mut bh, |f| matches!(f, ServerFrame::Edited { .. })).await;
    assert_eq!(
        f,
        ServerFrame::Edited {
            conversation_id: ack.conversation_id,
            msg_id: ack.msg_id,
            seq: ack.seq,
            body: serde_json::json!("hello"),
            edited_at: at,
            by: a
        }
    );
    let history = node
        .logic
        .sync(b, ack.conversation_id, 0, None)
        .await
        .unwrap();
    assert_eq!(history.messages[0].body, serde_json::json!("hello"));
    assert_eq!(history.messages[0].edited_at, Some(at));

    // Refusals: not the sender, not a string, an outsider, unknown, recalled.
    assert_eq!(
        code(run(&node, b, edit(ack.msg_id, serde_json::json!("x"))).await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(run(&node, a, edit(ack.msg_id, serde_json::json!({"x": 1}))).await),
        ErrorCode::InvalidArgument
    );
    let c = user(&node, "carol").await;
    assert_eq!(
        code(run(&node, c, edit(ack.msg_id, serde_json::json!("x"))).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(run(&node, a, edit(MessageId(1), serde_json::json!("x"))).await),
        ErrorCode::NotFound
    );
    node.logic.recall(a, ack.msg_id).await.unwrap();
    assert_eq!(
        code(run(&node, a, edit(ack.msg_id, serde_json::json!("x"))).await),
        ErrorCode::PermissionDenied
    );

    // Past the window (a message stored two days ago), and a non-text message.
    let conv = ack.conversation_id;
    let old = Message {
        msg_id: MessageId(node.logic.next_id()),
        conversation_id: conv,
        seq: 1000,
        from: a,
        to: Target::User(b),
        kind: MessageKind::Text,
        body: serde_json::json!("old"),
        client_msg_id: "old".into(),
        ts: now_ms() - 2 * 86_400_000,
        recalled: false,
        edited_at: None,
        mentions: None,
    };
    let image = Message {
        msg_id: MessageId(node.logic.next_id()),
        seq: 1001,
        kind: MessageKind::Image,
        body: serde_json::json!({"url": "https://x.test/i.png"}),
        client_msg_id: "img".into(),
        ts: now_ms(),
        ..old.clone()
    };
    node.backends
        .messages
        .append(&[old.clone(), image.clone()])
        .await
        .unwrap();
    let e = run(&node, a, edit(old.msg_id, serde_json::json!("new")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
    assert!(e.public_message().contains("edit window"), "{e}");
    assert_eq!(
        code(run(&node, a, edit(image.msg_id, serde_json::json!("new"))).await),
        ErrorCode::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_mark_the_list_until_read_and_all_is_for_owners_and_admins() {
    let node = start(NodeConfig::default()).await;
    let owner = user(&node, "owner").await;
    let b = user(&node, "bob").await;
    let c = user(&node, "carol").await;
    let g = node.logic.create_group(owner, "g").await.unwrap();
    let conv = ConversationId::Group(g);
    node.logic.add_member(owner, g, b).await.unwrap();
    node.logic.add_member(owner, g, c).await.unwrap();
    let ack = try_send_with(
        &node,
        c,
        Target::Group(g),
        "@bob look",
        Some(Mentions::Users(vec![b])),
    )
    .await
    .unwrap();
    wait_listed(&node, b, conv, ack.seq).await;
    let mentioned = |u: UserId| {
        let node = &node;
        async move {
            node.logic
                .conversations(u, None, None)
                .await
                .unwrap()
                .conversations[0]
                .mentioned
        }
    };
    assert!(mentioned(b).await);
    assert!(!mentioned(owner).await);
    node.logic.mark_read(b, conv, ack.seq, None).await.unwrap();
    assert!(!mentioned(b).await, "read clears the mention");

    // `all`: refused for a plain member, allowed for the owner; not its own.
    let e = try_send_with(&node, c, Target::Group(g), "@all", Some(Mentions::All)).await;
    assert_eq!(code(e), ErrorCode::PermissionDenied);
    let ack = try_send_with(
        &node,
        owner,
        Target::Group(g),
        "@all hi",
        Some(Mentions::All),
    )
    .await
    .unwrap();
    wait_listed(&node, c, conv, ack.seq).await;
    assert!(mentioned(b).await && mentioned(c).await);
    assert!(!mentioned(owner).await);
    let history = node.logic.sync(b, conv, 0, None).await.unwrap();
    assert_eq!(
        history.messages.last().unwrap().mentions,
        Some(Mentions::All)
    );

    // Mentions only in groups, and bounded.
    let e = try_send_with(
        &node,
        b,
        Target::User(c),
        "hi",
        Some(Mentions::Users(vec![c])),
    )
    .await;
    assert_eq!(code(e), ErrorCode::InvalidArgument);
    let many = Mentions::Users((0..51).map(UserId).collect());
    let e = try_send_with(&node, owner, Target::Group(g), "hi", Some(many)).await;
    assert_eq!(code(e), ErrorCode::InvalidArgument);
}
