//! Conformance suite of `ConversationStore`.
//!
//! The store is fed the way the persist worker feeds it: every batch is
//! appended to a `MessageStore` first, then recorded. A backend whose list
//! reads the last message and the unread counts from the archive (the SQL
//! stores) is paired with its own archive; the memory store with any.

use std::future::Future;
use std::sync::Arc;

use super::{random_direct, random_id, sample_message};
use crate::id::{ConversationId, GroupId, UserId};
use crate::model::{Mentions, Message};
use crate::ports::{ConversationEntry, ConversationStore, ListCursor, MessageStore};

type Pair = (Arc<dyn ConversationStore>, Arc<dyn MessageStore>);

/// Runs every `ConversationStore` check on fresh `(conversations, messages)`
/// pairs from `make`; messages are appended to the archive before they are
/// recorded, as the persist worker does.
pub async fn conversations_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Pair>,
{
    direct_conversations_are_listed_for_both_parties(make().await).await;
    last_message_is_the_highest_seq(make().await).await;
    group_conversations_follow_join_and_leave(make().await).await;
    read_cursors_and_unread_counts(make().await).await;
    list_order_and_paging(make().await).await;
    read_seqs_in_order(make().await).await;
    mentions_are_indexed(make().await).await;
    lists_follow_edits_and_recalls(make().await).await;
}

/// Appends then records `batch`, like the persist worker.
async fn persist((c, m): &Pair, batch: &[Message]) {
    m.append(batch)
        .await
        .unwrap_or_else(|e| panic!("conversations: append failed: {e}"));
    c.record(batch)
        .await
        .unwrap_or_else(|e| panic!("conversations: record failed: {e}"));
}

async fn list_all(c: &dyn ConversationStore, user: UserId) -> Vec<ConversationEntry> {
    c.list(user, None, 1000)
        .await
        .unwrap_or_else(|e| panic!("conversations: list failed: {e}"))
}

/// A message of `conversation` with `seq` sent by `from` at `ts`.
fn message(conversation: ConversationId, seq: u64, from: UserId, ts: i64) -> Message {
    let mut m = sample_message(conversation, seq, &format!("m{seq}"));
    if let ConversationId::Direct(a, b) = conversation {
        m.to = crate::model::Target::User(if from == a { b } else { a });
    }
    m.from = from;
    m.ts = ts;
    m
}

fn group_conversation() -> ConversationId {
    ConversationId::Group(GroupId(random_id()))
}

async fn direct_conversations_are_listed_for_both_parties(p: Pair) {
    let (a, b, conv) = random_direct();
    let m1 = message(conv, 1, a, 1_700_000_000_001);
    let m2 = message(conv, 2, b, 1_700_000_000_002);
    persist(&p, &[m1, m2.clone()]).await;
    for (user, who) in [(a, "first"), (b, "second")] {
        let rows = list_all(p.0.as_ref(), user).await;
        assert_eq!(
            rows,
            vec![ConversationEntry {
                conversation_id: conv,
                last_message: m2.clone(),
                last_seq: 2,
                read_seq: 0,
                unread: 1,
                mentioned: false,
                peer_read_seq: None,
            }],
            "conversations: a recorded 1:1 message lists the conversation for its {who} party, \
             with the last message and the messages of the other party unread"
        );
    }
    let (stranger, _, _) = random_direct();
    assert!(
        list_all(p.0.as_ref(), stranger).await.is_empty(),
        "conversations: a user with no conversation has an empty list"
    );
}

async fn last_message_is_the_highest_seq(p: Pair) {
    let (a, b, conv) = random_direct();
    let msgs: Vec<Message> = (1..=5)
        .map(|seq| {
            message(
                conv,
                seq,
                if seq % 2 == 1 { a } else { b },
                1_700_000_000_000 + seq as i64,
            )
        })
        .collect();
    // Out of order, in several batches, one of them crossing conversations.
    let (_, _, other) = random_direct();
    let unrelated = message(other, 1, UserId(random_id()), 1_700_000_000_100);
    persist(&p, &[msgs[3].clone(), unrelated]).await;
    persist(&p, &[msgs[0].clone(), msgs[2].clone()]).await;
    persist(&p, &[msgs[1].clone()]).await;
    let rows = list_all(p.0.as_ref(), a).await;
    assert_eq!(rows.len(), 1, "conversations: one row per conversation");
    assert_eq!(
        (rows[0].last_seq, &rows[0].last_message),
        (4, &msgs[3]),
        "conversations: the last message is the highest seq recorded, even when recorded out of order"
    );
    assert_eq!(
        rows[0].unread, 2,
        "conversations: unread counts the other party's messages (seqs 2 and 4 from b)"
    );
    persist(&p, &msgs).await;
    persist(&p, &msgs[..2]).await;
    let again = list_all(p.0.as_ref(), a).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].last_seq, &again[0].last_message, again[0].unread),
        (5, &msgs[4], 2),
        "conversations: record is idempotent (replays change nothing) and moves to a higher seq"
    );
    p.0.record(&msgs[..3]).await.expect("conversations: record");
    assert_eq!(
        list_all(p.0.as_ref(), a).await,
        again,
        "conversations: recording older messages again never moves the last message back"
    );
}

