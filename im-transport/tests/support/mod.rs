//! Shared by the token tests: the quickstart stack in-process on
//! 127.0.0.1:0, HTTP helpers (reqwest) and a WebSocket client whose upgrade
//! request is written by hand, so the tests see the exact status of a refused
//! upgrade and the client library never logs the request (the logging test
//! captures every line of the process).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use im_core::node::{Backends, Node, NodeConfig};
use im_transport::http::routes::SameHostLocator;
use im_transport::http::{ApiConfig, ApiState};
use im_transport::server::{app, serve, AppParts};
use im_transport::ws::{WsConfig, WsState};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
pub const PASSWORD: &str = "password123";

pub type Ws = WebSocketStream<TcpStream>;

pub struct Server {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub node: Node,
}

/// How a WebSocket upgrade carries the token.
#[derive(Clone, Copy, Debug)]
pub enum Via<'a> {
    Header(&'a str),
    Query(&'a str),
}

pub async fn start(backends: Backends) -> Server {
    start_with(backends, NodeConfig::default(), None).await
}

/// A server whose API and `/ws` are guarded by `door`.
pub async fn start_with(
    backends: Backends,
    node_config: NodeConfig,
    door: Option<Arc<im_core::frontdoor::FrontDoor>>,
) -> Server {
    let node = Node::start(backends, node_config).await.unwrap();
    let shutdown = CancellationToken::new();
    let config = ApiConfig::default();
    let mut api = ApiState::new(
        node.logic.clone(),
        Arc::new(SameHostLocator::default()),
        &config,
    );
    if let Some(d) = &door {
        api = api.with_front_door(d.clone());
    }
    let router = app(AppParts {
        api: Some((api, config)),
        ws: Some(WsState {
            connect: node.connect.clone(),
            config: Arc::new(WsConfig::default()),
            shutdown: shutdown.clone(),
            front_door: door,
        }),
        ready: Vec::new(),
        metrics: None,
        web_page: false,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router, shutdown.clone()));
    Server {
        addr,
        base: format!("http://{addr}/api/v1"),
        http: reqwest::Client::new(),
        shutdown,
        node,
    }
}

impl Server {
    /// Any request; `(status, JSON body or Null)`.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// `DELETE /sessions` (logout) with `token`; the status.
    pub async fn logout(&self, token: Option<&str>) -> u16 {
        self.call(reqwest::Method::DELETE, "/sessions", token, None)
            .await
            .0
    }

    pub async fn register(&self, name: &str) -> String {
        let (s, v) = self
            .post(
                "/users",
                None,
                json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["user_id"].as_str().unwrap().to_owned()
    }

    /// A fresh token of `name`: `(token, expires_at)`.
    pub async fn login(&self, name: &str) -> (String, i64) {
        let (s, v) = self
            .post(
                "/sessions",
                None,
                json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        (
            v["token"].as_str().unwrap().to_owned(),
            v["expires_at"].as_i64().unwrap(),
        )
    }

    /// Upgrades `/ws`: the socket, or the refusal's HTTP status.
    pub async fn ws(&self, via: Via<'_>) -> Result<Ws, u16> {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let (path, header) = match via {
            Via::Header(t) => ("/ws".to_owned(), format!("Authorization: Bearer {t}\r\n")),
            Via::Query(t) => (format!("/ws?token={t}"), String::new()),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{header}\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        // The response head, byte by byte: nothing after it is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let b = tokio::time::timeout(Duration::from_secs(5), stream.read_u8())
                .await
                .expect("an upgrade response within 5 s")
                .unwrap();
            head.push(b);
        }
        let head = String::from_utf8(head).unwrap();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad response head {head:?}"));
        if status != 101 {
            return Err(status);
        }
        Ok(WebSocketStream::from_raw_socket(stream, Role::Client, None).await)
    }

    /// An open socket whose session is bound (a ping was answered).
    pub async fn ws_open(&self, via: Via<'_>) -> Ws {
        let mut ws = self.ws(via).await.expect("upgraded");
        send(&mut ws, json!({"type": "ping"})).await;
        recv_until(&mut ws, Duration::from_secs(5), |f| f["type"] == "pong").await;
        ws
    }
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Reads frames until a JSON text frame satisfies `want` (others are
/// skipped); panics on a close or after `within`.
pub async fn recv_until(ws: &mut Ws, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the expected frame in time")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if want(&v) {
                return v;
            }
        } else if let Message::Close(c) = m {
            panic!("closed ({c:?}) before the expected frame");
        }
    }
}

/// Reads until the close frame: its code (text frames on the way are
/// returned too).
pub async fn closed(ws: &mut Ws, within: Duration) -> (u16, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut frames = Vec::new();
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("closed in time");
        match m {
            Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), frames),
            Some(Ok(Message::Close(None))) => return (1005, frames),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
