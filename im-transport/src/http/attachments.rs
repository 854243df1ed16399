//! Attachments on the HTTP API (protocol v1.2): `POST /api/v1/uploads` hands
//! out a presigned upload, `GET /api/v1/files/{key}` a presigned download to
//! the participants of the key's conversation, and — only with the in-memory
//! storage of the quickstart — `PUT`/`GET /api/v1/objects/{key}` serve the
//! signed URLs that storage makes. With S3 the bytes never pass through im.
//!
//! Who may do what is decided here from the object key
//! ([`im_core::attachments::parse_key`]): an upload is made for one
//! conversation by one uploader; Logic refuses a message that references
//! another conversation's or another sender's upload, so the participants of
//! the key's conversation are exactly the people who can see a message
//! referencing it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use im_core::attachments::{object_key, parse_key, AttachmentPolicy};
use im_core::id::{ConversationId, UserId};
use im_core::memory::{MemoryObjectStorage, SignedOp};
use im_core::model::{MessageKind, Target};
use im_core::ports::{ObjectStorage, PresignedRequest};
use im_core::Error;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::errors::{ApiError, ErrorBody, Unauthenticated};
use super::extract::{ApiJson, Caller};
use super::router::ApiState;

/// Attachments of an API: the storage, its limits, and the in-memory
/// storage's own URL server when that is the storage.
#[derive(Clone)]
pub struct Attachments {
    /// Where objects live.
    pub storage: Arc<dyn ObjectStorage>,
    /// Limits (the same as Logic's `LogicConfig::attachments`).
    pub policy: AttachmentPolicy,
    /// Set when `storage` is this in-memory storage: im serves its URLs.
    local: Option<Arc<MemoryObjectStorage>>,
}

impl Attachments {
    /// Attachments on a storage whose URLs point elsewhere (S3).
    pub fn new(storage: Arc<dyn ObjectStorage>, policy: AttachmentPolicy) -> Self {
        Attachments {
            storage,
            policy,
            local: None,
        }
    }

    /// Attachments in memory, their URLs served by this API
    /// (`/api/v1/objects/…`).
    pub fn in_memory(storage: Arc<MemoryObjectStorage>, policy: AttachmentPolicy) -> Self {
        Attachments {
            storage: storage.clone(),
            policy,
            local: Some(storage),
        }
    }
}

/// `POST /api/v1/uploads`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// The conversation the attachment will be sent into: `{"user": id}` or
    /// `{"group": id}`, as in a send.
    #[schema(value_type = super::schema::TargetDoc)]
    pub to: Target,
    /// The file name shown to people (1-200 bytes).
    pub name: String,
    /// Size in bytes (exactly what will be uploaded).
    pub size: u64,
    /// Media type, e.g. `image/png`.
    pub mime: String,
    /// `image`, `file`, `audio` or `video`; by default from `mime`.
    #[serde(default)]
    #[schema(value_type = Option<super::schema::KindDoc>)]
    pub kind: Option<MessageKind>,
}

/// A presigned request the client makes itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresignedDoc {
    /// `PUT` (upload) or `GET` (download).
    pub method: String,
    /// The URL, carrying its signature.
    pub url: String,
    /// Headers to send exactly as given.
    pub headers: std::collections::BTreeMap<String, String>,
    /// When the URL stops working, Unix ms.
    pub expires_at: i64,
}

impl From<PresignedRequest> for PresignedDoc {
    fn from(p: PresignedRequest) -> Self {
        PresignedDoc {
            method: p.method,
            url: p.url,
            headers: p.headers,
            expires_at: p.expires_at,
        }
    }
}

/// An upload granted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Upload {
    /// The object key (goes in the message body).
    pub key: String,
    /// The kind of message to send it as.
    #[schema(value_type = super::schema::KindDoc)]
    pub kind: MessageKind,
    /// Upload with this request, then send.
    pub upload: PresignedDoc,
    /// The body to send once uploaded (add `width`/`height`/`duration` if known).
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

/// `GET /api/v1/files/{key}?redirect=false`.
#[derive(Debug, Deserialize)]
pub struct FileQuery {
    /// `false`: answer the presigned URL as JSON instead of redirecting.
    #[serde(default)]
    pub redirect: Option<bool>,
}

