//! The caller's conversation list with unread counts, and read cursors.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use im_core::id::ConversationId;
use serde::Deserialize;

use super::dto::{ConversationList, ConversationRow, ReadUpTo};
use super::errors::{ApiError, AuthErrors, BodyTooLarge, ErrorBody};
use super::extract::{parse, parse_limit, ApiJson, Caller};
use super::router::ApiState;

/// The query of `GET /api/v1/conversations` (`limit`, `cursor`).
#[derive(Deserialize)]
pub(super) struct ConversationsQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// List the caller's conversations, newest last message first, with unread counts.
#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    tag = "conversations",
    operation_id = "list_conversations",
    security(("bearerAuth" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size (default 20, clamped to 1–100; empty counts as absent)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page (opaque; empty counts as absent)"),
    ),
    responses(
        (status = 200, description = "A page (possibly empty)", body = ConversationList),
        (status = 400, description = "`invalid_argument`: malformed `limit` or `cursor`", body = ErrorBody),
        AuthErrors,
    )
)]
pub(super) async fn conversations(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Query(q): Query<ConversationsQuery>,
) -> Result<Response, ApiError> {
    let limit = parse_limit(q.limit.as_deref())?;
    let cursor = q.cursor.filter(|c| !c.is_empty());
    let page = s.logic.conversations(me, cursor, limit).await?;
    Ok(Json(ConversationList {
        conversations: page
            .conversations
            .into_iter()
            .map(|e| ConversationRow {
                conversation_id: e.conversation_id,
                last_message: e.last_message,
                last_seq: e.last_seq,
                read_seq: e.read_seq,
                unread: e.unread,
                peer_read_seq: e.peer_read_seq,
                mentioned: e.mentioned,
            })
            .collect(),
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// Mark a conversation read up to a seq; the participants' sessions get a `read` frame.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{conversation_id}/read",
    tag = "conversations",
    operation_id = "mark_read",
    security(("bearerAuth" = [])),
    params(("conversation_id" = String, Path, description = "`u:{a}:{b}` (a < b numerically) or `g:{group_id}`", example = "u:1001:1002")),
    request_body = ReadUpTo,
    responses(
        (status = 204, description = "Stored, or a no-op for a seq not above the stored one (no body)"),
        (status = 400, description = "`invalid_argument`: malformed conversation id, bad JSON, or a seq past the conversation's last", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not a participant", body = ErrorBody),
        (status = 404, description = "`not_found`: the group or the peer does not exist", body = ErrorBody),
        BodyTooLarge, AuthErrors,
    )
)]
pub(super) async fn mark_read(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(conversation): Path<String>,
    ApiJson(r): ApiJson<ReadUpTo>,
) -> Result<Response, ApiError> {
    let conversation: ConversationId = parse("conversation id", &conversation)?;
    s.logic.mark_read(me, conversation, r.seq, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
