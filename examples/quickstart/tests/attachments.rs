//! Attachments end to end (protocol v1.2), on the quickstart's in-memory
//! storage and on a real S3 server (SeaweedFS's S3 gateway, started by
//! `scripts/services.sh`): upload, send, download by a participant (bytes
//! equal), refusal for a non-participant, oversized and mismatched uploads
//! refused at both steps, and a recalled attachment gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use quickstart::{Quickstart, Settings};
use serde_json::{json, Value};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

struct Life {
    qs: Quickstart,
    origin: String,
    http: reqwest::Client,
}

async fn start(settings: Settings) -> Life {
    let qs = Quickstart::start(&settings).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(im_transport::server::serve(
        listener,
        qs.router.clone(),
        qs.shutdown.clone(),
    ));
    Life {
        qs,
        origin: format!("http://{addr}"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

impl Life {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.origin))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let body = (!body.is_null()).then_some(body);
        self.call(reqwest::Method::POST, path, token, body).await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    async fn user(&self, name: &str) -> (String, String) {
        let creds = json!({"username": name, "password": "correct horse"});
        let url = format!("{}/api/v1", self.origin);
        let r = self
            .http
            .post(format!("{url}/users"))
            .json(&creds)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let v: Value = self
            .http
            .post(format!("{url}/sessions"))
            .json(&creds)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            v["user_id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    /// An absolute URL for a presigned one (the in-memory storage's are
    /// relative to this server).
    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.origin)
        } else {
            url.to_owned()
        }
    }

    /// PUTs `bytes` with the presigned request of an upload answer.
    async fn put(&self, upload: &Value, bytes: Vec<u8>) -> u16 {
        let mut req = self
            .http
            .put(self.absolute(upload["url"].as_str().unwrap()));
        for (k, v) in upload["headers"].as_object().unwrap() {
            // reqwest sets content-length from the body itself.
            if k != "content-length" {
                req = req.header(k.as_str(), v.as_str().unwrap());
            }
        }
        req.body(bytes).send().await.unwrap().status().as_u16()
    }
}

/// Asserts an error answer: its status and code.
fn refused(status: u16, v: &Value, want: u16, code: &str) {
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (want, Some(code)),
        "{v}"
    );
}

