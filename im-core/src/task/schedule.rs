//! The scheduler: moves due scheduled sends into the normal send path.
//!
//! Every tick it asks the [`ScheduleStore`] for due sends and admits them
//! through the [`SendPipeline`] under their original idempotency key, so a
//! send admitted twice (two schedulers, or a crash between admit and
//! release) is enqueued once. It takes its seq then, and the push and persist
//! groups handle it like any message.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::id::now_ms;
use crate::ports::{Admission, ScheduleStore, SendPipeline};

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often due sends are looked for (delivery lags `deliver_at` by at
    /// most about this much).
    pub tick: Duration,
    /// Most sends admitted per tick.
    pub batch: usize,
    /// How long the idempotency key of a delivered send is remembered.
    pub dedup_ttl: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            tick: Duration::from_millis(100),
            batch: 512,
            dedup_ttl: Duration::from_secs(600),
        }
    }
}

/// Admits due scheduled sends.
pub struct Scheduler {
    schedules: Arc<dyn ScheduleStore>,
    pipeline: Arc<dyn SendPipeline>,
    config: SchedulerConfig,
}

impl Scheduler {
    /// A scheduler over the ports.
    pub fn new(
        schedules: Arc<dyn ScheduleStore>,
        pipeline: Arc<dyn SendPipeline>,
        config: SchedulerConfig,
    ) -> Self {
        Scheduler {
            schedules,
            pipeline,
            config,
        }
    }

    /// Runs until `stop` fires.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Drain everything due before waiting for the next tick.
            loop {
                match self.deliver_due().await {
                    Ok(n) if n >= self.config.batch => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "delivering scheduled sends failed; retrying");
                        break;
                    }
                }
            }
        }
    }

    /// Admits the sends due now; returns how many were due.
    pub async fn deliver_due(&self) -> crate::Result<usize> {
        let now = now_ms();
        let due = self.schedules.due(now, self.config.batch).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let n = due.len();
        let ids: Vec<_> = due.iter().map(|s| s.msg_id()).collect();
        let admissions: Vec<Admission> = due
            .into_iter()
            .map(|s| {
                let key = s.key();
                let mut envelope = s.envelope;
                envelope.message.ts = now;
                Admission { key, envelope }
            })
            .collect();
        let results = self
            .pipeline
            .admit(admissions, self.config.dedup_ttl)
            .await?;
        let done: Vec<_> = ids
            .into_iter()
            .zip(results)
            .filter_map(|(id, r)| match r {
                Ok(_) => Some(id),
                Err(e) => {
                    tracing::warn!(error = %e, msg_id = %id, "a scheduled send was not admitted; retrying");
                    None
                }
            })
            .collect();
        metrics::counter!("im_scheduled_delivered_total").increment(done.len() as u64);
        self.schedules.release(&done).await?;
        Ok(n)
    }
}
