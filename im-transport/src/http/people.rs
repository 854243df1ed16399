//! The people around a conversation (protocol v1.2): profiles and lookup
//! (`/users/me`, `/users/{id}`, `/users/lookup`, `/users/search`), contacts
//! and their requests (`/contacts…`), blocks (`/blocks…`), participants'
//! read cursors (`/conversations/{id}/reads`), edits (`PATCH /messages/{id}`)
//! and a group's history visibility (`PUT /groups/{id}/history`).
//!
//! Every handler is one [`LogicApi::execute`](im_core::logic::LogicApi::execute)
//! call with an [`im_core::logic::Command`]; this file only maps HTTP to it.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use im_core::id::{ConversationId, GroupId, MessageId, UserId};
use im_core::logic::{Command, ContactView, GroupCommand, ReadCursor, Reply, RequestView};
use im_core::model::{Message, Profile};
use im_core::ports::{Direction, RequestOutcome};
use im_core::Error;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::errors::{ApiError, ErrorBody, MalformedId, Unauthenticated};
use super::extract::{parse, parse_limit, ApiJson, Caller};
use super::router::ApiState;

/// A user's public profile.
#[derive(Serialize, ToSchema)]
pub struct ProfileDoc {
    /// The user's id (canonical decimal string).
    #[schema(example = "1002")]
    pub user_id: String,
    /// The unique login name.
    #[schema(example = "bob")]
    pub username: String,
    /// The name to show: the one the user chose, else the username.
    #[schema(example = "Bob Stone")]
    pub display_name: String,
    /// The user's picture (absent when none).
    #[schema(required = false, example = "https://example.com/bob.png")]
    pub avatar_url: String,
}

/// The caller's new profile (`PUT /api/v1/users/me/profile`): both fields
/// are set; an absent or `null` one is cleared.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileEdit {
    /// 1–64 characters, not only whitespace; `null`: show the username.
    #[serde(default)]
    #[schema(example = "Alice Liddell")]
    pub display_name: Option<String>,
    /// `https://…` or a path of this server (`/api/v1/files/…`), at most 1,024 bytes.
    #[serde(default)]
    pub avatar_url: Option<String>,
}

/// Users to look up (together at most 200).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// Ids (canonical decimal strings).
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["1002"]))]
    pub user_ids: Vec<UserId>,
    /// Exact usernames (case-sensitive).
    #[serde(default)]
    #[schema(example = json!(["bob"]))]
    pub usernames: Vec<String>,
}

/// Profiles found (unknown users are left out).
#[derive(Serialize, ToSchema)]
pub struct ProfileList {
    /// The profiles.
    #[schema(value_type = Vec<ProfileDoc>)]
    pub users: Vec<Profile>,
}

/// A page of users (search, blocks).
#[derive(Serialize, ToSchema)]
pub struct UserPage {
    /// The page.
    #[schema(value_type = Vec<ProfileDoc>)]
    pub users: Vec<Profile>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// One contact.
#[derive(Serialize, ToSchema)]
pub struct ContactDoc {
    /// Who.
    pub user: ProfileDoc,
    /// Contacts since, Unix ms.
    pub since: i64,
}

/// A page of contacts, ordered by user id.
#[derive(Serialize, ToSchema)]
pub struct ContactPage {
    /// The page.
    #[schema(value_type = Vec<ContactDoc>)]
    pub contacts: Vec<ContactView>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// A contact request to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContactRequest {
    /// Whom to ask (canonical decimal string).
    #[schema(value_type = String, example = "1002")]
    pub user_id: UserId,
    /// An optional note (at most 200 characters).
    #[serde(default)]
    pub message: Option<String>,
}

/// What a contact request did.
#[derive(Serialize, ToSchema)]
pub struct RequestStatus {
    /// `pending` (asked; the other side gets a `contact` frame), `accepted`
    /// (they had asked you: you are contacts now) or `already_contacts`.
    #[schema(value_type = String, example = "pending")]
    pub status: RequestOutcome,
}

/// A pending contact request.
#[derive(Serialize, ToSchema)]
pub struct RequestDoc {
    /// The other party: who asked (incoming) or who was asked (outgoing).
    pub user: ProfileDoc,
    /// `incoming` or `outgoing`.
    #[schema(example = "incoming")]
    pub direction: String,
    /// The asker's note (absent when none).
    #[schema(required = false)]
    pub message: String,
    /// When it was asked, Unix ms.
    pub ts: i64,
}

/// A page of pending requests, ordered by the other party's id.
#[derive(Serialize, ToSchema)]
pub struct RequestPage {
    /// The page.
    #[schema(value_type = Vec<RequestDoc>)]
    pub requests: Vec<RequestView>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// One participant's read cursor.
#[derive(Serialize, ToSchema)]
pub struct ReadDoc {
    /// The participant (canonical decimal string).
    pub user_id: String,
    /// Read up to this seq (0: nothing).
    pub read_seq: u64,
}

/// The participants' read cursors.
#[derive(Serialize, ToSchema)]
pub struct ReadList {
    /// Both parties of a 1:1 conversation, or a group's members (at most 500).
    #[schema(value_type = Vec<ReadDoc>)]
    pub reads: Vec<ReadCursor>,
}

/// A message's new body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditBody {
    /// The new text (text messages only; at most 16,384 bytes).
    #[schema(value_type = String, example = "hello, corrected")]
    pub body: serde_json::Value,
}

/// Whether members added later see earlier history.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryVisibility {
    /// `true`: new members see the whole history; `false` (the default):
    /// from their join on.
    pub visible: bool,
}

