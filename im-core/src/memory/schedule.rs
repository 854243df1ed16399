//! The in-memory `ScheduleStore` (held sends are lost with the process; use
//! the Redis one to survive restarts).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::Result;
use crate::id::{now_ms, MessageId, UserId};
use crate::ports::{DedupKey, ScheduleStore, ScheduledSend};

/// Expired keys are swept once the map has grown past this many entries (and
/// then whenever it has doubled since the last sweep).
const SWEEP_AT: usize = 100_000;

#[derive(Debug)]
struct State {
    items: HashMap<MessageId, ScheduledSend>,
    by_time: BTreeSet<(i64, MessageId)>,
    by_owner: HashMap<UserId, BTreeSet<(i64, MessageId)>>,
    keys: HashMap<DedupKey, (ScheduledSend, Instant)>,
    /// Size of `keys` at which expired keys are swept next.
    sweep_at: usize,
}

impl Default for State {
    fn default() -> Self {
        State {
            items: HashMap::new(),
            by_time: BTreeSet::new(),
            by_owner: HashMap::new(),
            keys: HashMap::new(),
            sweep_at: SWEEP_AT,
        }
    }
}

impl State {
    /// Removes a held send from every index; returns it if it was held.
    fn remove(&mut self, id: MessageId) -> Option<ScheduledSend> {
        let s = self.items.remove(&id)?;
        self.by_time.remove(&(s.deliver_at, id));
        if let Some(set) = self.by_owner.get_mut(&s.owner()) {
            set.remove(&(s.deliver_at, id));
            if set.is_empty() {
                self.by_owner.remove(&s.owner());
            }
        }
        Some(s)
    }
}

/// Scheduled sends in memory.
#[derive(Debug, Default)]
pub struct MemoryScheduleStore {
    state: Mutex<State>,
}

impl MemoryScheduleStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// How long a key is remembered: `key_ttl`, and at least until
/// `deliver_at + key_ttl` so a retry of a send still waiting is not held twice.
fn key_lifetime(deliver_at: i64, key_ttl: Duration) -> Duration {
    let wait = u64::try_from(deliver_at.saturating_sub(now_ms())).unwrap_or(0);
    key_ttl.saturating_add(Duration::from_millis(wait))
}

#[async_trait]
impl ScheduleStore for MemoryScheduleStore {
    async fn hold(&self, send: &ScheduledSend, key_ttl: Duration) -> Result<Option<ScheduledSend>> {
        let now = Instant::now();
        let lifetime = key_lifetime(send.deliver_at, key_ttl);
        let mut st = self.state.lock();
        if st.keys.len() >= st.sweep_at {
            st.keys.retain(|_, (_, exp)| *exp > now);
            st.sweep_at = (st.keys.len() * 2).max(SWEEP_AT);
        }
        let key = send.key();
        if let Some((earlier, exp)) = st.keys.get(&key) {
            if *exp > now {
                return Ok(Some(earlier.clone()));
            }
        }
        let expires = now.checked_add(lifetime).unwrap_or(now + key_ttl);
        st.keys.insert(key, (send.clone(), expires));
        let id = send.msg_id();
        // A msg_id held again (never by Logic, which assigns fresh ids)
        // replaces the earlier send rather than leaving stale index entries.
        st.remove(id);
        st.by_time.insert((send.deliver_at, id));
        st.by_owner
            .entry(send.owner())
            .or_default()
            .insert((send.deliver_at, id));
        st.items.insert(id, send.clone());
        Ok(None)
    }

    async fn due(&self, now: i64, max: usize) -> Result<Vec<ScheduledSend>> {
        let st = self.state.lock();
        Ok(st
            .by_time
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(max)
            .filter_map(|(_, id)| st.items.get(id).cloned())
            .collect())
    }

    async fn release(&self, ids: &[MessageId]) -> Result<()> {
        let mut st = self.state.lock();
        for id in ids {
            st.remove(*id);
        }
        Ok(())
    }

    async fn cancel(&self, owner: UserId, msg_id: MessageId) -> Result<bool> {
        let mut st = self.state.lock();
        match st.items.get(&msg_id) {
            Some(s) if s.owner() == owner => Ok(st.remove(msg_id).is_some()),
            _ => Ok(false),
        }
    }

    async fn pending(&self, owner: UserId) -> Result<Vec<ScheduledSend>> {
        let st = self.state.lock();
        Ok(st
            .by_owner
            .get(&owner)
            .into_iter()
            .flatten()
            .filter_map(|(_, id)| st.items.get(id).cloned())
            .collect())
    }
}
