//! [`ImClient`]: a logged-in user and the HTTP API (`/api/v1`) calls it makes.

use std::sync::Arc;

use im_core::id::{ConversationId, GroupId, MessageId, UserId};
use im_core::logic::{ContactView, ReadCursor, RequestView};
use im_core::model::{Message, Profile};
use im_core::ports::{Direction, RequestOutcome};
use im_core::ErrorCode;
use tokio_rustls::rustls;

use crate::connection::Connection;
use crate::error::ClientError;
use crate::options::ClientOptions;

/// A logged-in user.
#[derive(Clone)]
pub struct ImClient {
    http: reqwest::Client,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    api: String,
    /// The user.
    pub user_id: UserId,
    /// The bearer token.
    pub token: String,
    /// The WebSocket URL of the first connection (else asked from
    /// `GET /api/v1/connect`); reconnects fall back to the API when it is down.
    pub ws_url: Option<String>,
}

impl std::fmt::Debug for ImClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never in a log line.
        f.debug_struct("ImClient")
            .field("api", &self.api)
            .field("user_id", &self.user_id)
            .field("token", &"<redacted>")
            .field("ws_url", &self.ws_url)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}
#[derive(serde::Deserialize)]
struct ErrorInner {
    code: String,
    message: String,
}

async fn check(res: reqwest::Response) -> Result<serde_json::Value, ClientError> {
    let status = res.status();
    let text = res.text().await?;
    if status.is_success() {
        return Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null));
    }
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => (
            ErrorCode::from_wire(&b.error.code).unwrap_or(ErrorCode::Internal),
            b.error.message,
        ),
        Err(_) => (ErrorCode::Internal, format!("HTTP {status}")),
    };
    Err(ClientError::Server { code, message })
}

/// Decodes an answer into its typed form.
fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Ws(format!("malformed answer: {e}")))
}

/// Decodes `{"<items>": [...], "next_cursor": ...}`.
fn page<T: serde::de::DeserializeOwned>(
    mut v: serde_json::Value,
    items: &str,
) -> Result<Page<T>, ClientError> {
    let next_cursor = v["next_cursor"].as_str().map(str::to_owned);
    Ok(Page {
        items: decode(v[items].take())?,
        next_cursor,
    })
}

/// One page of a paged list (search, contacts, requests, blocks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The page's entries.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

