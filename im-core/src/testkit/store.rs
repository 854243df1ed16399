//! Conformance suites of `MessageStore`, `UserStore` and `GroupStore`.

use std::future::Future;
use std::sync::Arc;

use super::{random_direct, random_id, sample_message, unique};
use crate::error::Error;
use crate::id::{ConversationId, GroupId, MessageId, UserId};
use crate::model::{Group, Member, Mentions, Message, Role, User};
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
    edits_and_mentions(s.as_ref()).await;
}

/// v1.2: `edited_at` and `mentions` round-trip; `edit` replaces the body
/// once stored, never of a recalled message, and survives a replayed append.
async fn edits_and_mentions(s: &dyn MessageStore) {
    let g = ConversationId::Group(GroupId(random_id()));
    let (u1, u2) = (UserId(random_id()), UserId(random_id()));
    let mut msgs: Vec<Message> = (1..=5)
        .map(|seq| sample_message(g, seq, &format!("hi @{seq} ✓")))
        .collect();
    msgs[0].mentions = Some(Mentions::Users(vec![u1, u2]));
    msgs[1].mentions = Some(Mentions::All);
    msgs[2].edited_at = Some(1_700_000_000_999);
    msgs[2].mentions = Some(Mentions::Users(vec![u2]));
    assert_eq!(s.append(&msgs).await.expect("append"), 5);
    assert_eq!(
        s.history(g, 0, 10).await.expect("history"),
        msgs,
        "messages: edited_at and mentions (ids and all) round-trip through history"
    );
    for m in &msgs {
        assert_eq!(
            s.get(m.msg_id).await.expect("get").as_ref(),
            Some(m),
            "messages: edited_at and mentions round-trip through get"
        );
    }

    // edit
    let target = &msgs[0];
    let body = serde_json::json!("edited ✓");
    assert!(
        s.edit(target.msg_id, &body, 1_700_000_100_000)
            .await
            .expect("edit"),
        "messages: editing a stored message reports a change"
    );
    let mut want = target.clone();
    want.body = body.clone();
    want.edited_at = Some(1_700_000_100_000);
    assert_eq!(
        s.get(target.msg_id).await.expect("get"),
        Some(want.clone()),
        "messages: an edit replaces the body and sets edited_at, keeping everything else"
    );
    assert_eq!(
        s.history(g, 0, 1).await.expect("history"),
        vec![want.clone()],
        "messages: history shows the edited body"
    );
    assert_eq!(
        s.get(msgs[1].msg_id).await.expect("get").as_ref(),
        Some(&msgs[1]),
        "messages: an edit touches one message only"
    );
    let body2 = serde_json::json!({"text": "again", "n": [1, 2]});
    assert!(
        s.edit(target.msg_id, &body2, 1_700_000_200_000)
            .await
            .expect("edit"),
        "messages: a message can be edited again"
    );
    want.body = body2;
    want.edited_at = Some(1_700_000_200_000);
    assert_eq!(s.get(target.msg_id).await.expect("get"), Some(want.clone()));
    assert_eq!(
        s.append(std::slice::from_ref(target))
            .await
            .expect("append"),
        0,
        "messages: re-appending an edited message inserts nothing"
    );
    assert_eq!(
        s.get(target.msg_id).await.expect("get"),
        Some(want),
        "messages: re-appending an edited message does not bring the old body back"
    );
    assert!(
        matches!(
            s.edit(MessageId(random_id()), &body, 1).await,
            Err(Error::NotFound(_))
        ),
        "messages: editing an unknown message is NotFound"
    );

    // edit of a recalled message
    let gone = &msgs[3];
    assert!(s.recall(gone.msg_id).await.expect("recall"));
    assert!(
        !s.edit(gone.msg_id, &body, 1_700_000_300_000)
            .await
            .expect("edit"),
        "messages: editing a recalled message reports no change"
    );
    let got = s.get(gone.msg_id).await.expect("get").expect("stored");
    assert!(
        got.recalled && got.body == serde_json::Value::Null && got.edited_at.is_none(),
        "messages: editing a recalled message neither brings a body back nor sets edited_at: {got:?}"
    );

    // recall of an edited message
    let edited = &msgs[2];
    assert!(s
        .edit(edited.msg_id, &body, 1_700_000_400_000)
        .await
        .expect("edit"));
    assert!(s.recall(edited.msg_id).await.expect("recall"));
    let got = s.get(edited.msg_id).await.expect("get").expect("stored");
    assert!(
        got.recalled && got.body == serde_json::Value::Null,
        "messages: recalling an edited message drops the edited body: {got:?}"
    );
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

    profiles(s.as_ref(), &alice, &upper).await;
    search(s.as_ref()).await;
}

