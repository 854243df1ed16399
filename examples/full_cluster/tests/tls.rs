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
use std::time::{Duration, Instant};

mod harness;

use harness::{free_port, rand_u32};
use im_client::{ClientOptions, ImClient};
use im_core::model::Target;
use im_transport::tls::ClientTls;
use serde_json::json;

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

/// Polls `path` until it answers 200 (the event waited for), at most 60 s.
async fn wait_ok(http: &reqwest::Client, addr: SocketAddr, path: &str, p: &Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http.get(format!("https://{addr}{path}")).send().await;
        if answer.is_ok_and(|r| r.status().is_success()) {
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
    // Every client trusts only the test certificate.
    let options = ClientOptions::with_tls(&ClientTls::from_ca_file(&cert, None).unwrap()).unwrap();
    let http = options.http_client().unwrap();

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
    wait_ok(&http, api, "/healthz", &p).await;
    wait_ok(&http, ws, "/readyz", &p).await;
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

    // Accounts over HTTPS (api → logic over gRPC with TLS), with the Rust client.
    let base = format!("https://{api}");
    let mut clients = Vec::new();
    for name in ["alice", "bob"] {
        let user = format!("{ns}_{name}");
        ImClient::register_with(&options, &base, &user, "password123")
            .await
            .unwrap_or_else(|e| panic!("registering {user}: {e}\n{}", p.log()));
        clients.push(
            ImClient::login_with(&options, &base, &user, "password123")
                .await
                .unwrap(),
        );
    }
    let (alice, bob) = (&clients[0], &clients[1]);

    // GET /api/v1/connect hands out the connect node's wss:// URL.
    assert_eq!(
        bob.discover_ws_url().await.unwrap(),
        format!("wss://{ws}/ws")
    );

    // Bob over WSS (connect → logic over gRPC with TLS binds the session;
    // an acked send proves it).
    let mut bob_conn = bob.connect().await.unwrap();
    bob_conn
        .send(Target::User(alice.user_id), "hello over wss".into())
        .await
        .unwrap_or_else(|e| panic!("no ack over WSS: {e}\n{}", p.log()));

    // Alice sends over HTTPS; task pushes to connect over gRPC with TLS.
    let sent = http
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(&alice.token)
        .json(&json!({"client_msg_id": "tls-1", "to": {"user": bob.user_id.to_string()}, "body": "over tls"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 200);
    let pushed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match bob_conn.next_message().await {
                Some(m) if m.body == json!("over tls") => return Some(m),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await;
    assert!(
        matches!(pushed, Ok(Some(_))),
        "the push did not arrive over WSS\n{}",
        p.log()
    );
    bob_conn.close().await;
    // Both gRPC servers registered https:// addresses in etcd.
    let log = p.log();
    for grpc in [logic_grpc, connect_grpc] {
        assert!(log.contains(&format!("https://{grpc}")), "{grpc}:\n{log}");
    }
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
