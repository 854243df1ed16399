//! Groups: creation, details, members, and their administration (rename,
//! dissolve, transfer, mutes, roles).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use im_core::id::{GroupId, UserId};
use im_core::logic::GroupCommand;
use im_core::model::Role;
use im_core::Error;

use super::dto::{
    GroupCreated, GroupInfo, GroupRename, MemberList, MuteChange, NewGroup, NewMember, RoleChange,
    Transfer,
};
use super::errors::{
    ApiError, AuthErrors, BodyTooLarge, ErrorBody, Internal, MalformedId, Unauthenticated,
};
use super::extract::{parse, ApiJson, Caller};
use super::router::ApiState;

/// Create a group; the caller becomes its owner.
#[utoipa::path(
    post,
    path = "/api/v1/groups",
    tag = "groups",
    operation_id = "create_group",
    security(("bearerAuth" = [])),
    request_body = NewGroup,
    responses(
        (status = 201, description = "Created", body = GroupCreated),
        (status = 400, description = "`invalid_argument`: bad name or bad JSON", body = ErrorBody),
        BodyTooLarge, AuthErrors,
    )
)]
pub(super) async fn create_group(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(g): ApiJson<NewGroup>,
) -> Result<Response, ApiError> {
    let group_id = s.logic.create_group(me, &g.name).await?;
    Ok((StatusCode::CREATED, Json(GroupCreated { group_id })).into_response())
}

/// Add a member (role `member`); only the owner or an admin may.
#[utoipa::path(
    post,
    path = "/api/v1/groups/{group_id}/members",
    tag = "groups",
    operation_id = "add_member",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    request_body = NewMember,
    responses(
        (status = 204, description = "Added (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id or bad JSON", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not the owner or an admin (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group or unknown user", body = ErrorBody),
        (status = 409, description = "`already_exists`: already a member", body = ErrorBody),
        BodyTooLarge, AuthErrors,
    )
)]
pub(super) async fn add_member(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
    ApiJson(m): ApiJson<NewMember>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    s.logic.add_member(me, group, m.user_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Remove a member: the owner removes anyone but itself, an admin removes
/// plain members, anyone may remove itself except the owner.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{group_id}/members/{user_id}",
    tag = "groups",
    operation_id = "remove_member",
    security(("bearerAuth" = [])),
    params(
        ("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001"),
        ("user_id" = String, Path, description = "The member's id (canonical decimal string)", example = "1002"),
    ),
    responses(
        (status = 204, description = "Removed (no body)"),
        (status = 403, description = "`permission_denied`: not allowed, including the owner removing itself and any non-member caller", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group, or the target is not a member", body = ErrorBody),
        MalformedId, AuthErrors,
    )
)]
pub(super) async fn remove_member(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path((group, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let user: UserId = parse("user id", &user)?;
    s.logic.remove_member(me, group, user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// List a group's members; members only.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{group_id}/members",
    tag = "groups",
    operation_id = "list_members",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    responses(
        (status = 200, description = "The members", body = MemberList),
        (status = 403, description = "`permission_denied`: the caller is not a member", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group", body = ErrorBody),
        MalformedId, AuthErrors,
    )
)]
pub(super) async fn list_members(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let members = s.logic.members(me, group).await?;
    Ok(Json(MemberList { members }).into_response())
}

/// A group's details; members only (extension).
#[utoipa::path(
    get,
    path = "/api/v1/groups/{group_id}",
    tag = "groups",
    operation_id = "get_group",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    responses(
        (status = 200, description = "The group", body = GroupInfo),
        (status = 403, description = "`permission_denied`: the caller is not a member", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group", body = ErrorBody),
        MalformedId, AuthErrors,
    )
)]
pub(super) async fn group_info(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let g = s.logic.group(me, group).await?;
    Ok(Json(GroupInfo {
        group_id: g.id,
        name: g.name,
        owner: g.owner,
        created_at: g.created_at,
        muted_until: g.muted_until,
        history_visible: g.history_visible,
    })
    .into_response())
}

async fn administer(
    s: &ApiState,
    me: UserId,
    group: GroupId,
    command: GroupCommand,
) -> Result<Response, ApiError> {
    s.logic.administer_group(me, group, command).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Rename a group; the owner or an admin (extension).
#[utoipa::path(
    patch,
    path = "/api/v1/groups/{group_id}",
    tag = "groups",
    operation_id = "rename_group",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    request_body = GroupRename,
    responses(
        (status = 204, description = "Renamed; a `group_renamed` system message follows (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id, bad name or bad JSON", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not the owner or an admin (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
        BodyTooLarge, Unauthenticated, Internal,
    )
)]
pub(super) async fn rename_group(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
    ApiJson(r): ApiJson<GroupRename>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    administer(&s, me, group, GroupCommand::Rename { name: r.name }).await
}

/// Dissolve a group; the owner only (extension).
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{group_id}",
    tag = "groups",
    operation_id = "dissolve_group",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    responses(
        (status = 204, description = "Dissolved after a `group_dissolved` system message to the members (no body)"),
        (status = 403, description = "`permission_denied`: the caller is not the owner (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown (or already dissolved) group", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
        MalformedId, Unauthenticated, Internal,
    )
)]
pub(super) async fn dissolve_group(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    administer(&s, me, group, GroupCommand::Dissolve).await
}

/// Hand a group's ownership to another member; the owner only, who becomes
/// an admin (extension).
#[utoipa::path(
    post,
    path = "/api/v1/groups/{group_id}/transfer",
    tag = "groups",
    operation_id = "transfer_group",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    request_body = Transfer,
    responses(
        (status = 204, description = "Transferred; an `owner_changed` system message follows (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id, bad JSON, or a transfer to oneself", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not the owner (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group, or the new owner is not a member", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
        BodyTooLarge, Unauthenticated, Internal,
    )
)]
pub(super) async fn transfer_group(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
    ApiJson(t): ApiJson<Transfer>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    administer(&s, me, group, GroupCommand::Transfer { to: t.user_id }).await
}

/// Mute or unmute a whole group: while muted only the owner and admins may
/// send; the owner or an admin (extension).
#[utoipa::path(
    put,
    path = "/api/v1/groups/{group_id}/mute",
    tag = "groups",
    operation_id = "mute_group",
    security(("bearerAuth" = [])),
    params(("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001")),
    request_body = MuteChange,
    responses(
        (status = 204, description = "Set; a `group_muted` or `group_unmuted` system message follows (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id, bad JSON, `duration_ms` of 0", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not the owner or an admin (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
        BodyTooLarge, Unauthenticated, Internal,
    )
)]
pub(super) async fn mute_group(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(group): Path<String>,
    ApiJson(m): ApiJson<MuteChange>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let until = m.until()?;
    administer(&s, me, group, GroupCommand::Mute { until }).await
}

/// Promote a member to admin or demote an admin to member; the owner only
/// (extension).
#[utoipa::path(
    put,
    path = "/api/v1/groups/{group_id}/members/{user_id}/role",
    tag = "groups",
    operation_id = "set_member_role",
    security(("bearerAuth" = [])),
    params(
        ("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001"),
        ("user_id" = String, Path, description = "The member's id (canonical decimal string)", example = "1002"),
    ),
    request_body = RoleChange,
    responses(
        (status = 204, description = "Set; a `role_changed` system message follows (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id, bad JSON, an unknown role, `owner` (use a transfer), or the owner as target", body = ErrorBody),
        (status = 403, description = "`permission_denied`: the caller is not the owner (including non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group, or the target is not a member", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
        BodyTooLarge, Unauthenticated, Internal,
    )
)]
pub(super) async fn set_member_role(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path((group, user)): Path<(String, String)>,
    ApiJson(r): ApiJson<RoleChange>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let user: UserId = parse("user id", &user)?;
    let role = Role::parse(&r.role).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "unknown role {:?}; use \"admin\" or \"member\"",
            r.role.chars().take(20).collect::<String>()
        ))
    })?;
    administer(&s, me, group, GroupCommand::SetRole { user, role }).await
}

