//! `FcmNotifier`: Firebase Cloud Messaging, HTTP v1 API.
//!
//! Credentials are a Google service account (the JSON key file:
//! `client_email`, `private_key` as PEM RSA, `project_id`, `token_uri`). An
//! OAuth2 access token is obtained with a JWT-bearer grant: a POST to
//! `token_uri` of
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`,
//! the JWT signed RS256 with the account's key and claiming
//! `{iss: client_email, scope: ".../auth/firebase.messaging", aud: token_uri,
//! iat, exp: iat + 3600}`. The token is cached until shortly before its
//! `expires_in` (one exchange at a time; concurrent sends wait for it), and
//! dropped when FCM answers 401.
//!
//! A notification is `POST {base}/v1/projects/{project_id}/messages:send`
//! with `Authorization: Bearer <token>` and
//! `{"message":{"token","notification":{"title","body"},
//! "data":{"conversation_id","msg_id","seq","badge"},
//! "android":{"collapse_key":conversation_id},
//! "apns":{"payload":{"aps":{"badge"}}}}}` (`data` values are strings, as FCM
//! requires). Answers: 200 delivered; `UNREGISTERED` (404), or a 400
//! `INVALID_ARGUMENT` about the token (a field violation on
//! `message.token`, or a message about the registration token) → the token
//! is gone; 401 → the access token is dropped and the send is retryable; 429
//! and 5xx retryable; other answers a rejected request.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use im_core::ports::{Notification, Notifier, NotifyOutcome, PushToken};
use im_core::{Error, Result};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{client, send_error, status_error, unix_now, DEFAULT_TIMEOUT};

/// FCM's API root.
pub const FCM_BASE_URL: &str = "https://fcm.googleapis.com";

/// The OAuth2 scope of sending with FCM.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// Google's OAuth2 token endpoint (the `token_uri` of service accounts).
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Lifetime claimed by the grant JWT (`exp - iat`), the most Google allows.
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// How long before its expiry an access token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

fn default_token_uri() -> String {
    GOOGLE_TOKEN_URI.to_owned()
}

/// The fields of a Google service-account key file that FCM needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    /// The account (the JWT's `iss`).
    pub client_email: String,
    /// Its RSA private key, PEM (PKCS#8 `PRIVATE KEY` as Google issues it,
    /// or PKCS#1 `RSA PRIVATE KEY`).
    pub private_key: String,
    /// The Firebase project.
    pub project_id: String,
    /// The OAuth2 token endpoint (default [`GOOGLE_TOKEN_URI`]).
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("project_id", &self.project_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads the JSON key file's text (other fields are ignored).
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|e| Error::InvalidArgument(format!("FCM service account JSON: {e}")))
    }
}

/// How to reach FCM.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// The credentials (its `token_uri` may point at a test server).
    pub account: ServiceAccount,
    /// The API root (default [`FCM_BASE_URL`]; a test server in tests).
    pub base_url: String,
    /// Deadline of one request (default 10 s).
    pub timeout: Duration,
}

impl FcmConfig {
    /// The defaults for `account`.
    pub fn new(account: ServiceAccount) -> Self {
        FcmConfig {
            account,
            base_url: FCM_BASE_URL.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The defaults for the service account of a JSON key file's text.
    pub fn from_service_account_json(json: &str) -> Result<Self> {
        Ok(FcmConfig::new(ServiceAccount::from_json(json)?))
    }
}

#[derive(Serialize)]
struct GrantClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "default_expires_in")]
    expires_in: u64,
}

fn default_expires_in() -> u64 {
    ASSERTION_LIFETIME_SECS
}

struct AccessToken {
    value: String,
    refresh_at: Instant,
}

/// Sends notifications through FCM.
pub struct FcmNotifier {
    client: reqwest::Client,
    config: FcmConfig,
    send_url: String,
    key: EncodingKey,
    token: tokio::sync::Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for FcmNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmNotifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The signing key of a PEM RSA private key (PKCS#8 or PKCS#1).
fn rsa_key(pem: &str) -> Result<EncodingKey> {
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
    use rsa::pkcs8::DecodePrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "FCM service account: private_key is not a PEM RSA key: {e}"
            ))
        })?;
    // jsonwebtoken's RustCrypto backend signs with PKCS#1 DER.
    let der = key
        .to_pkcs1_der()
        .map_err(|e| Error::InvalidArgument(format!("FCM service account: private_key: {e}")))?;
    Ok(EncodingKey::from_rsa_der(der.as_bytes()))
}