async fn group_conversations_follow_join_and_leave(p: Pair) {
    let conv = group_conversation();
    let sender = UserId(random_id());
    let member = UserId(random_id());
    persist(&p, &[message(conv, 1, sender, 1_700_000_000_001)]).await;
    assert!(
        list_all(p.0.as_ref(), member).await.is_empty(),
        "conversations: a group conversation is not listed before join"
    );
    assert!(
        list_all(p.0.as_ref(), sender).await.is_empty(),
        "conversations: recording a group message does not list it for the sender"
    );
    p.0.join(member, conv).await.expect("join");
    p.0.join(member, conv)
        .await
        .expect("conversations: join is idempotent");
    let rows = list_all(p.0.as_ref(), member).await;
    assert_eq!(
        rows.iter().map(|r| r.conversation_id).collect::<Vec<_>>(),
        vec![conv],
        "conversations: a joined group conversation is listed once"
    );
    let m2 = message(conv, 2, member, 1_700_000_000_002);
    persist(&p, std::slice::from_ref(&m2)).await;
    let rows = list_all(p.0.as_ref(), member).await;
    assert_eq!(
        (&rows[0].last_message, rows[0].unread),
        (&m2, 1),
        "conversations: a member's own messages are not unread"
    );

    // Joined but never recorded: not listed.
    let silent = group_conversation();
    p.0.join(member, silent).await.expect("join");
    assert_eq!(
        list_all(p.0.as_ref(), member).await.len(),
        1,
        "conversations: a conversation without recorded messages does not appear"
    );

    p.0.leave(member, conv).await.expect("leave");
    p.0.leave(member, conv)
        .await
        .expect("conversations: leave is idempotent");
    p.0.leave(UserId(random_id()), conv)
        .await
        .expect("conversations: leaving a conversation never joined is fine");
    assert!(
        list_all(p.0.as_ref(), member).await.is_empty(),
        "conversations: leave unlists a group conversation"
    );
    persist(&p, &[message(conv, 3, sender, 1_700_000_000_003)]).await;
    assert!(
        list_all(p.0.as_ref(), member).await.is_empty(),
        "conversations: new group messages do not list a left conversation again"
    );
    p.0.join(member, conv).await.expect("join");
    let rows = list_all(p.0.as_ref(), member).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.conversation_id, r.last_seq))
            .collect::<Vec<_>>(),
        vec![(conv, 3)],
        "conversations: joining again lists the conversation again"
    );
}

