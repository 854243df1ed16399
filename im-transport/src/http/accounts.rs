//! Accounts: registration (`POST /api/v1/users`), login and logout
//! (`POST`/`DELETE /api/v1/sessions`), behind the front door when one is set.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use im_core::ErrorCode;

use super::dto::{Credentials, LoggedIn, NewAccount, Registered};
use super::errors::{ApiError, AuthErrors, BodyTooLarge, ErrorBody, Internal};
use super::extract::{client_ip, ApiJson, Bearer};
use super::router::ApiState;

/// The header a [`im_core::ports::RegistrationGuard`] reads its proof from
/// (a captcha answer, an invite code).
pub const REGISTRATION_PROOF_HEADER: &str = "x-registration-proof";

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
        (status = 429, description = "`resource_exhausted`: too many registrations from this address or in total; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down, or password hashing is at capacity (with `Retry-After`); safe to retry", body = ErrorBody),
        BodyTooLarge, Internal,
    )
)]
pub(super) async fn register(
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
        (status = 429, description = "`resource_exhausted`: too many attempts from this address, or too many failed logins for this account; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down, or password hashing is at capacity (with `Retry-After`); safe to retry", body = ErrorBody),
        BodyTooLarge, Internal,
    )
)]
pub(super) async fn login(
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
        AuthErrors,
    )
)]
pub(super) async fn logout(
    State(s): State<ApiState>,
    Bearer(token): Bearer,
) -> Result<Response, ApiError> {
    s.logic.logout(&token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
