//! `NotifyDispatcher`: coalescing per (user, conversation), retries, gone
//! tokens, hidden previews, bounded memory, and an `offer` that never waits.
//!
//! Most tests run on paused time: the coalescing window and the backoffs
//! pass as soon as everything else is idle, so they are exact and instant.
//! Stopping the dispatcher (which sends what is pending and waits for the
//! deliveries) is the barrier before counting what was sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use im_core::id::{ConversationId, GroupId, MessageId, UserId};
use im_core::memory::MemoryDeviceStore;
use im_core::ports::{DeviceStore, Notification, Notifier, NotifyOutcome, Platform, PushToken};
use im_core::task::{NotifyConfig, NotifyDispatcher, PendingNotification};
use im_core::{Error, Result};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const WINDOW: Duration = Duration::from_secs(3);

/// What one call of the notifier saw.
#[derive(Debug, Clone)]
struct Call {
    token: String,
    n: Notification,
    at: Instant,
}

/// A notifier answering from a script per token (Delivered once the script
/// is empty), recording every call and reporting it on a channel.
struct Scripted {
    scripts: Mutex<HashMap<String, VecDeque<Result<NotifyOutcome>>>>,
    calls: Mutex<Vec<Call>>,
    seen: mpsc::UnboundedSender<Call>,
}

impl Scripted {
    fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Call>) {
        let (seen, rx) = mpsc::unbounded_channel();
        let s = Scripted {
            scripts: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            seen,
        };
        (Arc::new(s), rx)
    }

    fn script(&self, token: &str, answers: Vec<Result<NotifyOutcome>>) {
        self.scripts.lock().insert(token.into(), answers.into());
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    fn calls_to(&self, token: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.token == token)
            .collect()
    }
}

#[async_trait]
impl Notifier for Scripted {
    async fn notify(&self, to: &PushToken, n: &Notification) -> Result<NotifyOutcome> {
        let call = Call {
            token: to.token.clone(),
            n: n.clone(),
            at: Instant::now(),
        };
        self.calls.lock().push(call.clone());
        let _ = self.seen.send(call);
        self.scripts
            .lock()
            .get_mut(&to.token)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Ok(NotifyOutcome::Delivered))
    }
}

fn push_token(device: &str, token: &str) -> PushToken {
    PushToken {
        platform: Platform::Fcm,
        token: token.into(),
        device: device.into(),
        registered_at: 1,
    }
}

async fn devices_of(user: UserId, tokens: &[(&str, &str)]) -> Arc<MemoryDeviceStore> {
    let d = Arc::new(MemoryDeviceStore::new());
    for (device, token) in tokens {
        d.register(user, &push_token(device, token)).await.unwrap();
    }
    d
}

fn pending(user: UserId, c: ConversationId, seq: u64) -> PendingNotification {
    PendingNotification {
        user,
        conversation_id: c,
        title: format!("title {seq}"),
        preview: format!("message {seq}"),
        msg_id: MessageId(1000 + seq),
        seq,
        ts: 1_700_000_000_000 + seq as i64,
    }
}

fn group(g: u64) -> ConversationId {
    ConversationId::Group(GroupId(g))
}

