//! Conformance suite of `SessionStore`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{random_id, unique};
use crate::id::{now_ms, SessionId, UserId};
use crate::model::{NodeId, SessionRoute};
use crate::ports::SessionStore;

fn route(user: UserId, node: &NodeId, session: u64) -> SessionRoute {
    SessionRoute {
        user_id: user,
        node: node.clone(),
        session_id: SessionId(session),
        device: "test".into(),
        token_id: None,
    }
}

fn sorted(mut v: Vec<SessionRoute>) -> Vec<SessionRoute> {
    v.sort_by_key(|r| (r.user_id, r.node.clone(), r.session_id));
    v
}

/// Runs every `SessionStore` check on fresh stores from `make`.
pub async fn session_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn SessionStore>>,
{
    let s = make().await;
    let ttl = Duration::from_secs(30);
    let n1 = NodeId(unique("node1"));
    let n2 = NodeId(unique("node2"));
    let a = UserId(random_id());
    let b = UserId(random_id());
    let c = UserId(random_id());
    let ra1 = route(a, &n1, 1);
    // A route keeps the id of the token its session was opened with.
    let ra2 = SessionRoute {
        token_id: Some(format!("{:032x}", random_id())),
        ..route(a, &n2, 2)
    };
    let rb = route(b, &n1, 3);
    for r in [&ra1, &ra2, &rb] {
        s.bind(r, ttl).await.expect("bind");
    }
    let got = sorted(s.lookup(&[a, b, c]).await.expect("lookup"));
    assert_eq!(
        got,
        sorted(vec![ra1.clone(), ra2.clone(), rb.clone()]),
        "sessions: lookup returns every route of many users at once, one per device, \
         with its token id"
    );
    assert!(
        s.lookup(&[c]).await.expect("lookup").is_empty(),
        "sessions: an offline user has no route"
    );
    assert!(s.lookup(&[]).await.expect("lookup").is_empty());

    // Unbinding names the route by user, node and session (the closing side
    // may not know the token id).
    s.unbind(&SessionRoute {
        token_id: None,
        ..ra2.clone()
    })
    .await
    .expect("unbind");
    assert_eq!(
        s.lookup(&[a]).await.expect("lookup"),
        vec![ra1.clone()],
        "sessions: unbind removes one route only, whatever its token id"
    );

    let dropped = s.drop_node(&n1).await.expect("drop_node");
    assert_eq!(
        dropped, 2,
        "sessions: drop_node reports the routes it dropped"
    );
    assert!(
        s.lookup(&[a, b]).await.expect("lookup").is_empty(),
        "sessions: drop_node drops every route of the node"
    );

    // TTL: a route not refreshed expires; a refreshed one stays.
    let short = Duration::from_millis(1000);
    let rx = route(c, &n2, 7);
    let ry = route(b, &n2, 8);
    s.bind(&rx, short).await.expect("bind");
    s.bind(&ry, short).await.expect("bind");
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.refresh(std::slice::from_ref(&ry), ttl)
        .await
        .expect("refresh");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        s.lookup(&[c]).await.expect("lookup").is_empty(),
        "sessions: a route expires after its TTL"
    );
    assert_eq!(
        s.lookup(&[b]).await.expect("lookup"),
        vec![ry.clone()],
        "sessions: refresh extends the TTL"
    );
    s.unbind(&rx)
        .await
        .expect("sessions: unbinding an expired route is fine");
    // refresh re-adds a route that expired or was dropped.
    s.drop_node(&n2).await.expect("drop");
    s.refresh(std::slice::from_ref(&ry), ttl)
        .await
        .expect("refresh");
    assert_eq!(
        s.lookup(&[b]).await.expect("lookup"),
        vec![ry],
        "sessions: refresh re-adds a missing route"
    );

    last_seen(s.as_ref()).await;
    presence_subscriptions(s.as_ref()).await;
}

