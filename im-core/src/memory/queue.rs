//! The in-memory `MessageQueue`: one ordered log per partition, consumer
//! groups with pending lists per partition.
//!
//! Entry ids are `"<partition>/<offset>"`. A consumer reads its assigned
//! partitions (all by default), starting each fetch at the partition after
//! the one it stopped at, so no partition starves another.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::model::Entry;
use crate::ports::{
    partition_of, Assignment, Delivery, EntryId, GroupStats, MessageQueue, QueueConsumer,
    DEFAULT_PARTITIONS,
};

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

/// One partition's log.
#[derive(Debug, Default)]
struct Log {
    base: u64,
    entries: VecDeque<Arc<Entry>>,
    groups: HashMap<String, GroupState>,
}

impl Log {
    fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    fn get(&self, id: u64) -> Option<&Arc<Entry>> {
        id.checked_sub(self.base)
            .and_then(|i| self.entries.get(i as usize))
    }

    /// Drops entries every group has acked; returns how many.
    fn trim(&mut self) -> usize {
        if self.groups.is_empty() {
            return 0;
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
        let mut dropped = 0;
        while self.base < floor && !self.entries.is_empty() {
            self.entries.pop_front();
            self.base += 1;
            dropped += 1;
        }
        dropped
    }
}

#[derive(Debug)]
struct State {
    logs: Vec<Log>,
    /// Entries retained over all partitions.
    retained: usize,
}

impl State {
    fn trim(&mut self) {
        let dropped: usize = self.logs.iter_mut().map(Log::trim).sum();
        self.retained -= dropped;
    }
}

/// An in-memory queue holding at most `capacity` un-acked entries; `publish`
/// fails with `unavailable` beyond that (back-pressure, never loss).
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    capacity: usize,
    partitions: u32,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        MemoryQueue::new(1_000_000)
    }
}

impl MemoryQueue {
    /// A queue of [`DEFAULT_PARTITIONS`] partitions retaining at most
    /// `capacity` entries not yet acked by every group.
    pub fn new(capacity: usize) -> Self {
        MemoryQueue::with_partitions(capacity, DEFAULT_PARTITIONS)
    }

    /// A queue of `partitions` partitions (at least 1).
    pub fn with_partitions(capacity: usize, partitions: u32) -> Self {
        let partitions = partitions.max(1);
        MemoryQueue {
            state: Arc::new(Mutex::new(State {
                logs: (0..partitions).map(|_| Log::default()).collect(),
                retained: 0,
            })),
            notify: Arc::new(Notify::new()),
            capacity,
            partitions,
        }
    }

