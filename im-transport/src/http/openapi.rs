//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` annotations and the request/response types of the http
//! module, served at `GET /api/v1/openapi.json` wherever the API is served.
//!
//! Core types (ids, messages, members) are described here by doc-only
//! structs, so im-core needs no OpenAPI dependency: every 64-bit id is a
//! canonical decimal string on the wire.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::errors::{ErrorBody, ErrorCodeName, ErrorDetail};
use super::routes::{
    self, ConversationList, ConversationRow, Credentials, GroupCreated, GroupInfo, GroupRename,
    HistoryPage, LoggedIn, MemberList, MuteChange, NewGroup, NewMember, ReadUpTo, Registered,
    RoleChange, ScheduledList, ScheduledMessage, Sent, Transfer, UserPresence, WsEndpoint,
};

/// The name of the bearer-token security scheme in the document.
pub const BEARER_AUTH: &str = "bearerAuth";

/// The addressee of a send: exactly one of `user` or `group`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetDoc {
    /// A 1:1 peer's user id (canonical decimal string).
    User(String),
    /// A group id (canonical decimal string).
    Group(String),
}

/// The kind of a message: `text` carries a string body, the others a JSON object.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindDoc {
    /// Plain text; the body is a JSON string.
    Text,
    /// An image reference; the body is a JSON object.
    Image,
    /// A file reference; the body is a JSON object.
    File,
    /// An audio clip (v1.2); the body is a JSON object (an attachment:
    /// `{key, name, size, mime, duration?}`).
    Audio,
    /// A video (v1.2); the body is a JSON object (an attachment:
    /// `{key, name, size, mime, width?, height?, duration?}`).
    Video,
    /// Application-defined; the body is a JSON object.
    Custom,
}

/// The kind of a stored message: the kinds a client sends, plus `system`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKindDoc {
    /// Plain text; the body is a JSON string.
    Text,
    /// An image reference; the body is a JSON object.
    Image,
    /// A file reference; the body is a JSON object.
    File,
    /// An audio clip (v1.2); the body is a JSON object (an attachment:
    /// `{key, name, size, mime, duration?}`).
    Audio,
    /// A video (v1.2); the body is a JSON object (an attachment:
    /// `{key, name, size, mime, width?, height?, duration?}`).
    Video,
    /// Application-defined; the body is a JSON object.
    Custom,
    /// Written by the server about a group change (v1.1 extension); the body
    /// is a JSON object `{"event", "actor", …}`. Clients cannot send it.
    System,
}

/// A send request (`POST /api/v1/messages`).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"client_msg_id": "c-8f14e45f", "to": {"user": "1002"}, "kind": "text", "body": "hello"}))]
pub struct SendRequestDoc {
    /// The sender's idempotency key (1–128 bytes); reuse it on every retry.
    pub client_msg_id: String,
    /// The addressee.
    pub to: TargetDoc,
    /// The kind (default `text`; optional, not nullable).
    #[schema(required = false)]
    pub kind: KindDoc,
    /// A string for `text`, a JSON object for the other kinds (at most
    /// 16,384 bytes).
    pub body: serde_json::Value,
    /// Scheduled delivery (extension): deliver at this time, Unix
    /// milliseconds, at most 30 days ahead; the send is acked at once with
    /// `seq` 0 and held until then. A time in the past sends now.
    #[schema(required = false, example = 1767229200000_i64)]
    pub deliver_at: i64,
    /// v1.2, group messages only: the mentioned members' ids (at most 50),
    /// or `"all"` (owner and admins only).
    #[schema(required = false, value_type = Object, example = json!(["1002", "1003"]))]
    pub mentions: serde_json::Value,
}

