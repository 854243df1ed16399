//! The in-memory `DedupStore`: keys with values and expiry.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::Result;
use crate::ports::{DedupKey, DedupStore};

#[derive(Debug)]
struct State {
    keys: HashMap<DedupKey, (String, Instant)>,
    last_sweep: Instant,
}

/// Expiring idempotency keys; expired keys are swept at most once a second.
#[derive(Debug)]
pub struct MemoryDedupStore {
    state: Mutex<State>,
}

impl Default for MemoryDedupStore {
    fn default() -> Self {
        MemoryDedupStore {
            state: Mutex::new(State {
                keys: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }
}

impl MemoryDedupStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
        let st = &mut *st;
        super::every(&mut st.last_sweep, Duration::from_secs(1), || {
            st.keys.retain(|_, (_, exp)| *exp > now);
        });
        Ok(entries
            .iter()
            .map(|(k, v)| match st.keys.get(k) {
                Some((old, exp)) if *exp > now => Some(old.clone()),
                _ => {
                    st.keys.insert(*k, (v.clone(), now + ttl));
                    None
                }
            })
            .collect())
    }

    async fn put(&self, entries: &[(DedupKey, String)], ttl: Duration) -> Result<()> {
        let exp = Instant::now() + ttl;
        let mut st = self.state.lock();
        for (k, v) in entries {
            st.keys.insert(*k, (v.clone(), exp));
        }
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