fn field<T: std::str::FromStr>(v: &serde_json::Value, name: &str) -> Result<T, ClientError> {
    v[name]
        .as_str()
        .map(str::to_owned)
        .or_else(|| v[name].as_i64().map(|n| n.to_string()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Ws(format!("malformed answer: no {name}")))
}

impl ImClient {
    /// Registers an account (`api` is the server base, e.g.
    /// `http://127.0.0.1:8080`) and answers its user id. A taken username is
    /// [`ClientError::Server`] with [`ErrorCode::AlreadyExists`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), im_client::ClientError> {
    /// use im_client::ImClient;
    /// let id = ImClient::register("http://127.0.0.1:8080", "alice", "password123").await?;
    /// println!("alice is user {id}");
    /// # Ok(()) }
    /// ```
    pub async fn register(
        api: &str,
        username: &str,
        password: &str,
    ) -> Result<UserId, ClientError> {
        Self::register_with(&ClientOptions::default(), api, username, password).await
    }

    /// Registers an account over `options` (e.g. HTTPS).
    pub async fn register_with(
        options: &ClientOptions,
        api: &str,
        username: &str,
        password: &str,
    ) -> Result<UserId, ClientError> {
        Self::register_account(options, api, username, password, None).await
    }

    /// Registers an account with the name others see (v1.2; 1–64
    /// characters, not only whitespace). Without one, people see the username.
    pub async fn register_named(
        options: &ClientOptions,
        api: &str,
        username: &str,
        password: &str,
        display_name: &str,
    ) -> Result<UserId, ClientError> {
        Self::register_account(options, api, username, password, Some(display_name)).await
    }

    async fn register_account(
        options: &ClientOptions,
        api: &str,
        username: &str,
        password: &str,
        display_name: Option<&str>,
    ) -> Result<UserId, ClientError> {
        let http = options.http_client()?;
        let mut body = serde_json::json!({"username": username, "password": password});
        if let Some(name) = display_name {
            body["display_name"] = name.into();
        }
        let v = check(
            http.post(format!("{}/api/v1/users", api.trim_end_matches('/')))
                .json(&body)
                .send()
                .await?,
        )
        .await?;
        field(&v, "user_id")
    }

    /// A client for a token issued elsewhere — e.g. the session token of
    /// an application that embeds im with its own login (a custom
    /// `Authenticator` on the server). No request is made until the first
    /// call; `api` is where im's API is served (with any mount prefix, e.g.
    /// `https://app.example.com/chat`).
    ///
    /// ```
    /// use im_client::{ClientOptions, ImClient};
    /// use im_core::id::UserId;
    /// let alice = ImClient::with_token(&ClientOptions::default(), "http://127.0.0.1:3000/chat", UserId(1), "a-session-token")?;
    /// assert_eq!(alice.user_id, UserId(1));
    /// # Ok::<(), im_client::ClientError>(())
    /// ```
    pub fn with_token(
        options: &ClientOptions,
        api: &str,
        user_id: UserId,
        token: impl Into<String>,
    ) -> Result<ImClient, ClientError> {
        Ok(ImClient {
            http: options.http_client()?,
            tls: options.tls.clone(),
            api: api.trim_end_matches('/').to_owned(),
            user_id,
            token: token.into(),
            ws_url: None,
        })
    }

    /// Logs in with a username and password: the answer holds the user id
    /// and bearer token every later call uses. Wrong credentials are
    /// [`ClientError::Server`] with [`ErrorCode::Unauthenticated`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), im_client::ClientError> {
    /// use im_client::ImClient;
    /// let alice = ImClient::login("http://127.0.0.1:8080", "alice", "password123").await?;
    /// println!("logged in as {}", alice.user_id);
    /// # Ok(()) }
    /// ```
    pub async fn login(api: &str, username: &str, password: &str) -> Result<ImClient, ClientError> {
        Self::login_with(&ClientOptions::default(), api, username, password).await
    }

    /// Logs in over `options` (e.g. HTTPS; the WebSocket then speaks WSS
    /// with the same trust).
    pub async fn login_with(
        options: &ClientOptions,
        api: &str,
        username: &str,
        password: &str,
    ) -> Result<ImClient, ClientError> {
        let http = options.http_client()?;
        let api = api.trim_end_matches('/').to_owned();
        let v = check(
            http.post(format!("{api}/api/v1/sessions"))
                .json(&serde_json::json!({"username": username, "password": password}))
                .send()
                .await?,
        )
        .await?;
        Ok(ImClient {
            user_id: field(&v, "user_id")?,
            token: v["token"].as_str().unwrap_or_default().to_owned(),
            http,
            tls: options.tls.clone(),
            api,
            ws_url: None,
        })
    }

    /// Logs out (extension, `DELETE /api/v1/sessions`): the token is revoked
    /// and its connections end with [`ClientError::Kicked`] (`"logged out"`).
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.call(reqwest::Method::DELETE, "/sessions", None)
            .await
            .map(|_| ())
    }

    /// Calls the HTTP API with the bearer token; `body` None for GET.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        check(req.send().await?).await
    }

    /// Calls the HTTP API with the bearer token and a query string (GET).
    async fn get_query(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<serde_json::Value, ClientError> {
        let req = self
            .http
            .get(format!("{}/api/v1{path}", self.api))
            .bearer_auth(&self.token)
            .query(query);
        check(req.send().await?).await
    }

    /// `?limit=&cursor=` of a paged list (absent ones are left out).
    fn paging(limit: Option<u32>, cursor: Option<&str>) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = cursor.filter(|c| !c.is_empty()) {
            q.push(("cursor", c.to_owned()));
        }
        q
    }

    /// This user's own profile (`GET /users/me`, v1.2).
    pub async fn me(&self) -> Result<Profile, ClientError> {
        decode(self.call(reqwest::Method::GET, "/users/me", None).await?)
    }

    /// A user's public profile (`GET /users/{id}`, v1.2); `not_found` for an
    /// unknown user.
    pub async fn profile(&self, user: UserId) -> Result<Profile, ClientError> {
        decode(
            self.call(reqwest::Method::GET, &format!("/users/{user}"), None)
                .await?,
        )
    }

    /// Sets this user's display name and avatar (`PUT /users/me/profile`,
    /// v1.2). Both are replaced: `None` clears one (a cleared display name
    /// shows the username). Answers the new profile.
    pub async fn set_profile(
        &self,
        display_name: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<Profile, ClientError> {
        let body = serde_json::json!({"display_name": display_name, "avatar_url": avatar_url});
        decode(
            self.call(reqwest::Method::PUT, "/users/me/profile", Some(body))
                .await?,
        )
    }

    /// Profiles of users by id and by exact username (`POST /users/lookup`,
    /// v1.2; together at most 200). Unknown users are left out.
    pub async fn lookup(
        &self,
        user_ids: &[UserId],
        usernames: &[&str],
    ) -> Result<Vec<Profile>, ClientError> {
        let body = serde_json::json!({"user_ids": user_ids, "usernames": usernames});
        let mut v = self
            .call(reqwest::Method::POST, "/users/lookup", Some(body))
            .await?;
        decode(v["users"].take())
    }

    /// Users whose username starts with `prefix` (`GET /users/search`,
    /// v1.2): at least 2 characters, pages of at most 20, ordered by
    /// username. Rate-limited: `resource_exhausted` when searching too often.
    pub async fn search_users(
        &self,
        prefix: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Profile>, ClientError> {
        let mut q = Self::paging(limit, cursor);
        q.push(("prefix", prefix.to_owned()));
        page(self.get_query("/users/search", &q).await?, "users")
    }

    /// This user's contacts (`GET /contacts`, v1.2), ordered by user id.
    pub async fn contacts(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<ContactView>, ClientError> {
        let q = Self::paging(limit, cursor);
        page(self.get_query("/contacts", &q).await?, "contacts")
    }

    /// Asks `user` to become contacts (`POST /contacts/requests`, v1.2),
    /// with an optional note (at most 200 characters). `Pending` when asked
    /// (they get a `contact` event), `Accepted` when they had asked first,
    /// `AlreadyContacts` when nothing changed.
    pub async fn request_contact(
        &self,
        user: UserId,
        message: Option<&str>,
    ) -> Result<RequestOutcome, ClientError> {
        let mut body = serde_json::json!({"user_id": user});
        if let Some(m) = message {
            body["message"] = m.into();
        }
        let mut v = self
            .call(reqwest::Method::POST, "/contacts/requests", Some(body))
            .await?;
        decode(v["status"].take())
    }

    /// This user's pending contact requests (`GET /contacts/requests`,
    /// v1.2): those to it (`Incoming`) or those it made (`Outgoing`).
    pub async fn contact_requests(
        &self,
        direction: Direction,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<RequestView>, ClientError> {
        let mut q = Self::paging(limit, cursor);
        let d = match direction {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        };
        q.push(("direction", d.to_owned()));
        page(self.get_query("/contacts/requests", &q).await?, "requests")
    }

    /// Accepts `user`'s contact request (`POST
    /// /contacts/requests/{id}/accept`, v1.2); `not_found` without one.
    pub async fn accept_contact(&self, user: UserId) -> Result<(), ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/contacts/requests/{user}/accept"),
            None,
        )
        .await
        .map(drop)
    }

    /// Declines `user`'s contact request (`POST
    /// /contacts/requests/{id}/decline`, v1.2); `not_found` without one.
    pub async fn decline_contact(&self, user: UserId) -> Result<(), ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/contacts/requests/{user}/decline"),
            None,
        )
        .await
        .map(drop)
    }

    /// Withdraws this user's contact request to `user` (`DELETE
    /// /contacts/requests/{id}`, v1.2); `not_found` without one.
    pub async fn cancel_contact_request(&self, user: UserId) -> Result<(), ClientError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/contacts/requests/{user}"),
            None,
        )
        .await
        .map(drop)
    }

    /// Ends the contact relation with `user`, for both sides (`DELETE
    /// /contacts/{id}`, v1.2); `not_found` when not contacts.
    pub async fn remove_contact(&self, user: UserId) -> Result<(), ClientError> {
        self.call(reqwest::Method::DELETE, &format!("/contacts/{user}"), None)
            .await
            .map(drop)
    }

    /// The users this user blocks (`GET /blocks`, v1.2).
    pub async fn blocked(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Profile>, ClientError> {
        let q = Self::paging(limit, cursor);
        page(self.get_query("/blocks", &q).await?, "users")
    }

    /// Blocks `user` (`PUT /blocks/{id}`, v1.2; idempotent): their 1:1
    /// messages and contact requests are refused with `permission_denied`,
    /// and a contact relation ends. They are not told.
    pub async fn block(&self, user: UserId) -> Result<(), ClientError> {
        self.call(reqwest::Method::PUT, &format!("/blocks/{user}"), None)
            .await
            .map(drop)
    }

    /// Unblocks `user` (`DELETE /blocks/{id}`, v1.2; idempotent).
    pub async fn unblock(&self, user: UserId) -> Result<(), ClientError> {
        self.call(reqwest::Method::DELETE, &format!("/blocks/{user}"), None)
            .await
            .map(drop)
    }

    /// The participants' read cursors of a conversation (`GET
    /// /conversations/{id}/reads`, v1.2): both parties of a 1:1, or a
    /// group's members (at most 500).
    pub async fn reads(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<ReadCursor>, ClientError> {
        let mut v = self
            .call(
                reqwest::Method::GET,
                &format!("/conversations/{conversation}/reads"),
                None,
            )
            .await?;
        decode(v["reads"].take())
    }

    /// Edits one of this user's text messages (`PATCH /messages/{id}`,
    /// v1.2; within 24 h of sending). Answers the message with its new body
    /// and `edited_at`; every participant gets an [`Event::Edited`](crate::Event::Edited).
    pub async fn edit_message(
        &self,
        msg_id: MessageId,
        body: &str,
    ) -> Result<Message, ClientError> {
        decode(
            self.call(
                reqwest::Method::PATCH,
                &format!("/messages/{msg_id}"),
                Some(serde_json::json!({ "body": body })),
            )
            .await?,
        )
    }

    /// Whether members added to `group` from now on see the history from
    /// before they joined (`PUT /groups/{id}/history`, v1.2; owner or admin).
    /// By default they see only messages after their join.
    pub async fn set_history_visible(
        &self,
        group: GroupId,
        visible: bool,
    ) -> Result<(), ClientError> {
        self.call(
            reqwest::Method::PUT,
            &format!("/groups/{group}/history"),
            Some(serde_json::json!({ "visible": visible })),
        )
        .await
        .map(drop)
    }

    async fn ws_url(&self) -> Result<String, ClientError> {
        if let Some(u) = &self.ws_url {
            return Ok(u.clone());
        }
        self.discover_ws_url().await
    }

    /// Asks `GET /api/v1/connect` for a live connect node.
    pub async fn discover_ws_url(&self) -> Result<String, ClientError> {
        let v = self.call(reqwest::Method::GET, "/connect", None).await?;
        v["ws_url"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Ws("no ws_url".into()))
    }

    /// Opens a connection (reconnecting by itself until dropped): the
    /// WebSocket URL is the `ws_url` field when set, else the one `GET
    /// /api/v1/connect` answers.
    ///
    /// ```no_run
    /// # async fn demo(alice: im_client::ImClient) -> Result<(), im_client::ClientError> {
    /// let mut conn = alice.connect().await?;
    /// while let Some(m) = conn.next_message().await {
    ///     println!("{} in {}: {}", m.from, m.conversation_id, m.body);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let url = self.ws_url().await?;
        Connection::open(self.clone(), url).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn pages_decode_items_and_the_cursor() {
        let v = serde_json::json!({
            "users": [{"user_id": "7", "username": "al", "display_name": "Al"}],
            "next_cursor": "abc"
        });
        let p: Page<Profile> = page(v, "users").unwrap();
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.items[0].display_name, "Al");
        assert_eq!(p.next_cursor.as_deref(), Some("abc"));
        let end: Page<Profile> = page(
            serde_json::json!({"users": [], "next_cursor": null}),
            "users",
        )
        .unwrap();
        assert_eq!(end.next_cursor, None);
        let v = serde_json::json!({"requests": [{"user": {"user_id": "7", "username": "al", "display_name": "al"}, "direction": "incoming", "ts": 1}]});
        let r: Page<RequestView> = page(v, "requests").unwrap();
        assert_eq!(r.items[0].direction, Direction::Incoming);
    }
}
