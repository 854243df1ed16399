//! Conformance suite of `DeviceStore`.

use std::future::Future;
use std::sync::Arc;

use super::random_id;
use crate::error::Error;
use crate::id::UserId;
use crate::ports::{DeviceStore, Platform, PushToken, MAX_DEVICES_PER_USER, MAX_PUSH_TOKEN_LEN};

fn user() -> UserId {
    UserId(random_id())
}

/// A token unique to this run.
fn fresh_token(tag: &str) -> String {
    format!("{tag}:{:x}-{:x}_T", random_id(), random_id())
}

fn token(platform: Platform, device: &str, tag: &str, at: i64) -> PushToken {
    PushToken {
        platform,
        token: fresh_token(tag),
        device: device.to_owned(),
        registered_at: at,
    }
}

async fn list(s: &dyn DeviceStore, u: UserId) -> Vec<PushToken> {
    s.list(u)
        .await
        .unwrap_or_else(|e| panic!("devices: list failed: {e}"))
}

async fn register(s: &dyn DeviceStore, u: UserId, t: &PushToken) {
    s.register(u, t)
        .await
        .unwrap_or_else(|e| panic!("devices: register of {} failed: {e}", t.device));
}

/// Runs every `DeviceStore` check on fresh stores from `make`.
pub async fn device_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn DeviceStore>>,
{
    register_list_and_replace(make().await.as_ref()).await;
    remove_and_remove_token(make().await.as_ref()).await;
    tokens_move_between_devices_and_users(make().await.as_ref()).await;
    at_most_twenty_devices(make().await.as_ref()).await;
    concurrent_registrations_keep_the_bound(make().await).await;
    invalid_tokens_are_refused(make().await.as_ref()).await;
    previews_default_to_shown(make().await.as_ref()).await;
}

async fn register_list_and_replace(s: &dyn DeviceStore) {
    let (a, b) = (user(), user());
    assert!(
        list(s, a).await.is_empty(),
        "devices: an unknown user has no tokens"
    );
    let web = token(Platform::Webhook, "web", "w", 1_700_000_000_001);
    let ios = token(Platform::Apns, "ios", "i", 1_700_000_000_002);
    let android = token(Platform::Fcm, "android-2_b", "a", 1_700_000_000_003);
    for t in [&web, &ios, &android] {
        register(s, a, t).await;
    }
    assert_eq!(
        list(s, a).await,
        vec![android.clone(), ios.clone(), web.clone()],
        "devices: list returns every field as registered, sorted by device label"
    );
    assert!(
        list(s, b).await.is_empty(),
        "devices: one user's tokens are not another's"
    );

    // Re-registering a label replaces its token, platform and time.
    let ios2 = token(Platform::Fcm, "ios", "i2", 1_700_000_000_009);
    register(s, a, &ios2).await;
    assert_eq!(
        list(s, a).await,
        vec![android.clone(), ios2.clone(), web.clone()],
        "devices: registering a label again replaces its token (one token per label)"
    );
    register(s, a, &ios2).await;
    assert_eq!(
        list(s, a).await.len(),
        3,
        "devices: registering the same token twice is harmless"
    );

    // The longest token and every printable character round-trip.
    let long = PushToken {
        platform: Platform::Webhook,
        token: format!(
            "{}{}",
            fresh_token("l"),
            "!\"#$%&'()*+,./;<=>?@[\\]^`{|}~".repeat(30)
        )[..MAX_PUSH_TOKEN_LEN]
            .to_owned(),
        device: "x".repeat(32),
        registered_at: -1,
    };
    register(s, b, &long).await;
    assert_eq!(
        list(s, b).await,
        vec![long],
        "devices: a 512-byte token of odd characters and a 32-character label round-trip"
    );
}

