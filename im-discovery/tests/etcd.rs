//! `EtcdDiscovery` against a real etcd (`ETCD_ENDPOINTS`, default
//! `http://127.0.0.1:2379`; start it with `bash scripts/services.sh`), and
//! against a private etcd process that the restart test kills and restarts.
//! Every test uses its own random namespace.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use im_core::ports::{Discovery, ServiceInstance};
use im_core::testkit::{discovery_suite, unique};
use im_discovery::etcd::{EtcdConfig, EtcdDiscovery};
use tokio::sync::watch;

/// Shows this crate's logs in a failing test's output (`RUST_LOG` overrides).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("im_discovery=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A config on the shared etcd with a fresh namespace; fails the test (never
/// skips) when etcd cannot be reached.
async fn shared_etcd_config() -> EtcdConfig {
    init_logs();
    let cfg = EtcdConfig::from_env().with_namespace(format!("/im-test/{}", unique("ns")));
    if let Err(e) = EtcdDiscovery::connect(cfg.clone()).await {
        panic!(
            "etcd is not reachable at {:?}: {e} (source: {:?}). Start it with \
             `bash scripts/services.sh` from the workspace root, or point ETCD_ENDPOINTS at one.",
            cfg.endpoints,
            std::error::Error::source(&e).map(ToString::to_string)
        );
    }
    cfg
}

async fn wait_until(
    rx: &mut watch::Receiver<Vec<ServiceInstance>>,
    within: Duration,
    what: &str,
    pred: impl Fn(&[ServiceInstance]) -> bool,
) {
    let res = tokio::time::timeout(within, rx.wait_for(|v| pred(v)))
        .await
        .map(|r| r.map(|_| ()));
    match res {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("watch closed while waiting until {what}"),
        Err(_) => panic!(
            "timed out after {within:?} waiting until {what}; last set {:?}",
            *rx.borrow()
        ),
    }
}

/// Watches for `window`; fails with the offending set if `holds` stops being true.
async fn holds_for(
    rx: &mut watch::Receiver<Vec<ServiceInstance>>,
    window: Duration,
    what: &str,
    holds: impl Fn(&[ServiceInstance]) -> bool,
) {
    let broke = tokio::time::timeout(window, rx.wait_for(|v| !holds(v)))
        .await
        .map(|r| r.map(|v| v.clone()));
    match broke {
        Err(_) => {}
        Ok(Ok(set)) => panic!("{what} stopped holding: {set:?}"),
        Ok(Err(_)) => panic!("watch closed while checking that {what}"),
    }
}

