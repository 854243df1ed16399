//! `HmacTokenAuthenticator`: good tokens pass, everything else is
//! `Unauthenticated`; verified users get an account; it issues no tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use custom_auth::token::HmacTokenAuthenticator;
use im_core::id::{now_ms, UserId};
use im_core::memory::MemoryUserStore;
use im_core::ports::{Authenticator, UserStore};
use im_core::Error;

const SECRET: &[u8] = b"our-identity-system-shared-secret!!";

fn hour_from_now() -> i64 {
    now_ms() + 3_600_000
}

async fn refused(auth: &HmacTokenAuthenticator, token: &str) -> String {
    match auth.verify(token).await {
        Err(Error::Unauthenticated(m)) => m,
        other => panic!("{token:?}: expected Unauthenticated, got {other:?}"),
    }
}

#[tokio::test]
async fn accepts_a_good_token() {
    let auth = HmacTokenAuthenticator::new(SECRET);
    let exp = hour_from_now();
    let token = auth.mint(UserId(1001), exp).unwrap();
    let id = auth.verify(&token).await.unwrap();
    assert_eq!(id.user_id, UserId(1001));
    assert_eq!(id.expires_at, Some(exp));
}

#[tokio::test]
async fn rejects_a_bad_signature() {
    let auth = HmacTokenAuthenticator::new(SECRET);
    let exp = hour_from_now();
    // Signed with another secret.
    let other = HmacTokenAuthenticator::new(b"somebody-else's-secret-somebody-else");
    let forged = other.mint(UserId(1001), exp).unwrap();
    assert_eq!(refused(&auth, &forged).await, "invalid token");
    // A good signature moved onto another user id.
    let good = auth.mint(UserId(1001), exp).unwrap();
    let sig = good.rsplit_once('.').unwrap().1;
    assert_eq!(
        refused(&auth, &format!("1002.{exp}.{sig}")).await,
        "invalid token"
    );
    // One flipped hex digit.
    let mut flipped = good.clone();
    let last = if flipped.ends_with('0') { "1" } else { "0" };
    flipped.pop();
    flipped.push_str(last);
    assert_eq!(refused(&auth, &flipped).await, "invalid token");
}

#[tokio::test]
async fn rejects_an_expired_token() {
    let auth = HmacTokenAuthenticator::new(SECRET);
    let token = auth.mint(UserId(1001), now_ms() - 1).unwrap();
    assert_eq!(refused(&auth, &token).await, "token expired");
}

#[tokio::test]
async fn rejects_garbage() {
    let auth = HmacTokenAuthenticator::new(SECRET);
    let exp = hour_from_now();
    let sig = auth
        .mint(UserId(7), exp)
        .unwrap()
        .rsplit_once('.')
        .unwrap()
        .1
        .to_owned();
    for junk in [
        String::new(),
        "junk".into(),
        "..".into(),
        "1001.abc.00".into(),
        format!("007.{exp}.{sig}"),
        format!("x.{exp}.{sig}"),
        format!("7.{exp}.not-hex"),
        format!("7.{exp}"),
        "a".repeat(10_000),
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.c2ln".into(),
    ] {
        refused(&auth, &junk).await;
    }
}

#[tokio::test]
async fn issues_no_tokens() {
    let auth = HmacTokenAuthenticator::new(SECRET);
    assert!(matches!(
        auth.issue(UserId(1001)),
        Err(Error::PermissionDenied(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provisions_unknown_users_once() {
    let users = Arc::new(MemoryUserStore::new());
    let auth = Arc::new(HmacTokenAuthenticator::new(SECRET).with_user_provisioning(users.clone()));
    let token = auth.mint(UserId(4242), hour_from_now()).unwrap();
    assert!(users.get(UserId(4242)).await.unwrap().is_none());
    // Concurrent first uses all succeed and create one account.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (auth, token) = (auth.clone(), token.clone());
            tokio::spawn(async move { auth.verify(&token).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().user_id, UserId(4242));
    }
    let user = users.get(UserId(4242)).await.unwrap().unwrap();
    assert_eq!(user.username, "ext:4242");
    // An invalid token provisions nothing.
    let forged = HmacTokenAuthenticator::new(b"somebody-else's-secret-somebody-else")
        .mint(UserId(4243), hour_from_now())
        .unwrap();
    refused(&auth, &forged).await;
    assert!(users.get(UserId(4243)).await.unwrap().is_none());
}