async fn remove_and_remove_token(s: &dyn DeviceStore) {
    let (a, b) = (user(), user());
    let web = token(Platform::Webhook, "web", "w", 1);
    let ios = token(Platform::Apns, "ios", "i", 2);
    register(s, a, &web).await;
    register(s, a, &ios).await;

    assert!(
        !s.remove(a, "nope").await.expect("remove"),
        "devices: removing an unknown device answers false"
    );
    assert!(
        !s.remove(b, "web").await.expect("remove"),
        "devices: removing another user's device label answers false"
    );
    assert!(
        s.remove(a, "web").await.expect("remove"),
        "devices: removing a registered device answers true"
    );
    assert_eq!(
        list(s, a).await,
        vec![ios.clone()],
        "devices: remove takes exactly that device's token"
    );
    assert!(
        !s.remove(a, "web").await.expect("remove"),
        "devices: removing it again answers false"
    );

    assert!(
        !s.remove_token(a, &fresh_token("unknown"))
            .await
            .expect("remove_token"),
        "devices: removing an unknown token answers false"
    );
    assert!(
        !s.remove_token(b, &ios.token).await.expect("remove_token"),
        "devices: remove_token never removes another user's token"
    );
    assert_eq!(list(s, a).await, vec![ios.clone()]);

    // A stale token (answered TokenGone after the device registered a new
    // one) leaves the new token alone.
    let ios_new = token(Platform::Apns, "ios", "i-new", 3);
    register(s, a, &ios_new).await;
    assert!(
        !s.remove_token(a, &ios.token).await.expect("remove_token"),
        "devices: a replaced token is no longer held"
    );
    assert_eq!(
        list(s, a).await,
        vec![ios_new.clone()],
        "devices: removing a stale token keeps the device's fresh token"
    );
    assert!(
        s.remove_token(a, &ios_new.token)
            .await
            .expect("remove_token"),
        "devices: removing a held token answers true"
    );
    assert!(
        list(s, a).await.is_empty(),
        "devices: remove_token removes the device holding the token"
    );
    // The label is free again.
    register(s, a, &web).await;
    assert_eq!(list(s, a).await, vec![web]);
}

async fn tokens_move_between_devices_and_users(s: &dyn DeviceStore) {
    let (a, b) = (user(), user());
    let phone = token(Platform::Fcm, "android", "p", 1);
    register(s, a, &phone).await;

    // The same app install under another label of the same user.
    let relabelled = PushToken {
        device: "phone".into(),
        registered_at: 2,
        ..phone.clone()
    };
    register(s, a, &relabelled).await;
    assert_eq!(
        list(s, a).await,
        vec![relabelled.clone()],
        "devices: a token registered under another label moves there (no duplicate)"
    );

    // The phone changes hands.
    let theirs = PushToken {
        device: "android".into(),
        registered_at: 3,
        ..phone.clone()
    };
    register(s, b, &theirs).await;
    assert!(
        list(s, a).await.is_empty(),
        "devices: a token registered by another user leaves its former user"
    );
    assert_eq!(
        list(s, b).await,
        vec![theirs.clone()],
        "devices: ... and belongs to the new user"
    );
    assert!(
        !s.remove_token(a, &phone.token).await.expect("remove_token"),
        "devices: the former user no longer holds the moved token"
    );
    assert_eq!(list(s, b).await, vec![theirs]);
}

async fn at_most_twenty_devices(s: &dyn DeviceStore) {
    let u = user();
    let mut tokens: Vec<PushToken> = (0..MAX_DEVICES_PER_USER)
        .map(|i| token(Platform::Fcm, &format!("d{i:02}"), "m", i as i64))
        .collect();
    for t in &tokens {
        register(s, u, t).await;
    }
    assert_eq!(
        list(s, u).await.len(),
        MAX_DEVICES_PER_USER,
        "devices: a user may register {MAX_DEVICES_PER_USER} devices"
    );
    let extra = token(Platform::Fcm, "d20", "m", 99);
    match s.register(u, &extra).await {
        Err(Error::ResourceExhausted(_)) => {}
        other => panic!("devices: registering a 21st device is ResourceExhausted, got {other:?}"),
    }
    assert_eq!(
        list(s, u).await,
        tokens,
        "devices: a refused registration stores nothing"
    );
    // Replacing a registered label works at the bound.
    tokens[3] = token(Platform::Apns, "d03", "r", 100);
    register(s, u, &tokens[3]).await;
    // So does moving a token from one of the user's labels to a new one.
    let moved = PushToken {
        device: "d99".into(),
        ..tokens[0].clone()
    };
    register(s, u, &moved).await;
    tokens.remove(0);
    tokens.push(moved);
    assert_eq!(
        list(s, u).await,
        tokens,
        "devices: replacing a label or moving a token at the bound keeps {MAX_DEVICES_PER_USER}"
    );
    // After a removal a new device fits again.
    assert!(s.remove(u, "d05").await.expect("remove"));
    register(s, u, &extra).await;
    assert_eq!(list(s, u).await.len(), MAX_DEVICES_PER_USER);
    assert!(
        list(s, u).await.contains(&extra),
        "devices: after a removal a new device can register"
    );
}

