//! From the push worker to offline notifications: [`OfflineNotifier`] takes
//! the messages of recipients that have no online session
//! ([`OfflineSink`]), gives each a title (the sender's name, or the group's)
//! and a preview off the push path, and offers it to the coalescing
//! [`NotifyDispatcher`]. [`UnreadBadge`] reads the badge from the
//! conversation index; [`ByPlatform`] picks a notifier per token platform.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::attachments::body_key;
use crate::error::{Error, Result};
use crate::id::{ConversationId, GroupId, UserId};
use crate::model::{Message, MessageKind};
use crate::ports::{
    ConversationStore, GroupStore, Notification, Notifier, NotifyOutcome, Platform, PushToken,
    UserStore,
};

use super::notify::{BadgeSource, NotifyDispatcher, PendingNotification};
use super::OfflineSink;

/// Messages waiting for a title, at most (more are dropped and counted).
const QUEUE: usize = 10_000;
/// Names kept (users and groups); the cache is cleared when full.
const NAMES: usize = 50_000;

/// An [`OfflineSink`] that notifies: never waits on the push path.
pub struct OfflineNotifier {
    tx: mpsc::Sender<(UserId, Message)>,
}

/// Resolves titles and previews, then offers to the dispatcher.
struct Titles {
    users: Arc<dyn UserStore>,
    groups: Arc<dyn GroupStore>,
    dispatcher: Arc<NotifyDispatcher>,
    names: Mutex<HashMap<NameKey, String>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum NameKey {
    User(UserId),
    Group(GroupId),
}

impl OfflineNotifier {
    /// Starts the title task (until `stop`) in front of `dispatcher`.
    pub fn start(
        users: Arc<dyn UserStore>,
        groups: Arc<dyn GroupStore>,
        dispatcher: Arc<NotifyDispatcher>,
        stop: CancellationToken,
    ) -> (Arc<OfflineNotifier>, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<(UserId, Message)>(QUEUE);
        let titles = Titles {
            users,
            groups,
            dispatcher,
            names: Mutex::new(HashMap::new()),
        };
        let task = tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => None,
                    m = rx.recv() => m,
                };
                let Some((user, message)) = next else { break };
                let pending = titles.pending(user, &message).await;
                titles.dispatcher.offer(pending);
            }
        });
        (Arc::new(OfflineNotifier { tx }), task)
    }
}

impl OfflineSink for OfflineNotifier {
    fn offline(&self, user: UserId, message: &Message) {
        if self.tx.try_send((user, message.clone())).is_err() {
            metrics::counter!("im_notifications_dropped_total").increment(1);
        }
    }
}

impl Titles {
    async fn name(&self, key: NameKey) -> Option<String> {
        if let Some(n) = self.names.lock().get(&key) {
            return Some(n.clone());
        }
        let name = match key {
            NameKey::User(u) => self.users.get(u).await.ok()??.username,
            NameKey::Group(g) => self.groups.get(g).await.ok()??.name,
        };
        let mut names = self.names.lock();
        if names.len() >= NAMES {
            names.clear();
        }
        names.insert(key, name.clone());
        Some(name)
    }

    async fn pending(&self, user: UserId, m: &Message) -> PendingNotification {
        let sender = self
            .name(NameKey::User(m.from))
            .await
            .unwrap_or_else(|| format!("user {}", m.from));
        let (title, preview) = match m.conversation_id {
            ConversationId::Group(g) => {
                let group = self
                    .name(NameKey::Group(g))
                    .await
                    .unwrap_or_else(|| "a group".into());
                (group, format!("{sender}: {}", preview(m)))
            }
            ConversationId::Direct(..) => (sender, preview(m)),
        };
        PendingNotification {
            user,
            conversation_id: m.conversation_id,
            title,
            preview,
            msg_id: m.msg_id,
            seq: m.seq,
            ts: m.ts,
        }
    }
}

/// What a notification says of a message (the dispatcher clips it).
fn preview(m: &Message) -> String {
    match (m.kind, &m.body) {
        (MessageKind::Text, serde_json::Value::String(s)) => s.clone(),
        (kind, body) if body_key(kind, body).is_some() => {
            let name = body.get("name").and_then(|v| v.as_str()).unwrap_or("");
            match kind {
                MessageKind::Image => format!("Picture {name}"),
                MessageKind::Audio => format!("Audio {name}"),
                MessageKind::Video => format!("Video {name}"),
                _ => format!("File {name}"),
            }
            .trim_end()
            .to_owned()
        }
        (MessageKind::Image, _) => "Picture".into(),
        (MessageKind::File, _) => "File".into(),
        _ => "New message".into(),
    }
}

/// The badge: the user's unread total over the conversation list (its first
/// `pages` pages of 100).
pub struct UnreadBadge {
    conversations: Arc<dyn ConversationStore>,
    pages: usize,
}

impl UnreadBadge {
    /// Over `conversations`, reading at most 5 pages (500 conversations).
    pub fn new(conversations: Arc<dyn ConversationStore>) -> Self {
        UnreadBadge {
            conversations,
            pages: 5,
        }
    }
}

#[async_trait]
impl BadgeSource for UnreadBadge {
    async fn badge(&self, user: UserId) -> Result<u64> {
        let mut total = 0;
        let mut after = None;
        for _ in 0..self.pages {
            let page = self.conversations.list(user, after, 100).await?;
            total += page.iter().map(|e| e.unread).sum::<u64>();
            if page.len() < 100 {
                break;
            }
            after = page.last().map(crate::ports::ListCursor::after);
        }
        Ok(total)
    }
}

/// A [`Notifier`] that hands each token to the notifier of its platform.
#[derive(Default, Clone)]
pub struct ByPlatform {
    notifiers: HashMap<Platform, Arc<dyn Notifier>>,
}

impl ByPlatform {
    /// No notifier yet: every token fails until one is added.
    pub fn new() -> Self {
        ByPlatform::default()
    }

    /// Tokens of `platform` go to `notifier`.
    pub fn with(mut self, platform: Platform, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.insert(platform, notifier);
        self
    }

    /// Whether any platform has a notifier.
    pub fn is_empty(&self) -> bool {
        self.notifiers.is_empty()
    }
}

#[async_trait]
impl Notifier for ByPlatform {
    async fn notify(&self, to: &PushToken, n: &Notification) -> Result<NotifyOutcome> {
        match self.notifiers.get(&to.platform) {
            Some(notifier) => notifier.notify(to, n).await,
            None => Err(Error::InvalidArgument(format!(
                "no notifier for platform {} on this server",
                to.platform
            ))),
        }
    }
}