/// v1.2: `get_many` and `set_profile`.
async fn profiles(s: &dyn UserStore, alice: &User, upper: &User) {
    let ghost = UserId(random_id());
    let mut got = s
        .get_many(&[ghost, upper.id, alice.id, alice.id])
        .await
        .expect("get_many");
    got.sort_by_key(|u| u.id);
    got.dedup_by_key(|u| u.id);
    let mut want = vec![alice.clone(), upper.clone()];
    want.sort_by_key(|u| u.id);
    assert_eq!(
        got, want,
        "users: get_many returns the accounts of the known ids only"
    );
    assert!(
        s.get_many(&[]).await.expect("get_many").is_empty(),
        "users: get_many of no ids is empty"
    );
    assert!(
        s.get_many(&[ghost]).await.expect("get_many").is_empty(),
        "users: get_many of unknown ids is empty"
    );

    s.set_profile(
        alice.id,
        Some("Alice ✓ Ünïcode"),
        Some("https://example.com/a.png"),
    )
    .await
    .expect("set_profile");
    let mut changed = alice.clone();
    changed.display_name = Some("Alice ✓ Ünïcode".into());
    changed.avatar_url = Some("https://example.com/a.png".into());
    assert_eq!(
        s.get(alice.id).await.expect("get"),
        Some(changed.clone()),
        "users: set_profile's display name and avatar round-trip through get"
    );
    assert_eq!(
        s.by_username(&alice.username).await.expect("by_username"),
        Some(changed.clone()),
        "users: the profile round-trips through by_username"
    );
    assert_eq!(
        s.get_many(&[alice.id]).await.expect("get_many"),
        vec![changed.clone()],
        "users: the profile round-trips through get_many"
    );
    assert_eq!(
        s.get(upper.id).await.expect("get"),
        Some(upper.clone()),
        "users: set_profile touches one account only"
    );
    let long_name = "é".repeat(64);
    s.set_profile(alice.id, Some(&long_name), None)
        .await
        .expect("users: a 64-character display name fits");
    changed.display_name = Some(long_name);
    changed.avatar_url = None;
    assert_eq!(
        s.get(alice.id).await.expect("get"),
        Some(changed),
        "users: set_profile sets both fields (None clears the avatar)"
    );
    s.set_profile(alice.id, None, None)
        .await
        .expect("set_profile");
    assert_eq!(
        s.get(alice.id).await.expect("get"),
        Some(alice.clone()),
        "users: set_profile(None, None) clears the profile"
    );
    assert!(
        matches!(
            s.set_profile(ghost, Some("x"), None).await,
            Err(Error::NotFound(_))
        ),
        "users: set_profile of an unknown account is NotFound"
    );
    assert_eq!(
        s.get(ghost).await.expect("get"),
        None,
        "users: a refused set_profile creates nothing"
    );
}