/// Waits a few milliseconds so the clock moves past `t`.
async fn after(t: i64) {
    while now_ms() <= t {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn last_seen(s: &dyn SessionStore) {
    let ttl = Duration::from_secs(30);
    let n = NodeId(unique("seen"));
    let a = UserId(random_id());
    let b = UserId(random_id());
    let never = UserId(random_id());
    assert_eq!(
        s.last_seen(&[never]).await.expect("last_seen"),
        vec![None],
        "sessions: a never-seen user has no last_seen"
    );
    assert!(s.last_seen(&[]).await.expect("last_seen").is_empty());

    let before_bind = now_ms();
    let ra = route(a, &n, 1);
    s.bind(&ra, ttl).await.expect("bind");
    let seen = s.last_seen(&[never, a, b]).await.expect("last_seen");
    assert_eq!(seen.len(), 3, "sessions: last_seen answers every user");
    assert_eq!(
        (seen[0], seen[2]),
        (None, None),
        "sessions: last_seen answers in the order asked"
    );
    let bound_at = seen[1].expect("sessions: bind records last_seen");
    assert!(
        bound_at >= before_bind,
        "sessions: last_seen after bind ({bound_at}) is not older than the bind ({before_bind})"
    );

    after(bound_at).await;
    let before_refresh = now_ms();
    s.refresh(std::slice::from_ref(&ra), ttl)
        .await
        .expect("refresh");
    let refreshed = s.last_seen(&[a]).await.expect("last_seen")[0].expect("last_seen");
    assert!(
        refreshed >= before_refresh,
        "sessions: refresh updates last_seen"
    );

    after(refreshed).await;
    let before_unbind = now_ms();
    s.unbind(&ra).await.expect("unbind");
    let unbound = s.last_seen(&[a]).await.expect("last_seen")[0].expect("last_seen");
    assert!(
        unbound >= before_unbind,
        "sessions: unbind updates last_seen ({unbound} < {before_unbind})"
    );

    let rb = route(b, &n, 2);
    s.bind(&rb, ttl).await.expect("bind");
    let bound_b = s.last_seen(&[b]).await.expect("last_seen")[0].expect("last_seen");
    after(bound_b).await;
    let before_drop = now_ms();
    assert_eq!(s.drop_node(&n).await.expect("drop_node"), 1);
    let dropped = s.last_seen(&[b]).await.expect("last_seen")[0].expect("last_seen");
    assert!(
        dropped >= before_drop,
        "sessions: drop_node updates last_seen of the users it dropped"
    );
    assert_eq!(
        s.last_seen(&[a]).await.expect("last_seen")[0],
        Some(unbound),
        "sessions: last_seen of other users is left alone"
    );
}

fn sorted_ids(mut v: Vec<UserId>) -> Vec<UserId> {
    v.sort();
    v
}

async fn presence_subscriptions(s: &dyn SessionStore) {
    let watched = UserId(random_id());
    let other = UserId(random_id());
    let nobody = UserId(random_id());
    let short = UserId(random_id());
    let extended = UserId(random_id());
    let long = UserId(random_id());
    let ttl = Duration::from_millis(1500);
    assert!(
        s.presence_subscribers(nobody)
            .await
            .expect("presence_subscribers")
            .is_empty(),
        "sessions: an unwatched user has no presence subscribers"
    );
    s.subscribe_presence(short, &[watched, other], ttl)
        .await
        .expect("subscribe");
    s.subscribe_presence(extended, &[watched], ttl)
        .await
        .expect("subscribe");
    s.subscribe_presence(long, &[watched], Duration::from_secs(60))
        .await
        .expect("subscribe");
    s.subscribe_presence(long, &[], Duration::from_secs(60))
        .await
        .expect("sessions: subscribing to nobody is fine");
    assert_eq!(
        sorted_ids(s.presence_subscribers(watched).await.expect("subscribers")),
        sorted_ids(vec![short, extended, long]),
        "sessions: presence_subscribers lists every live subscriber once"
    );
    assert_eq!(
        s.presence_subscribers(other).await.expect("subscribers"),
        vec![short],
        "sessions: one subscribe covers every user named"
    );
    // Subscribing again extends the subscription.
    s.subscribe_presence(extended, &[watched], Duration::from_secs(60))
        .await
        .expect("subscribe");
    assert_eq!(
        sorted_ids(s.presence_subscribers(watched).await.expect("subscribers")),
        sorted_ids(vec![short, extended, long]),
        "sessions: subscribing again does not duplicate a subscriber"
    );
    let deadline = std::time::Instant::now() + ttl + Duration::from_secs(3);
    let left = loop {
        let subs = sorted_ids(s.presence_subscribers(watched).await.expect("subscribers"));
        if !subs.contains(&short) || std::time::Instant::now() > deadline {
            break subs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        left,
        sorted_ids(vec![extended, long]),
        "sessions: a presence subscription expires after its ttl; subscribing again extends it"
    );
    assert!(
        s.presence_subscribers(other)
            .await
            .expect("subscribers")
            .is_empty(),
        "sessions: an expired subscription is gone for every user it named"
    );
}
