//! Conformance suite of `Throttle`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::random_id;
use crate::ports::{Backoff, Rate, Throttle};

fn key(tag: &str) -> String {
    format!("{}-{tag}", random_id())
}

/// Slack for clock granularity and a shared backend's round trip.
const SLACK: Duration = Duration::from_millis(50);

/// Runs every `Throttle` check on fresh instances from `make`.
pub async fn throttle_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Throttle>>,
{
    let t = make().await;

    // Buckets: a burst, then a refusal that says how long to wait.
    let rate = Rate::per_second(5.0, 3);
    let (a, b) = (key("a"), key("b"));
    for i in 0..3 {
        assert_eq!(
            t.take(&a, rate).await.expect("take"),
            None,
            "throttle: take {i} of a burst of 3 is allowed"
        );
    }
    let wait = t
        .take(&a, rate)
        .await
        .expect("take")
        .expect("throttle: the take after a burst is refused");
    assert!(
        !wait.is_zero() && wait <= rate.refill_time() + SLACK,
        "throttle: a refusal waits at most one refill time (200 ms), got {wait:?}"
    );
    assert_eq!(
        t.take(&b, rate).await.expect("take"),
        None,
        "throttle: another key has its own bucket"
    );
    // A refused take consumes nothing: after the wait, one token is back.
    tokio::time::sleep(wait + Duration::from_millis(5)).await;
    assert_eq!(
        t.take(&a, rate).await.expect("take"),
        None,
        "throttle: after the announced wait a take is allowed"
    );

    // Concurrent takes never allow more than the bucket holds.
    let c = key("c");
    let slow = Rate::per_hour(1, 5);
    let takes = (0..20).map(|_| {
        let t = t.clone();
        let c = c.clone();
        async move { t.take(&c, slow).await.expect("take") }
    });
    let allowed = futures::future::join_all(takes)
        .await
        .into_iter()
        .filter(Option::is_none)
        .count();
    assert_eq!(
        allowed, 5,
        "throttle: 20 concurrent takes of a bucket of 5 allow 5"
    );

    // Failures: free ones, then a lockout that doubles up to the cap.
    let backoff = Backoff {
        free: 2,
        base: Duration::from_millis(300),
        max: Duration::from_millis(1000),
        forget_after: Duration::from_secs(60),
    };
    let (u, v) = (key("u"), key("v"));
    assert_eq!(
        t.lockout(&u).await.expect("lockout"),
        None,
        "throttle: no failure, no lockout"
    );
    for i in 0..2 {
        assert_eq!(
            t.fail(&u, backoff).await.expect("fail"),
            None,
            "throttle: free failure {i} locks nothing"
        );
    }
    assert_eq!(
        t.lockout(&u).await.expect("lockout"),
        None,
        "throttle: free failures lock nothing"
    );
    let first = t.fail(&u, backoff).await.expect("fail");
    assert_eq!(
        first,
        Some(backoff.base),
        "throttle: the first failure past the free ones locks for base"
    );
    let left = t
        .lockout(&u)
        .await
        .expect("lockout")
        .expect("throttle: a key is locked out right after its lockout starts");
    assert!(
        left <= backoff.base,
        "throttle: lockout left {left:?} is at most the lockout"
    );
    assert_eq!(
        t.lockout(&v).await.expect("lockout"),
        None,
        "throttle: one key's failures lock out no other"
    );
    assert_eq!(
        t.take(&u, rate).await.expect("take"),
        None,
        "throttle: failure keys and bucket keys are separate"
    );
    assert_eq!(
        t.fail(&u, backoff).await.expect("fail"),
        Some(Duration::from_millis(600)),
        "throttle: the lockout doubles"
    );
    assert_eq!(
        t.fail(&u, backoff).await.expect("fail"),
        Some(backoff.max),
        "throttle: the lockout stops at max"
    );
    assert_eq!(
        t.fail(&u, backoff).await.expect("fail"),
        Some(backoff.max),
        "throttle: the lockout stays at max"
    );
    t.clear(&u).await.expect("clear");
    assert_eq!(
        t.lockout(&u).await.expect("lockout"),
        None,
        "throttle: clear ends the lockout"
    );
    assert_eq!(
        t.fail(&u, backoff).await.expect("fail"),
        None,
        "throttle: after clear the count starts again"
    );

    // A lockout ends when its time has passed.
    let w = key("w");
    let short = Backoff {
        free: 0,
        base: Duration::from_millis(150),
        max: Duration::from_millis(150),
        forget_after: Duration::from_secs(60),
    };
    assert_eq!(t.fail(&w, short).await.expect("fail"), Some(short.base));
    tokio::time::sleep(short.base + SLACK).await;
    assert_eq!(
        t.lockout(&w).await.expect("lockout"),
        None,
        "throttle: a lockout is over once its time has passed"
    );

    // A fresh instance from the factory works too (isolation of instances).
    let fresh = make().await;
    assert_eq!(fresh.take(&key("x"), rate).await.expect("take"), None);
}
