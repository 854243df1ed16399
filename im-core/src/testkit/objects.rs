//! Conformance suite of `ObjectStorage` (the storage side; presigned URLs
//! are exercised over HTTP by each backend's own tests, which need a client).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::random_id;
use crate::id::now_ms;
use crate::ports::ObjectStorage;

/// Runs every `ObjectStorage` check on a fresh storage from `make`.
pub async fn objects_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ObjectStorage>>,
{
    let s = make().await;
    let key = format!(
        "att/g:{}/{}/{}/photo.png",
        random_id(),
        random_id(),
        random_id()
    );
    assert_eq!(
        s.head(&key).await.expect("head"),
        None,
        "objects: a missing key is None"
    );
    assert_eq!(
        s.get(&key).await.expect("get"),
        None,
        "objects: a missing key is None"
    );
    s.delete(&key)
        .await
        .expect("objects: deleting a missing key is not an error");

    let bytes = Bytes::from((0..=255u8).cycle().take(70_000).collect::<Vec<u8>>());
    s.put(&key, bytes.clone(), "image/png").await.expect("put");
    let meta = s
        .head(&key)
        .await
        .expect("head")
        .expect("objects: head after put");
    assert_eq!(meta.size, 70_000, "objects: head reports the size");
    if let Some(t) = &meta.content_type {
        assert_eq!(
            t, "image/png",
            "objects: head reports the type it was stored with"
        );
    }
    assert_eq!(
        s.get(&key).await.expect("get").as_ref(),
        Some(&bytes),
        "objects: get answers the bytes"
    );
    s.put(&key, Bytes::from_static(b"smaller"), "image/png")
        .await
        .expect("put again");
    assert_eq!(
        s.head(&key).await.expect("head").map(|m| m.size),
        Some(7),
        "objects: a second put replaces the object"
    );

    let before = now_ms();
    let put = s
        .presign_put(&key, "image/png", 7, Duration::from_secs(60))
        .await
        .expect("presign_put");
    assert_eq!(put.method, "PUT");
    assert!(
        put.url.starts_with("http") || put.url.starts_with('/'),
        "objects: a URL (absolute, or relative to the server): {}",
        put.url
    );
    assert!(
        put.expires_at >= before + 59_000 && put.expires_at <= now_ms() + 61_000,
        "objects: presigned for the ttl asked"
    );
    let get = s
        .presign_get(&key, Duration::from_secs(30))
        .await
        .expect("presign_get");
    assert_eq!(get.method, "GET");
    assert_ne!(
        get.url, put.url,
        "objects: a GET URL differs from the PUT one"
    );

    s.delete(&key).await.expect("delete");
    assert_eq!(s.head(&key).await.expect("head"), None, "objects: deleted");
    assert_eq!(s.get(&key).await.expect("get"), None, "objects: deleted");
}
