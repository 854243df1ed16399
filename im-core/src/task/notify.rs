//! The notification dispatcher: coalesces the messages of offline users into
//! few notifications and sends them to every registered device.
//!
//! [`NotifyDispatcher::offer`] is called on the push path for each message to
//! a user without a live session; it never waits (a bounded channel; when it
//! is full the notification is dropped and counted). A background task
//! ([`NotifyDispatcher::spawn`]) keeps one window per (user, conversation):
//! the first message of a burst opens it, later ones join it, and when it
//! closes ([`NotifyConfig::coalesce_window`] after the first) one
//! [`Notification`] goes out for the latest message with
//! `messages` = how many joined. For each of the user's tokens it is sent
//! through the [`Notifier`] with retries; tokens the provider calls gone are
//! removed from the [`DeviceStore`].
//!
//! Notifications are best effort: the messages themselves are in the
//! archive, and a dropped notification only means a device learns of them
//! when the app next opens.
//!
//! Metrics: `im_notifications_sent_total` (deliveries to a device),
//! `im_notifications_failed_total` (deliveries given up),
//! `im_notifications_coalesced_total` (messages folded into another's
//! notification), `im_notifications_dropped_total` (offers refused: the
//! channel or the pending windows full), `im_notifications_tokens_removed_total`
//! (tokens the provider called gone), and the gauge `im_notifications_pending`
//! (open windows and closed ones waiting for a send slot).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::id::{ConversationId, MessageId, UserId};
use crate::ports::{DeviceStore, Notification, Notifier, NotifyOutcome, PushToken};

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// How long a window collects messages after its first (default 3 s).
    pub coalesce_window: Duration,
    /// Attempts of one delivery to one device, the first included (default 4).
    pub max_attempts: u32,
    /// Wait before the first retry; it doubles with each further one, with
    /// jitter (between half and all of it; default 200 ms).
    pub retry_base: Duration,
    /// Deadline of one attempt (default 10 s): a hanging provider costs a
    /// retry, not a send slot forever.
    pub attempt_timeout: Duration,
    /// Most notifications being delivered at once (their device lookups and
    /// sends; the devices of one user are sent to concurrently; default 64).
    pub max_in_flight: usize,
    /// Most windows open plus notifications waiting for a send slot (default
    /// 100 000): a message that would open a window beyond it is dropped.
    pub max_pending: usize,
    /// Capacity of the channel between [`NotifyDispatcher::offer`] and the
    /// background task (default 10 000).
    pub queue_capacity: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            coalesce_window: Duration::from_secs(3),
            max_attempts: 4,
            retry_base: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(10),
            max_in_flight: 64,
            max_pending: 100_000,
            queue_capacity: 10_000,
        }
    }
}

/// Longest title sent, in characters (longer ones are cut, ending in `…`).
pub const MAX_TITLE_CHARS: usize = 100;

/// Longest preview sent, in characters (longer ones are cut, ending in `…`):
/// providers refuse payloads over 4 KB.
pub const MAX_PREVIEW_CHARS: usize = 200;

/// A message to notify an offline user about, as the push path offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotification {
    /// The recipient.
    pub user: UserId,
    /// The message's conversation.
    pub conversation_id: ConversationId,
    /// The notification title (sender or group name; cut to
    /// [`MAX_TITLE_CHARS`]).
    pub title: String,
    /// The preview text of the message (shown unless the user hides
    /// previews; cut to [`MAX_PREVIEW_CHARS`]).
    pub preview: String,
    /// The message.
    pub msg_id: MessageId,
    /// Its seq.
    pub seq: u64,
    /// Its time (Unix ms).
    pub ts: i64,
}

/// Where the badge number (the user's unread total) comes from.
///
/// Closures `Fn(UserId) -> BoxFuture<'static, Result<u64>>` implement it:
///
/// ```
/// use std::sync::Arc;
/// use futures::FutureExt;
/// use im_core::id::UserId;
/// use im_core::task::BadgeSource;
/// let badge: Arc<dyn BadgeSource> = Arc::new(|_user: UserId| async { Ok::<u64, im_core::Error>(7) }.boxed());
/// ```
#[async_trait]
pub trait BadgeSource: Send + Sync + 'static {
    /// The unread total of `user`.
    async fn badge(&self, user: UserId) -> Result<u64>;
}