fn ids(v: &[ServiceInstance]) -> Vec<&str> {
    v.iter().map(|i| i.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_discovery_suite() {
    let cfg = shared_etcd_config().await;
    discovery_suite(|| {
        let cfg = cfg.clone();
        async move { Arc::new(EtcdDiscovery::connect(cfg).await.unwrap()) as Arc<dyn Discovery> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_client_sees_registration_and_graceful_deregistration() {
    let cfg = shared_etcd_config().await;
    let service = unique("logic");
    let server = EtcdDiscovery::connect(cfg.clone()).await.unwrap();
    let observer = EtcdDiscovery::connect(cfg).await.unwrap();
    let mut rx = observer.watch(&service).await.unwrap();
    assert!(rx.borrow().is_empty());

    let inst = ServiceInstance::new(&service, "l1", "http://127.0.0.1:7001").with_meta("zone", "a");
    server.register(inst.clone()).await.unwrap();
    wait_until(
        &mut rx,
        Duration::from_secs(5),
        "the other client sees l1",
        |v| !v.is_empty(),
    )
    .await;
    assert_eq!(*rx.borrow(), vec![inst]);

    let started = Instant::now();
    server.deregister(&service, "l1").await.unwrap();
    wait_until(&mut rx, Duration::from_secs(5), "l1 is gone", |v| {
        v.is_empty()
    })
    .await;
    let took = started.elapsed();
    println!("graceful deregister: gone from another client's watch after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "graceful removal took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_revokes_every_instance() {
    let cfg = shared_etcd_config().await;
    let service = unique("connect");
    let server = EtcdDiscovery::connect(cfg.clone()).await.unwrap();
    let observer = EtcdDiscovery::connect(cfg).await.unwrap();
    let mut rx = observer.watch(&service).await.unwrap();
    for id in ["n1", "n2"] {
        server
            .register(ServiceInstance::new(&service, id, "http://127.0.0.1:1"))
            .await
            .unwrap();
    }
    wait_until(&mut rx, Duration::from_secs(5), "both are seen", |v| {
        v.len() == 2
    })
    .await;
    let started = Instant::now();
    server.shutdown().await.unwrap();
    wait_until(&mut rx, Duration::from_secs(5), "both are gone", |v| {
        v.is_empty()
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_instance_expires_with_its_lease() {
    let ttl = Duration::from_secs(2);
    let cfg = shared_etcd_config().await.with_lease_ttl(ttl);
    let service = unique("connect");
    let dying = EtcdDiscovery::connect(cfg.clone()).await.unwrap();
    let observer = EtcdDiscovery::connect(cfg).await.unwrap();
    let mut rx = observer.watch(&service).await.unwrap();
    dying
        .register(ServiceInstance::new(&service, "n1", "http://127.0.0.1:1"))
        .await
        .unwrap();
    wait_until(&mut rx, Duration::from_secs(5), "n1 is seen", |v| {
        v.len() == 1
    })
    .await;

    // Outlive several keep-alive periods first: the lease must stay up.
    holds_for(&mut rx, ttl * 2, "n1 stays while kept alive", |v| {
        v.len() == 1
    })
    .await;

    let started = Instant::now();
    dying.abandon();
    wait_until(
        &mut rx,
        Duration::from_secs(10),
        "the abandoned n1 expires",
        |v| v.is_empty(),
    )
    .await;
    let took = started.elapsed();
    println!("abandoned (lease TTL {ttl:?}): gone from another client's watch after {took:?}");
    assert!(
        took <= ttl + Duration::from_secs(1),
        "abandoned instance took {took:?} to vanish (TTL {ttl:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_bad_names() {
    let cfg = shared_etcd_config().await;
    let d = EtcdDiscovery::connect(cfg).await.unwrap();
    let err = d
        .register(ServiceInstance::new("a/b", "x", "http://h"))
        .await
        .unwrap_err();
    assert!(matches!(err, im_core::Error::InvalidArgument(_)), "{err:?}");
    assert!(d.watch("").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_is_unavailable() {
    let port = free_port();
    let cfg = EtcdConfig::new([format!("http://127.0.0.1:{port}")])
        .with_connect_timeout(Duration::from_millis(500))
        .with_request_timeout(Duration::from_millis(500));
    let err = EtcdDiscovery::connect(cfg).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

// ---------------------------------------------------------------------------
// A private etcd process, killed and restarted on the same data dir.

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An etcd child process; killed (and its directory removed) on drop.
struct PrivateEtcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    starts: u32,
}

impl PrivateEtcd {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(unique("im-etcd-test"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut me = PrivateEtcd {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            starts: 0,
        };
        me.spawn();
        me
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("etcd-{}.log", self.starts))).unwrap();
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--name", "default"])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start etcd (is /usr/bin/etcd installed? see scripts/services.sh): {e}"
                )
            });
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the private etcd answers (polling: a process start has no
    /// event to wait on).
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let cfg = EtcdConfig::new([self.url()])
                .with_connect_timeout(Duration::from_millis(500))
                .with_request_timeout(Duration::from_millis(500));
            match EtcdDiscovery::connect(cfg).await {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!(
                    "private etcd at {} did not come up: {e}; see logs in {}",
                    self.url(),
                    self.dir.display()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_an_etcd_restart() {
    init_logs();
    let mut etcd = PrivateEtcd::start();
    etcd.wait_ready().await;
    let ttl = Duration::from_secs(2);
    let cfg = EtcdConfig::new([etcd.url()])
        .with_namespace(format!("/im-test/{}", unique("ns")))
        .with_lease_ttl(ttl)
        .with_connect_timeout(Duration::from_millis(500))
        .with_request_timeout(Duration::from_secs(1));
    let service = unique("logic");
    let server = EtcdDiscovery::connect(cfg.clone()).await.unwrap();
    let observer = EtcdDiscovery::connect(cfg.clone()).await.unwrap();

    let a = ServiceInstance::new(&service, "a", "http://127.0.0.1:1");
    let b = ServiceInstance::new(&service, "b", "http://127.0.0.1:2");
    let c = ServiceInstance::new(&service, "c", "http://127.0.0.1:3");
    server.register(a.clone()).await.unwrap();
    server.register(c.clone()).await.unwrap();
    let mut rx = observer.watch(&service).await.unwrap();
    wait_until(&mut rx, Duration::from_secs(5), "a and c are seen", |v| {
        ids(v) == ["a", "c"]
    })
    .await;

    // etcd dies: the watcher keeps its last set, and writes fail retryably.
    etcd.kill();
    holds_for(
        &mut rx,
        ttl + Duration::from_secs(1),
        "the last set is kept while etcd is down",
        |v| ids(v) == ["a", "c"],
    )
    .await;
    let err = server.register(b.clone()).await.unwrap_err();
    assert!(err.is_retryable(), "register while etcd is down: {err:?}");
    println!("register while etcd is down: {err}");

    // etcd comes back on the same data dir.
    etcd.spawn();
    etcd.wait_ready().await;
    let restarted = Instant::now();
    server.register(b.clone()).await.unwrap();
    server.deregister(&service, "a").await.unwrap();
    wait_until(
        &mut rx,
        Duration::from_secs(10),
        "b appears and a goes after the restart",
        |v| ids(v) == ["b", "c"],
    )
    .await;
    println!(
        "watcher saw the post-restart changes {:?} after etcd was ready",
        restarted.elapsed()
    );

    // c's keep-alive recovered: it outlives its TTL after the restart (the
    // leases restored from disk expire unless they are kept alive).
    let window = (ttl * 2 + Duration::from_millis(500)).saturating_sub(restarted.elapsed());
    holds_for(&mut rx, window, "c stays after the restart", |v| {
        ids(v) == ["b", "c"]
    })
    .await;
    assert!(restarted.elapsed() > ttl + Duration::from_secs(1));

    // Cross-check from a fresh client, not through the recovered watch.
    let fresh = EtcdDiscovery::connect(cfg).await.unwrap();
    let now = fresh.watch(&service).await.unwrap();
    assert_eq!(*now.borrow(), vec![b, c]);
    server.shutdown().await.unwrap();
}
