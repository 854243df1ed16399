//! Conformance suite of `TokenRevocations`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::random_id;
use crate::id::now_ms;
use crate::ports::TokenRevocations;

fn id(tag: &str) -> String {
    format!("{:032x}-{tag}", u128::from(random_id()) << 32)
}

/// Runs every `TokenRevocations` check on fresh instances from `make`.
pub async fn revocation_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn TokenRevocations>>,
{
    let r = make().await;
    let later = now_ms() + 60_000;

    let (a, b) = (id("a"), id("b"));
    assert!(
        !r.is_revoked(&a).await.expect("is_revoked"),
        "revocations: an id never revoked is not revoked"
    );
    r.revoke(&a, later).await.expect("revoke");
    assert!(
        r.is_revoked(&a).await.expect("is_revoked"),
        "revocations: a revoked id is revoked as soon as revoke returns"
    );
    assert!(
        !r.is_revoked(&b).await.expect("is_revoked"),
        "revocations: revoking one id leaves the others alone"
    );
    r.revoke(&a, later).await.expect("revoke again");
    assert!(
        r.is_revoked(&a).await.expect("is_revoked"),
        "revocations: revoking twice is harmless"
    );

    // Opaque ids: characters with a meaning to some backends are just data.
    let odd = format!("{}:{{x}}* ?|\"'\\", id("odd"));
    r.revoke(&odd, later).await.expect("revoke an odd id");
    assert!(
        r.is_revoked(&odd).await.expect("is_revoked"),
        "revocations: ids are opaque strings"
    );
    assert!(
        !r.is_revoked(&odd[..odd.len() - 1])
            .await
            .expect("is_revoked"),
        "revocations: ids match exactly, not by prefix"
    );

    // A revocation already past its end does nothing.
    let past = id("past");
    r.revoke(&past, now_ms() - 1_000).await.expect("revoke");
    assert!(
        !r.is_revoked(&past).await.expect("is_revoked"),
        "revocations: a revocation ending in the past is a no-op"
    );

    // Many at once.
    let many: Vec<String> = (0..32).map(|i| id(&format!("m{i}"))).collect();
    futures::future::try_join_all(many.iter().map(|m| r.revoke(m, later)))
        .await
        .expect("concurrent revokes");
    for m in &many {
        assert!(
            r.is_revoked(m).await.expect("is_revoked"),
            "revocations: concurrent revokes all take effect"
        );
    }

    // Expiry, never shortened, extended by a later end.
    let now = now_ms();
    let (short, kept, extended) = (id("short"), id("kept"), id("extended"));
    r.revoke(&short, now + 300).await.expect("revoke");
    r.revoke(&kept, now + 60_000).await.expect("revoke");
    r.revoke(&kept, now + 300).await.expect("revoke shorter");
    r.revoke(&extended, now + 300).await.expect("revoke");
    r.revoke(&extended, now + 60_000)
        .await
        .expect("revoke longer");
    assert!(
        r.is_revoked(&short).await.expect("is_revoked"),
        "revocations: revoked until its end"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !r.is_revoked(&short).await.expect("is_revoked"),
        "revocations: a revocation ends at until_ms"
    );
    assert!(
        r.is_revoked(&kept).await.expect("is_revoked"),
        "revocations: revoking again with an earlier end never shortens it"
    );
    assert!(
        r.is_revoked(&extended).await.expect("is_revoked"),
        "revocations: revoking again with a later end extends it"
    );
    assert!(
        r.is_revoked(&a).await.expect("is_revoked"),
        "revocations: a long revocation outlives the short ones"
    );

    // A fresh instance over the same backend type starts empty of our ids.
    let fresh = make().await;
    assert!(
        !fresh.is_revoked(&id("fresh")).await.expect("is_revoked"),
        "revocations: a fresh instance holds nothing"
    );
}
