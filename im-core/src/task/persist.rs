//! The persist worker (consumer group `persist`): one idempotent batch append
//! plus the conversation-list update, then ack; while a store fails it retries
//! with capped exponential backoff and the entries stay pending. Events
//! (read, recalled, typing, …) are not persisted: they are acked as they come.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::model::Message;
use crate::ports::{ConversationStore, Delivery, MessageQueue, MessageStore, PartitionLeases};

use super::claim::{next_backoff, run_loop, Outcome};
use super::{WorkerConfig, PERSIST_GROUP};

/// Writes queued messages to the archive.
pub struct PersistWorker {
    queue: Arc<dyn MessageQueue>,
    store: Arc<dyn MessageStore>,
    conversations: Arc<dyn ConversationStore>,
    config: WorkerConfig,
    leases: Option<Arc<dyn PartitionLeases>>,
}

impl PersistWorker {
    /// A worker over the ports.
    pub fn new(
        queue: Arc<dyn MessageQueue>,
        store: Arc<dyn MessageStore>,
        conversations: Arc<dyn ConversationStore>,
        config: WorkerConfig,
    ) -> Self {
        PersistWorker {
            queue,
            store,
            conversations,
            config,
            leases: None,
        }
    }

    /// Shares the partitions with the other persist workers through `leases`
    /// (scope `persist`): each reads only its share, which keeps every read
    /// small (a read over all partitions costs Redis per partition), and a
    /// dead worker's partitions move within the lease TTL. Without leases the
    /// worker reads every partition and takes over others' entries by idle
    /// time ([`WorkerConfig::claim_idle`]); rows are idempotent either way.
    pub fn with_leases(mut self, leases: Arc<dyn PartitionLeases>) -> Self {
        self.leases = Some(leases);
        self
    }

    /// Runs until `stop` fires.
    pub async fn run(self, stop: CancellationToken) -> Result<()> {
        let consumer = self
            .queue
            .consumer(PERSIST_GROUP, &self.config.consumer)
            .await?;
        let mut keeping = super::lease::Keeping::start(
            self.leases.as_ref(),
            PERSIST_GROUP,
            &self.config.consumer,
            self.config.lease_ttl,
            self.queue.partitions(),
        );
        let this = Arc::new(self);
        let config = this.config.clone();
        let stop2 = stop.clone();
        run_loop(consumer, &config, stop, keeping.handle(), move |batch| {
            let this = this.clone();
            let stop = stop2.clone();
            async move {
                if this.persist(&batch, &stop).await {
                    Outcome::Done
                } else {
                    Outcome::Abandoned
                }
            }
        })
        .await;
        keeping.finish().await;
        Ok(())
    }

    /// Appends a batch, retrying until it succeeds (true) or `stop` fires (false).
    pub async fn persist(&self, batch: &[Delivery], stop: &CancellationToken) -> bool {
        let messages: Vec<Message> = batch
            .iter()
            .filter_map(|d| d.entry.message().cloned())
            .collect();
        if messages.is_empty() {
            return true;
        }
        let started = Instant::now();
        let mut backoff = Duration::ZERO;
        loop {
            let written = match self.store.append(&messages).await {
                Ok(inserted) => self
                    .conversations
                    .record(&messages)
                    .await
                    .map(|()| inserted),
                Err(e) => Err(e),
            };
            match written {
                Ok(inserted) => {
                    metrics::counter!("im_messages_persisted_total").increment(inserted);
                    metrics::histogram!("im_persist_batch_seconds")
                        .record(started.elapsed().as_secs_f64());
                    return true;
                }
                Err(e) => {
                    metrics::counter!("im_persist_failures_total").increment(1);
                    backoff = next_backoff(backoff, self.config.max_backoff);
                    tracing::warn!(error = %e, ?backoff, count = messages.len(), "persisting failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }
}
