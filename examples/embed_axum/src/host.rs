//! The host application as it was before im: its own `users` table, sign-up,
//! login with a session token (as a cookie and in the body), and `/me`.
//! Nothing here knows about im.

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// The application's own schema: its users and its login sessions.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS users (
        id BIGSERIAL PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        display_name TEXT,
        avatar_url TEXT,
        created_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS sessions (
        token TEXT PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES users(id),
        expires_at BIGINT NOT NULL
    )",
];

/// The session cookie's name.
pub const COOKIE: &str = "sid";
/// How long a login lasts.
pub const SESSION_MS: i64 = 24 * 3600 * 1000;

/// Creates the application's tables (idempotent).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    for statement in SCHEMA {
        sqlx::query(statement).execute(pool).await?;
    }
    Ok(())
}

/// The application's state.
#[derive(Clone)]
pub struct HostState {
    /// Its database.
    pub db: PgPool,
}

/// The application's routes: `POST /signup`, `POST /login`, `GET /me`.
pub fn routes() -> Router<HostState> {
    Router::new()
        .route(
            "/",
            get(|| async { "the host application; chat lives under /chat" }),
        )
        .route("/signup", post(signup))
        .route("/login", post(login))
        .route("/me", get(me))
}

/// Sign-up and login bodies.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
    #[serde(default)]
    display_name: Option<String>,
}

/// What `/login` answers (the token is also set as the `sid` cookie).
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginReply {
    /// The user's id (also im's user id).
    pub user_id: i64,
    /// The session token: the `sid` cookie, and im's bearer token.
    pub token: String,
}

/// The host's errors: a status and a message.
#[derive(Debug)]
pub struct HostError(StatusCode, String);

impl IntoResponse for HostError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

impl From<sqlx::Error> for HostError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error");
        HostError(
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable".into(),
        )
    }
}

fn now_ms() -> i64 {
    im_core::id::now_ms()
}

async fn signup(
    State(s): State<HostState>,
    Json(c): Json<Credentials>,
) -> Result<(StatusCode, Json<serde_json::Value>), HostError> {
    let bad = |m: &str| HostError(StatusCode::BAD_REQUEST, m.into());
    if c.username.len() < 3
        || c.username.len() > 32
        || !c
            .username
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    {
        return Err(bad("usernames are 3–32 letters, digits or _"));
    }
    if c.password.len() < 8 {
        return Err(bad("passwords have at least 8 characters"));
    }
    let hash = im_core::auth::hash_password(&c.password)
        .map_err(|e| HostError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let id: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO users (username, password_hash, display_name, created_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (username) DO NOTHING RETURNING id",
    )
    .bind(&c.username)
    .bind(&hash)
    .bind(&c.display_name)
    .bind(now_ms())
    .fetch_optional(&s.db)
    .await?;
    match id {
        Some((id,)) => Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({"user_id": id})),
        )),
        None => Err(HostError(StatusCode::CONFLICT, "username taken".into())),
    }
}

async fn login(
    State(s): State<HostState>,
    Json(c): Json<Credentials>,
) -> Result<Response, HostError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE username = $1")
            .bind(&c.username)
            .fetch_optional(&s.db)
            .await?;
    let Some((user_id, hash)) = row.filter(|(_, h)| im_core::auth::verify_password(&c.password, h))
    else {
        return Err(HostError(
            StatusCode::UNAUTHORIZED,
            "wrong username or password".into(),
        ));
    };
    let _ = hash;
    let token = {
        use rand::RngCore;
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    sqlx::query("INSERT INTO sessions (token, user_id, expires_at) VALUES ($1, $2, $3)")
        .bind(&token)
        .bind(user_id)
        .bind(now_ms() + SESSION_MS)
        .execute(&s.db)
        .await?;
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/");
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(LoginReply { user_id, token }),
    )
        .into_response())
}

/// The logged-in user of a request: its `sid` cookie or bearer token names a
/// live session.
pub struct LoggedIn(pub i64);

/// The session token of a request: the `sid` cookie, else the bearer token.
pub fn session_token(parts: &Parts) -> Option<String> {
    let cookies = parts.headers.get_all(header::COOKIE);
    for value in cookies {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some(token) = pair.trim().strip_prefix("sid=") {
                return Some(token.to_owned());
            }
        }
    }
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

/// The user of a live session `token`, if any.
pub async fn session_user(db: &PgPool, token: &str) -> Result<Option<i64>, sqlx::Error> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT user_id FROM sessions WHERE token = $1 AND expires_at > $2")
            .bind(token)
            .bind(now_ms())
            .fetch_optional(db)
            .await?;
    Ok(row.map(|(id,)| id))
}

impl<S> FromRequestParts<S> for LoggedIn
where
    HostState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = HostError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let s = HostState::from_ref(state);
        let unauthorized = || HostError(StatusCode::UNAUTHORIZED, "log in first".into());
        let token = session_token(parts).ok_or_else(unauthorized)?;
        session_user(&s.db, &token)
            .await?
            .map(LoggedIn)
            .ok_or_else(unauthorized)
    }
}

async fn me(
    State(s): State<HostState>,
    LoggedIn(id): LoggedIn,
) -> Result<Json<serde_json::Value>, HostError> {
    let (username,): (String,) = sqlx::query_as("SELECT username FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&s.db)
        .await?;
    Ok(Json(
        serde_json::json!({"user_id": id, "username": username}),
    ))
}