/// `?limit=&cursor=` of a paged list.
#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// `?prefix=&limit=&cursor=` of a search.
#[derive(Deserialize)]
pub struct SearchQuery {
    prefix: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `?direction=&limit=&cursor=` of the request list.
#[derive(Deserialize)]
pub struct RequestsQuery {
    direction: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn unexpected(reply: Reply) -> ApiError {
    ApiError(Error::Internal(format!("unexpected reply {reply:?}")))
}

fn cursor(c: Option<String>) -> Option<String> {
    c.filter(|c| !c.is_empty())
}

async fn run(s: &ApiState, me: UserId, command: Command) -> Result<Reply, ApiError> {
    Ok(s.logic.execute(me, command).await?)
}

async fn one_profile(s: &ApiState, me: UserId, id: UserId) -> Result<Response, ApiError> {
    match run(
        s,
        me,
        Command::Profiles {
            user_ids: vec![id],
            usernames: Vec::new(),
        },
    )
    .await?
    {
        Reply::Profiles { users } => match users.into_iter().next() {
            Some(p) => Ok(Json(p).into_response()),
            None => Err(ApiError(Error::NotFound(format!("no user {id}")))),
        },
        other => Err(unexpected(other)),
    }
}

/// The caller's own profile (v1.2).
#[utoipa::path(get, path = "/api/v1/users/me", tag = "people", operation_id = "me",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = ProfileDoc),
        Unauthenticated,
    ))]
pub async fn me(State(s): State<ApiState>, Caller(me): Caller) -> Result<Response, ApiError> {
    one_profile(&s, me, me).await
}

/// A user's public profile (v1.2).
#[utoipa::path(get, path = "/api/v1/users/{user_id}", tag = "people", operation_id = "get_profile",
    security(("bearerAuth" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The profile", body = ProfileDoc),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        MalformedId, Unauthenticated,
    ))]
pub async fn profile(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: UserId = parse("user id", &id)?;
    one_profile(&s, me, id).await
}

/// Set the caller's display name and avatar (v1.2).
#[utoipa::path(put, path = "/api/v1/users/me/profile", tag = "people", operation_id = "set_profile",
    security(("bearerAuth" = [])),
    request_body = ProfileEdit,
    responses(
        (status = 200, description = "The new profile", body = ProfileDoc),
        (status = 400, description = "`invalid_argument`: a bad name or URL", body = ErrorBody),
        Unauthenticated,
    ))]
pub async fn set_profile(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(edit): ApiJson<ProfileEdit>,
) -> Result<Response, ApiError> {
    match run(
        &s,
        me,
        Command::SetProfile {
            display_name: edit.display_name,
            avatar_url: edit.avatar_url,
        },
    )
    .await?
    {
        Reply::Profile { profile } => Ok(Json(profile).into_response()),
        other => Err(unexpected(other)),
    }
}

/// Profiles of many users by id or exact username (v1.2).
#[utoipa::path(post, path = "/api/v1/users/lookup", tag = "people", operation_id = "lookup_users",
    security(("bearerAuth" = [])),
    request_body = LookupRequest,
    responses(
        (status = 200, description = "The users found (unknown ones are left out)", body = ProfileList),
        (status = 400, description = "`invalid_argument`: more than 200 users, bad JSON", body = ErrorBody),
        Unauthenticated,
    ))]
