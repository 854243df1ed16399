//! `ApnsNotifier`: the Apple Push Notification service with token-based
//! authentication, over HTTP/2 (which Apple requires).
//!
//! Credentials: the team id, the key id and the ES256 signing key (`.p8`
//! file, PEM PKCS#8) of an APNs auth key, and the app's bundle id (the
//! topic). The provider token is a JWT with header `{alg: ES256, kid}` and
//! claims `{iss: team_id, iat}`, made once and replaced every 50 minutes
//! (Apple refuses tokens older than an hour and too frequent new ones), and
//! at once when APNs answers `ExpiredProviderToken`.
//!
//! A notification is `POST {base}/3/device/{token}` with the headers
//! `authorization: bearer <jwt>`, `apns-topic`, `apns-push-type: alert`,
//! `apns-priority: 10` and `apns-collapse-id: <conversation_id>`, and the body
//! `{"aps":{"alert":{"title","body"},"badge","thread-id":conversation_id},
//! "conversation_id","msg_id"}`. Answers: 200 delivered; 410 (`Unregistered`)
//! or 400 `BadDeviceToken` → the token is gone (a token that is not hex is
//! gone without asking: APNs would refuse it; note that a sandbox token sent
//! to production is `BadDeviceToken` too: point [`ApnsConfig::base_url`] at
//! the environment the app was built for); 403 `ExpiredProviderToken` → a
//! new JWT and retryable; 429 and 5xx retryable; other answers a rejected
//! request.
//!
//! In production the HTTP/2 connection is negotiated by ALPN over TLS.
//! [`ApnsConfig::http2_prior_knowledge`] speaks HTTP/2 over plain TCP
//! instead, for a local test server only.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use im_core::ports::{Notification, Notifier, NotifyOutcome, PushToken};
use im_core::{Error, Result};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{client, send_error, status_error, unix_now, DEFAULT_TIMEOUT};

/// APNs production.
pub const APNS_PRODUCTION: &str = "https://api.push.apple.com";

/// APNs sandbox (development builds of apps).
pub const APNS_SANDBOX: &str = "https://api.sandbox.push.apple.com";

/// How long one provider JWT is used.
const JWT_LIFETIME: Duration = Duration::from_secs(50 * 60);

/// How to reach APNs.
#[derive(Clone)]
pub struct ApnsConfig {
    /// The Apple developer team id (the JWT's `iss`).
    pub team_id: String,
    /// The auth key's id (the JWT header's `kid`).
    pub key_id: String,
    /// The auth key: the `.p8` file's text (PEM PKCS#8, P-256).
    pub private_key_pem: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// [`APNS_PRODUCTION`] (default) or [`APNS_SANDBOX`]; a test server in tests.
    pub base_url: String,
    /// Deadline of one request (default 10 s).
    pub timeout: Duration,
    /// Test only: HTTP/2 over plain TCP without negotiation (a local
    /// `http://` test server). Apple's servers need TLS: leave it false.
    pub http2_prior_knowledge: bool,
}

impl std::fmt::Debug for ApnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .field("topic", &self.topic)
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("http2_prior_knowledge", &self.http2_prior_knowledge)
            .finish_non_exhaustive()
    }
}

impl ApnsConfig {
    /// Production APNs for the app `topic`, with the auth key `key_id` of
    /// `team_id`.
    pub fn new(
        team_id: impl Into<String>,
        key_id: impl Into<String>,
        private_key_pem: impl Into<String>,
        topic: impl Into<String>,
    ) -> Self {
        ApnsConfig {
            team_id: team_id.into(),
            key_id: key_id.into(),
            private_key_pem: private_key_pem.into(),
            topic: topic.into(),
            base_url: APNS_PRODUCTION.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            http2_prior_knowledge: false,
        }
    }

    /// The sandbox environment instead.
    pub fn sandbox(mut self) -> Self {
        self.base_url = APNS_SANDBOX.to_owned();
        self
    }
}

#[derive(Serialize)]
struct ProviderClaims<'a> {
    iss: &'a str,
    iat: u64,
}

