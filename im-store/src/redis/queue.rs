//! `RedisQueue`: the message queue on P Redis Stream partitions with
//! consumer groups (`XADD` / `XREADGROUP` / `XACK` / `XAUTOCLAIM`), and its
//! trimmer.
//!
//! Partition `p` is the stream `P:{pN}:stream` (its own slot on a cluster).
//! A stream entry is a *batch entry*: field `b` holds one or more entries'
//! JSON, one per line, in order (a message envelope or an event, untagged),
//! and, when the send pipeline wrote it, field `s` holds their seqs
//! (comma-separated; a message's seq overrides its JSON's; 0 marks a retry
//! the script did not admit, which is skipped). Entries of an older layout
//! (field `e`: one entry) are still read. So a whole partition batch costs one
//! `XADD`, one `XREADGROUP` item and one `XACK` id, not one per message.
//!
//! Each entry handed to a consumer is one message or event, with id
//! `"<partition>/<stream id>/<index>"`; the stream entry is acked once every
//! entry of it the consumer was handed has been acked. An entry (or a line)
//! that does not decode is copied to the partition's dead-letter stream and
//! never handed out, so it never wedges a consumer.
//!
//! Trimming never uses `MAXLEN`: [`RedisQueue::trim`] keeps, per partition,
//! every entry some group still needs (its oldest pending entry, or anything
//! after its last-delivered id) and trims with `MINID` below that. It runs in
//! the background every [`RedisConfig::trim_every`](super::RedisConfig)
//! published batch entries, and may be called periodically. A partition
//! without groups is not trimmed (a group created later starts from the
//! retained log).
//!
//! Reads: on a standalone Redis a consumer reads all its partitions with one
//! blocking `XREADGROUP` on a connection of its own. A cluster refuses a
//! command over several slots, so there a consumer reads each partition
//! without blocking (one pipeline per node) and backs off while all are empty.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use im_core::model::{Entry, Envelope, EventEnvelope};
use im_core::ports::{Assignment, Delivery, EntryId, GroupStats, MessageQueue, QueueConsumer};
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

/// Splits an entry id into partition, stream id and index within the batch.
fn parse_entry(id: &EntryId, partitions: u32) -> Result<(u32, &str, u32)> {
    let bad = || Error::InvalidArgument(format!("not a Redis queue entry id: {:?}", id.0));
    let (p, rest) = id.0.split_once('/').ok_or_else(bad)?;
    let (sid, idx) = rest.split_once('/').ok_or_else(bad)?;
    let p: u32 = p.parse().map_err(|_| bad())?;
    let idx: u32 = idx.parse().map_err(|_| bad())?;
    if p >= partitions || StreamId::parse(sid).is_none() {
        return Err(bad());
    }
    Ok((p, sid, idx))
}

/// Encodes a message envelope as one line of a batch entry (the JSON of
/// `Entry::Message`: the untagged entry serializes exactly as its envelope;
/// compact JSON never holds a raw newline).
pub(crate) fn encode(envelope: &Envelope) -> Result<Vec<u8>> {
    serde_json::to_vec(envelope)
        .map_err(|e| Error::Internal(format!("envelope does not serialize: {e}")))
}

/// Encodes a queue entry as one line of a batch entry.
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

/// One decoded line of a stream entry: its index and entry, or why not.
type Line = (u32, std::result::Result<Entry, String>);

