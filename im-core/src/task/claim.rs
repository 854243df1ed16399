//! The worker loop shared by both groups: fetch or claim, process (while the
//! next batch is fetched), ack; with
//! capped exponential backoff while the queue or the step fails, and a clean
//! stop (finish the batch in hand or leave it un-acked; never ack unfinished work).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::ports::{Delivery, EntryId, QueueConsumer};

use super::WorkerConfig;

/// What a step did with a batch.
pub enum Outcome {
    /// Every entry is done: ack them all.
    Done,
    /// Stop requested before the step finished: leave the batch pending.
    Abandoned,
}

/// Doubles a backoff up to `max`.
pub fn next_backoff(current: Duration, max: Duration) -> Duration {
    (current * 2).clamp(Duration::from_millis(50), max)
}

/// Runs `step` over batches from `consumer` until `stop` fires.
///
/// Pipelined: while `step` works on one batch, the next one is already being
/// fetched (the step never needs the consumer), and the finished batch is
/// acked right after, before its successor's step starts. Steps still run
/// one at a time and in fetch order. A finished batch's ack may wait for the
/// fetch in flight, at most `config.block`, which must stay below
/// `config.claim_idle` (it does in every default).
pub async fn run_loop<F, Fut>(
    mut consumer: Box<dyn QueueConsumer>,
    config: &WorkerConfig,
    stop: CancellationToken,
    mut step: F,
) where
    F: FnMut(Vec<Delivery>) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut last_claim = tokio::time::Instant::now();
    let mut backoff = Duration::ZERO;
    let mut next: Option<Result<Vec<Delivery>>> = None;
    loop {
        // Stopping: a batch already fetched is still finished (or abandoned
        // by its step); nothing new is fetched.
        let holding = matches!(&next, Some(Ok(b)) if !b.is_empty());
        if stop.is_cancelled() && !holding {
            return;
        }
        let batch = match next.take() {
            Some(b) => b,
            None => next_batch(consumer.as_mut(), config, &stop, &mut last_claim).await,
        };
        let batch = match batch {
            Ok(b) => {
                backoff = Duration::ZERO;
                b
            }
            Err(e) => {
                backoff = next_backoff(backoff, config.max_backoff);
                tracing::warn!(error = %e, ?backoff, "queue fetch failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<EntryId> = batch.iter().map(|d| d.id.clone()).collect();
        let (outcome, prefetched) = futures::future::join(
            step(batch),
            next_batch(consumer.as_mut(), config, &stop, &mut last_claim),
        )
        .await;
        match outcome {
            Outcome::Done => ack(consumer.as_mut(), &ids, config, &stop).await,
            // The prefetched batch stays pending too: another consumer
            // claims it (never ack unfinished work).
            Outcome::Abandoned => return,
        }
        next = Some(prefetched);
    }
}

/// The next batch: entries left pending by others when a claim is due,
/// otherwise new entries.
async fn next_batch(
    consumer: &mut dyn QueueConsumer,
    config: &WorkerConfig,
    stop: &CancellationToken,
    last_claim: &mut tokio::time::Instant,
) -> Result<Vec<Delivery>> {
    if stop.is_cancelled() {
        return Ok(Vec::new());
    }
    if last_claim.elapsed() >= config.claim_every {
        *last_claim = tokio::time::Instant::now();
        match consumer.claim_stale(config.claim_idle, config.batch).await {
            Ok(claimed) if !claimed.is_empty() => {
                tracing::info!(count = claimed.len(), consumer = %config.consumer, "claimed entries left pending by another consumer");
                return Ok(claimed);
            }
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    fetch(consumer, config, stop).await
}

async fn fetch(
    consumer: &mut dyn QueueConsumer,
    config: &WorkerConfig,
    stop: &CancellationToken,
) -> Result<Vec<Delivery>> {
    tokio::select! {
        _ = stop.cancelled() => Ok(Vec::new()),
        r = consumer.fetch(config.batch, config.block) => r,
    }
}

/// Acks with retries; if the queue stays down the entries stay pending and
/// are redelivered later (at-least-once), which the next steps tolerate.
async fn ack(
    consumer: &mut dyn QueueConsumer,
    ids: &[EntryId],
    config: &WorkerConfig,
    stop: &CancellationToken,
) {
    let mut backoff = Duration::ZERO;
    for _ in 0..5 {
        match consumer.ack(ids).await {
            Ok(()) => return,
            Err(e) => {
                backoff = next_backoff(backoff, config.max_backoff);
                tracing::warn!(error = %e, "ack failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}
