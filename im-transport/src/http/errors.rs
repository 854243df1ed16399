//! The JSON error shape `{"error":{"code","message"}}` and the mapping of
//! error codes to HTTP statuses; also for unknown routes (404) and wrong
//! methods (405, `invalid_argument`).
//!
//! The error answers many routes share are documented once, as response sets
//! for `#[utoipa::path(responses(...))]` ([`AuthErrors`], [`Unauthenticated`],
//! [`Internal`], [`BodyTooLarge`], [`MalformedId`]); what is particular to a
//! route (why it answers 403 or 404, a 503 with advice) stays on the route.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use im_core::{Error, ErrorCode};
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

/// The body of every HTTP error: `{"error":{"code","message"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "no group 5001"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code and message of an HTTP error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The error code (its HTTP status is fixed per code; see the protocol).
    #[schema(value_type = ErrorCodeName)]
    pub code: String,
    /// A human-readable explanation (`"internal error"` for `internal`).
    pub message: String,
}

/// The error codes of protocol v1.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCodeName {
    /// 400 (and 405 for a wrong method): malformed or out-of-range input.
    InvalidArgument,
    /// 401: missing, bad or expired token; wrong username or password.
    Unauthenticated,
    /// 403: authenticated but not allowed.
    PermissionDenied,
    /// 404: no such user, group or route.
    NotFound,
    /// 409: username taken; user already a member.
    AlreadyExists,
    /// 413 (too large) or 429 (rate limited).
    ResourceExhausted,
    /// 503: a dependency is down; safe to retry.
    Unavailable,
    /// 500: a bug.
    Internal,
}

/// The errors of any authenticated route: a bad token (401), a bug (500), a
/// dependency down (503).
#[derive(Debug, IntoResponses)]
pub enum AuthErrors {
    /// 401.
    #[response(
        status = 401,
        description = "`unauthenticated`: missing, bad or expired token"
    )]
    Unauthenticated(ErrorBody),
    /// 500.
    #[response(status = 500, description = "`internal`")]
    Internal(ErrorBody),
    /// 503.
    #[response(
        status = 503,
        description = "`unavailable`: a dependency is down; safe to retry"
    )]
    Unavailable(ErrorBody),
}

/// A bad token (401) alone, for routes that describe their own 503.
#[derive(Debug, IntoResponses)]
#[response(
    status = 401,
    description = "`unauthenticated`: missing, bad or expired token"
)]
pub struct Unauthenticated(pub ErrorBody);

/// A bug (500) alone, for routes that describe their own 503.
#[derive(Debug, IntoResponses)]
#[response(status = 500, description = "`internal`")]
pub struct Internal(pub ErrorBody);

/// A request body over the API's limit (413).
#[derive(Debug, IntoResponses)]
#[response(
    status = 413,
    description = "`resource_exhausted`: request body too large"
)]
pub struct BodyTooLarge(pub ErrorBody);

/// An id in the path that does not parse (400), for routes with no other 400.
#[derive(Debug, IntoResponses)]
#[response(status = 400, description = "`invalid_argument`: malformed id")]
pub struct MalformedId(pub ErrorBody);

/// A core error answered over HTTP.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// The HTTP status of an error code (`resource_exhausted` is 413 here; the
/// rate limiter answers 429 itself).
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::AlreadyExists => StatusCode::CONFLICT,
        ErrorCode::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A JSON error response with an explicit status.
pub fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.as_str().to_owned(),
            message: message.to_owned(),
        },
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        if code == ErrorCode::Internal {
            tracing::error!(error = ?self.0, "internal error answering an HTTP request");
        }
        let status = match &self.0 {
            // A rate limit (login, registration, connections) is 429.
            Error::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => status_of(code),
        };
        let mut res = error_response(status, code, &self.0.public_message());
        if let Some(wait) = self.0.retry_after() {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after_value(wait));
        }
        res
    }
}

/// A `Retry-After` value: whole seconds, rounded up, at least 1.
pub fn retry_after_value(wait: std::time::Duration) -> axum::http::HeaderValue {
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    axum::http::HeaderValue::from(secs)
}

/// 404 for unknown routes.
pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
}

/// 405 for known routes with a wrong method.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidArgument,
        "method not allowed on this route",
    )
}
