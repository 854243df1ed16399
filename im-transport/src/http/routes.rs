//! The `/api/v1` routes of the protocol. Handlers parse and authenticate, then
//! call the Logic layer through `LogicApi` (in process or over gRPC).

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use im_core::connect::RateLimiter;
use im_core::id::{ConversationId, GroupId, UserId};
use im_core::logic::{LogicApi, Sender};
use im_core::protocol::SendRequest;
use im_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::errors::{error_response, ApiError};

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
        Ok(format!("ws://{host}/ws"))
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
        }
    }
}

/// The `/api/v1` router (with body limit and JSON errors).
pub fn api_router(state: ApiState, config: &ApiConfig) -> Router {
    let api = Router::new()
        .route("/users", post(register))
        .route("/sessions", post(login))
        .route("/messages", post(send))
        .route("/conversations/{conversation_id}/messages", get(history))
        .route("/groups", post(create_group))
        .route(
            "/groups/{group_id}/members",
            post(add_member).get(list_members),
        )
        .route(
            "/groups/{group_id}/members/{user_id}",
            delete(remove_member),
        )
        .route("/connect", get(connect))
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

/// The authenticated caller (Bearer token).
pub struct Caller(pub UserId);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(|| Error::Unauthenticated("missing bearer token".into()))?;
        Ok(Caller(
            state.logic.verify_token(token.trim()).await?.user_id,
        ))
    }
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, ApiError> {
    s.parse().map_err(|_| {
        ApiError(Error::InvalidArgument(format!(
            "malformed {what}: {}",
            s.chars().take(40).collect::<String>()
        )))
    })
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn register(
    State(s): State<ApiState>,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let id = s.logic.register(&c.username, &c.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"user_id": id})),
    )
        .into_response())
}

async fn login(
    State(s): State<ApiState>,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let l = s.logic.login(&c.username, &c.password).await?;
    Ok(Json(
        serde_json::json!({"user_id": l.user_id, "token": l.token, "expires_at": l.expires_at}),
    )
    .into_response())
}

async fn send(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<Response, ApiError> {
    if let Some(l) = &s.limiter {
        if !l.allow(me) {
            metrics::counter!("im_rate_limited_total").increment(1);
            return Ok(error_response(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::ResourceExhausted,
                "send rate limit exceeded; slow down",
            ));
        }
    }
    let ack = s.logic.send(Sender::http(me), req).await?;
    Ok(Json(serde_json::json!({
        "msg_id": ack.msg_id,
        "conversation_id": ack.conversation_id,
        "seq": ack.seq,
        "ts": ack.ts,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct HistoryQuery {
    after_seq: Option<String>,
    limit: Option<String>,
}

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
    let limit: Option<u32> = match q.limit.as_deref() {
        None | Some("") => None,
        Some(v) => Some(parse::<u64>("limit", v)?.min(u64::from(u32::MAX)) as u32),
    };
    let page = s.logic.sync(me, conversation, after_seq, limit).await?;
    Ok(
        Json(serde_json::json!({"messages": page.messages, "has_more": page.has_more}))
            .into_response(),
    )
}

#[derive(Deserialize)]
struct NewGroup {
    name: String,
}

async fn create_group(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(g): ApiJson<NewGroup>,
) -> Result<Response, ApiError> {
    let id = s.logic.create_group(me, &g.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"group_id": id})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct NewMember {
    user_id: UserId,
}

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

async fn list_members(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let members = s.logic.members(me, group).await?;
    Ok(Json(serde_json::json!({"members": members})).into_response())
}

async fn connect(
    State(s): State<ApiState>,
    Caller(me): Caller,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let url = s.locator.locate(me, host).await?;
    Ok(Json(serde_json::json!({"ws_url": url})).into_response())
}
