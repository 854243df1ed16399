//! The `/api/v1` routes of the protocol. Handlers parse and authenticate, then
//! call the Logic layer through `LogicApi` (in process or over gRPC).

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use im_core::connect::RateLimiter;
use im_core::frontdoor::FrontDoor;
use im_core::id::MessageId;
use im_core::id::{now_ms, ConversationId, GroupId, UserId};
use im_core::logic::{GroupCommand, LogicApi, Sender};
use im_core::model::{Member, Message, MessageKind, Role, Target};
use im_core::ports::ScheduledSend;
use im_core::protocol::SendRequest;
use im_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::errors::{error_response, ApiError, ErrorBody};
use super::openapi::{
    MemberDoc, MessageDoc, MessageKindDoc, RoleChangeDoc, SendRequestDoc, TargetDoc,
};

/// Answers `GET /api/v1/connect`: where should this client open its WebSocket?
#[async_trait]
pub trait WsLocator: Send + Sync + 'static {
    /// An absolute `ws://` or `wss://` URL of `/ws` on a live connect node.
    /// `host` is the request's `Host` header (for single-node setups).
    async fn locate(&self, user: UserId, host: Option<&str>) -> Result<String, Error>;
}

/// A locator for a node serving `/ws` on the same address as the API.
#[derive(Debug, Clone, Default)]
pub struct SameHostLocator {
    /// A fixed public URL, e.g. `wss://chat.example.com/ws`; else built from `Host`.
    pub public_url: Option<String>,
    /// The server speaks TLS: URLs built from `Host` are `wss://`, not `ws://`.
    pub secure: bool,
}

#[async_trait]
impl WsLocator for SameHostLocator {
    async fn locate(&self, _user: UserId, host: Option<&str>) -> Result<String, Error> {
        if let Some(u) = &self.public_url {
            return Ok(u.clone());
        }
        let host = host
            .filter(|h| !h.is_empty() && h.len() < 256 && !h.contains(['/', ' ', '?', '#']))
            .ok_or_else(|| Error::InvalidArgument("missing Host header".into()))?;
        let scheme = if self.secure { "wss" } else { "ws" };
        Ok(format!("{scheme}://{host}/ws"))
    }
}

/// HTTP API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body.
    pub max_body: usize,
    /// HTTP sends per second per user (`None`: unlimited); over it is 429.
    pub send_rate: Option<f64>,
    /// Burst above the rate.
    pub send_burst: f64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body: 64 * 1024,
            send_rate: Some(200.0),
            send_burst: 400.0,
        }
    }
}

/// What the API handlers need.
#[derive(Clone)]
pub struct ApiState {
    /// The Logic layer.
    pub logic: Arc<dyn LogicApi>,
    /// Picks a connect node for `GET /connect`.
    pub locator: Arc<dyn WsLocator>,
    limiter: Option<Arc<RateLimiter<UserId>>>,
    front_door: Option<Arc<FrontDoor>>,
    pub(super) attachments: Option<Arc<super::attachments::Attachments>>,
    pub(super) devices: Option<Arc<dyn im_core::ports::DeviceStore>>,
}

impl ApiState {
    /// State over a Logic and a locator.
    pub fn new(logic: Arc<dyn LogicApi>, locator: Arc<dyn WsLocator>, config: &ApiConfig) -> Self {
        ApiState {
            logic,
            locator,
            limiter: config
                .send_rate
                .map(|r| Arc::new(RateLimiter::new(r, config.send_burst))),
            front_door: None,
            attachments: None,
            devices: None,
        }
    }

    /// Serves push-token registration and the notification setting (v1.2)
    /// on `devices` (the store the notification dispatcher reads).
    pub fn with_devices(mut self, devices: Arc<dyn im_core::ports::DeviceStore>) -> Self {
        self.devices = Some(devices);
        self
    }

    /// Serves attachments (uploads and downloads, v1.2) on `attachments`.
    /// Logic must have the same storage and policy (`LogicPorts::objects`,
    /// `LogicConfig::attachments`) to check what messages reference.
    pub fn with_attachments(mut self, attachments: super::attachments::Attachments) -> Self {
        self.attachments = Some(Arc::new(attachments));
        self
    }

    /// Guards login and registration with `door` (limits per address and
    /// account, the registration guard). Without one, nothing is limited.
    pub fn with_front_door(mut self, door: Arc<FrontDoor>) -> Self {
        self.front_door = Some(door);
        self
    }
}

/// The client address of a request: the TCP peer (axum's `ConnectInfo`,
/// which [`crate::server::serve`] provides), or the forwarded one when the
/// peer is a trusted proxy of `door`. Unknown (no `ConnectInfo`, e.g. a
/// router driven by `oneshot`) is `0.0.0.0`.
pub fn client_ip(
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    door: &FrontDoor,
) -> std::net::IpAddr {
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    door.client_address(peer, forwarded)
}

/// The header a [`im_core::ports::RegistrationGuard`] reads its proof from
/// (a captcha answer, an invite code).
pub const REGISTRATION_PROOF_HEADER: &str = "x-registration-proof";