async fn read_cursors_and_unread_counts(p: Pair) {
    let conv = group_conversation();
    let me = UserId(random_id());
    let them = UserId(random_id());
    // Senders by seq: 1 them, 2 me, 3 them, 4 me, 5 them.
    let msgs: Vec<Message> = (1..=5)
        .map(|seq| {
            message(
                conv,
                seq,
                if seq % 2 == 0 { me } else { them },
                1_700_000_000_000 + seq as i64,
            )
        })
        .collect();
    persist(&p, &msgs).await;
    p.0.join(me, conv).await.expect("join");
    let c = p.0.as_ref();
    assert_eq!(
        c.read_seq(me, conv).await.expect("read_seq"),
        0,
        "conversations: a cursor never set reads 0"
    );
    assert_eq!(
        c.read_seq(me, group_conversation())
            .await
            .expect("read_seq"),
        0,
        "conversations: a cursor of an unknown conversation reads 0"
    );
    assert_eq!(
        (
            list_all(c, me).await[0].read_seq,
            list_all(c, me).await[0].unread
        ),
        (0, 3),
        "conversations: with nothing read, every message from others is unread"
    );
    assert!(
        !c.mark_read(me, conv, 0).await.expect("mark_read"),
        "conversations: marking 0 read never moves the cursor"
    );
    assert!(
        c.mark_read(me, conv, 3).await.expect("mark_read"),
        "conversations: mark_read forward reports a move"
    );
    assert_eq!(c.read_seq(me, conv).await.expect("read_seq"), 3);
    assert!(
        !c.mark_read(me, conv, 3).await.expect("mark_read"),
        "conversations: mark_read to the same seq reports no move"
    );
    assert!(
        !c.mark_read(me, conv, 2).await.expect("mark_read"),
        "conversations: mark_read backwards reports no move"
    );
    assert_eq!(
        c.read_seq(me, conv).await.expect("read_seq"),
        3,
        "conversations: mark_read never moves a cursor backwards"
    );
    let row = &list_all(c, me).await[0];
    assert_eq!(
        (row.read_seq, row.unread),
        (3, 1),
        "conversations: unread counts only messages from others above the cursor"
    );
    assert!(c.mark_read(me, conv, 4).await.expect("mark_read"));
    assert_eq!(
        list_all(c, me).await[0].unread,
        1,
        "conversations: own messages above the cursor are not unread"
    );
    assert!(c.mark_read(me, conv, 5).await.expect("mark_read"));
    assert_eq!(list_all(c, me).await[0].unread, 0);
    assert_eq!(
        c.read_seq(them, conv).await.expect("read_seq"),
        0,
        "conversations: cursors are per user"
    );

    // A cursor set before the conversation is listed (a 1:1 conversation
    // whose first message is not recorded yet) survives the record.
    let (a, b, direct) = random_direct();
    let early: Vec<Message> = (1..=3)
        .map(|seq| message(direct, seq, b, 1_700_000_000_000 + seq as i64))
        .collect();
    assert!(
        c.mark_read(a, direct, 2).await.expect("mark_read"),
        "conversations: mark_read works before the conversation is recorded"
    );
    persist(&p, &early).await;
    let rows = list_all(c, a).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.conversation_id, r.read_seq, r.unread))
            .collect::<Vec<_>>(),
        vec![(direct, 2, 1)],
        "conversations: recording a 1:1 conversation lists it and keeps an earlier read cursor"
    );
    // Leave and join keep the cursor.
    c.leave(me, conv).await.expect("leave");
    c.join(me, conv).await.expect("join");
    assert_eq!(
        c.read_seq(me, conv).await.expect("read_seq"),
        5,
        "conversations: leave and join keep the read cursor"
    );
}

async fn list_order_and_paging(p: Pair) {
    let me = UserId(random_id());
    let mut batch = Vec::new();
    let mut want: Vec<(i64, String, ConversationId)> = Vec::new();
    // 25 conversations; groups of three share a last-message time, so the
    // conversation id breaks ties.
    for i in 0..25u64 {
        let peer = UserId(random_id());
        let conv = ConversationId::direct(me, peer).expect("distinct users");
        let ts = 1_700_000_000_000 + (i / 3) as i64 * 1000;
        batch.push(message(conv, 1, peer, ts - 500));
        batch.push(message(conv, 2, me, ts));
        want.push((ts, conv.to_string(), conv));
    }
    for i in 0..3u64 {
        let conv = group_conversation();
        let ts = 1_700_000_000_000 + i as i64 * 1000;
        batch.push(message(conv, 1, UserId(random_id()), ts));
        p.0.join(me, conv).await.expect("join");
        want.push((ts, conv.to_string(), conv));
    }
    // A group not joined, a newer one: never in my list.
    batch.push(message(
        group_conversation(),
        1,
        UserId(random_id()),
        1_800_000_000_000,
    ));
    persist(&p, &batch).await;
    want.sort_by(|x, y| (y.0, &y.1).cmp(&(x.0, &x.1)));
    let want: Vec<ConversationId> = want.into_iter().map(|w| w.2).collect();

    let all = list_all(p.0.as_ref(), me).await;
    assert_eq!(
        all.iter().map(|r| r.conversation_id).collect::<Vec<_>>(),
        want,
        "conversations: list orders by last message time descending, then conversation id descending"
    );
    assert!(
        all.iter().all(|r| r.last_seq == r.last_message.seq
            && r.last_message.conversation_id == r.conversation_id),
        "conversations: each row carries its own last message and seq"
    );

    let mut paged = Vec::new();
    let mut after: Option<ListCursor> = None;
    let mut pages = 0;
    loop {
        let page =
            p.0.list(me, after, 7)
                .await
                .unwrap_or_else(|e| panic!("conversations: list failed: {e}"));
        assert!(page.len() <= 7, "conversations: list honours its limit");
        let Some(last) = page.last() else { break };
        after = Some(ListCursor::after(last));
        let round = ListCursor::decode(&ListCursor::after(last).encode());
        assert_eq!(
            round, after,
            "conversations: a cursor survives its wire form"
        );
        paged.extend(page.iter().map(|r| r.conversation_id));
        pages += 1;
        assert!(pages <= 10, "conversations: paging does not end");
    }
    assert!(pages > 1);
    assert_eq!(
        paged, want,
        "conversations: paging with ListCursor::after yields every row once, in order"
    );
    assert!(
        p.0.list(me, None, 0).await.expect("list").is_empty(),
        "conversations: a limit of 0 lists nothing"
    );
}

