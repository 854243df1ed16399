//! `WebhookHook`: a [`SendHook`] that asks an HTTP endpoint of yours.
//!
//! Before a batch of sends is accepted it POSTs
//! `{"event":"before_send","sends":[{"from","to","conversation_id","kind","body","client_msg_id"}…]}`
//! and expects `200 {"verdicts":[{"action":"allow"} | {"action":"reject","reason"} |
//! {"action":"rewrite","body"}…]}`, one verdict per send in order. A timeout,
//! a non-2xx answer or a malformed one follows [`FailurePolicy`]: allow every
//! send (open) or refuse the batch with `unavailable` (closed).
//!
//! After messages are acked it POSTs `{"event":"after_send","messages":[message…]}`
//! off the send path, retrying a failed delivery (error or non-2xx) with
//! backoff.
//!
//! Every request carries `X-Im-Event`, `X-Im-Timestamp` (Unix ms) and
//! `X-Im-Signature: sha256=<hex>`, the HMAC-SHA256 with your secret of
//! `"{timestamp}.{body}"`; check it (and the timestamp's age) before trusting a
//! call. [`verify_signature`] does it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use im_core::model::Message;
use im_core::ports::{HookVerdict, PendingSend, SendHook};
use im_core::{Error, Result};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

/// What a failing before-hook call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Accept the sends as if allowed (availability first).
    Open,
    /// Refuse the batch with `unavailable` (policy first).
    #[default]
    Closed,
}

/// Where and how to call the webhook.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The endpoint (both events go to it; `X-Im-Event` tells them apart).
    pub url: String,
    /// The HMAC secret.
    pub secret: Vec<u8>,
    /// Call it before sends are accepted.
    pub before: bool,
    /// Call it after messages are acked.
    pub after: bool,
    /// Deadline of one call.
    pub timeout: Duration,
    /// What a failed before-call means.
    pub failure_policy: FailurePolicy,
    /// Further attempts of a failed after-call.
    pub after_retries: u32,
    /// Wait before the first retry (doubles each time).
    pub retry_backoff: Duration,
}

impl WebhookConfig {
    /// Both events to `url`, signed with `secret`: 2 s timeout, fail closed,
    /// 3 retries of after-calls from 200 ms.
    pub fn new(url: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        WebhookConfig {
            url: url.into(),
            secret: secret.into(),
            before: true,
            after: true,
            timeout: Duration::from_secs(2),
            failure_policy: FailurePolicy::Closed,
            after_retries: 3,
            retry_backoff: Duration::from_millis(200),
        }
    }
}

/// A send hook calling an HTTP endpoint.
#[derive(Debug, Clone)]
pub struct WebhookHook {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    config: WebhookConfig,
}

#[derive(Debug, Deserialize)]
struct BeforeAnswer {
    verdicts: Vec<Verdict>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum Verdict {
    Allow,
    Reject {
        #[serde(default)]
        reason: Option<String>,
    },
    Rewrite {
        body: serde_json::Value,
    },
}

impl WebhookHook {
    /// A hook over its own HTTP client.
    pub fn new(config: WebhookConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| Error::InvalidArgument(format!("webhook client: {e}")))?;
        Ok(WebhookHook {
            inner: Arc::new(Inner { client, config }),
        })
    }
}