/// The `/api/v1` router (with body limit and JSON errors), including its
/// own OpenAPI document at `/api/v1/openapi.json`.
pub fn api_router(state: ApiState, config: &ApiConfig) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(super::openapi::serve_document))
        .route("/users", post(register))
        .route("/sessions", post(login).delete(logout))
        .route("/messages", post(send))
        // A static segment: matched before the `{msg_id}` routes below (and
        // they are one segment longer anyway).
        .route("/messages/scheduled", get(list_scheduled))
        .route("/messages/{msg_id}/recall", post(recall))
        .route("/messages/{msg_id}/schedule", delete(cancel_scheduled))
        .route("/conversations", get(conversations))
        .route("/conversations/{conversation_id}/messages", get(history))
        .route("/conversations/{conversation_id}/read", post(mark_read))
        .route("/users/{user_id}/presence", get(presence))
        .route("/groups", post(create_group))
        .route(
            "/groups/{group_id}",
            get(group_info).patch(rename_group).delete(dissolve_group),
        )
        .route("/groups/{group_id}/transfer", post(transfer_group))
        .route("/groups/{group_id}/mute", put(mute_group))
        .route(
            "/groups/{group_id}/members",
            post(add_member).get(list_members),
        )
        .route(
            "/groups/{group_id}/members/{user_id}",
            delete(remove_member),
        )
        .route(
            "/groups/{group_id}/members/{user_id}/role",
            put(set_member_role),
        )
        .route(
            "/groups/{group_id}/members/{user_id}/mute",
            put(mute_member),
        )
        .route("/connect", get(connect))
        .merge(super::attachments::routes(state.attachments.as_deref()))
        .merge(super::devices::routes())
        .merge(super::people::routes())
        .method_not_allowed_fallback(super::errors::method_not_allowed)
        .with_state(state);
    Router::new()
        .nest("/api/v1", api)
        .layer(axum::extract::DefaultBodyLimit::max(config.max_body))
}

/// JSON body whose rejections are `invalid_argument` (413 when too large).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::BytesRejection(r))
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::ResourceExhausted,
                    "request body too large",
                ))
            }
            Err(r) => Err(error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidArgument,
                &r.body_text(),
            )),
        }
    }
}

/// The bearer token of `Authorization: Bearer <token>` (a credential: never
/// log it).
fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| ApiError(Error::Unauthenticated("missing bearer token".into())))
}

/// The authenticated caller (Bearer token).
pub struct Caller(pub UserId);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?;
        Ok(Caller(state.logic.verify_token(token).await?.user_id))
    }
}

/// The raw bearer token of the request, unverified (for logout).
struct Bearer(String);

impl FromRequestParts<ApiState> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &ApiState) -> Result<Self, ApiError> {
        bearer_token(parts).map(|t| Bearer(t.to_owned()))
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

pub(super) fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, ApiError> {
    s.parse().map_err(|_| {
        ApiError(Error::InvalidArgument(format!(
            "malformed {what}: {}",
            s.chars().take(40).collect::<String>()
        )))
    })
}

/// A username and password (register and log in).
#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    /// 3–32 characters: ASCII letters, digits, `_`, `.`, `-` (case-sensitive).
    #[schema(example = "alice", min_length = 3, max_length = 32)]
    pub username: String,
    /// At least 8 characters, at most 1,024 bytes.
    #[schema(example = "correct horse", min_length = 8)]
    pub password: String,
}

/// A new account (`POST /api/v1/users`): credentials, and (v1.2) an
/// optional display name.
#[derive(Deserialize, ToSchema)]
pub struct NewAccount {
    /// 3–32 characters: ASCII letters, digits, `_`, `.`, `-` (case-sensitive).
    #[schema(example = "alice", min_length = 3, max_length = 32)]
    pub username: String,
    /// At least 8 characters, at most 1,024 bytes.
    #[schema(example = "correct horse", min_length = 8)]
    pub password: String,
    /// v1.2: the name shown to others (1–64 characters); absent: the username.
    #[serde(default)]
    #[schema(required = false, example = "Alice Liddell")]
    pub display_name: Option<String>,
}

/// The answer to a registration.
#[derive(Serialize, ToSchema)]
pub struct Registered {
    /// The new user's id (canonical decimal string).
    #[schema(value_type = String, example = "1001")]
    pub user_id: UserId,
}

/// The answer to a login.
#[derive(Serialize, ToSchema)]
pub struct LoggedIn {
    /// The user's id (canonical decimal string).
    #[schema(value_type = String, example = "1001")]
    pub user_id: UserId,
    /// The bearer token for `Authorization: Bearer <token>`.
    pub token: String,
    /// Token expiry, Unix milliseconds.
    #[schema(example = 1767312000000_i64)]
    pub expires_at: i64,
}

