//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` annotations and the request/response types of the http
//! module, served at `GET /api/v1/openapi.json` wherever the API is served.
//!
//! This module depends on the handlers only for their `#[utoipa::path]`s
//! (listed in `paths(...)`), which bring the schemas they use ([`super::dto`],
//! [`super::schema`], the resource modules' own bodies); nothing depends on
//! this module but the route serving the document.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::errors::{ErrorBody, ErrorCodeName, ErrorDetail};
use super::{accounts, connect, conversations, groups, messages, presence};

/// The name of the bearer-token security scheme in the document.
pub const BEARER_AUTH: &str = "bearerAuth";

/// Adds the `bearerAuth` scheme (`Authorization: Bearer <token>` from `POST /api/v1/sessions`).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            BEARER_AUTH,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The token from `POST /api/v1/sessions`, as `Authorization: Bearer <token>`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of `/api/v1`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "im HTTP API",
        description = "Protocol v1 (with the v1.1 additions) of the im SDK over HTTP: accounts, \
login and logout, sending (now or scheduled), history, recall, the conversation list with read cursors, presence, groups and \
their administration, and finding a WebSocket endpoint. Every error is `{\"error\":{\"code\",\"message\"}}`; \
every 64-bit id is a canonical decimal string. See docs/protocol.md."
    ),
    paths(
        accounts::register,
        accounts::login,
        accounts::logout,
        messages::send,
        messages::list_scheduled,
        messages::cancel_scheduled,
        messages::recall,
        messages::history,
        conversations::conversations,
        conversations::mark_read,
        presence::presence,
        groups::create_group,
        groups::group_info,
        groups::rename_group,
        groups::dissolve_group,
        groups::transfer_group,
        groups::mute_group,
        groups::add_member,
        groups::list_members,
        groups::remove_member,
        groups::set_member_role,
        groups::mute_member,
        connect::connect,
        super::attachments::create_upload,
        super::attachments::download,
        super::devices::register_device,
        super::devices::list_devices,
        super::devices::remove_device,
        super::devices::notification_settings,
        super::people::me,
        super::people::profile,
        super::people::set_profile,
        super::people::lookup,
        super::people::search,
        super::people::contacts,
        super::people::request_contact,
        super::people::contact_requests,
        super::people::accept_request,
        super::people::decline_request,
        super::people::cancel_request,
        super::people::remove_contact,
        super::people::blocked,
        super::people::block,
        super::people::unblock,
        super::people::reads,
        super::people::edit_message,
        super::people::group_history,
        serve_document,
    ),
    // Every schema a path uses is collected from the path (utoipa 5); the
    // error shape is listed for the response sets of `errors`.
    components(schemas(ErrorBody, ErrorDetail, ErrorCodeName)),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Registration, login and logout"),
        (name = "messages", description = "Sending, scheduled sends, recall and history"),
        (name = "conversations", description = "The conversation list and read cursors"),
        (name = "presence", description = "Who is online"),
        (name = "groups", description = "Groups, their members and their administration"),
        (name = "connect", description = "Finding a WebSocket endpoint"),
        (name = "attachments", description = "Uploads and downloads of attachments (v1.2)"),
        (name = "notifications", description = "Push tokens and notification settings (v1.2)"),
        (name = "people", description = "Profiles, user search, contacts and blocks (v1.2)"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The document (built once).
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// Answers `GET /api/v1/openapi.json` with this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document of this API", content_type = "application/json", body = Object))
)]
pub(crate) async fn serve_document() -> Response {
    Json(document()).into_response()
}