pub async fn lookup(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(req): ApiJson<LookupRequest>,
) -> Result<Response, ApiError> {
    match run(
        &s,
        me,
        Command::Profiles {
            user_ids: req.user_ids,
            usernames: req.usernames,
        },
    )
    .await?
    {
        Reply::Profiles { users } => Ok(Json(ProfileList { users }).into_response()),
        other => Err(unexpected(other)),
    }
}

/// Users whose username starts with a prefix (v1.2): at least 2 characters,
/// pages of at most 20, at most 100 results per prefix, 30 searches a minute.
#[utoipa::path(get, path = "/api/v1/users/search", tag = "people", operation_id = "search_users",
    security(("bearerAuth" = [])),
    params(
        ("prefix" = String, Query, description = "The start of a username (case-sensitive, 2–64 characters)"),
        ("limit" = Option<u32>, Query, description = "Page size (default 20, clamped to 1–20)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of users, ordered by username", body = UserPage),
        (status = 400, description = "`invalid_argument`: a short prefix, a malformed cursor, or paging past 100 results", body = ErrorBody),
        (status = 429, description = "`resource_exhausted`: too many searches; see `Retry-After`", body = ErrorBody),
        Unauthenticated,
    ))]
pub async fn search(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Query(q): Query<SearchQuery>,
) -> Result<Response, ApiError> {
    let command = Command::Search {
        prefix: q.prefix.unwrap_or_default(),
        cursor: cursor(q.cursor),
        limit: parse_limit(q.limit.as_deref())?,
    };
    match run(&s, me, command).await? {
        Reply::Users { users, next_cursor } => {
            Ok(Json(UserPage { users, next_cursor }).into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// The caller's contacts (v1.2).
#[utoipa::path(get, path = "/api/v1/contacts", tag = "people", operation_id = "list_contacts",
    security(("bearerAuth" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size (default and most 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of contacts", body = ContactPage),
        (status = 400, description = "`invalid_argument`: malformed limit or cursor", body = ErrorBody),
        Unauthenticated,
    ))]
pub async fn contacts(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let command = Command::Contacts {
        cursor: cursor(q.cursor),
        limit: parse_limit(q.limit.as_deref())?,
    };
    match run(&s, me, command).await? {
        Reply::Contacts {
            contacts,
            next_cursor,
        } => Ok(Json(ContactPage {
            contacts,
            next_cursor,
        })
        .into_response()),
        other => Err(unexpected(other)),
    }
}

/// Ask a user to become contacts (v1.2).
#[utoipa::path(post, path = "/api/v1/contacts/requests", tag = "people", operation_id = "request_contact",
    security(("bearerAuth" = [])),
    request_body = NewContactRequest,
    responses(
        (status = 200, description = "`pending`, `accepted` (they had asked you) or `already_contacts`", body = RequestStatus),
        (status = 400, description = "`invalid_argument`: yourself, a long note, bad JSON", body = ErrorBody),
        (status = 403, description = "`permission_denied`: this user does not accept your requests", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        Unauthenticated,
    ))]
pub async fn request_contact(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(req): ApiJson<NewContactRequest>,
) -> Result<Response, ApiError> {
    let command = Command::RequestContact {
        user_id: req.user_id,
        message: req.message,
    };
    match run(&s, me, command).await? {
        Reply::Requested { status } => Ok(Json(RequestStatus { status }).into_response()),
        other => Err(unexpected(other)),
    }
}

/// The caller's pending contact requests (v1.2).
#[utoipa::path(get, path = "/api/v1/contacts/requests", tag = "people", operation_id = "list_contact_requests",
    security(("bearerAuth" = [])),
    params(
        ("direction" = Option<String>, Query, description = "`incoming` (default) or `outgoing`"),
        ("limit" = Option<u32>, Query, description = "Page size (default and most 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of requests", body = RequestPage),
        (status = 400, description = "`invalid_argument`: unknown direction, malformed limit or cursor", body = ErrorBody),
        Unauthenticated,
    ))]
pub async fn contact_requests(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Query(q): Query<RequestsQuery>,
) -> Result<Response, ApiError> {
    let direction = match q.direction.as_deref() {
        None | Some("") | Some("incoming") => Direction::Incoming,
        Some("outgoing") => Direction::Outgoing,
        Some(other) => {
            return Err(ApiError(Error::InvalidArgument(format!(
                "direction must be incoming or outgoing, not {:?}",
                other.chars().take(20).collect::<String>()
            ))))
        }
    };
    let command = Command::ContactRequests {
        direction,
        cursor: cursor(q.cursor),
        limit: parse_limit(q.limit.as_deref())?,
    };
    match run(&s, me, command).await? {
        Reply::Requests {
            requests,
            next_cursor,
        } => Ok(Json(RequestPage {
            requests,
            next_cursor,
        })
        .into_response()),
        other => Err(unexpected(other)),
    }
}

async fn done(s: &ApiState, me: UserId, command: Command) -> Result<Response, ApiError> {
    match run(s, me, command).await? {
        Reply::Done => Ok(StatusCode::NO_CONTENT.into_response()),
        other => Err(unexpected(other)),
    }
}

/// Accept a user's contact request (v1.2).
#[utoipa::path(post, path = "/api/v1/contacts/requests/{user_id}/accept", tag = "people", operation_id = "accept_contact_request",
    security(("bearerAuth" = [])),
    params(("user_id" = String, Path, description = "Who asked")),
    responses(
        (status = 204, description = "You are contacts now; both sides get a `contact` frame"),
        (status = 404, description = "`not_found`: no pending request from this user", body = ErrorBody),
        MalformedId, Unauthenticated,
    ))]