/// Decodes the fields of one stream entry into its lines (a batch `b` with
/// optional seqs `s`, or one entry `e`). Lines with seq 0 (retries the send
/// script did not admit) are left out. An error means the entry as a whole
/// is unreadable.
fn decode(fields: &Value) -> std::result::Result<Vec<Line>, String> {
    let map = as_map(fields);
    let seqs: Option<Vec<u64>> = match map.get("s") {
        Some(s) => {
            let text = as_string(s).ok_or_else(|| format!("bad `s` field {s:?}"))?;
            Some(
                text.split(',')
                    .map(|x| x.parse().map_err(|_| format!("bad `s` field {text:?}")))
                    .collect::<std::result::Result<_, _>>()?,
            )
        }
        None => None,
    };
    let body = match (map.get("b"), map.get("e")) {
        (Some(Value::BulkString(b)), _) | (None, Some(Value::BulkString(b))) => b.as_slice(),
        _ => return Err("no `b` (or `e`) field".to_owned()),
    };
    let lines: Vec<&[u8]> = if map.contains_key("b") {
        body.split(|c| *c == b'\n').collect()
    } else {
        vec![body]
    };
    if let Some(s) = &seqs {
        if s.len() != lines.len() {
            return Err(format!("{} seqs for {} entries", s.len(), lines.len()));
        }
    }
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        let seq = seqs.as_ref().and_then(|s| s.get(i).copied());
        if seq == Some(0) {
            continue;
        }
        let entry = decode_json(line).and_then(|mut e| {
            if let Some(seq) = seq {
                match &mut e {
                    Entry::Message(env) => env.message.seq = seq,
                    Entry::Event(_) => return Err("a seq on an event".to_owned()),
                }
            }
            Ok(e)
        });
        out.push((i as u32, entry));
    }
    Ok(out)
}

/// A raw stream entry read from partition `partition`.
struct Raw {
    partition: u32,
    id: String,
    fields: Value,
}

/// Parses `[[id, [field, value, …]], …]`.
fn parse_entries(partition: u32, v: &Value, out: &mut Vec<Raw>) {
    for e in as_items(v) {
        if let [id, fields] = as_items(e) {
            if let Some(id) = as_string(id) {
                out.push(Raw {
                    partition,
                    id,
                    fields: fields.clone(),
                });
            }
        }
    }
}

