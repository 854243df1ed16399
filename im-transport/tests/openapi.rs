//! The OpenAPI document served by the in-process app: it parses, is 3.x,
//! lists every `/api/v1` route with its method and status codes, and has the
//! bearer security scheme.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use im_core::node::{Backends, Node, NodeConfig};
use im_transport::http::routes::SameHostLocator;
use im_transport::http::{ApiConfig, ApiState};
use im_transport::server::{app, serve, AppParts};
use im_transport::ws::{WsConfig, WsState};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Every route of `http/routes.rs`, with its method.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/users"),
    ("post", "/api/v1/sessions"),
    ("delete", "/api/v1/sessions"),
    ("post", "/api/v1/messages"),
    ("get", "/api/v1/messages/scheduled"),
    ("delete", "/api/v1/messages/{msg_id}/schedule"),
    ("post", "/api/v1/messages/{msg_id}/recall"),
    ("get", "/api/v1/conversations"),
    ("get", "/api/v1/conversations/{conversation_id}/messages"),
    ("post", "/api/v1/conversations/{conversation_id}/read"),
    ("get", "/api/v1/users/{user_id}/presence"),
    ("post", "/api/v1/groups"),
    ("get", "/api/v1/groups/{group_id}"),
    ("patch", "/api/v1/groups/{group_id}"),
    ("delete", "/api/v1/groups/{group_id}"),
    ("post", "/api/v1/groups/{group_id}/transfer"),
    ("put", "/api/v1/groups/{group_id}/mute"),
    ("post", "/api/v1/groups/{group_id}/members"),
    ("get", "/api/v1/groups/{group_id}/members"),
    ("delete", "/api/v1/groups/{group_id}/members/{user_id}"),
    ("put", "/api/v1/groups/{group_id}/members/{user_id}/role"),
    ("put", "/api/v1/groups/{group_id}/members/{user_id}/mute"),
    ("get", "/api/v1/connect"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/api/v1/uploads"),
    ("get", "/api/v1/files/{key}"),
    ("post", "/api/v1/devices"),
    ("get", "/api/v1/devices"),
    ("delete", "/api/v1/devices/{device}"),
    ("put", "/api/v1/notifications/settings"),
    ("get", "/api/v1/users/me"),
    ("get", "/api/v1/users/{user_id}"),
    ("put", "/api/v1/users/me/profile"),
    ("post", "/api/v1/users/lookup"),
    ("get", "/api/v1/users/search"),
    ("get", "/api/v1/contacts"),
    ("post", "/api/v1/contacts/requests"),
    ("get", "/api/v1/contacts/requests"),
    ("post", "/api/v1/contacts/requests/{user_id}/accept"),
    ("post", "/api/v1/contacts/requests/{user_id}/decline"),
    ("delete", "/api/v1/contacts/requests/{user_id}"),
    ("delete", "/api/v1/contacts/{user_id}"),
    ("get", "/api/v1/blocks"),
    ("put", "/api/v1/blocks/{user_id}"),
    ("delete", "/api/v1/blocks/{user_id}"),
    ("get", "/api/v1/conversations/{conversation_id}/reads"),
    ("patch", "/api/v1/messages/{msg_id}"),
    ("put", "/api/v1/groups/{group_id}/history"),
];