pub async fn accept_request(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user_id: UserId = parse("user id", &id)?;
    done(
        &s,
        me,
        Command::RespondContact {
            user_id,
            accept: true,
        },
    )
    .await
}

/// Decline a user's contact request (v1.2).
#[utoipa::path(post, path = "/api/v1/contacts/requests/{user_id}/decline", tag = "people", operation_id = "decline_contact_request",
    security(("bearerAuth" = [])),
    params(("user_id" = String, Path, description = "Who asked")),
    responses(
        (status = 204, description = "Declined; the asker gets a `contact` frame"),
        (status = 404, description = "`not_found`: no pending request from this user", body = ErrorBody),
        MalformedId, Unauthenticated,
    ))]
pub async fn decline_request(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user_id: UserId = parse("user id", &id)?;
    done(
        &s,
        me,
        Command::RespondContact {
            user_id,
            accept: false,
        },
    )
    .await
}

/// Withdraw the caller's contact request (v1.2).
#[utoipa::path(delete, path = "/api/v1/contacts/requests/{user_id}", tag = "people", operation_id = "cancel_contact_request",
    security(("bearerAuth" = [])),
    params(("user_id" = String, Path, description = "Whom the request asked")),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 404, description = "`not_found`: no pending request to this user", body = ErrorBody),
        MalformedId, Unauthenticated,
    ))]
pub async fn cancel_request(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user_id: UserId = parse("user id", &id)?;
    done(&s, me, Command::CancelContactRequest { user_id }).await
}

/// Remove a contact (for both sides; v1.2).
#[utoipa::path(delete, path = "/api/v1/contacts/{user_id}", tag = "people", operation_id = "remove_contact",
    security(("bearerAuth" = [])),
    params(("user_id" = String, Path, description = "The contact")),
    responses(
        (status = 204, description = "Removed; both sides get a `contact` frame"),
        (status = 404, description = "`not_found`: not a contact", body = ErrorBody),
        MalformedId, Unauthenticated,
    ))]
pub async fn remove_contact(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user_id: UserId = parse("user id", &id)?;
    done(&s, me, Command::RemoveContact { user_id }).await
}

/// The users the caller blocks (v1.2).
#[utoipa::path(get, path = "/api/v1/blocks", tag = "people", operation_id = "list_blocks",
    security(("bearerAuth" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size (default and most 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of blocked users", body = UserPage),
        (status = 400, description = "`invalid_argument`: malformed limit or cursor", body = ErrorBody),
        Unauthenticated,
    ))]
