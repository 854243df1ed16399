//! A per-key token bucket (per-user send rate limit of a connect node).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// (tokens, last refill) per key, and the time of the last sweep.
type Buckets<K> = (HashMap<K, (f64, Instant)>, Instant);

/// Token buckets keyed by `K`: `rate` tokens per second, at most `burst` saved.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<Buckets<K>>,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    /// A limiter allowing `rate` per second with bursts of `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            rate: rate.max(0.0),
            burst: burst.max(1.0),
            buckets: Mutex::new((HashMap::new(), Instant::now())),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty.
    pub fn allow(&self, key: K) -> bool {
        let now = Instant::now();
        let mut guard = self.buckets.lock();
        let (buckets, last_sweep) = &mut *guard;
        // Forget full buckets now and then, so idle keys do not pile up.
        if now.duration_since(*last_sweep) > Duration::from_secs(60) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            *last_sweep = now;
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_per_key() {
        let l = RateLimiter::new(1.0, 5.0);
        assert_eq!((0..10).filter(|_| l.allow(1u64)).count(), 5);
        assert!(l.allow(2u64), "another key has its own bucket");
    }
}
