//! # quickstart: the whole im system in one process
//!
//! Run with:
//! ```sh
//! cargo run --release -p quickstart              # then open http://127.0.0.1:8080
//! cargo run --release -p quickstart -- --help    # every option
//! ```
//!
//! All four layers (HTTP API, Logic, Task, Connect) run in this process on
//! the embedded in-memory backends: no Redis, MySQL or etcd needed. One port
//! serves the API (`/api/v1`), the WebSocket endpoint (`/ws`), the web chat
//! page (`/`), `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use im_core::node::{Backends, Node, NodeConfig};
use im_transport::http::routes::SameHostLocator;
use im_transport::http::{install_metrics, ApiConfig, ApiState};
use im_transport::server::{app, serve, AppParts};
use im_transport::ws::{WsConfig, WsState};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Command-line options (each also readable from the environment or a TOML file).
#[derive(Debug, Parser)]
#[command(
    name = "quickstart",
    about = "Run im (API, Logic, Task, Connect) in one process on embedded defaults"
)]
struct Args {
    /// Address to listen on (HTTP API, /ws and the web page).
    #[arg(long, env = "IM_LISTEN")]
    listen: Option<SocketAddr>,
    /// A TOML file with the same keys as these flags (flags win).
    #[arg(long, env = "IM_CONFIG")]
    config: Option<PathBuf>,
    /// Secret signing the login tokens (random per run when unset).
    #[arg(long, env = "IM_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Public WebSocket URL answered by GET /api/v1/connect (default: from the Host header).
    #[arg(long, env = "IM_PUBLIC_WS_URL")]
    public_ws_url: Option<String>,
    /// Sends per second allowed per user (0 = unlimited).
    #[arg(long, env = "IM_SEND_RATE")]
    send_rate: Option<f64>,
    /// Log as JSON lines.
    #[arg(long, env = "IM_LOG_JSON")]
    log_json: bool,
}

/// The TOML config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    secret: Option<String>,
    public_ws_url: Option<String>,
    send_rate: Option<f64>,
}

fn load(args: &Args) -> Result<FileConfig, String> {
    let Some(path) = &args.config else {
        return Ok(FileConfig::default());
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let fmt = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
    );
    if args.log_json {
        fmt.json().init();
    } else {
        fmt.init();
    }
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let file = load(&args)?;
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let secret = args.secret.clone().or(file.secret).unwrap_or_else(|| {
        tracing::warn!(
            "no --secret: tokens are signed with a random key and die with this process"
        );
        (0..48)
            .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
            .collect()
    });
    let send_rate = args.send_rate.or(file.send_rate).unwrap_or(200.0);
    let rate = (send_rate > 0.0).then_some(send_rate);

    let metrics = install_metrics();
    let mut config = NodeConfig::default();
    config.connect.send_rate = rate;
    config.connect.send_burst = send_rate.max(1.0) * 2.0;
    let node = Node::start(Backends::memory(secret.as_bytes()), config)
        .await
        .map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    let api_config = ApiConfig {
        send_rate: rate,
        send_burst: send_rate.max(1.0) * 2.0,
        ..ApiConfig::default()
    };
    let locator = Arc::new(SameHostLocator {
        public_url: args.public_ws_url.or(file.public_ws_url),
    });
    let router = app(AppParts {
        api: Some((
            ApiState::new(node.logic.clone(), locator, &api_config),
            api_config,
        )),
        ws: Some(WsState {
            connect: node.connect.clone(),
            config: Arc::new(WsConfig::default()),
            shutdown: shutdown.clone(),
        }),
        ready: Vec::new(),
        metrics: Some(metrics),
        web_page: true,
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("im quickstart is running: open http://{addr}/  (API http://{addr}/api/v1, WebSocket ws://{addr}/ws)");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    serve(listener, router, shutdown)
        .await
        .map_err(|e| e.to_string())?;
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
