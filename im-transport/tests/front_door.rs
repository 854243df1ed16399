//! The front door under abuse, over real sockets: login throttling per
//! account and per address (with trusted proxies), registration limits and
//! the registration guard, the cap on password hashing, WebSocket limits per
//! address, and counts shared between two API instances through Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use im_core::frontdoor::{FrontDoor, FrontDoorConfig};
use im_core::memory::MemoryThrottle;
use im_core::node::{Backends, NodeConfig};
use im_core::ports::{Backoff, Rate, RegistrationAttempt, RegistrationGuard, Throttle};
use im_core::{Error, Result};
use serde_json::{json, Value};
use support::{start_with, Server, Via, PASSWORD, SECRET};

fn door(throttle: Arc<dyn Throttle>, config: FrontDoorConfig) -> Arc<FrontDoor> {
    Arc::new(FrontDoor::new(throttle, config))
}

async fn server(config: FrontDoorConfig) -> (Server, Arc<FrontDoor>) {
    let d = door(Arc::new(MemoryThrottle::new()), config);
    let s = start_with(
        Backends::memory(SECRET),
        NodeConfig::default(),
        Some(d.clone()),
    )
    .await;
    (s, d)
}

/// `POST path` with extra headers: `(status, Retry-After, body)`.
async fn post(
    s: &Server,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Option<u64>, Value) {
    let mut req = s.http.post(format!("{}{path}", s.base)).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = serde_json::from_str(&res.text().await.unwrap()).unwrap_or(Value::Null);
    (status, retry, body)
}

async fn login(s: &Server, user: &str, password: &str) -> (u16, Option<u64>, Value) {
    post(
        s,
        "/sessions",
        json!({"username": user, "password": password}),
        &[],
    )
    .await
}

fn name(tag: &str) -> String {
    format!("{tag}{}", im_core::testkit::random_id() % 1_000_000_000)
}

