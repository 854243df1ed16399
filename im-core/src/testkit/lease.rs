//! Conformance suite of `PartitionLeases`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::unique;
use crate::ports::PartitionLeases;

/// Runs every `PartitionLeases` check on fresh instances from `make`.
pub async fn lease_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn PartitionLeases>>,
{
    exclusive_renewable_releasable(make().await).await;
    expired_leases_move(make().await).await;
    members_are_counted_until_they_lapse(make().await).await;
}

async fn exclusive_renewable_releasable(l: Arc<dyn PartitionLeases>) {
    let scope = unique("push");
    let ttl = Duration::from_secs(30);
    let a = l
        .acquire(&scope, "a", &[0, 1, 2], ttl)
        .await
        .expect("acquire");
    assert_eq!(a, vec![0, 1, 2], "leases: free partitions are taken");
    let b = l
        .acquire(&scope, "b", &[1, 2, 3], ttl)
        .await
        .expect("acquire");
    assert_eq!(
        b,
        vec![3],
        "leases: a held partition is never handed to another"
    );
    let again = l
        .acquire(&scope, "a", &[0, 1, 2], ttl)
        .await
        .expect("renew");
    assert_eq!(again, vec![0, 1, 2], "leases: the holder renews its own");
    let other_scope = l
        .acquire(&unique("persist"), "b", &[0], ttl)
        .await
        .expect("acquire");
    assert_eq!(other_scope, vec![0], "leases: scopes are independent");
    l.release(&scope, "b", &[0, 1]).await.expect("release");
    assert_eq!(
        l.acquire(&scope, "b", &[1], ttl).await.expect("acquire"),
        Vec::<u32>::new(),
        "leases: releasing another's lease does nothing"
    );
    l.release(&scope, "a", &[1]).await.expect("release");
    assert_eq!(
        l.acquire(&scope, "b", &[1], ttl).await.expect("acquire"),
        vec![1],
        "leases: a released partition is free"
    );
}

async fn expired_leases_move(l: Arc<dyn PartitionLeases>) {
    let scope = unique("push");
    let short = Duration::from_millis(300);
    assert_eq!(
        l.acquire(&scope, "dead", &[5], short)
            .await
            .expect("acquire"),
        vec![5]
    );
    assert!(
        l.acquire(&scope, "heir", &[5], short)
            .await
            .expect("acquire")
            .is_empty(),
        "leases: not before it expires"
    );
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    assert_eq!(
        l.acquire(&scope, "heir", &[5], short)
            .await
            .expect("acquire"),
        vec![5],
        "leases: an expired lease is taken by another"
    );
    assert!(
        l.acquire(&scope, "dead", &[5], short)
            .await
            .expect("acquire")
            .is_empty(),
        "leases: the old holder cannot renew a lease it lost"
    );
}

async fn members_are_counted_until_they_lapse(l: Arc<dyn PartitionLeases>) {
    let scope = unique("push");
    let short = Duration::from_millis(300);
    assert_eq!(l.heartbeat(&scope, "a", short).await.expect("hb"), 1);
    assert_eq!(
        l.heartbeat(&scope, "b", Duration::from_secs(30))
            .await
            .expect("hb"),
        2
    );
    assert_eq!(
        l.heartbeat(&scope, "b", Duration::from_secs(30))
            .await
            .expect("hb"),
        2,
        "leases: a member counts once"
    );
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    assert_eq!(
        l.heartbeat(&scope, "b", Duration::from_secs(30))
            .await
            .expect("hb"),
        1,
        "leases: a member that stops beating lapses"
    );
}
