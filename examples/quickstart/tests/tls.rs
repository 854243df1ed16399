//! The quickstart binary with `--tls-cert`/`--tls-key`: HTTPS on its one
//! port, `GET /api/v1/connect` handing out `wss://`, and a bad key path
//! stopping the start with an error naming the file. Certificates are
//! generated at test time (rcgen).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

struct Files {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    connector: TlsConnector,
}

fn certificate() -> Files {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("im-quickstart-tls-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(c.cert.der().clone()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(im_transport::tls::provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    Files {
        dir,
        cert,
        key,
        connector: TlsConnector::from(Arc::new(config)),
    }
}

fn quickstart(cert: &Path, key: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    cmd.args(["--listen", "127.0.0.1:0", "--secret"])
        .arg("0123456789abcdef0123456789abcdef")
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// Kills the child when the test ends, passing or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request over TLS: the status and the JSON body (or Null).
async fn https(
    connector: &TlsConnector,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response))
        .await
        .expect("a response within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response {text:?}"));
    let json = text
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_serves_https_and_hands_out_wss() {
    let files = certificate();
    let mut child = quickstart(&files.cert, &files.key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    // The address, from the line the binary prints once it listens.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let line = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("is running"));
        let _ = tx.send(line);
    });
    let line = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the quickstart starts within 30 s")
        .unwrap()
        .expect("a startup line");
    assert!(
        line.contains("https://") && line.contains("wss://"),
        "{line}"
    );
    let addr: SocketAddr = line
        .split("https://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));

    let c = &files.connector;
    assert_eq!(https(c, addr, "GET", "/healthz", None, None).await.0, 200);
    let user = json!({"username": "alice", "password": "correct horse"});
    let (s, v) = https(c, addr, "POST", "/api/v1/users", None, Some(user.clone())).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = https(c, addr, "POST", "/api/v1/sessions", None, Some(user)).await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let (s, v) = https(c, addr, "GET", "/api/v1/connect", Some(&token), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ws_url"], format!("wss://{addr}/ws"), "{v}");
    let _ = std::fs::remove_dir_all(&files.dir);
}

#[test]
fn a_missing_key_file_stops_the_start_naming_it() {
    let files = certificate();
    let missing = files.dir.join("missing-key.pem");
    let out = quickstart(&files.cert, &missing).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing-key.pem"), "{stderr}");
    let _ = std::fs::remove_dir_all(&files.dir);
}