fn backoff(free: u32) -> Backoff {
    Backoff {
        free,
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
        forget_after: Duration::from_secs(3600),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_lock_the_account_and_nobody_else() {
    let (s, _) = server(FrontDoorConfig {
        login_backoff: Some(backoff(3)),
        ..FrontDoorConfig::unlimited()
    })
    .await;
    let (alice, bob) = (name("alice"), name("bob"));
    s.register(&alice).await;
    s.register(&bob).await;

    // Three free failures, the fourth starts a lockout of a second.
    for i in 0..4 {
        let (status, _, v) = login(&s, &alice, "wrong-password").await;
        assert_eq!(status, 401, "wrong password {i}: {v}");
    }
    let (status, retry, v) = login(&s, &alice, PASSWORD).await;
    assert_eq!(
        status, 429,
        "a locked-out account is refused even with its password: {v}"
    );
    assert_eq!(v["error"]["code"], "resource_exhausted");
    assert_eq!(
        retry,
        Some(1),
        "Retry-After says how long the lockout lasts"
    );
    // Another account is not slowed down at all.
    let (status, _, v) = login(&s, &bob, PASSWORD).await;
    assert_eq!(
        status, 200,
        "an unrelated account logs in during the lockout: {v}"
    );

    // After the lockout the right password works and forgets the failures.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let (status, _, v) = login(&s, &alice, PASSWORD).await;
    assert_eq!(status, 200, "after the lockout: {v}");
    for i in 0..3 {
        let (status, _, _) = login(&s, &alice, "wrong-password").await;
        assert_eq!(
            status, 401,
            "a success resets the count (failure {i} is free again)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_from_one_address_are_limited_and_proxies_are_believed_only_when_trusted() {
    let throttle: Arc<dyn Throttle> = Arc::new(MemoryThrottle::new());
    let config = FrontDoorConfig {
        login_per_address: Some(Rate::per_hour(1, 3)),
        ..FrontDoorConfig::unlimited()
    };
    let d = door(throttle.clone(), config.clone());
    let s = start_with(Backends::memory(SECRET), NodeConfig::default(), Some(d)).await;
    let who = name("carol");
    s.register(&who).await;
    for i in 0..3 {
        let (status, _, _) = login(&s, &who, "wrong-password").await;
        assert_eq!(
            status, 401,
            "attempt {i} of the burst reaches the password check"
        );
    }
    let (status, retry, _) = login(&s, &who, PASSWORD).await;
    assert_eq!(
        status, 429,
        "the fourth attempt from one address is throttled"
    );
    assert!(
        retry.is_some_and(|r| r > 1),
        "Retry-After of an hourly bucket: {retry:?}"
    );
    // The peer (127.0.0.1) is not a trusted proxy: its X-Forwarded-For is ignored.
    let (status, _, _) = post(
        &s,
        "/sessions",
        json!({"username": who, "password": PASSWORD}),
        &[("x-forwarded-for", "203.0.113.5")],
    )
    .await;
    assert_eq!(
        status, 429,
        "a forged X-Forwarded-For from an untrusted peer changes nothing"
    );

    // Behind a trusted proxy, each forwarded client has its own bucket.
    let trusting = door(
        throttle,
        FrontDoorConfig {
            trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
            ..config
        },
    );
    let s2 = start_with(
        Backends::memory(SECRET),
        NodeConfig::default(),
        Some(trusting),
    )
    .await;
    s2.register(&who).await;
    let (status, _, v) = post(
        &s2,
        "/sessions",
        json!({"username": who, "password": PASSWORD}),
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.5")],
    )
    .await;
    assert_eq!(
        status, 200,
        "the forwarded client 203.0.113.5 has its own bucket: {v}"
    );
}

/// Registrations need the invite code in `X-Registration-Proof`.
struct InviteOnly;

#[async_trait]
impl RegistrationGuard for InviteOnly {
    async fn check(&self, attempt: &RegistrationAttempt) -> Result<()> {
        assert_eq!(attempt.address, IpAddr::from([127, 0, 0, 1]));
        match attempt.proof.as_deref() {
            Some("open sesame") => Ok(()),
            _ => Err(Error::PermissionDenied("an invite code is needed".into())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_limited_and_guarded() {
    let (s, _) = server(FrontDoorConfig {
        register_per_address: Some(Rate::per_hour(1, 3)),
        ..FrontDoorConfig::unlimited()
    })
    .await;
    let body = |n: &str| json!({"username": n, "password": PASSWORD});
    for i in 0..3 {
        let (status, _, v) = post(&s, "/users", body(&name("dave")), &[]).await;
        assert_eq!(status, 201, "registration {i} of the burst: {v}");
    }
    let (status, retry, v) = post(&s, "/users", body(&name("dave")), &[]).await;
    assert_eq!(status, 429, "the fourth registration from one address: {v}");
    assert_eq!(v["error"]["code"], "resource_exhausted");
    assert!(retry.is_some());
    // A malformed username is refused before it spends anything.
    let (status, _, _) = post(&s, "/users", body("x"), &[]).await;
    assert_eq!(status, 400);

    let d = Arc::new(
        FrontDoor::new(
            Arc::new(MemoryThrottle::new()),
            FrontDoorConfig {
                register_global: Some(Rate::per_hour(1, 2)),
                ..FrontDoorConfig::unlimited()
            },
        )
        .with_registration_guard(Arc::new(InviteOnly)),
    );
    let s = start_with(Backends::memory(SECRET), NodeConfig::default(), Some(d)).await;
    let (status, _, v) = post(&s, "/users", body(&name("erin")), &[]).await;
    assert_eq!(status, 403, "no invite code: {v}");
    assert_eq!(v["error"]["code"], "permission_denied");
    let proof = [("x-registration-proof", "open sesame")];
    let (status, _, v) = post(&s, "/users", body(&name("erin")), &proof).await;
    assert_eq!(status, 201, "with the invite code: {v}");
    let (status, _, _) = post(
        &s,
        "/users",
        body(&name("erin")),
        &[("x-forwarded-for", "1.2.3.4")],
    )
    .await;
    assert_eq!(
        status, 429,
        "the global bucket (2) is spent by the two attempts before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_answered_503_beyond_the_hashing_queue() {
    let mut node = NodeConfig::default();
    node.logic.hash_concurrency = 1;
    node.logic.hash_queue = 2;
    let s = start_with(Backends::memory(SECRET), node, None).await;
    let calls = (0..40).map(|i| {
        let http = s.http.clone();
        let url = format!("{}/sessions", s.base);
        async move {
            let res = http
                .post(url)
                .json(&json!({"username": format!("nobody{i}"), "password": "wrong-password"}))
                .send()
                .await
                .unwrap();
            (
                res.status().as_u16(),
                res.headers().contains_key("retry-after"),
            )
        }
    });
    let answers = futures::future::join_all(calls).await;
    let busy = answers.iter().filter(|(s, _)| *s == 503).count();
    let wrong = answers.iter().filter(|(s, _)| *s == 401).count();
    assert_eq!(
        busy + wrong,
        40,
        "every login is answered 401 or 503: {answers:?}"
    );
    assert!(
        busy > 0,
        "40 at once against 1 slot + 2 waiting: some are refused"
    );
    assert!(wrong >= 3, "the slot and the queue are served: {answers:?}");
    assert!(
        answers.iter().filter(|(s, _)| *s == 503).all(|(_, r)| *r),
        "every 503 carries Retry-After"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sockets_per_address_are_capped_before_the_upgrade() {
    let (s, d) = server(FrontDoorConfig {
        ws_open_per_address: Some(2),
        ..FrontDoorConfig::unlimited()
    })
    .await;
    let who = name("frank");
    s.register(&who).await;
    let (token, _) = s.login(&who).await;
    let first = s.ws_open(Via::Header(&token)).await;
    let _second = s.ws_open(Via::Header(&token)).await;
    assert_eq!(
        s.ws(Via::Header(&token)).await.err(),
        Some(429),
        "a third socket from the address is refused before the upgrade"
    );
    drop(first);
    // The count drops when the closed session ends.
    let local = IpAddr::from([127, 0, 0, 1]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while d.open_sockets(local) > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed socket is never uncounted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        s.ws(Via::Header(&token)).await.is_ok(),
        "a socket closed makes room"
    );

    let (s, _) = server(FrontDoorConfig {
        ws_upgrades_per_address: Some(Rate::per_hour(1, 2)),
        ..FrontDoorConfig::unlimited()
    })
    .await;
    s.register(&who).await;
    let (token, _) = s.login(&who).await;
    let _a = s.ws_open(Via::Header(&token)).await;
    let _b = s.ws_open(Via::Header(&token)).await;
    assert_eq!(
        s.ws(Via::Header(&token)).await.err(),
        Some(429),
        "upgrades per address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_instances_share_the_counts_through_redis() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let conn = im_store::redis::RedisConn::connect(
        im_store::redis::RedisConfig::new(url.clone())
            .with_prefix(im_core::testkit::unique("imfd")),
    )
    .await
    .unwrap_or_else(|e| {
        panic!("Redis is not reachable at {url} ({e}); start it (scripts/services.sh) or point REDIS_URL at yours")
    });
    let throttle: Arc<dyn Throttle> = Arc::new(conn.throttle());
    let config = FrontDoorConfig {
        login_backoff: Some(backoff(2)),
        ..FrontDoorConfig::unlimited()
    };
    // One user store shared by both instances, like a cluster's database.
    let backends = Backends::memory(SECRET);
    let users = backends.logic.users.clone();
    let a = start_with(
        backends,
        NodeConfig::default(),
        Some(door(throttle.clone(), config.clone())),
    )
    .await;
    let mut other = Backends::memory(SECRET);
    other.logic.users = users;
    let b = start_with(other, NodeConfig::default(), Some(door(throttle, config))).await;
    let who = name("grace");
    a.register(&who).await;
    for _ in 0..3 {
        assert_eq!(login(&a, &who, "wrong-password").await.0, 401);
    }
    let (status, retry, v) = login(&b, &who, PASSWORD).await;
    assert_eq!(
        status, 429,
        "failures counted on instance A lock the account on B: {v}"
    );
    assert_eq!(retry, Some(1));
    conn.delete_namespace().await.unwrap();
}