/// Sends notifications through APNs.
pub struct ApnsNotifier {
    client: reqwest::Client,
    config: ApnsConfig,
    base: String,
    key: EncodingKey,
    jwt: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for ApnsNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsNotifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ApnsNotifier {
    /// A notifier for `config`; [`Error::InvalidArgument`] when the key is
    /// not a PEM PKCS#8 P-256 key.
    pub fn new(config: ApnsConfig) -> Result<Self> {
        use pkcs8::der::pem::PemLabel;
        let doc = pkcs8::SecretDocument::from_pem(config.private_key_pem.trim())
            .map_err(|e| {
                Error::InvalidArgument(format!("APNs auth key: not a PEM PKCS#8 key: {e}"))
            })
            .and_then(|(label, doc)| {
                if label == pkcs8::PrivateKeyInfo::PEM_LABEL {
                    Ok(doc)
                } else {
                    Err(Error::InvalidArgument(format!(
                        "APNs auth key: expected a PRIVATE KEY, got {label}"
                    )))
                }
            })?;
        let notifier = ApnsNotifier {
            client: client(config.timeout, config.http2_prior_knowledge)?,
            base: config.base_url.trim_end_matches('/').to_owned(),
            key: EncodingKey::from_ec_der(doc.as_bytes()),
            config,
            jwt: Mutex::new(None),
        };
        // Sign once now: a key that cannot sign ES256 fails here, not later.
        notifier.jwt()?;
        Ok(notifier)
    }

    /// The provider JWT: the cached one, or a new one when it is 50 minutes old.
    fn jwt(&self) -> Result<String> {
        let mut cached = self.jwt.lock();
        if let Some((jwt, made)) = cached.as_ref() {
            if made.elapsed() < JWT_LIFETIME {
                return Ok(jwt.clone());
            }
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.config.key_id.clone());
        let claims = ProviderClaims {
            iss: &self.config.team_id,
            iat: unix_now(),
        };
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Error::InvalidArgument(format!("APNs auth key cannot sign ES256: {e}")))?;
        *cached = Some((jwt.clone(), Instant::now()));
        Ok(jwt)
    }

    /// Forgets the JWT if it is still `jwt`.
    fn drop_jwt(&self, jwt: &str) {
        let mut cached = self.jwt.lock();
        if cached.as_ref().is_some_and(|(j, _)| j == jwt) {
            *cached = None;
        }
    }
}

#[derive(Deserialize, Default)]
struct ErrorAnswer {
    #[serde(default)]
    reason: String,
}

#[async_trait]
impl Notifier for ApnsNotifier {
    async fn notify(&self, to: &PushToken, n: &Notification) -> Result<NotifyOutcome> {
        if to.token.is_empty() || !to.token.bytes().all(|b| b.is_ascii_hexdigit()) {
            tracing::debug!(device = %to.device, "an APNs token that is not hex is gone");
            return Ok(NotifyOutcome::TokenGone);
        }
        let jwt = self.jwt()?;
        let conversation = n.conversation_id.to_string();
        let body = json!({
            "aps": {
                "alert": {"title": n.title, "body": n.body()},
                "badge": n.badge,
                "thread-id": conversation,
            },
            "conversation_id": conversation,
            "msg_id": n.last_msg_id.to_string(),
        });
        let r = self
            .client
            .post(format!("{}/3/device/{}", self.base, to.token))
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", &self.config.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-collapse-id", &conversation)
            .json(&body)
            .send()
            .await
            .map_err(|e| send_error("APNs", e))?;
        let status = r.status();
        if status.is_success() {
            return Ok(NotifyOutcome::Delivered);
        }
        if status == reqwest::StatusCode::GONE {
            return Ok(NotifyOutcome::TokenGone);
        }
        let text = r.text().await.unwrap_or_default();
        let reason = serde_json::from_str::<ErrorAnswer>(&text)
            .unwrap_or_default()
            .reason;
        match (status, reason.as_str()) {
            (reqwest::StatusCode::BAD_REQUEST, "BadDeviceToken") => Ok(NotifyOutcome::TokenGone),
            (reqwest::StatusCode::FORBIDDEN, "ExpiredProviderToken") => {
                self.drop_jwt(&jwt);
                Err(Error::unavailable_msg(
                    "APNs: the provider token expired; a new one is made on retry",
                ))
            }
            _ => Err(status_error("APNs", status, &text)),
        }
    }
}