fn png(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

async fn attachments_flow(settings: Settings) {
    let life = start(settings).await;
    let (_alice, alice) = life.user("alice").await;
    let (bob_id, bob) = life.user("bob").await;
    let (_eve, eve) = life.user("eve").await;
    let to_bob = json!({"user": bob_id});

    // Refused at the first step: too large for an image, a type images may
    // not have, a conversation the caller is not in.
    let (s, v) = life.post("/uploads", &alice, json!({"to": to_bob, "name": "big.png", "size": 64u64 << 20, "mime": "image/png", "kind": "image"}))
        .await;
    refused(s, &v, 413, "resource_exhausted");
    let (s, v) = life.post("/uploads", &alice, json!({"to": to_bob, "name": "x.html", "size": 10, "mime": "text/html", "kind": "image"}))
        .await;
    refused(s, &v, 400, "invalid_argument");

    // Upload: granted for exactly 3,000 bytes of image/png.
    let bytes = png(3000);
    let (s, granted) = life
        .post(
            "/uploads",
            &alice,
            json!({"to": to_bob, "name": "cat photo.png", "size": 3000, "mime": "image/png"}),
        )
        .await;
    assert_eq!(s, 201, "{granted}");
    assert_eq!(granted["kind"], "image");
    let key = granted["key"].as_str().unwrap().to_owned();
    assert_eq!(granted["upload"]["method"], "PUT");
    // Another size than granted: the in-memory storage refuses the upload
    // itself; S3 cannot bind the size to a presigned PUT, so there the send
    // is what refuses it (the stored object is not what the body says).
    let wrong = life.put(&granted["upload"], png(3001)).await;
    if (200..300).contains(&wrong) {
        let (s, v) = life.post("/messages", &alice, json!({"client_msg_id": "a0", "to": to_bob, "kind": "image", "body": granted["body"]}))
            .await;
        refused(s, &v, 400, "invalid_argument");
    } else {
        assert!((400..500).contains(&wrong), "{wrong}");
    }
    let ok = life.put(&granted["upload"], bytes.clone()).await;
    assert!((200..300).contains(&ok), "upload: {ok}");

    // Refused at the send: a body that lies about the size, a key of
    // someone else's upload, a key never uploaded.
    let mut body = granted["body"].clone();
    body["size"] = json!(2999);
    let send = |to: Value, body: Value, id: &str| json!({"client_msg_id": id, "to": to, "kind": "image", "body": body});
    let (s, v) = life
        .post("/messages", &alice, send(to_bob.clone(), body, "a1"))
        .await;
    refused(s, &v, 400, "invalid_argument");
    let (s, v) = life
        .post(
            "/messages",
            &eve,
            send(to_bob.clone(), granted["body"].clone(), "e1"),
        )
        .await;
    refused(s, &v, 403, "permission_denied");
    let (s, never) = life
        .post(
            "/uploads",
            &alice,
            json!({"to": to_bob, "name": "n.pdf", "size": 9, "mime": "application/pdf"}),
        )
        .await;
    assert_eq!((s, never["kind"].as_str()), (201, Some("file")), "{never}");
    let (s, v) = life
        .post(
            "/messages",
            &alice,
            json!({"client_msg_id": "a2", "to": to_bob, "kind": "file", "body": never["body"]}),
        )
        .await;
    refused(s, &v, 400, "invalid_argument");

    // The send, then the download by the other participant: bytes equal.
    let mut body = granted["body"].clone();
    body["width"] = json!(40);
    body["height"] = json!(75);
    let (s, sent) = life
        .post("/messages", &alice, send(to_bob.clone(), body, "a3"))
        .await;
    assert_eq!(s, 200, "{sent}");
    let file = format!("/files/{key}");
    let (s, link) = life.get(&format!("{file}?redirect=false"), &bob).await;
    assert_eq!(s, 200, "{link}");
    let got = life
        .http
        .get(life.absolute(link["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert!(got.status().is_success(), "{}", got.status());
    assert_eq!(
        got.bytes().await.unwrap().as_ref(),
        &bytes[..],
        "bob gets alice's bytes"
    );
    let redirect = life
        .http
        .get(format!("{}/api/v1{file}", life.origin))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 302);
    assert!(redirect.headers().contains_key("location"));
    // Not a participant: refused, whatever the key.
    let (s, v) = life.get(&file, &eve).await;
    refused(s, &v, 403, "permission_denied");
    let (s, _) = life.get("/files/not/a/key", &bob).await;
    assert_eq!(s, 403);

    // Recalled: the object is deleted (the default policy).
    let msg_id = sent["msg_id"].as_str().unwrap();
    let conversation = sent["conversation_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, h) = life
            .get(&format!("/conversations/{conversation}/messages"), &alice)
            .await;
        if h["messages"].as_array().is_some_and(|m| !m.is_empty()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = life
        .post(&format!("/messages/{msg_id}/recall"), &alice, Value::Null)
        .await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = life.get(&format!("{file}?redirect=false"), &bob).await;
    refused(s, &v, 404, "not_found");

    // A group: members may upload and download, others may not.
    let (s, g) = life.post("/groups", &alice, json!({"name": "Team"})).await;
    assert_eq!(s, 201, "{g}");
    let group = g["group_id"].as_str().unwrap();
    let to_group = json!({"group": group});
    let (s, _) = life
        .post(
            "/uploads",
            &eve,
            json!({"to": to_group, "name": "a.txt", "size": 3, "mime": "text/plain"}),
        )
        .await;
    assert_eq!(s, 403, "a non-member cannot upload into the group");
    let (s, up) = life
        .post(
            "/uploads",
            &alice,
            json!({"to": to_group, "name": "notes.txt", "size": 3, "mime": "text/plain"}),
        )
        .await;
    assert_eq!(s, 201, "{up}");
    assert!((200..300).contains(&life.put(&up["upload"], b"abc".to_vec()).await));
    let (s, v) = life
        .post(
            "/messages",
            &alice,
            json!({"client_msg_id": "g1", "to": to_group, "kind": "file", "body": up["body"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let gfile = format!("/files/{}?redirect=false", up["key"].as_str().unwrap());
    let (s, _) = life.get(&gfile, &bob).await;
    assert_eq!(s, 403, "bob is not a member yet");
    let (s, _) = life.get(&gfile, &alice).await;
    assert_eq!(s, 200);

    life.qs.shutdown.cancel();
    life.qs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_in_memory() {
    let mut settings = Settings::new(SECRET);
    settings.web_page = false;
    attachments_flow(settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_on_s3() {
    let mut settings = Settings::new(SECRET);
    settings.web_page = false;
    let config = im_store::s3::S3Config::from_env();
    let probe = im_store::s3::S3ObjectStorage::new(config.clone()).unwrap();
    if let Err(e) = probe.check().await {
        panic!(
            "the S3 server is not reachable at {} ({e}): `source scripts/services.sh` starts \
             SeaweedFS's S3 gateway on 127.0.0.1:8333",
            config.endpoint
        );
    }
    settings.attachments_s3 = Some(config);
    attachments_flow(settings).await;
}
