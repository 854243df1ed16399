//! The notifiers against local servers standing in for the providers (the
//! real FCM and APNs are not reachable from here): each server checks the
//! request shape, the headers and the JWT (signature with the test key's
//! public half, and claims), records what it saw, and answers as the
//! provider documents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, Version};
use axum::response::IntoResponse;
use axum::Router;
use im_core::id::{ConversationId, GroupId, MessageId, UserId};
use im_core::ports::{Notification, Notifier, NotifyOutcome, Platform, PushToken};
use im_core::Error;
use im_transport::notify::{
    ApnsConfig, ApnsNotifier, FcmConfig, FcmNotifier, ServiceAccount, WebhookNotifier, FCM_SCOPE,
};
use im_transport::webhook::verify_signature;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde_json::{json, Value};

fn notification(preview: Option<&str>) -> Notification {
    Notification {
        user: UserId(42),
        conversation_id: ConversationId::Group(GroupId(7)),
        title: "Team".into(),
        preview: preview.map(str::to_owned),
        badge: 5,
        messages: 3,
        last_msg_id: MessageId(123_456_789),
        last_seq: 77,
        ts: 1_700_000_000_000,
    }
}

fn push_token(platform: Platform, token: &str) -> PushToken {
    PushToken {
        platform,
        token: token.into(),
        device: "phone".into(),
        registered_at: 1,
    }
}

async fn serve_http1(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// HTTP/2 only, without TLS (the client speaks it by prior knowledge).
async fn serve_http2(app: Router) -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn retryable(r: im_core::Result<NotifyOutcome>) -> bool {
    matches!(r, Err(e) if e.is_retryable())
}

// ---------------------------------------------------------------- webhook

const SECRET: &[u8] = b"notify secret";

#[derive(Default)]
struct Hook {
    /// (event header, signature valid, body)
    calls: Mutex<Vec<(String, bool, Value)>>,
}

async fn webhook_server(hook: Arc<Hook>) -> String {
    let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let hook = hook.clone();
        async move {
            let valid = verify_signature(
                SECRET,
                &header(&headers, "x-im-timestamp"),
                &body,
                &header(&headers, "x-im-signature"),
            );
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let token = v["token"].as_str().unwrap_or_default().to_owned();
            hook.calls
                .lock()
                .push((header(&headers, "x-im-event"), valid, v));
            match token.as_str() {
                "gone404" => StatusCode::NOT_FOUND,
                "gone410" => StatusCode::GONE,
                "down" => StatusCode::SERVICE_UNAVAILABLE,
                "bad" => StatusCode::BAD_REQUEST,
                "hang" => futures::future::pending().await,
                _ => StatusCode::NO_CONTENT,
            }
        }
    });
    format!("http://{}/notify", serve_http1(app).await)
}

#[tokio::test]
async fn webhook_posts_signed_notifications() {
    let hook = Arc::new(Hook::default());
    let url = webhook_server(hook.clone()).await;
    let notifier = WebhookNotifier::new(url, SECRET).unwrap();
    let to = push_token(Platform::Webhook, "tok-1");
    let out = notifier
        .notify(&to, &notification(Some("see you at 5")))
        .await
        .unwrap();
    assert_eq!(out, NotifyOutcome::Delivered);
    let calls = hook.calls.lock().clone();
    assert_eq!(calls.len(), 1);
    let (event, valid, body) = &calls[0];
    assert_eq!(event, "notification");
    assert!(valid, "the signature verifies with verify_signature");
    assert_eq!(
        body,
        &json!({
            "event": "notification",
            "platform": "webhook",
            "token": "tok-1",
            "device": "phone",
            "notification": {
                "user": "42", "conversation_id": "g:7", "title": "Team",
                "preview": "see you at 5", "badge": 5, "messages": 3,
                "last_msg_id": "123456789", "last_seq": 77, "ts": 1_700_000_000_000i64,
            },
        })
    );

    // A wrong secret does not verify.
    let forged = WebhookNotifier::new(webhook_server(hook.clone()).await, "other").unwrap();
    forged.notify(&to, &notification(None)).await.unwrap();
    let last = hook.calls.lock().last().cloned().unwrap();
    assert!(
        !last.1,
        "a notification signed with another secret fails verification"
    );
    assert_eq!(last.2["notification"]["preview"], Value::Null);
}

