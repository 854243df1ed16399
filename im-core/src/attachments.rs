//! Attachments: what an upload may be, the object key it gets, and the check
//! of an attachment message's body.
//!
//! The flow (docs/protocol.md, "Attachments"):
//! 1. the client asks for an upload (`POST /api/v1/uploads {to, name, size,
//!    mime}`); [`AttachmentPolicy::check_upload`] enforces the kind's size
//!    limit and mime allowlist, and the object key binds the upload to its
//!    conversation and uploader ([`object_key`]);
//! 2. the client PUTs the bytes to the presigned URL (im never carries them);
//! 3. the client sends a message of kind `image`, `file`, `audio` or `video`
//!    whose body is `{key, name, size, mime, width?, height?, duration?}`;
//!    Logic checks the body again ([`AttachmentPolicy::check_body`]) and that
//!    the object exists with the declared size ([`crate::ports::ObjectStorage::head`]);
//! 4. participants download with a short-lived presigned GET.
//!
//! A body without `key` is not an attachment: it stays the free-form object of
//! protocol v1 (an image by URL, say), unchecked.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{ConversationId, UserId};
use crate::model::MessageKind;

/// What one kind of attachment may be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindLimit {
    /// Largest object, bytes.
    pub max_bytes: u64,
    /// Allowed mime types: exact (`image/png`), a family (`image/*`) or
    /// anything (`*/*`). Empty: the kind is refused.
    pub mimes: Vec<String>,
}

impl KindLimit {
    fn new(max_bytes: u64, mimes: &[&str]) -> Self {
        KindLimit {
            max_bytes,
            mimes: mimes.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    /// Whether `mime` is on the allowlist.
    pub fn allows(&self, mime: &str) -> bool {
        let mime = mime.trim().to_ascii_lowercase();
        let family = mime.split('/').next().unwrap_or("");
        self.mimes.iter().any(|m| {
            let m = m.to_ascii_lowercase();
            m == "*/*" || m == mime || (m.ends_with("/*") && m[..m.len() - 2] == *family)
        })
    }
}

/// Limits and lifetimes of attachments (one per deployment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttachmentPolicy {
    /// `image` (default: 20 MiB of JPEG, PNG, GIF or WebP).
    pub image: KindLimit,
    /// `audio` (default: 20 MiB of `audio/*`).
    pub audio: KindLimit,
    /// `video` (default: 200 MiB of `video/*`).
    pub video: KindLimit,
    /// `file` (default: 100 MiB of any type).
    pub file: KindLimit,
    /// How long an upload URL works (default 10 minutes).
    #[serde(with = "secs")]
    pub upload_ttl: Duration,
    /// How long a download URL works (default 5 minutes).
    #[serde(with = "secs")]
    pub download_ttl: Duration,
    /// Delete the object when its message is recalled (default true).
    pub delete_on_recall: bool,
    /// Longest file name, bytes (default 200).
    pub max_name_bytes: usize,
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl Default for AttachmentPolicy {
    fn default() -> Self {
        const MIB: u64 = 1 << 20;
        AttachmentPolicy {
            image: KindLimit::new(
                20 * MIB,
                &["image/jpeg", "image/png", "image/gif", "image/webp"],
            ),
            audio: KindLimit::new(20 * MIB, &["audio/*"]),
            video: KindLimit::new(200 * MIB, &["video/*"]),
            file: KindLimit::new(100 * MIB, &["*/*"]),
            upload_ttl: Duration::from_secs(600),
            download_ttl: Duration::from_secs(300),
            delete_on_recall: true,
            max_name_bytes: 200,
        }
    }
}

/// A checked attachment body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The object key.
    pub key: String,
    /// The file name shown to people.
    pub name: String,
    /// Declared size, bytes.
    pub size: u64,
    /// Declared mime type.
    pub mime: String,
}

/// The kinds whose body may reference an uploaded object.
pub fn is_attachment_kind(kind: MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::Image | MessageKind::File | MessageKind::Audio | MessageKind::Video
    )
}

/// The object key of a message body, if it references one.
pub fn body_key(kind: MessageKind, body: &serde_json::Value) -> Option<&str> {
    if !is_attachment_kind(kind) {
        return None;
    }
    body.get("key")?.as_str()
}