#[async_trait]
impl<F> BadgeSource for F
where
    F: Fn(UserId) -> BoxFuture<'static, Result<u64>> + Send + Sync + 'static,
{
    async fn badge(&self, user: UserId) -> Result<u64> {
        self(user).await
    }
}

/// Counts since the dispatcher was made (the same as its metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyStats {
    /// Offers accepted into the channel.
    pub offered: u64,
    /// Offers dropped (the channel full, or too many pending windows).
    pub dropped: u64,
    /// Offers folded into another message's notification.
    pub coalesced: u64,
    /// Notifications built (windows closed).
    pub notifications: u64,
    /// Deliveries to a device the provider accepted.
    pub sent: u64,
    /// Deliveries given up (attempts exhausted, a permanent error, or the
    /// user's devices unreadable).
    pub failed: u64,
    /// Tokens removed because the provider called them gone.
    pub tokens_removed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    offered: AtomicU64,
    dropped: AtomicU64,
    coalesced: AtomicU64,
    notifications: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    tokens_removed: AtomicU64,
}

impl Counters {
    fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("im_notifications_dropped_total").increment(n);
    }
}

/// Coalesces notifications for offline users and sends them (see the
/// module docs).
pub struct NotifyDispatcher {
    tx: mpsc::Sender<PendingNotification>,
    rx: Mutex<Option<mpsc::Receiver<PendingNotification>>>,
    notifier: Arc<dyn Notifier>,
    devices: Arc<dyn DeviceStore>,
    badge: Option<Arc<dyn BadgeSource>>,
    config: NotifyConfig,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for NotifyDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyDispatcher")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl NotifyDispatcher {
    /// A dispatcher sending through `notifier` to the tokens of `devices`.
    /// Without [`NotifyDispatcher::with_badge`] the badge is the number of
    /// messages of the notification.
    pub fn new(
        notifier: Arc<dyn Notifier>,
        devices: Arc<dyn DeviceStore>,
        config: NotifyConfig,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        NotifyDispatcher {
            tx,
            rx: Mutex::new(Some(rx)),
            notifier,
            devices,
            badge: None,
            config,
            counters: Arc::new(Counters::default()),
        }
    }

    /// Takes the badge (the user's unread total) from `badge`. Should it
    /// fail, the badge is the number of messages of the notification.
    pub fn with_badge(mut self, badge: Arc<dyn BadgeSource>) -> Self {
        self.badge = Some(badge);
        self
    }

