//! Conformance suites of `MessageStore`, `UserStore` and `GroupStore`.

use std::future::Future;
use std::sync::Arc;

use super::{random_direct, random_id, sample_message, unique};
use crate::error::Error;
use crate::id::{ConversationId, GroupId, MessageId, UserId};
use crate::model::{Group, Member, Role, User};
use crate::ports::{GroupStore, MessageStore, UserStore};

/// Runs every `MessageStore` check on fresh stores from `make`.
pub async fn message_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn MessageStore>>,
{
    let s = make().await;
    let (_, _, conv) = random_direct();
    let msgs: Vec<_> = (1..=30)
        .map(|seq| sample_message(conv, seq, &format!("body {seq} ✓")))
        .collect();
    // Out of order and in two batches.
    let (first, second) = msgs.split_at(12);
    assert_eq!(s.append(second).await.expect("append"), 18);
    assert_eq!(s.append(first).await.expect("append"), 12);
    assert_eq!(
        s.append(&msgs).await.expect("append"),
        0,
        "messages: append is idempotent by msg_id"
    );
    let mut clash = sample_message(conv, 5, "other");
    clash.msg_id = MessageId(random_id());
    assert_eq!(
        s.append(&[clash])
            .await
            .expect("messages: a clashing (conversation, seq) is ignored, not an error"),
        0
    );
    assert_eq!(s.last_seq(conv).await.expect("last_seq"), 30);
    let (_, _, empty) = random_direct();
    assert_eq!(
        s.last_seq(empty).await.expect("last_seq"),
        0,
        "messages: an empty conversation's last seq is 0"
    );
    assert!(s.history(empty, 0, 10).await.expect("history").is_empty());

    let all = s.history(conv, 0, 100).await.expect("history");
    assert_eq!(
        all, msgs,
        "messages: history returns the messages as stored, ordered by seq"
    );
    let page = s.history(conv, 10, 5).await.expect("history");
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![11, 12, 13, 14, 15],
        "messages: history honours after_seq and limit"
    );
    assert!(s.history(conv, 30, 10).await.expect("history").is_empty());
    assert_eq!(
        s.get(msgs[3].msg_id).await.expect("get"),
        Some(msgs[3].clone())
    );
    assert_eq!(s.get(MessageId(random_id())).await.expect("get"), None);

    let g = ConversationId::Group(GroupId(random_id()));
    let mut obj = sample_message(g, 1, "x");
    obj.kind = crate::model::MessageKind::Custom;
    obj.body = serde_json::json!({"k": [1, 2, {"n": null}]});
    s.append(std::slice::from_ref(&obj)).await.expect("append");
    assert_eq!(
        s.history(g, 0, 10).await.expect("history"),
        vec![obj],
        "messages: object bodies and kinds round-trip"
    );

    recall(s.as_ref(), conv, &msgs).await;
}

/// `recall`: flags the message, drops its body for good, once.
async fn recall(s: &dyn MessageStore, conv: ConversationId, msgs: &[crate::model::Message]) {
    let target = &msgs[6];
    assert!(
        s.recall(target.msg_id).await.expect("recall"),
        "messages: recalling a stored message reports a change"
    );
    let mut want = target.clone();
    want.recalled = true;
    want.body = serde_json::Value::Null;
    assert_eq!(
        s.get(target.msg_id).await.expect("get"),
        Some(want.clone()),
        "messages: a recalled message is flagged and its body is gone (get)"
    );
    let page = s.history(conv, 6, 1).await.expect("history");
    assert_eq!(
        page,
        vec![want.clone()],
        "messages: a recalled message is flagged and its body is gone (history)"
    );
    assert_eq!(
        s.get(msgs[7].msg_id).await.expect("get"),
        Some(msgs[7].clone()),
        "messages: recall touches one message only"
    );
    assert!(
        !s.recall(target.msg_id).await.expect("recall"),
        "messages: recalling a recalled message again reports no change"
    );
    assert!(
        matches!(
            s.recall(MessageId(random_id())).await,
            Err(Error::NotFound(_))
        ),
        "messages: recalling an unknown message is NotFound"
    );
    assert_eq!(
        s.append(std::slice::from_ref(target))
            .await
            .expect("append"),
        0,
        "messages: re-appending a recalled message inserts nothing"
    );
    assert_eq!(
        s.get(target.msg_id).await.expect("get"),
        Some(want),
        "messages: re-appending a recalled message does not bring its body back"
    );
}

fn user(name: &str) -> User {
    User {
        id: UserId(random_id()),
        username: name.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        created_at: 1_700_000_000_000,
        avatar_url: None,
        display_name: None,
    }
}

