//! # full_cluster: the reference four-layer im deployment
//!
//! Run with:
//! ```sh
//! examples/full_cluster/run-local.sh          # 1 api, 2 logic, 2 task, 2 connect on 127.0.0.1
//! cargo run --release -p full_cluster -- --help
//! cargo run --release -p full_cluster -- logic --worker-id 1 --grpc-listen 127.0.0.1:7001
//! cargo run --release -p full_cluster -- all  # every role in one process (still on Redis/MySQL/etcd)
//! ```
//!
//! One binary, one role per layer: `api` (HTTP API and web page), `logic`
//! (LogicRpc), `task` (push and persist consumer groups) and `connect`
//! (WebSocket sessions and ConnectRpc). Every role registers itself in etcd and
//! finds its peers only through it. Configuration: defaults ← `--config` TOML
//! ← `IM_*` environment (`IM_CONNECT__NODE_ID=c2`; also `REDIS_URL`,
//! `DATABASE_URL`, `ETCD_ENDPOINTS`) ← flags.

/// mimalloc: the allocator is on every hot path (frames, envelopes, JSON).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod config;
mod infra;
mod roles;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use figment::value::{Dict, Value};

/// The reference im deployment: run one role per process.
#[derive(Debug, Parser)]
#[command(name = "full_cluster", version)]
struct Cli {
    /// TOML configuration file (sections: cluster, api, logic, connect, task).
    #[arg(long, global = true, env = "IM_CONFIG")]
    config: Option<PathBuf>,
    /// Redis URL [cluster.redis_url; env REDIS_URL].
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// MySQL URL [cluster.database_url; env DATABASE_URL].
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Archive shard URLs, comma separated (empty: the archive is on
    /// --database-url) [cluster.database_shard_urls; env DATABASE_SHARD_URLS].
    #[arg(long, global = true, value_delimiter = ',')]
    database_shard_urls: Option<Vec<String>>,
    /// etcd endpoints, comma separated [cluster.etcd_endpoints; env ETCD_ENDPOINTS].
    #[arg(long, global = true, value_delimiter = ',')]
    etcd_endpoints: Option<Vec<String>>,
    /// Namespace of Redis and etcd keys [cluster.namespace].
    #[arg(long, global = true)]
    namespace: Option<String>,
    /// Token signing secret [cluster.jwt_secret; env IM_CLUSTER__JWT_SECRET].
    #[arg(long, global = true, hide_env_values = true)]
    jwt_secret: Option<String>,
    /// PEM certificate of every gRPC server in this process [cluster.grpc_tls_cert].
    #[arg(long, global = true)]
    grpc_tls_cert: Option<PathBuf>,
    /// PEM key of --grpc-tls-cert [cluster.grpc_tls_key].
    #[arg(long, global = true)]
    grpc_tls_key: Option<PathBuf>,
    /// PEM CA gRPC clients trust; set, they use TLS (default: --grpc-tls-cert) [cluster.grpc_tls_ca].
    #[arg(long, global = true)]
    grpc_tls_ca: Option<PathBuf>,
    /// Log JSON lines (config key `log_json`).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// HTTP API (register, login, send, history, groups, connect) and the web page.
    Api {
        /// Listen address [api.listen].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Instance id [api.id].
        #[arg(long)]
        id: Option<String>,
        /// HTTP sends per second per user, 0 = unlimited [api.send_rate].
        #[arg(long)]
        send_rate: Option<f64>,
        /// PEM certificate: serve HTTPS (with --tls-key) [api.tls_cert].
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// PEM key of --tls-cert [api.tls_key].
        #[arg(long)]
        tls_key: Option<PathBuf>,
    },
    /// LogicRpc: auth, validation, dedup, ids, sequences, enqueue.
    Logic {
        /// gRPC listen address [logic.grpc_listen].
        #[arg(long)]
        grpc_listen: Option<SocketAddr>,
        /// /healthz, /readyz, /metrics listen address [logic.ops_listen].
        #[arg(long)]
        ops_listen: Option<SocketAddr>,
        /// Snowflake worker id 0..=1023, unique per logic process [logic.worker_id].
        #[arg(long)]
        worker_id: Option<u16>,
    },
    /// Task: the push and persist consumer groups.
    Task {
        /// /healthz, /readyz, /metrics listen address [task.ops_listen].
        #[arg(long)]
        ops_listen: Option<SocketAddr>,
        /// Instance id, unique per task process [task.id].
        #[arg(long)]
        id: Option<String>,
    },
    /// Connect: WebSocket sessions (/ws) and ConnectRpc.
    Connect {
        /// WebSocket (and ops) listen address [connect.listen].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// gRPC listen address [connect.grpc_listen].
        #[arg(long)]
        grpc_listen: Option<SocketAddr>,
        /// Node id carried by session routes, unique per connect process [connect.node_id].
        #[arg(long)]
        node_id: Option<String>,
        /// Sends per second per user, 0 = unlimited [connect.send_rate].
        #[arg(long)]
        send_rate: Option<f64>,
        /// PEM certificate: serve WSS (with --tls-key) [connect.tls_cert].
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// PEM key of --tls-cert [connect.tls_key].
        #[arg(long)]
        tls_key: Option<PathBuf>,
    },
    /// Every role in this one process (on the same Redis, MySQL and etcd).
    All,
    /// Moves archive rows when the shard list changes (docs/deployment.md,
    /// "Resharding the archive"): `--to` copies from the configured shards to
    /// the new list; `--cleanup` deletes, on the configured shards, what
    /// another shard now holds.
    Reshard {
        /// The new shard URLs, comma separated: copy every conversation
        /// whose home there is another database (deletes nothing).
        #[arg(long, value_delimiter = ',', required_unless_present = "cleanup")]
        to: Option<Vec<String>>,
        /// Delete, on each configured shard, the conversations another
        /// configured shard homes (after checking it holds their messages).
        #[arg(long, conflicts_with = "to")]
        cleanup: bool,
    },
}

fn put<T: Into<Value>>(d: &mut Dict, key: &str, v: Option<T>) {
    if let Some(v) = v {
        d.insert(key.to_owned(), v.into());
    }
}

/// A path as a config value.
fn path(p: &Option<PathBuf>) -> Option<String> {
    p.as_ref().map(|p| p.to_string_lossy().into_owned())
}

fn overrides(cli: &Cli) -> Dict {
    let mut d = Dict::new();
    put(&mut d, "cluster.redis_url", cli.redis_url.clone());
    put(&mut d, "cluster.database_url", cli.database_url.clone());
    put(
        &mut d,
        "cluster.database_shard_urls",
        cli.database_shard_urls.clone(),
    );
    put(&mut d, "cluster.etcd_endpoints", cli.etcd_endpoints.clone());
    put(&mut d, "cluster.namespace", cli.namespace.clone());
    put(&mut d, "cluster.jwt_secret", cli.jwt_secret.clone());
    put(&mut d, "cluster.grpc_tls_cert", path(&cli.grpc_tls_cert));
    put(&mut d, "cluster.grpc_tls_key", path(&cli.grpc_tls_key));
    put(&mut d, "cluster.grpc_tls_ca", path(&cli.grpc_tls_ca));
    if cli.log_json {
        d.insert("log_json".into(), true.into());
    }
    match &cli.role {
        Role::Api {
            listen,
            id,
            send_rate,
            tls_cert,
            tls_key,
        } => {
            put(&mut d, "api.tls_cert", path(tls_cert));
            put(&mut d, "api.tls_key", path(tls_key));
            put(&mut d, "api.listen", listen.map(|a| a.to_string()));
            put(&mut d, "api.id", id.clone());
            put(&mut d, "api.send_rate", *send_rate);
        }
        Role::Logic {
            grpc_listen,
            ops_listen,
            worker_id,
        } => {
            put(
                &mut d,
                "logic.grpc_listen",
                grpc_listen.map(|a| a.to_string()),
            );
            put(
                &mut d,
                "logic.ops_listen",
                ops_listen.map(|a| a.to_string()),
            );
            put(&mut d, "logic.worker_id", *worker_id);
        }
        Role::Task { ops_listen, id } => {
            put(&mut d, "task.ops_listen", ops_listen.map(|a| a.to_string()));
            put(&mut d, "task.id", id.clone());
        }
        Role::Connect {
            listen,
            grpc_listen,
            node_id,
            send_rate,
            tls_cert,
            tls_key,
        } => {
            put(&mut d, "connect.tls_cert", path(tls_cert));
            put(&mut d, "connect.tls_key", path(tls_key));
            put(&mut d, "connect.listen", listen.map(|a| a.to_string()));
            put(
                &mut d,
                "connect.grpc_listen",
                grpc_listen.map(|a| a.to_string()),
            );
            put(&mut d, "connect.node_id", node_id.clone());
            put(&mut d, "connect.send_rate", *send_rate);
        }
        Role::All | Role::Reshard { .. } => {}
    }
    d
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match config::load(cli.config.as_ref(), overrides(&cli)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("full_cluster: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt().with_env_filter(filter);
    if config.log_json {
        fmt.json().init();
    } else {
        fmt.init();
    }
    let shutdown = infra::shutdown_on_signal();
    let result = match cli.role {
        Role::Api { .. } => roles::api::run(config, shutdown).await,
        Role::Logic { .. } => roles::logic::run(config, shutdown).await,
        Role::Task { .. } => roles::task::run(config, shutdown).await,
        Role::Connect { .. } => roles::connect::run(config, shutdown).await,
        Role::All => roles::all(config, shutdown).await,
        Role::Reshard { to, cleanup } => roles::reshard::run(config, to, cleanup).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopped");
            eprintln!("full_cluster: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