fn attachments(s: &ApiState) -> Result<&Attachments, ApiError> {
    s.attachments.as_deref().ok_or_else(|| {
        ApiError(Error::NotFound(
            "attachments are not enabled on this server".into(),
        ))
    })
}

/// Whether `me` takes part in `conversation` (a group member, or one of the
/// two of a 1:1).
async fn participant(s: &ApiState, me: UserId, conversation: ConversationId) -> bool {
    match conversation {
        ConversationId::Direct(a, b) => me == a || me == b,
        ConversationId::Group(g) => s.logic.group(me, g).await.is_ok(),
    }
}

/// Ask for an upload: checks the kind's size limit and mime allowlist, and
/// answers a presigned PUT of exactly `size` bytes of `mime`, and the body to
/// send once the upload is done (v1.2).
#[utoipa::path(
    post,
    path = "/api/v1/uploads",
    tag = "attachments",
    operation_id = "create_upload",
    security(("bearerAuth" = [])),
    request_body = UploadRequest,
    responses(
        (status = 201, description = "Upload with `upload`, then send a message of `kind` with `body`", body = Upload),
        (status = 400, description = "`invalid_argument`: bad name, size, mime (not allowed for the kind) or target", body = ErrorBody),
        (status = 403, description = "`permission_denied`: not a member of the group", body = ErrorBody),
        (status = 404, description = "`not_found`: attachments are not enabled on this server", body = ErrorBody),
        (status = 413, description = "`resource_exhausted`: larger than the kind allows", body = ErrorBody),
        (status = 503, description = "`unavailable`: the object storage is down; safe to retry", body = ErrorBody),
        Unauthenticated,
    )
)]
pub async fn create_upload(
    State(s): State<ApiState>,
    Caller(me): Caller,
    ApiJson(req): ApiJson<UploadRequest>,
) -> Result<Response, ApiError> {
    let att = attachments(&s)?;
    let refused = |e: Error| {
        metrics::counter!("im_uploads_refused_total").increment(1);
        ApiError(e)
    };
    let kind = att
        .policy
        .check_upload(req.kind, &req.name, req.size, &req.mime)
        .map_err(refused)?;
    let conversation = req.to.conversation(me).map_err(|e| refused(e.into()))?;
    if !participant(&s, me, conversation).await {
        return Err(refused(Error::PermissionDenied(format!(
            "you are not in conversation {conversation}"
        ))));
    }
    let key = object_key(conversation, me, rand::random::<u64>() >> 1, &req.name);
    let upload = att
        .storage
        .presign_put(&key, &req.mime, req.size, att.policy.upload_ttl)
        .await?;
    metrics::counter!("im_uploads_total", "kind" => kind.as_str()).increment(1);
    let body = serde_json::json!({
        "key": key,
        "name": req.name,
        "size": req.size,
        "mime": req.mime,
    });
    Ok((
        StatusCode::CREATED,
        Json(Upload {
            key,
            kind,
            upload: upload.into(),
            body,
        }),
    )
        .into_response())
}

/// Download an attachment: a redirect (302) to a short-lived presigned GET,
/// or the presigned request as JSON with `?redirect=false` (for pages that
/// set an `<img src>`). Participants of the key's conversation only (v1.2).
#[utoipa::path(
    get,
    path = "/api/v1/files/{key}",
    tag = "attachments",
    operation_id = "download",
    security(("bearerAuth" = [])),
    params(
        ("key" = String, Path, description = "The object key of the message body (`att/…`)"),
        ("redirect" = Option<bool>, Query, description = "`false`: answer JSON instead of a redirect"),
    ),
    responses(
        (status = 200, description = "With `redirect=false`: the presigned download", body = PresignedDoc),
        (status = 302, description = "Redirect to the presigned download (`Location`)"),
        (status = 403, description = "`permission_denied`: not a participant of the conversation", body = ErrorBody),
        (status = 404, description = "`not_found`: no such object (never uploaded, or recalled), or attachments are off", body = ErrorBody),
        (status = 503, description = "`unavailable`: the object storage is down; safe to retry", body = ErrorBody),
        Unauthenticated,
    )
)]
pub async fn download(
    State(s): State<ApiState>,
    Caller(me): Caller,
    Path(key): Path<String>,
    Query(q): Query<FileQuery>,
) -> Result<Response, ApiError> {
    let att = attachments(&s)?;
    let denied = || {
        metrics::counter!("im_downloads_refused_total").increment(1);
        ApiError(Error::PermissionDenied(
            "only the participants of its conversation can download this".into(),
        ))
    };
    let Some((conversation, uploader)) = parse_key(&key) else {
        return Err(denied());
    };
    if me != uploader && !participant(&s, me, conversation).await {
        return Err(denied());
    }
    if att.storage.head(&key).await?.is_none() {
        return Err(ApiError(Error::NotFound("no such file".into())));
    }
    let get = att
        .storage
        .presign_get(&key, att.policy.download_ttl)
        .await?;
    metrics::counter!("im_downloads_total").increment(1);
    if q.redirect == Some(false) {
        return Ok(Json(PresignedDoc::from(get)).into_response());
    }
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, get.url),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
    )
        .into_response())
}

