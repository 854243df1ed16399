//! `full_cluster reshard`: the operator's tool for changing the archive's
//! shard list (`cluster.database_shard_urls`) without losing a message. The
//! procedure around it is in docs/deployment.md, "Resharding the archive".

use im_store::mysql::{MySqlConfig, MySqlShards};

use crate::config::Config;
use crate::infra;

/// Copies to `to` (step 1), or cleans the configured shards up (step 2).
pub async fn run(c: Config, to: Option<Vec<String>>, cleanup: bool) -> Result<(), String> {
    let primary = infra::mysql(&c).await?;
    let current = infra::mysql_archive(&c, &primary).await?;
    if cleanup {
        let r = current
            .remove_strays()
            .await
            .map_err(|e| format!("cleanup: {e}"))?;
        println!(
            "cleanup: {} conversations looked at, {} removed from shards that no longer hold them \
             ({} messages, {} read cursors)",
            r.conversations_seen, r.conversations_moved, r.messages, r.cursors
        );
        return Ok(());
    }
    let Some(to) = to.filter(|t| !t.is_empty()) else {
        return Err("reshard: give --to <urls> or --cleanup".into());
    };
    if to.len() > c.cluster.partitions.max(1) as usize {
        return Err(format!(
            "reshard: {} shards over {} partitions (at most one shard per partition)",
            to.len(),
            c.cluster.partitions
        ));
    }
    let mut template = MySqlConfig::new(&c.cluster.database_url);
    template.max_connections = c.cluster.mysql_pool;
    let target = MySqlShards::connect(&template, &to, c.cluster.partitions)
        .await
        .map_err(|e| format!("reshard: the new shards: {e}"))?;
    let r = current
        .copy_to(&target)
        .await
        .map_err(|e| format!("reshard: {e}"))?;
    println!(
        "copy: {} conversations looked at, {} copied to a new home ({} new message rows, {} read \
         cursors). Next: set DATABASE_SHARD_URLS={} on every logic and task process, restart \
         them, then run `full_cluster reshard --cleanup` with that setting.",
        r.conversations_seen,
        r.conversations_moved,
        r.messages,
        r.cursors,
        to.join(",")
    );
    Ok(())
}
