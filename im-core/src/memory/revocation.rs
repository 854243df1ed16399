//! The in-memory `TokenRevocations` (lost with the process: a restarted
//! single node forgets its logouts; use the Redis one to keep them).
//!
//! Entries sit in a map and in an expiry-ordered set; every `revoke` sweeps
//! the entries whose expiry has passed from the front of the set, so memory
//! is bounded by the tokens revoked within one token lifetime. Nothing is
//! ever evicted early: that would silently un-revoke a token.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::Result;
use crate::id::now_ms;
use crate::ports::TokenRevocations;

#[derive(Debug, Default)]
struct State {
    until: HashMap<String, i64>,
    by_expiry: BTreeSet<(i64, String)>,
}

impl State {
    fn sweep(&mut self, now: i64) {
        while let Some((at, _)) = self.by_expiry.first() {
            if *at > now {
                break;
            }
            if let Some((_, id)) = self.by_expiry.pop_first() {
                self.until.remove(&id);
            }
        }
    }
}

/// Revoked token ids with their expiry, in memory.
#[derive(Debug, Default)]
pub struct MemoryTokenRevocations {
    state: Mutex<State>,
}

impl MemoryTokenRevocations {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revocations currently held (expired ones may linger until the next
    /// `revoke`).
    pub fn len(&self) -> usize {
        self.state.lock().until.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl TokenRevocations for MemoryTokenRevocations {
    async fn revoke(&self, token_id: &str, until_ms: i64) -> Result<()> {
        let now = now_ms();
        let mut s = self.state.lock();
        s.sweep(now);
        if until_ms <= now {
            return Ok(());
        }
        match s.until.get(token_id).copied() {
            Some(old) if old >= until_ms => {}
            old => {
                if let Some(old) = old {
                    s.by_expiry.remove(&(old, token_id.to_owned()));
                }
                s.until.insert(token_id.to_owned(), until_ms);
                s.by_expiry.insert((until_ms, token_id.to_owned()));
            }
        }
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        let now = now_ms();
        Ok(self
            .state
            .lock()
            .until
            .get(token_id)
            .is_some_and(|until| *until > now))
    }
}