struct Running {
    dispatcher: Arc<NotifyDispatcher>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(dispatcher: NotifyDispatcher) -> Running {
    let dispatcher = Arc::new(dispatcher);
    let stop = CancellationToken::new();
    let task = dispatcher.clone().spawn(stop.clone());
    Running {
        dispatcher,
        stop,
        task,
    }
}

impl Running {
    /// Stops the dispatcher and waits until it sent everything pending.
    async fn finish(self) -> Arc<NotifyDispatcher> {
        self.stop.cancel();
        self.task.await.unwrap();
        self.dispatcher
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_twenty_is_one_notification() {
    let user = UserId(7);
    let (notifier, mut seen) = Scripted::new();
    let devices = devices_of(user, &[("web", "tok-web")]).await;
    let badge = Arc::new(|u: UserId| async move { Ok::<u64, Error>(u.0 * 6) }.boxed());
    let r = start(
        NotifyDispatcher::new(notifier.clone(), devices, NotifyConfig::default()).with_badge(badge),
    );
    let started = Instant::now();
    for seq in 1..=20 {
        r.dispatcher.offer(pending(user, group(1), seq));
    }
    let first = seen.recv().await.unwrap();
    let waited = first.at - started;
    assert!(
        waited >= WINDOW && waited < WINDOW + Duration::from_millis(100),
        "one notification when the window closes, 3 s after the first message: {waited:?}"
    );
    let n = &first.n;
    assert_eq!(n.messages, 20);
    assert_eq!(n.last_seq, 20);
    assert_eq!(n.last_msg_id, MessageId(1020));
    assert_eq!(n.ts, 1_700_000_000_020);
    assert_eq!(n.title, "title 20");
    assert_eq!(n.preview.as_deref(), Some("message 20"));
    assert_eq!(n.badge, 42, "the badge comes from the badge source");
    assert_eq!((n.user, n.conversation_id), (user, group(1)));

    let d = r.finish().await;
    assert_eq!(notifier.calls().len(), 1, "exactly one notification");
    let s = d.stats();
    assert_eq!(
        (s.offered, s.notifications, s.coalesced, s.sent, s.failed),
        (20, 1, 19, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn conversations_and_windows_are_coalesced_separately() {
    let (alice, bob) = (UserId(1), UserId(2));
    let (notifier, _seen) = Scripted::new();
    let devices = devices_of(alice, &[("ios", "tok-alice")]).await;
    devices
        .register(bob, &push_token("android", "tok-bob"))
        .await
        .unwrap();
    let r = start(NotifyDispatcher::new(
        notifier.clone(),
        devices,
        NotifyConfig::default(),
    ));
    let direct = ConversationId::direct(alice, bob).unwrap();
    // Interleaved: alice in two conversations, bob in one.
    for seq in 1..=5 {
        r.dispatcher.offer(pending(alice, group(1), seq));
        if seq <= 3 {
            r.dispatcher.offer(pending(alice, direct, seq));
            r.dispatcher.offer(pending(bob, direct, seq));
        }
    }
    // One second later, still inside the windows; five seconds later, a new one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.dispatcher.offer(pending(alice, group(1), 6));
    tokio::time::sleep(Duration::from_secs(4)).await;
    r.dispatcher.offer(pending(alice, group(1), 7));
    let d = r.finish().await;

    let mut got: Vec<(String, ConversationId, u32, u64)> = notifier
        .calls()
        .into_iter()
        .map(|c| (c.token, c.n.conversation_id, c.n.messages, c.n.last_seq))
        .collect();
    got.sort_by_key(|g| (g.0.clone(), g.1.to_string(), g.3));
    assert_eq!(
        got,
        vec![
            ("tok-alice".into(), group(1), 6, 6),
            ("tok-alice".into(), group(1), 1, 7),
            ("tok-alice".into(), direct, 3, 3),
            ("tok-bob".into(), direct, 3, 3),
        ],
        "one notification per (user, conversation) and window"
    );
    let s = d.stats();
    assert_eq!((s.notifications, s.coalesced, s.sent), (4, 13 - 4, 4));
}

#[tokio::test(start_paused = true)]
async fn every_device_gets_it_and_hidden_previews_stay_hidden() {
    let user = UserId(3);
    let (notifier, _seen) = Scripted::new();
    let devices = devices_of(user, &[("ios", "a"), ("web", "b"), ("android", "c")]).await;
    devices.set_preview(user, false).await.unwrap();
    let r = start(NotifyDispatcher::new(
        notifier.clone(),
        devices,
        NotifyConfig::default(),
    ));
    r.dispatcher.offer(pending(user, group(9), 1));
    r.dispatcher.offer(pending(user, group(9), 2));
    let d = r.finish().await;
    let calls = notifier.calls();
    let mut tokens: Vec<&str> = calls.iter().map(|c| c.token.as_str()).collect();
    tokens.sort_unstable();
    assert_eq!(tokens, ["a", "b", "c"], "one send per registered device");
    for c in &calls {
        assert_eq!(c.n.preview, None, "the user hides previews");
        assert_eq!(c.n.body(), "2 new messages");
        assert_eq!(c.n.badge, 2, "without a badge source: the messages");
    }
    assert_eq!(d.stats().sent, 3);
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_with_backoff_then_counted() {
    let user = UserId(4);
    let (notifier, _seen) = Scripted::new();
    let down = || Err(Error::unavailable_msg("provider down"));
    notifier.script("flaky", vec![down(), down()]);
    notifier.script("down", vec![down(), down(), down(), down(), down()]);
    notifier.script(
        "bad",
        vec![Err(Error::InvalidArgument("bad payload".into()))],
    );
    let devices = devices_of(user, &[("a", "flaky"), ("b", "down"), ("c", "bad")]).await;
    let r = start(NotifyDispatcher::new(
        notifier.clone(),
        devices,
        NotifyConfig::default(),
    ));
    r.dispatcher.offer(pending(user, group(2), 1));
    let d = r.finish().await;

    assert_eq!(
        notifier.calls_to("flaky").len(),
        3,
        "two transient failures, then delivered"
    );
    let down_calls = notifier.calls_to("down");
    assert_eq!(
        down_calls.len(),
        4,
        "max_attempts (4) attempts, then given up"
    );
    // Backoff 200, 400, 800 ms, each with jitter between half and all of it.
    for (i, pair) in down_calls.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let full = Duration::from_millis(200 * (1 << i));
        assert!(
            gap >= full / 2 && gap <= full + Duration::from_millis(1),
            "retry {i} waited {gap:?}, expected {:?}..={full:?}",
            full / 2
        );
    }
    assert_eq!(
        notifier.calls_to("bad").len(),
        1,
        "a permanent error is not retried"
    );
    let s = d.stats();
    assert_eq!((s.sent, s.failed), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_gone_token_is_removed() {
    let user = UserId(5);
    let (notifier, _seen) = Scripted::new();
    notifier.script("dead", vec![Ok(NotifyOutcome::TokenGone)]);
    let devices = devices_of(user, &[("old", "dead"), ("new", "live")]).await;
    let r = start(NotifyDispatcher::new(
        notifier.clone(),
        devices.clone(),
        NotifyConfig::default(),
    ));
    r.dispatcher.offer(pending(user, group(3), 1));
    let d = r.finish().await;
    assert_eq!(
        notifier.calls_to("dead").len(),
        1,
        "a gone token is not retried"
    );
    assert_eq!(
        devices.list(user).await.unwrap(),
        vec![push_token("new", "live")],
        "the gone token was removed, the other kept"
    );
    let s = d.stats();
    assert_eq!((s.sent, s.failed, s.tokens_removed), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn stopping_sends_what_is_pending_at_once() {
    let user = UserId(6);
    let (notifier, _seen) = Scripted::new();
    let devices = devices_of(user, &[("web", "t")]).await;
    let r = start(NotifyDispatcher::new(
        notifier.clone(),
        devices,
        NotifyConfig::default(),
    ));
    let started = Instant::now();
    r.dispatcher.offer(pending(user, group(4), 1));
    r.dispatcher.offer(pending(user, group(4), 2));
    let d = r.finish().await;
    let calls = notifier.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].n.messages, 2);
    assert!(
        calls[0].at - started < WINDOW,
        "an open window is sent when the dispatcher stops, not dropped"
    );
    d.offer(pending(user, group(4), 3));
    assert_eq!(d.stats().dropped, 1, "offers after the stop are dropped");
}

#[tokio::test(start_paused = true)]
async fn pending_windows_are_bounded() {
    let user = UserId(8);
    let (notifier, _seen) = Scripted::new();
    let devices = devices_of(user, &[("web", "t")]).await;
    let config = NotifyConfig {
        max_pending: 2,
        ..NotifyConfig::default()
    };
    let r = start(NotifyDispatcher::new(notifier.clone(), devices, config));
    for g in 1..=3 {
        r.dispatcher.offer(pending(user, group(g), 1));
    }
    // Joining an open window needs no room.
    r.dispatcher.offer(pending(user, group(1), 2));
    let d = r.finish().await;
    let s = d.stats();
    assert_eq!(
        (s.offered, s.dropped, s.notifications, s.coalesced),
        (4, 1, 2, 1),
        "the third window did not fit; the join did"
    );
    let mut conversations: Vec<_> = notifier
        .calls()
        .into_iter()
        .map(|c| c.n.conversation_id.to_string())
        .collect();
    conversations.sort();
    assert_eq!(conversations, ["g:1", "g:2"]);
}

/// A notifier that never answers, and says when it was first called.
struct Hanging {
    entered: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

#[async_trait]
impl Notifier for Hanging {
    async fn notify(&self, _to: &PushToken, _n: &Notification) -> Result<NotifyOutcome> {
        if let Some(tx) = self.entered.lock().take() {
            let _ = tx.send(());
        }
        futures::future::pending().await
    }
}

#[tokio::test]
async fn offer_never_waits_even_when_the_notifier_hangs() {
    let user = UserId(9);
    let (entered, is_entered) = tokio::sync::oneshot::channel();
    let notifier = Arc::new(Hanging {
        entered: Mutex::new(Some(entered)),
    });
    let devices = devices_of(user, &[("web", "t")]).await;
    let config = NotifyConfig {
        coalesce_window: Duration::from_millis(1),
        max_in_flight: 1,
        queue_capacity: 8,
        ..NotifyConfig::default()
    };
    let r = start(NotifyDispatcher::new(notifier, devices, config));
    r.dispatcher.offer(pending(user, group(1), 1));
    is_entered.await.unwrap();

    // The only send slot hangs. This runtime has one thread and the loop
    // below never yields, so the task cannot drain the channel meanwhile:
    // 8 offers fit, the rest are dropped, and none of them waits.
    let clock = std::time::Instant::now();
    for seq in 2..=10_001 {
        r.dispatcher.offer(pending(user, group(seq), seq));
    }
    let took = clock.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "10 000 offers took {took:?}: offer must not wait"
    );
    let s = r.dispatcher.stats();
    assert_eq!((s.offered, s.dropped), (1 + 8, 10_000 - 8));
    r.task.abort();
}

/// A device store that cannot be read.
struct Broken;

#[async_trait]
impl DeviceStore for Broken {
    async fn register(&self, _: UserId, _: &PushToken) -> Result<()> {
        Err(Error::unavailable_msg("down"))
    }
    async fn list(&self, _: UserId) -> Result<Vec<PushToken>> {
        Err(Error::unavailable_msg("down"))
    }
    async fn remove(&self, _: UserId, _: &str) -> Result<bool> {
        Err(Error::unavailable_msg("down"))
    }
    async fn remove_token(&self, _: UserId, _: &str) -> Result<bool> {
        Err(Error::unavailable_msg("down"))
    }
    async fn set_preview(&self, _: UserId, _: bool) -> Result<()> {
        Err(Error::unavailable_msg("down"))
    }
    async fn preview(&self, _: UserId) -> Result<bool> {
        Err(Error::unavailable_msg("down"))
    }
}

#[tokio::test(start_paused = true)]
async fn unreadable_devices_count_as_failed() {
    let (notifier, _seen) = Scripted::new();
    let r = start(NotifyDispatcher::new(
        notifier.clone(),
        Arc::new(Broken),
        NotifyConfig::default(),
    ));
    r.dispatcher.offer(pending(UserId(1), group(1), 1));
    let d = r.finish().await;
    assert!(notifier.calls().is_empty());
    let s = d.stats();
    assert_eq!((s.notifications, s.sent, s.failed), (1, 0, 1));
}