async fn fetch_document() -> (Value, CancellationToken, Node) {
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
    let res = reqwest::get(format!("http://{addr}/api/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let ct = res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    let doc: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    (doc, shutdown, node)
}

fn statuses(op: &Value) -> Vec<String> {
    let mut s: Vec<String> = op["responses"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    s.sort();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_covers_every_route() {
    let (doc, shutdown, node) = fetch_document().await;

    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3."), "openapi = {version}");
    assert!(doc["info"]["title"].as_str().is_some());

    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} missing from the document"));
        assert!(
            item.get(*method).is_some(),
            "{method} {path} missing from the document"
        );
    }
    // Nothing documented that the router does not serve.
    let documented: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(documented, ROUTES.len());

    // Bearer auth as a security scheme, required on the authenticated routes.
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"].as_str().unwrap().to_lowercase(), "bearer");
    for (method, path) in ROUTES {
        let op = &paths[*path][*method];
        let secured = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearerAuth").is_some()));
        let public = matches!(
            (*method, *path),
            ("post", "/api/v1/users")
                | ("post", "/api/v1/sessions")
                | ("get", "/api/v1/openapi.json")
        );
        assert_eq!(secured, !public, "security of {method} {path}");
        if secured {
            assert!(
                statuses(op).contains(&"401".to_owned()),
                "{method} {path} lacks 401"
            );
        }
    }

    // The status codes of docs/protocol.md, with the JSON error shape.
    let expect: &[(&str, &str, &[&str])] = &[
        ("post", "/api/v1/users", &["201", "400", "409"]),
        ("post", "/api/v1/sessions", &["200", "401"]),
        // Logout (extension).
        ("delete", "/api/v1/sessions", &["204", "401", "503"]),
        (
            "post",
            "/api/v1/messages",
            &["200", "400", "403", "404", "413", "429", "503"],
        ),
        (
            "get",
            "/api/v1/conversations/{conversation_id}/messages",
            &["200", "400", "403", "404"],
        ),
        ("post", "/api/v1/groups", &["201", "400"]),
        (
            "post",
            "/api/v1/groups/{group_id}/members",
            &["204", "403", "404", "409"],
        ),
        (
            "delete",
            "/api/v1/groups/{group_id}/members/{user_id}",
            &["204", "403", "404"],
        ),
        (
            "get",
            "/api/v1/groups/{group_id}/members",
            &["200", "403", "404"],
        ),
        ("get", "/api/v1/connect", &["200"]),
        // v1.1 additions.
        ("get", "/api/v1/conversations", &["200", "400", "401"]),
        (
            "post",
            "/api/v1/conversations/{conversation_id}/read",
            &["204", "400", "403", "404"],
        ),
        (
            "post",
            "/api/v1/messages/{msg_id}/recall",
            &["204", "400", "403", "404"],
        ),
        (
            "get",
            "/api/v1/users/{user_id}/presence",
            &["200", "400", "404"],
        ),
        // Scheduled delivery (extension).
        ("get", "/api/v1/messages/scheduled", &["200", "401"]),
        (
            "delete",
            "/api/v1/messages/{msg_id}/schedule",
            &["204", "400", "401", "404"],
        ),
        // Group administration (extensions).
        (
            "get",
            "/api/v1/groups/{group_id}",
            &["200", "400", "403", "404"],
        ),
        (
            "patch",
            "/api/v1/groups/{group_id}",
            &["204", "400", "403", "404"],
        ),
        (
            "delete",
            "/api/v1/groups/{group_id}",
            &["204", "400", "403", "404"],
        ),
        (
            "post",
            "/api/v1/groups/{group_id}/transfer",
            &["204", "400", "403", "404"],
        ),
        (
            "put",
            "/api/v1/groups/{group_id}/mute",
            &["204", "400", "403", "404"],
        ),
        (
            "put",
            "/api/v1/groups/{group_id}/members/{user_id}/role",
            &["204", "400", "403", "404"],
        ),
        (
            "put",
            "/api/v1/groups/{group_id}/members/{user_id}/mute",
            &["204", "400", "403", "404"],
        ),
    ];
    for (method, path, codes) in expect {
        let op = &paths[*path][*method];
        let have = statuses(op);
        for code in *codes {
            assert!(
                have.contains(&(*code).to_owned()),
                "{method} {path} lacks {code}: {have:?}"
            );
        }
        for (code, resp) in op["responses"].as_object().unwrap() {
            if code.starts_with('4') || code.starts_with('5') {
                let schema = &resp["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{method} {path} {code}"
                );
            }
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert_eq!(schemas["ErrorBody"]["required"][0], "error");
    let codes = &schemas["ErrorCodeName"]["enum"];
    for c in ["invalid_argument", "unauthenticated", "resource_exhausted"] {
        assert!(codes.as_array().unwrap().iter().any(|v| v == c), "{c}");
    }

    shutdown.cancel();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_strings_in_the_document() {
    let (doc, shutdown, node) = fetch_document().await;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["Registered"]["properties"]["user_id"]["type"],
        "string"
    );
    assert_eq!(schemas["Sent"]["properties"]["msg_id"]["type"], "string");
    assert_eq!(schemas["Sent"]["properties"]["seq"]["type"], "integer");
    let sent_required = schemas["Sent"]["required"].as_array().unwrap();
    assert!(!sent_required.iter().any(|r| r == "deliver_at"));
    assert!(schemas["SendRequestDoc"]["properties"]["deliver_at"].is_object());
    assert_eq!(
        schemas["ScheduledList"]["properties"]["scheduled"]["items"]["$ref"],
        "#/components/schemas/ScheduledMessage"
    );
    let held = &schemas["ScheduledMessage"]["properties"];
    assert_eq!(held["msg_id"]["type"], "string");
    assert_eq!(held["deliver_at"]["type"], "integer");
    assert!(held.get("seq").is_none(), "a held send has no seq");
    assert_eq!(
        schemas["NewMember"]["properties"]["user_id"]["type"],
        "string"
    );
    assert_eq!(
        schemas["HistoryPage"]["properties"]["messages"]["items"]["$ref"],
        "#/components/schemas/MessageDoc"
    );
    assert_eq!(
        schemas["UserPresence"]["properties"]["user_id"]["type"],
        "string"
    );
    assert_eq!(
        schemas["ConversationRow"]["properties"]["last_message"]["$ref"],
        "#/components/schemas/MessageDoc"
    );
    assert_eq!(
        schemas["ConversationRow"]["properties"]["conversation_id"]["type"],
        "string"
    );
    assert_eq!(
        schemas["GroupInfo"]["properties"]["owner"]["type"],
        "string"
    );
    assert_eq!(
        schemas["Transfer"]["properties"]["user_id"]["type"],
        "string"
    );
    let kinds = schemas["MessageKindDoc"]["enum"].as_array().unwrap();
    assert!(kinds.iter().any(|k| k == "system"));
    let sendable = schemas["KindDoc"]["enum"].as_array().unwrap();
    assert!(
        !sendable.iter().any(|k| k == "system"),
        "clients cannot send system"
    );
    shutdown.cancel();
    node.shutdown().await;
}