#[tokio::test]
async fn webhook_answers_map_to_outcomes() {
    let hook = Arc::new(Hook::default());
    let url = webhook_server(hook.clone()).await;
    let notifier = WebhookNotifier::with_timeout(url, SECRET, Duration::from_millis(300)).unwrap();
    let n = &notification(None);
    let notifier = &notifier;
    let send = |t: &str| {
        let to = push_token(Platform::Webhook, t);
        async move { notifier.notify(&to, n).await }
    };
    assert_eq!(send("gone404").await.unwrap(), NotifyOutcome::TokenGone);
    assert_eq!(send("gone410").await.unwrap(), NotifyOutcome::TokenGone);
    assert!(retryable(send("down").await), "503 is retryable");
    assert!(matches!(send("bad").await, Err(Error::InvalidArgument(_))));
    assert!(
        matches!(send("hang").await, Err(Error::Timeout(_))),
        "no answer within the timeout is a retryable timeout"
    );
    let unreachable = WebhookNotifier::new("http://127.0.0.1:9/notify", SECRET).unwrap();
    assert!(retryable(
        unreachable
            .notify(&push_token(Platform::Webhook, "x"), n)
            .await
    ));
}

// ---------------------------------------------------------------- FCM

const EMAIL: &str = "im-push@test-project.iam.gserviceaccount.com";
const PROJECT: &str = "test-project";

/// A 2048-bit RSA key made once per run: (PKCS#8 PEM, PKCS#1 DER public key).
fn rsa_key() -> &'static (String, Vec<u8>) {
    static KEY: OnceLock<(String, Vec<u8>)> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs1::EncodeRsaPublicKey;
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public = key.to_public_key().to_pkcs1_der().unwrap().to_vec();
        (pem, public)
    })
}

/// One token exchange: the form, and the verified claims or why not.
type Exchange = (HashMap<String, String>, Result<Value, String>);

#[derive(Default)]
struct Fcm {
    token_uri: Mutex<String>,
    exchanges: Mutex<Vec<Exchange>>,
    /// Per send: (path, authorization, body).
    sends: Mutex<Vec<(String, String, Value)>>,
    expires_in: AtomicU64,
    refuse_grant: AtomicBool,
    unauthorized_once: AtomicBool,
}

fn fcm_error(status: StatusCode, body: Value) -> axum::response::Response {
    (status, axum::Json(body)).into_response()
}

async fn fcm_server(fcm: Arc<Fcm>) -> String {
    let app = Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let fcm = fcm.clone();
            async move {
                assert_eq!(method, Method::POST);
                if uri.path() == "/token" {
                    return fcm_token(&fcm, &body);
                }
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let auth = header(&headers, "authorization");
                fcm.sends
                    .lock()
                    .push((uri.path().to_owned(), auth.clone(), v.clone()));
                let issued = format!("Bearer at-{}", fcm.exchanges.lock().len());
                if auth != issued || fcm.unauthorized_once.swap(false, Ordering::SeqCst) {
                    return fcm_error(
                        StatusCode::UNAUTHORIZED,
                        json!({"error": {"code": 401, "status": "UNAUTHENTICATED",
                               "message": "Request had invalid authentication credentials."}}),
                    );
                }
                let fcm_code = |code: &str| {
                    json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                            "errorCode": code}])
                };
                match v["message"]["token"].as_str().unwrap_or_default() {
                    "gone" => fcm_error(
                        StatusCode::NOT_FOUND,
                        json!({"error": {"code": 404, "status": "NOT_FOUND",
                               "message": "Requested entity was not found.",
                               "details": fcm_code("UNREGISTERED")}}),
                    ),
                    "invalid" => fcm_error(
                        StatusCode::BAD_REQUEST,
                        json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                               "message": "The registration token is not a valid FCM registration token",
                               "details": fcm_code("INVALID_ARGUMENT")}}),
                    ),
                    "payload" => fcm_error(
                        StatusCode::BAD_REQUEST,
                        json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                               "message": "Invalid value at 'message.data'",
                               "details": fcm_code("INVALID_ARGUMENT")}}),
                    ),
                    "busy" => fcm_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": {"code": 503, "status": "UNAVAILABLE",
                               "details": fcm_code("UNAVAILABLE")}}),
                    ),
                    "quota" => fcm_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                               "details": fcm_code("QUOTA_EXCEEDED")}}),
                    ),
                    _ => axum::Json(json!({"name": format!("projects/{PROJECT}/messages/1")}))
                        .into_response(),
                }
            }
        },
    );
    format!("http://{}", serve_http1(app).await)
}