/// The query of a signed URL of the in-memory storage.
#[derive(Debug, Deserialize)]
struct SignedQuery {
    op: String,
    exp: i64,
    len: Option<u64>,
    #[serde(rename = "type")]
    content_type: Option<String>,
    sig: String,
}

impl From<SignedQuery> for SignedOp {
    fn from(q: SignedQuery) -> Self {
        SignedOp {
            op: q.op,
            exp: q.exp,
            len: q.len,
            content_type: q.content_type,
            sig: q.sig,
        }
    }
}

fn local(s: &ApiState) -> Result<&Arc<MemoryObjectStorage>, ApiError> {
    s.attachments
        .as_deref()
        .and_then(|a| a.local.as_ref())
        .ok_or_else(|| ApiError(Error::NotFound("no such object".into())))
}

/// `PUT /api/v1/objects/{key}?op=put&…&sig=…`: an upload to the in-memory
/// storage, held to the size and type it was signed for.
async fn put_object(
    State(s): State<ApiState>,
    Path(key): Path<String>,
    Query(q): Query<SignedQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let store = local(&s)?;
    let op = SignedOp::from(q);
    if op.op != "put" {
        return Err(ApiError(Error::PermissionDenied(
            "not an upload link".into(),
        )));
    }
    store.verify(&key, &op)?;
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if Some(sent_type) != op.content_type.as_deref() {
        return Err(ApiError(Error::PermissionDenied(format!(
            "this link uploads {} only",
            op.content_type.unwrap_or_default()
        ))));
    }
    if Some(body.len() as u64) != op.len {
        return Err(ApiError(Error::PermissionDenied(format!(
            "this link uploads exactly {} bytes",
            op.len.unwrap_or(0)
        ))));
    }
    store.put(&key, body, sent_type).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /api/v1/objects/{key}?op=get&…&sig=…`: a download from the
/// in-memory storage.
async fn get_object(
    State(s): State<ApiState>,
    Path(key): Path<String>,
    Query(q): Query<SignedQuery>,
) -> Result<Response, ApiError> {
    let store = local(&s)?;
    let op = SignedOp::from(q);
    if op.op != "get" {
        return Err(ApiError(Error::PermissionDenied(
            "not a download link".into(),
        )));
    }
    store.verify(&key, &op)?;
    let meta = store
        .head(&key)
        .await?
        .ok_or_else(|| ApiError(Error::NotFound("no such object".into())))?;
    let bytes = store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError(Error::NotFound("no such object".into())))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                meta.content_type
                    .unwrap_or_else(|| "application/octet-stream".into()),
            ),
            (header::CACHE_CONTROL, "private, max-age=300".into()),
        ],
        bytes,
    )
        .into_response())
}

/// The attachment routes (under `/api/v1`), given the API's attachments.
pub(super) fn routes(att: Option<&Attachments>) -> Router<ApiState> {
    let mut r = Router::new()
        .route("/uploads", post(create_upload))
        .route("/files/{*key}", get(download));
    if let Some(local) = att.and_then(|a| a.local.as_ref().map(|l| (a, l))) {
        let (att, _) = local;
        let largest = [
            &att.policy.image,
            &att.policy.audio,
            &att.policy.video,
            &att.policy.file,
        ]
        .iter()
        .map(|l| l.max_bytes)
        .max()
        .unwrap_or(0);
        r = r.route(
            "/objects/{*key}",
            get(get_object)
                .put(put_object)
                .layer(axum::extract::DefaultBodyLimit::max(
                    usize::try_from(largest).unwrap_or(usize::MAX),
                )),
        );
    }
    r
}
