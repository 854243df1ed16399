//! `Throttle`: the shared counters of the front door — token buckets (login
//! attempts per address, registrations, WebSocket upgrades) and failure
//! backoff (failed logins per account).

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

/// The shape of a token bucket: `burst` tokens at most, refilled at
/// `per_second`. One request takes one token.
///
/// ```
/// use im_core::ports::Rate;
/// let r = Rate::per_minute(30, 10);
/// assert_eq!(r.burst, 10);
/// assert!((r.per_second - 0.5).abs() < 1e-9);
/// assert_eq!(r.refill_time(), std::time::Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens refilled per second (> 0).
    pub per_second: f64,
    /// Tokens saved at most (≥ 1): the burst allowed after a quiet time.
    pub burst: u32,
}

impl Rate {
    /// `n` per second, bursts of `burst`.
    pub fn per_second(n: f64, burst: u32) -> Rate {
        Rate {
            per_second: if n.is_finite() && n > 0.0 { n } else { 1e-9 },
            burst: burst.max(1),
        }
    }

    /// `n` per minute, bursts of `burst`.
    pub fn per_minute(n: u32, burst: u32) -> Rate {
        Rate::per_second(f64::from(n) / 60.0, burst)
    }

    /// `n` per hour, bursts of `burst`.
    pub fn per_hour(n: u32, burst: u32) -> Rate {
        Rate::per_second(f64::from(n) / 3600.0, burst)
    }

    /// How long one token takes to come back.
    pub fn refill_time(&self) -> Duration {
        Duration::from_secs_f64((1.0 / self.per_second).min(86_400.0 * 365.0))
    }
}

/// How a key is locked out after repeated failures: the first `free`
/// failures cost nothing; failure `free + k` locks the key for
/// `base × 2^(k-1)`, at most `max`. The count is forgotten `forget_after`
/// the last failure, or at once by [`Throttle::clear`] (a success).
///
/// ```
/// use std::time::Duration;
/// use im_core::ports::Backoff;
/// let b = Backoff { free: 3, base: Duration::from_secs(1), max: Duration::from_secs(60), forget_after: Duration::from_secs(3600) };
/// assert_eq!(b.lockout(3), Duration::ZERO);
/// assert_eq!(b.lockout(4), Duration::from_secs(1));
/// assert_eq!(b.lockout(6), Duration::from_secs(4));
/// assert_eq!(b.lockout(60), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures that lock nothing.
    pub free: u32,
    /// The first lockout.
    pub base: Duration,
    /// The longest lockout.
    pub max: Duration,
    /// How long a failure is remembered.
    pub forget_after: Duration,
}

impl Backoff {
    /// The lockout after `failures` failures in a row.
    pub fn lockout(&self, failures: u32) -> Duration {
        if failures <= self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free - 1).min(40);
        self.base
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// Counters shared by every instance that guards the front door, so that a
/// cluster's API and Connect nodes see one count per address and account.
///
/// Contract (checked by `testkit::throttle_suite`):
/// - `take`: a key never used (or quiet long enough) allows `rate.burst`
///   takes at once; the next is refused with `Some(wait)`, `0 < wait ≤
///   rate.refill_time()` (plus clock granularity); after `wait` a take is
///   allowed again. A refused take consumes nothing. Concurrent takes never
///   allow more than the bucket holds.
/// - `fail` counts a failure of a key and answers the lockout it starts
///   (`Backoff::lockout` of the count; `None` while within `free`); `lockout`
///   answers the time left of the current lockout (`None` when there is
///   none or it has passed); `clear` forgets the count.
/// - Keys are opaque strings; bucket keys and failure keys are separate
///   namespaces, and no key affects another.
/// - Time is the backend's (a shared backend uses one clock for all
///   instances).
#[async_trait]
pub trait Throttle: Send + Sync + 'static {
    /// Takes one token of `key`'s bucket: `None` when allowed, else how long
    /// until a token is back.
    async fn take(&self, key: &str, rate: Rate) -> Result<Option<Duration>>;

    /// Counts a failure of `key`; the lockout it starts, if any.
    async fn fail(&self, key: &str, backoff: Backoff) -> Result<Option<Duration>>;

    /// The time left of `key`'s lockout, if it is locked out.
    async fn lockout(&self, key: &str) -> Result<Option<Duration>>;

    /// Forgets `key`'s failures (after a success).
    async fn clear(&self, key: &str) -> Result<()>;
}
