//! Logout and token expiry over the real HTTP API and WebSocket: `DELETE
//! /api/v1/sessions` revokes the token and closes exactly its sockets
//! (`kicked` + 4001 within 2 s); a socket closes with 4001 when its token
//! expires. Every wait reads frames until the expected one, with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use im_core::auth::JwtAuthenticator;
use im_core::id::now_ms;
use im_core::node::Backends;
use serde_json::{json, Value};
use support::{closed, recv_until, send, start, Via, SECRET};

fn kicked(frames: &[Value], reason: &str) -> bool {
    frames
        .iter()
        .any(|f| f["type"] == "kicked" && f["reason"] == reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_the_tokens_sockets_and_only_them() {
    let srv = start(Backends::memory(SECRET)).await;
    let dave = srv.register("dave").await;
    srv.register("erin").await;
    let (a, _) = srv.login("dave").await;
    let (b, _) = srv.login("dave").await;
    let (e, _) = srv.login("erin").await;
    assert_ne!(a, b);
    let mut a1 = srv.ws_open(Via::Header(&a)).await;
    let mut a2 = srv.ws_open(Via::Query(&a)).await;
    let mut b1 = srv.ws_open(Via::Header(&b)).await;

    let started = Instant::now();
    assert_eq!(srv.logout(Some(&a)).await, 204);
    for ws in [&mut a1, &mut a2] {
        let (code, frames) = closed(ws, Duration::from_secs(2)).await;
        assert_eq!(code, 4001, "{frames:?}");
        assert!(kicked(&frames, "logged out"), "{frames:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // Token B's socket stays and still receives messages.
    let (s, v) = srv
        .post(
            "/messages",
            Some(&e),
            json!({"client_msg_id": "e1", "to": {"user": dave}, "body": "still there?"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let got = recv_until(&mut b1, Duration::from_secs(5), |f| f["type"] == "message").await;
    assert_eq!(got["body"], "still there?");
    send(&mut b1, json!({"type": "ping"})).await;
    recv_until(&mut b1, Duration::from_secs(5), |f| f["type"] == "pong").await;

    // Token A is refused everywhere; B works.
    let (s, v) = srv.get("/conversations", Some(&a)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    assert_eq!(srv.ws(Via::Header(&a)).await.err(), Some(401));
    assert_eq!(srv.ws(Via::Query(&a)).await.err(), Some(401));
    assert_eq!(srv.get("/conversations", Some(&b)).await.0, 200);
    let mut b2 = srv.ws_open(Via::Query(&b)).await;
    send(&mut b2, json!({"type": "ping"})).await;
    recv_until(&mut b2, Duration::from_secs(5), |f| f["type"] == "pong").await;

    // Logging out again is a no-op; without a valid token it is 401.
    assert_eq!(srv.logout(Some(&a)).await, 204);
    assert_eq!(srv.logout(Some("not.a.token")).await, 401);
    assert_eq!(srv.logout(None).await, 401);

    // Only B's sessions are left (A's routes went with their sockets).
    let user = dave.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let routes = srv
            .node
            .backends
            .logic
            .sessions
            .lookup(&[user])
            .await
            .unwrap();
        let id_b = im_core::auth::token_id(&b);
        if routes
            .iter()
            .all(|r| r.token_id.as_deref() == Some(id_b.as_str()))
        {
            assert_eq!(routes.len(), 2);
            break;
        }
        assert!(Instant::now() < deadline, "stale routes: {routes:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    srv.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_closes_its_socket() {
    let mut backends = Backends::memory(SECRET);
    backends.logic.auth = Arc::new(JwtAuthenticator::new(SECRET, Duration::from_secs(2)));
    let srv = start(backends).await;
    srv.register("frank").await;
    let (t, expires_at) = srv.login("frank").await;
    let mut ws = srv.ws_open(Via::Header(&t)).await;
    let (code, frames) = closed(&mut ws, Duration::from_secs(4)).await;
    assert_eq!(code, 4001, "{frames:?}");
    assert!(kicked(&frames, "token expired"), "{frames:?}");
    assert!(
        now_ms() >= expires_at - 100,
        "closed {} ms before the expiry",
        expires_at - now_ms()
    );
    assert_eq!(srv.get("/conversations", Some(&t)).await.0, 401);
    srv.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_logs_out_and_stops() {
    use im_client::{ClientError, ImClient};
    use im_core::model::Target;
    let srv = start(Backends::memory(SECRET)).await;
    srv.register("gina").await;
    let hal = srv.register("hal").await;
    let api = format!("http://{}", srv.addr);
    let gina = ImClient::login(&api, "gina", support::PASSWORD)
        .await
        .unwrap();
    assert!(
        !format!("{gina:?}").contains(&gina.token),
        "Debug shows the token"
    );
    let mut conn = gina.connect().await.unwrap();
    // An acked send proves the client's session is registered.
    conn.send(Target::User(hal.parse().unwrap()), "hi".into())
        .await
        .unwrap();
    gina.logout().await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), async {
        while conn.next_message().await.is_some() {}
    })
    .await
    .expect("the client's connection ends");
    assert!(matches!(
        conn.send(Target::User(hal.parse().unwrap()), "again".into())
            .await,
        Err(ClientError::Closed | ClientError::Kicked(_))
    ));
    gina.logout().await.expect("again: a no-op");
    assert!(matches!(
        gina.call(reqwest::Method::GET, "/conversations", None)
            .await,
        Err(ClientError::Server {
            code: im_core::ErrorCode::Unauthenticated,
            ..
        })
    ));
    srv.shutdown.cancel();
}