fn fcm_token(fcm: &Fcm, body: &[u8]) -> axum::response::Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let aud = fcm.token_uri.lock().clone();
    let claims = (|| {
        let assertion = form.get("assertion").ok_or("no assertion")?;
        let head = jsonwebtoken::decode_header(assertion).map_err(|e| e.to_string())?;
        if head.alg != Algorithm::RS256 {
            return Err(format!("alg {:?}", head.alg));
        }
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[aud.as_str()]);
        v.set_issuer(&[EMAIL]);
        v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        jsonwebtoken::decode::<Value>(assertion, &DecodingKey::from_rsa_der(&rsa_key().1), &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    })();
    let mut exchanges = fcm.exchanges.lock();
    exchanges.push((form, claims));
    if fcm.refuse_grant.load(Ordering::SeqCst) {
        return fcm_error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        );
    }
    axum::Json(json!({
        "access_token": format!("at-{}", exchanges.len()),
        "expires_in": fcm.expires_in.load(Ordering::SeqCst),
        "token_type": "Bearer",
    }))
    .into_response()
}

async fn fcm(expires_in: u64) -> (Arc<Fcm>, FcmNotifier) {
    let fcm = Arc::new(Fcm::default());
    fcm.expires_in.store(expires_in, Ordering::SeqCst);
    let base = fcm_server(fcm.clone()).await;
    let token_uri = format!("{base}/token");
    *fcm.token_uri.lock() = token_uri.clone();
    let json = json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "k1",
        "private_key": rsa_key().0,
        "client_email": EMAIL,
        "token_uri": token_uri,
    })
    .to_string();
    let mut config = FcmConfig::from_service_account_json(&json).unwrap();
    config.base_url = base;
    (fcm, FcmNotifier::new(config).unwrap())
}

#[tokio::test]
async fn fcm_sends_v1_messages_with_one_cached_access_token() {
    let (fcm, notifier) = fcm(3600).await;
    let to = push_token(Platform::Fcm, "fcm-token-1");
    for preview in [Some("hello"), None] {
        let out = notifier.notify(&to, &notification(preview)).await.unwrap();
        assert_eq!(out, NotifyOutcome::Delivered);
    }

    let exchanges = fcm.exchanges.lock().clone();
    assert_eq!(
        exchanges.len(),
        1,
        "two notifications, one token exchange (the token is cached)"
    );
    let (form, claims) = &exchanges[0];
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let claims = claims
        .as_ref()
        .expect("the grant JWT verifies (RS256, iss, aud)");
    assert_eq!(claims["iss"], EMAIL);
    assert_eq!(claims["scope"], FCM_SCOPE);
    assert_eq!(claims["aud"], *fcm.token_uri.lock());
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat.abs_diff(now) < 60, "iat is now");

    let sends = fcm.sends.lock().clone();
    assert_eq!(sends.len(), 2);
    for (i, (path, auth, body)) in sends.iter().enumerate() {
        assert_eq!(path, &format!("/v1/projects/{PROJECT}/messages:send"));
        assert_eq!(auth, "Bearer at-1");
        let text = if i == 0 { "hello" } else { "3 new messages" };
        assert_eq!(
            body,
            &json!({"message": {
                "token": "fcm-token-1",
                "notification": {"title": "Team", "body": text},
                "data": {"conversation_id": "g:7", "msg_id": "123456789", "seq": "77", "badge": "5"},
                "android": {"collapse_key": "g:7"},
                "apns": {"payload": {"aps": {"badge": 5}}},
            }})
        );
    }
}

#[tokio::test]
async fn fcm_replaces_an_expiring_access_token() {
    let (fcm, notifier) = fcm(0).await;
    let to = push_token(Platform::Fcm, "t");
    for _ in 0..2 {
        notifier.notify(&to, &notification(None)).await.unwrap();
    }
    assert_eq!(
        fcm.exchanges.lock().len(),
        2,
        "a token about to expire is not reused"
    );
    let auths: Vec<String> = fcm.sends.lock().iter().map(|s| s.1.clone()).collect();
    assert_eq!(auths, ["Bearer at-1", "Bearer at-2"]);
}