    /// Entries currently retained.
    pub fn len(&self) -> usize {
        self.state.lock().retained
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parse_id(id: &EntryId, partitions: u32) -> Result<(u32, u64)> {
    id.0.split_once('/')
        .and_then(|(p, o)| {
            let p: u32 = p.parse().ok()?;
            (p < partitions).then_some((p, o.parse().ok()?))
        })
        .ok_or_else(|| Error::InvalidArgument(format!("not an entry id of this queue: {}", id.0)))
}

#[async_trait]
impl MessageQueue for MemoryQueue {
    async fn publish(&self, batch: &[Entry]) -> Result<()> {
        {
            let mut st = self.state.lock();
            if st.retained + batch.len() > self.capacity {
                st.trim();
                if st.retained + batch.len() > self.capacity {
                    return Err(Error::unavailable_msg(format!(
                        "queue full ({} entries not yet processed); retry later",
                        st.retained
                    )));
                }
            }
            for entry in batch {
                let p = partition_of(entry.shard_hash(), self.partitions) as usize;
                if let Some(log) = st.logs.get_mut(p) {
                    log.entries.push_back(Arc::new(entry.clone()));
                }
            }
            st.retained += batch.len();
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn create_group(&self, group: &str) -> Result<()> {
        let mut st = self.state.lock();
        for log in &mut st.logs {
            let base = log.base;
            log.groups
                .entry(group.to_owned())
                .or_insert_with(|| GroupState {
                    next: base,
                    pending: BTreeMap::new(),
                });
        }
        Ok(())
    }

    async fn consumer(&self, group: &str, consumer: &str) -> Result<Box<dyn QueueConsumer>> {
        self.create_group(group).await?;
        Ok(Box::new(MemoryConsumer {
            queue: self.clone(),
            group: group.to_owned(),
            name: consumer.to_owned(),
            assigned: Assignment::all(self.partitions),
            takeover: BTreeSet::new(),
            cursor: 0,
        }))
    }

    async fn stats(&self, group: &str) -> Result<GroupStats> {
        let st = self.state.lock();
        let mut stats = GroupStats::default();
        for log in &st.logs {
            let g = log
                .groups
                .get(group)
                .ok_or_else(|| Error::NotFound(format!("no consumer group {group}")))?;
            stats.pending += g.pending.len() as u64;
            stats.lag += log.end().saturating_sub(g.next);
        }
        Ok(stats)
    }

    fn partitions(&self) -> u32 {
        self.partitions
    }
}

struct MemoryConsumer {
    queue: MemoryQueue,
    group: String,
    name: String,
    assigned: Assignment,
    /// Newly assigned partitions whose pending entries are handed out first.
    takeover: BTreeSet<u32>,
    /// Where the next fetch starts within `assigned`.
    cursor: usize,
}

impl MemoryConsumer {
    /// Takes over what other consumers left pending in `takeover` partitions.
    fn take_over(&mut self, max: usize, out: &mut Vec<Delivery>) {
        let mut st = self.queue.state.lock();
        let now = Instant::now();
        let parts: Vec<u32> = self.takeover.iter().copied().collect();
        for p in parts {
            let Some(log) = st.logs.get_mut(p as usize) else {
                self.takeover.remove(&p);
                continue;
            };
            let entries: Vec<(u64, Option<Arc<Entry>>)> = match log.groups.get(&self.group) {
                Some(g) => g
                    .pending
                    .keys()
                    .map(|id| (*id, log.get(*id).cloned()))
                    .collect(),
                None => Vec::new(),
            };
            let Some(g) = log.groups.get_mut(&self.group) else {
                self.takeover.remove(&p);
                continue;
            };
            let mut done = true;
            for (id, entry) in entries {
                if out.len() >= max {
                    done = false;
                    break;
                }
                let Some(pend) = g.pending.get_mut(&id) else {
                    continue;
                };
                let Some(entry) = entry else {
                    g.pending.remove(&id);
                    continue;
                };
                if pend.consumer != self.name {
                    pend.consumer = self.name.clone();
                    pend.count += 1;
                }
                pend.since = now;
                out.push(Delivery {
                    id: EntryId(format!("{p}/{id}")),
                    entry: (*entry).clone(),
                    delivery_count: pend.count,
                });
            }
            if done {
                self.takeover.remove(&p);
            }
        }
    }

    fn take_new(&mut self, max: usize, out: &mut Vec<Delivery>) {
        let mut st = self.queue.state.lock();
        let now = Instant::now();
        let n = self.assigned.partitions().len();
        let first = self.cursor;
        for k in 0..n {
            if out.len() >= max {
                break;
            }
            let i = (first + k) % n;
            let p = self.assigned.partitions()[i];
            if self.takeover.contains(&p) {
                continue;
            }
            let Some(log) = st.logs.get_mut(p as usize) else {
                continue;
            };
            let end = log.end();
            let Some(start) = log.groups.get(&self.group).map(|g| g.next) else {
                continue;
            };
            let stop = end.min(start + (max - out.len()) as u64);
            let mut taken = Vec::with_capacity((stop - start) as usize);
            for id in start..stop {
                if let Some(entry) = log.get(id) {
                    taken.push((id, (**entry).clone()));
                }
            }
            if let Some(g) = log.groups.get_mut(&self.group) {
                g.next = stop;
                for (id, entry) in taken {
                    g.pending.insert(
                        id,
                        Pending {
                            consumer: self.name.clone(),
                            since: now,
                            count: 1,
                        },
                    );
                    out.push(Delivery {
                        id: EntryId(format!("{p}/{id}")),
                        entry,
                        delivery_count: 1,
                    });
                }
            }
            self.cursor = (i + 1) % n;
        }
    }
}

#[async_trait]
impl QueueConsumer for MemoryConsumer {
    async fn fetch(&mut self, max: usize, block: Duration) -> Result<Vec<Delivery>> {
        let max = max.max(1);
        let deadline = tokio::time::Instant::now() + block;
        let notify = self.queue.notify.clone();
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut got = Vec::new();
            if !self.takeover.is_empty() {
                self.take_over(max, &mut got);
            }
            if got.is_empty() {
                self.take_new(max, &mut got);
            }
            if !got.is_empty() {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&mut self, ids: &[EntryId]) -> Result<()> {
        let parts = self.queue.partitions;
        let parsed = ids
            .iter()
            .map(|id| parse_id(id, parts))
            .collect::<Result<Vec<_>>>()?;
        let mut st = self.queue.state.lock();
        for (p, id) in parsed {
            if let Some(g) = st
                .logs
                .get_mut(p as usize)
                .and_then(|l| l.groups.get_mut(&self.group))
            {
                g.pending.remove(&id);
            }
        }
        st.trim();
        Ok(())
    }

    async fn claim_stale(&mut self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>> {
        let mut st = self.queue.state.lock();
        let now = Instant::now();
        let mut out = Vec::new();
        for &p in self.assigned.partitions() {
            let Some(log) = st.logs.get_mut(p as usize) else {
                continue;
            };
            let stale: Vec<u64> = match log.groups.get(&self.group) {
                Some(g) => g
                    .pending
                    .iter()
                    .filter(|(_, pe)| now.duration_since(pe.since) >= min_idle)
                    .map(|(id, _)| *id)
                    .take(max - out.len())
                    .collect(),
                None => continue,
            };
            for id in stale {
                let entry = log.get(id).cloned();
                let Some(g) = log.groups.get_mut(&self.group) else {
                    break;
                };
                let Some(pe) = g.pending.get_mut(&id) else {
                    continue;
                };
                match entry {
                    Some(entry) => {
                        pe.consumer = self.name.clone();
                        pe.since = now;
                        pe.count += 1;
                        out.push(Delivery {
                            id: EntryId(format!("{p}/{id}")),
                            entry: (*entry).clone(),
                            delivery_count: pe.count,
                        });
                    }
                    None => {
                        g.pending.remove(&id);
                    }
                }
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    async fn assign(&mut self, partitions: &[u32]) -> Result<()> {
        let newly = self.assigned.reassign(partitions, self.queue.partitions)?;
        let assigned = &self.assigned;
        self.takeover.retain(|p| assigned.contains(*p));
        self.takeover.extend(newly);
        self.cursor = 0;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testkit::{random_direct, sample_envelope};

    #[tokio::test]
    async fn a_consumer_reads_every_partition_in_turn() {
        let q = MemoryQueue::new(100);
        q.create_group("g").await.unwrap();
        let (_, _, c) = random_direct();
        q.publish(&[sample_envelope(c, 1).into(), sample_envelope(c, 2).into()])
            .await
            .unwrap();
        let mut con = q.consumer("g", "c").await.unwrap();
        let a = con.fetch(1, Duration::from_millis(10)).await.unwrap();
        let b = con.fetch(1, Duration::from_millis(10)).await.unwrap();
        assert_eq!((a.len(), b.len()), (1, 1));
    }
}
