//! Presence: whether a user is online, and when it was last seen.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use im_core::id::UserId;
use im_core::Error;

use super::dto::UserPresence;
use super::errors::{ApiError, AuthErrors, ErrorBody, MalformedId};
use super::extract::{parse, Caller};
use super::router::ApiState;

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
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        MalformedId, AuthErrors,
    )
)]
pub(super) async fn presence(
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
