//! The worker loop shared by both groups: fetch or claim, process (while the
//! next batch is fetched), ack; with capped exponential backoff while the
//! queue or the step fails, and a clean stop (finish the batches in hand or
//! leave them un-acked; never ack unfinished work).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::ports::{partition_of, Delivery, EntryId, QueueConsumer};

use super::lease::LeaseHandle;
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
///
/// With `leases`, the loop reads only the partitions its keeper holds (and
/// never claims others' entries by idle time: a partition's pending entries
/// move with its lease, in order). Before every step it re-reads the grant;
/// entries of partitions no longer granted are left pending for their next
/// holder, never processed here.
pub async fn run_loop<F, Fut>(
    mut consumer: Box<dyn QueueConsumer>,
    config: &WorkerConfig,
    stop: CancellationToken,
    mut leases: Option<LeaseHandle>,
    mut step: F,
) where
    F: FnMut(Vec<Delivery>) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut last_claim = tokio::time::Instant::now();
    let mut backoff = Duration::ZERO;
    let mut next: Option<Result<Vec<Delivery>>> = None;
    let mut assigned: Option<Vec<u32>> = None;
    let claims = leases.is_none();
    loop {
        // Stopping: a batch already fetched is still finished (or abandoned
        // by its step); nothing new is fetched.
        let holding = matches!(&next, Some(Ok(b)) if !b.is_empty());
        if stop.is_cancelled() && !holding {
            break;
        }
        if let Some(h) = leases.as_mut() {
            let grant = h
                .grants
                .borrow_and_update()
                .usable(tokio::time::Instant::now())
                .to_vec();
            if assigned.as_ref() != Some(&grant) {
                if let Err(e) = consumer.assign(&grant).await {
                    backoff = next_backoff(backoff, config.max_backoff);
                    tracing::warn!(error = %e, ?backoff, "assigning partitions failed");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => continue,
                    }
                }
                h.active.send_replace(grant.clone());
                assigned = Some(grant);
            }
            if assigned.as_ref().is_some_and(|a| a.is_empty()) {
                // Nothing granted: a prefetched batch stays pending for the
                // partitions' next holders.
                next = None;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = h.grants.changed() => {}
                    _ = tokio::time::sleep(config.block) => {}
                }
                continue;
            }
        }
        let batch = match next.take() {
            Some(b) => b,
            None => fetch_next(consumer.as_mut(), config, &stop, &mut last_claim, claims).await,
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
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let batch = match (&leases, &assigned) {
            (Some(h), Some(parts)) => batch
                .into_iter()
                .filter(|d| {
                    parts
                        .binary_search(&partition_of(d.entry.shard_hash(), h.partitions))
                        .is_ok()
                })
                .collect(),
            _ => batch,
        };
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<EntryId> = batch.iter().map(|d| d.id.clone()).collect();
        let (outcome, prefetched) = futures::future::join(
            step(batch),
            fetch_next(consumer.as_mut(), config, &stop, &mut last_claim, claims),
        )
        .await;
        match outcome {
            Outcome::Done => ack(consumer.as_mut(), &ids, config, &stop).await,
            // The prefetched batch stays pending too: another consumer
            // claims it (never ack unfinished work).
            Outcome::Abandoned => break,
        }
        next = Some(prefetched);
    }
    if let Some(h) = leases {
        // Tell the keeper nothing is read any more: it may release all.
        h.active.send_replace(Vec::new());
    }
}