/// A stored message (in history, `sync_result` and `message` frames).
#[derive(Serialize, ToSchema)]
pub struct MessageDoc {
    /// Snowflake id, unique across the cluster (canonical decimal string).
    #[schema(example = "7262015623421952")]
    pub msg_id: String,
    /// `u:{a}:{b}` or `g:{group_id}`.
    #[schema(example = "u:1001:1002")]
    pub conversation_id: String,
    /// Position in the conversation: 1, 2, 3, … (strictly increasing).
    #[schema(example = 42)]
    pub seq: u64,
    /// The sender's user id (canonical decimal string).
    #[schema(example = "1001")]
    pub from: String,
    /// The addressee as the sender wrote it.
    pub to: TargetDoc,
    /// The kind of body.
    pub kind: MessageKindDoc,
    /// The body as sent (absent once recalled).
    #[schema(required = false)]
    pub body: serde_json::Value,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// Acceptance time, Unix milliseconds.
    #[schema(example = 1767225600123_i64)]
    pub ts: i64,
    /// Present and true once the message was recalled (v1.1).
    #[schema(required = false)]
    pub recalled: bool,
    /// v1.2: present once the sender edited the body; when, Unix ms.
    #[schema(required = false, example = 1767225700000_i64)]
    pub edited_at: i64,
    /// v1.2: present when the message mentions members: their ids, or `"all"`.
    #[schema(required = false, value_type = Object, example = json!(["1002"]))]
    pub mentions: serde_json::Value,
}

/// A member's role in a group.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleDoc {
    /// Created the group (or received ownership); exactly one per group.
    Owner,
    /// May add and remove plain members.
    Admin,
    /// A plain member.
    Member,
}

/// A group member.
#[derive(Serialize, ToSchema)]
pub struct MemberDoc {
    /// The member's user id (canonical decimal string).
    #[schema(example = "1001")]
    pub user_id: String,
    /// Its role.
    pub role: RoleDoc,
    /// Present while the member is muted: Unix ms until which it may not send
    /// (`9223372036854775807`: until unmuted). Extension.
    #[schema(required = false, example = 1767229200000_i64)]
    pub muted_until: i64,
    /// v1.2: the conversation's last seq when the member was added; unless
    /// the group's `history_visible` is set, the member sees only later messages.
    #[schema(example = 0)]
    pub joined_seq: u64,
}

/// A role that `PUT …/members/{user_id}/role` can set.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleChangeDoc {
    /// May add and remove plain members, rename, mute.
    Admin,
    /// A plain member.
    Member,
}

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
        routes::register,
        routes::login,
        routes::logout,
        routes::send,
        routes::list_scheduled,
        routes::cancel_scheduled,
        routes::recall,
        routes::history,
        routes::conversations,
        routes::mark_read,
        routes::presence,
        routes::create_group,
        routes::group_info,
        routes::rename_group,
        routes::dissolve_group,
        routes::transfer_group,
        routes::mute_group,
        routes::add_member,
        routes::list_members,
        routes::remove_member,
        routes::set_member_role,
        routes::mute_member,
        routes::connect,
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
    components(schemas(
        Credentials,
        Registered,
        LoggedIn,
        SendRequestDoc,
        TargetDoc,
        KindDoc,
        Sent,
        ScheduledList,
        ScheduledMessage,
        HistoryPage,
        MessageDoc,
        MessageKindDoc,
        ConversationList,
        ConversationRow,
        ReadUpTo,
        UserPresence,
        NewGroup,
        GroupCreated,
        GroupInfo,
        GroupRename,
        Transfer,
        MuteChange,
        RoleChange,
        RoleChangeDoc,
        NewMember,
        MemberList,
        MemberDoc,
        RoleDoc,
        WsEndpoint,
        super::attachments::UploadRequest,
        super::attachments::Upload,
        super::attachments::PresignedDoc,
        super::devices::NewDevice,
        super::devices::DeviceDoc,
        super::devices::DeviceList,
        super::devices::NotifySettings,
        super::people::ProfileDoc,
        super::people::ProfileEdit,
        super::people::LookupRequest,
        super::people::ProfileList,
        super::people::UserPage,
        super::people::ContactDoc,
        super::people::ContactPage,
        super::people::NewContactRequest,
        super::people::RequestStatus,
        super::people::RequestDoc,
        super::people::RequestPage,
        super::people::ReadDoc,
        super::people::ReadList,
        super::people::EditBody,
        super::people::HistoryVisibility,
        super::routes::NewAccount,
        ErrorBody,
        ErrorDetail,
        ErrorCodeName,
    )),
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