async fn concurrent_registrations_keep_the_bound(s: Arc<dyn DeviceStore>) {
    let u = user();
    let attempts = MAX_DEVICES_PER_USER + 10;
    let results = futures::future::join_all((0..attempts).map(|i| {
        let s = s.clone();
        async move {
            let t = token(Platform::Fcm, &format!("c{i}"), "c", i as i64);
            s.register(u, &t).await
        }
    }))
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, Error::ResourceExhausted(_)),
                "devices: a concurrent registration over the bound is ResourceExhausted, got {e:?}"
            );
        }
    }
    assert_eq!(
        ok, MAX_DEVICES_PER_USER,
        "devices: of {attempts} concurrent registrations exactly {MAX_DEVICES_PER_USER} succeed"
    );
    assert_eq!(
        list(s.as_ref(), u).await.len(),
        MAX_DEVICES_PER_USER,
        "devices: concurrent registrations never exceed the bound"
    );
}

async fn invalid_tokens_are_refused(s: &dyn DeviceStore) {
    let u = user();
    let good = token(Platform::Fcm, "web", "g", 1);
    let bad = [
        PushToken {
            device: String::new(),
            ..good.clone()
        },
        PushToken {
            device: "my phone".into(),
            ..good.clone()
        },
        PushToken {
            device: "x".repeat(33),
            ..good.clone()
        },
        PushToken {
            token: String::new(),
            ..good.clone()
        },
        PushToken {
            token: "has space".into(),
            ..good.clone()
        },
        PushToken {
            token: "é".into(),
            ..good.clone()
        },
        PushToken {
            token: "x".repeat(MAX_PUSH_TOKEN_LEN + 1),
            ..good.clone()
        },
    ];
    for t in &bad {
        match s.register(u, t).await {
            Err(Error::InvalidArgument(_)) => {}
            other => panic!(
                "devices: registering {:?}/{:?} is InvalidArgument, got {other:?}",
                t.device, t.token
            ),
        }
    }
    assert!(
        list(s, u).await.is_empty(),
        "devices: refused registrations store nothing"
    );
}

async fn previews_default_to_shown(s: &dyn DeviceStore) {
    let (a, b) = (user(), user());
    assert!(
        s.preview(a).await.expect("preview"),
        "devices: previews are shown by default"
    );
    s.set_preview(a, false).await.expect("set_preview");
    assert!(
        !s.preview(a).await.expect("preview"),
        "devices: set_preview(false) hides previews"
    );
    assert!(
        s.preview(b).await.expect("preview"),
        "devices: one user's setting is not another's"
    );
    // The setting outlives the devices.
    let t = token(Platform::Fcm, "web", "p", 1);
    register(s, a, &t).await;
    assert!(s.remove(a, "web").await.expect("remove"));
    assert!(
        !s.preview(a).await.expect("preview"),
        "devices: the preview setting is kept without devices"
    );
    s.set_preview(a, false).await.expect("set_preview again");
    assert!(!s.preview(a).await.expect("preview"));
    s.set_preview(a, true).await.expect("set_preview");
    assert!(
        s.preview(a).await.expect("preview"),
        "devices: set_preview(true) shows them again"
    );
}