/// Runs every `UserStore` check on fresh stores from `make`.
pub async fn user_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn UserStore>>,
{
    let s = make().await;
    let name = unique("alice");
    let alice = user(&name);
    s.create(&alice).await.expect("create");
    let dup = user(&name);
    assert!(
        matches!(s.create(&dup).await, Err(Error::Conflict(_))),
        "users: a taken username is a Conflict"
    );
    let upper = user(&name.to_uppercase());
    s.create(&upper)
        .await
        .expect("users: usernames are case-sensitive");
    assert_eq!(s.get(alice.id).await.expect("get"), Some(alice.clone()));
    assert_eq!(
        s.by_username(&name).await.expect("by_username"),
        Some(alice.clone())
    );
    assert_eq!(
        s.by_username(&unique("nobody")).await.expect("by_username"),
        None
    );
    assert_eq!(
        s.get(dup.id).await.expect("get"),
        None,
        "users: a refused create stores nothing"
    );
    let mut found = s
        .existing(&[alice.id, dup.id, upper.id])
        .await
        .expect("existing");
    found.sort();
    let mut want = vec![alice.id, upper.id];
    want.sort();
    assert_eq!(found, want, "users: existing returns exactly the known ids");
}

/// Runs every `GroupStore` check on fresh stores from `make`.
pub async fn group_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn GroupStore>>,
{
    let s = make().await;
    let owner = UserId(random_id());
    let m1 = UserId(random_id());
    let m2 = UserId(random_id());
    let g = Group {
        id: GroupId(random_id()),
        name: "team ✓".into(),
        owner,
        created_at: 1_700_000_000_000,
        muted_until: None,
        history_visible: false,
    };
    s.create(&g).await.expect("create");
    assert_eq!(s.get(g.id).await.expect("get"), Some(g.clone()));
    assert_eq!(
        s.role_of(g.id, owner).await.expect("role"),
        Some(Role::Owner),
        "groups: the creator is the owner member"
    );
    s.add_member(g.id, Member::new(m1, Role::Member))
        .await
        .expect("add");
    s.add_member(g.id, Member::new(m2, Role::Admin))
        .await
        .expect("add");
    assert!(
        matches!(
            s.add_member(g.id, Member::new(m1, Role::Member)).await,
            Err(Error::Conflict(_))
        ),
        "groups: adding a present member is a Conflict"
    );
    let mut members = s.members(g.id).await.expect("members");
    members.sort_by_key(|m| m.user_id);
    let mut want = vec![
        Member::new(owner, Role::Owner),
        Member::new(m1, Role::Member),
        Member::new(m2, Role::Admin),
    ];
    want.sort_by_key(|m| m.user_id);
    assert_eq!(members, want);
    s.set_role(g.id, m1, Role::Admin).await.expect("set_role");
    assert_eq!(s.role_of(g.id, m1).await.expect("role"), Some(Role::Admin));
    s.remove_member(g.id, m2).await.expect("remove");
    assert_eq!(s.role_of(g.id, m2).await.expect("role"), None);
    assert!(
        matches!(s.remove_member(g.id, m2).await, Err(Error::NotFound(_))),
        "groups: removing a non-member is NotFound"
    );
    let ghost = GroupId(random_id());
    assert!(
        matches!(
            s.add_member(ghost, Member::new(m1, Role::Member)).await,
            Err(Error::NotFound(_))
        ),
        "groups: an unknown group is NotFound"
    );
    assert_eq!(s.get(ghost).await.expect("get"), None);
    assert!(s.members(ghost).await.expect("members").is_empty());
    assert_eq!(s.role_of(ghost, owner).await.expect("role"), None);

    administration(s.as_ref()).await;
}

