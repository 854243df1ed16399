//! Push tokens of a user's devices and the notification setting (protocol
//! v1.2): `POST /api/v1/devices`, `GET /api/v1/devices`,
//! `DELETE /api/v1/devices/{device}`, `PUT /api/v1/notifications/settings`.
//! A device that has a token is notified of messages that reach none of the
//! user's sessions (see `im_core::task::offline`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use im_core::id::now_ms;
use im_core::ports::{DeviceStore, Platform, PushToken};
use im_core::Error;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::errors::{ApiError, ErrorBody, Unauthenticated};
use super::extract::{ApiJson, Caller};
use super::router::ApiState;

/// `POST /api/v1/devices`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// `fcm`, `apns` or `webhook`.
    #[schema(value_type = String, example = "fcm")]
    pub platform: Platform,
    /// The provider's token for this device (1-512 printable ASCII).
    pub token: String,
    /// The device label (the `?device=` of its WebSocket; default `web`):
    /// one token per label, a new one replaces the old.
    #[serde(default)]
    pub device: Option<String>,
}

/// A registered device (the token shown by its last 6 characters).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceDoc {
    /// The device label.
    pub device: String,
    /// `fcm`, `apns` or `webhook`.
    #[schema(value_type = String)]
    pub platform: Platform,
    /// The token's last 6 characters.
    pub token_tail: String,
    /// When it was registered, Unix ms.
    pub registered_at: i64,
}

impl From<&PushToken> for DeviceDoc {
    fn from(t: &PushToken) -> Self {
        let tail: String = {
            let chars: Vec<char> = t.token.chars().collect();
            chars[chars.len().saturating_sub(6)..].iter().collect()
        };
        DeviceDoc {
            device: t.device.clone(),
            platform: t.platform,
            token_tail: tail,
            registered_at: t.registered_at,
        }
    }
}

/// `GET /api/v1/devices`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    /// The caller's devices, by label.
    pub devices: Vec<DeviceDoc>,
    /// Whether notifications show message previews.
    pub preview: bool,
}

/// `PUT /api/v1/notifications/settings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// `false`: notifications say "New message" without the text.
    pub preview: bool,
}

fn devices(s: &ApiState) -> Result<&Arc<dyn DeviceStore>, ApiError> {
    s.devices.as_ref().ok_or_else(|| {
        ApiError(Error::NotFound(
            "notifications are not enabled on this server".into(),
        ))
    })
}

/// Register this device's push token (v1.2).
#[utoipa::path(
    post,
    path = "/api/v1/devices",
    tag = "notifications",
    operation_id = "register_device",
    security(("bearerAuth" = [])),
    request_body = NewDevice,
    responses(
        (status = 201, description = "Registered (replacing the label's previous token)", body = DeviceDoc),
        (status = 400, description = "`invalid_argument`: bad platform, token or label", body = ErrorBody),
        (status = 404, description = "`not_found`: notifications are off on this server", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: 20 devices already", body = ErrorBody),
        Unauthenticated,
    )
)]
pub async fn register_device(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(req): ApiJson<NewDevice>,
) -> Result<Response, ApiError> {
    let store = devices(&s)?;
    let token = PushToken {
        platform: req.platform,
        token: req.token,
        device: req.device.unwrap_or_else(|| "web".into()),
        registered_at: now_ms(),
    };
    token.validate()?;
    store.register(me, &token).await?;
    Ok((StatusCode::CREATED, Json(DeviceDoc::from(&token))).into_response())
}

/// The caller's registered devices and notification setting (v1.2).
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    tag = "notifications",
    operation_id = "list_devices",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The devices", body = DeviceList),
        (status = 404, description = "`not_found`: notifications are off on this server", body = ErrorBody),
        Unauthenticated,
    )
)]
pub async fn list_devices(
    State(s): State<ApiState>,
    Caller(me): Caller,
) -> Result<Response, ApiError> {
    let store = devices(&s)?;
    let list = store.list(me).await?;
    let preview = store.preview(me).await?;
    Ok(Json(DeviceList {
        devices: list.iter().map(DeviceDoc::from).collect(),
        preview,
    })
    .into_response())
}

/// Forget a device's token (v1.2).
#[utoipa::path(
    delete,
    path = "/api/v1/devices/{device}",
    tag = "notifications",
    operation_id = "remove_device",
    security(("bearerAuth" = [])),
    params(("device" = String, Path, description = "The device label")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`not_found`: no such device, or notifications are off", body = ErrorBody),
        Unauthenticated,
    )
)]
pub async fn remove_device(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(device): Path<String>,
) -> Result<Response, ApiError> {
    if devices(&s)?.remove(me, &device).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError(Error::NotFound(format!("no device {device}"))))
    }
}

/// Show or hide message previews in notifications (v1.2).
#[utoipa::path(
    put,
    path = "/api/v1/notifications/settings",
    tag = "notifications",
    operation_id = "notification_settings",
    security(("bearerAuth" = [])),
    request_body = NotifySettings,
    responses(
        (status = 204, description = "Saved"),
        (status = 400, description = "`invalid_argument`", body = ErrorBody),
        (status = 404, description = "`not_found`: notifications are off on this server", body = ErrorBody),
        Unauthenticated,
    )
)]
pub async fn notification_settings(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(req): ApiJson<NotifySettings>,
) -> Result<Response, ApiError> {
    devices(&s)?.set_preview(me, req.preview).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The device routes (under `/api/v1`).
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/devices", post(register_device).get(list_devices))
        .route("/devices/{device}", delete(remove_device))
        .route("/notifications/settings", put(notification_settings))
}
