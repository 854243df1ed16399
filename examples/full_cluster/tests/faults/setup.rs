//! What every scenario shares: one scenario at a time, the servers' URLs
//! (a missing server fails with its name and how to start it), and how the
//! numbers are printed.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use sqlx::MySqlPool;

use crate::harness::{env_or, Cluster};

/// `cluster.partitions` (the default): streams `{ns}:{p0..p63}:stream`.
pub const SHARDS: u32 = im_core::ports::DEFAULT_PARTITIONS;
/// Every test user's password.
pub const PASSWORD: &str = "password123";

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `scenario` on its own runtime, one scenario at a time: each starts
/// its own cluster, and on 2 cores their timing figures would disturb each
/// other.
pub fn run(scenario: impl std::future::Future<Output = ()>) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario);
}

/// `RELIABILITY_LONG=1`: longer outages.
pub fn long_mode() -> bool {
    std::env::var("RELIABILITY_LONG").is_ok_and(|v| v == "1" || v == "true")
}

/// The machine's MariaDB.
pub fn database_url() -> String {
    env_or("DATABASE_URL", "mysql://root@127.0.0.1:3306/test")
}

/// The machine's Redis.
pub fn redis_url() -> String {
    env_or("REDIS_URL", "redis://127.0.0.1:6379")
}

/// The machine's etcd (its first endpoint).
pub fn etcd_endpoint() -> String {
    env_or("ETCD_ENDPOINTS", "http://127.0.0.1:2379")
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Byte range of `host:port` in `scheme://user@host:port/path`.
pub fn authority(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = start + url[start..].find('/').unwrap_or(url.len() - start);
    let start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    (start, end)
}

/// The socket address of a URL's server (MySQL's port by default).
pub fn server_of(url: &str) -> SocketAddr {
    let (s, e) = authority(url);
    let host = &url[s..e];
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:3306")
    };
    host.to_socket_addrs()
        .unwrap_or_else(|e| panic!("cannot resolve {host} of {url}: {e}"))
        .next()
        .unwrap()
}

/// `url` with its server replaced by `addr`.
pub fn through(url: &str, addr: SocketAddr) -> String {
    let (s, e) = authority(url);
    format!("{}{addr}{}", &url[..s], &url[e..])
}

/// `1.5 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Milliseconds, one decimal below 10.
pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// The `p` percentile (0 to 1) of sorted durations; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

// Required servers: a missing one fails with its name and how to start it.

/// Fails unless Redis answers at `url`.
pub async fn require_redis(url: &str) {
    let ping = async {
        let c = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut con =
            tokio::time::timeout(Duration::from_secs(3), c.get_multiplexed_async_connection())
                .await
                .map_err(|_| "no answer within 3 s".to_owned())?
                .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(e) = ping.await {
        panic!(
            "Redis is required at {url} ({e}): start it with scripts/services.sh \
             (or `redis-server --daemonize yes --port 6379`), or set REDIS_URL"
        );
    }
}

/// Fails unless MySQL answers at `url`; a pool on it.
pub async fn require_mysql(url: &str) -> MySqlPool {
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "MariaDB/MySQL is required at {url} ({e}): start it with scripts/services.sh \
                 (or `start-stop-daemon --start --background --exec /usr/sbin/mariadbd`), \
                 or set DATABASE_URL"
            )
        });
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    pool
}

/// Fails unless etcd answers at `endpoint`.
pub async fn require_etcd(http: &reqwest::Client, endpoint: &str) {
    let ok = match http
        .get(format!("{endpoint}/health"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default().contains("true"),
        Err(_) => false,
    };
    assert!(
        ok,
        "etcd is required at {endpoint}: start it with scripts/services.sh \
         (it installs etcd-server and runs it on 127.0.0.1:2379), or set ETCD_ENDPOINTS"
    );
}

/// Fails unless `name --version` runs; `how` says how to install it.
pub fn require_binary(name: &str, how: &str) {
    let ok = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "`{name}` is required on PATH: {how}");
}

/// The machine's Redis, MariaDB and etcd (what every cluster here uses unless
/// a scenario replaces one).
pub async fn require_services(http: &reqwest::Client, redis: bool, etcd: bool) -> MySqlPool {
    if redis {
        require_redis(&redis_url()).await;
    }
    if etcd {
        require_etcd(http, &etcd_endpoint()).await;
    }
    require_mysql(&database_url()).await
}

/// A cluster of `scenario`, not started yet. Every client of these drills
/// comes from 127.0.0.1 (s04 alone opens 1,000 sockets): the per-address
/// limits are tested in cluster.rs and im-transport's front_door tests, so
/// the front door is off.
pub fn new_cluster(scenario: &str) -> Cluster {
    let mut c = Cluster::new(scenario);
    c.set_env("IM_FRONT_DOOR__ENABLED", "false");
    c
}
