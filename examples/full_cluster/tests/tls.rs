//! `full_cluster all` with TLS everywhere (configured through `IM_*`
//! variables, as a deployment would): the API over HTTPS, connect over WSS
//! and advertised as `wss://`, and LogicRpc / ConnectRpc over TLS with the
//! clients trusting the generated certificate. A message sent over HTTPS
//! reaches the recipient's WSS session, which takes api→logic, task→connect
//! and connect→logic over gRPC with TLS. Needs Redis, MariaDB and etcd
//! (`scripts/services.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{free_port, rand_u32};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

struct Running(Child, std::path::PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

async fn tls(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// One HTTP/1.1 request over TLS: the status and the JSON body (or Null);
/// `None` when the server is not answering yet.
async fn https(
    connector: &TlsConnector,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let mut stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .ok()?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let json = text
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Some((status, json))
}

/// Polls `path` until it answers 200 (the event waited for), at most 60 s.
async fn wait_ok(c: &TlsConnector, addr: SocketAddr, path: &str, p: &Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, _)) = https(c, addr, "GET", path, None, None).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr}{path} not ready within 60 s\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_speaks_tls_when_configured() {
    let ns = format!("imtls{:x}", rand_u32());
    let dir = std::env::temp_dir().join(format!("im-cluster-tls-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(generated.cert.der().clone()).unwrap();
    let connector = TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(im_transport::tls::provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));

    let port = |_| SocketAddr::from(([127, 0, 0, 1], free_port()));
    let [api, ws, connect_grpc, logic_grpc, logic_ops, task_ops]: [SocketAddr; 6] =
        [0; 6].map(port);
    let log = dir.join("all.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_full_cluster"))
        .arg("all")
        .env("IM_CLUSTER__NAMESPACE", &ns)
        .env(
            "IM_CLUSTER__JWT_SECRET",
            "cluster-test-secret-cluster-test-secret",
        )
        .env("IM_CLUSTER__MYSQL_POOL", "4")
        .env("IM_CLUSTER__GRPC_TLS_CERT", &cert)
        .env("IM_CLUSTER__GRPC_TLS_KEY", &key)
        .env("IM_API__LISTEN", api.to_string())
        .env("IM_API__TLS_CERT", &cert)
        .env("IM_API__TLS_KEY", &key)
        .env("IM_CONNECT__LISTEN", ws.to_string())
        .env("IM_CONNECT__GRPC_LISTEN", connect_grpc.to_string())
        .env("IM_CONNECT__TLS_CERT", &cert)
        .env("IM_CONNECT__TLS_KEY", &key)
        .env("IM_LOGIC__GRPC_LISTEN", logic_grpc.to_string())
        .env("IM_LOGIC__OPS_LISTEN", logic_ops.to_string())
        .env("IM_LOGIC__WORKER_ID", "977")
        .env("IM_TASK__OPS_LISTEN", task_ops.to_string())
        .env("IM_TASK__CLAIM_IDLE_SECS", "3")
        .env("RUST_LOG", "info")
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let p = Running(child, log);

    // The api answers over HTTPS; connect is ready (it knows a logic) over HTTPS.
    wait_ok(&connector, api, "/healthz", &p).await;
    wait_ok(&connector, ws, "/readyz", &p).await;
    // Plain HTTP is refused on both.
    let plain = reqwest::Client::new();
    for addr in [api, ws] {
        let r = plain
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        assert!(r.is_err(), "plain HTTP answered on {addr}: {r:?}");
    }

    // Accounts over HTTPS (api → logic over gRPC with TLS).
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for name in ["alice", "bob"] {
        let user = json!({"username": format!("{ns}_{name}"), "password": "password123"});
        let (s, v) = https(
            &connector,
            api,
            "POST",
            "/api/v1/users",
            None,
            Some(user.clone()),
        )
        .await
        .unwrap();
        assert_eq!(s, 201, "{v}\n{}", p.log());
        let (s, v) = https(
            &connector,
            api,
            "POST",
            "/api/v1/sessions",
            None,
            Some(user),
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{v}");
        tokens.push(v["token"].as_str().unwrap().to_owned());
        ids.push(v["user_id"].as_str().unwrap().to_owned());
    }

    // GET /api/v1/connect hands out the connect node's wss:// URL.
    let (s, v) = https(
        &connector,
        api,
        "GET",
        "/api/v1/connect",
        Some(&tokens[1]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ws_url"], format!("wss://{ws}/ws"), "{v}");

    // Bob over WSS (connect → logic over gRPC with TLS binds the session).
    let url = format!("wss://{ws}/ws?token={}", tokens[1]);
    let (mut bob, _) = tokio_tungstenite::client_async(url, tls(&connector, ws).await)
        .await
        .unwrap();
    bob.send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, bob.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"pong\"") => break,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no pong over WSS: {other:?}\n{}", p.log()),
        }
    }

    // Alice sends over HTTPS; task pushes to connect over gRPC with TLS.
    let (s, v) = https(
        &connector,
        api,
        "POST",
        "/api/v1/messages",
        Some(&tokens[0]),
        Some(json!({"client_msg_id": "tls-1", "to": {"user": ids[1]}, "body": "over tls"})),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, bob.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("over tls") => break,
            Ok(Some(Ok(_))) => continue,
            other => panic!("the push did not arrive over WSS: {other:?}\n{}", p.log()),
        }
    }
    // Both gRPC servers registered https:// addresses in etcd.
    let log = p.log();
    for grpc in [logic_grpc, connect_grpc] {
        assert!(log.contains(&format!("https://{grpc}")), "{grpc}:\n{log}");
    }
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
