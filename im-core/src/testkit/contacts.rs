//! Conformance suite of `ContactStore`.

use std::future::Future;
use std::sync::Arc;

use super::random_id;
use crate::error::Error;
use crate::id::UserId;
use crate::ports::{Contact, ContactRequest, ContactStore, Direction, Reach, RequestOutcome};

/// Runs every `ContactStore` check on fresh stores from `make`.
pub async fn contacts_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ContactStore>>,
{
    requests_and_acceptance(make().await.as_ref()).await;
    respond_and_cancel(make().await.as_ref()).await;
    remove_ends_both_sides(make().await.as_ref()).await;
    blocks(make().await.as_ref()).await;
    reach_answers_in_order(make().await.as_ref()).await;
    lists_page_by_user_id(make().await.as_ref()).await;
}

fn uid() -> UserId {
    UserId(random_id())
}

fn ask(from: UserId, to: UserId, message: Option<&str>, ts: i64) -> ContactRequest {
    ContactRequest {
        from,
        to,
        message: message.map(str::to_owned),
        ts,
    }
}

async fn contacts_of(s: &dyn ContactStore, user: UserId) -> Vec<Contact> {
    s.contacts(user, None, 1000)
        .await
        .unwrap_or_else(|e| panic!("contacts: contacts failed: {e}"))
}

async fn requests_of(s: &dyn ContactStore, user: UserId, d: Direction) -> Vec<ContactRequest> {
    s.requests(user, d, None, 1000)
        .await
        .unwrap_or_else(|e| panic!("contacts: requests failed: {e}"))
}

async fn reach1(s: &dyn ContactStore, from: UserId, to: UserId) -> Reach {
    let r = s
        .reach(&[(from, to)])
        .await
        .unwrap_or_else(|e| panic!("contacts: reach failed: {e}"));
    assert_eq!(r.len(), 1, "contacts: reach answers once per pair");
    r[0]
}

async fn requests_and_acceptance(s: &dyn ContactStore) {
    let (a, b) = (uid(), uid());
    let first = ask(a, b, Some("hi, it's me ✓"), 1_700_000_000_001);
    assert_eq!(
        s.request(&first).await.expect("request"),
        RequestOutcome::Pending,
        "contacts: a new request is pending"
    );
    assert_eq!(
        requests_of(s, b, Direction::Incoming).await,
        vec![first.clone()],
        "contacts: a pending request is listed as incoming for the asked user"
    );
    assert_eq!(
        requests_of(s, a, Direction::Outgoing).await,
        vec![first.clone()],
        "contacts: a pending request is listed as outgoing for the asking user"
    );
    assert!(requests_of(s, a, Direction::Incoming).await.is_empty());
    assert!(requests_of(s, b, Direction::Outgoing).await.is_empty());
    assert!(
        contacts_of(s, a).await.is_empty(),
        "contacts: a pending request does not make contacts"
    );

    let again = ask(a, b, None, 1_700_000_000_002);
    assert_eq!(
        s.request(&again).await.expect("request"),
        RequestOutcome::Pending,
        "contacts: asking again is still pending"
    );
    assert_eq!(
        requests_of(s, b, Direction::Incoming).await,
        vec![again.clone()],
        "contacts: asking again replaces the note and the time (no second request)"
    );

    // b asks a back: accepted at once, both requests gone.
    let back = ask(b, a, Some("sure"), 1_700_000_000_003);
    assert_eq!(
        s.request(&back).await.expect("request"),
        RequestOutcome::Accepted,
        "contacts: a request to someone who asked first accepts theirs"
    );
    assert_eq!(
        contacts_of(s, a).await,
        vec![Contact {
            user_id: b,
            since: back.ts
        }],
        "contacts: a mutual request makes contacts since the second request's time"
    );
    assert_eq!(
        contacts_of(s, b).await,
        vec![Contact {
            user_id: a,
            since: back.ts
        }],
        "contacts: the relation is listed on both sides"
    );
    for (u, d) in [
        (a, Direction::Incoming),
        (a, Direction::Outgoing),
        (b, Direction::Incoming),
        (b, Direction::Outgoing),
    ] {
        assert!(
            requests_of(s, u, d).await.is_empty(),
            "contacts: accepting removes every request between the two ({d:?})"
        );
    }
    assert_eq!(
        s.request(&ask(a, b, Some("again"), 1_700_000_000_004))
            .await
            .expect("request"),
        RequestOutcome::AlreadyContacts,
        "contacts: asking a contact reports AlreadyContacts"
    );
    assert_eq!(
        s.request(&ask(b, a, None, 1_700_000_000_005))
            .await
            .expect("request"),
        RequestOutcome::AlreadyContacts
    );
    assert!(
        requests_of(s, b, Direction::Incoming).await.is_empty()
            && requests_of(s, a, Direction::Incoming).await.is_empty(),
        "contacts: asking a contact stores no request"
    );
    assert_eq!(
        contacts_of(s, a).await,
        vec![Contact {
            user_id: b,
            since: back.ts
        }],
        "contacts: asking a contact changes nothing"
    );
    assert_eq!(
        reach1(s, a, b).await,
        Reach {
            blocked: false,
            contacts: true
        }
    );
}