/// Turns `XREADGROUP`'s reply (RESP2 array or RESP3 map of stream → entries)
/// into (stream key, entries) pairs.
fn per_stream(reply: &Value) -> Vec<(Value, Value)> {
    match reply {
        Value::Nil => Vec::new(),
        Value::Map(pairs) => pairs.clone(),
        other => as_items(other)
            .iter()
            .filter_map(|kv| match as_items(kv) {
                [k, v] => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect(),
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

    /// Counts published stream entries and starts a background trim every
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

    /// One command per partition, through [`RedisConn::per_slot`].
    async fn each_partition(
        &self,
        what: &str,
        parts: &[u32],
        cmd: impl Fn(&str) -> redis::Cmd,
    ) -> Result<Vec<redis::RedisResult<Value>>> {
        let keys = self.conn().keys();
        let cmds = parts
            .iter()
            .map(|&p| {
                let k = keys.stream(p);
                let c = cmd(&k);
                (k, c)
            })
            .collect();
        self.conn().per_slot(what, cmds).await
    }

    /// Trims every partition below the oldest entry some group still needs;
    /// returns how many stream entries were removed. Safe to call at any time.
    pub async fn trim(&self) -> Result<u64> {
        let parts: Vec<u32> = (0..self.conn().keys().partitions()).collect();
        let infos = self
            .each_partition("XINFO GROUPS", &parts, |k| {
                let mut c = redis::cmd("XINFO");
                c.arg("GROUPS").arg(k);
                c
            })
            .await?;
        // Per partition: the first id some group has not been handed yet (the
        // minimum over groups of last-delivered + 1); and which groups have
        // pending entries (their oldest is asked next).
        let mut floor: BTreeMap<u32, StreamId> = BTreeMap::new();
        let mut pending_of: Vec<(u32, String)> = Vec::new();
        for (&p, info) in parts.iter().zip(infos) {
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
                        pending_of.push((p, name));
                    }
                }
            }
            if let Some(m) = min {
                floor.insert(p, m);
            }
        }
        if !pending_of.is_empty() {
            let keys = self.conn().keys();
            let cmds = pending_of
                .iter()
                .map(|(p, g)| {
                    let k = keys.stream(*p);
                    let mut c = redis::cmd("XPENDING");
                    c.arg(&k).arg(g);
                    (k, c)
                })
                .collect();
            let replies = self.conn().per_slot("XPENDING", cmds).await?;
            for ((p, _), r) in pending_of.iter().zip(replies) {
                // On any doubt about a group, keep the whole partition.
                let oldest = r
                    .ok()
                    .and_then(|v| as_items(&v).get(1).and_then(as_string))
                    .and_then(|s| StreamId::parse(&s))
                    .unwrap_or(StreamId(0, 0));
                if let Some(f) = floor.get_mut(p) {
                    *f = (*f).min(oldest);
                }
            }
        }
        let floor: BTreeMap<u32, StreamId> = floor
            .into_iter()
            .filter(|(_, id)| *id > StreamId(0, 0))
            .collect();
        if floor.is_empty() {
            return Ok(0);
        }
        let approx = self.conn().config().trim_approx;
        let parts: Vec<u32> = floor.keys().copied().collect();
        let trimmed = self
            .each_partition("XTRIM", &parts, |k| {
                let p = parts
                    .iter()
                    .copied()
                    .find(|p| self.conn().keys().stream(*p) == k);
                let id = p
                    .and_then(|p| floor.get(&p))
                    .copied()
                    .unwrap_or(StreamId(0, 0));
                let mut c = redis::cmd("XTRIM");
                c.arg(k)
                    .arg("MINID")
                    .arg(if approx { "~" } else { "=" })
                    .arg(id.to_string());
                c
            })
            .await?;
        let mut total = 0;
        for t in trimmed {
            total += as_u64(&t.map_err(|e| map_err("XTRIM", e))?).unwrap_or(0);
        }
        Ok(total)
    }

    /// Copies undecodable entries (or lines) to the dead-letter streams; acks
    /// the stream entries in `ack` (those with nothing left to hand out).
    async fn bury(
        &self,
        group: &str,
        dead: Vec<(u32, String, Option<u32>, String, Value)>,
        ack: Vec<(u32, String)>,
    ) {
        if dead.is_empty() && ack.is_empty() {
            return;
        }
        let keys = self.conn().keys();
        let mut cmds = Vec::new();
        for (p, id, line, why, fields) in &dead {
            tracing::warn!(
                partition = p,
                id = %id,
                line = ?line,
                group,
                error = %why,
                "redis queue: undecodable entry moved to the dead-letter stream"
            );
            let mut cmd = redis::cmd("XADD");
            let key = keys.dead(*p);
            cmd.arg(&key)
                .arg("*")
                .arg("id")
                .arg(id)
                .arg("group")
                .arg(group)
                .arg("error")
                .arg(why);
            if let Some(l) = line {
                cmd.arg("line").arg(*l);
            }
            for (k, v) in as_map(fields) {
                let v: Vec<u8> = match v {
                    Value::BulkString(b) => b,
                    other => format!("{other:?}").into_bytes(),
                };
                cmd.arg(format!("f.{k}")).arg(v);
            }
            cmds.push((key, cmd));
        }
        for (p, id) in &ack {
            let key = keys.stream(*p);
            let mut cmd = redis::cmd("XACK");
            cmd.arg(&key).arg(group).arg(id);
            cmds.push((key, cmd));
        }
        if let Err(e) = self.conn().per_slot("dead letters", cmds).await {
            tracing::warn!(error = %e, "redis queue: burying undecodable entries failed");
        }
    }

    async fn create_groups(&self, group: &str) -> Result<()> {
        let parts: Vec<u32> = (0..self.conn().keys().partitions()).collect();
        let replies = self
            .each_partition("XGROUP CREATE", &parts, |k| {
                let mut c = redis::cmd("XGROUP");
                c.arg("CREATE").arg(k).arg(group).arg("0").arg("MKSTREAM");
                c
            })
            .await?;
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
        let mut parts: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for entry in batch {
            let blob = parts
                .entry(keys.partition_of_hash(entry.shard_hash()))
                .or_default();
            if !blob.is_empty() {
                blob.push(b'\n');
            }
            blob.extend_from_slice(&encode_entry(entry)?);
        }
        let n = parts.len() as u64;
        if self.conn().is_cluster() {
            // Partitions are different slots: one XADD each (a failed publish
            // may have published some partitions; consumers drop duplicates).
            let cmds = parts
                .into_iter()
                .map(|(p, blob)| {
                    let k = keys.stream(p);
                    let mut c = redis::cmd("XADD");
                    c.arg(&k).arg("*").arg("b").arg(blob);
                    (k, c)
                })
                .collect();
            for r in self.conn().per_slot("XADD", cmds).await? {
                r.map_err(|e| map_err("XADD", e))?;
            }
        } else {
            let mut p = redis::pipe();
            p.atomic();
            for (part, blob) in parts {
                p.cmd("XADD")
                    .arg(keys.stream(part))
                    .arg("*")
                    .arg("b")
                    .arg(blob)
                    .ignore();
            }
            let mut con = self.conn().con();
            p.query_async::<()>(&mut con)
                .await
                .map_err(|e| map_err("XADD", e))?;
        }
        self.note_published(n);
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
        let parts: Vec<u32> = (0..keys.partitions()).collect();
        let mut cmds = Vec::with_capacity(parts.len() * 2);
        for &p in &parts {
            let k = keys.stream(p);
            let mut a = redis::cmd("XPENDING");
            a.arg(&k).arg(group);
            let mut b = redis::cmd("XINFO");
            b.arg("GROUPS").arg(&k);
            cmds.push((k.clone(), a));
            cmds.push((k, b));
        }
        let replies = self.conn().per_slot("XPENDING", cmds).await?;
        let mut stats = GroupStats::default();
        let mut unknown_lag: Vec<(u32, String)> = Vec::new();
        for (&p, pair) in parts.iter().zip(replies.chunks(2)) {
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
                    unknown_lag.push((p, last));
                }
            }
        }
        if !unknown_lag.is_empty() {
            // Redis cannot tell the lag (entries were deleted): count them.
            let cmds = unknown_lag
                .iter()
                .map(|(p, last)| {
                    let k = keys.stream(*p);
                    let mut c = redis::cmd("XRANGE");
                    c.arg(&k)
                        .arg(format!("({last}"))
                        .arg("+")
                        .arg("COUNT")
                        .arg(1_000_000);
                    (k, c)
                })
                .collect();
            for r in self.conn().per_slot("XRANGE", cmds).await? {
                stats.lag += as_items(&r.map_err(|e| map_err("XRANGE", e))?).len() as u64;
            }
        }
        Ok(stats)
    }

    fn partitions(&self) -> u32 {
        self.conn().keys().partitions()
    }
}

