//! The S3 object storage against a real S3-compatible server: SeaweedFS's S3
//! gateway, which `scripts/services.sh` starts on 127.0.0.1:8333 (`S3_*`
//! variables): the conformance suite, and presigned URLs used the way a
//! client uses them, including uploads the signature must refuse (another
//! type, a forged signature; the size is not signable on a presigned PUT, so
//! a wrong size is stored and shows in `head`, where Logic refuses it).
#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use im_core::ports::ObjectStorage;
use im_core::testkit;
use im_store::s3::{S3Config, S3ObjectStorage};

async fn storage() -> S3ObjectStorage {
    let config = S3Config::from_env();
    let s = S3ObjectStorage::new(config.clone()).unwrap();
    if let Err(e) = s.check().await {
        panic!(
            "the S3 server is not reachable at {} (bucket {}): {e}. These tests need a real one: \
             `source scripts/services.sh` starts SeaweedFS's S3 gateway on 127.0.0.1:8333, or \
             point S3_ENDPOINT/S3_BUCKET/S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY at another.",
            config.endpoint, config.bucket
        );
    }
    s
}

#[tokio::test]
async fn s3_objects_conform() {
    let s = Arc::new(storage().await);
    testkit::objects_suite(|| {
        let s = s.clone();
        async move { s as _ }
    })
    .await;
}

/// A client uploads with the presigned PUT and downloads with the presigned
/// GET; the storage refuses an upload of another size or type than signed,
/// and a tampered signature.
#[tokio::test]
async fn s3_presigned_urls_hold_the_upload_to_what_was_signed() {
    let s = storage().await;
    let http = reqwest::Client::new();
    let key = format!(
        "att/g:{}/1/{}/pic.png",
        testkit::random_id(),
        testkit::random_id()
    );
    let put = s
        .presign_put(&key, "image/png", 5, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        put.headers.get("content-type").map(String::as_str),
        Some("image/png")
    );
    let upload = |body: &'static [u8], content_type: &'static str, url: String| {
        http.put(url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let wrong_type = upload(b"12345", "text/html", put.url.clone())
        .await
        .unwrap();
    assert!(
        wrong_type.status().is_client_error(),
        "text/html on an image/png URL: {}",
        wrong_type.status()
    );
    let tampered = put.url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    let forged = upload(b"12345", "image/png", tampered).await.unwrap();
    assert!(forged.status().is_client_error(), "{}", forged.status());
    assert_eq!(s.head(&key).await.unwrap(), None, "nothing was stored");
    let wrong_size = upload(b"123456", "image/png", put.url.clone())
        .await
        .unwrap();
    assert!(wrong_size.status().is_success(), "{}", wrong_size.status());
    assert_eq!(
        s.head(&key).await.unwrap().map(|m| m.size),
        Some(6),
        "a presigned PUT cannot bind the size: head shows what was stored"
    );

    let ok = upload(b"12345", "image/png", put.url.clone())
        .await
        .unwrap();
    assert!(
        ok.status().is_success(),
        "{}: {}",
        ok.status(),
        ok.text().await.unwrap_or_default()
    );
    let meta = s.head(&key).await.unwrap().unwrap();
    assert_eq!(meta.size, 5);
    assert_eq!(meta.content_type.as_deref(), Some("image/png"));

    let get = s.presign_get(&key, Duration::from_secs(60)).await.unwrap();
    let got = http.get(&get.url).send().await.unwrap();
    assert!(got.status().is_success(), "{}", got.status());
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"12345");

    s.delete(&key).await.unwrap();
    let gone = http.get(&get.url).send().await.unwrap();
    assert_eq!(gone.status(), reqwest::StatusCode::NOT_FOUND);
}