/// The answer to an accepted send (a WebSocket `send_ack` without
/// `type` and `client_msg_id`).
#[derive(Serialize, ToSchema)]
pub struct Sent {
    /// The message's id (canonical decimal string).
    #[schema(value_type = String, example = "7262015623421952")]
    pub msg_id: MessageId,
    /// `u:{a}:{b}` or `g:{group_id}`.
    #[schema(value_type = String, example = "u:1001:1002")]
    pub conversation_id: ConversationId,
    /// The message's position in its conversation (1, 2, 3, …); 0 for a
    /// scheduled send, which gets its seq when it is delivered.
    #[schema(example = 42)]
    pub seq: u64,
    /// Acceptance time, Unix milliseconds (for a scheduled send: its
    /// delivery time, `deliver_at`).
    #[schema(example = 1767225600123_i64)]
    pub ts: i64,
    /// Present only for a scheduled send (extension): held until this time,
    /// Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, example = 1767229200000_i64)]
    pub deliver_at: Option<i64>,
}

/// A scheduled send not yet delivered: a message without `seq` (it gets
/// one when it is delivered), with its delivery time.
#[derive(Serialize, ToSchema)]
pub struct ScheduledMessage {
    /// The message's id (canonical decimal string); it keeps it when delivered.
    #[schema(value_type = String, example = "7262015623421952")]
    pub msg_id: MessageId,
    /// `u:{a}:{b}` or `g:{group_id}`.
    #[schema(value_type = String, example = "u:1001:1002")]
    pub conversation_id: ConversationId,
    /// The sender: the caller (canonical decimal string).
    #[schema(value_type = String, example = "1001")]
    pub from: UserId,
    /// The addressee as sent.
    #[schema(value_type = TargetDoc)]
    pub to: Target,
    /// The kind of body.
    #[schema(value_type = MessageKindDoc)]
    pub kind: MessageKind,
    /// The body as sent.
    pub body: serde_json::Value,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// The delivery time, as in the scheduled send's answer (the delivered
    /// message's `ts` is when it was actually delivered).
    #[schema(example = 1767229200000_i64)]
    pub ts: i64,
    /// When it will be delivered, Unix milliseconds.
    #[schema(example = 1767229200000_i64)]
    pub deliver_at: i64,
}

impl From<ScheduledSend> for ScheduledMessage {
    fn from(s: ScheduledSend) -> Self {
        let m = s.envelope.message;
        ScheduledMessage {
            msg_id: m.msg_id,
            conversation_id: m.conversation_id,
            from: m.from,
            to: m.to,
            kind: m.kind,
            body: m.body,
            client_msg_id: m.client_msg_id,
            ts: s.deliver_at,
            deliver_at: s.deliver_at,
        }
    }
}

/// The caller's scheduled sends.
#[derive(Serialize, ToSchema)]
pub struct ScheduledList {
    /// Not yet delivered nor cancelled, soonest first.
    pub scheduled: Vec<ScheduledMessage>,
}

/// A page of history.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    /// Messages with `seq > after_seq`, ascending by seq.
    #[schema(value_type = Vec<MessageDoc>)]
    pub messages: Vec<Message>,
    /// Whether messages exist after the last one returned.
    pub has_more: bool,
}

/// A new group.
#[derive(Deserialize, ToSchema)]
pub struct NewGroup {
    /// 1–64 characters, not only whitespace.
    #[schema(example = "Team", min_length = 1, max_length = 64)]
    pub name: String,
}

/// The answer to a group creation.
#[derive(Serialize, ToSchema)]
pub struct GroupCreated {
    /// The new group's id (canonical decimal string).
    #[schema(value_type = String, example = "5001")]
    pub group_id: GroupId,
}

/// A user to add to a group.
#[derive(Deserialize, ToSchema)]
pub struct NewMember {
    /// The user's id (canonical decimal string).
    #[schema(value_type = String, example = "1002")]
    pub user_id: UserId,
}

/// A group's members.
#[derive(Serialize, ToSchema)]
pub struct MemberList {
    /// Every member with its role, ordered by user id.
    #[schema(value_type = Vec<MemberDoc>)]
    pub members: Vec<Member>,
}

/// Where to open the WebSocket.
#[derive(Serialize, ToSchema)]
pub struct WsEndpoint {
    /// An absolute `ws://` or `wss://` URL of `/ws` (without the token).
    #[schema(example = "ws://127.0.0.1:8080/ws")]
    pub ws_url: String,
}

