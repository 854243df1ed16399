//! Finding a WebSocket endpoint: `GET /api/v1/connect` and the
//! [`WsLocator`] that answers it.

use async_trait::async_trait;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use im_core::id::UserId;
use im_core::Error;

use super::dto::WsEndpoint;
use super::errors::{ApiError, ErrorBody, Internal, Unauthenticated};
use super::extract::Caller;
use super::router::ApiState;

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
    /// Where the app is nested in a larger one (e.g. `/chat`; empty at the
    /// root): URLs built from `Host` end in `<mount>/ws`.
    pub mount: String,
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
        Ok(format!("{scheme}://{host}{}/ws", self.mount))
    }
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
        (status = 503, description = "`unavailable`: no connect node available", body = ErrorBody),
        Unauthenticated, Internal,
    )
)]
pub(super) async fn connect(
    State(s): State<ApiState>,
    Caller(me): Caller,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let ws_url = s.locator.locate(me, host).await?;
    Ok(Json(WsEndpoint { ws_url }).into_response())
}