/// A stream entry handed out and not yet acked whole.
#[derive(Debug, Default)]
struct OpenEntry {
    good: u32,
    acked: BTreeSet<u32>,
}

/// One consumer of a group, with its own connection for blocking reads.
pub struct RedisConsumer {
    queue: RedisQueue,
    /// For blocking reads on a standalone Redis (none on a cluster).
    blocking: Option<ConnectionManager>,
    group: String,
    name: String,
    /// Entries read beyond `max` of a fetch (a batch entry holds many, and
    /// XREADGROUP's COUNT is per stream); they are already pending for this
    /// consumer and are handed out first by the next fetch.
    buffer: VecDeque<Delivery>,
    /// The partitions read.
    assigned: Assignment,
    /// Newly assigned partitions whose pending entries come first, with the
    /// `XAUTOCLAIM` cursor reached in each.
    takeover: BTreeMap<u32, String>,
    /// Per stream entry handed out: its decodable entries and those acked
    /// (the stream entry is acked with the last of them; a re-delivery to
    /// this consumer skips those already acked).
    open: HashMap<(u32, String), OpenEntry>,
    /// Consecutive empty polls (cluster reads back off).
    empty_polls: u32,
}

impl std::fmt::Debug for RedisConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConsumer")
            .field("group", &self.group)
            .field("name", &self.name)
            .field("buffered", &self.buffer.len())
            .field("assigned", &self.assigned.partitions().len())
            .finish_non_exhaustive()
    }
}