#[tokio::test]
async fn fcm_answers_map_to_outcomes() {
    let (fcm, notifier) = fcm(3600).await;
    let n = &notification(Some("x"));
    let notifier = &notifier;
    let send = |t: &str| {
        let to = push_token(Platform::Fcm, t);
        async move { notifier.notify(&to, n).await }
    };
    assert_eq!(
        send("gone").await.unwrap(),
        NotifyOutcome::TokenGone,
        "404 UNREGISTERED"
    );
    assert_eq!(
        send("invalid").await.unwrap(),
        NotifyOutcome::TokenGone,
        "400 INVALID_ARGUMENT about the registration token"
    );
    assert!(
        matches!(send("payload").await, Err(Error::InvalidArgument(_))),
        "another 400 is a rejected request, not a gone token"
    );
    assert!(retryable(send("busy").await), "503");
    assert!(retryable(send("quota").await), "429");
    assert_eq!(fcm.exchanges.lock().len(), 1);

    // A 401: the access token is dropped; the retry gets a new one.
    fcm.unauthorized_once.store(true, Ordering::SeqCst);
    assert!(retryable(send("ok").await), "401 is retryable");
    assert_eq!(send("ok").await.unwrap(), NotifyOutcome::Delivered);
    assert_eq!(
        fcm.exchanges.lock().len(),
        2,
        "after a 401 a new access token is fetched"
    );
}

