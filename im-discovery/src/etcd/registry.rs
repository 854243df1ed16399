//! Registration side: granting a lease, putting the instance key under it,
//! and the keep-alive task that recovers from any etcd failure.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::PutOptions;
use im_core::{Error, Result};
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use super::{Backoff, Shared};

/// Grants a lease of the configured TTL and puts `key = value` under it.
/// Returns the lease id. On a failed put the lease is revoked (best effort).
pub(crate) async fn grant_and_put(shared: &Shared, key: &str, value: &str) -> Result<i64> {
    let (_, mut c) = shared.client();
    let grant = shared
        .call("lease grant", c.lease_grant(shared.ttl_secs, None))
        .await?;
    let lease = grant.id();
    let put = shared
        .call(
            &format!("put of {key}"),
            c.put(key, value, Some(PutOptions::new().with_lease(lease))),
        )
        .await;
    if let Err(e) = put {
        let _ = shared.call("lease revoke", c.lease_revoke(lease)).await;
        return Err(e);
    }
    Ok(lease)
}

/// Keeps the lease in `lease` alive forever; after any failure re-connects,
/// grants a new lease, re-puts the key and stores the new lease id. Ends only
/// when aborted.
pub(crate) async fn keep_alive(
    shared: Arc<Shared>,
    key: String,
    value: String,
    lease: Arc<AtomicI64>,
) {
    let retry_cap = Duration::from_secs(1).min(shared.config.lease_ttl / 2);
    loop {
        let current = lease.load(Ordering::SeqCst);
        let (generation, _) = shared.client();
        let err = keep_lease_alive(&shared, current).await;
        tracing::warn!(%key, lease = format_args!("{current:x}"), error = %err,
            "etcd: keep-alive lost; re-registering");
        let mut backoff = Backoff::new(retry_cap);
        let mut generation = generation;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            shared.reconnect(generation).await;
            match grant_and_put(&shared, &key, &value).await {
                Ok(fresh) => {
                    lease.store(fresh, Ordering::SeqCst);
                    tracing::info!(%key, lease = format_args!("{fresh:x}"),
                        "etcd: re-registered under a new lease");
                    // Tidy up: the old lease holds no key any more.
                    let (_, mut c) = shared.client();
                    let _ = shared.call("lease revoke", c.lease_revoke(current)).await;
                    break;
                }
                Err(e) => {
                    // Warn on the first failure and every 10th, not at every retry.
                    if attempt == 1 || attempt % 10 == 0 {
                        tracing::warn!(%key, attempt, error = %e, "etcd: re-registration failed; retrying");
                    } else {
                        tracing::debug!(%key, attempt, error = %e, "etcd: re-registration failed; retrying");
                    }
                    generation = shared.client().0;
                    backoff.wait().await;
                }
            }
        }
    }
}

/// Refreshes `lease` every third of its TTL until something fails; returns why.
async fn keep_lease_alive(shared: &Shared, lease: i64) -> Error {
    let (_, mut c) = shared.client();
    let (mut keeper, mut stream) = match shared
        .call("lease keep-alive", c.lease_keep_alive(lease))
        .await
    {
        Ok(pair) => pair,
        Err(e) => return e,
    };
    let period = (shared.config.lease_ttl / 3).max(Duration::from_millis(200));
    let mut ticks = interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = keeper.keep_alive().await {
            return Error::unavailable("etcd: keep-alive request failed", e);
        }
        match shared.call("keep-alive reply", stream.message()).await {
            Ok(Some(resp)) if resp.ttl() > 0 => {
                tracing::trace!(
                    lease = format_args!("{lease:x}"),
                    ttl = resp.ttl(),
                    "etcd: lease refreshed"
                );
            }
            Ok(Some(_)) => return Error::unavailable_msg(format!("etcd: lease {lease:x} expired")),
            Ok(None) => return Error::unavailable_msg("etcd: keep-alive stream ended"),
            Err(e) => return e,
        }
    }
}