/// The key of an upload: `att/<conversation>/<uploader>/<id>/<name>`, the
/// name reduced to `[A-Za-z0-9._-]` (at most 80 characters).
///
/// ```
/// use im_core::attachments::{object_key, parse_key};
/// use im_core::id::{ConversationId, GroupId, UserId};
/// let c = ConversationId::Group(GroupId(7));
/// let key = object_key(c, UserId(3), 99, "my photo (1).png");
/// assert_eq!(key, "att/g:7/3/99/my_photo__1_.png");
/// assert_eq!(parse_key(&key), Some((c, UserId(3))));
/// assert_eq!(parse_key("att/g:7/x/99/a"), None);
/// ```
pub fn object_key(conversation: ConversationId, uploader: UserId, id: u64, name: &str) -> String {
    let mut clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        clean = "file".into();
    }
    format!("att/{conversation}/{uploader}/{id}/{clean}")
}

/// The conversation and uploader an object key was made for.
pub fn parse_key(key: &str) -> Option<(ConversationId, UserId)> {
    let mut parts = key.split('/');
    if parts.next()? != "att" {
        return None;
    }
    let conversation = parts.next()?.parse().ok()?;
    let uploader = UserId(parts.next()?.parse().ok()?);
    let id = parts.next()?;
    let name = parts.next()?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    parts.next().is_none().then_some((conversation, uploader))
}

impl AttachmentPolicy {
    /// The limit of an attachment kind (`None` for the others).
    pub fn limit(&self, kind: MessageKind) -> Option<&KindLimit> {
        match kind {
            MessageKind::Image => Some(&self.image),
            MessageKind::Audio => Some(&self.audio),
            MessageKind::Video => Some(&self.video),
            MessageKind::File => Some(&self.file),
            _ => None,
        }
    }

    /// The kind a mime type uploads as when the client does not say:
    /// `image/*` an image (when the image allowlist takes it), `audio/*`,
    /// `video/*`, anything else a file.
    pub fn kind_for(&self, mime: &str) -> MessageKind {
        let family = mime.split('/').next().unwrap_or("").to_ascii_lowercase();
        match family.as_str() {
            "image" if self.image.allows(mime) => MessageKind::Image,
            "audio" => MessageKind::Audio,
            "video" => MessageKind::Video,
            _ => MessageKind::File,
        }
    }

