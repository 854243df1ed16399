//! Notifications for offline devices: [`Notifier`] sends one notification to
//! one device through a push provider (FCM, APNs, a webhook of yours), and
//! [`DeviceStore`] keeps each user's push tokens and notification settings.
//!
//! The coalescing, retrying sender in front of them is
//! [`crate::task::NotifyDispatcher`]; the built-in notifiers live in
//! `im_transport::notify`.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{ConversationId, MessageId, UserId};

/// Most devices (push tokens) one user may register.
pub const MAX_DEVICES_PER_USER: usize = 20;

/// Longest device label (the session's device label: 1–32 of
/// `A-Z a-z 0-9 _ -`).
pub const MAX_DEVICE_LABEL_LEN: usize = 32;

/// Longest push token, in bytes (FCM tokens are about 160 bytes, APNs tokens
/// 64 hex digits).
pub const MAX_PUSH_TOKEN_LEN: usize = 512;

/// The push service a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Firebase Cloud Messaging (Android, web, and iOS through Firebase).
    Fcm,
    /// Apple Push Notification service.
    Apns,
    /// An HTTP endpoint of your own (`im_transport::notify::WebhookNotifier`).
    Webhook,
}

impl Platform {
    /// The wire name: `"fcm"`, `"apns"` or `"webhook"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Fcm => "fcm",
            Platform::Apns => "apns",
            Platform::Webhook => "webhook",
        }
    }

    /// Parses a wire name.
    ///
    /// ```
    /// use im_core::ports::Platform;
    /// assert_eq!(Platform::parse("apns"), Some(Platform::Apns));
    /// assert_eq!(Platform::parse("APNS"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Platform> {
        Some(match s {
            "fcm" => Platform::Fcm,
            "apns" => Platform::Apns,
            "webhook" => Platform::Webhook,
            _ => return None,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One device's push token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushToken {
    /// The push service the token belongs to.
    pub platform: Platform,
    /// The provider's token (FCM registration token, APNs device token in
    /// hex, or whatever your webhook understands): 1–512 bytes of printable
    /// ASCII without spaces.
    pub token: String,
    /// The session's device label (`web`, `ios`, …: 1–32 of
    /// `A-Z a-z 0-9 _ -`); a user has at most one token per label.
    pub device: String,
    /// When it was registered (Unix ms).
    pub registered_at: i64,
}

impl PushToken {
    /// Checks the label and the token against the limits every
    /// [`DeviceStore`] enforces ([`Error::InvalidArgument`] otherwise).
    ///
    /// ```
    /// use im_core::ports::{Platform, PushToken};
    /// let t = |device: &str, token: &str| PushToken {
    ///     platform: Platform::Fcm, token: token.into(), device: device.into(), registered_at: 0,
    /// };
    /// assert!(t("ios", "abc:DEF-123_x").validate().is_ok());
    /// assert!(t("", "abc").validate().is_err());
    /// assert!(t("my phone", "abc").validate().is_err());
    /// assert!(t("ios", "a b").validate().is_err());
    /// assert!(t("ios", &"x".repeat(513)).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        validate_device(&self.device)?;
        if self.token.is_empty() || self.token.len() > MAX_PUSH_TOKEN_LEN {
            return Err(Error::InvalidArgument(format!(
                "a push token must be 1-{MAX_PUSH_TOKEN_LEN} bytes"
            )));
        }
        if !self.token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidArgument(
                "a push token must be printable ASCII without spaces".into(),
            ));
        }
        Ok(())
    }
}

/// Checks a device label: 1–32 of `A-Z a-z 0-9 _ -` (the session labels).
pub fn validate_device(device: &str) -> Result<()> {
    let ok = !device.is_empty()
        && device.len() <= MAX_DEVICE_LABEL_LEN
        && device
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "a device label must be 1-{MAX_DEVICE_LABEL_LEN} characters of A-Z, a-z, 0-9, _ and -"
        )))
    }
}

/// One notification to one user about one conversation: possibly several
/// messages coalesced into one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The recipient.
    pub user: UserId,
    /// The conversation the messages are in (providers collapse by it).
    pub conversation_id: ConversationId,
    /// The title (sender or group name, filled by the application).
    pub title: String,
    /// A preview of the latest message; `None` when the user hides previews.
    pub preview: Option<String>,
    /// The user's unread total (the app icon badge).
    pub badge: u64,
    /// How many messages this notification stands for.
    pub messages: u32,
    /// The latest of them.
    pub last_msg_id: MessageId,
    /// Its seq in the conversation.
    pub last_seq: u64,
    /// Its time (Unix ms).
    pub ts: i64,
}