async fn read_seqs_in_order(p: Pair) {
    let c = p.0.as_ref();
    let g1 = group_conversation();
    let g2 = group_conversation();
    let (a, b, direct) = random_direct();
    let me = UserId(random_id());
    assert!(c.mark_read(me, g1, 7).await.expect("mark_read"));
    assert!(c.mark_read(me, g2, 3).await.expect("mark_read"));
    assert!(c.mark_read(a, direct, 9).await.expect("mark_read"));
    p.0.join(b, g1).await.expect("join");
    let asked = [
        (me, g2),
        (a, direct),
        (b, direct),
        (me, g1),
        (b, g1),
        (me, group_conversation()),
        (me, g2),
    ];
    assert_eq!(
        c.read_seqs(&asked).await.expect("read_seqs"),
        vec![3, 9, 0, 7, 0, 0, 3],
        "conversations: read_seqs answers every pair in order, 0 for cursors never set, \
         repeats included"
    );
    assert!(
        c.read_seqs(&[]).await.expect("read_seqs").is_empty(),
        "conversations: read_seqs of nothing is empty"
    );
    let many: Vec<(UserId, ConversationId)> = (0..45)
        .map(|i| {
            if i % 9 == 0 {
                (me, g1)
            } else {
                (UserId(random_id()), g2)
            }
        })
        .collect();
    let got = c.read_seqs(&many).await.expect("read_seqs");
    assert_eq!(
        got,
        many.iter()
            .map(|(u, _)| if *u == me { 7 } else { 0 })
            .collect::<Vec<_>>(),
        "conversations: read_seqs of many pairs answers each in order"
    );
    for (pair, seq) in asked.iter().zip([3, 9, 0, 7, 0, 0, 3]) {
        assert_eq!(
            c.read_seq(pair.0, pair.1).await.expect("read_seq"),
            seq,
            "conversations: read_seqs agrees with read_seq"
        );
    }
}

/// A message of `conversation` with `seq` from `from` mentioning `mentions`.
fn mentioning(conversation: ConversationId, seq: u64, from: UserId, mentions: Mentions) -> Message {
    let mut m = message(conversation, seq, from, 1_700_000_000_000 + seq as i64);
    m.mentions = Some(mentions);
    m
}