/// The next batch: entries left pending by others when a claim is due,
/// otherwise new entries.
async fn fetch_next(
    consumer: &mut dyn QueueConsumer,
    config: &WorkerConfig,
    stop: &CancellationToken,
    last_claim: &mut tokio::time::Instant,
    claims: bool,
) -> Result<Vec<Delivery>> {
    if stop.is_cancelled() {
        return Ok(Vec::new());
    }
    if claims && last_claim.elapsed() >= config.claim_every {
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
    let mut got = tokio::select! {
        _ = stop.cancelled() => return Ok(Vec::new()),
        r = consumer.fetch(config.batch, config.block) => r?,
    };
    if config.linger.is_zero() || got.is_empty() {
        return Ok(got);
    }
    // Linger: let more arrive, then read it in one go (one more read per
    // linger, not one per trickle). The entries already read are pending
    // under this consumer either way.
    if got.len() < config.batch {
        tokio::select! {
            _ = stop.cancelled() => return Ok(got),
            _ = tokio::time::sleep(config.linger) => {}
        }
        // 1 ms: the shortest block (0 would block forever on Redis).
        let more = tokio::select! {
            _ = stop.cancelled() => return Ok(got),
            r = consumer.fetch(config.batch - got.len(), Duration::from_millis(1)) => r,
        };
        match more {
            Ok(more) => got.extend(more),
            Err(e) => {
                tracing::debug!(error = %e, "a lingering fetch failed; going on with what was read");
            }
        }
    }
    Ok(got)
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use tokio::sync::Notify;

    use super::*;
    use crate::id::{ConversationId, MessageId, UserId};
    use crate::memory::MemoryQueue;
    use crate::model::{Entry, Envelope, Message, MessageKind, Target};
    use crate::ports::MessageQueue;

    /// Counts the non-empty batches its inner consumer has handed out.
    struct Counting {
        inner: Box<dyn QueueConsumer>,
        fetched: Arc<AtomicUsize>,
        changed: Arc<Notify>,
    }

    #[async_trait]
    impl QueueConsumer for Counting {
        async fn fetch(&mut self, max: usize, block: Duration) -> Result<Vec<Delivery>> {
            let batch = self.inner.fetch(max, block).await?;
            if !batch.is_empty() {
                self.fetched.fetch_add(1, Ordering::SeqCst);
                self.changed.notify_waiters();
            }
            Ok(batch)
        }
        async fn ack(&mut self, ids: &[EntryId]) -> Result<()> {
            self.inner.ack(ids).await
        }
        async fn claim_stale(&mut self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>> {
            self.inner.claim_stale(min_idle, max).await
        }
    }

    fn entry(seq: u64) -> Entry {
        let (a, b) = (UserId(1), UserId(2));
        Entry::Message(Envelope {
            message: Message {
                msg_id: MessageId(seq),
                conversation_id: ConversationId::Direct(a, b),
                seq,
                from: a,
                to: Target::User(b),
                kind: MessageKind::Text,
                body: serde_json::Value::String(format!("m{seq}")),
                client_msg_id: format!("c{seq}"),
                ts: 0,
                recalled: false,
                edited_at: None,
                mentions: None,
            },
            origin: None,
            audience: None,
        })
    }

    /// A lingering fetch gathers what arrives within the linger into one
    /// batch; one without linger hands out what it found at once.
    #[tokio::test]
    async fn a_lingering_fetch_gathers_a_trickle_into_one_batch() {
        let queue = Arc::new(MemoryQueue::new(100));
        queue.create_group("g").await.unwrap();
        let mut consumer = queue.consumer("g", "c").await.unwrap();
        let config = WorkerConfig {
            batch: 3,
            block: Duration::from_millis(500),
            linger: Duration::from_millis(300),
            ..WorkerConfig::default()
        };
        queue.publish(&[entry(1)]).await.unwrap();
        let trickle = {
            let queue = queue.clone();
            tokio::spawn(async move {
                for seq in 2..=4 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    queue.publish(&[entry(seq)]).await.unwrap();
                }
            })
        };
        let stop = CancellationToken::new();
        let batch = fetch(consumer.as_mut(), &config, &stop).await.unwrap();
        let seqs: Vec<u64> = batch
            .iter()
            .filter_map(|d| d.entry.message().map(|m| m.seq))
            .collect();
        assert_eq!(
            seqs,
            vec![1, 2, 3],
            "the batch fills up to its size, in order"
        );
        trickle.await.unwrap();
        let eager = WorkerConfig {
            linger: Duration::ZERO,
            ..config
        };
        let rest = fetch(consumer.as_mut(), &eager, &stop).await.unwrap();
        assert_eq!(
            rest.len(),
            1,
            "without linger a fetch returns what it found"
        );
    }

    /// The next batch is fetched while the step still works on the current
    /// one, and a batch fetched before a stop is still finished and acked.
    #[tokio::test]
    async fn the_next_batch_is_fetched_during_the_step_and_finished_on_stop() {
        let queue = MemoryQueue::new(100);
        queue.create_group("g").await.unwrap();
        queue.publish(&[entry(1), entry(2)]).await.unwrap();
        let fetched = Arc::new(AtomicUsize::new(0));
        let changed = Arc::new(Notify::new());
        let consumer = Box::new(Counting {
            inner: queue.consumer("g", "c").await.unwrap(),
            fetched: fetched.clone(),
            changed: changed.clone(),
        });
        let config = WorkerConfig {
            consumer: "c".into(),
            batch: 1,
            block: Duration::from_millis(20),
            claim_idle: Duration::from_secs(3600),
            claim_every: Duration::from_secs(3600),
            ..WorkerConfig::default()
        };
        let stop = CancellationToken::new();
        let steps = Arc::new(AtomicUsize::new(0));
        let prefetched_during_first = Arc::new(AtomicUsize::new(0));
        let (s, p, f, c, st) = (
            steps.clone(),
            prefetched_during_first.clone(),
            fetched.clone(),
            changed.clone(),
            stop.clone(),
        );
        let run = run_loop(consumer, &config, stop.clone(), None, move |_batch| {
            let (s, p, f, c, st) = (s.clone(), p.clone(), f.clone(), c.clone(), st.clone());
            async move {
                if s.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Wait (bounded) for the second batch to be fetched.
                    let waited = tokio::time::timeout(Duration::from_secs(2), async {
                        while f.load(Ordering::SeqCst) < 2 {
                            let notified = c.notified();
                            if f.load(Ordering::SeqCst) >= 2 {
                                break;
                            }
                            notified.await;
                        }
                    })
                    .await;
                    if waited.is_ok() {
                        p.store(1, Ordering::SeqCst);
                    }
                    st.cancel();
                }
                Outcome::Done
            }
        });
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the loop stops");
        assert_eq!(
            prefetched_during_first.load(Ordering::SeqCst),
            1,
            "the second batch was not fetched while the first was processed"
        );
        assert_eq!(
            steps.load(Ordering::SeqCst),
            2,
            "the batch fetched before the stop was not finished"
        );
        let stats = queue.stats("g").await.unwrap();
        assert_eq!(stats.pending, 0, "both batches are acked");
        assert_eq!(stats.lag, 0);
    }
}