impl RedisConsumer {
    /// Opens a consumer of every partition (creating its group if needed),
    /// with a dedicated connection for blocking reads.
    pub async fn open(queue: RedisQueue, group: &str, name: &str) -> Result<RedisConsumer> {
        queue.create_groups(group).await?;
        let blocking = if queue.conn().is_cluster() {
            None
        } else {
            Some(
                queue
                    .conn()
                    .dedicated(&format!("consumer:{group}:{name}"))
                    .await?,
            )
        };
        let assigned = Assignment::all(queue.conn().keys().partitions());
        Ok(RedisConsumer {
            queue,
            blocking,
            group: group.to_owned(),
            name: name.to_owned(),
            buffer: VecDeque::new(),
            assigned,
            takeover: BTreeMap::new(),
            open: HashMap::new(),
            empty_polls: 0,
        })
    }

    fn take_buffered(&mut self, max: usize) -> Vec<Delivery> {
        let n = max.min(self.buffer.len());
        self.buffer.drain(..n).collect()
    }

    /// Decodes raw stream entries into deliveries (remembering how many of
    /// each are open); buries what does not decode.
    async fn deliver(&mut self, raw: Vec<Raw>, delivery_count: u32) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(raw.len());
        let mut dead = Vec::new();
        let mut empty = Vec::new();
        for r in raw {
            let key = (r.partition, r.id.clone());
            let lines = match decode(&r.fields) {
                Ok(lines) => lines,
                Err(why) => {
                    dead.push((r.partition, r.id.clone(), None, why, r.fields));
                    continue;
                }
            };
            let acked = self.open.remove(&key).map(|o| o.acked).unwrap_or_default();
            let mut good = 0;
            for (i, line) in lines {
                match line {
                    Ok(_) if acked.contains(&i) => good += 1,
                    Ok(entry) => {
                        good += 1;
                        out.push(Delivery {
                            id: EntryId(format!("{}/{}/{i}", r.partition, r.id)),
                            entry,
                            delivery_count,
                        });
                    }
                    Err(why) => {
                        dead.push((r.partition, r.id.clone(), Some(i), why, r.fields.clone()))
                    }
                }
            }
            if good == 0 || acked.len() >= good as usize {
                empty.push(key);
            } else {
                self.open.insert(key, OpenEntry { good, acked });
            }
        }
        // An entry with nothing to hand out is acked now (its dead lines are
        // in the dead-letter stream).
        let dead_whole: Vec<(u32, String)> = dead
            .iter()
            .filter(|(_, _, line, _, _)| line.is_none())
            .map(|(p, id, _, _, _)| (*p, id.clone()))
            .collect();
        empty.extend(dead_whole);
        self.queue.bury(&self.group, dead, empty).await;
        out
    }

    /// Entries other consumers left pending in newly assigned partitions.
    async fn take_over(&mut self, max: usize) -> Result<Vec<Raw>> {
        let keys = self.queue.conn().keys();
        let parts: Vec<(u32, String)> =
            self.takeover.iter().map(|(p, c)| (*p, c.clone())).collect();
        let cmds = parts
            .iter()
            .map(|(p, cursor)| {
                let k = keys.stream(*p);
                let mut c = redis::cmd("XAUTOCLAIM");
                c.arg(&k)
                    .arg(&self.group)
                    .arg(&self.name)
                    .arg(0)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(max.max(1));
                (k, c)
            })
            .collect();
        let replies = self.queue.conn().per_slot("XAUTOCLAIM", cmds).await?;
        let mut raw = Vec::new();
        for ((p, _), r) in parts.iter().zip(replies) {
            let reply = match r {
                Ok(v) => v,
                Err(e) if e.code() == Some("NOGROUP") => {
                    self.takeover.remove(p);
                    continue;
                }
                Err(e) => return Err(map_err("XAUTOCLAIM", e)),
            };
            let items = as_items(&reply);
            if let Some(entries) = items.get(1) {
                parse_entries(*p, entries, &mut raw);
            }
            // The scan of the pending list ends when the cursor is 0-0.
            match items.first().and_then(as_string) {
                Some(next) if next != "0-0" => {
                    self.takeover.insert(*p, next);
                }
                _ => {
                    self.takeover.remove(p);
                }
            }
        }
        Ok(raw)
    }

    /// New entries of the assigned partitions (not those being taken over).
    async fn read(&mut self, max: usize, block: Duration) -> Result<Vec<Raw>> {
        let keys = self.queue.conn().keys();
        let parts: Vec<u32> = self
            .assigned
            .partitions()
            .iter()
            .copied()
            .filter(|p| !self.takeover.contains_key(p))
            .collect();
        if parts.is_empty() {
            tokio::time::sleep(block.min(Duration::from_millis(50))).await;
            return Ok(Vec::new());
        }
        let nogroup = |e: redis::RedisError, group: &str| {
            if e.code() == Some("NOGROUP") {
                Error::NotFound(format!("no consumer group {group}"))
            } else {
                map_err("XREADGROUP", e)
            }
        };
        let Some(blocking) = self.blocking.as_mut() else {
            // Cluster: every partition is its own slot; read each without
            // blocking (pipelined per node) and back off while all are empty,
            // up to `block`.
            let deadline = tokio::time::Instant::now() + block;
            let group = self.group.clone();
            let name = self.name.clone();
            loop {
                let cmds = parts
                    .iter()
                    .map(|&p| {
                        let k = keys.stream(p);
                        let mut c = redis::cmd("XREADGROUP");
                        c.arg("GROUP")
                            .arg(&group)
                            .arg(&name)
                            .arg("COUNT")
                            .arg(max.max(1))
                            .arg("STREAMS")
                            .arg(&k)
                            .arg(">");
                        (k, c)
                    })
                    .collect();
                let replies = self.queue.conn().per_slot("XREADGROUP", cmds).await?;
                let mut raw = Vec::new();
                for (&p, r) in parts.iter().zip(replies) {
                    let reply = r.map_err(|e| nogroup(e, &group))?;
                    for (_, entries) in per_stream(&reply) {
                        parse_entries(p, &entries, &mut raw);
                    }
                }
                let now = tokio::time::Instant::now();
                if !raw.is_empty() || now >= deadline {
                    self.empty_polls = if raw.is_empty() { self.empty_polls } else { 0 };
                    return Ok(raw);
                }
                self.empty_polls = self.empty_polls.saturating_add(1);
                let pause = Duration::from_millis(1u64 << self.empty_polls.min(4));
                tokio::time::sleep_until((now + pause).min(deadline)).await;
            }
        };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&self.group).arg(&self.name);
        cmd.arg("COUNT").arg(max.max(1));
        let block_ms = block.as_millis();
        if block_ms > 0 {
            cmd.arg("BLOCK")
                .arg(u64::try_from(block_ms).unwrap_or(u64::MAX));
        }
        cmd.arg("STREAMS");
        let mut by_key: HashMap<String, u32> = HashMap::with_capacity(parts.len());
        for &p in &parts {
            let k = keys.stream(p);
            cmd.arg(&k);
            by_key.insert(k, p);
        }
        for _ in &parts {
            cmd.arg(">");
        }
        let deadline = block.saturating_add(self.queue.conn().config().response_timeout);
        let reply: Value = tokio::time::timeout(deadline, cmd.query_async(blocking))
            .await
            .map_err(|_| Error::Timeout(format!("redis XREADGROUP took longer than {deadline:?}")))?
            .map_err(|e| nogroup(e, &self.group))?;
        let mut raw = Vec::new();
        for (k, entries) in per_stream(&reply) {
            let p = as_string(&k).and_then(|k| by_key.get(&k).copied());
            let Some(p) = p else {
                return Err(bad_reply("XREADGROUP", &reply));
            };
            parse_entries(p, &entries, &mut raw);
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
        if !self.takeover.is_empty() {
            let raw = self.take_over(max).await?;
            if !raw.is_empty() {
                let got = self.deliver(raw, 2).await;
                self.buffer.extend(got);
                return Ok(self.take_buffered(max));
            }
        }
        // A batch entry holds many entries: read about `max` of them.
        let count = max.div_ceil(8).max(1);
        let raw = match self.read(count, block).await {
            Err(Error::NotFound(_)) => {
                // The group vanished (e.g. Redis lost its data): recreate it.
                self.queue.create_groups(&self.group).await?;
                self.read(count, block).await?
            }
            other => other?,
        };
        let got = self.deliver(raw, 1).await;
        self.buffer.extend(got);
        Ok(self.take_buffered(max))
    }

    async fn ack(&mut self, ids: &[EntryId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys = self.queue.conn().keys();
        let mut done: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let mut seen: BTreeSet<(u32, &str, u32)> = BTreeSet::new();
        for id in ids {
            let (p, sid, idx) = parse_entry(id, keys.partitions())?;
            if !seen.insert((p, sid, idx)) {
                continue;
            }
            let key = (p, sid.to_owned());
            match self.open.get_mut(&key) {
                Some(o) => {
                    o.acked.insert(idx);
                    if o.acked.len() >= o.good as usize {
                        self.open.remove(&key);
                        done.entry(p).or_default().push(key.1);
                    }
                }
                // Not handed out by this consumer: ack the stream entry.
                None => done.entry(p).or_default().push(key.1),
            }
        }
        if done.is_empty() {
            return Ok(());
        }
        let cmds = done
            .into_iter()
            .map(|(p, sids)| {
                let k = keys.stream(p);
                let mut c = redis::cmd("XACK");
                c.arg(&k).arg(&self.group).arg(sids);
                (k, c)
            })
            .collect();
        for r in self.queue.conn().per_slot("XACK", cmds).await? {
            r.map_err(|e| map_err("XACK", e))?;
        }
        Ok(())
    }

    async fn claim_stale(&mut self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let keys = self.queue.conn().keys();
        let idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let parts = self.assigned.partitions().to_vec();
        let count = max;
        let cmds = parts
            .iter()
            .map(|&p| {
                let k = keys.stream(p);
                let mut c = redis::cmd("XAUTOCLAIM");
                c.arg(&k)
                    .arg(&self.group)
                    .arg(&self.name)
                    .arg(idle_ms)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(count);
                (k, c)
            })
            .collect();
        let replies = self.queue.conn().per_slot("XAUTOCLAIM", cmds).await?;
        let mut raw: Vec<Raw> = Vec::new();
        for (&p, r) in parts.iter().zip(replies) {
            let reply = match r {
                Ok(v) => v,
                Err(e) if e.code() == Some("NOGROUP") => continue,
                Err(e) => return Err(map_err("XAUTOCLAIM", e)),
            };
            if let Some(entries) = as_items(&reply).get(1) {
                parse_entries(p, entries, &mut raw);
            }
        }
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        let got = self.deliver(raw, 2).await;
        self.buffer.extend(got);
        Ok(self.take_buffered(max))
    }

    async fn assign(&mut self, partitions: &[u32]) -> Result<()> {
        let total = self.queue.conn().keys().partitions();
        let newly = self.assigned.reassign(partitions, total)?;
        let assigned = &self.assigned;
        self.takeover.retain(|p, _| assigned.contains(*p));
        for p in newly {
            self.takeover.insert(p, "0-0".to_owned());
        }
        // Buffered entries of partitions given up stay pending for their
        // next holder.
        self.buffer
            .retain(|d| parse_entry(&d.id, total).is_ok_and(|(p, _, _)| assigned.contains(p)));
        self.open.retain(|(p, _), _| assigned.contains(*p));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_round_trip() {
        assert_eq!(
            parse_entry(&EntryId("2/1700000000000-3/5".into()), 4).unwrap(),
            (2, "1700000000000-3", 5)
        );
        assert!(parse_entry(&EntryId("4/1-0/0".into()), 4).is_err());
        assert!(parse_entry(&EntryId("x/1-0/0".into()), 4).is_err());
        assert!(parse_entry(&EntryId("1/1/0".into()), 4).is_err());
        assert!(parse_entry(&EntryId("1/1-0".into()), 4).is_err());
        assert!(StreamId(1, 9) < StreamId(2, 0));
    }

    #[test]
    fn entries_of_both_kinds_and_layouts_decode() {
        use im_core::id::{ConversationId, UserId};
        use im_core::model::{Event, EventAudience};
        let conv = ConversationId::Direct(UserId(1), UserId(2));
        let env: Envelope = serde_json::from_value(serde_json::json!({
            "message": {
                "msg_id": "7", "conversation_id": "u:1:2", "seq": 0, "from": "1",
                "to": {"user": "2"}, "kind": "text", "body": "hi\nthere",
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
        let bulk = |s: &[u8]| Value::BulkString(s.to_vec());
        let one = |e: &Entry| Value::Array(vec![bulk(b"e"), bulk(&encode_entry(e).unwrap())]);
        let entries = |lines: Vec<Vec<u8>>, seqs: Option<&str>| {
            let mut v = vec![bulk(b"b"), bulk(&lines.join(&b'\n'))];
            if let Some(s) = seqs {
                v.push(bulk(b"s"));
                v.push(bulk(s.as_bytes()));
            }
            Value::Array(v)
        };
        let only = |lines: Vec<Line>| -> Vec<(u32, Entry)> {
            lines.into_iter().map(|(i, e)| (i, e.unwrap())).collect()
        };
        assert_eq!(encode_entry(&message).unwrap(), encode(&env).unwrap());
        assert!(
            !encode(&env).unwrap().contains(&b'\n'),
            "a line holds no raw newline"
        );
        assert_eq!(
            only(decode(&one(&message)).unwrap()),
            vec![(0, message.clone())]
        );
        assert_eq!(
            only(decode(&one(&event)).unwrap()),
            vec![(0, event.clone())]
        );
        let batch = entries(
            vec![encode(&env).unwrap(), encode_entry(&event).unwrap()],
            None,
        );
        assert_eq!(
            only(decode(&batch).unwrap()),
            vec![(0, message.clone()), (1, event.clone())]
        );
        // Seqs override; a 0 seq (a retry) is skipped.
        let sent = entries(
            vec![encode(&env).unwrap(), encode(&env).unwrap()],
            Some("9,0"),
        );
        let got = only(decode(&sent).unwrap());
        assert_eq!(got.len(), 1);
        let Entry::Message(with_seq) = &got[0].1 else {
            panic!("not a message");
        };
        assert_eq!(with_seq.message.seq, 9, "`s` overrides a message's seq");
        assert!(decode(&entries(vec![encode(&env).unwrap()], Some("1,2"))).is_err());
        // One bad line does not spoil the others.
        let mixed = entries(vec![b"{\"x\":1}".to_vec(), encode(&env).unwrap()], None);
        let lines = decode(&mixed).unwrap();
        assert!(lines[0].1.is_err());
        assert!(lines[1].1.is_ok());
        assert!(decode(&Value::Array(vec![bulk(b"x"), bulk(b"y")])).is_err());
    }
}