#[tokio::test]
async fn fcm_refuses_bad_credentials() {
    let account = ServiceAccount {
        client_email: EMAIL.into(),
        private_key: "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n".into(),
        project_id: PROJECT.into(),
        token_uri: "http://127.0.0.1:9/token".into(),
    };
    assert!(matches!(
        FcmNotifier::new(FcmConfig::new(account)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        ServiceAccount::from_json("{\"client_email\": 1}"),
        Err(Error::InvalidArgument(_))
    ));

    let (fcm, notifier) = fcm(3600).await;
    fcm.refuse_grant.store(true, Ordering::SeqCst);
    let r = notifier
        .notify(&push_token(Platform::Fcm, "t"), &notification(None))
        .await;
    assert!(
        matches!(r, Err(Error::Backend { .. })),
        "a refused grant is a permanent error: {r:?}"
    );
    assert!(
        fcm.sends.lock().is_empty(),
        "nothing is sent without an access token"
    );
}

// ---------------------------------------------------------------- APNs

const TEAM: &str = "TEAM123456";
const KEY_ID: &str = "KEY7654321";
const TOPIC: &str = "com.example.im";

#[derive(Clone, Debug)]
struct ApnsSeen {
    version: Version,
    path: String,
    headers: HeaderMap,
    jwt: String,
    /// The verified JWT header (alg, kid) and claims, or why not.
    verified: Result<(Algorithm, Option<String>, Value), String>,
    body: Value,
}

#[derive(Default)]
struct Apns {
    seen: Mutex<Vec<ApnsSeen>>,
}

async fn apns_server(apns: Arc<Apns>, public: Vec<u8>) -> String {
    let app = Router::new().fallback(
        move |version: Version, uri: Uri, headers: HeaderMap, body: Bytes| {
            let apns = apns.clone();
            let public = public.clone();
            async move {
                let auth = header(&headers, "authorization");
                let jwt = auth.strip_prefix("bearer ").unwrap_or_default().to_owned();
                let verified = (|| {
                    let head = jsonwebtoken::decode_header(&jwt).map_err(|e| e.to_string())?;
                    let mut v = Validation::new(Algorithm::ES256);
                    v.validate_exp = false;
                    v.set_required_spec_claims(&["iss"]);
                    v.set_issuer(&[TEAM]);
                    let claims =
                        jsonwebtoken::decode::<Value>(&jwt, &DecodingKey::from_ec_der(&public), &v)
                            .map_err(|e| e.to_string())?
                            .claims;
                    Ok((head.alg, head.kid, claims))
                })();
                let token = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
                apns.seen.lock().push(ApnsSeen {
                    version,
                    path: uri.path().to_owned(),
                    headers,
                    jwt,
                    verified,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                let reason = |status: StatusCode, r: &str| {
                    (status, axum::Json(json!({"reason": r}))).into_response()
                };
                match &token[..4] {
                    "0410" => (
                        StatusCode::GONE,
                        axum::Json(
                            json!({"reason": "Unregistered", "timestamp": 1_700_000_000_000i64}),
                        ),
                    )
                        .into_response(),
                    "0400" => reason(StatusCode::BAD_REQUEST, "BadDeviceToken"),
                    "0413" => reason(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
                    "0403" => reason(StatusCode::FORBIDDEN, "ExpiredProviderToken"),
                    "4030" => reason(StatusCode::FORBIDDEN, "InvalidProviderToken"),
                    "0429" => reason(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
                    "0500" => reason(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
                    _ => StatusCode::OK.into_response(),
                }
            }
        },
    );
    format!("http://{}", serve_http2(app).await)
}

async fn apns() -> (Arc<Apns>, ApnsNotifier) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let apns = Arc::new(Apns::default());
    let base = apns_server(apns.clone(), key.public_key_raw().to_vec()).await;
    let mut config = ApnsConfig::new(TEAM, KEY_ID, key.serialize_pem(), TOPIC);
    config.base_url = base;
    config.http2_prior_knowledge = true;
    (apns, ApnsNotifier::new(config).unwrap())
}

#[tokio::test]
async fn apns_sends_over_http2_with_a_cached_es256_token() {
    let (apns, notifier) = apns().await;
    let token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    let to = push_token(Platform::Apns, token);
    for preview in [Some("lunch?"), None] {
        assert_eq!(
            notifier.notify(&to, &notification(preview)).await.unwrap(),
            NotifyOutcome::Delivered
        );
    }
    let seen = apns.seen.lock().clone();
    assert_eq!(seen.len(), 2);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.version, Version::HTTP_2, "APNs is spoken over HTTP/2");
        assert_eq!(s.path, format!("/3/device/{token}"));
        let (alg, kid, claims) = s
            .verified
            .clone()
            .expect("the provider JWT verifies with the key's public half");
        assert_eq!(alg, Algorithm::ES256);
        assert_eq!(kid.as_deref(), Some(KEY_ID));
        assert_eq!(claims["iss"], TEAM);
        assert!(claims["iat"].as_u64().is_some());
        assert_eq!(header(&s.headers, "apns-topic"), TOPIC);
        assert_eq!(header(&s.headers, "apns-push-type"), "alert");
        assert_eq!(header(&s.headers, "apns-priority"), "10");
        assert_eq!(header(&s.headers, "apns-collapse-id"), "g:7");
        let text = if i == 0 { "lunch?" } else { "3 new messages" };
        assert_eq!(
            s.body,
            json!({
                "aps": {"alert": {"title": "Team", "body": text}, "badge": 5, "thread-id": "g:7"},
                "conversation_id": "g:7",
                "msg_id": "123456789",
            })
        );
    }
    assert_eq!(
        seen[0].jwt, seen[1].jwt,
        "the provider token is reused, not made per request"
    );
}

#[tokio::test]
async fn apns_answers_map_to_outcomes() {
    let (apns, notifier) = apns().await;
    let n = notification(None);
    let send = |t: &str| {
        let to = push_token(Platform::Apns, &format!("{t}{}", "ab".repeat(30)));
        let n = n.clone();
        let notifier = &notifier;
        async move { notifier.notify(&to, &n).await }
    };
    assert_eq!(send("0410").await.unwrap(), NotifyOutcome::TokenGone, "410");
    assert_eq!(
        send("0400").await.unwrap(),
        NotifyOutcome::TokenGone,
        "400 BadDeviceToken"
    );
    assert!(retryable(send("0403").await), "403 ExpiredProviderToken");
    assert!(
        matches!(send("4030").await, Err(Error::Backend { .. })),
        "403 InvalidProviderToken is a configuration error"
    );
    assert!(matches!(send("0413").await, Err(Error::InvalidArgument(_))));
    assert!(retryable(send("0429").await), "429");
    assert!(retryable(send("0500").await), "500");
    let asked = apns.seen.lock().len();
    assert_eq!(
        notifier
            .notify(&push_token(Platform::Apns, "not/hex"), &n)
            .await
            .unwrap(),
        NotifyOutcome::TokenGone,
        "a token that is not hex is gone"
    );
    assert_eq!(apns.seen.lock().len(), asked, "without asking APNs");
}

#[tokio::test]
async fn apns_refuses_keys_that_cannot_sign_es256() {
    let config = |pem: String| ApnsConfig::new(TEAM, KEY_ID, pem, TOPIC);
    assert!(matches!(
        ApnsNotifier::new(config("not a key".into())),
        Err(Error::InvalidArgument(_))
    ));
    // An RSA key in PKCS#8 is a PRIVATE KEY too, but not for ES256.
    assert!(matches!(
        ApnsNotifier::new(config(rsa_key().0.clone())),
        Err(Error::InvalidArgument(_))
    ));
    let sandbox = config(
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    )
    .sandbox();
    assert_eq!(sandbox.base_url, im_transport::notify::APNS_SANDBOX);
    assert!(ApnsNotifier::new(sandbox).is_ok());
}
