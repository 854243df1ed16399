//! `RedisQueue`: the message queue on N Redis Stream shards with consumer
//! groups (`XADD` / `XREADGROUP` / `XACK` / `XAUTOCLAIM`), and its trimmer.
//!
//! Entry ids are `"<shard>/<stream id>"`, e.g. `"2/1700000000000-0"`. An entry
//! holds field `e`, the JSON of an [`Entry`] (untagged: a message envelope
//! `{"message": …}` or an event `{"event": …}`), and, when the send pipeline
//! wrote it, field `s` (the seq of a message entry, which overrides the
//! JSON's). Entries are sharded by [`Entry::shard_hash`], so the entries of one
//! conversation keep their order. An entry that does not decode is copied to
//! the shard's dead-letter stream, acked and skipped, so it never wedges a
//! consumer.
//!
//! Trimming never uses `MAXLEN`: [`RedisQueue::trim`] keeps, per shard, every
//! entry some group still needs (its oldest pending entry, or anything after
//! its last-delivered id) and trims with `MINID` below that. It runs in the
//! background every [`RedisConfig::trim_every`](super::RedisConfig) published
//! entries, and may be called periodically. A shard without groups is not
//! trimmed (a group created later starts from the retained log).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use im_core::model::{Entry, Envelope, EventEnvelope};
use im_core::ports::{Delivery, EntryId, GroupStats, MessageQueue, QueueConsumer};
use im_core::{Error, Result};
use redis::aio::ConnectionManager;
use redis::Value;

use super::{as_items, as_map, as_string, as_u64, bad_reply, map_err, RedisConn};

/// The Redis Streams message queue (cheap to clone).
#[derive(Clone)]
pub struct RedisQueue {
    inner: Arc<QueueInner>,
}

struct QueueInner {
    conn: RedisConn,
    published: AtomicU64,
    trimming: AtomicBool,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("conn", &self.inner.conn)
            .finish_non_exhaustive()
    }
}

/// A stream id `ms-seq`, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct StreamId(u64, u64);

impl StreamId {
    fn parse(s: &str) -> Option<StreamId> {
        let (a, b) = s.split_once('-')?;
        Some(StreamId(a.parse().ok()?, b.parse().ok()?))
    }
}

