//! Watch side: one task per watched service keeps the live set of its
//! instances in a shared `tokio::sync::watch` channel.
//!
//! The task lists `{namespace}/{service}/`, then watches it from the listed
//! revision + 1, applying events in order. On compaction, error, end of the
//! stream or reconnect it lists again (with backoff while etcd is down) and
//! resumes; meanwhile the channel keeps the last known set. It retires when
//! the last receiver is dropped.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};
use im_core::ports::ServiceInstance;
use im_core::{Error, Result};
use tokio::sync::watch;

use super::{lock, Backoff, Shared};

/// Longest pause between two re-list attempts while etcd is unreachable.
const RELIST_BACKOFF_CAP: Duration = Duration::from_secs(1);

/// The sending side of a service's live set.
pub(crate) type ServiceSender = watch::Sender<Vec<ServiceInstance>>;

/// Instances keyed by the id part of their key.
type Set = BTreeMap<String, ServiceInstance>;

/// A receiver of the live set of `service`, starting a watch task if none runs.
pub(crate) async fn subscribe(
    shared: &Arc<Shared>,
    service: &str,
) -> Result<watch::Receiver<Vec<ServiceInstance>>> {
    if let Some(tx) = lock(&shared.watches).get(service) {
        return Ok(tx.subscribe());
    }
    let prefix = shared.prefix(service);
    let (_, mut c) = shared.client();
    let (set, revision) = list(shared, &mut c, &prefix).await?;
    let mut watches = lock(&shared.watches);
    if let Some(tx) = watches.get(service) {
        // Another caller started it while we listed.
        return Ok(tx.subscribe());
    }
    let (tx, rx) = watch::channel(set.values().cloned().collect());
    let tx = Arc::new(tx);
    watches.insert(service.to_owned(), Arc::clone(&tx));
    drop(watches);
    tracing::info!(%prefix, revision, instances = set.len(), "etcd: watching service");
    tokio::spawn(run(
        Arc::clone(shared),
        service.to_owned(),
        tx,
        set,
        revision + 1,
    ));
    Ok(rx)
}