async fn respond_and_cancel(s: &dyn ContactStore) {
    let (a, b, c) = (uid(), uid(), uid());
    assert!(
        matches!(
            s.respond(b, a, true, 1_700_000_000_000).await,
            Err(Error::NotFound(_))
        ),
        "contacts: responding without a pending request is NotFound"
    );
    let req = ask(a, b, Some("hello"), 1_700_000_000_001);
    s.request(&req).await.expect("request");
    assert!(
        matches!(
            s.respond(a, b, true, 1_700_000_000_002).await,
            Err(Error::NotFound(_))
        ),
        "contacts: the asking user cannot respond to its own request (NotFound)"
    );
    assert!(
        contacts_of(s, a).await.is_empty(),
        "contacts: a refused respond changes nothing"
    );
    s.respond(b, a, true, 1_700_000_000_500)
        .await
        .expect("respond");
    assert_eq!(
        contacts_of(s, b).await,
        vec![Contact {
            user_id: a,
            since: 1_700_000_000_500
        }],
        "contacts: accepting makes contacts since the time of the answer"
    );
    assert_eq!(
        contacts_of(s, a).await,
        vec![Contact {
            user_id: b,
            since: 1_700_000_000_500
        }]
    );
    assert!(
        requests_of(s, b, Direction::Incoming).await.is_empty()
            && requests_of(s, a, Direction::Outgoing).await.is_empty(),
        "contacts: an answered request is gone"
    );
    assert!(
        matches!(
            s.respond(b, a, true, 1_700_000_000_600).await,
            Err(Error::NotFound(_))
        ),
        "contacts: a request is answered once"
    );

    // Declined: only the request goes.
    s.request(&ask(c, b, None, 1_700_000_000_010))
        .await
        .expect("request");
    s.respond(b, c, false, 1_700_000_000_700)
        .await
        .expect("respond");
    assert!(
        requests_of(s, b, Direction::Incoming).await.is_empty(),
        "contacts: declining removes the request"
    );
    assert!(
        contacts_of(s, c).await.is_empty()
            && contacts_of(s, b).await.iter().all(|x| x.user_id != c),
        "contacts: declining makes no contacts"
    );
    assert_eq!(
        s.request(&ask(c, b, None, 1_700_000_000_800))
            .await
            .expect("request"),
        RequestOutcome::Pending,
        "contacts: after a decline, a new request is pending again"
    );

    // Cancel.
    assert!(
        matches!(s.cancel(b, c).await, Err(Error::NotFound(_))),
        "contacts: cancelling the other direction's request is NotFound"
    );
    s.cancel(c, b).await.expect("cancel");
    assert!(
        requests_of(s, b, Direction::Incoming).await.is_empty()
            && requests_of(s, c, Direction::Outgoing).await.is_empty(),
        "contacts: cancel removes the request"
    );
    assert!(
        matches!(s.cancel(c, b).await, Err(Error::NotFound(_))),
        "contacts: cancelling twice is NotFound"
    );
    assert!(
        matches!(
            s.respond(b, c, true, 1_700_000_000_900).await,
            Err(Error::NotFound(_))
        ),
        "contacts: a cancelled request cannot be accepted"
    );
    assert!(contacts_of(s, c).await.is_empty());
}

async fn remove_ends_both_sides(s: &dyn ContactStore) {
    let (a, b, c) = (uid(), uid(), uid());
    s.request(&ask(a, b, None, 1)).await.expect("request");
    s.respond(b, a, true, 2).await.expect("respond");
    s.request(&ask(a, c, None, 3)).await.expect("request");
    s.respond(c, a, true, 4).await.expect("respond");
    assert!(
        !s.remove(b, c).await.expect("remove"),
        "contacts: removing a non-contact reports false"
    );
    assert!(
        s.remove(b, a).await.expect("remove"),
        "contacts: either side may remove the relation"
    );
    assert!(
        contacts_of(s, b).await.is_empty(),
        "contacts: remove ends the relation for the remover"
    );
    assert_eq!(
        contacts_of(s, a).await,
        vec![Contact {
            user_id: c,
            since: 4
        }],
        "contacts: remove ends the relation for the other side, and only that one"
    );
    assert!(
        !s.remove(a, b).await.expect("remove"),
        "contacts: removing twice reports false"
    );
    assert_eq!(
        reach1(s, a, b).await,
        Reach::default(),
        "contacts: removed contacts are not contacts"
    );
    assert_eq!(
        s.request(&ask(b, a, None, 5)).await.expect("request"),
        RequestOutcome::Pending,
        "contacts: after a remove, a request is pending again"
    );
}

