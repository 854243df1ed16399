//! The in-memory `DedupStore`: keys with values and expiry, bounded.
//!
//! Keys sit in a map and, in claim order, in a FIFO of (key, expiry). Expired
//! keys are swept from the front of the FIFO (cost proportional to what
//! expires, not to what is held), and beyond `max_keys` the oldest keys are
//! evicted first, so memory stays bounded whatever the send rate.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::Result;
use crate::ports::{DedupKey, DedupStore};

#[derive(Debug)]
struct State {
    keys: HashMap<DedupKey, (String, Instant)>,
    order: VecDeque<(DedupKey, Instant)>,
}

impl State {
    fn insert(&mut self, key: DedupKey, value: String, exp: Instant) {
        self.keys.insert(key, (value, exp));
        self.order.push_back((key, exp));
    }

    /// Drops expired keys from the front, then the oldest beyond `max`.
    fn sweep(&mut self, now: Instant, max: usize) {
        while let Some(&(key, exp)) = self.order.front() {
            let over = self.keys.len() > max;
            if exp > now && !over {
                break;
            }
            self.order.pop_front();
            // Only remove the key if this FIFO entry is its current one (a
            // `put` re-queued it with a later expiry).
            if self.keys.get(&key).is_some_and(|(_, e)| *e == exp) {
                self.keys.remove(&key);
            }
        }
        // Stale FIFO entries of re-put keys must not pile up either.
        if self.order.len() > 2 * max.max(self.keys.len()) + 1024 {
            let keys = &self.keys;
            self.order
                .retain(|(k, e)| keys.get(k).is_some_and(|(_, cur)| cur == e));
        }
    }
}

/// Expiring idempotency keys, at most `max_keys` of them (oldest evicted first).
#[derive(Debug)]
pub struct MemoryDedupStore {
    state: Mutex<State>,
    max_keys: usize,
}

impl Default for MemoryDedupStore {
    fn default() -> Self {
        MemoryDedupStore::with_capacity(1_000_000)
    }
}

impl MemoryDedupStore {
    /// An empty store holding at most a million keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store holding at most `max_keys` keys: a retry arriving after
    /// its key was evicted is accepted as a new message, so size this above
    /// (send rate × the retry window you want to cover).
    pub fn with_capacity(max_keys: usize) -> Self {
        MemoryDedupStore {
            state: Mutex::new(State {
                keys: HashMap::new(),
                order: VecDeque::new(),
            }),
            max_keys: max_keys.max(1),
        }
    }

    /// Keys currently held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.state.lock().keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl DedupStore for MemoryDedupStore {
    async fn claim(
        &self,
        entries: &[(DedupKey, String)],
        ttl: Duration,
    ) -> Result<Vec<Option<String>>> {
        let now = Instant::now();
        let mut st = self.state.lock();
        let out = entries
            .iter()
            .map(|(k, v)| match st.keys.get(k) {
                Some((old, exp)) if *exp > now => Some(old.clone()),
                _ => {
                    st.insert(*k, v.clone(), now + ttl);
                    None
                }
            })
            .collect();
        st.sweep(now, self.max_keys);
        Ok(out)
    }

    async fn put(&self, entries: &[(DedupKey, String)], ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let exp = now + ttl;
        let mut st = self.state.lock();
        for (k, v) in entries {
            st.insert(*k, v.clone(), exp);
        }
        st.sweep(now, self.max_keys);
        Ok(())
    }

    async fn release(&self, keys: &[DedupKey]) -> Result<()> {
        let mut st = self.state.lock();
        for k in keys {
            st.keys.remove(k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_oldest_first() {
        let d = MemoryDedupStore::with_capacity(100);
        let ttl = Duration::from_secs(600);
        for i in 0..1000u128 {
            d.claim(&[(DedupKey(i), format!("v{i}"))], ttl)
                .await
                .unwrap();
            d.put(&[(DedupKey(i), format!("ack{i}"))], ttl)
                .await
                .unwrap();
        }
        assert!(d.len() <= 100, "{} keys held", d.len());
        assert!(d.state.lock().order.len() <= 2 * 100 + 1024);
        // The newest keys survive, the oldest were evicted.
        assert_eq!(
            d.claim(&[(DedupKey(999), "x".into())], ttl).await.unwrap(),
            vec![Some("ack999".into())]
        );
        assert_eq!(
            d.claim(&[(DedupKey(0), "x".into())], ttl).await.unwrap(),
            vec![None]
        );
    }
}