async fn mentions_are_indexed(p: Pair) {
    let c = p.0.as_ref();
    let (a, b, x, d) = (
        UserId(random_id()),
        UserId(random_id()),
        UserId(random_id()),
        UserId(random_id()),
    );
    let g1 = group_conversation();
    let g2 = group_conversation();
    let g3 = group_conversation();
    let quiet = group_conversation();
    // g1: 1 a→[b]; 2 x→all; 3 a→[x]; 4 plain; 5 b→[b, d].
    persist(
        &p,
        &[
            mentioning(g1, 1, a, Mentions::Users(vec![b])),
            mentioning(g1, 2, x, Mentions::All),
            mentioning(g1, 3, a, Mentions::Users(vec![x])),
            message(g1, 4, a, 1_700_000_000_004),
        ],
    )
    .await;
    persist(&p, &[mentioning(g1, 5, b, Mentions::Users(vec![b, d]))]).await;
    // g2: only an `all` from a.
    persist(&p, &[mentioning(g2, 8, a, Mentions::All)]).await;
    // g3: mentions of d recorded out of order; the highest counts.
    persist(
        &p,
        &[
            mentioning(g3, 6, a, Mentions::Users(vec![d])),
            mentioning(g3, 2, a, Mentions::Users(vec![d])),
        ],
    )
    .await;
    persist(&p, &[mentioning(g3, 4, x, Mentions::Users(vec![d]))]).await;
    persist(&p, &[message(quiet, 1, a, 1_700_000_000_001)]).await;

    let convs = [g1, g2, g3, quiet, group_conversation(), g1];
    let seqs = |u: UserId| async move {
        c.mention_seqs(u, &convs)
            .await
            .unwrap_or_else(|e| panic!("conversations: mention_seqs failed: {e}"))
    };
    assert_eq!(
        seqs(b).await,
        vec![5, 8, 0, 0, 0, 5],
        "conversations: mention_seqs is the highest seq mentioning the user by id or `all` \
         from someone else, in order, 0 when none"
    );
    assert_eq!(
        seqs(x).await,
        vec![3, 8, 0, 0, 0, 3],
        "conversations: a mention by id counts for the sender of an `all`"
    );
    assert_eq!(
        seqs(a).await,
        vec![2, 0, 0, 0, 0, 2],
        "conversations: an `all` mentions every member but its sender"
    );
    assert_eq!(
        seqs(d).await,
        vec![5, 8, 6, 0, 0, 5],
        "conversations: the highest mentioning seq counts, whatever the record order"
    );
    let nobody = UserId(random_id());
    assert_eq!(
        seqs(nobody).await,
        vec![2, 8, 0, 0, 0, 2],
        "conversations: `all` mentions users never named"
    );
    assert!(
        c.mention_seqs(b, &[])
            .await
            .expect("mention_seqs")
            .is_empty(),
        "conversations: mention_seqs of no conversation is empty"
    );

    // Replays change nothing; a newer `all` moves up.
    persist(&p, &[mentioning(g1, 1, a, Mentions::Users(vec![b]))]).await;
    persist(&p, &[mentioning(g1, 2, x, Mentions::All)]).await;
    assert_eq!(
        seqs(b).await,
        vec![5, 8, 0, 0, 0, 5],
        "conversations: recording mentions again changes nothing"
    );
    persist(&p, &[mentioning(g1, 9, a, Mentions::All)]).await;
    assert_eq!(
        (seqs(b).await[0], seqs(x).await[0], seqs(nobody).await[0]),
        (9, 9, 9),
        "conversations: a newer `all` mentions everybody but its sender"
    );
    assert_eq!(
        seqs(d).await[2],
        6,
        "conversations: mentions are per conversation"
    );

    // The list does not depend on mentions.
    c.join(b, g1).await.expect("join");
    let row = list_all(c, b).await;
    assert!(
        row.iter()
            .all(|r| !r.mentioned && r.peer_read_seq.is_none()),
        "conversations: stores leave mentioned and peer_read_seq unset: {row:?}"
    );
}

/// Logic edits (or recalls) in the archive, then tells the store with
/// `changed`: the list shows the message as it is now.
async fn lists_follow_edits_and_recalls(p: Pair) {
    let (a, b, conv) = random_direct();
    let m1 = message(conv, 1, a, 1_700_000_000_001);
    let m2 = message(conv, 2, a, 1_700_000_000_002);
    persist(&p, &[m1.clone(), m2.clone()]).await;
    let body = serde_json::json!("edited ✓");
    assert!(p
        .1
        .edit(m2.msg_id, &body, 1_700_000_000_100)
        .await
        .expect("edit"));
    let mut edited = m2.clone();
    edited.body = body;
    edited.edited_at = Some(1_700_000_000_100);
    p.0.changed(&edited).await.expect("changed");
    p.0.changed(&m1)
        .await
        .expect("conversations: changed of a message that is not the last is fine");
    let rows = list_all(p.0.as_ref(), b).await;
    assert_eq!(
        rows.iter().map(|r| &r.last_message).collect::<Vec<_>>(),
        vec![&edited],
        "conversations: after an edit (and `changed`), the list shows the edited last message"
    );
    assert!(p.1.recall(m2.msg_id).await.expect("recall"));
    let recalled = p.1.get(m2.msg_id).await.expect("get").expect("stored");
    p.0.changed(&recalled).await.expect("changed");
    let rows = list_all(p.0.as_ref(), a).await;
    assert_eq!(
        rows.iter()
            .map(|r| (
                r.last_seq,
                r.last_message.recalled,
                r.last_message.body.clone()
            ))
            .collect::<Vec<_>>(),
        vec![(2, true, serde_json::Value::Null)],
        "conversations: after a recall (and `changed`), the list shows the recalled last message"
    );
}