pub async fn blocked(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let command = Command::Blocked {
        cursor: cursor(q.cursor),
        limit: parse_limit(q.limit.as_deref())?,
    };
    match run(&s, me, command).await? {
        Reply::Users { users, next_cursor } => {
            Ok(Json(UserPage { users, next_cursor }).into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// Block a user (v1.2): their 1:1 messages and contact requests are refused,
/// they cannot add you to a group, your contact relation ends. Idempotent;
/// the blocked user is not told.
#[utoipa::path(put, path = "/api/v1/blocks/{user_id}", tag = "people", operation_id = "block_user",
    security(("bearerAuth" = [])),
    params(("user_id" = String, Path, description = "Whom to block")),
    responses(
        (status = 204, description = "Blocked"),
        (status = 400, description = "`invalid_argument`: malformed id, or yourself", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        Unauthenticated,
    ))]
pub async fn block(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user_id: UserId = parse("user id", &id)?;
    done(&s, me, Command::Block { user_id }).await
}

/// Unblock a user (v1.2; idempotent).
#[utoipa::path(delete, path = "/api/v1/blocks/{user_id}", tag = "people", operation_id = "unblock_user",
    security(("bearerAuth" = [])),
    params(("user_id" = String, Path, description = "Whom to unblock")),
    responses(
        (status = 204, description = "Not blocked (any more)"),
        MalformedId, Unauthenticated,
    ))]
pub async fn unblock(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user_id: UserId = parse("user id", &id)?;
    done(&s, me, Command::Unblock { user_id }).await
}

/// The participants' read cursors of a conversation (v1.2).
#[utoipa::path(get, path = "/api/v1/conversations/{conversation_id}/reads", tag = "conversations", operation_id = "read_cursors",
    security(("bearerAuth" = [])),
    params(("conversation_id" = String, Path, description = "`u:{a}:{b}` or `g:{group_id}`")),
    responses(
        (status = 200, description = "Both parties, or the group's members (at most 500)", body = ReadList),
        (status = 400, description = "`invalid_argument`: malformed conversation id", body = ErrorBody),
        (status = 403, description = "`permission_denied`: not a participant", body = ErrorBody),
        (status = 404, description = "`not_found`: no such group or peer", body = ErrorBody),
        Unauthenticated,
    ))]
pub async fn reads(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let conversation_id: ConversationId = parse("conversation id", &id)?;
    match run(&s, me, Command::Reads { conversation_id }).await? {
        Reply::Reads { reads } => Ok(Json(ReadList { reads }).into_response()),
        other => Err(unexpected(other)),
    }
}

/// Edit one of the caller's text messages (v1.2): within 24 h of sending;
/// every participant's sessions get an `edited` frame.
#[utoipa::path(patch, path = "/api/v1/messages/{msg_id}", tag = "messages", operation_id = "edit_message",
    security(("bearerAuth" = [])),
    params(("msg_id" = String, Path, description = "The message")),
    request_body = EditBody,
    responses(
        (status = 200, description = "The message with its new body and `edited_at`", body = super::schema::MessageDoc),
        (status = 400, description = "`invalid_argument`: not a text message, a body that is not a string, bad JSON", body = ErrorBody),
        (status = 403, description = "`permission_denied`: not the sender, past the edit window, or recalled", body = ErrorBody),
        (status = 404, description = "`not_found`: no such message (or not yours to see)", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: body too large", body = ErrorBody),
        Unauthenticated,
    ))]
pub async fn edit_message(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    ApiJson(edit): ApiJson<EditBody>,
) -> Result<Response, ApiError> {
    let msg_id: MessageId = parse("message id", &id)?;
    match run(
        &s,
        me,
        Command::Edit {
            msg_id,
            body: edit.body,
        },
    )
    .await?
    {
        Reply::Edited { message } => Ok(Json::<Message>(message).into_response()),
        other => Err(unexpected(other)),
    }
}

/// Whether members added from now on see the history from before they
/// joined (v1.2; owner or admin). Announced by a `system` message.
#[utoipa::path(put, path = "/api/v1/groups/{group_id}/history", tag = "groups", operation_id = "group_history",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group")),
    request_body = HistoryVisibility,
    responses(
        (status = 204, description = "Saved"),
        (status = 400, description = "`invalid_argument`: malformed id or bad JSON", body = ErrorBody),
        (status = 403, description = "`permission_denied`: not the owner or an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such group", body = ErrorBody),
        Unauthenticated,
    ))]
pub async fn group_history(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    ApiJson(v): ApiJson<HistoryVisibility>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &id)?;
    s.logic
        .administer_group(
            me,
            group,
            GroupCommand::SetHistoryVisible { visible: v.visible },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The people routes (under `/api/v1`).
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/users/me", get(me))
        .route("/users/me/profile", put(set_profile))
        .route("/users/lookup", post(lookup))
        .route("/users/search", get(search))
        .route("/users/{user_id}", get(profile))
        .route("/contacts", get(contacts))
        .route(
            "/contacts/requests",
            get(contact_requests).post(request_contact),
        )
        .route("/contacts/requests/{user_id}", delete(cancel_request))
        .route("/contacts/requests/{user_id}/accept", post(accept_request))
        .route(
            "/contacts/requests/{user_id}/decline",
            post(decline_request),
        )
        .route("/contacts/{user_id}", delete(remove_contact))
        .route("/blocks", get(blocked))
        .route("/blocks/{user_id}", put(block).delete(unblock))
        .route("/conversations/{conversation_id}/reads", get(reads))
        .route("/messages/{msg_id}", patch(edit_message))
        .route("/groups/{group_id}/history", put(group_history))
}
