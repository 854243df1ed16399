//! `ObjectStorage`: where attachments live (S3-compatible storage in
//! production, memory for the quickstart).
//!
//! Clients never send attachment bytes through im: they ask for an upload
//! (a presigned PUT), upload straight to the storage, then send a message
//! whose body names the object key; downloads are presigned GETs handed out
//! to the participants of the conversation (see [`crate::attachments`]).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// What the storage knows of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// The content type it was stored with, when the backend reports it.
    pub content_type: Option<String>,
}

/// A request a client makes itself, without im's credentials: a presigned
/// URL and the headers to send with it (a backend may bind them into the
/// signature, so that another size or type is refused by the storage).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PresignedRequest {
    /// `PUT` or `GET`.
    pub method: String,
    /// The URL, carrying its signature.
    pub url: String,
    /// Headers to send exactly as given (header name in lower case).
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working, Unix ms.
    pub expires_at: i64,
}

/// Object storage for attachments.
///
/// Contract (see `testkit::objects_suite`):
/// - keys are opaque strings of printable ASCII without spaces (im makes
///   them: `att/<conversation>/<uploader>/<id>/<name>`);
/// - `put` then `head` reports the size (and the content type, where the
///   backend keeps one); `get` answers the bytes; `delete` is idempotent
///   (deleting a missing key is `Ok`); a missing key is `None`, never an error;
/// - `presign_put` answers a request that stores exactly `size` bytes of
///   `content_type` under `key` until it expires; `presign_get` one that
///   reads it back.
#[async_trait]
pub trait ObjectStorage: Send + Sync + 'static {
    /// A presigned upload of exactly `size` bytes of `content_type`.
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<PresignedRequest>;

    /// A presigned download.
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<PresignedRequest>;

    /// The object's size and type, `None` when there is no such object.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Stores an object (server-side writes and tests; clients upload with
    /// [`ObjectStorage::presign_put`]).
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<()>;

    /// Reads an object, `None` when there is none.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Deletes an object (no error when it is already gone).
    async fn delete(&self, key: &str) -> Result<()>;
}
