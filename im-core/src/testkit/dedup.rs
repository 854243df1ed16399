//! Conformance suite of `DedupStore`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::random_id;
use crate::ports::{DedupKey, DedupStore};

/// Runs every `DedupStore` check on fresh stores from `make`.
pub async fn dedup_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn DedupStore>>,
{
    let d = make().await;
    let ttl = Duration::from_secs(30);
    let k1 = DedupKey(u128::from(random_id()) << 64 | 1);
    let k2 = DedupKey(u128::from(random_id()) << 64 | 2);
    let first = d
        .claim(&[(k1, "one".into()), (k2, "two".into())], ttl)
        .await
        .expect("claim");
    assert_eq!(first, vec![None, None], "dedup: a fresh key is claimed");
    let second = d.claim(&[(k1, "uno".into())], ttl).await.expect("claim");
    assert_eq!(
        second,
        vec![Some("one".to_owned())],
        "dedup: the second claim returns the first value"
    );
    d.put(&[(k1, "ack-1".into())], ttl).await.expect("put");
    assert_eq!(
        d.claim(&[(k1, "x".into())], ttl).await.expect("claim"),
        vec![Some("ack-1".to_owned())],
        "dedup: put overwrites"
    );
    d.release(&[k2]).await.expect("release");
    assert_eq!(
        d.claim(&[(k2, "again".into())], ttl).await.expect("claim"),
        vec![None],
        "dedup: a released key can be claimed again"
    );

    // Within one call, a repeated key is claimed once.
    let k3 = DedupKey(u128::from(random_id()) << 64 | 3);
    let twice = d
        .claim(&[(k3, "a".into()), (k3, "b".into())], ttl)
        .await
        .expect("claim");
    assert_eq!(
        twice,
        vec![None, Some("a".to_owned())],
        "dedup: a key repeated in one call is claimed once"
    );

    // Expiry.
    let k4 = DedupKey(u128::from(random_id()) << 64 | 4);
    d.claim(&[(k4, "short".into())], Duration::from_millis(300))
        .await
        .expect("claim");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        d.claim(&[(k4, "later".into())], ttl).await.expect("claim"),
        vec![None],
        "dedup: a key expires after its TTL"
    );
}
