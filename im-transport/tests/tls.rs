//! TLS end to end: HTTPS, WSS and gRPC over TLS with certificates
//! generated at test time (rcgen), plain clients refused, certificate
//! files reloaded while serving, and clear errors for bad files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use im_core::logic::LogicApi;
use im_core::node::{Backends, Node, NodeConfig};
use im_transport::grpc::{GrpcClientConfig, LogicGrpcClient, LogicRpcServer};
use im_transport::http::routes::SameHostLocator;
use im_transport::http::{ApiConfig, ApiState};
use im_transport::server::{app, serve_tls, AppParts};
use im_transport::tls::{provider, ClientTls, ServerTls, TlsError, TlsFiles};
use im_transport::ws::{WsConfig, WsState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const PASSWORD: &str = "password123";

/// A fresh empty directory under the system temp dir.
fn temp_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "im-tls-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A self-signed certificate for `localhost` and 127.0.0.1.
struct Cert {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn generate() -> Cert {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Cert {
        der: c.cert.der().clone(),
        cert_pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
    }
}

/// Writes `cert` as `cert.pem` / `key.pem` in `dir` (each through a rename,
/// so a reader never sees half a file).
fn write(dir: &Path, cert: &Cert) -> TlsFiles {
    let files = TlsFiles::new(dir.join("cert.pem"), dir.join("key.pem"));
    for (path, text) in [
        (&files.key_path, &cert.key_pem),
        (&files.cert_path, &cert.cert_pem),
    ] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    files
}

/// A rustls client trusting `roots` only.
fn connector(roots: &[&Cert]) -> TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.der.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(connector: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// The certificate the server presented on `stream`.
fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// One HTTP/1.1 request over `stream` (closed after it): the status and body.
async fn request<S>(mut stream: S, path: &str, token: Option<&str>) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost:1\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("a response within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

struct Https {
    addr: SocketAddr,
    node: Node,
    stop: CancellationToken,
}

/// The API and `/ws` served over TLS by [`serve_tls`].
async fn start_https(tls: ServerTls) -> Https {
    let node = Node::start(Backends::memory(SECRET), NodeConfig::default())
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let config = ApiConfig::default();
    let locator = SameHostLocator {
        secure: true,
        ..SameHostLocator::default()
    };
    let router = app(AppParts {
        api: Some((
            ApiState::new(node.logic.clone(), Arc::new(locator), &config),
            config,
        )),
        ws: Some(WsState {
            connect: node.connect.clone(),
            config: Arc::new(WsConfig::default()),
            shutdown: stop.clone(),
            front_door: None,
        }),
        ..AppParts::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tls(listener, router, Arc::new(tls), stop.clone()));
    Https { addr, node, stop }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_are_served_and_plain_http_is_refused() {
    let cert = generate();
    let files = write(&temp_dir(), &cert);
    let s = start_https(ServerTls::load(files).unwrap()).await;
    let tls = connector(&[&cert]);

    // (a) HTTPS: /healthz answers 200 and the server shows our certificate.
    let stream = tls_connect(&tls, s.addr).await;
    assert_eq!(served(&stream), cert.der);
    let (status, _) = request(stream, "/healthz", None).await;
    assert_eq!(status, 200);

    // GET /api/v1/connect hands out a wss:// URL.
    s.node.logic.register("alice", PASSWORD).await.unwrap();
    let login = s.node.logic.login("alice", PASSWORD).await.unwrap();
    let (status, body) = request(
        tls_connect(&tls, s.addr).await,
        "/api/v1/connect",
        Some(&login.token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("wss://localhost:1/ws"), "{body}");

    // (b) WSS: the upgrade succeeds and the session answers a ping.
    let stream = tls_connect(&tls, s.addr).await;
    let url = format!("wss://localhost:{}/ws?token={}", s.addr.port(), login.token);
    let (mut ws, response) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
    ws.send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"pong\"") => return t,
                Some(Ok(_)) => continue,
                other => panic!("socket ended before a pong: {other:?}"),
            }
        }
    })
    .await
    .expect("a pong within 5 s");
    assert!(pong.contains("pong"));

    // (c) Plain HTTP against the TLS port fails.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", s.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP got an answer: {plain:?}");

    // A client that does not trust the certificate fails its handshake.
    let other = generate();
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let untrusted = connector(&[&other])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(untrusted.is_err());
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_needs_the_ca() {
    let cert = generate();
    let files = write(&temp_dir(), &cert);
    let node = Node::start(Backends::memory(SECRET), NodeConfig::default())
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = {
        let files = files.clone();
        let stop = stop.clone();
        let logic = node.logic.clone();
        tokio::spawn(async move {
            LogicRpcServer::new(logic)
                .serve_tls(listener, Some(&files), stop.cancelled_owned())
                .await
        })
    };
    let config = |tls: Option<ClientTls>| GrpcClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        tls,
        ..GrpcClientConfig::default()
    };
    let ca = ClientTls::from_ca_file(&files.cert_path, None).unwrap();

    // (d) With the CA: an http:// address from discovery is reached over TLS
    // (verified against the 127.0.0.1 SAN) ...
    let client = LogicGrpcClient::connect(&format!("http://{addr}"), config(Some(ca.clone())))
        .await
        .unwrap();
    let alice = client.register("alice", PASSWORD).await.unwrap();
    assert_eq!(
        node.logic.login("alice", PASSWORD).await.unwrap().user_id,
        alice
    );
    // ... and so is an https:// one with the name overridden.
    let named = ClientTls {
        domain: Some("localhost".into()),
        ..ca.clone()
    };
    let client = LogicGrpcClient::connect(&format!("https://{addr}"), config(Some(named)))
        .await
        .unwrap();
    client.login("alice", PASSWORD).await.unwrap();

    // Without TLS the call fails.
    let plain = match LogicGrpcClient::connect(&format!("http://{addr}"), config(None)).await {
        Ok(c) => c.login("alice", PASSWORD).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(plain.is_err(), "a plain client was answered");

    // With another CA the handshake fails.
    let other = generate();
    let other_files = write(&temp_dir(), &other);
    let wrong = ClientTls::from_ca_file(&other_files.cert_path, None).unwrap();
    let wrong = match LogicGrpcClient::connect(&format!("http://{addr}"), config(Some(wrong))).await
    {
        Ok(c) => c.login("alice", PASSWORD).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(wrong.is_err(), "a client trusting another CA was answered");

    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_are_served_without_a_restart() {
    let dir = temp_dir();
    let first = generate();
    let second = generate();
    let files = write(&dir, &first);
    let tls = ServerTls::load(files)
        .unwrap()
        .with_reload_interval(Duration::from_millis(50));
    let s = start_https(tls).await;
    let both = connector(&[&first, &second]);
    assert_eq!(served(&tls_connect(&both, s.addr).await), first.der);

    write(&dir, &second);
    // Wait for the event: the new certificate on a new connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stream = tls_connect(&both, s.addr).await;
        if served(&stream) == second.der {
            let (status, _) = request(stream, "/healthz", None).await;
            assert_eq!(status, 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_new_files_keep_the_old_certificate() {
    let dir = temp_dir();
    let first = generate();
    let files = write(&dir, &first);
    // The watcher never ticks here: reloads are driven by hand.
    let tls = Arc::new(
        ServerTls::load(files.clone())
            .unwrap()
            .with_reload_interval(Duration::from_secs(3600)),
    );
    assert!(!tls.reload_if_changed().unwrap(), "nothing changed yet");

    std::fs::write(&files.cert_path, "not a certificate").unwrap();
    let err = tls.reload_if_changed().unwrap_err();
    assert!(matches!(err, TlsError::Certificate { .. }), "{err}");
    assert!(err.to_string().contains("cert.pem"), "{err}");

    // A certificate whose key is another one's: refused as a pair.
    let second = generate();
    std::fs::write(&files.cert_path, &second.cert_pem).unwrap();
    let err = tls.reload_if_changed().unwrap_err();
    assert!(matches!(err, TlsError::Pair { .. }), "{err}");

    // Still serving the first certificate.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let router = app(AppParts::default());
    tokio::spawn(serve_tls(listener, router, tls.clone(), stop.clone()));
    let both = connector(&[&first, &second]);
    assert_eq!(served(&tls_connect(&both, addr).await), first.der);

    // The matching key arrives: the second certificate is served.
    std::fs::write(&files.key_path, &second.key_pem).unwrap();
    assert!(tls.reload_if_changed().unwrap());
    let stream = tls_connect(&both, addr).await;
    assert_eq!(served(&stream), second.der);
    assert_eq!(request(stream, "/healthz", None).await.0, 200);
    stop.cancel();
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let dir = temp_dir();
    let cert = generate();
    let files = write(&dir, &cert);

    let missing = TlsFiles::new(dir.join("nope.pem"), &files.key_path);
    let err = ServerTls::load(missing).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err}");
    assert!(err.to_string().contains("nope.pem"), "{err}");

    // A certificate where the key should be.
    let swapped = TlsFiles::new(&files.cert_path, &files.cert_path);
    let err = ServerTls::load(swapped).unwrap_err();
    assert!(matches!(err, TlsError::Key { .. }), "{err}");
    assert!(err.to_string().contains("cert.pem"), "{err}");

    // The same checks guard gRPC servers and clients.
    let key_as_cert = TlsFiles::new(&files.key_path, &files.key_path);
    let Err(err) = im_transport::grpc::server_builder_tls(Some(&key_as_cert)) else {
        panic!("a key is no certificate");
    };
    assert!(err.to_string().contains("key.pem"), "{err}");
    let err = ClientTls::from_ca_file(&dir.join("ca.pem"), None).unwrap_err();
    assert!(err.to_string().contains("ca.pem"), "{err}");

    assert!(TlsFiles::from_options(Some("c".into()), None, "api")
        .unwrap_err()
        .to_string()
        .contains("no key"));
    assert_eq!(TlsFiles::from_options(None, None, "api").unwrap(), None);
}
