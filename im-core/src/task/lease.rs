//! Partition leases for a consumer group whose order matters (`push`): a
//! background keeper holds this worker's fair share of the queue partitions,
//! and the worker loop reads exactly the partitions the keeper holds.
//!
//! Why a separate task: renewals must not wait for a slow step (a push that
//! takes its full timeout would otherwise let the lease lapse while the
//! worker still works the partition).
//!
//! How work moves:
//! - Every tick (`ttl / 5`) the keeper heartbeats its membership, computes the
//!   fair share `ceil(partitions / live members)`, renews what it holds and
//!   tries free partitions while it holds fewer than its share.
//! - Over its share (a worker joined), it stops granting the extras; once the
//!   worker loop reports it no longer reads them, it releases them, and the
//!   newcomer takes them over with what was left pending.
//! - A renewal that fails, or that Redis refuses (the lease lapsed and someone
//!   else took it), drops the partition at once; the grant also carries a
//!   deadline, so a worker never works a partition past its lease even when
//!   the keeper cannot reach the lease store.
//! - A dead worker's leases and membership lapse after `ttl`; the others then
//!   compute a larger share and take its partitions over.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ports::PartitionLeases;

/// What the keeper lets the worker read: partitions and until when.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    /// The partitions to read (sorted).
    pub partitions: Vec<u32>,
    /// The grant is void after this instant unless renewed.
    pub valid_until: Option<Instant>,
}

impl Grant {
    /// The partitions usable now (none once the deadline passed).
    pub fn usable(&self, now: Instant) -> &[u32] {
        match self.valid_until {
            Some(t) if t > now => &self.partitions,
            _ => &[],
        }
    }
}

/// The worker side of a keeper.
#[derive(Debug)]
pub struct LeaseHandle {
    /// Grants from the keeper.
    pub grants: watch::Receiver<Grant>,
    /// The partitions the worker loop reads now (reported back).
    pub active: watch::Sender<Vec<u32>>,
    /// How many partitions the queue has.
    pub partitions: u32,
}

/// Settings of a keeper.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The scope (the consumer group).
    pub scope: String,
    /// This holder's unique name.
    pub holder: String,
    /// Lease and membership lifetime: a dead worker's partitions move after
    /// about this long.
    pub ttl: Duration,
    /// How many partitions the queue has.
    pub partitions: u32,
}

/// A running keeper of one worker, or none (the worker reads every partition).
pub(crate) struct Keeping {
    handle: Option<LeaseHandle>,
    task: Option<tokio::task::JoinHandle<()>>,
    stop: CancellationToken,
}

impl Keeping {
    /// Starts a keeper for `holder` in `scope` when `leases` are given.
    pub(crate) fn start(
        leases: Option<&Arc<dyn PartitionLeases>>,
        scope: &str,
        holder: &str,
        ttl: Duration,
        partitions: u32,
    ) -> Keeping {
        let stop = CancellationToken::new();
        let Some(leases) = leases else {
            return Keeping {
                handle: None,
                task: None,
                stop,
            };
        };
        let (handle, task) = start(
            leases.clone(),
            LeaseConfig {
                scope: scope.to_owned(),
                holder: holder.to_owned(),
                ttl,
                partitions,
            },
            stop.clone(),
        );
        Keeping {
            handle: Some(handle),
            task: Some(task),
            stop,
        }
    }

    /// The worker side, for [`super::claim::run_loop`].
    pub(crate) fn handle(&mut self) -> Option<LeaseHandle> {
        self.handle.take()
    }

    /// Stops the keeper after the worker loop ended (it releases what it held).
    pub(crate) async fn finish(self) {
        self.stop.cancel();
        if let Some(t) = self.task {
            let _ = t.await;
        }
    }
}

/// Starts a keeper; it runs until `stop` fires, then releases everything the
/// worker loop has stopped reading (call after the loop ended).
pub fn start(
    leases: Arc<dyn PartitionLeases>,
    config: LeaseConfig,
    stop: CancellationToken,
) -> (LeaseHandle, tokio::task::JoinHandle<()>) {
    let (grant_tx, grant_rx) = watch::channel(Grant::default());
    let (active_tx, active_rx) = watch::channel(Vec::new());
    let partitions = config.partitions.max(1);
    let task = tokio::spawn(keep(leases, config, grant_tx, active_rx, stop));
    (
        LeaseHandle {
            grants: grant_rx,
            active: active_tx,
            partitions,
        },
        task,
    )
}