async fn blocks(s: &dyn ContactStore) {
    let (a, b, c, d) = (uid(), uid(), uid(), uid());
    // a and b are contacts; c asked a; a asked d.
    s.request(&ask(a, b, None, 1)).await.expect("request");
    s.request(&ask(b, a, None, 2)).await.expect("request");
    s.request(&ask(c, a, Some("?"), 3)).await.expect("request");
    s.request(&ask(a, d, None, 4)).await.expect("request");

    assert!(
        s.block(a, b, 10).await.expect("block"),
        "contacts: a new block reports true"
    );
    assert!(
        contacts_of(s, a).await.is_empty() && contacts_of(s, b).await.is_empty(),
        "contacts: a block removes the contact relation on both sides"
    );
    assert_eq!(
        reach1(s, b, a).await,
        Reach {
            blocked: true,
            contacts: false
        },
        "contacts: reach sees the block of the recipient"
    );
    assert_eq!(
        reach1(s, a, b).await,
        Reach::default(),
        "contacts: blocks are one-way"
    );
    assert!(
        !s.block(a, b, 11).await.expect("block"),
        "contacts: blocking twice reports false"
    );
    assert_eq!(s.blocked(a, None, 100).await.expect("blocked"), vec![b]);
    assert!(
        s.blocked(b, None, 100).await.expect("blocked").is_empty(),
        "contacts: the blocked user blocks nobody"
    );

    // Blocking removes requests both ways.
    assert!(s.block(a, c, 12).await.expect("block"));
    assert!(
        requests_of(s, a, Direction::Incoming).await.is_empty()
            && requests_of(s, c, Direction::Outgoing).await.is_empty(),
        "contacts: a block removes the blocked user's request to the blocker"
    );
    assert!(s.block(a, d, 13).await.expect("block"));
    assert!(
        requests_of(s, a, Direction::Outgoing).await.is_empty()
            && requests_of(s, d, Direction::Incoming).await.is_empty(),
        "contacts: a block removes the blocker's request to the blocked user"
    );
    let mut want = vec![b, c, d];
    want.sort();
    assert_eq!(
        s.blocked(a, None, 100).await.expect("blocked"),
        want,
        "contacts: blocked lists every blocked user by id"
    );

    // One-way: b may block a too, and unblocking one leaves the other.
    assert!(s.block(b, a, 14).await.expect("block"));
    assert!(
        s.unblock(a, b).await.expect("unblock"),
        "contacts: unblocking a blocked user reports true"
    );
    assert!(
        !s.unblock(a, b).await.expect("unblock"),
        "contacts: unblocking twice reports false"
    );
    assert!(
        !s.unblock(c, a).await.expect("unblock"),
        "contacts: unblocking someone never blocked reports false"
    );
    assert_eq!(
        (reach1(s, b, a).await, reach1(s, a, b).await),
        (
            Reach::default(),
            Reach {
                blocked: true,
                contacts: false
            }
        ),
        "contacts: unblock removes one direction only"
    );
    assert_eq!(s.blocked(b, None, 100).await.expect("blocked"), vec![a]);
    let mut want = vec![c, d];
    want.sort();
    assert_eq!(s.blocked(a, None, 100).await.expect("blocked"), want);
    // The store does not check blocks on request (Logic does).
    assert_eq!(
        s.request(&ask(c, a, None, 20)).await.expect("request"),
        RequestOutcome::Pending,
        "contacts: request does not check blocks"
    );
}

async fn reach_answers_in_order(s: &dyn ContactStore) {
    let (a, b, c, d) = (uid(), uid(), uid(), uid());
    s.request(&ask(a, b, None, 1)).await.expect("request");
    s.respond(b, a, true, 2).await.expect("respond");
    s.block(c, a, 3).await.expect("block");
    s.request(&ask(d, a, None, 4)).await.expect("request");
    let pairs = [
        (a, b),
        (b, a),
        (a, c),
        (c, a),
        (a, d),
        (d, a),
        (a, uid()),
        (a, b),
    ];
    let yes = |blocked, contacts| Reach { blocked, contacts };
    assert_eq!(
        s.reach(&pairs).await.expect("reach"),
        vec![
            yes(false, true),
            yes(false, true),
            yes(true, false),
            yes(false, false),
            yes(false, false),
            yes(false, false),
            yes(false, false),
            yes(false, true),
        ],
        "contacts: reach answers every pair in order (a pending request is no contact)"
    );
    assert!(
        s.reach(&[]).await.expect("reach").is_empty(),
        "contacts: reach of no pairs is empty"
    );
    let many: Vec<(UserId, UserId)> = (0..47)
        .map(|i| if i % 5 == 0 { (a, c) } else { (uid(), a) })
        .collect();
    let got = s.reach(&many).await.expect("reach");
    assert_eq!(
        got.iter().map(|r| r.blocked).collect::<Vec<_>>(),
        (0..47).map(|i| i % 5 == 0).collect::<Vec<_>>(),
        "contacts: reach of many pairs answers each in order"
    );
}

