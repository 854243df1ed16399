//! The audit consumer as a program.
//!
//! Run with (Redis on 127.0.0.1:6379, the same prefix and partitions as the cluster):
//! ```text
//! cargo run -p audit_log -- --dir ./audit --max-bytes 104857600 --keep 10
//! ```
//! Enable `audit` in the cluster (`IM_CLUSTER__AUDIT=true`) so the `audit`
//! group exists from the first send; otherwise it starts at this program's
//! first run.

use std::path::PathBuf;
use std::time::Duration;

use audit_log::{run, AuditLog, ConsumerConfig, LogConfig};
use clap::Parser;
use im_store::redis::{RedisConfig, RedisConn};
use tokio_util::sync::CancellationToken;

/// Writes every queue entry to a rotated JSON-lines audit log.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Redis URL.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Key prefix of the cluster's queue.
    #[arg(long, default_value = "im")]
    prefix: String,
    /// Queue partitions of the cluster (`--shards` is its old name).
    #[arg(long, alias = "shards", default_value_t = im_core::ports::DEFAULT_PARTITIONS)]
    partitions: u32,
    /// Directory of the log.
    #[arg(long, default_value = "audit")]
    dir: PathBuf,
    /// Rotate at this size in bytes.
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    max_bytes: u64,
    /// Rotated files kept.
    #[arg(long, default_value_t = 10)]
    keep: usize,
    /// This consumer's name in the `audit` group.
    #[arg(long, default_value = "audit-1")]
    consumer: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    match audit(args).await {
        Ok(n) => {
            tracing::info!(entries = n, "audit consumer stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("audit_log: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn audit(args: Args) -> Result<u64, String> {
    let redis = RedisConn::connect(
        RedisConfig::new(args.redis_url.clone())
            .with_prefix(args.prefix.clone())
            .with_partitions(args.partitions),
    )
    .await
    .map_err(|e| format!("Redis at {}: {e}", args.redis_url))?;
    let queue = redis.queue();
    let mut log = AuditLog::open(LogConfig {
        dir: args.dir.clone(),
        max_bytes: args.max_bytes.max(1),
        keep: args.keep,
    })
    .map_err(|e| e.to_string())?;
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
    }
    tracing::info!(dir = %args.dir.display(), "auditing");
    run(
        &queue,
        &mut log,
        &ConsumerConfig {
            consumer: args.consumer,
            block: Duration::from_millis(500),
            ..ConsumerConfig::default()
        },
        stop,
    )
    .await
    .map_err(|e| e.to_string())
}