async fn keep(
    leases: Arc<dyn PartitionLeases>,
    c: LeaseConfig,
    grants: watch::Sender<Grant>,
    active: watch::Receiver<Vec<u32>>,
    stop: CancellationToken,
) {
    let parts = c.partitions.max(1);
    let tick = (c.ttl / 5).max(Duration::from_millis(20));
    // Start the search for free partitions at a place of our own, so workers
    // starting together do not all race for partition 0 first.
    let offset = (c.holder.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) % u64::from(parts)) as u32;
    let mut held: BTreeSet<u32> = BTreeSet::new();
    let mut releasing: BTreeSet<u32> = BTreeSet::new();
    loop {
        let started = Instant::now();
        let share = match leases.heartbeat(&c.scope, &c.holder, c.ttl).await {
            Ok(members) => parts.div_ceil(members.max(1) as u32) as usize,
            Err(e) => {
                tracing::warn!(error = %e, scope = %c.scope, "lease heartbeat failed");
                held.len()
            }
        };
        let mut wanted: Vec<u32> = held.iter().copied().collect();
        if held.len() < share {
            wanted.extend(
                (0..parts)
                    .map(|i| (i + offset) % parts)
                    .filter(|p| !held.contains(p)),
            );
        }
        match leases.acquire(&c.scope, &c.holder, &wanted, c.ttl).await {
            Ok(got) => {
                let got: BTreeSet<u32> = got.into_iter().collect();
                for lost in held.difference(&got) {
                    tracing::warn!(partition = lost, scope = %c.scope, "lease lost");
                }
                // Keep what we held plus new ones up to the share.
                let mut next: BTreeSet<u32> = held.intersection(&got).copied().collect();
                let mut extra: Vec<u32> = got.difference(&held).copied().collect();
                let room = share.saturating_sub(next.len());
                let give_back: Vec<u32> = extra.split_off(room.min(extra.len()));
                next.extend(extra);
                if !give_back.is_empty() {
                    // Taken in the same call beyond the share: nobody read them yet.
                    if let Err(e) = leases.release(&c.scope, &c.holder, &give_back).await {
                        tracing::warn!(error = %e, "releasing extra leases failed");
                    }
                }
                // Over the share: stop granting the highest ones, release
                // them once the worker no longer reads them.
                releasing.retain(|p| next.contains(p));
                let over = next.len().saturating_sub(share);
                for p in next.iter().rev().copied().take(over).collect::<Vec<_>>() {
                    releasing.insert(p);
                }
                held = next;
                let granted: Vec<u32> = held.difference(&releasing).copied().collect();
                grants.send_replace(Grant {
                    partitions: granted,
                    valid_until: Some(started + c.ttl.mul_f32(0.8)),
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, scope = %c.scope, "lease renewal failed");
                // The old grant's deadline still stands; past it the worker
                // reads nothing.
            }
        }
        if !releasing.is_empty() {
            let reading: BTreeSet<u32> = active.borrow().iter().copied().collect();
            let free: Vec<u32> = releasing
                .iter()
                .copied()
                .filter(|p| !reading.contains(p))
                .collect();
            if !free.is_empty() && leases.release(&c.scope, &c.holder, &free).await.is_ok() {
                for p in &free {
                    releasing.remove(p);
                    held.remove(p);
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(started + tick) => {}
        }
    }
    // Stopped: grant nothing more; release once the worker loop has ended
    // (its `active` sender is dropped) or reads none of them.
    grants.send_replace(Grant::default());
    let mut active = active;
    let deadline = Instant::now() + c.ttl;
    while !active.borrow().is_empty() {
        match tokio::time::timeout_at(deadline, active.changed()).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    let all: Vec<u32> = held.into_iter().collect();
    if !all.is_empty() {
        if let Err(e) = leases.release(&c.scope, &c.holder, &all).await {
            tracing::warn!(error = %e, "releasing leases on stop failed; they lapse after their ttl");
        }
    }
}
