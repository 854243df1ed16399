//! The quickstart binary with `--tls-cert`/`--tls-key`: HTTPS on its one
//! port, `GET /api/v1/connect` handing out `wss://`, and a bad key path
//! stopping the start with an error naming the file. Certificates are
//! generated at test time (rcgen).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use im_client::{ClientOptions, ImClient};
use im_core::model::Target;
use im_transport::tls::ClientTls;

struct Files {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// Clients trusting only this certificate.
    options: ClientOptions,
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
    let options = ClientOptions::with_tls(&ClientTls::from_ca_file(&cert, None).unwrap()).unwrap();
    Files {
        dir,
        cert,
        key,
        options,
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

    // The Rust client over HTTPS and WSS, trusting only the test certificate.
    let api = format!("https://{addr}");
    let health = files
        .options
        .http_client()
        .unwrap()
        .get(format!("{api}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    ImClient::register_with(&files.options, &api, "alice", "correct horse")
        .await
        .unwrap();
    let bob = ImClient::register_with(&files.options, &api, "bob", "correct horse")
        .await
        .unwrap();
    let alice = ImClient::login_with(&files.options, &api, "alice", "correct horse")
        .await
        .unwrap();
    assert_eq!(
        alice.discover_ws_url().await.unwrap(),
        format!("wss://{addr}/ws")
    );
    let mut conn = alice.connect().await.unwrap();
    let ack = conn
        .send(Target::User(bob), "over wss".into())
        .await
        .unwrap();
    assert_eq!(ack.seq, 1);
    conn.close().await;
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