/// Mute or unmute one member: the owner mutes anyone else, an admin mutes
/// plain members (extension).
#[utoipa::path(
    put,
    path = "/api/v1/groups/{group_id}/members/{user_id}/mute",
    tag = "groups",
    operation_id = "mute_member",
    security(("bearerAuth" = [])),
    params(
        ("group_id" = String, Path, description = "The group's id (canonical decimal string)", example = "5001"),
        ("user_id" = String, Path, description = "The member's id (canonical decimal string)", example = "1002"),
    ),
    request_body = MuteChange,
    responses(
        (status = 204, description = "Set; a `member_muted` or `member_unmuted` system message follows (no body)"),
        (status = 400, description = "`invalid_argument`: malformed id, bad JSON, `duration_ms` of 0", body = ErrorBody),
        (status = 403, description = "`permission_denied`: not allowed (a plain member, an admin muting an admin or the owner, anyone muting itself, non-members)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown group, or the target is not a member", body = ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down", body = ErrorBody),
        BodyTooLarge, Unauthenticated, Internal,
    )
)]
pub(super) async fn mute_member(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path((group, user)): Path<(String, String)>,
    ApiJson(m): ApiJson<MuteChange>,
) -> Result<Response, ApiError> {
    let group: GroupId = parse("group id", &group)?;
    let user: UserId = parse("user id", &user)?;
    let until = m.until()?;
    administer(&s, me, group, GroupCommand::MuteMember { user, until }).await
}