impl FcmNotifier {
    /// A notifier for `config`; [`Error::InvalidArgument`] when the private
    /// key is not a PEM RSA key.
    pub fn new(config: FcmConfig) -> Result<Self> {
        let key = rsa_key(&config.account.private_key)?;
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            config.base_url.trim_end_matches('/'),
            config.account.project_id
        );
        Ok(FcmNotifier {
            client: client(config.timeout, false)?,
            send_url,
            key,
            config,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The grant JWT.
    fn assertion(&self) -> Result<String> {
        let a = &self.config.account;
        let iat = unix_now();
        let claims = GrantClaims {
            iss: &a.client_email,
            scope: FCM_SCOPE,
            aud: &a.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| Error::InvalidArgument(format!("FCM: signing the grant failed: {e}")))
    }

    /// A valid access token: the cached one, or a new one from `token_uri`.
    async fn access_token(&self) -> Result<String> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let assertion = self.assertion()?;
        let r = self
            .client
            .post(&self.config.account.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| send_error("FCM token endpoint", e))?;
        let status = r.status();
        if !status.is_success() {
            let detail = r.text().await.unwrap_or_default();
            let e = status_error("FCM token endpoint", status, &detail);
            // A refused grant (bad key, unknown account) will not pass on retry.
            return Err(if e.is_retryable() {
                e
            } else {
                Error::Backend {
                    message: format!("FCM credentials refused: {e}"),
                    source: None,
                }
            });
        }
        let answer: TokenAnswer = r.json().await.map_err(|e| Error::Backend {
            message: format!("FCM token endpoint: malformed answer: {e}"),
            source: None,
        })?;
        let lifetime = Duration::from_secs(answer.expires_in);
        let keep = lifetime.saturating_sub(REFRESH_MARGIN).max(lifetime / 2);
        *cached = Some(AccessToken {
            value: answer.access_token.clone(),
            refresh_at: Instant::now() + keep,
        });
        Ok(answer.access_token)
    }

    /// Forgets the access token if it is still `value`.
    async fn drop_token(&self, value: &str) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == value) {
            *cached = None;
        }
    }
}

/// The message of a send.
fn message(to: &PushToken, n: &Notification) -> serde_json::Value {
    let conversation = n.conversation_id.to_string();
    json!({
        "message": {
            "token": to.token,
            "notification": {"title": n.title, "body": n.body()},
            "data": {
                "conversation_id": conversation,
                "msg_id": n.last_msg_id.to_string(),
                "seq": n.last_seq.to_string(),
                "badge": n.badge.to_string(),
            },
            "android": {"collapse_key": conversation},
            "apns": {"payload": {"aps": {"badge": n.badge}}},
        }
    })
}

#[derive(Deserialize, Default)]
struct ErrorAnswer {
    #[serde(default)]
    error: ErrorBody,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

impl ErrorBody {
    /// The `errorCode` of the `FcmError` detail.
    fn fcm_code(&self) -> Option<&str> {
        self.details.iter().find_map(|d| {
            d.get("@type")
                .and_then(|t| t.as_str())
                .filter(|t| t.ends_with("FcmError"))?;
            d.get("errorCode").and_then(|c| c.as_str())
        })
    }

    /// Whether a field violation names the token.
    fn token_violation(&self) -> bool {
        self.details.iter().any(|d| {
            d.get("fieldViolations")
                .and_then(|v| v.as_array())
                .is_some_and(|v| {
                    v.iter()
                        .any(|f| f.get("field").and_then(|f| f.as_str()) == Some("message.token"))
                })
        })
    }

    /// Whether FCM says the token is unregistered or invalid.
    fn token_gone(&self, status: reqwest::StatusCode) -> bool {
        let code = self.fcm_code();
        if code == Some("UNREGISTERED") {
            return true;
        }
        let invalid_argument =
            code == Some("INVALID_ARGUMENT") || self.status == "INVALID_ARGUMENT";
        status == reqwest::StatusCode::BAD_REQUEST
            && invalid_argument
            && (self.token_violation()
                || self
                    .message
                    .to_ascii_lowercase()
                    .contains("registration token"))
    }
}

#[async_trait]
impl Notifier for FcmNotifier {
    async fn notify(&self, to: &PushToken, n: &Notification) -> Result<NotifyOutcome> {
        let access = self.access_token().await?;
        let r = self
            .client
            .post(&self.send_url)
            .bearer_auth(&access)
            .json(&message(to, n))
            .send()
            .await
            .map_err(|e| send_error("FCM", e))?;
        let status = r.status();
        if status.is_success() {
            return Ok(NotifyOutcome::Delivered);
        }
        let text = r.text().await.unwrap_or_default();
        let answer: ErrorAnswer = serde_json::from_str(&text).unwrap_or_default();
        if answer.error.token_gone(status) {
            return Ok(NotifyOutcome::TokenGone);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            self.drop_token(&access).await;
            return Err(Error::unavailable_msg(format!(
                "FCM refused the access token ({text}); a new one is fetched on retry"
            )));
        }
        Err(status_error("FCM", status, &text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn body(v: serde_json::Value) -> ErrorBody {
        serde_json::from_value::<ErrorAnswer>(v).unwrap().error
    }

    #[test]
    fn gone_tokens_are_recognised() {
        let unregistered = body(json!({"error": {"code": 404, "status": "NOT_FOUND",
            "message": "Requested entity was not found.",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                         "errorCode": "UNREGISTERED"}]}}));
        assert!(unregistered.token_gone(StatusCode::NOT_FOUND));
        let bad_token = body(json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
            "message": "The registration token is not a valid FCM registration token",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                         "errorCode": "INVALID_ARGUMENT"}]}}));
        assert!(bad_token.token_gone(StatusCode::BAD_REQUEST));
        let violation = body(json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
            "message": "Request contains an invalid argument.",
            "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                         "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]}]}}));
        assert!(violation.token_gone(StatusCode::BAD_REQUEST));
        // A bad payload, or a wrong project, is not about the token.
        let bad_payload = body(json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
            "message": "Invalid value at 'message.data'",
            "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                         "fieldViolations": [{"field": "message.data"}]}]}}));
        assert!(!bad_payload.token_gone(StatusCode::BAD_REQUEST));
        let not_found = body(json!({"error": {"code": 404, "status": "NOT_FOUND",
            "message": "Requested entity was not found."}}));
        assert!(!not_found.token_gone(StatusCode::NOT_FOUND));
    }
}