/// Register an account.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "accounts",
    operation_id = "register",
    request_body = NewAccount,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "`invalid_argument`: username or password rules, bad JSON", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the deployment's registration guard refused (e.g. a missing or wrong `X-Registration-Proof`)", body = ErrorBody),
        (status = 409, description = "`already_exists`: username taken", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: request body too large", body = ErrorBody),
        (status = 429, description = "`resource_exhausted`: too many registrations from this address or in total; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down, or password hashing is at capacity (with `Retry-After`); safe to retry", body = ErrorBody),
    )
)]
async fn register(
    State(s): State<ApiState>,
    parts: Parts,
    ApiJson(c): ApiJson<NewAccount>,
) -> Result<Response, ApiError> {
    if let Some(name) = &c.display_name {
        im_core::logic::validate_display_name(name)?;
    }
    if let Some(door) = &s.front_door {
        // The username rules first: a malformed request spends no token.
        im_core::logic::validate_username(&c.username)?;
        let ip = client_ip(&parts.extensions, &parts.headers, door);
        let proof = parts
            .headers
            .get(REGISTRATION_PROOF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(4096).collect());
        door.check_register(ip, &c.username, proof).await?;
    }
    let user_id = s.logic.register(&c.username, &c.password).await?;
    if let Some(name) = c.display_name {
        // The account exists now; a failure here leaves it with its
        // username as its name (the client may set it again).
        s.logic
            .execute(
                user_id,
                im_core::logic::Command::SetProfile {
                    display_name: Some(name),
                    avatar_url: None,
                },
            )
            .await?;
    }
    Ok((StatusCode::CREATED, Json(Registered { user_id })).into_response())
}

/// Log in: trade a username and password for a bearer token.
#[utoipa::path(
    post,
    path = "/api/v1/sessions",
    tag = "accounts",
    operation_id = "login",
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in", body = LoggedIn),
        (status = 400, description = "`invalid_argument`: bad JSON or missing field", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: wrong username or password (the same answer for an unknown user)", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: request body too large", body = ErrorBody),
        (status = 429, description = "`resource_exhausted`: too many attempts from this address, or too many failed logins for this account; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down, or password hashing is at capacity (with `Retry-After`); safe to retry", body = ErrorBody),
    )
)]
async fn login(
    State(s): State<ApiState>,
    parts: Parts,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let Some(door) = &s.front_door else {
        let l = s.logic.login(&c.username, &c.password).await?;
        return Ok(logged_in(l));
    };
    let ip = client_ip(&parts.extensions, &parts.headers, door);
    let _in_flight = door.check_login(ip, &c.username).await?;
    let l = match s.logic.login(&c.username, &c.password).await {
        Ok(l) => l,
        Err(e) => {
            if e.code() == ErrorCode::Unauthenticated {
                door.login_done(&c.username, false).await;
            }
            return Err(e.into());
        }
    };
    door.login_done(&c.username, true).await;
    Ok(logged_in(l))
}

fn logged_in(l: im_core::logic::Login) -> Response {
    Json(LoggedIn {
        user_id: l.user_id,
        token: l.token,
        expires_at: l.expires_at,
    })
    .into_response()
}