/// v1.2: `search` by username prefix.
async fn search(s: &dyn UserStore) {
    // A fresh prefix, so earlier accounts (and reruns on a shared server) do
    // not match. Byte order: '%' < 'B' < '_' < 'a' < 'b' < 'c' < 'é'.
    let p = format!("s{:x}", random_id());
    let suffixes = ["b", "B", "a", "c", "_x", "%y", "é", "ab", "bb"];
    let mut made = Vec::new();
    for suffix in suffixes {
        let mut u = user(&format!("{p}{suffix}"));
        if suffix == "a" {
            u.display_name = Some("Shown".into());
            u.avatar_url = Some("/api/v1/files/x".into());
        }
        s.create(&u).await.expect("create");
        if u.display_name.is_some() {
            s.set_profile(u.id, u.display_name.as_deref(), u.avatar_url.as_deref())
                .await
                .expect("set_profile");
        }
        made.push(u);
    }
    // Names that must never match: a different case, a near miss.
    s.create(&user(&format!("{}b", p.to_uppercase())))
        .await
        .expect("create");
    s.create(&user(&format!("t{}", &p[1..])))
        .await
        .expect("create");
    let mut sorted = made.clone();
    sorted.sort_by(|a, b| a.username.as_bytes().cmp(b.username.as_bytes()));
    let names = |us: &[User]| us.iter().map(|u| u.username.clone()).collect::<Vec<_>>();

    let all = s.search(&p, None, 100).await.expect("search");
    assert_eq!(
        names(&all),
        names(&sorted),
        "users: search returns every username with the prefix, ordered byte-wise"
    );
    assert_eq!(
        all, sorted,
        "users: search returns whole accounts, profiles included"
    );
    assert_eq!(
        names(&s.search(&format!("{p}b"), None, 100).await.expect("search")),
        vec![format!("{p}b"), format!("{p}bb")],
        "users: search is case-sensitive"
    );
    assert_eq!(
        names(&s.search(&format!("{p}B"), None, 100).await.expect("search")),
        vec![format!("{p}B")],
        "users: search is case-sensitive (upper case)"
    );
    assert_eq!(
        names(&s.search(&format!("{p}_"), None, 100).await.expect("search")),
        vec![format!("{p}_x")],
        "users: '_' in a prefix is a plain character, not a wildcard"
    );
    assert_eq!(
        names(&s.search(&format!("{p}%"), None, 100).await.expect("search")),
        vec![format!("{p}%y")],
        "users: '%' in a prefix is a plain character, not a wildcard"
    );
    assert_eq!(
        names(&s.search(&format!("{p}é"), None, 100).await.expect("search")),
        vec![format!("{p}é")],
        "users: a non-ASCII prefix matches"
    );
    assert_eq!(
        names(&s.search(&format!("{p}a"), None, 100).await.expect("search")),
        vec![format!("{p}a"), format!("{p}ab")],
        "users: a username equal to the prefix matches"
    );
    assert!(
        s.search(&format!("{p}zz"), None, 100)
            .await
            .expect("search")
            .is_empty(),
        "users: no match is an empty page"
    );
    assert!(
        s.search(&p, None, 0).await.expect("search").is_empty(),
        "users: a limit of 0 returns nothing"
    );

    // Paging with `after`.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let page = s.search(&p, after.as_deref(), 4).await.expect("search");
        assert!(page.len() <= 4, "users: search honours its limit");
        let Some(last) = page.last() else { break };
        after = Some(last.username.clone());
        paged.extend(page);
    }
    assert_eq!(
        names(&paged),
        names(&sorted),
        "users: paging with after = the last username yields every match once, in order"
    );
    assert_eq!(
        names(
            &s.search(&p, Some(&format!("{p}a")), 2)
                .await
                .expect("search")
        ),
        vec![format!("{p}ab"), format!("{p}b")],
        "users: search returns usernames strictly after `after`"
    );
    assert_eq!(
        names(
            &s.search(&p, Some(&format!("{p}aa")), 2)
                .await
                .expect("search")
        ),
        vec![format!("{p}ab"), format!("{p}b")],
        "users: `after` need not be a username"
    );
    assert_eq!(
        names(&s.search(&p, Some(""), 1).await.expect("search")),
        vec![sorted[0].username.clone()],
        "users: an empty `after` is before everything"
    );
    assert!(
        s.search(&p, Some(&format!("{p}é")), 10)
            .await
            .expect("search")
            .is_empty(),
        "users: after the last match, nothing"
    );
    assert!(
        s.search(&p, Some("zzzz"), 10)
            .await
            .expect("search")
            .is_empty(),
        "users: an `after` beyond the prefix's range returns nothing"
    );
    assert_eq!(
        names(&s.search(&p, Some("a"), 100).await.expect("search")),
        names(&sorted),
        "users: an `after` before the prefix's range returns every match"
    );
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
    join_cutoff(s.as_ref()).await;
}