    /// Checks an upload request; answers the kind it uploads as.
    /// `InvalidArgument` for a bad name, size or type, `ResourceExhausted`
    /// for a size over the kind's limit.
    pub fn check_upload(
        &self,
        kind: Option<MessageKind>,
        name: &str,
        size: u64,
        mime: &str,
    ) -> Result<MessageKind> {
        let kind = kind.unwrap_or_else(|| self.kind_for(mime));
        let limit = self.limit(kind).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "kind `{kind}` carries no attachment (image, file, audio, video)"
            ))
        })?;
        if name.trim().is_empty() || name.len() > self.max_name_bytes {
            return Err(Error::InvalidArgument(format!(
                "name must be 1-{} bytes",
                self.max_name_bytes
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(
                "name must not contain control characters".into(),
            ));
        }
        if size == 0 {
            return Err(Error::InvalidArgument(
                "size must be at least 1 byte".into(),
            ));
        }
        if size > limit.max_bytes {
            return Err(Error::ResourceExhausted(format!(
                "a {kind} may be at most {} bytes; this one is {size}",
                limit.max_bytes
            )));
        }
        let well_formed = mime.len() <= 127
            && mime.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && mime
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"/.+-_".contains(&c))
            });
        if !well_formed {
            return Err(Error::InvalidArgument(format!(
                "mime `{}` is not a media type like image/png",
                mime.chars().take(40).collect::<String>()
            )));
        }
        if !limit.allows(mime) {
            return Err(Error::InvalidArgument(format!(
                "mime `{mime}` is not allowed for a {kind} (allowed: {})",
                limit.mimes.join(", ")
            )));
        }
        Ok(kind)
    }

    /// Checks the body of a message of `kind` from `sender` into
    /// `conversation`: `None` when it references no object (a v1 free-form
    /// body), the attachment when it does and every field is right.
    pub fn check_body(
        &self,
        sender: UserId,
        conversation: ConversationId,
        kind: MessageKind,
        body: &serde_json::Value,
    ) -> Result<Option<Attachment>> {
        let Some(key) = body_key(kind, body) else {
            if is_attachment_kind(kind) && body.get("key").is_some() {
                return Err(Error::InvalidArgument("body.key must be a string".into()));
            }
            return Ok(None);
        };
        let bad = |what: &str| Error::InvalidArgument(format!("attachment body: {what}"));
        match parse_key(key) {
            Some((c, u)) if c == conversation && u == sender => {}
            Some(_) => {
                return Err(Error::PermissionDenied(
                    "this object was uploaded for another conversation or by someone else".into(),
                ))
            }
            None => return Err(bad("key is not an upload key")),
        }
        let name = body
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("name (string) is required"))?;
        let size = body
            .get("size")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| bad("size (bytes) is required"))?;
        let mime = body
            .get("mime")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("mime (string) is required"))?;
        for field in ["width", "height", "duration"] {
            if let Some(v) = body.get(field) {
                if !v.is_u64() && !v.as_f64().is_some_and(|f| f >= 0.0 && f.is_finite()) {
                    return Err(bad(&format!("{field} must be a non-negative number")));
                }
            }
        }
        self.check_upload(Some(kind), name, size, mime)?;
        Ok(Some(Attachment {
            key: key.to_owned(),
            name: name.to_owned(),
            size,
            mime: mime.to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::GroupId;
    use serde_json::json;

    #[test]
    fn uploads_are_held_to_their_kind() {
        let p = AttachmentPolicy::default();
        assert_eq!(
            p.check_upload(None, "a.png", 10, "image/png").unwrap(),
            MessageKind::Image
        );
        assert_eq!(
            p.check_upload(None, "a.pdf", 10, "application/pdf")
                .unwrap(),
            MessageKind::File
        );
        assert_eq!(
            p.kind_for("image/tiff"),
            MessageKind::File,
            "not an allowed image"
        );
        assert!(matches!(
            p.check_upload(Some(MessageKind::Image), "a.png", 21 << 20, "image/png"),
            Err(Error::ResourceExhausted(_))
        ));
        assert!(matches!(
            p.check_upload(
                Some(MessageKind::Image),
                "a.exe",
                10,
                "application/x-msdownload"
            ),
            Err(Error::InvalidArgument(_))
        ));
        assert!(p.check_upload(None, "", 10, "image/png").is_err());
        assert!(p.check_upload(None, "a\nb", 10, "image/png").is_err());
        assert!(p.check_upload(None, "a", 0, "image/png").is_err());
        assert!(p.check_upload(None, "a", 1, "not a type").is_err());
        assert!(p
            .check_upload(Some(MessageKind::Text), "a", 1, "text/plain")
            .is_err());
    }

    #[test]
    fn bodies_must_name_their_own_upload() {
        let p = AttachmentPolicy::default();
        let c = ConversationId::Group(GroupId(5));
        let key = object_key(c, UserId(1), 42, "cat.png");
        let body =
            json!({"key": key, "name": "cat.png", "size": 10, "mime": "image/png", "width": 4});
        let a = p
            .check_body(UserId(1), c, MessageKind::Image, &body)
            .unwrap()
            .unwrap();
        assert_eq!((a.size, a.mime.as_str()), (10, "image/png"));
        assert!(matches!(
            p.check_body(UserId(2), c, MessageKind::Image, &body),
            Err(Error::PermissionDenied(_))
        ));
        let other = ConversationId::Group(GroupId(6));
        assert!(matches!(
            p.check_body(UserId(1), other, MessageKind::Image, &body),
            Err(Error::PermissionDenied(_))
        ));
        let no_size = json!({"key": key, "name": "cat.png", "mime": "image/png"});
        assert!(p
            .check_body(UserId(1), c, MessageKind::Image, &no_size)
            .is_err());
        let free = json!({"url": "https://example.com/cat.png"});
        assert_eq!(
            p.check_body(UserId(1), c, MessageKind::Image, &free)
                .unwrap(),
            None
        );
        assert!(p
            .check_body(UserId(1), c, MessageKind::Image, &json!({"key": 5}))
            .is_err());
    }
}
