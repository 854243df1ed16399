//! An audit consumer for the `audit` consumer group.
//!
//! [`run`] reads every queue entry through the [`AUDIT_GROUP`] group and
//! appends one JSON line per entry to an [`AuditLog`]: the batch is written
//! and `fsync`ed before it is acked, so an acked entry is on disk. The log
//! rotates by size (`audit.jsonl` → `audit-<unix ms>.jsonl`) and keeps a
//! bounded number of rotated files.
//!
//! # Record format (one JSON object per line, `"v": 1`)
//! ```text
//! {"v":1,"entry_id":"3/1700000000000-0","audited_at":1700000000123,"type":"message","message":{…message object…}}
//! {"v":1,"entry_id":"3/1700000000001-0","audited_at":1700000000124,"type":"event","event":{"kind":"recalled",…},"to":{…}}
//! ```
//! `entry_id` is the queue's id of the entry: delivery to the audit group is
//! at least once (a crash between the fsync and the ack replays the batch),
//! so a reader that needs exactly once drops repeated `entry_id`s.
//!
//! [`AUDIT_GROUP`]: im_core::task::AUDIT_GROUP

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use im_core::model::Entry;
use im_core::ports::{Delivery, EntryId, MessageQueue};
use im_core::task::AUDIT_GROUP;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Why auditing stopped.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log could not be written.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The queue failed.
    #[error("queue: {0}")]
    Queue(#[from] im_core::Error),
}

/// Where and how the log is written.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The directory of `audit.jsonl` and its rotated files.
    pub dir: PathBuf,
    /// Rotate once the current file reaches this size.
    pub max_bytes: u64,
    /// Rotated files kept (older ones are deleted).
    pub keep: usize,
}

/// One line of the log.
#[derive(Debug, Serialize)]
struct Record<'a> {
    v: u8,
    entry_id: &'a str,
    audited_at: i64,
    #[serde(flatten)]
    body: Body<'a>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Body<'a> {
    Message {
        message: &'a im_core::model::Message,
    },
    Event {
        event: &'a im_core::model::Event,
        to: &'a im_core::model::EventAudience,
    },
}

/// An append-only JSON-lines file with size-based rotation.
#[derive(Debug)]
pub struct AuditLog {
    config: LogConfig,
    file: File,
    size: u64,
}

impl AuditLog {
    /// Opens (or creates) `dir/audit.jsonl` for appending.
    pub fn open(config: LogConfig) -> Result<AuditLog, AuditError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| io(&config.dir, e))?;
        let path = config.dir.join("audit.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let size = file.metadata().map_err(|e| io(&path, e))?.len();
        Ok(AuditLog { config, file, size })
    }

    /// The current file.
    pub fn current_path(&self) -> PathBuf {
        self.config.dir.join("audit.jsonl")
    }

    /// Appends one record per delivery and syncs the file to disk.
    pub fn append(&mut self, batch: &[Delivery]) -> Result<(), AuditError> {
        let now = im_core::id::now_ms();
        let mut buf = Vec::with_capacity(batch.len() * 512);
        for d in batch {
            let body = match &d.entry {
                Entry::Message(env) => Body::Message {
                    message: &env.message,
                },
                Entry::Event(ev) => Body::Event {
                    event: &ev.event,
                    to: &ev.to,
                },
            };
            let record = Record {
                v: 1,
                entry_id: &d.id.0,
                audited_at: now,
                body,
            };
            // Our own types always serialize; a failure would be a bug.
            serde_json::to_writer(&mut buf, &record).map_err(|e| {
                io(
                    &self.current_path(),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            })?;
            buf.push(b'\n');
        }
        let path = self.current_path();
        self.file.write_all(&buf).map_err(|e| io(&path, e))?;
        self.file.sync_data().map_err(|e| io(&path, e))?;
        self.size += buf.len() as u64;
        if self.size >= self.config.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// Renames the current file aside and starts a new one; prunes old files.
    pub fn rotate(&mut self) -> Result<(), AuditError> {
        let current = self.current_path();
        let mut stamp = im_core::id::now_ms();
        let rotated = loop {
            let p = self.config.dir.join(format!("audit-{stamp}.jsonl"));
            if !p.exists() {
                break p;
            }
            stamp += 1;
        };
        std::fs::rename(&current, &rotated).map_err(|e| io(&current, e))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)
            .map_err(|e| io(&current, e))?;
        self.size = 0;
        let mut old = self.rotated_files()?;
        while old.len() > self.config.keep {
            let p = old.remove(0);
            std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
        }
        Ok(())
    }

    /// Rotated files, oldest first.
    pub fn rotated_files(&self) -> Result<Vec<PathBuf>, AuditError> {
        let dir = &self.config.dir;
        let mut out: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stamp = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
                Some((stamp.parse().ok()?, e.path()))
            })
            .collect();
        out.sort();
        Ok(out.into_iter().map(|(_, p)| p).collect())
    }
}

fn io(path: &Path, source: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How the consumer reads the queue.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// This consumer's name in the `audit` group.
    pub consumer: String,
    /// Most entries per fetch.
    pub batch: usize,
    /// How long a fetch waits.
    pub block: Duration,
    /// Entries pending this long in a dead audit consumer are taken over.
    pub claim_idle: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            consumer: "audit-1".into(),
            batch: 512,
            block: Duration::from_millis(500),
            claim_idle: Duration::from_secs(30),
        }
    }
}

/// Audits until `stop` fires: creates the `audit` group if needed, then
/// fetch → append + fsync → ack; entries of a dead audit consumer are claimed.
/// Returns how many entries were written.
pub async fn run(
    queue: &dyn MessageQueue,
    log: &mut AuditLog,
    config: &ConsumerConfig,
    stop: CancellationToken,
) -> Result<u64, AuditError> {
    queue.create_group(AUDIT_GROUP).await?;
    let mut consumer = queue.consumer(AUDIT_GROUP, &config.consumer).await?;
    let mut written = 0u64;
    let mut next_claim = tokio::time::Instant::now();
    loop {
        let mut batch = Vec::new();
        if tokio::time::Instant::now() >= next_claim {
            batch = consumer
                .claim_stale(config.claim_idle, config.batch)
                .await?;
            next_claim = tokio::time::Instant::now() + config.claim_idle / 2;
        }
        if batch.is_empty() {
            batch = tokio::select! {
                _ = stop.cancelled() => return Ok(written),
                got = consumer.fetch(config.batch, config.block) => match got {
                    Ok(b) => b,
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(error = %e, "audit fetch failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                },
            };
        }
        if batch.is_empty() {
            if stop.is_cancelled() {
                return Ok(written);
            }
            continue;
        }
        log.append(&batch)?;
        written += batch.len() as u64;
        let ids: Vec<EntryId> = batch.iter().map(|d| d.id.clone()).collect();
        consumer.ack(&ids).await?;
    }
}
