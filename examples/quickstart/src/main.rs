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
//! serves the API (`/api/v1`, described by `/api/v1/openapi.json`), the
//! WebSocket endpoint (`/ws`), the web chat page (`/`), `/healthz`, `/readyz`
//! and `/metrics`.
//!
//! To keep users, groups and messages across restarts, give it a SQLite file:
//! ```sh
//! cargo run --release -p quickstart -- --data sqlite://im.db
//! ```
//! (the queue, sessions, sequences and dedup stay in memory; sequences
//! continue after the stored messages).
//!
//! To serve HTTPS and WSS on that port, give it a PEM certificate chain and
//! key (also `IM_TLS_CERT`/`IM_TLS_KEY` or `tls_cert`/`tls_key` in the
//! `--config` file); the files are re-read when they change:
//! ```sh
//! cargo run --release -p quickstart -- --tls-cert cert.pem --tls-key key.pem
//! ```

/// mimalloc: the allocator is on every hot path (frames, envelopes, JSON).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use im_core::attachments::AttachmentPolicy;
use im_core::frontdoor::FrontDoorSettings;
use im_store::s3::S3Config;

use im_transport::server::serve_maybe_tls;
use im_transport::tls::{ServerTls, TlsFiles};
use quickstart::{Quickstart, Settings};
use serde::Deserialize;

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
    /// Keep users, groups and messages in a database: sqlite://im.db, postgres://… or mysql://…
    /// (created if missing); default: everything in memory.
    #[arg(long, env = "IM_DATA", value_name = "URL")]
    data: Option<String>,
    /// Who may send 1:1 messages to whom: anyone (default; a user's blocks
    /// still apply) or contacts_only.
    #[arg(long, env = "IM_DIRECT_MESSAGES", value_parser = direct_messages)]
    direct_messages: Option<im_core::logic::DirectMessages>,
    /// Check blocks on 1:1 sends: on (default) or off (only to measure what
    /// the check costs; blocks are then not enforced on sends).
    #[arg(long, env = "IM_RELATION_CHECKS", value_parser = on_off)]
    relation_checks: Option<bool>,
    /// Limits on login, registration and WebSocket upgrades per address and
    /// account: on (default) or off (load tests from one address only).
    #[arg(long, env = "IM_FRONT_DOOR", value_parser = on_off)]
    front_door: Option<bool>,
    /// Proxies whose X-Forwarded-For is believed (addresses or CIDR blocks,
    /// comma-separated).
    #[arg(long, env = "IM_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// PEM certificate chain: serve HTTPS and WSS (needs --tls-key; the
    /// files are re-read when they change).
    #[arg(long, env = "IM_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "IM_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, env = "IM_LOG_JSON")]
    log_json: bool,
}

fn direct_messages(s: &str) -> Result<im_core::logic::DirectMessages, String> {
    match s.trim() {
        "anyone" => Ok(im_core::logic::DirectMessages::Anyone),
        "contacts_only" => Ok(im_core::logic::DirectMessages::ContactsOnly),
        other => Err(format!("expected anyone or contacts_only, got {other:?}")),
    }
}

fn on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        other => Err(format!("expected on or off, got {other:?}")),
    }
}

/// The TOML config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    secret: Option<String>,
    public_ws_url: Option<String>,
    send_rate: Option<f64>,
    data: Option<String>,
    /// `[front_door]`: every limit (see `im_core::frontdoor::FrontDoorSettings`).
    front_door: Option<FrontDoorSettings>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// `[attachments]`: limits of uploads (see `im_core::attachments::AttachmentPolicy`).
    attachments: Option<AttachmentPolicy>,
    /// `[s3]`: keep attachments in this S3 bucket instead of memory.
    s3: Option<S3File>,
    /// `[notifications]`: offline notifications through a signed webhook.
    notifications: Option<NotifyFile>,
}

/// `[notifications]` of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyFile {
    webhook_url: String,
    webhook_secret: String,
    #[serde(default)]
    window_ms: Option<u64>,
}

/// `[s3]` of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3File {
    endpoint: String,
    bucket: String,
    #[serde(default)]
    region: Option<String>,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    public_endpoint: Option<String>,
}

impl From<S3File> for S3Config {
    fn from(f: S3File) -> Self {
        let mut c = S3Config::new(f.endpoint, f.bucket)
            .with_credentials(f.access_key_id, f.secret_access_key);
        if let Some(r) = f.region {
            c = c.with_region(r);
        }
        if let Some(p) = f.public_endpoint {
            c = c.with_public_endpoint(p);
        }
        c
    }
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
    let mut door = file.front_door.clone().unwrap_or_default();
    if let Some(on) = args.front_door {
        door.enabled = on;
    }
    if !args.trusted_proxies.is_empty() {
        door.trusted_proxies = args.trusted_proxies.clone();
    }
    if !door.enabled {
        tracing::warn!(
            "the front door is off: logins, registrations and connections are not limited"
        );
    }
    let front_door = door.to_config()?;
    let settings = Settings {
        secret,
        public_ws_url: args.public_ws_url.or(file.public_ws_url),
        send_rate: args.send_rate.or(file.send_rate).unwrap_or(200.0),
        data: args.data.or(file.data),
        web_page: true,
        direct_messages: args.direct_messages.unwrap_or_default(),
        relation_checks: args.relation_checks.unwrap_or(true),
        front_door,
        tls: TlsFiles::from_options(
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
            "--tls-cert/--tls-key",
        )
        .map_err(|e| e.to_string())?,
        attachments: Some(file.attachments.unwrap_or_default()),
        attachments_max_bytes: 256 << 20,
        attachments_s3: file.s3.map(S3Config::from),
        notify_window: std::time::Duration::from_millis(
            file.notifications
                .as_ref()
                .and_then(|n| n.window_ms)
                .unwrap_or(3_000),
        ),
        notify_webhook: file
            .notifications
            .map(|n| (n.webhook_url, n.webhook_secret)),
    };
    // Bad certificate files stop the start, naming the file.
    let tls = match &settings.tls {
        Some(files) => Some(Arc::new(
            ServerTls::load(files.clone()).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let qs = Quickstart::start(&settings).await?;
    if let Some(data) = &settings.data {
        tracing::info!(data = %im_store::mysql::redact(data), "users, groups and messages are kept in the database");
    }
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (http, ws) = if tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    println!("im quickstart is running: open {http}://{addr}/  (API {http}://{addr}/api/v1, WebSocket {ws}://{addr}/ws)");
    let stop = qs.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    let served = serve_maybe_tls(listener, qs.router.clone(), tls, qs.shutdown.clone())
        .await
        .map_err(|e| e.to_string());
    qs.stop().await;
    served
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

#[cfg(test)]
mod tests {
    use super::FileConfig;

    #[test]
    fn config_file_accepts_data() {
        let c: FileConfig =
            toml::from_str("listen = \"127.0.0.1:9000\"\ndata = \"sqlite://im.db\"\n").unwrap();
        assert_eq!(c.data.as_deref(), Some("sqlite://im.db"));
        assert!(toml::from_str::<FileConfig>("nonsense = 1").is_err());
        let c: FileConfig =
            toml::from_str("tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n").unwrap();
        assert_eq!(
            c.tls_cert.as_deref(),
            Some(std::path::Path::new("cert.pem"))
        );
        assert_eq!(c.tls_key.as_deref(), Some(std::path::Path::new("key.pem")));
    }
}
