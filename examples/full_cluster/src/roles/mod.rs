//! The four roles; each is a separate process in a real deployment, and
//! `all` runs them together in one process.

pub mod api;
pub mod connect;
pub mod logic;
pub mod reshard;
pub mod task;

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Service names in discovery.
pub const LOGIC: &str = "logic";
/// Connect nodes (instance id = node id).
pub const CONNECT: &str = "connect";
/// Task processes (for visibility).
pub const TASK: &str = "task";
/// API processes (for visibility).
pub const API: &str = "api";

/// Every role in this process.
pub async fn all(config: Config, shutdown: CancellationToken) -> Result<(), String> {
    let (a, b, c, d) = tokio::join!(
        logic::run(config.clone(), shutdown.clone()),
        task::run(config.clone(), shutdown.clone()),
        connect::run(config.clone(), shutdown.clone()),
        api::run(config.clone(), shutdown.clone()),
    );
    a.and(b).and(c).and(d)
}