/// v1.2: `history_visible` and members' `joined_seq`.
async fn join_cutoff(s: &dyn GroupStore) {
    let owner = UserId(random_id());
    let late = UserId(random_id());
    let early = UserId(random_id());
    let mut g = Group {
        id: GroupId(random_id()),
        name: "history".into(),
        owner,
        created_at: 1_700_000_000_000,
        muted_until: None,
        history_visible: true,
    };
    s.create(&g).await.expect("create");
    assert_eq!(
        s.get(g.id).await.expect("get"),
        Some(g.clone()),
        "groups: history_visible round-trips through create and get"
    );
    assert_eq!(
        s.member(g.id, owner).await.expect("member"),
        Some(Member::new(owner, Role::Owner)),
        "groups: the creator joins with joined_seq 0"
    );
    s.set_history_visible(g.id, false)
        .await
        .expect("set_history_visible");
    g.history_visible = false;
    assert_eq!(
        s.get(g.id).await.expect("get"),
        Some(g.clone()),
        "groups: set_history_visible(false) changes the flag only"
    );
    s.set_history_visible(g.id, false)
        .await
        .expect("groups: setting the same flag again is fine");
    s.set_history_visible(g.id, true)
        .await
        .expect("set_history_visible");
    g.history_visible = true;
    assert_eq!(s.get(g.id).await.expect("get"), Some(g.clone()));
    let ghost = GroupId(random_id());
    assert!(
        matches!(
            s.set_history_visible(ghost, true).await,
            Err(Error::NotFound(_))
        ),
        "groups: set_history_visible of an unknown group is NotFound"
    );

    let joined = Member::new(late, Role::Member).joined_at(42);
    s.add_member(g.id, joined).await.expect("add");
    s.add_member(g.id, Member::new(early, Role::Admin))
        .await
        .expect("add");
    assert_eq!(
        s.member(g.id, late).await.expect("member"),
        Some(joined),
        "groups: add_member keeps the joined_seq (member)"
    );
    let mut members = s.members(g.id).await.expect("members");
    members.sort_by_key(|m| m.user_id);
    let mut want = vec![
        Member::new(owner, Role::Owner),
        joined,
        Member::new(early, Role::Admin),
    ];
    want.sort_by_key(|m| m.user_id);
    assert_eq!(
        members, want,
        "groups: add_member keeps the joined_seq (members)"
    );
    let big = UserId(random_id());
    let far = Member::new(big, Role::Member).joined_at(u64::MAX >> 1);
    s.add_member(g.id, far).await.expect("add");
    assert_eq!(
        s.member(g.id, big).await.expect("member"),
        Some(far),
        "groups: a large joined_seq round-trips"
    );
    s.set_role(g.id, late, Role::Admin).await.expect("set_role");
    s.mute_member(g.id, late, Some(1_900_000_000_000))
        .await
        .expect("mute_member");
    assert_eq!(
        s.member(g.id, late)
            .await
            .expect("member")
            .map(|m| m.joined_seq),
        Some(42),
        "groups: role changes and mutes keep the joined_seq"
    );
    s.transfer(g.id, late).await.expect("transfer");
    assert_eq!(
        s.member(g.id, late)
            .await
            .expect("member")
            .map(|m| (m.role, m.joined_seq)),
        Some((Role::Owner, 42)),
        "groups: a transfer keeps the joined_seq"
    );
    s.remove_member(g.id, early).await.expect("remove");
    s.add_member(g.id, Member::new(early, Role::Member).joined_at(50))
        .await
        .expect("add");
    assert_eq!(
        s.member(g.id, early)
            .await
            .expect("member")
            .map(|m| m.joined_seq),
        Some(50),
        "groups: joining again records the new joined_seq"
    );
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