    /// The settings.
    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    /// Hands a message over for notification. Never waits: when the channel
    /// is full (or the task stopped) it is dropped and counted.
    pub fn offer(&self, pending: PendingNotification) {
        match self.tx.try_send(pending) {
            Ok(()) => {
                self.counters.offered.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => self.counters.dropped(1),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> NotifyStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NotifyStats {
            offered: get(&c.offered),
            dropped: get(&c.dropped),
            coalesced: get(&c.coalesced),
            notifications: get(&c.notifications),
            sent: get(&c.sent),
            failed: get(&c.failed),
            tokens_removed: get(&c.tokens_removed),
        }
    }

    /// Starts the background task; it runs until `stop` fires (or every
    /// handle of the dispatcher is dropped), then sends what is pending at
    /// once, waits for the deliveries in flight, and ends. Only the first
    /// call starts a task; later ones return a task that ends at once.
    pub fn spawn(self: Arc<Self>, stop: CancellationToken) -> JoinHandle<()> {
        let rx = self.rx.lock().take();
        let delivery = Arc::new(Delivery {
            notifier: self.notifier.clone(),
            devices: self.devices.clone(),
            badge: self.badge.clone(),
            config: self.config.clone(),
            counters: self.counters.clone(),
        });
        drop(self);
        tokio::spawn(async move {
            match rx {
                Some(rx) => Coalescer::new(delivery).run(rx, stop).await,
                None => {
                    tracing::error!("NotifyDispatcher::spawn called twice; the second does nothing")
                }
            }
        })
    }
}

type Key = (UserId, ConversationId);

/// An open window, or a closed one waiting to be sent.
struct Window {
    count: u32,
    latest: PendingNotification,
}

struct Coalescer {
    delivery: Arc<Delivery>,
    windows: HashMap<Key, Window>,
    /// When each open window closes. Every window lasts the same, so this is
    /// in opening order.
    deadlines: VecDeque<(Instant, Key)>,
    ready: VecDeque<Window>,
    in_flight: JoinSet<()>,
}

impl Coalescer {
    fn new(delivery: Arc<Delivery>) -> Self {
        Coalescer {
            delivery,
            windows: HashMap::new(),
            deadlines: VecDeque::new(),
            ready: VecDeque::new(),
            in_flight: JoinSet::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<PendingNotification>, stop: CancellationToken) {
        loop {
            self.start_ready();
            let next = self.deadlines.front().map(|(at, _)| *at);
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "a notification delivery panicked");
                    }
                }
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.close_due(Instant::now());
                }
                got = rx.recv() => match got {
                    Some(p) => self.merge(p),
                    None => break,
                },
            }
            self.gauge();
        }
        // Stopping: what was offered and every open window goes out now.
        rx.close();
        while let Some(p) = rx.recv().await {
            self.merge(p);
        }
        while let Some((_, key)) = self.deadlines.pop_front() {
            self.close(key);
        }
        loop {
            self.start_ready();
            self.gauge();
            match self.in_flight.join_next().await {
                Some(Err(e)) => tracing::error!(error = %e, "a notification delivery panicked"),
                Some(Ok(())) => {}
                None => break,
            }
        }
    }

    fn pending(&self) -> usize {
        self.windows.len() + self.ready.len()
    }

    fn gauge(&self) {
        metrics::gauge!("im_notifications_pending").set(self.pending() as f64);
    }

    fn merge(&mut self, p: PendingNotification) {
        let key = (p.user, p.conversation_id);
        if let Some(w) = self.windows.get_mut(&key) {
            w.count = w.count.saturating_add(1);
            if p.seq >= w.latest.seq {
                w.latest = p;
            }
            return;
        }
        if self.pending() >= self.delivery.config.max_pending {
            self.delivery.counters.dropped(1);
            return;
        }
        self.windows.insert(
            key,
            Window {
                count: 1,
                latest: p,
            },
        );
        self.deadlines
            .push_back((Instant::now() + self.delivery.config.coalesce_window, key));
    }

    fn close_due(&mut self, now: Instant) {
        while let Some((at, key)) = self.deadlines.front().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            self.close(key);
        }
    }

    fn close(&mut self, key: Key) {
        if let Some(w) = self.windows.remove(&key) {
            let folded = u64::from(w.count.saturating_sub(1));
            let c = &self.delivery.counters;
            c.coalesced.fetch_add(folded, Ordering::Relaxed);
            c.notifications.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("im_notifications_coalesced_total").increment(folded);
            self.ready.push_back(w);
        }
    }

    fn start_ready(&mut self) {
        while self.in_flight.len() < self.delivery.config.max_in_flight.max(1) {
            let Some(w) = self.ready.pop_front() else {
                break;
            };
            self.in_flight.spawn(self.delivery.clone().deliver(w));
        }
    }
}

/// What a delivery needs, shared by the deliveries in flight.
struct Delivery {
    notifier: Arc<dyn Notifier>,
    devices: Arc<dyn DeviceStore>,
    badge: Option<Arc<dyn BadgeSource>>,
    config: NotifyConfig,
    counters: Arc<Counters>,
}

impl Delivery {
    fn failed(&self, n: u64) {
        self.counters.failed.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("im_notifications_failed_total").increment(n);
    }

