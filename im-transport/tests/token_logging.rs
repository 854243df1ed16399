//! Tokens are never logged: the in-process server runs under a subscriber
//! capturing every event and span of the process at TRACE (the `log` records
//! of dependencies too), while tokens are used every way a client can use
//! them — login, HTTP, WebSocket by header and by `?token=`, sends, logout,
//! then a revoked, a forged and a garbage token. No captured line may contain
//! a token or its signature part.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use im_core::node::Backends;
use serde_json::json;
use support::{closed, recv_until, send, start, Via, SECRET};
use tracing_subscriber::fmt::format::FmtSpan;

/// Every formatted line, in one buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let srv = start(Backends::memory(SECRET)).await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let (a, _) = srv.login("alice").await;
    let (b, _) = srv.login("bob").await;

    // HTTP.
    assert_eq!(srv.get("/conversations", Some(&a)).await.0, 200);
    assert_eq!(srv.get("/connect", Some(&a)).await.0, 200);
    let (s, v) = srv
        .post(
            "/messages",
            Some(&a),
            json!({"client_msg_id": "h1", "to": {"user": bob}, "body": "over http"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // WebSocket by header and by query, with sends both ways.
    let mut wa = srv.ws_open(Via::Header(&a)).await;
    let mut wb = srv.ws_open(Via::Query(&b)).await;
    let mut wa2 = srv.ws_open(Via::Query(&a)).await;
    send(
        &mut wa,
        json!({"type":"send","client_msg_id":"w1","to":{"user": bob},"body":"over ws"}),
    )
    .await;
    recv_until(&mut wa, Duration::from_secs(5), |f| f["type"] == "send_ack").await;
    recv_until(&mut wb, Duration::from_secs(5), |f| f["body"] == "over ws").await;
    send(
        &mut wb,
        json!({"type":"send","client_msg_id":"w2","to":{"user": alice},"body":"back"}),
    )
    .await;
    recv_until(&mut wa2, Duration::from_secs(5), |f| f["body"] == "back").await;

    // Logout, then the revoked token everywhere.
    assert_eq!(srv.logout(Some(&a)).await, 204);
    for ws in [&mut wa, &mut wa2] {
        assert_eq!(closed(ws, Duration::from_secs(2)).await.0, 4001);
    }
    assert_eq!(srv.get("/conversations", Some(&a)).await.0, 401);
    assert_eq!(srv.ws(Via::Header(&a)).await.err(), Some(401));
    assert_eq!(srv.ws(Via::Query(&a)).await.err(), Some(401));
    assert_eq!(srv.logout(Some(&a)).await, 204);

    // A forged token (bob's with another signature) and a garbage one.
    let mut forged = b.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let garbage = format!("garbage-{:x}", rand::random::<u64>());
    for t in [&forged, &garbage] {
        assert_eq!(srv.get("/conversations", Some(t)).await.0, 401);
        assert_eq!(srv.ws(Via::Header(t)).await.err(), Some(401));
        assert_eq!(srv.ws(Via::Query(t)).await.err(), Some(401));
        assert_eq!(srv.logout(Some(t)).await, 401);
    }
    drop(wb);
    srv.shutdown.cancel();
    srv.node.shutdown().await;

    let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    // The capture works: TRACE lines, our crates' spans and events, and the
    // `log` records of dependencies (tungstenite's frame traces).
    assert!(lines.len() > 50, "only {} lines captured", lines.len());
    assert!(lines.iter().any(|l| l.contains("TRACE")), "no TRACE line");
    assert!(
        lines.iter().any(|l| l.contains("tungstenite")),
        "the log records of dependencies are not captured"
    );
    let secrets = [
        ("alice's token", a.as_str()),
        ("alice's signature", signature(&a)),
        ("bob's token", b.as_str()),
        ("bob's signature", signature(&b)),
        ("the forged token", forged.as_str()),
        ("the forged signature", signature(&forged)),
        ("the garbage token", garbage.as_str()),
    ];
    for (what, secret) in secrets {
        assert!(secret.len() >= 16, "{what} is too short to search for");
        if let Some(line) = lines.iter().find(|l| l.contains(secret)) {
            panic!("{what} was logged: {line}");
        }
    }
}
