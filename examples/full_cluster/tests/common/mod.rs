//! Helpers shared by the multi-process tests (`cluster.rs`, `faults.rs`).

#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

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
