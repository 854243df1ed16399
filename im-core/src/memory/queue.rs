//! The in-memory `MessageQueue`: one log, consumer groups with pending lists.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::model::Entry;
use crate::ports::{Delivery, EntryId, GroupStats, MessageQueue, QueueConsumer};

#[derive(Debug)]
struct Pending {
    consumer: String,
    since: Instant,
    count: u32,
}

#[derive(Debug, Default)]
struct GroupState {
    next: u64,
    pending: BTreeMap<u64, Pending>,
}

#[derive(Debug, Default)]
struct State {
    base: u64,
    entries: VecDeque<Arc<Entry>>,
    groups: HashMap<String, GroupState>,
}

impl State {
    fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    fn get(&self, id: u64) -> Option<&Arc<Entry>> {
        id.checked_sub(self.base)
            .and_then(|i| self.entries.get(i as usize))
    }

    /// Drops entries every group has acked.
    fn trim(&mut self) {
        if self.groups.is_empty() {
            return;
        }
        let floor = self
            .groups
            .values()
            .map(|g| {
                g.pending
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(g.next)
                    .min(g.next)
            })
            .min()
            .unwrap_or(self.base);
        while self.base < floor && !self.entries.is_empty() {
            self.entries.pop_front();
            self.base += 1;
        }
    }
}

/// An in-memory queue holding at most `capacity` un-acked entries; `publish`
/// fails with `unavailable` beyond that (back-pressure, never loss).
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    capacity: usize,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        MemoryQueue::new(1_000_000)
    }
}

impl MemoryQueue {
    /// A queue retaining at most `capacity` entries not yet acked by every group.
    pub fn new(capacity: usize) -> Self {
        MemoryQueue {
            state: Arc::new(Mutex::new(State::default())),
            notify: Arc::new(Notify::new()),
            capacity,
        }
    }

    /// Entries currently retained.
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parse_id(id: &EntryId) -> Result<u64> {
    id.0.parse()
        .map_err(|_| Error::InvalidArgument(format!("not an entry id of this queue: {}", id.0)))
}

#[async_trait]
impl MessageQueue for MemoryQueue {
    async fn publish(&self, batch: &[Entry]) -> Result<()> {
        {
            let mut st = self.state.lock();
            if st.entries.len() + batch.len() > self.capacity {
                st.trim();
                if st.entries.len() + batch.len() > self.capacity {
                    return Err(Error::unavailable_msg(format!(
                        "queue full ({} entries not yet processed); retry later",
                        st.entries.len()
                    )));
                }
            }
            st.entries.extend(batch.iter().cloned().map(Arc::new));
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn create_group(&self, group: &str) -> Result<()> {
        let mut st = self.state.lock();
        let base = st.base;
        st.groups
            .entry(group.to_owned())
            .or_insert_with(|| GroupState {
                next: base,
                pending: BTreeMap::new(),
            });
        Ok(())
    }

    async fn consumer(&self, group: &str, consumer: &str) -> Result<Box<dyn QueueConsumer>> {
        self.create_group(group).await?;
        Ok(Box::new(MemoryConsumer {
            queue: self.clone(),
            group: group.to_owned(),
            name: consumer.to_owned(),
        }))
    }

    async fn stats(&self, group: &str) -> Result<GroupStats> {
        let st = self.state.lock();
        let g = st
            .groups
            .get(group)
            .ok_or_else(|| Error::NotFound(format!("no consumer group {group}")))?;
        Ok(GroupStats {
            pending: g.pending.len() as u64,
            lag: st.end().saturating_sub(g.next),
        })
    }
}

struct MemoryConsumer {
    queue: MemoryQueue,
    group: String,
    name: String,
}

impl MemoryConsumer {
    fn take_new(&self, max: usize) -> Vec<Delivery> {
        let mut st = self.queue.state.lock();
        let end = st.end();
        let Some(g) = st.groups.get(&self.group) else {
            return Vec::new();
        };
        let start = g.next;
        let stop = end.min(start + max as u64);
        let now = Instant::now();
        let mut out = Vec::with_capacity((stop - start) as usize);
        for id in start..stop {
            if let Some(env) = st.get(id) {
                out.push(Delivery {
                    id: EntryId(id.to_string()),
                    entry: (**env).clone(),
                    delivery_count: 1,
                });
            }
        }
        if let Some(g) = st.groups.get_mut(&self.group) {
            g.next = stop;
            for id in start..stop {
                g.pending.insert(
                    id,
                    Pending {
                        consumer: self.name.clone(),
                        since: now,
                        count: 1,
                    },
                );
            }
        }
        out
    }
}

#[async_trait]
impl QueueConsumer for MemoryConsumer {
    async fn fetch(&mut self, max: usize, block: Duration) -> Result<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.take_new(max.max(1));
            if !got.is_empty() {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&mut self, ids: &[EntryId]) -> Result<()> {
        let parsed = ids.iter().map(parse_id).collect::<Result<Vec<_>>>()?;
        let mut st = self.queue.state.lock();
        if let Some(g) = st.groups.get_mut(&self.group) {
            for id in parsed {
                g.pending.remove(&id);
            }
        }
        st.trim();
        Ok(())
    }

    async fn claim_stale(&mut self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>> {
        let mut st = self.queue.state.lock();
        let now = Instant::now();
        let stale: Vec<u64> = match st.groups.get(&self.group) {
            Some(g) => g
                .pending
                .iter()
                .filter(|(_, p)| now.duration_since(p.since) >= min_idle)
                .map(|(id, _)| *id)
                .take(max)
                .collect(),
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::with_capacity(stale.len());
        for id in stale {
            let env = st.get(id).cloned();
            let Some(g) = st.groups.get_mut(&self.group) else {
                break;
            };
            let Some(p) = g.pending.get_mut(&id) else {
                continue;
            };
            match env {
                Some(env) => {
                    p.consumer = self.name.clone();
                    p.since = now;
                    p.count += 1;
                    out.push(Delivery {
                        id: EntryId(id.to_string()),
                        entry: (*env).clone(),
                        delivery_count: p.count,
                    });
                }
                None => {
                    g.pending.remove(&id);
                }
            }
        }
        Ok(out)
    }
}