impl Inner {
    async fn post(
        &self,
        event: &str,
        body: Vec<u8>,
    ) -> std::result::Result<reqwest::Response, String> {
        let r = signed_post(
            &self.client,
            &self.config.url,
            &self.config.secret,
            event,
            body,
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
        if r.status().is_success() {
            Ok(r)
        } else {
            Err(format!("answered {}", r.status()))
        }
    }

    async fn before(&self, batch: &[PendingSend]) -> std::result::Result<Vec<HookVerdict>, String> {
        let sends: Vec<_> = batch
            .iter()
            .map(|s| {
                json!({
                    "from": s.from, "to": s.to, "conversation_id": s.conversation_id,
                    "kind": s.kind, "body": s.body, "client_msg_id": s.client_msg_id,
                })
            })
            .collect();
        let body = serde_json::to_vec(&json!({"event": "before_send", "sends": sends}))
            .map_err(|e| e.to_string())?;
        let answer: BeforeAnswer = self
            .post("before_send", body)
            .await?
            .json()
            .await
            .map_err(|e| format!("malformed answer: {e}"))?;
        if answer.verdicts.len() != batch.len() {
            return Err(format!(
                "{} verdicts for {} sends",
                answer.verdicts.len(),
                batch.len()
            ));
        }
        Ok(answer
            .verdicts
            .into_iter()
            .map(|v| match v {
                Verdict::Allow => HookVerdict::Allow,
                Verdict::Reject { reason } => {
                    HookVerdict::Reject(reason.unwrap_or_else(|| "refused by the send hook".into()))
                }
                Verdict::Rewrite { body } => HookVerdict::Rewrite(body),
            })
            .collect())
    }

    async fn after(&self, body: Vec<u8>) {
        let mut backoff = self.config.retry_backoff;
        for attempt in 0..=self.config.after_retries {
            match self.post("after_send", body.clone()).await {
                Ok(_) => {
                    metrics::counter!("im_webhook_calls_total", "event" => "after_send", "result" => "ok")
                        .increment(1);
                    return;
                }
                Err(e) => {
                    metrics::counter!("im_webhook_calls_total", "event" => "after_send", "result" => "error")
                        .increment(1);
                    if attempt == self.config.after_retries {
                        tracing::warn!(error = %e, url = %self.config.url, "after_send webhook gave up");
                        return;
                    }
                    tracing::debug!(error = %e, attempt, "after_send webhook failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
            }
        }
    }
}

#[async_trait]
impl SendHook for WebhookHook {
    async fn before_send(&self, batch: &[PendingSend]) -> Result<Vec<HookVerdict>> {
        if !self.inner.config.before {
            return Ok(vec![HookVerdict::Allow; batch.len()]);
        }
        match self.inner.before(batch).await {
            Ok(v) => Ok(v),
            Err(e) => {
                metrics::counter!("im_webhook_calls_total", "event" => "before_send", "result" => "error")
                    .increment(1);
                tracing::warn!(error = %e, url = %self.inner.config.url, "before_send webhook failed");
                match self.inner.config.failure_policy {
                    FailurePolicy::Open => Ok(vec![HookVerdict::Allow; batch.len()]),
                    FailurePolicy::Closed => Err(Error::unavailable_msg(
                        "the send hook is unavailable; retry later",
                    )),
                }
            }
        }
    }

    async fn after_send(&self, batch: &[Message]) {
        if !self.inner.config.after {
            return;
        }
        let body = match serde_json::to_vec(&json!({"event": "after_send", "messages": batch})) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "after_send payload does not serialize");
                return;
            }
        };
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.after(body).await });
    }
}

/// A POST of the JSON `body` to `url`, signed like every webhook call:
/// `X-Im-Event: {event}`, `X-Im-Timestamp` (Unix ms) and
/// `X-Im-Signature: sha256=<hex>` (see [`sign`]). Also used by
/// [`crate::notify::WebhookNotifier`].
pub(crate) fn signed_post(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    event: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let ts = im_core::id::now_ms().to_string();
    let signature = sign(secret, &ts, &body);
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-im-event", event)
        .header("x-im-timestamp", &ts)
        .header("x-im-signature", format!("sha256={signature}"))
        .body(body)
}

/// The hex HMAC-SHA256 of `"{timestamp}.{body}"`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks an `X-Im-Signature` header value against the timestamp and body,
/// in constant time.
pub fn verify_signature(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let s = sign(b"k", "1", b"{}");
        assert!(verify_signature(b"k", "1", b"{}", &format!("sha256={s}")));
        assert!(!verify_signature(b"k", "2", b"{}", &format!("sha256={s}")));
        assert!(!verify_signature(b"x", "1", b"{}", &format!("sha256={s}")));
        assert!(!verify_signature(b"k", "1", b"{ }", &format!("sha256={s}")));
        assert!(!verify_signature(b"k", "1", b"{}", "sha256=zz"));
        assert!(!verify_signature(b"k", "1", b"{}", &s));
    }
}
