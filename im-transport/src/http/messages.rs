//! Messages: sending (now or scheduled), the scheduled sends, recall and a
//! conversation's history.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use im_core::id::{ConversationId, MessageId};
use im_core::logic::Sender;
use im_core::protocol::SendRequest;
use im_core::{Error, ErrorCode};
use serde::Deserialize;

use super::dto::{HistoryPage, ScheduledList, ScheduledMessage, Sent};
use super::errors::{ApiError, AuthErrors, ErrorBody, Internal, MalformedId, Unauthenticated};
use super::extract::{parse, parse_limit, ApiJson, Caller};
use super::router::ApiState;
use super::schema::SendRequestDoc;

/// Send a message (idempotent per sender and `client_msg_id`), now or at a
/// later `deliver_at` (scheduled delivery, an extension).
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    tag = "messages",
    operation_id = "send",
    security(("bearerAuth" = [])),
    request_body = SendRequestDoc,
    responses(
        (status = 200, description = "Accepted (or the original answer to a retry); a scheduled send is held with `seq` 0 and `deliver_at`", body = Sent),
        (status = 400, description = "`invalid_argument`: shape, kind or body mismatch, send to self, bad `client_msg_id`, `deliver_at` more than 30 days ahead", body = ErrorBody),
        (status = 403, description = "`permission_denied`: not a member of the group", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user or group", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: body over 16,384 bytes, or request over 64 KiB", body = ErrorBody),
        (status = 429, description = "`resource_exhausted`: per-user send rate limit", body = ErrorBody),
        (status = 503, description = "`unavailable`: queue or store down; retry with the same `client_msg_id`", body = ErrorBody),
        Unauthenticated, Internal,
    )
)]
pub(super) async fn send(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<Response, ApiError> {
    let mut sender = Sender::http(me);
    if let Some(l) = &s.limiter {
        if !l.allow(me) {
            // Logic answers a retry of an accepted send with its original
            // ack, and refuses anything else with `resource_exhausted` (429).
            metrics::counter!("im_rate_limited_total").increment(1);
            sender = sender.throttled();
        }
    }
    let throttled = sender.throttled;
    let ack = match s.logic.send(sender, req).await {
        Ok(ack) => ack,
        Err(e) if throttled && e.code() == ErrorCode::ResourceExhausted => {
            return Err(ApiError(Error::Throttled {
                message: "send rate limit exceeded; slow down".into(),
                retry_after: std::time::Duration::from_secs(1),
            }));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(Sent {
        msg_id: ack.msg_id,
        conversation_id: ack.conversation_id,
        seq: ack.seq,
        ts: ack.ts,
        deliver_at: ack.deliver_at,
    })
    .into_response())
}

/// List the caller's scheduled sends not yet delivered, soonest first
/// (extension).
#[utoipa::path(
    get,
    path = "/api/v1/messages/scheduled",
    tag = "messages",
    operation_id = "list_scheduled",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The caller's held sends (possibly none)", body = ScheduledList),
        AuthErrors,
    )
)]
pub(super) async fn list_scheduled(
    State(s): State<ApiState>,
    Caller(me): Caller,
) -> Result<Response, ApiError> {
    let scheduled = s.logic.scheduled(me).await?;
    Ok(Json(ScheduledList {
        scheduled: scheduled.into_iter().map(ScheduledMessage::from).collect(),
    })
    .into_response())
}

/// Cancel one of the caller's scheduled sends before it is delivered
/// (extension).
#[utoipa::path(
    delete,
    path = "/api/v1/messages/{msg_id}/schedule",
    tag = "messages",
    operation_id = "cancel_scheduled",
    security(("bearerAuth" = [])),
    params(("msg_id" = String, Path, description = "The scheduled message's id (canonical decimal string)", example = "7262015623421952")),
    responses(
        (status = 204, description = "Cancelled: it will not be delivered (no body)"),
        (status = 404, description = "`not_found`: no such send of the caller is held (already delivered, cancelled, unknown, or someone else's)", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; safe to retry (a retry after a cancel that went through is 404)", body = ErrorBody),
        MalformedId, Unauthenticated, Internal,
    )
)]
pub(super) async fn cancel_scheduled(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(msg_id): Path<String>,
) -> Result<Response, ApiError> {
    let msg_id: MessageId = parse("message id", &msg_id)?;
    s.logic.cancel_scheduled(me, msg_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The query of a history read (`after_seq`, `limit`).
#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    after_seq: Option<String>,
    limit: Option<String>,
}

/// Read a conversation's history, ascending by seq.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{conversation_id}/messages",
    tag = "messages",
    operation_id = "history",
    security(("bearerAuth" = [])),
    params(
        ("conversation_id" = String, Path, description = "`u:{a}:{b}` (a < b numerically) or `g:{group_id}`", example = "u:1001:1002"),
        ("after_seq" = Option<u64>, Query, description = "Return messages with `seq > after_seq` (default 0; empty counts as absent)"),
        ("limit" = Option<u32>, Query, description = "Page size (default 50, clamped to 1–100; empty counts as absent)"),
    ),
    responses(
        (status = 200, description = "A page (possibly empty)", body = HistoryPage),
        (status = 400, description = "`invalid_argument`: malformed conversation id or query value", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not a participant", body = ErrorBody),
        (status = 404, description = "`not_found`: the group or the peer does not exist", body = ErrorBody),
        AuthErrors,
    )
)]
pub(super) async fn history(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(conversation): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let conversation: ConversationId = parse("conversation id", &conversation)?;
    let after_seq: u64 = match q.after_seq.as_deref() {
        None | Some("") => 0,
        Some(v) => parse("after_seq", v)?,
    };
    let limit = parse_limit(q.limit.as_deref())?;
    let page = s.logic.sync(me, conversation, after_seq, limit).await?;
    Ok(Json(HistoryPage {
        messages: page.messages,
        has_more: page.has_more,
    })
    .into_response())
}

/// Recall a message: its sender (or a group owner or admin) within the
/// recall window; the participants get a `recalled` frame.
#[utoipa::path(
    post,
    path = "/api/v1/messages/{msg_id}/recall",
    tag = "messages",
    operation_id = "recall",
    security(("bearerAuth" = [])),
    params(("msg_id" = String, Path, description = "The message's id (canonical decimal string)", example = "7262015623421952")),
    responses(
        (status = 204, description = "Recalled, or already recalled (no body, no new event)"),
        (status = 403, description = "`permission_denied`: someone else's message, or past the recall window (default 120 s from `ts`)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such message in a conversation the caller can read", body = ErrorBody),
        MalformedId, AuthErrors,
    )
)]
pub(super) async fn recall(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(msg_id): Path<String>,
) -> Result<Response, ApiError> {
    let msg_id: MessageId = parse("message id", &msg_id)?;
    s.logic.recall(me, msg_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