/// `member`, `rename`, `transfer`, `mute_group`, `mute_member` and `delete`.
async fn administration(s: &dyn GroupStore) {
    let owner = UserId(random_id());
    let heir = UserId(random_id());
    let other = UserId(random_id());
    let stranger = UserId(random_id());
    let mut g = Group {
        id: GroupId(random_id()),
        name: "before".into(),
        owner,
        created_at: 1_700_000_000_000,
        muted_until: None,
        history_visible: false,
    };
    s.create(&g).await.expect("create");
    s.add_member(g.id, Member::new(heir, Role::Member))
        .await
        .expect("add");
    s.add_member(g.id, Member::new(other, Role::Member))
        .await
        .expect("add");
    let ghost = GroupId(random_id());

    // member
    assert_eq!(
        s.member(g.id, heir).await.expect("member"),
        Some(Member::new(heir, Role::Member)),
        "groups: member returns the role and mute state of a member"
    );
    assert_eq!(
        s.member(g.id, stranger).await.expect("member"),
        None,
        "groups: member of a non-member is None"
    );
    assert_eq!(
        s.member(ghost, owner).await.expect("member"),
        None,
        "groups: member in an unknown group is None"
    );

    // rename
    s.rename(g.id, "after ✓").await.expect("rename");
    g.name = "after ✓".into();
    assert_eq!(
        s.get(g.id).await.expect("get"),
        Some(g.clone()),
        "groups: rename changes the name only"
    );
    assert!(
        matches!(s.rename(ghost, "x").await, Err(Error::NotFound(_))),
        "groups: renaming an unknown group is NotFound"
    );

    // transfer
    assert!(
        matches!(s.transfer(g.id, stranger).await, Err(Error::NotFound(_))),
        "groups: transferring to a non-member is NotFound"
    );
    assert_eq!(
        s.role_of(g.id, owner).await.expect("role"),
        Some(Role::Owner),
        "groups: a refused transfer changes nothing"
    );
    assert!(
        matches!(s.transfer(ghost, heir).await, Err(Error::NotFound(_))),
        "groups: transferring an unknown group is NotFound"
    );
    s.transfer(g.id, heir).await.expect("transfer");
    assert_eq!(
        s.role_of(g.id, heir).await.expect("role"),
        Some(Role::Owner),
        "groups: transfer makes the new owner an owner member"
    );
    assert_eq!(
        s.role_of(g.id, owner).await.expect("role"),
        Some(Role::Admin),
        "groups: transfer makes the old owner an admin"
    );
    assert_eq!(
        s.role_of(g.id, other).await.expect("role"),
        Some(Role::Member),
        "groups: transfer leaves the other members alone"
    );
    g.owner = heir;
    assert_eq!(
        s.get(g.id).await.expect("get"),
        Some(g.clone()),
        "groups: transfer updates Group.owner"
    );

    // mute_group
    let until = 1_900_000_000_000;
    s.mute_group(g.id, Some(until)).await.expect("mute_group");
    g.muted_until = Some(until);
    assert_eq!(
        s.get(g.id).await.expect("get"),
        Some(g.clone()),
        "groups: mute_group's time round-trips through get"
    );
    s.mute_group(g.id, Some(i64::MAX))
        .await
        .expect("mute_group");
    assert_eq!(
        s.get(g.id).await.expect("get").and_then(|g| g.muted_until),
        Some(i64::MAX),
        "groups: i64::MAX (muted until unmuted) round-trips"
    );
    s.mute_group(g.id, None).await.expect("mute_group");
    g.muted_until = None;
    assert_eq!(
        s.get(g.id).await.expect("get"),
        Some(g.clone()),
        "groups: mute_group(None) unmutes"
    );
    assert!(
        matches!(s.mute_group(ghost, Some(1)).await, Err(Error::NotFound(_))),
        "groups: muting an unknown group is NotFound"
    );

    // mute_member
    s.mute_member(g.id, other, Some(until))
        .await
        .expect("mute_member");
    let muted = Member {
        muted_until: Some(until),
        ..Member::new(other, Role::Member)
    };
    assert_eq!(
        s.member(g.id, other).await.expect("member"),
        Some(muted),
        "groups: mute_member's time round-trips through member"
    );
    let listed = s.members(g.id).await.expect("members");
    assert!(
        listed.contains(&muted) && listed.contains(&Member::new(heir, Role::Owner)),
        "groups: mute_member's time round-trips through members, others unmuted: {listed:?}"
    );
    s.set_role(g.id, other, Role::Admin)
        .await
        .expect("set_role");
    assert_eq!(
        s.member(g.id, other)
            .await
            .expect("member")
            .and_then(|m| m.muted_until),
        Some(until),
        "groups: a role change keeps the member's mute"
    );
    s.mute_member(g.id, other, None).await.expect("mute_member");
    assert_eq!(
        s.member(g.id, other).await.expect("member"),
        Some(Member::new(other, Role::Admin)),
        "groups: mute_member(None) unmutes"
    );
    assert!(
        matches!(
            s.mute_member(g.id, stranger, Some(until)).await,
            Err(Error::NotFound(_))
        ),
        "groups: muting a non-member is NotFound"
    );
    assert!(
        matches!(
            s.mute_member(ghost, other, Some(until)).await,
            Err(Error::NotFound(_))
        ),
        "groups: muting in an unknown group is NotFound"
    );

    // delete
    s.delete(g.id).await.expect("delete");
    assert_eq!(
        s.get(g.id).await.expect("get"),
        None,
        "groups: a deleted group is gone"
    );
    assert!(
        s.members(g.id).await.expect("members").is_empty(),
        "groups: a deleted group has no members"
    );
    assert_eq!(
        s.role_of(g.id, heir).await.expect("role"),
        None,
        "groups: a deleted group's memberships are gone"
    );
    assert_eq!(s.member(g.id, other).await.expect("member"), None);
    assert!(
        matches!(s.delete(g.id).await, Err(Error::NotFound(_))),
        "groups: deleting an unknown group is NotFound"
    );
    s.create(&Group {
        muted_until: None,
        ..g.clone()
    })
    .await
    .expect("groups: a deleted group's id can be created again");
    assert_eq!(
        s.members(g.id).await.expect("members"),
        vec![Member::new(heir, Role::Owner)],
        "groups: a re-created group starts with its owner only"
    );
}
