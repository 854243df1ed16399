//! What handlers take from a request: the JSON body with protocol errors
//! ([`ApiJson`]), the authenticated caller ([`Caller`]), the raw bearer token
//! (logout), the client address ([`client_ip`]) and ids from the path and
//! query (`parse`, `parse_limit`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use im_core::frontdoor::FrontDoor;
use im_core::id::UserId;
use im_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;

use super::errors::{error_response, ApiError};
use super::router::ApiState;

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
pub(super) struct Bearer(pub(super) String);

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