impl StreamId {
    /// The smallest id after this one.
    fn next(self) -> StreamId {
        match self.1.checked_add(1) {
            Some(seq) => StreamId(self.0, seq),
            None => StreamId(self.0.saturating_add(1), 0),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// Splits an entry id into shard and stream id.
fn parse_entry(id: &EntryId, shards: u32) -> Result<(u32, &str)> {
    id.0.split_once('/')
        .and_then(|(s, rest)| {
            let shard: u32 = s.parse().ok()?;
            (shard < shards && StreamId::parse(rest).is_some()).then_some((shard, rest))
        })
        .ok_or_else(|| Error::InvalidArgument(format!("not a Redis queue entry id: {:?}", id.0)))
}

/// Encodes a message envelope as the `e` field (the JSON of `Entry::Message`:
/// the untagged entry serializes exactly as its envelope).
pub(crate) fn encode(envelope: &Envelope) -> Result<Vec<u8>> {
    serde_json::to_vec(envelope)
        .map_err(|e| Error::Internal(format!("envelope does not serialize: {e}")))
}

/// Encodes a queue entry as the `e` field.
pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>> {
    match entry {
        Entry::Message(e) => encode(e),
        Entry::Event(e) => serde_json::to_vec(e)
            .map_err(|e| Error::Internal(format!("event does not serialize: {e}"))),
    }
}

/// Decodes the JSON of an untagged [`Entry`]. Messages are by far the most
/// common entries: they are decoded directly (no untagged buffering), and an
/// event is tried only when the JSON is not an envelope.
fn decode_json(json: &[u8]) -> std::result::Result<Entry, String> {
    match serde_json::from_slice::<Envelope>(json) {
        Ok(env) => Ok(Entry::Message(env)),
        Err(as_message) => match serde_json::from_slice::<EventEnvelope>(json) {
            Ok(ev) => Ok(Entry::Event(ev)),
            Err(as_event) => Err(format!(
                "neither a message ({as_message}) nor an event ({as_event})"
            )),
        },
    }
}

/// Decodes the fields of one entry (`e` = entry JSON, optional `s` = the seq
/// of a message entry).
fn decode(fields: &Value) -> std::result::Result<Entry, String> {
    let map = as_map(fields);
    let body = match map.get("e") {
        Some(Value::BulkString(b)) => b.as_slice(),
        _ => return Err("no `e` field".to_owned()),
    };
    let mut entry = decode_json(body)?;
    if let Some(s) = map.get("s") {
        let seq = as_u64(s).ok_or_else(|| format!("bad `s` field {s:?}"))?;
        match &mut entry {
            Entry::Message(env) => env.message.seq = seq,
            Entry::Event(_) => return Err("an `s` field on an event".to_owned()),
        }
    }
    Ok(entry)
}

/// A raw entry read from shard `shard`.
struct Raw {
    shard: u32,
    id: String,
    fields: Value,
}

/// Parses `[[id, [field, value, …]], …]`.
fn parse_entries(shard: u32, v: &Value, out: &mut Vec<Raw>) {
    for e in as_items(v) {
        if let [id, fields] = as_items(e) {
            if let Some(id) = as_string(id) {
                out.push(Raw {
                    shard,
                    id,
                    fields: fields.clone(),
                });
            }
        }
    }
}

impl RedisQueue {
    pub(crate) fn new(conn: RedisConn) -> RedisQueue {
        RedisQueue {
            inner: Arc::new(QueueInner {
                conn,
                published: AtomicU64::new(0),
                trimming: AtomicBool::new(false),
            }),
        }
    }

    fn conn(&self) -> &RedisConn {
        &self.inner.conn
    }

    /// Counts published entries and starts a background trim every
    /// `trim_every` of them.
    pub(crate) fn note_published(&self, n: u64) {
        let every = self.conn().config().trim_every;
        if every == 0 || n == 0 {
            return;
        }
        let before = self.inner.published.fetch_add(n, Ordering::Relaxed);
        if before / every == (before + n) / every {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.trimming.swap(true, Ordering::AcqRel) {
            return;
        }
        let q = self.clone();
        rt.spawn(async move {
            if let Err(e) = q.trim().await {
                tracing::warn!(error = %e, "redis queue: background trim failed");
            }
            q.inner.trimming.store(false, Ordering::Release);
        });
    }

    /// Trims every shard below the oldest entry some group still needs;
    /// returns how many entries were removed. Safe to call at any time.
    pub async fn trim(&self) -> Result<u64> {
        let keys = self.conn().keys();
        let shards = keys.shards();
        let mut con = self.conn().con();
        let mut p = redis::pipe();
        for s in 0..shards {
            p.cmd("XINFO").arg("GROUPS").arg(keys.stream(s));
        }
        let infos: Vec<redis::RedisResult<Value>> = p
            .ignore_errors()
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("XINFO GROUPS", e))?;
        // Per shard: the first id some group has not been handed yet (the
        // minimum over groups of last-delivered + 1); and which groups have
        // pending entries (their oldest is asked next).
        let mut floor: BTreeMap<u32, StreamId> = BTreeMap::new();
        let mut pending_of: Vec<(u32, String)> = Vec::new();
        for (s, info) in (0..shards).zip(infos) {
            let Ok(info) = info else { continue }; // no stream yet
            let groups = as_items(&info);
            if groups.is_empty() {
                continue;
            }
            let mut min: Option<StreamId> = None;
            for g in groups {
                let g = as_map(g);
                let last = g
                    .get("last-delivered-id")
                    .and_then(as_string)
                    .and_then(|s| StreamId::parse(&s));
                let Some(last) = last else {
                    min = Some(StreamId(0, 0));
                    break;
                };
                let first_unread = last.next();
                min = Some(min.map_or(first_unread, |m| m.min(first_unread)));
                if g.get("pending").and_then(as_u64).unwrap_or(0) > 0 {
                    if let Some(name) = g.get("name").and_then(as_string) {
                        pending_of.push((s, name));
                    }
                }
            }
            if let Some(m) = min {
                floor.insert(s, m);
            }
        }
        if !pending_of.is_empty() {
            let mut p = redis::pipe();
            for (s, g) in &pending_of {
                p.cmd("XPENDING").arg(keys.stream(*s)).arg(g);
            }
            let replies: Vec<redis::RedisResult<Value>> = p
                .ignore_errors()
                .query_async(&mut con)
                .await
                .map_err(|e| map_err("XPENDING", e))?;
            for ((s, _), r) in pending_of.iter().zip(replies) {
                // On any doubt about a group, keep the whole shard.
                let oldest = r
                    .ok()
                    .and_then(|v| as_items(&v).get(1).and_then(as_string))
                    .and_then(|s| StreamId::parse(&s))
                    .unwrap_or(StreamId(0, 0));
                if let Some(f) = floor.get_mut(s) {
                    *f = (*f).min(oldest);
                }
            }
        }
        let floor: Vec<_> = floor
            .into_iter()
            .filter(|(_, id)| *id > StreamId(0, 0))
            .collect();
        if floor.is_empty() {
            return Ok(0);
        }
        let approx = self.conn().config().trim_approx;
        let mut p = redis::pipe();
        for (s, id) in &floor {
            p.cmd("XTRIM")
                .arg(keys.stream(*s))
                .arg("MINID")
                .arg(if approx { "~" } else { "=" })
                .arg(id.to_string());
        }
        let trimmed: Vec<u64> = p
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("XTRIM", e))?;
        Ok(trimmed.into_iter().sum())
    }

    /// Copies undecodable entries to the dead-letter streams and acks them.
    async fn bury(&self, group: &str, dead: Vec<(Raw, String)>) {
        if dead.is_empty() {
            return;
        }
        let keys = self.conn().keys();
        let mut p = redis::pipe();
        for (raw, why) in &dead {
            tracing::warn!(
                shard = raw.shard,
                id = %raw.id,
                group,
                error = %why,
                "redis queue: undecodable entry moved to the dead-letter stream"
            );
            let mut cmd = redis::cmd("XADD");
            cmd.arg(keys.dead(raw.shard))
                .arg("*")
                .arg("id")
                .arg(&raw.id)
                .arg("group")
                .arg(group)
                .arg("error")
                .arg(why);
            for (k, v) in as_map(&raw.fields) {
                let v: Vec<u8> = match v {
                    Value::BulkString(b) => b,
                    other => format!("{other:?}").into_bytes(),
                };
                cmd.arg(format!("f.{k}")).arg(v);
            }
            p.add_command(cmd).ignore();
            p.cmd("XACK")
                .arg(keys.stream(raw.shard))
                .arg(group)
                .arg(&raw.id)
                .ignore();
        }
        let mut con = self.conn().con();
        if let Err(e) = p.query_async::<()>(&mut con).await {
            tracing::warn!(error = %e, "redis queue: burying undecodable entries failed");
        }
    }

    /// Decodes raw entries; buries the undecodable ones.
    async fn deliver(
        &self,
        group: &str,
        raw: Vec<Raw>,
        counts: &HashMap<String, u32>,
    ) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(raw.len());
        let mut dead = Vec::new();
        for r in raw {
            match decode(&r.fields) {
                Ok(entry) => {
                    let id = EntryId(format!("{}/{}", r.shard, r.id));
                    let delivery_count = counts.get(&id.0).copied().unwrap_or(1);
                    out.push(Delivery {
                        id,
                        entry,
                        delivery_count,
                    });
                }
                Err(why) => dead.push((r, why)),
            }
        }
        self.bury(group, dead).await;
        out
    }

    async fn create_groups(&self, group: &str) -> Result<()> {
        let keys = self.conn().keys();
        let mut p = redis::pipe();
        for s in 0..keys.shards() {
            p.cmd("XGROUP")
                .arg("CREATE")
                .arg(keys.stream(s))
                .arg(group)
                .arg("0")
                .arg("MKSTREAM");
        }
        let mut con = self.conn().con();
        let replies: Vec<redis::RedisResult<Value>> = p
            .ignore_errors()
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("XGROUP CREATE", e))?;
        for r in replies {
            match r {
                Ok(_) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(map_err("XGROUP CREATE", e)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl MessageQueue for RedisQueue {
    async fn publish(&self, batch: &[Entry]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let keys = self.conn().keys();
        let mut p = redis::pipe();
        p.atomic();
        for entry in batch {
            p.cmd("XADD")
                .arg(keys.stream(keys.shard_of_hash(entry.shard_hash())))
                .arg("*")
                .arg("e")
                .arg(encode_entry(entry)?)
                .ignore();
        }
        let mut con = self.conn().con();
        p.query_async::<()>(&mut con)
            .await
            .map_err(|e| map_err("XADD", e))?;
        self.note_published(batch.len() as u64);
        Ok(())
    }

    async fn create_group(&self, group: &str) -> Result<()> {
        self.create_groups(group).await
    }

    async fn consumer(&self, group: &str, consumer: &str) -> Result<Box<dyn QueueConsumer>> {
        Ok(Box::new(
            RedisConsumer::open(self.clone(), group, consumer).await?,
        ))
    }

    async fn stats(&self, group: &str) -> Result<GroupStats> {
        let keys = self.conn().keys();
        let shards = keys.shards();
        let mut p = redis::pipe();
        for s in 0..shards {
            p.cmd("XPENDING").arg(keys.stream(s)).arg(group);
            p.cmd("XINFO").arg("GROUPS").arg(keys.stream(s));
        }
        let mut con = self.conn().con();
        let replies: Vec<redis::RedisResult<Value>> = p
            .ignore_errors()
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("XPENDING", e))?;
        let mut stats = GroupStats::default();
        let mut unknown_lag: Vec<(u32, String)> = Vec::new();
        for (s, pair) in (0..shards).zip(replies.chunks(2)) {
            let [pending, info] = pair else { continue };
            let pending = match pending {
                Ok(v) => v,
                Err(e) if matches!(e.code(), Some("NOGROUP")) => {
                    return Err(Error::NotFound(format!("no consumer group {group}")))
                }
                Err(e) => return Err(map_err("XPENDING", e.clone())),
            };
            stats.pending += as_items(pending).first().and_then(as_u64).unwrap_or(0);
            let info = info
                .as_ref()
                .map_err(|e| map_err("XINFO GROUPS", e.clone()))?;
            let g = as_items(info)
                .iter()
                .map(as_map)
                .find(|g| g.get("name").and_then(as_string).as_deref() == Some(group));
            let Some(g) = g else {
                return Err(Error::NotFound(format!("no consumer group {group}")));
            };
            match g.get("lag").and_then(as_u64) {
                Some(lag) => stats.lag += lag,
                None => {
                    let last = g
                        .get("last-delivered-id")
                        .and_then(as_string)
                        .unwrap_or_else(|| "0-0".into());
                    unknown_lag.push((s, last));
                }
            }
        }
        if !unknown_lag.is_empty() {
            // Redis cannot tell the lag (entries were deleted): count them.
            let mut p = redis::pipe();
            for (s, last) in &unknown_lag {
                p.cmd("XRANGE")
                    .arg(keys.stream(*s))
                    .arg(format!("({last}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(1_000_000);
            }
            let ranges: Vec<Value> = p
                .query_async(&mut con)
                .await
                .map_err(|e| map_err("XRANGE", e))?;
            stats.lag += ranges.iter().map(|r| as_items(r).len() as u64).sum::<u64>();
        }
        Ok(stats)
    }
}

/// One consumer of a group, with its own connection for blocking reads.
pub struct RedisConsumer {
    queue: RedisQueue,
    blocking: ConnectionManager,
    group: String,
    name: String,
    /// Entries read beyond `max` of a fetch (XREADGROUP's COUNT is per
    /// stream); they are already pending for this consumer and are handed
    /// out first by the next fetch.
    buffer: VecDeque<Delivery>,
}

impl std::fmt::Debug for RedisConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConsumer")
            .field("group", &self.group)
            .field("name", &self.name)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl RedisConsumer {
    /// Opens a consumer (creating its group if needed) with a dedicated connection.
    pub async fn open(queue: RedisQueue, group: &str, name: &str) -> Result<RedisConsumer> {
        queue.create_groups(group).await?;
        let blocking = queue
            .conn()
            .dedicated(&format!("consumer:{group}:{name}"))
            .await?;
        Ok(RedisConsumer {
            queue,
            blocking,
            group: group.to_owned(),
            name: name.to_owned(),
            buffer: VecDeque::new(),
        })
    }

    fn take_buffered(&mut self, max: usize) -> Vec<Delivery> {
        let n = max.min(self.buffer.len());
        self.buffer.drain(..n).collect()
    }

    async fn read(&mut self, max: usize, block: Duration) -> Result<Vec<Raw>> {
        let keys = self.queue.conn().keys();
        let shards = keys.shards();
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&self.group).arg(&self.name);
        cmd.arg("COUNT").arg(max);
        let block_ms = block.as_millis();
        if block_ms > 0 {
            cmd.arg("BLOCK")
                .arg(u64::try_from(block_ms).unwrap_or(u64::MAX));
        }
        cmd.arg("STREAMS");
        for s in 0..shards {
            cmd.arg(keys.stream(s));
        }
        for _ in 0..shards {
            cmd.arg(">");
        }
        let deadline = block.saturating_add(self.queue.conn().config().response_timeout);
        let reply: Value = tokio::time::timeout(deadline, cmd.query_async(&mut self.blocking))
            .await
            .map_err(|_| Error::Timeout(format!("redis XREADGROUP took longer than {deadline:?}")))?
            .map_err(|e| {
                if e.code() == Some("NOGROUP") {
                    Error::NotFound(format!("no consumer group {}", self.group))
                } else {
                    map_err("XREADGROUP", e)
                }
            })?;
        let mut raw = Vec::new();
        let per_stream: Vec<(Value, Value)> = match &reply {
            Value::Nil => Vec::new(),
            Value::Map(pairs) => pairs.clone(),
            other => as_items(other)
                .iter()
                .filter_map(|kv| match as_items(kv) {
                    [k, v] => Some((k.clone(), v.clone())),
                    _ => None,
                })
                .collect(),
        };
        for (k, entries) in per_stream {
            let Some(k) = as_string(&k) else {
                return Err(bad_reply("XREADGROUP", &reply));
            };
            let Some(shard) = (0..shards).find(|&s| keys.stream(s) == k) else {
                return Err(bad_reply("XREADGROUP", &reply));
            };
            parse_entries(shard, &entries, &mut raw);
        }
        Ok(raw)
    }
}

#[async_trait]
impl QueueConsumer for RedisConsumer {
    async fn fetch(&mut self, max: usize, block: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        if !self.buffer.is_empty() {
            return Ok(self.take_buffered(max));
        }
        let raw = match self.read(max, block).await {
            Err(Error::NotFound(_)) => {
                // The group vanished (e.g. Redis lost its data): recreate it.
                self.queue.create_groups(&self.group).await?;
                self.read(max, block).await?
            }
            other => other?,
        };
        let got = self.queue.deliver(&self.group, raw, &HashMap::new()).await;
        self.buffer.extend(got);
        Ok(self.take_buffered(max))
    }

    async fn ack(&mut self, ids: &[EntryId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys = self.queue.conn().keys();
        let mut by_shard: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for id in ids {
            let (shard, sid) = parse_entry(id, keys.shards())?;
            by_shard.entry(shard).or_default().push(sid);
        }
        let mut p = redis::pipe();
        for (shard, sids) in by_shard {
            p.cmd("XACK")
                .arg(keys.stream(shard))
                .arg(&self.group)
                .arg(sids)
                .ignore();
        }
        let mut con = self.queue.conn().con();
        p.query_async::<()>(&mut con)
            .await
            .map_err(|e| map_err("XACK", e))
    }

    async fn claim_stale(&mut self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let keys = self.queue.conn().keys();
        let idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let mut con = self.queue.conn().con();
        let mut raw: Vec<Raw> = Vec::new();
        for s in 0..keys.shards() {
            let mut cursor = "0-0".to_owned();
            // Bounded: each XAUTOCLAIM scans at most 10×COUNT pending entries.
            for _ in 0..16 {
                let left = max.saturating_sub(raw.len());
                if left == 0 {
                    break;
                }
                let reply: Value = redis::cmd("XAUTOCLAIM")
                    .arg(keys.stream(s))
                    .arg(&self.group)
                    .arg(&self.name)
                    .arg(idle_ms)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(left)
                    .query_async(&mut con)
                    .await
                    .map_err(|e| map_err("XAUTOCLAIM", e))?;
                let items = as_items(&reply);
                let next = items.first().and_then(as_string);
                if let Some(entries) = items.get(1) {
                    parse_entries(s, entries, &mut raw);
                }
                match next {
                    Some(n) if n != "0-0" => cursor = n,
                    _ => break,
                }
            }
            if raw.len() >= max {
                break;
            }
        }
        raw.truncate(max);
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        // Delivery counts of the claimed entries (one pipelined XPENDING per shard).
        let mut ranges: BTreeMap<u32, (StreamId, StreamId, usize)> = BTreeMap::new();
        for r in &raw {
            if let Some(id) = StreamId::parse(&r.id) {
                let e = ranges.entry(r.shard).or_insert((id, id, 0));
                e.0 = e.0.min(id);
                e.1 = e.1.max(id);
                e.2 += 1;
            }
        }
        let mut p = redis::pipe();
        for (s, (lo, hi, _)) in &ranges {
            p.cmd("XPENDING")
                .arg(keys.stream(*s))
                .arg(&self.group)
                .arg(lo.to_string())
                .arg(hi.to_string())
                .arg(max)
                .arg(&self.name);
        }
        let mut counts: HashMap<String, u32> = HashMap::new();
        let replies: Vec<Value> = p
            .query_async(&mut con)
            .await
            .map_err(|e| map_err("XPENDING", e))?;
        for (s, reply) in ranges.keys().zip(replies) {
            for e in as_items(&reply) {
                let e = as_items(e);
                if let (Some(id), Some(n)) =
                    (e.first().and_then(as_string), e.get(3).and_then(as_u64))
                {
                    counts.insert(
                        format!("{s}/{id}"),
                        u32::try_from(n).unwrap_or(u32::MAX).max(2),
                    );
                }
            }
        }
        for r in &raw {
            counts.entry(format!("{}/{}", r.shard, r.id)).or_insert(2);
        }
        Ok(self.queue.deliver(&self.group, raw, &counts).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_round_trip() {
        assert_eq!(
            parse_entry(&EntryId("2/1700000000000-3".into()), 4).unwrap(),
            (2, "1700000000000-3")
        );
        assert!(parse_entry(&EntryId("4/1-0".into()), 4).is_err());
        assert!(parse_entry(&EntryId("x/1-0".into()), 4).is_err());
        assert!(parse_entry(&EntryId("1/1".into()), 4).is_err());
        assert!(StreamId(1, 9) < StreamId(2, 0));
    }

    #[test]
    fn entries_of_both_kinds_decode() {
        use im_core::id::{ConversationId, UserId};
        use im_core::model::{Event, EventAudience};
        let conv = ConversationId::Direct(UserId(1), UserId(2));
        let env: Envelope = serde_json::from_value(serde_json::json!({
            "message": {
                "msg_id": "7", "conversation_id": "u:1:2", "seq": 0, "from": "1",
                "to": {"user": "2"}, "kind": "text", "body": "hi",
                "client_msg_id": "c", "ts": 5
            }
        }))
        .unwrap();
        let message = Entry::Message(env.clone());
        let event = Entry::Event(EventEnvelope {
            event: Event::Typing {
                conversation_id: conv,
                from: UserId(1),
            },
            to: EventAudience::Conversation {
                conversation_id: conv,
                except: Some(UserId(1)),
            },
            origin: None,
            ts: 5,
        });
        let fields = |e: &Entry, seq: Option<u64>| {
            let mut v = vec![
                Value::BulkString(b"e".to_vec()),
                Value::BulkString(encode_entry(e).unwrap()),
            ];
            if let Some(s) = seq {
                v.push(Value::BulkString(b"s".to_vec()));
                v.push(Value::BulkString(s.to_string().into_bytes()));
            }
            Value::Array(v)
        };
        assert_eq!(encode_entry(&message).unwrap(), encode(&env).unwrap());
        assert_eq!(decode(&fields(&message, None)).unwrap(), message);
        assert_eq!(decode(&fields(&event, None)).unwrap(), event);
        let Entry::Message(with_seq) = decode(&fields(&message, Some(9))).unwrap() else {
            panic!("not a message");
        };
        assert_eq!(with_seq.message.seq, 9, "`s` overrides a message's seq");
        assert!(decode(&fields(&event, Some(9))).is_err());
        assert!(decode(&Value::Array(vec![
            Value::BulkString(b"e".to_vec()),
            Value::BulkString(b"{\"x\":1}".to_vec()),
        ]))
        .is_err());
    }
}