impl Notification {
    /// The text to show: the preview, or without one `"New message"` /
    /// `"{n} new messages"`.
    ///
    /// ```
    /// use im_core::id::{ConversationId, GroupId, MessageId, UserId};
    /// use im_core::ports::Notification;
    /// let mut n = Notification {
    ///     user: UserId(1), conversation_id: ConversationId::Group(GroupId(2)),
    ///     title: "Ann".into(), preview: None, badge: 3, messages: 3,
    ///     last_msg_id: MessageId(9), last_seq: 7, ts: 0,
    /// };
    /// assert_eq!(n.body(), "3 new messages");
    /// n.messages = 1;
    /// assert_eq!(n.body(), "New message");
    /// n.preview = Some("hi".into());
    /// assert_eq!(n.body(), "hi");
    /// ```
    pub fn body(&self) -> String {
        match (&self.preview, self.messages) {
            (Some(p), _) => p.clone(),
            (None, 0 | 1) => "New message".to_owned(),
            (None, n) => format!("{n} new messages"),
        }
    }
}

/// What a provider said about one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// Accepted for delivery.
    Delivered,
    /// The token is invalid or no longer registered (FCM `UNREGISTERED`,
    /// APNs 410): the caller removes it ([`DeviceStore::remove_token`]).
    TokenGone,
}

/// Sends a notification to one device through a push provider.
///
/// Contract:
/// - `Ok(Delivered)` once the provider accepted it (not necessarily shown).
/// - `Ok(TokenGone)` when the provider says the token is invalid or
///   unregistered; nothing was delivered and the token should be removed.
/// - A transient failure (the provider unreachable, a 5xx, a rate limit, a
///   timeout) is a retryable error ([`Error::Unavailable`] or
///   [`Error::Timeout`], see [`Error::is_retryable`]): the caller tries again
///   later. A permanent one (a rejected payload, bad credentials) is
///   [`Error::InvalidArgument`] or [`Error::Backend`]: retrying will not help.
/// - It must not block for longer than its own deadline; the caller runs
///   many at once.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Sends `n` to the device of `to`.
    async fn notify(&self, to: &PushToken, n: &Notification) -> Result<NotifyOutcome>;
}

/// Each user's push tokens (one per device label) and notification settings.
///
/// Contract (checked by `testkit::device_suite`):
/// - `register` upserts by `(user, device)`: a user has one token per device
///   label, and registering the label again replaces its token, platform and
///   time. A token is held by one device of one user at a time: registering
///   a token that another device label or another user holds moves it (a
///   phone that changes hands notifies its new user only). Labels and tokens
///   are checked with [`PushToken::validate`] ([`Error::InvalidArgument`]).
/// - At most [`MAX_DEVICES_PER_USER`] devices per user: registering a new
///   label beyond that is [`Error::ResourceExhausted`] (replacing a
///   registered label always works), also under concurrent registrations.
/// - `list` returns the user's tokens sorted by device label (empty for an
///   unknown user).
/// - `remove` removes one device's token and says whether there was one;
///   `remove_token` removes a token by value from whichever device of the
///   user holds it (a stale token answered `TokenGone` must not remove the
///   fresh token a device registered meanwhile) and says whether it did.
/// - `preview` is true until `set_preview(user, false)`; the setting is kept
///   independently of the devices.
#[async_trait]
pub trait DeviceStore: Send + Sync + 'static {
    /// Registers (or replaces) the token of `token.device` for `user`.
    async fn register(&self, user: UserId, token: &PushToken) -> Result<()>;

    /// The user's tokens, sorted by device label.
    async fn list(&self, user: UserId) -> Result<Vec<PushToken>>;

    /// Removes the token of one device; whether there was one.
    async fn remove(&self, user: UserId, device: &str) -> Result<bool>;

    /// Removes a token by value; whether the user held it.
    async fn remove_token(&self, user: UserId, token: &str) -> Result<bool>;

    /// Shows (true) or hides (false) message previews in notifications.
    async fn set_preview(&self, user: UserId, show: bool) -> Result<()>;

    /// Whether notifications show message previews (default true).
    async fn preview(&self, user: UserId) -> Result<bool>;
}