    async fn deliver(self: Arc<Self>, w: Window) {
        let user = w.latest.user;
        let tokens = match self.devices.list(user).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%user, error = %e, "reading the devices failed; notification dropped");
                self.failed(1);
                return;
            }
        };
        if tokens.is_empty() {
            return;
        }
        // Unknown setting: hide the preview (privacy first).
        let show = match self.devices.preview(user).await {
            Ok(show) => show,
            Err(e) => {
                tracing::warn!(%user, error = %e, "reading the preview setting failed; hiding it");
                false
            }
        };
        let badge = match &self.badge {
            None => u64::from(w.count),
            Some(b) => b.badge(user).await.unwrap_or_else(|e| {
                tracing::warn!(%user, error = %e, "reading the badge failed");
                u64::from(w.count)
            }),
        };
        let p = w.latest;
        let n = Notification {
            user,
            conversation_id: p.conversation_id,
            title: clip(p.title, MAX_TITLE_CHARS),
            preview: show.then(|| clip(p.preview, MAX_PREVIEW_CHARS)),
            badge,
            messages: w.count,
            last_msg_id: p.msg_id,
            last_seq: p.seq,
            ts: p.ts,
        };
        futures::future::join_all(tokens.iter().map(|t| self.send(t, &n))).await;
    }

    async fn send(&self, to: &PushToken, n: &Notification) {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let call = self.notifier.notify(to, n);
            let res = match tokio::time::timeout(self.config.attempt_timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout(format!("notification to {}", to.platform))),
            };
            match res {
                Ok(NotifyOutcome::Delivered) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("im_notifications_sent_total").increment(1);
                    return;
                }
                Ok(NotifyOutcome::TokenGone) => {
                    self.counters.tokens_removed.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("im_notifications_tokens_removed_total").increment(1);
                    if let Err(e) = self.devices.remove_token(n.user, &to.token).await {
                        tracing::warn!(user = %n.user, device = %to.device, error = %e, "removing a gone token failed");
                    }
                    return;
                }
                Err(e) if e.is_retryable() && attempt < self.config.max_attempts => {
                    tracing::debug!(user = %n.user, device = %to.device, attempt, error = %e, "notification failed; retrying");
                    tokio::time::sleep(backoff(self.config.retry_base, attempt)).await;
                }
                Err(e) => {
                    tracing::warn!(user = %n.user, device = %to.device, attempt, error = %e, "notification failed; giving up");
                    self.failed(1);
                    return;
                }
            }
        }
    }
}

/// `s` cut to at most `max` characters, the last one `…` when cut.
fn clip(mut s: String, max: usize) -> String {
    if let Some((at, _)) = s.char_indices().nth(max.saturating_sub(1)) {
        if s[at..].chars().nth(1).is_some() {
            s.truncate(at);
            s.push('…');
        }
    }
    s
}

/// The wait after the `attempt`-th failure: `base * 2^(attempt-1)`, capped at
/// a minute, of which a random half to all.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let full = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(Duration::from_secs(60));
    full.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_clipped_on_character_boundaries() {
        assert_eq!(clip("hello".into(), 5), "hello");
        assert_eq!(clip("hello!".into(), 5), "hell…");
        assert_eq!(clip("ünïcödé".into(), 4), "ünï…");
        assert_eq!(clip(String::new(), 3), "");
        assert_eq!(
            clip("x".repeat(500), MAX_PREVIEW_CHARS).chars().count(),
            MAX_PREVIEW_CHARS
        );
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_is_capped() {
        let base = Duration::from_millis(200);
        for attempt in 1..6u32 {
            let full = base * 2u32.pow(attempt - 1);
            for _ in 0..50 {
                let b = backoff(base, attempt);
                assert!(b >= full / 2 && b <= full, "attempt {attempt}: {b:?}");
            }
        }
        assert!(backoff(base, 40) <= Duration::from_secs(60));
        assert!(backoff(base, 40) >= Duration::from_secs(30));
    }
}
