//! `MemoryObjectStorage`: attachments in memory, for the quickstart and
//! tests. Its presigned URLs point at im's own HTTP server
//! (`{public_url}/api/v1/objects/<key>?…`, served by im-transport), signed
//! with HMAC-SHA256 over the method, key, expiry, size and type, so an upload
//! of another size or type, or after the expiry, is refused like S3 would.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::id::now_ms;
use crate::ports::{ObjectMeta, ObjectStorage, PresignedRequest};

/// The path prefix the signed URLs use (mounted by im-transport's router).
pub const OBJECTS_PATH: &str = "/api/v1/objects/";

/// Attachments in memory, bounded in total size.
pub struct MemoryObjectStorage {
    public_url: String,
    secret: Vec<u8>,
    max_total_bytes: u64,
    objects: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    map: HashMap<String, (Bytes, String)>,
    total: u64,
}

/// A signed operation on [`MemoryObjectStorage`], as its URL carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOp {
    /// `put` or `get`.
    pub op: String,
    /// Expiry, Unix ms.
    pub exp: i64,
    /// The size a `put` must have.
    pub len: Option<u64>,
    /// The content type a `put` must have.
    pub content_type: Option<String>,
    /// Hex HMAC-SHA256.
    pub sig: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Percent-encodes everything but unreserved characters (and `/` when asked).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b':')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl MemoryObjectStorage {
    /// Objects whose URLs start at `public_url` (e.g. `http://127.0.0.1:8080`,
    /// where im's HTTP server listens; empty: URLs relative to the server
    /// that handed them out, `/api/v1/objects/…`), signed with `secret`, at
    /// most `max_total_bytes` in all.
    pub fn new(public_url: impl Into<String>, secret: &[u8], max_total_bytes: u64) -> Self {
        MemoryObjectStorage {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            secret: secret.to_vec(),
            max_total_bytes,
            objects: Mutex::new(Store::default()),
        }
    }

    fn mac(
        &self,
        op: &str,
        key: &str,
        exp: i64,
        len: Option<u64>,
        ct: Option<&str>,
    ) -> Hmac<Sha256> {
        // `new_from_slice` takes keys of any length for HMAC.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        };
        let len = len.map(|l| l.to_string()).unwrap_or_default();
        mac.update(format!("{op}\n{key}\n{exp}\n{len}\n{}", ct.unwrap_or("")).as_bytes());
        mac
    }

    fn url(&self, key: &str, op: &str, exp: i64, len: Option<u64>, ct: Option<&str>) -> String {
        let sig = hex(&self.mac(op, key, exp, len, ct).finalize().into_bytes());
        let mut url = format!(
            "{}{OBJECTS_PATH}{}?op={op}&exp={exp}",
            self.public_url,
            encode(key, true)
        );
        if let Some(l) = len {
            url.push_str(&format!("&len={l}"));
        }
        if let Some(t) = ct {
            url.push_str(&format!("&type={}", encode(t, false)));
        }
        url.push_str(&format!("&sig={sig}"));
        url
    }

    /// Checks a signed operation on `key` (expiry and signature):
    /// `PermissionDenied` when it does not hold.
    pub fn verify(&self, key: &str, op: &SignedOp) -> Result<()> {
        if op.exp < now_ms() {
            return Err(Error::PermissionDenied("this link has expired".into()));
        }
        let sig =
            unhex(&op.sig).ok_or_else(|| Error::PermissionDenied("malformed signature".into()))?;
        self.mac(&op.op, key, op.exp, op.len, op.content_type.as_deref())
            .verify_slice(&sig)
            .map_err(|_| Error::PermissionDenied("bad signature".into()))
    }

    /// Bytes stored in all.
    pub fn total_bytes(&self) -> u64 {
        self.objects.lock().total
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC accepts any key length; this cannot happen.
    panic!("HMAC rejected its key")
}

fn presigned(
    method: &str,
    url: String,
    headers: BTreeMap<String, String>,
    exp: i64,
) -> PresignedRequest {
    PresignedRequest {
        method: method.into(),
        url,
        headers,
        expires_at: exp,
    }
}

#[async_trait]
impl ObjectStorage for MemoryObjectStorage {
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<PresignedRequest> {
        let exp = now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let url = self.url(key, "put", exp, Some(size), Some(content_type));
        let headers = BTreeMap::from([("content-type".to_owned(), content_type.to_owned())]);
        Ok(presigned("PUT", url, headers, exp))
    }

    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<PresignedRequest> {
        let exp = now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        Ok(presigned(
            "GET",
            self.url(key, "get", exp, None, None),
            BTreeMap::new(),
            exp,
        ))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.objects.lock().map.get(key).map(|(b, t)| ObjectMeta {
            size: b.len() as u64,
            content_type: Some(t.clone()),
        }))
    }

    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<()> {
        let mut s = self.objects.lock();
        let old = s.map.get(key).map_or(0, |(b, _)| b.len() as u64);
        let total = s.total - old + bytes.len() as u64;
        if total > self.max_total_bytes {
            return Err(Error::ResourceExhausted(format!(
                "the in-memory object storage is full ({} bytes)",
                self.max_total_bytes
            )));
        }
        s.total = total;
        s.map
            .insert(key.to_owned(), (bytes, content_type.to_owned()));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.objects.lock().map.get(key).map(|(b, _)| b.clone()))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let mut s = self.objects.lock();
        if let Some((b, _)) = s.map.remove(key) {
            s.total -= b.len() as u64;
        }
        Ok(())
    }
}
