//! `WebhookNotifier`: notifications as signed POSTs to an endpoint of yours
//! (which may relay them to any provider).
//!
//! Body: `{"event":"notification","platform","token","device","notification":{…}}`
//! where `notification` is [`Notification`] as JSON (ids as strings,
//! `preview` null when hidden). Headers and signature as every webhook call
//! of [`crate::webhook`]: `X-Im-Event: notification`, `X-Im-Timestamp`,
//! `X-Im-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`;
//! check them with [`crate::webhook::verify_signature`].
//!
//! Answers: 2xx delivered; 404 or 410 the token is gone; 429 and 5xx (and no
//! answer) retryable; any other status a rejected request.

use std::time::Duration;

use async_trait::async_trait;
use im_core::ports::{Notification, Notifier, NotifyOutcome, PushToken};
use im_core::{Error, Result};
use serde_json::json;

use super::{client, send_error, status_error, DEFAULT_TIMEOUT};
use crate::webhook::signed_post;

/// The `X-Im-Event` of a notification.
const EVENT: &str = "notification";

/// A notifier POSTing signed notifications to an HTTP endpoint.
#[derive(Clone)]
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// Notifications to `url`, signed with `secret`, 10 s per call.
    pub fn new(url: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self> {
        Self::with_timeout(url, secret, DEFAULT_TIMEOUT)
    }

    /// The same with another deadline per call.
    pub fn with_timeout(
        url: impl Into<String>,
        secret: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Self> {
        Ok(WebhookNotifier {
            client: client(timeout, false)?,
            url: url.into(),
            secret: secret.into(),
        })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, to: &PushToken, n: &Notification) -> Result<NotifyOutcome> {
        let body = serde_json::to_vec(&json!({
            "event": EVENT,
            "platform": to.platform,
            "token": to.token,
            "device": to.device,
            "notification": n,
        }))
        .map_err(|e| Error::Internal(format!("notification does not serialize: {e}")))?;
        let r = signed_post(&self.client, &self.url, &self.secret, EVENT, body)
            .send()
            .await
            .map_err(|e| send_error("notification webhook", e))?;
        let status = r.status();
        if status.is_success() {
            return Ok(NotifyOutcome::Delivered);
        }
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Ok(NotifyOutcome::TokenGone);
        }
        let detail = r.text().await.unwrap_or_default();
        Err(status_error("notification webhook", status, &detail))
    }
}
