//! The in-memory `Throttle`: counts of one process (a single node, or a
//! cluster whose nodes may each allow the full rate; use the Redis one to
//! share counts).
//!
//! Memory stays bounded under a flood of distinct keys (addresses,
//! usernames): every minute, and whenever the maps pass [`MAX_KEYS`], the
//! entries that hold nothing any more (full buckets, forgotten failures) go.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::Result;
use crate::ports::{Backoff, Rate, Throttle};

/// Keys held before an early sweep.
pub const MAX_KEYS: usize = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// When the bucket is full again (it can then be forgotten).
    full_at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Instant,
    forget_at: Instant,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<String, Bucket>,
    failures: HashMap<String, Failures>,
    swept: Instant,
}

impl State {
    fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.swept) < Duration::from_secs(60)
            && self.buckets.len() + self.failures.len() < MAX_KEYS
        {
            return;
        }
        self.buckets.retain(|_, b| b.full_at > now);
        self.failures.retain(|_, f| f.forget_at > now);
        self.swept = now;
    }
}

/// Token buckets and failure counts in memory.
#[derive(Debug)]
pub struct MemoryThrottle {
    state: Mutex<State>,
}

impl Default for MemoryThrottle {
    fn default() -> Self {
        MemoryThrottle {
            state: Mutex::new(State {
                buckets: HashMap::new(),
                failures: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }
}

impl MemoryThrottle {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Throttle for MemoryThrottle {
    async fn take(&self, key: &str, rate: Rate) -> Result<Option<Duration>> {
        let rate = Rate::per_second(rate.per_second, rate.burst);
        let burst = f64::from(rate.burst);
        let now = Instant::now();
        let mut state = self.state.lock();
        state.sweep(now);
        let bucket = state.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
            full_at: now,
        });
        let tokens = (bucket.tokens
            + now.duration_since(bucket.at).as_secs_f64() * rate.per_second)
            .min(burst);
        if tokens >= 1.0 {
            let left = tokens - 1.0;
            *bucket = Bucket {
                tokens: left,
                at: now,
                full_at: now + secs((burst - left) / rate.per_second),
            };
            Ok(None)
        } else {
            // Nothing taken: the bucket keeps its last refill time.
            Ok(Some(
                secs((1.0 - tokens) / rate.per_second).max(Duration::from_millis(1)),
            ))
        }
    }

    async fn fail(&self, key: &str, backoff: Backoff) -> Result<Option<Duration>> {
        let now = Instant::now();
        let mut state = self.state.lock();
        state.sweep(now);
        let entry = state.failures.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            locked_until: now,
            forget_at: now,
        });
        if entry.forget_at <= now {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        let lock = backoff.lockout(entry.count);
        entry.locked_until = now + lock;
        entry.forget_at = now + backoff.forget_after.max(lock);
        Ok((!lock.is_zero()).then_some(lock))
    }

    async fn lockout(&self, key: &str) -> Result<Option<Duration>> {
        let now = Instant::now();
        let state = self.state.lock();
        Ok(state
            .failures
            .get(key)
            .filter(|f| f.locked_until > now)
            .map(|f| f.locked_until - now))
    }

    async fn clear(&self, key: &str) -> Result<()> {
        self.state.lock().failures.remove(key);
        Ok(())
    }
}

/// A duration of `s` seconds, saturating (never panics on huge or odd values).
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.clamp(0.0, 86_400.0 * 365.0)).unwrap_or(Duration::MAX)
}
