//! The client against the real server (the quickstart stack of im-transport,
//! in memory, in-process on 127.0.0.1:0): accounts, errors, a message both
//! ways and an edit event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use im_client::im_core::model::Target;
use im_client::{ClientError, Event, ImClient};
use im_core::node::{Backends, Node, NodeConfig};
use im_core::ErrorCode;
use im_transport::http::routes::SameHostLocator;
use im_transport::http::{ApiConfig, ApiState};
use im_transport::server::{app, serve, AppParts};
use im_transport::ws::{WsConfig, WsState};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "password123";

struct Server {
    api: String,
    shutdown: CancellationToken,
    _node: Node,
}

async fn start() -> Server {
    let node = Node::start(
        Backends::memory(b"0123456789abcdef0123456789abcdef"),
        NodeConfig::default(),
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let config = ApiConfig::default();
    let router = app(AppParts {
        api: Some((
            ApiState::new(
                node.logic.clone(),
                Arc::new(SameHostLocator::default()),
                &config,
            ),
            config,
        )),
        ws: Some(WsState {
            connect: node.connect.clone(),
            config: Arc::new(WsConfig::default()),
            shutdown: shutdown.clone(),
            front_door: None,
        }),
        ready: Vec::new(),
        metrics: None,
        web_page: false,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router, shutdown.clone()));
    Server {
        api: format!("http://{addr}"),
        shutdown,
        _node: node,
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = Option<T>>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within 10 s"))
        .unwrap_or_else(|| panic!("{what}: the connection ended"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_their_errors_are_typed() {
    let srv = start().await;
    let id = ImClient::register(&srv.api, "alice", PASSWORD)
        .await
        .unwrap();
    let again = ImClient::register(&srv.api, "alice", PASSWORD).await;
    assert!(
        matches!(
            again,
            Err(ClientError::Server {
                code: ErrorCode::AlreadyExists,
                ..
            })
        ),
        "{again:?}"
    );
    let wrong = ImClient::login(&srv.api, "alice", "not-the-password").await;
    assert!(
        matches!(
            wrong,
            Err(ClientError::Server {
                code: ErrorCode::Unauthenticated,
                ..
            })
        ),
        "{wrong:?}"
    );
    // A trailing slash on the base is fine.
    let alice = ImClient::login(&format!("{}/", srv.api), "alice", PASSWORD)
        .await
        .unwrap();
    assert_eq!(alice.user_id, id);
    assert!(!alice.token.is_empty());
    let shown = format!("{alice:?}");
    assert!(
        !shown.contains(&alice.token) && shown.contains("<redacted>"),
        "the token never shows in Debug: {shown}"
    );
    assert_eq!(alice.me().await.unwrap().username, "alice");
    srv.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_pushed_in_order_and_an_edit_comes_as_an_event() {
    let srv = start().await;
    ImClient::register(&srv.api, "carol", PASSWORD)
        .await
        .unwrap();
    ImClient::register(&srv.api, "dave", PASSWORD)
        .await
        .unwrap();
    let carol = ImClient::login(&srv.api, "carol", PASSWORD).await.unwrap();
    let dave = ImClient::login(&srv.api, "dave", PASSWORD).await.unwrap();
    assert!(carol.discover_ws_url().await.unwrap().starts_with("ws://"));
    let mut cc = carol.connect().await.unwrap();
    let mut dc = dave.connect().await.unwrap();

    let mut acks = Vec::new();
    for i in 1..=3 {
        let ack = cc
            .send(Target::User(dave.user_id), format!("m{i}"))
            .await
            .unwrap();
        assert_eq!(ack.seq, i, "seqs count up in the conversation");
        acks.push(ack);
    }
    for i in 1..=3u64 {
        let m = within("dave's push", dc.next_message()).await;
        assert_eq!((m.seq, m.from), (i, carol.user_id));
        assert_eq!(m.body, serde_json::json!(format!("m{i}")));
    }
    // Carol's own sends join her timeline too.
    let mine = within("carol's own message", cc.next_message()).await;
    assert_eq!((mine.seq, mine.msg_id), (1, acks[0].msg_id));

    // An answer the other way.
    let back = dc
        .send(Target::User(carol.user_id), "hi carol".into())
        .await
        .unwrap();
    assert_eq!(back.seq, 4, "one conversation, one seq");

    // An edit over the socket comes to both sides as an event.
    cc.edit(acks[2].msg_id, "m3, edited".into()).await.unwrap();
    let ev = within("dave's edit event", dc.next_event()).await;
    assert!(
        matches!(
            &ev,
            Event::Edited { msg_id, by, body, .. }
                if *msg_id == acks[2].msg_id && *by == carol.user_id && *body == serde_json::json!("m3, edited")
        ),
        "{ev:?}"
    );
    cc.close().await;
    dc.close().await;
    srv.shutdown.cancel();
}
