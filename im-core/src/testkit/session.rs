//! Conformance suite of `SessionStore`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{random_id, unique};
use crate::id::{SessionId, UserId};
use crate::model::{NodeId, SessionRoute};
use crate::ports::SessionStore;

fn route(user: UserId, node: &NodeId, session: u64) -> SessionRoute {
    SessionRoute {
        user_id: user,
        node: node.clone(),
        session_id: SessionId(session),
        device: "test".into(),
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
    let ra2 = route(a, &n2, 2);
    let rb = route(b, &n1, 3);
    for r in [&ra1, &ra2, &rb] {
        s.bind(r, ttl).await.expect("bind");
    }
    let got = sorted(s.lookup(&[a, b, c]).await.expect("lookup"));
    assert_eq!(
        got,
        sorted(vec![ra1.clone(), ra2.clone(), rb.clone()]),
        "sessions: lookup returns every route of many users at once, one per device"
    );
    assert!(
        s.lookup(&[c]).await.expect("lookup").is_empty(),
        "sessions: an offline user has no route"
    );
    assert!(s.lookup(&[]).await.expect("lookup").is_empty());

    s.unbind(&ra2).await.expect("unbind");
    assert_eq!(
        s.lookup(&[a]).await.expect("lookup"),
        vec![ra1.clone()],
        "sessions: unbind removes one route only"
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
}