/// Lists `prefix`: the instances under it and the revision of the read.
async fn list(shared: &Shared, c: &mut Client, prefix: &str) -> Result<(Set, i64)> {
    let resp = shared
        .call(
            &format!("list of {prefix}"),
            c.get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?;
    let revision = resp
        .header()
        .map(|h| h.revision())
        .ok_or_else(|| Error::Internal("etcd: range response without header".to_owned()))?;
    let mut set = Set::new();
    for kv in resp.kvs() {
        if let Some((id, inst)) = decode(prefix, kv) {
            set.insert(id, inst);
        }
    }
    Ok((set, revision))
}

/// The id and instance stored in `kv`, or `None` (logged) if it is not one.
fn decode(prefix: &str, kv: &KeyValue) -> Option<(String, ServiceInstance)> {
    let id = id_of(prefix, kv)?;
    match serde_json::from_slice::<ServiceInstance>(kv.value()) {
        Ok(inst) => Some((id, inst)),
        Err(e) => {
            tracing::warn!(key = %String::from_utf8_lossy(kv.key()), error = %e,
                "etcd: ignoring a value that is not a service instance");
            None
        }
    }
}

/// The id part of an instance key directly under `prefix`.
fn id_of(prefix: &str, kv: &KeyValue) -> Option<String> {
    let rest = kv.key().strip_prefix(prefix.as_bytes())?;
    let id = std::str::from_utf8(rest).ok()?;
    (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
}

/// Publishes `set` if it differs from the current value.
fn publish(tx: &ServiceSender, set: &Set) -> bool {
    tx.send_if_modified(|current| {
        if current.len() == set.len() && current.iter().zip(set.values()).all(|(a, b)| a == b) {
            return false;
        }
        *current = set.values().cloned().collect();
        true
    })
}

/// Runs `fut` unless every receiver goes away first (then `None`).
async fn unless_unwatched<F: Future>(tx: &ServiceSender, fut: F) -> Option<F::Output> {
    tokio::select! {
        out = fut => Some(out),
        () = tx.closed() => None,
    }
}

/// Removes the channel from the registry if it has no receiver; `false`
/// when a new receiver arrived meanwhile (the task must go on).
fn retire(shared: &Shared, service: &str, tx: &Arc<ServiceSender>) -> bool {
    let mut watches = lock(&shared.watches);
    if tx.receiver_count() > 0 {
        return false;
    }
    if watches.get(service).is_some_and(|t| Arc::ptr_eq(t, tx)) {
        watches.remove(service);
    }
    true
}

/// The watch task of one service.
async fn run(
    shared: Arc<Shared>,
    service: String,
    tx: Arc<ServiceSender>,
    mut set: Set,
    mut next_rev: i64,
) {
    let prefix = shared.prefix(&service);
    let mut backoff = Backoff::new(RELIST_BACKOFF_CAP);
    let mut failures = 0u32;
    let mut need_list = false;
    loop {
        let (generation, mut c) = shared.client();
        if need_list {
            let step = async {
                match list(&shared, &mut c, &prefix).await {
                    Ok(found) => Ok(found),
                    Err(e) => {
                        shared.reconnect(generation).await;
                        backoff.wait().await;
                        Err(e)
                    }
                }
            };
            match unless_unwatched(&tx, step).await {
                None if retire(&shared, &service, &tx) => break,
                None => {}
                Some(Ok((fresh, revision))) => {
                    set = fresh;
                    next_rev = revision + 1;
                    need_list = false;
                    backoff = Backoff::new(RELIST_BACKOFF_CAP);
                    failures = 0;
                    let changed = publish(&tx, &set);
                    tracing::info!(%prefix, revision, instances = set.len(), changed,
                        "etcd: re-listed service; resuming watch");
                }
                Some(Err(e)) => {
                    failures += 1;
                    // Warn on the first failure and every 10th, not at every retry.
                    if failures == 1 || failures % 10 == 0 {
                        tracing::warn!(%prefix, failures, error = %e,
                            "etcd: re-list failed; keeping the last known set");
                    } else {
                        tracing::debug!(%prefix, failures, error = %e,
                            "etcd: re-list failed; keeping the last known set");
                    }
                }
            }
            continue;
        }
        let follow = follow(&shared, &mut c, &prefix, &mut next_rev, &mut set, &tx);
        match unless_unwatched(&tx, follow).await {
            None if retire(&shared, &service, &tx) => break,
            None => {}
            Some(reason) => {
                tracing::warn!(%prefix, error = %reason,
                    "etcd: watch interrupted; re-listing");
                need_list = true;
            }
        }
    }
    tracing::debug!(%prefix, "etcd: no watcher left; watch task ends");
}

/// Watches `prefix` from `next_rev`, applying events to `set` and publishing
/// it, until something goes wrong; returns what did.
async fn follow(
    shared: &Shared,
    c: &mut Client,
    prefix: &str,
    next_rev: &mut i64,
    set: &mut Set,
    tx: &ServiceSender,
) -> Error {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(*next_rev);
    let mut stream = match shared
        .call(
            &format!("watch of {prefix}"),
            c.watch(prefix, Some(options)),
        )
        .await
    {
        Ok(s) => s,
        Err(e) => return e,
    };
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => return Error::unavailable_msg("etcd: watch stream ended"),
            Err(e) => return Error::unavailable("etcd: watch stream failed", e),
        };
        if resp.canceled() {
            return if resp.compact_revision() > 0 {
                Error::unavailable_msg(format!(
                    "etcd: revision {next_rev} compacted (now {})",
                    resp.compact_revision()
                ))
            } else {
                Error::unavailable_msg(format!("etcd: watch canceled: {}", resp.cancel_reason()))
            };
        }
        if resp.created() {
            tracing::debug!(%prefix, from = *next_rev, "etcd: watch established");
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            *next_rev = (*next_rev).max(kv.mod_revision() + 1);
            match event.event_type() {
                EventType::Put => {
                    if let Some((id, inst)) = decode(prefix, kv) {
                        set.insert(id, inst);
                    }
                }
                EventType::Delete => {
                    if let Some(id) = id_of(prefix, kv) {
                        set.remove(&id);
                    }
                }
            }
        }
        if publish(tx, set) {
            tracing::info!(%prefix, ids = ?set.keys().collect::<Vec<_>>(),
                "etcd: instance set changed");
        }
    }
}
