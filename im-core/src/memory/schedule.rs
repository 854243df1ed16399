//! The in-memory `ScheduleStore` (held sends are lost with the process; use
//! the Redis one to survive restarts).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::Result;
use crate::id::{MessageId, UserId};
use crate::ports::{DedupKey, ScheduleStore, ScheduledSend};

#[derive(Debug, Default)]
struct State {
    items: HashMap<MessageId, ScheduledSend>,
    by_time: BTreeSet<(i64, MessageId)>,
    keys: HashMap<DedupKey, (ScheduledSend, Instant)>,
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

#[async_trait]
impl ScheduleStore for MemoryScheduleStore {
    async fn hold(&self, send: &ScheduledSend, key_ttl: Duration) -> Result<Option<ScheduledSend>> {
        let now = Instant::now();
        let mut st = self.state.lock();
        if st.keys.len() > 100_000 {
            st.keys.retain(|_, (_, exp)| *exp > now);
        }
        if let Some((earlier, exp)) = st.keys.get(&send.key()) {
            if *exp > now {
                return Ok(Some(earlier.clone()));
            }
        }
        st.keys.insert(send.key(), (send.clone(), now + key_ttl));
        st.by_time.insert((send.deliver_at, send.msg_id()));
        st.items.insert(send.msg_id(), send.clone());
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
            if let Some(s) = st.items.remove(id) {
                st.by_time.remove(&(s.deliver_at, *id));
            }
        }
        Ok(())
    }

    async fn cancel(&self, owner: UserId, msg_id: MessageId) -> Result<bool> {
        let mut st = self.state.lock();
        match st.items.get(&msg_id) {
            Some(s) if s.owner() == owner => {
                let at = s.deliver_at;
                st.items.remove(&msg_id);
                st.by_time.remove(&(at, msg_id));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn pending(&self, owner: UserId) -> Result<Vec<ScheduledSend>> {
        let st = self.state.lock();
        Ok(st
            .by_time
            .iter()
            .filter_map(|(_, id)| st.items.get(id))
            .filter(|s| s.owner() == owner)
            .cloned()
            .collect())
    }
}
