//! `S3ObjectStorage`: attachments on S3 or any S3-compatible server (MinIO,
//! SeaweedFS, Ceph RGW, R2 …), through arrow-rs's `object_store` (SigV4
//! signing, retries), feature `s3`.
//!
//! Upload URLs are presigned with `content-type` folded into the signature,
//! so the storage itself refuses an upload of another type than the one im
//! allowed. A presigned PUT cannot bind the size (S3 has no such header; only
//! POST policies have `content-length-range`), so im checks the stored
//! object (HEAD: size and type) before a message may reference it; an
//! upload of another size is never sendable (a bucket lifecycle rule on
//! `att/` can expire such strays).
//!
//! ```no_run
//! # async fn run() -> Result<(), im_core::Error> {
//! use im_store::s3::{S3Config, S3ObjectStorage};
//! let objects = S3ObjectStorage::new(
//!     S3Config::new("http://127.0.0.1:8333", "im-attachments")
//!         .with_credentials("access", "secret"),
//! )?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use im_core::id::now_ms;
use im_core::ports::{ObjectMeta, ObjectStorage, PresignedRequest};
use im_core::Error;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};
use object_store::{
    Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
};

/// How to reach the bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL (`https://s3.eu-west-1.amazonaws.com`,
    /// `http://127.0.0.1:8333` for a local SeaweedFS); empty: AWS's own for
    /// the region.
    pub endpoint: String,
    /// The bucket (must exist).
    pub bucket: String,
    /// Region (default `us-east-1`; S3-compatible servers mostly ignore it).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// The endpoint as clients reach it, when it differs from `endpoint`
    /// (presigned URLs are signed for this host), e.g. a public name in front
    /// of an internal one. Empty: `endpoint`.
    pub public_endpoint: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("public_endpoint", &self.public_endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// A bucket at `endpoint`, without credentials yet.
    pub fn new(endpoint: impl Into<String>, bucket: impl Into<String>) -> Self {
        S3Config {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            public_endpoint: String::new(),
        }
    }

    /// From `S3_ENDPOINT`, `S3_BUCKET`, `S3_REGION`, `S3_ACCESS_KEY_ID`,
    /// `S3_SECRET_ACCESS_KEY` and `S3_PUBLIC_ENDPOINT` (defaults: the local
    /// SeaweedFS of `scripts/services.sh`).
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        S3Config {
            endpoint: var("S3_ENDPOINT", "http://127.0.0.1:8333"),
            bucket: var("S3_BUCKET", "im-test"),
            region: var("S3_REGION", "us-east-1"),
            access_key_id: var("S3_ACCESS_KEY_ID", "im-test-key"),
            secret_access_key: var("S3_SECRET_ACCESS_KEY", "im-test-secret"),
            public_endpoint: var("S3_PUBLIC_ENDPOINT", ""),
        }
    }

    /// With these credentials.
    pub fn with_credentials(
        mut self,
        key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.access_key_id = key_id.into();
        self.secret_access_key = secret.into();
        self
    }

    /// With this region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Presigned URLs for clients on this endpoint instead of `endpoint`.
    pub fn with_public_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.public_endpoint = endpoint.into();
        self
    }

    fn build(&self, endpoint: &str) -> Result<AmazonS3, Error> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .with_virtual_hosted_style_request(false);
        if !endpoint.is_empty() {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        b.build()
            .map_err(|e| Error::InvalidArgument(format!("S3 configuration: {e}")))
    }
}

/// Attachments in an S3 bucket.
#[derive(Debug)]
pub struct S3ObjectStorage {
    store: AmazonS3,
    /// Signs for the public endpoint (the same client when there is none).
    signer: AmazonS3,
    config: S3Config,
}

fn map_err(what: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound(format!("{what}: no such object")),
        e => Error::unavailable(format!("S3 {what}"), e),
    }
}

/// *ring*, deprecated by rustls for lacking post-quantum key exchange and
/// kept deliberately like im-transport's TLS (aws-lc-rs needs cmake and a
/// long C build).
#[allow(deprecated)]
fn ring_provider() -> tokio_rustls::rustls::crypto::CryptoProvider {
    tokio_rustls::rustls::crypto::ring::default_provider()
}

fn path(key: &str) -> Result<Path, Error> {
    Path::parse(key).map_err(|e| Error::InvalidArgument(format!("object key: {e}")))
}

fn expiry(ttl: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

impl S3ObjectStorage {
    /// A client of the bucket (no request is made until used).
    ///
    /// HTTPS needs a process-wide rustls crypto provider: when the process
    /// has none installed yet, this installs *ring*'s (the one the rest of im
    /// uses).
    pub fn new(config: S3Config) -> Result<Self, Error> {
        if tokio_rustls::rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: one is installed.
            let _ = ring_provider().install_default();
        }
        let store = config.build(&config.endpoint)?;
        let signer = if config.public_endpoint.is_empty() {
            store.clone()
        } else {
            config.build(&config.public_endpoint)?
        };
        Ok(S3ObjectStorage {
            store,
            signer,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// One request to the bucket (a HEAD of a key that need not exist):
    /// `Unavailable`, naming the endpoint and bucket, when it cannot be
    /// reached or refuses the credentials. For readiness checks and tests.
    pub async fn check(&self) -> Result<(), Error> {
        self.head("att/reachability-check")
            .await
            .map(drop)
            .map_err(|e| {
                Error::unavailable(
                    format!(
                        "S3 at {} (bucket {}) is not reachable",
                        self.config.endpoint, self.config.bucket
                    ),
                    e,
                )
            })
    }
}

#[async_trait]
impl ObjectStorage for S3ObjectStorage {
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        _size: u64,
        ttl: Duration,
    ) -> Result<PresignedRequest, Error> {
        let bad = |e: &dyn std::fmt::Display| Error::InvalidArgument(format!("upload: {e}"));
        let options = SignedUrlOptions::new().with_signed_header(
            HeaderName::from_static("content-type"),
            HeaderValue::from_str(content_type).map_err(|e| bad(&e))?,
        );
        let url = self
            .signer
            .signed_url_opts(Method::PUT, &path(key)?, ttl, &options)
            .await
            .map_err(|e| map_err("presign", e))?;
        Ok(PresignedRequest {
            method: "PUT".into(),
            url: url.to_string(),
            // The size is not in the signature (see the module docs); it is
            // checked when a message references the object.
            headers: BTreeMap::from([("content-type".to_owned(), content_type.to_owned())]),
            expires_at: expiry(ttl),
        })
    }

    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<PresignedRequest, Error> {
        let url = self
            .signer
            .signed_url(Method::GET, &path(key)?, ttl)
            .await
            .map_err(|e| map_err("presign", e))?;
        Ok(PresignedRequest {
            method: "GET".into(),
            url: url.to_string(),
            headers: BTreeMap::new(),
            expires_at: expiry(ttl),
        })
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, Error> {
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.store.get_opts(&path(key)?, options).await {
            Ok(r) => Ok(Some(ObjectMeta {
                size: r.meta.size,
                content_type: r
                    .attributes
                    .get(&Attribute::ContentType)
                    .map(|v| v.as_ref().to_owned()),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_err("head", e)),
        }
    }

    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), Error> {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, content_type.to_owned().into());
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&path(key)?, PutPayload::from(bytes), options)
            .await
            .map(drop)
            .map_err(|e| map_err("put", e))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        match self.store.get(&path(key)?).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| map_err("get", e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_err("get", e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err("delete", e)),
        }
    }
}
