//! A short-lived cache of how 1:1 senders stand with their peers (blocks,
//! contacts), so the send path asks the [`ContactStore`] once per pair per
//! [`LogicConfig::relation_cache_ttl`](super::LogicConfig::relation_cache_ttl)
//! instead of once per send batch.
//!
//! A change made through this Logic (block, unblock, a contact accepted or
//! removed) drops the pair's entries at once; a change made through another
//! Logic instance is seen here within the TTL. The cache is bounded: when it
//! holds too many pairs it starts over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::id::UserId;
use crate::ports::Reach;

/// A (sender, peer) pair.
pub(super) type Pair = (UserId, UserId);

/// Pairs kept at most before the cache starts over.
const MAX_PAIRS: usize = 200_000;

#[derive(Debug, Default)]
pub(super) struct ReachCache {
    entries: Mutex<HashMap<Pair, (Reach, Instant)>>,
}

impl ReachCache {
    /// The cached answers for `pairs` still younger than `ttl`, and the pairs
    /// to ask the store for.
    pub(super) fn split(
        &self,
        pairs: Vec<Pair>,
        ttl: Duration,
    ) -> (HashMap<Pair, Reach>, Vec<Pair>) {
        let mut hit = HashMap::with_capacity(pairs.len());
        let mut miss = Vec::new();
        if ttl.is_zero() {
            return (hit, pairs);
        }
        let now = Instant::now();
        let entries = self.entries.lock();
        for p in pairs {
            match entries.get(&p) {
                Some((r, at)) if now.duration_since(*at) < ttl => {
                    hit.insert(p, *r);
                }
                _ => miss.push(p),
            }
        }
        (hit, miss)
    }

    /// Remembers answers from the store.
    pub(super) fn store(&self, answers: &[(Pair, Reach)], ttl: Duration) {
        if ttl.is_zero() || answers.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() + answers.len() > MAX_PAIRS {
            entries.clear();
        }
        for (p, r) in answers {
            entries.insert(*p, (*r, now));
        }
    }

    /// Forgets both directions of a pair (its relation changed here).
    pub(super) fn forget(&self, a: UserId, b: UserId) {
        let mut entries = self.entries.lock();
        entries.remove(&(a, b));
        entries.remove(&(b, a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_expire_and_changes_drop_both_directions() {
        let cache = ReachCache::default();
        let (a, b) = (UserId(1), UserId(2));
        let blocked = Reach {
            blocked: true,
            contacts: false,
        };
        let ttl = Duration::from_secs(60);
        cache.store(&[((a, b), blocked), ((b, a), Reach::default())], ttl);
        let (hit, miss) = cache.split(vec![(a, b), (b, a), (a, UserId(3))], ttl);
        assert_eq!(hit.get(&(a, b)), Some(&blocked));
        assert_eq!(miss, vec![(a, UserId(3))]);
        cache.forget(b, a);
        let (hit, miss) = cache.split(vec![(a, b), (b, a)], ttl);
        assert!(hit.is_empty());
        assert_eq!(miss.len(), 2);
        // A zero TTL caches nothing.
        cache.store(&[((a, b), blocked)], Duration::ZERO);
        let (hit, _) = cache.split(vec![(a, b)], Duration::ZERO);
        assert!(hit.is_empty());
        // An expired answer is asked again.
        cache.store(&[((a, b), blocked)], ttl);
        let (hit, miss) = cache.split(vec![(a, b)], Duration::from_nanos(1));
        assert!(hit.is_empty() && miss == vec![(a, b)]);
    }
}