async fn lists_page_by_user_id(s: &dyn ContactStore) {
    let me = uid();
    let mut others: Vec<UserId> = (0..11).map(|_| uid()).collect();
    // Ids at and above 2^63 order after the others (u64 order).
    others.push(UserId(u64::MAX - (random_id() << 1)));
    others.push(UserId((1 << 63) | random_id() << 1));
    for (i, o) in others.iter().enumerate() {
        let ts = 100 + i as i64;
        s.request(&ask(me, *o, None, ts)).await.expect("request");
        s.respond(*o, me, true, ts).await.expect("respond");
        s.request(&ask(UserId(o.0 ^ 1), me, Some("in"), ts))
            .await
            .expect("request");
        s.request(&ask(me, UserId(o.0 ^ 2), Some("out"), ts))
            .await
            .expect("request");
        s.block(me, UserId(o.0 ^ 3), ts).await.expect("block");
    }
    others.sort();

    // contacts
    let mut paged = Vec::new();
    let mut after = None;
    for _ in 0..20 {
        let page = s.contacts(me, after, 4).await.expect("contacts");
        assert!(page.len() <= 4, "contacts: contacts honours its limit");
        let Some(last) = page.last() else { break };
        after = Some(last.user_id);
        paged.extend(page);
    }
    assert_eq!(
        paged.iter().map(|c| c.user_id).collect::<Vec<_>>(),
        others,
        "contacts: contacts pages by user id ascending, strictly after `after`"
    );
    assert!(paged
        .iter()
        .all(|c| c.since >= 100 && c.since < 100 + others.len() as i64));
    let between = UserId(others[4].0 + 1);
    let want: Vec<UserId> = others.iter().copied().filter(|o| *o > between).collect();
    assert_eq!(
        s.contacts(me, Some(between), 100)
            .await
            .expect("contacts")
            .iter()
            .map(|c| c.user_id)
            .collect::<Vec<_>>(),
        want,
        "contacts: `after` need not be a contact"
    );
    assert!(s.contacts(me, None, 0).await.expect("contacts").is_empty());
    assert!(s
        .contacts(me, Some(UserId(u64::MAX)), 10)
        .await
        .expect("contacts")
        .is_empty());

    // requests, both directions
    for (d, flip, note) in [
        (Direction::Incoming, 1u64, "in"),
        (Direction::Outgoing, 2u64, "out"),
    ] {
        let mut want: Vec<UserId> = others.iter().map(|o| UserId(o.0 ^ flip)).collect();
        want.sort();
        let mut paged = Vec::new();
        let mut after = None;
        for _ in 0..20 {
            let page = s.requests(me, d, after, 3).await.expect("requests");
            assert!(page.len() <= 3, "contacts: requests honours its limit");
            let Some(last) = page.last() else { break };
            after = Some(match d {
                Direction::Incoming => last.from,
                Direction::Outgoing => last.to,
            });
            paged.extend(page);
        }
        let got: Vec<UserId> = paged
            .iter()
            .map(|r| match d {
                Direction::Incoming => r.from,
                Direction::Outgoing => r.to,
            })
            .collect();
        assert_eq!(
            got, want,
            "contacts: {d:?} requests page by the other user's id ascending"
        );
        assert!(
            paged.iter().all(|r| r.message.as_deref() == Some(note)
                && match d {
                    Direction::Incoming => r.to == me,
                    Direction::Outgoing => r.from == me,
                }),
            "contacts: {d:?} requests carry their note and parties"
        );
        assert!(s
            .requests(me, d, None, 0)
            .await
            .expect("requests")
            .is_empty());
    }

    // blocked
    let mut want: Vec<UserId> = others.iter().map(|o| UserId(o.0 ^ 3)).collect();
    want.sort();
    let mut paged = Vec::new();
    let mut after = None;
    for _ in 0..20 {
        let page = s.blocked(me, after, 5).await.expect("blocked");
        assert!(page.len() <= 5, "contacts: blocked honours its limit");
        let Some(last) = page.last() else { break };
        after = Some(*last);
        paged.extend(page);
    }
    assert_eq!(
        paged, want,
        "contacts: blocked pages by user id ascending, strictly after `after`"
    );
    assert!(s.blocked(me, None, 0).await.expect("blocked").is_empty());
}
