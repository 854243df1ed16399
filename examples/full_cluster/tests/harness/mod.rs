//! The harness of the multi-process tests (`cluster.rs`, `faults/`, `tls.rs`,
//! `reshard.rs`): free ports, random namespaces, the environment, and
//! processes that are killed when the test drops them — the `full_cluster`
//! roles ([`Cluster`]) and private servers such as redis-server or etcd
//! ([`Server`]).
//!
//! Included by each test binary with `mod harness;` (from `faults/main.rs`
//! with a `#[path]`), so every binary uses only part of it.

// Each test binary uses only part of the harness.
#![allow(clippy::unwrap_used, dead_code, unused_imports)]

mod cluster;
mod server;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use cluster::{Cluster, Proc, CONNECT_NODES, SECRET};
pub use server::Server;

/// A free port below the kernel's ephemeral range (32768 and up here), so
/// that outgoing connections (thousands in some scenarios) cannot take it
/// before the process it is meant for binds it; never the same twice in this
/// process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = 20_000 + (rand_u32() % 12_000) as u16;
        if GIVEN.lock().unwrap().contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            GIVEN.lock().unwrap().insert(port);
            return port;
        }
    }
}

/// A random number (namespaces, ports): time and process id through a
/// randomly seeded hasher.
pub fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    // RandomState is seeded randomly per process and differs per call.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(t.as_nanos());
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// The variable `var`, or `default` when it is unset.
pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// The sum of the samples of metric `name` (every label set) in the
/// Prometheus text at `url`; NaN when `url` does not answer.
pub async fn metric(http: &reqwest::Client, url: &str, name: &str) -> f64 {
    let Ok(r) = http.get(url).timeout(Duration::from_secs(3)).send().await else {
        return f64::NAN;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// Polls `check` every 50 ms until it is true; the time it took, or None
/// after `limit`.
pub async fn poll_until<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    loop {
        if check().await {
            return Some(t.elapsed());
        }
        if t.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