/// Log out (extension): revoke the request's bearer token until its expiry
/// and close every WebSocket opened with it (each gets a `kicked` frame with
/// reason `"logged out"` and close code 4001, within about a second). The
/// user's other tokens and their sockets are untouched. Logging out a token
/// again is a no-op (204).
#[utoipa::path(
    delete,
    path = "/api/v1/sessions",
    tag = "accounts",
    operation_id = "logout",
    security(("bearerAuth" = [])),
    responses(
        (status = 204, description = "Logged out: the token is refused from now on (no body)"),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn logout(State(s): State<ApiState>, Bearer(token): Bearer) -> Result<Response, ApiError> {
    s.logic.logout(&token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Send a message (idempotent per sender and `client_msg_id`), now or at a
/// later `deliver_at` (scheduled delivery, an extension).
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    tag = "messages",
    operation_id = "send",
    security(("bearerAuth" = [])),
    request_body = SendRequestDoc,
    responses(
        (status = 200, description = "Accepted (or the original answer to a retry); a scheduled send is held with `seq` 0 and `deliver_at`", body = Sent),
        (status = 400, description = "`invalid_argument`: shape, kind or body mismatch, send to self, bad `client_msg_id`, `deliver_at` more than 30 days ahead", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: not a member of the group", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user or group", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: body over 16,384 bytes, or request over 64 KiB", body = ErrorBody),
        (status = 429, description = "`resource_exhausted`: per-user send rate limit", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: queue or store down; retry with the same `client_msg_id`", body = ErrorBody),
    )
)]
async fn send(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<Response, ApiError> {
    let mut sender = Sender::http(me);
    if let Some(l) = &s.limiter {
        if !l.allow(me) {
            // Logic answers a retry of an accepted send with its original
            // ack, and refuses anything else with `resource_exhausted` (429).
            metrics::counter!("im_rate_limited_total").increment(1);
            sender = sender.throttled();
        }
    }
    let throttled = sender.throttled;
    let ack = match s.logic.send(sender, req).await {
        Ok(ack) => ack,
        Err(e) if throttled && e.code() == ErrorCode::ResourceExhausted => {
            return Err(ApiError(Error::Throttled {
                message: "send rate limit exceeded; slow down".into(),
                retry_after: std::time::Duration::from_secs(1),
            }));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(Sent {
        msg_id: ack.msg_id,
        conversation_id: ack.conversation_id,
        seq: ack.seq,
        ts: ack.ts,
        deliver_at: ack.deliver_at,
    })
    .into_response())
}

/// List the caller's scheduled sends not yet delivered, soonest first
/// (extension).
#[utoipa::path(
    get,
    path = "/api/v1/messages/scheduled",
    tag = "messages",
    operation_id = "list_scheduled",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The caller's held sends (possibly none)", body = ScheduledList),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn list_scheduled(
    State(s): State<ApiState>,
    Caller(me): Caller,
) -> Result<Response, ApiError> {
    let scheduled = s.logic.scheduled(me).await?;
    Ok(Json(ScheduledList {
        scheduled: scheduled.into_iter().map(ScheduledMessage::from).collect(),
    })
    .into_response())
}

/// Cancel one of the caller's scheduled sends before it is delivered
/// (extension).
#[utoipa::path(
    delete,
    path = "/api/v1/messages/{msg_id}/schedule",
    tag = "messages",
    operation_id = "cancel_scheduled",
    security(("bearerAuth" = [])),
    params(("msg_id" = String, Path, description = "The scheduled message's id (canonical decimal string)", example = "7262015623421952")),
    responses(
        (status = 204, description = "Cancelled: it will not be delivered (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such send of the caller is held (already delivered, cancelled, unknown, or someone else's)", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry (a retry after a cancel that went through is 404)", body = ErrorBody),
    )
)]
async fn cancel_scheduled(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(msg_id): Path<String>,
) -> Result<Response, ApiError> {
    let msg_id: MessageId = parse("message id", &msg_id)?;
    s.logic.cancel_scheduled(me, msg_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct HistoryQuery {
    after_seq: Option<String>,
    limit: Option<String>,
}

/// Read a conversation's history, ascending by seq.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{conversation_id}/messages",
    tag = "messages",
    operation_id = "history",
    security(("bearerAuth" = [])),
    params(
        ("conversation_id" = String, Path, description = "`u:{a}:{b}` (a < b numerically) or `g:{group_id}`", example = "u:1001:1002"),
        ("after_seq" = Option<u64>, Query, description = "Return messages with `seq > after_seq` (default 0; empty counts as absent)"),
        ("limit" = Option<u32>, Query, description = "Page size (default 50, clamped to 1–100; empty counts as absent)"),
    ),
    responses(
        (status = 200, description = "A page (possibly empty)", body = HistoryPage),
        (status = 400, description = "`invalid_argument`: malformed conversation id or query value", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not a participant", body = ErrorBody),
        (status = 404, description = "`not_found`: the group or the peer does not exist", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn history(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(conversation): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let conversation: ConversationId = parse("conversation id", &conversation)?;
    let after_seq: u64 = match q.after_seq.as_deref() {
        None | Some("") => 0,
        Some(v) => parse("after_seq", v)?,
    };
    let limit = parse_limit(q.limit.as_deref())?;
    let page = s.logic.sync(me, conversation, after_seq, limit).await?;
    Ok(Json(HistoryPage {
        messages: page.messages,
        has_more: page.has_more,
    })
    .into_response())
}

/// Create a group; the caller becomes its owner.
#[utoipa::path(
    post,
    path = "/api/v1/groups",
    tag = "groups",
    operation_id = "create_group",
    security(("bearerAuth" = [])),
    request_body = NewGroup,
    responses(
        (status = 201, description = "Created", body = GroupCreated),
        (status = 400, description = "`invalid_argument`: bad name or bad JSON", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: request body too large", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn create_group(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(g): ApiJson<NewGroup>,
) -> Result<Response, ApiError> {
    let group_id = s.logic.create_group(me, &g.name).await?;
    Ok((StatusCode::CREATED, Json(GroupCreated { group_id })).into_response())
}

/// Add a member (role `member`); only the owner or an admin may.
#[utoipa::path(
    post,
    path = "/api/v1/groups/{group_id}/members",
    tag = "groups",
    operation_id = "add_member",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    request_body = NewMember,
    responses(
        (status = 204, description = "Added (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id or bad JSON", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not the owner or an admin (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group or unknown user", body = ErrorBody),
        (status = 409, description = "`already_exists`: already a member", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: request body too large", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn add_member(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
    ApiJson(m): ApiJson<NewMember>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    s.logic.add_member(me, group, m.user_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Remove a member: the owner removes anyone but itself, an admin removes
/// plain members, anyone may remove itself except the owner.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{group_id}/members/{user_id}",
    tag = "groups",
    operation_id = "remove_member",
    security(("bearerAuth" = [])),
    params(
        ("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001"),
        ("user_id" = String, Path, description = "The member's id (canonical decimal string)", example = "1002"),
    ),
    responses(
        (status = 204, description = "Removed (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: not allowed, including the owner removing itself and any non-member caller", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group, or the target is not a member", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn remove_member(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path((group, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let user: UserId = parse("user id", &user)?;
    s.logic.remove_member(me, group, user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// List a group's members; members only.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{group_id}/members",
    tag = "groups",
    operation_id = "list_members",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    responses(
        (status = 200, description = "The members", body = MemberList),
        (status = 400, description = "`invalid_argument`: malformed id", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not a member", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn list_members(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let members = s.logic.members(me, group).await?;
    Ok(Json(MemberList { members }).into_response())
}

/// Where this client should open its WebSocket (ask before every (re)connect).
#[utoipa::path(
    get,
    path = "/api/v1/connect",
    tag = "connect",
    operation_id = "connect",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The WebSocket URL", body = WsEndpoint),
        (status = 400, description = "`invalid_argument`: no usable `Host` header and no configured public URL", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: no connect node available", body = ErrorBody),
    )
)]
async fn connect(
    State(s): State<ApiState>,
    Caller(me): Caller,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let ws_url = s.locator.locate(me, host).await?;
    Ok(Json(WsEndpoint { ws_url }).into_response())
}

/// An empty query value counts as absent; anything else must be a number
/// (clamped to `u32`).
pub(super) fn parse_limit(v: Option<&str>) -> Result<Option<u32>, ApiError> {
    match v {
        None | Some("") => Ok(None),
        Some(v) => Ok(Some(
            parse::<u64>("limit", v)?.min(u64::from(u32::MAX)) as u32
        )),
    }
}

/// One row of the conversation list.
#[derive(Serialize, ToSchema)]
pub struct ConversationRow {
    /// `u:{a}:{b}` or `g:{group_id}`.
    #[schema(value_type = String, example = "u:1001:1002")]
    pub conversation_id: ConversationId,
    /// The conversation's message with the highest seq.
    #[schema(value_type = MessageDoc)]
    pub last_message: Message,
    /// That message's seq.
    #[schema(example = 42)]
    pub last_seq: u64,
    /// The caller's read cursor (0: nothing read).
    #[schema(example = 40)]
    pub read_seq: u64,
    /// Messages from others with a seq above `read_seq`.
    #[schema(example = 2)]
    pub unread: u64,
    /// v1.2, 1:1 conversations only: the peer's read cursor (messages of
    /// the caller up to it were read).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, example = 42)]
    pub peer_read_seq: Option<u64>,
    /// v1.2: a message above `read_seq` mentions the caller (by id, or `all`).
    pub mentioned: bool,
}

/// A page of the caller's conversation list.
#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    /// The caller's conversations that have a message, newest last message first.
    pub conversations: Vec<ConversationRow>,
    /// Pass as `cursor` for the next page; `null` at the end.
    #[schema(example = "1767225600123~u:1001:1002")]
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ConversationsQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// A read cursor to store.
#[derive(Deserialize, ToSchema)]
pub struct ReadUpTo {
    /// Everything up to this seq was read (at most the conversation's last seq).
    #[schema(example = 42)]
    pub seq: u64,
}

/// Whether a user is online.
#[derive(Serialize, ToSchema)]
pub struct UserPresence {
    /// The user's id (canonical decimal string).
    #[schema(value_type = String, example = "1002")]
    pub user_id: UserId,
    /// Whether at least one WebSocket session of the user is connected.
    pub online: bool,
    /// When a session of the user was last connected, Unix ms (now while
    /// online); `null` if it never connected.
    #[schema(example = 1767225600123_i64)]
    pub last_seen: Option<i64>,
}

/// A group's details.
#[derive(Serialize, ToSchema)]
pub struct GroupInfo {
    /// The group's id (canonical decimal string).
    #[schema(value_type = String, example = "5001")]
    pub group_id: GroupId,
    /// Its display name.
    #[schema(example = "Team")]
    pub name: String,
    /// The owner's user id (canonical decimal string).
    #[schema(value_type = String, example = "1001")]
    pub owner: UserId,
    /// Creation time, Unix milliseconds.
    #[schema(example = 1767225600123_i64)]
    pub created_at: i64,
    /// Present while a mute is set: Unix ms until which only the owner and
    /// admins may send (`9223372036854775807`: until unmuted).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, example = 1767229200000_i64)]
    pub muted_until: Option<i64>,
    /// v1.2: whether members added later see the history from before they
    /// joined (default `false`).
    pub history_visible: bool,
}

/// A new group name.
#[derive(Deserialize, ToSchema)]
pub struct GroupRename {
    /// 1–64 characters, not only whitespace.
    #[schema(example = "Core team", min_length = 1, max_length = 64)]
    pub name: String,
}

/// A member's new role.
#[derive(Deserialize, ToSchema)]
pub struct RoleChange {
    /// `admin` or `member` (ownership moves only by a transfer).
    #[schema(value_type = RoleChangeDoc)]
    pub role: String,
}

/// The new owner of a group.
#[derive(Deserialize, ToSchema)]
pub struct Transfer {
    /// A member's id (canonical decimal string); the old owner becomes an admin.
    #[schema(value_type = String, example = "1002")]
    pub user_id: UserId,
}

/// Mute or unmute a group or a member.
#[derive(Deserialize, ToSchema)]
pub struct MuteChange {
    /// `true` mutes, `false` unmutes.
    pub muted: bool,
    /// How long the mute lasts, in ms (at least 1); absent: until unmuted.
    /// Ignored when `muted` is false.
    #[schema(required = false, example = 3_600_000_u64, minimum = 1)]
    pub duration_ms: Option<u64>,
}

impl MuteChange {
    /// The mute's end: now + duration, `i64::MAX` without a duration, `None`
    /// to unmute.
    fn until(&self) -> Result<Option<i64>, ApiError> {
        if !self.muted {
            return Ok(None);
        }
        match self.duration_ms {
            None => Ok(Some(i64::MAX)),
            Some(0) => Err(ApiError(Error::InvalidArgument(
                "duration_ms must be at least 1".into(),
            ))),
            Some(d) => Ok(Some(
                now_ms().saturating_add(i64::try_from(d).unwrap_or(i64::MAX)),
            )),
        }
    }
}

/// List the caller's conversations, newest last message first, with unread counts.
#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    tag = "conversations",
    operation_id = "list_conversations",
    security(("bearerAuth" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size (default 20, clamped to 1–100; empty counts as absent)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page (opaque; empty counts as absent)"),
    ),
    responses(
        (status = 200, description = "A page (possibly empty)", body = ConversationList),
        (status = 400, description = "`invalid_argument`: malformed `limit` or `cursor`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn conversations(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Query(q): Query<ConversationsQuery>,
) -> Result<Response, ApiError> {
    let limit = parse_limit(q.limit.as_deref())?;
    let cursor = q.cursor.filter(|c| !c.is_empty());
    let page = s.logic.conversations(me, cursor, limit).await?;
    Ok(Json(ConversationList {
        conversations: page
            .conversations
            .into_iter()
            .map(|e| ConversationRow {
                conversation_id: e.conversation_id,
                last_message: e.last_message,
                last_seq: e.last_seq,
                read_seq: e.read_seq,
                unread: e.unread,
                peer_read_seq: e.peer_read_seq,
                mentioned: e.mentioned,
            })
            .collect(),
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// Mark a conversation read up to a seq; the participants' sessions get a `read` frame.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{conversation_id}/read",
    tag = "conversations",
    operation_id = "mark_read",
    security(("bearerAuth" = [])),
    params(("conversation_id" = String, Path, description = "`u:{a}:{b}` (a < b numerically) or `g:{group_id}`", example = "u:1001:1002")),
    request_body = ReadUpTo,
    responses(
        (status = 204, description = "Stored, or a no-op for a seq not above the stored one (no body)"),
        (status = 400, description = "`invalid_argument`: malformed conversation id, bad JSON, or a seq past the conversation's last", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not a participant", body = ErrorBody),
        (status = 404, description = "`not_found`: the group or the peer does not exist", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: request body too large", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn mark_read(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(conversation): Path<String>,
    ApiJson(r): ApiJson<ReadUpTo>,
) -> Result<Response, ApiError> {
    let conversation: ConversationId = parse("conversation id", &conversation)?;
    s.logic.mark_read(me, conversation, r.seq, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Recall a message: its sender (or a group owner or admin) within the
/// recall window; the participants get a `recalled` frame.
#[utoipa::path(
    post,
    path = "/api/v1/messages/{msg_id}/recall",
    tag = "messages",
    operation_id = "recall",
    security(("bearerAuth" = [])),
    params(("msg_id" = String, Path, description = "The message's id (canonical decimal string)", example = "7262015623421952")),
    responses(
        (status = 204, description = "Recalled, or already recalled (no body, no new event)"),
        (status = 400, description = "`invalid_argument`: malformed id", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: someone else's message, or past the recall window (default 120 s from `ts`)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such message in a conversation the caller can read", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn recall(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(msg_id): Path<String>,
) -> Result<Response, ApiError> {
    let msg_id: MessageId = parse("message id", &msg_id)?;
    s.logic.recall(me, msg_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether a user is online, and when it was last seen.
#[utoipa::path(
    get,
    path = "/api/v1/users/{user_id}/presence",
    tag = "presence",
    operation_id = "presence",
    security(("bearerAuth" = [])),
    params(("user_id" = String, Path, description = "The user's id (canonical decimal string)", example = "1002")),
    responses(
        (status = 200, description = "The user's presence", body = UserPresence),
        (status = 400, description = "`invalid_argument`: malformed id", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn presence(
    State(s): State<ApiState>,
    Caller(_me): Caller,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let user: UserId = parse("user id", &user)?;
    let p = s
        .logic
        .presence(vec![user])
        .await?
        .into_iter()
        .find(|p| p.user_id == user)
        .ok_or_else(|| Error::Internal("presence answered without the user".into()))?;
    Ok(Json(UserPresence {
        user_id: p.user_id,
        online: p.online,
        last_seen: p.last_seen,
    })
    .into_response())
}

/// A group's details; members only (extension).
#[utoipa::path(
    get,
    path = "/api/v1/groups/{group_id}",
    tag = "groups",
    operation_id = "get_group",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    responses(
        (status = 200, description = "The group", body = GroupInfo),
        (status = 400, description = "`invalid_argument`: malformed id", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not a member", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry", body = ErrorBody),
    )
)]
async fn group_info(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let g = s.logic.group(me, group).await?;
    Ok(Json(GroupInfo {
        group_id: g.id,
        name: g.name,
        owner: g.owner,
        created_at: g.created_at,
        muted_until: g.muted_until,
        history_visible: g.history_visible,
    })
    .into_response())
}

async fn administer(
    s: &ApiState,
    me: UserId,
    group: GroupId,
    command: GroupCommand,
) -> Result<Response, ApiError> {
    s.logic.administer_group(me, group, command).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Rename a group; the owner or an admin (extension).
#[utoipa::path(
    patch,
    path = "/api/v1/groups/{group_id}",
    tag = "groups",
    operation_id = "rename_group",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    request_body = GroupRename,
    responses(
        (status = 204, description = "Renamed; a `group_renamed` system message follows (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id, bad name or bad JSON", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not the owner or an admin (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: request body too large", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
    )
)]
async fn rename_group(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
    ApiJson(r): ApiJson<GroupRename>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    administer(&s, me, group, GroupCommand::Rename { name: r.name }).await
}

/// Dissolve a group; the owner only (extension).
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{group_id}",
    tag = "groups",
    operation_id = "dissolve_group",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    responses(
        (status = 204, description = "Dissolved after a `group_dissolved` system message to the members (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not the owner (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown (or already dissolved) group", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
    )
)]
async fn dissolve_group(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    administer(&s, me, group, GroupCommand::Dissolve).await
}

/// Hand a group's ownership to another member; the owner only, who becomes
/// an admin (extension).
#[utoipa::path(
    post,
    path = "/api/v1/groups/{group_id}/transfer",
    tag = "groups",
    operation_id = "transfer_group",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    request_body = Transfer,
    responses(
        (status = 204, description = "Transferred; an `owner_changed` system message follows (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id, bad JSON, or a transfer to oneself", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not the owner (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group, or the new owner is not a member", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: request body too large", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
    )
)]
async fn transfer_group(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
    ApiJson(t): ApiJson<Transfer>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    administer(&s, me, group, GroupCommand::Transfer { to: t.user_id }).await
}

/// Mute or unmute a whole group: while muted only the owner and admins may
/// send; the owner or an admin (extension).
#[utoipa::path(
    put,
    path = "/api/v1/groups/{group_id}/mute",
    tag = "groups",
    operation_id = "mute_group",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    request_body = MuteChange,
    responses(
        (status = 204, description = "Set; a `group_muted` or `group_unmuted` system message follows (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id, bad JSON, `duration_ms` of 0", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not the owner or an admin (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: request body too large", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
    )
)]
async fn mute_group(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
    ApiJson(m): ApiJson<MuteChange>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let until = m.until()?;
    administer(&s, me, group, GroupCommand::Mute { until }).await
}

/// Promote a member to admin or demote an admin to member; the owner only
/// (extension).
#[utoipa::path(
    put,
    path = "/api/v1/groups/{group_id}/members/{user_id}/role",
    tag = "groups",
    operation_id = "set_member_role",
    security(("bearerAuth" = [])),
    params(
        ("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001"),
        ("user_id" = String, Path, description = "The member's id (canonical decimal string)", example = "1002"),
    ),
    request_body = RoleChange,
    responses(
        (status = 204, description = "Set; a `role_changed` system message follows (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id, bad JSON, an unknown role, `owner` (use a transfer), or the owner as target", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not the owner (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group, or the target is not a member", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: request body too large", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
    )
)]
async fn set_member_role(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path((group, user)): Path<(String, String)>,
    ApiJson(r): ApiJson<RoleChange>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let user: UserId = parse("user id", &user)?;
    let role = Role::parse(&r.role).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "unknown role {:?}; use \"admin\" or \"member\"",
            r.role.chars().take(20).collect::<String>()
        ))
    })?;
    administer(&s, me, group, GroupCommand::SetRole { user, role }).await
}

/// Mute or unmute one member: the owner mutes anyone else, an admin mutes
/// plain members (extension).
#[utoipa::path(
    put,
    path = "/api/v1/groups/{group_id}/members/{user_id}/mute",
    tag = "groups",
    operation_id = "mute_member",
    security(("bearerAuth" = [])),
    params(
        ("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001"),
        ("user_id" = String, Path, description = "The member's id (canonical decimal string)", example = "1002"),
    ),
    request_body = MuteChange,
    responses(
        (status = 204, description = "Set; a `member_muted` or `member_unmuted` system message follows (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id, bad JSON, `duration_ms` of 0", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: missing, bad or expired token", body = ErrorBody),
        (status = 403, description = "`permission_denied`: not allowed (a plain member, an admin muting an admin or the owner, anyone muting itself, non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group, or the target is not a member", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: request body too large", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
    )
)]
async fn mute_member(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path((group, user)): Path<(String, String)>,
    ApiJson(m): ApiJson<MuteChange>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let user: UserId = parse("user id", &user)?;
    let until = m.until()?;
    administer(&s, me, group, GroupCommand::MuteMember { user, until }).await
}
