//! loadgen's own correctness: against an in-process server on the embedded
//! backends, a short run must report every send acked and delivered, nothing
//! lost or duplicated, in both modes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use im_core::node::{Backends, Node, NodeConfig};
use im_transport::http::routes::SameHostLocator;
use im_transport::http::{ApiConfig, ApiState};
use im_transport::server::{app, serve, AppParts};
use im_transport::ws::{WsConfig, WsState};
use tokio_util::sync::CancellationToken;

async fn server() -> (String, CancellationToken, Node) {
    let mut config = NodeConfig::default();
    config.connect.send_rate = None;
    let node = Node::start(
        Backends::memory(b"loadgen-test-secret-loadgen-test-secret"),
        config,
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let api = ApiConfig {
        send_rate: None,
        ..ApiConfig::default()
    };
    let router = app(AppParts {
        api: Some((
            ApiState::new(
                node.logic.clone(),
                Arc::new(SameHostLocator::default()),
                &api,
            ),
            api,
        )),
        ws: Some(WsState {
            connect: node.connect.clone(),
            config: Arc::new(WsConfig::default()),
            shutdown: stop.clone(),
            front_door: None,
        }),
        ..AppParts::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router, stop.clone()));
    (format!("http://{addr}"), stop, node)
}

async fn run(api: &str, extra: &[&str]) -> serde_json::Value {
    let report = std::env::temp_dir().join(format!(
        "loadgen-{}-{}.json",
        std::process::id(),
        extra.join("_")
    ));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--api",
            api,
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--quiet",
            "--password",
            "password123",
        ])
        .args(extra)
        .arg("--json")
        .arg(&report)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "loadgen failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_counts_are_exact_against_a_real_server() {
    let (api, stop, _node) = server().await;
    let r = run(&api, &["--users", "20", "--window", "4"]).await;
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent > 100, "{r}");
    assert_eq!(r["acked"].as_u64(), Some(sent), "{r}");
    assert_eq!(
        r["delivered"].as_u64(),
        Some(sent),
        "1:1: one delivery per message: {r}"
    );
    assert_eq!(r["lost"].as_u64(), Some(0));
    assert_eq!(r["duplicated"].as_u64(), Some(0));
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(r["latency_ms"][k].as_f64().unwrap() > 0.0, "{k}: {r}");
    }
    let g = run(
        &api,
        &[
            "--users",
            "12",
            "--mode",
            "group",
            "--group-size",
            "4",
            "--rate",
            "200",
        ],
    )
    .await;
    let acked = g["acked"].as_u64().unwrap();
    assert!(acked > 50, "{g}");
    assert_eq!(
        g["delivered"].as_u64(),
        Some(acked * 3),
        "group of 4: three deliveries per message: {g}"
    );
    assert_eq!(g["lost"].as_u64(), Some(0));
    stop.cancel();
}
