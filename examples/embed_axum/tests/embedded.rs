//! End to end against the real PostgreSQL (`POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`): users of the host application
//! sign up and log in with the host's own login, open im's WebSocket under
//! `/chat` with the host's session token and chat; im's tables live in the
//! same database as the host's `users`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use im_client::{ClientOptions, ImClient};
use im_core::id::UserId;
use im_core::model::Target;
use sqlx::{Connection, PgConnection};

fn admin_url() -> String {
    std::env::var("POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh database on the server of `POSTGRES_URL`.
async fn fresh_database() -> String {
    let admin = admin_url();
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {admin} ({e}): start it (the CI machine runs one; \
             `scripts/services.sh` checks it) or point POSTGRES_URL at one"
        )
    });
    let name = format!("embed_{}", rand::random::<u32>());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
    format!("{base}/{name}")
}

async fn serve(url: &str) -> (SocketAddr, im_core::node::Node) {
    let app = embed_axum::app(url).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router;
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (addr, app.node)
}

async fn signup_and_login(http: &reqwest::Client, addr: SocketAddr, name: &str) -> (i64, String) {
    let body = serde_json::json!({"username": name, "password": "correct horse", "display_name": name.to_uppercase()});
    let r = http
        .post(format!("http://{addr}/signup"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = http
        .post(format!("http://{addr}/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let login: embed_axum::host::LoginReply = r.json().await.unwrap();
    assert!(
        cookie.starts_with(&format!("sid={}", login.token)),
        "{cookie}"
    );
    // The host's own page knows the user by its cookie.
    let me: serde_json::Value = http
        .get(format!("http://{addr}/me"))
        .header("cookie", format!("sid={}", login.token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], name);
    (login.user_id, login.token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_users_log_in_with_the_host_login_and_chat_under_chat() {
    let url = fresh_database().await;
    let (addr, node) = serve(&url).await;
    let http = reqwest::Client::new();
    let (alice_id, alice_token) = signup_and_login(&http, addr, "alice").await;
    let (bob_id, bob_token) = signup_and_login(&http, addr, "bob").await;
    let chat = format!("http://{addr}/chat");

    // im accepts the host's session tokens, and nothing else.
    let forged = http
        .get(format!("{chat}/api/v1/conversations"))
        .bearer_auth("not-a-session")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // im issues no tokens and creates no accounts of its own here.
    let login = http
        .post(format!("{chat}/api/v1/sessions"))
        .json(&serde_json::json!({"username": "alice", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 403);
    let register = http
        .post(format!("{chat}/api/v1/users"))
        .json(&serde_json::json!({"username": "mallory", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 403);

    let options = ClientOptions::default();
    let alice =
        ImClient::with_token(&options, &chat, UserId(alice_id as u64), alice_token).unwrap();
    let bob = ImClient::with_token(&options, &chat, UserId(bob_id as u64), bob_token).unwrap();
    // im's users are the host's: the display name comes from its table.
    let profile = alice.profile(UserId(bob_id as u64)).await.unwrap();
    assert_eq!(profile.display_name, "BOB");
    assert_eq!(
        alice.discover_ws_url().await.unwrap(),
        format!("ws://{addr}/chat/ws")
    );

    let mut a = alice.connect().await.unwrap();
    let mut b = bob.connect().await.unwrap();
    let ack = a
        .send(
            Target::User(UserId(bob_id as u64)),
            "hello from the host app".into(),
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), b.next_message())
        .await
        .expect("bob got no push within 10 s")
        .expect("bob's connection closed");
    assert_eq!(got.msg_id, ack.msg_id);
    assert_eq!(got.from, UserId(alice_id as u64));
    assert_eq!(got.body, serde_json::json!("hello from the host app"));

    // im's tables are beside the host's, in the same database: the message
    // reaches im.messages (persisted off the delivery path).
    let mut db = PgConnection::connect(&url).await.unwrap();
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::TEXT, table_name::TEXT FROM information_schema.tables
         WHERE table_name IN ('users', 'messages') ORDER BY 1, 2",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(
        tables.contains(&("public".into(), "users".into())),
        "{tables:?}"
    );
    assert!(
        tables.contains(&("im".into(), "messages".into())),
        "{tables:?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM im.messages")
            .fetch_one(&mut db)
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message was not persisted ({n} rows)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.close().await;
    b.close().await;
    node.shutdown().await;
}
