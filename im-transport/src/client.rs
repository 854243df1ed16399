//! A Rust client of the public protocol: log in over HTTP, hold a WebSocket
//! with automatic reconnects, send with automatic `client_msg_id`s retried
//! until acked, and receive messages without duplicates, in seq order per
//! conversation, with gaps closed by `sync`. A connection the server replaces
//! (`kicked`, close 4001, by a multi-device policy) ends for good instead of
//! reconnecting, so two clients never take turns kicking each other.
//!
//! ```no_run
//! # async fn demo() -> Result<(), im_transport::client::ClientError> {
//! use im_transport::client::ImClient;
//! use im_core::model::Target;
//! let alice = ImClient::login("http://127.0.0.1:8080", "alice", "password123").await?;
//! let mut conn = alice.connect().await?;
//! let ack = conn.send(Target::User("42".parse().unwrap()), "hello".into()).await?;
//! println!("sent seq {}", ack.seq);
//! while let Some(m) = conn.next_message().await {
//!     println!("{}: {}", m.from, m.body);
//! }
//! # Ok(()) }
//! ```
//!
//! The people around a conversation (protocol v1.2) are typed methods of
//! [`ImClient`]: profiles ([`ImClient::me`], [`ImClient::lookup`],
//! [`ImClient::search_users`]), contacts ([`ImClient::request_contact`] and
//! the rest), blocks, read cursors and edits. Frames other than messages
//! (`edited`, `contact`, `read`, `recalled`, errors without a send) come as
//! [`Event`]s through [`Connection::next_event`] or [`Connection::take_events`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use im_core::id::{ConversationId, GroupId, MessageId, UserId};
use im_core::logic::{ContactView, ReadCursor, RequestView};
use im_core::model::{ContactEvent, Message, MessageKind, Profile, Target};
use im_core::ports::{Direction, RequestOutcome};
use im_core::protocol::{ClientFrame, SendAck, SendRequest, ServerFrame};
use im_core::ErrorCode;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with a protocol error.
    #[error("{code}: {message}")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The message.
        message: String,
    },
    /// HTTP transport failure.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// WebSocket failure.
    #[error("websocket: {0}")]
    Ws(String),
    /// The connection task ended.
    #[error("connection closed")]
    Closed,
    /// The server replaced this session (`kicked`, close 4001); the
    /// connection does not reconnect.
    #[error("kicked: {0}")]
    Kicked(String),
    /// No ack within the deadline.
    #[error("timed out")]
    Timeout,
}

/// A logged-in user.
#[derive(Clone)]
pub struct ImClient {
    http: reqwest::Client,
    tls: Option<Arc<rustls::ClientConfig>>,
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

/// How a client reaches the server: plain HTTP and WS, or HTTPS and WSS
/// trusting given CA certificates.
///
/// ```
/// use im_transport::client::ClientOptions;
/// let plain = ClientOptions::default();
/// assert!(!plain.is_tls());
/// ```
#[derive(Clone, Default)]
pub struct ClientOptions {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ClientOptions {
    /// Trusts `tls`'s CA certificates for `https://` and `wss://` URLs.
    pub fn with_tls(tls: &crate::tls::ClientTls) -> Result<Self, ClientError> {
        let config = tls
            .rustls_config()
            .map_err(|e| ClientError::Ws(format!("TLS: {e}")))?;
        Ok(ClientOptions { tls: Some(config) })
    }

    /// Whether these options speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The rustls configuration of these options, when they speak TLS.
    pub fn rustls_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }

    /// An HTTP client with these options' trust.
    pub fn http_client(&self) -> Result<reqwest::Client, ClientError> {
        match &self.tls {
            None => Ok(reqwest::Client::new()),
            Some(config) => Ok(reqwest::Client::builder()
                .use_preconfigured_tls((**config).clone())
                .build()?),
        }
    }
}

impl ImClient {
    /// Registers an account (`api` is the server base, e.g. `http://127.0.0.1:8080`).
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

    /// Logs in.
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
    /// and `edited_at`; every participant gets an [`Event::Edited`].
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

    /// Opens a connection (reconnecting by itself until dropped).
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let url = self.ws_url().await?;
        let socket = open(&url, &self.token, self.tls.clone()).await?;
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (msg_tx, msg_rx) = mpsc::channel(65_536);
        let (event_tx, event_rx) = mpsc::channel(EVENT_BUFFER);
        let driver = Driver {
            client: self.clone(),
            url,
            cmds: cmd_rx,
            out: msg_tx,
            events: event_tx,
            pending: HashMap::new(),
            convs: HashMap::new(),
        };
        tokio::spawn(driver.run(socket));
        Ok(Connection {
            cmds: cmd_tx,
            messages: msg_rx,
            events: Some(event_rx),
            next_id: rand::random::<u64>() >> 16,
            ack_timeout: Duration::from_secs(30),
        })
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(
    url: &str,
    token: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Socket, ClientError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| ClientError::Ws(e.to_string()))?;
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| ClientError::Ws("bad token".into()))?;
    req.headers_mut().insert("authorization", value);
    let connector = tls.map(tokio_tungstenite::Connector::Rustls);
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(req, None, true, connector)
        .await
        .map_err(|e| ClientError::Ws(e.to_string()))?;
    Ok(ws)
}

enum Cmd {
    Send(SendRequest, oneshot::Sender<Result<SendAck, ClientError>>),
    Edit(MessageId, String),
    AppState(im_core::protocol::AppState),
    Close,
}

/// How many [`Event`]s a connection holds for its reader; past that, new
/// ones are dropped (messages never are).
pub const EVENT_BUFFER: usize = 4096;

/// Something the server told this connection besides a message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A message was edited by its sender (v1.2 `edited` frame).
    Edited {
        /// The conversation.
        conversation_id: ConversationId,
        /// The message.
        msg_id: MessageId,
        /// Its seq.
        seq: u64,
        /// The new body.
        body: serde_json::Value,
        /// When, Unix ms.
        edited_at: i64,
        /// Who edited it (its sender).
        by: UserId,
    },
    /// A contact relation of this user changed (v1.2 `contact` frame):
    /// `from` acted on `to` (one of the two is this user).
    Contact {
        /// What happened.
        event: ContactEvent,
        /// Who acted.
        from: UserId,
        /// The other party.
        to: UserId,
    },
    /// A participant's read cursor advanced (v1.1 `read` frame), this
    /// user's own included (read on another device).
    Read {
        /// The conversation.
        conversation_id: ConversationId,
        /// Who read.
        user_id: UserId,
        /// Up to which seq.
        seq: u64,
    },
    /// A message was recalled (v1.1 `recalled` frame).
    Recalled {
        /// The conversation.
        conversation_id: ConversationId,
        /// The message.
        msg_id: MessageId,
        /// Who recalled it.
        by: UserId,
    },
    /// The server refused a frame that was not a send, e.g. an
    /// [`Connection::edit`] (`error` frame without a `client_msg_id`).
    Error {
        /// The error code.
        code: ErrorCode,
        /// The message.
        message: String,
    },
}

impl Event {
    /// The event a server frame carries (`None` for messages, acks, sync
    /// answers and the frames the client handles itself).
    fn from_frame(frame: ServerFrame) -> Option<Event> {
        Some(match frame {
            ServerFrame::Edited {
                conversation_id,
                msg_id,
                seq,
                body,
                edited_at,
                by,
            } => Event::Edited {
                conversation_id,
                msg_id,
                seq,
                body,
                edited_at,
                by,
            },
            ServerFrame::Contact { event, from, to } => Event::Contact { event, from, to },
            ServerFrame::Read {
                conversation_id,
                user_id,
                seq,
            } => Event::Read {
                conversation_id,
                user_id,
                seq,
            },
            ServerFrame::Recalled {
                conversation_id,
                msg_id,
                by,
            } => Event::Recalled {
                conversation_id,
                msg_id,
                by,
            },
            ServerFrame::Error {
                code,
                message,
                client_msg_id: None,
            } => Event::Error { code, message },
            _ => return None,
        })
    }
}

/// A live connection.
#[derive(Debug)]
pub struct Connection {
    cmds: mpsc::Sender<Cmd>,
    messages: mpsc::Receiver<Message>,
    events: Option<mpsc::Receiver<Event>>,
    next_id: u64,
    ack_timeout: Duration,
}

impl Connection {
    /// Sends a text message; retried (same `client_msg_id`) across reconnects until acked.
    pub async fn send(&mut self, to: Target, body: String) -> Result<SendAck, ClientError> {
        self.send_request(SendRequest {
            client_msg_id: String::new(),
            to,
            kind: MessageKind::Text,
            body: serde_json::Value::String(body),
            deliver_at: None,
            mentions: None,
        })
        .await
    }

    /// Sends any request; an empty `client_msg_id` gets a fresh one. A
    /// scheduled send (`deliver_at` ahead) is acked with seq 0 and comes
    /// back through [`Connection::next_message`] once it is delivered.
    pub async fn send_request(&mut self, mut req: SendRequest) -> Result<SendAck, ClientError> {
        if req.client_msg_id.is_empty() {
            self.next_id += 1;
            req.client_msg_id = format!("rs-{:x}", self.next_id);
        }
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Send(req, tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(self.ack_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// The next message of any conversation (including this user's own sends,
    /// once acked): no duplicates, in seq order per conversation (except a
    /// message older than the first one seen of its conversation, which is
    /// delivered late rather than dropped).
    pub async fn next_message(&mut self) -> Option<Message> {
        self.messages.recv().await
    }

    /// The next [`Event`] (an edit, a contact change, a read cursor, a
    /// recall, a refused non-send frame), in the order the server sent them.
    /// Events are buffered apart from messages (at most [`EVENT_BUFFER`];
    /// when the reader falls that far behind, newer ones are dropped).
    /// `None` once the connection ended, or after [`Connection::take_events`].
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.as_mut()?.recv().await
    }

    /// Takes the event stream out of the connection, to wait for events and
    /// messages at once (e.g. in `tokio::select!` with
    /// [`Connection::next_message`]). `None` when already taken.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<Event>> {
        self.events.take()
    }

    /// Edits the body of one of this user's text messages (v1.2 `edit`
    /// frame; within 24 h of sending). There is no answer: every
    /// participant's sessions, this one included, get an [`Event::Edited`];
    /// a refusal comes as an [`Event::Error`]. Sent after a reconnect when
    /// the socket is down. See also [`ImClient::edit_message`] (HTTP, with an
    /// answer).
    pub async fn edit(&mut self, msg_id: MessageId, body: String) -> Result<(), ClientError> {
        self.cmds
            .send(Cmd::Edit(msg_id, body))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Tells the server the app went to the background (no pushes to this
    /// session; the user is notified on their devices instead) or came
    /// back (pushes again, and what was missed is synced) — v1.2.
    pub async fn set_app_state(
        &mut self,
        state: im_core::protocol::AppState,
    ) -> Result<(), ClientError> {
        self.cmds
            .send(Cmd::AppState(state))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.cmds.send(Cmd::Close).await;
    }
}

#[derive(Default)]
struct ConvState {
    delivered: u64,
    buffered: BTreeMap<u64, Message>,
    syncing: bool,
    hole_since: Option<std::time::Instant>,
    /// Recently delivered message ids (bounded), for duplicates that arrive
    /// below the baseline.
    seen: std::collections::HashSet<u64>,
    seen_order: std::collections::VecDeque<u64>,
}

impl ConvState {
    /// Records a delivered id; false if it was delivered before.
    fn mark(&mut self, id: u64) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.seen_order.push_back(id);
        if self.seen_order.len() > 4096 {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

struct Driver {
    client: ImClient,
    url: String,
    cmds: mpsc::Receiver<Cmd>,
    out: mpsc::Sender<Message>,
    events: mpsc::Sender<Event>,
    pending: HashMap<String, (SendRequest, oneshot::Sender<Result<SendAck, ClientError>>)>,
    convs: HashMap<ConversationId, ConvState>,
}

impl Driver {
    async fn run(mut self, mut socket: Socket) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.session(&mut socket).await {
                Ok(()) => return,
                Err(ClientError::Kicked(reason)) => {
                    tracing::info!(%reason, "session replaced by the server; not reconnecting");
                    for (_, (_, reply)) in self.pending.drain() {
                        let _ = reply.send(Err(ClientError::Kicked(reason.clone())));
                    }
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "connection lost; reconnecting"),
            }
            let mut attempt = 0u32;
            loop {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                attempt += 1;
                // First the node we were on; if it stays down, ask the API
                // for a live one (discovery drops a dead node within its TTL).
                let url = if attempt <= 2 {
                    self.url.clone()
                } else {
                    self.client
                        .discover_ws_url()
                        .await
                        .unwrap_or_else(|_| self.url.clone())
                };
                if let Ok(s) = open(&url, &self.client.token, self.client.tls.clone()).await {
                    socket = s;
                    self.url = url;
                    backoff = Duration::from_millis(100);
                    break;
                }
                if self.out.is_closed() {
                    return;
                }
            }
        }
    }

    /// Runs one socket; Ok when the user closed, Err when the socket failed.
    async fn session(&mut self, ws: &mut Socket) -> Result<(), ClientError> {
        // After a (re)connect: resend what is un-acked, close gaps.
        let resend: Vec<SendRequest> = self.pending.values().map(|(r, _)| r.clone()).collect();
        for r in resend {
            send_frame(ws, &ClientFrame::Send(r)).await?;
        }
        let convs: Vec<(ConversationId, u64)> =
            self.convs.iter().map(|(c, s)| (*c, s.delivered)).collect();
        for (c, after) in convs {
            send_frame(
                ws,
                &ClientFrame::Sync {
                    conversation_id: c,
                    after_seq: after,
                    limit: Some(100),
                },
            )
            .await?;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        // Messages pushed while we were away may not be readable yet when the
        // first sync runs (persistence lags by up to a second): sync again.
        let mut resync_at = Some(tokio::time::Instant::now() + Duration::from_millis(1500));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if resync_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
                        resync_at = None;
                        let all: Vec<(ConversationId, u64)> =
                            self.convs.iter().map(|(c, s)| (*c, s.delivered)).collect();
                        for (c, after) in all {
                            send_frame(ws, &ClientFrame::Sync { conversation_id: c, after_seq: after, limit: Some(100) }).await?;
                        }
                    }
                    // Re-ask for conversations that still have a hole.
                    let holes: Vec<(ConversationId, u64)> = self
                        .convs
                        .iter_mut()
                        .filter(|(_, s)| !s.buffered.is_empty() && !s.syncing)
                        .map(|(c, s)| {
                            s.syncing = true;
                            (*c, s.delivered)
                        })
                        .collect();
                    for (c, after) in holes {
                        send_frame(ws, &ClientFrame::Sync { conversation_id: c, after_seq: after, limit: Some(100) }).await?;
                    }
                }
                cmd = self.cmds.recv() => match cmd {
                    Some(Cmd::Send(req, reply)) => {
                        send_frame(ws, &ClientFrame::Send(req.clone())).await?;
                        self.pending.insert(req.client_msg_id.clone(), (req, reply));
                    }
                    Some(Cmd::Edit(msg_id, body)) => {
                        let body = serde_json::Value::String(body);
                        send_frame(ws, &ClientFrame::Edit { msg_id, body }).await?;
                    }
                    Some(Cmd::AppState(state)) => {
                        send_frame(ws, &ClientFrame::AppState { state }).await?;
                        if state == im_core::protocol::AppState::Foreground {
                            // What was pushed while in the background was not: sync it.
                            let known: Vec<_> = self.convs.iter().map(|(c, s)| (*c, s.delivered)).collect();
                            for (c, after) in known {
                                send_frame(ws, &ClientFrame::Sync { conversation_id: c, after_seq: after, limit: Some(100) }).await?;
                            }
                        }
                    }
                    Some(Cmd::Close) | None => {
                        let _ = ws.close(None).await;
                        return Ok(());
                    }
                },
                incoming = ws.next() => match incoming {
                    Some(Ok(WsMessage::Text(t))) => {
                        if let Ok(frame) = ServerFrame::decode(t.as_bytes()) {
                            self.on_frame(ws, frame).await?;
                        }
                    }
                    Some(Ok(WsMessage::Close(Some(f)))) if u16::from(f.code) == im_core::connect::CLOSE_KICKED => {
                        return Err(ClientError::Kicked(f.reason.to_string()));
                    }
                    Some(Ok(WsMessage::Close(_))) | None => return Err(ClientError::Closed),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(ClientError::Ws(e.to_string())),
                },
            }
        }
    }

    async fn on_frame(&mut self, ws: &mut Socket, frame: ServerFrame) -> Result<(), ClientError> {
        match frame {
            ServerFrame::SendAck(ack) => {
                if let Some((req, reply)) = self.pending.remove(&ack.client_msg_id) {
                    if ack.deliver_at.is_some() {
                        // Scheduled: held without a seq. It comes back as a
                        // `message` (to every session of ours) when delivered.
                        let _ = reply.send(Ok(ack));
                        return Ok(());
                    }
                    // Our own message joins the conversation's timeline too, so
                    // its seq is not mistaken for a gap.
                    let own = Message {
                        msg_id: ack.msg_id,
                        conversation_id: ack.conversation_id,
                        seq: ack.seq,
                        from: self.client.user_id,
                        to: req.to,
                        kind: req.kind,
                        body: req.body,
                        client_msg_id: req.client_msg_id,
                        ts: ack.ts,
                        recalled: false,
                        edited_at: None,
                        mentions: req.mentions,
                    };
                    let _ = reply.send(Ok(ack));
                    self.on_message(ws, own).await?;
                }
            }
            // Unavailable: keep it pending and resend on the next connection.
            ServerFrame::Error {
                code,
                message,
                client_msg_id: Some(id),
            } if code != ErrorCode::Unavailable => {
                if let Some((_, reply)) = self.pending.remove(&id) {
                    let _ = reply.send(Err(ClientError::Server { code, message }));
                }
            }
            ServerFrame::Message(m) => self.on_message(ws, m).await?,
            ServerFrame::Kicked { reason } => return Err(ClientError::Kicked(reason)),
            other @ (ServerFrame::Edited { .. }
            | ServerFrame::Contact { .. }
            | ServerFrame::Read { .. }
            | ServerFrame::Recalled { .. }
            | ServerFrame::Error { .. }) => {
                if let Some(event) = Event::from_frame(other) {
                    // Never stall messages behind a reader that ignores events.
                    if let Err(mpsc::error::TrySendError::Full(e)) = self.events.try_send(event) {
                        tracing::debug!(event = ?e, "event buffer full; dropped");
                    }
                }
            }
            ServerFrame::SyncResult {
                conversation_id,
                messages,
                has_more,
            } => {
                if let Some(s) = self.convs.get_mut(&conversation_id) {
                    s.syncing = false;
                }
                for m in messages {
                    self.on_message(ws, m).await?;
                }
                if !has_more {
                    // A seq the store still lacks 2 s after we first missed it
                    // (e.g. skipped when an enqueue failed) will never come:
                    // move past the hole. Before that, the tick re-syncs.
                    let stale = self.convs.get_mut(&conversation_id).is_some_and(|s| {
                        if s.buffered.is_empty() {
                            s.hole_since = None;
                            return false;
                        }
                        let since = *s.hole_since.get_or_insert_with(std::time::Instant::now);
                        since.elapsed() >= Duration::from_secs(2)
                    });
                    if stale {
                        self.skip_hole(conversation_id).await?;
                    }
                }
                if has_more {
                    let after = self.convs.get(&conversation_id).map_or(0, |s| s.delivered);
                    send_frame(
                        ws,
                        &ClientFrame::Sync {
                            conversation_id,
                            after_seq: after,
                            limit: Some(100),
                        },
                    )
                    .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn skip_hole(&mut self, conv: ConversationId) -> Result<(), ClientError> {
        let Some(state) = self.convs.get_mut(&conv) else {
            return Ok(());
        };
        let mut ready = Vec::new();
        state.hole_since = None;
        while let Some((&first, _)) = state.buffered.iter().next() {
            state.delivered = first - 1;
            while let Some(next) = state.buffered.remove(&(state.delivered + 1)) {
                state.delivered += 1;
                if state.mark(next.msg_id.0) {
                    ready.push(next);
                }
            }
        }
        for m in ready {
            self.out.send(m).await.map_err(|_| ClientError::Closed)?;
        }
        Ok(())
    }

    async fn on_message(&mut self, ws: &mut Socket, m: Message) -> Result<(), ClientError> {
        let conv = m.conversation_id;
        let state = self.convs.entry(conv).or_insert_with(|| ConvState {
            // The first message seen of a conversation sets the baseline.
            delivered: m.seq.saturating_sub(1),
            ..ConvState::default()
        });
        if m.seq <= state.delivered {
            // Below the baseline: a duplicate, or (pushes of one conversation
            // can overtake each other) an earlier message arriving late after
            // the first one seen set the baseline: deliver it, never drop it.
            if state.mark(m.msg_id.0) {
                return self.out.send(m).await.map_err(|_| ClientError::Closed);
            }
            return Ok(());
        }
        state.buffered.insert(m.seq, m);
        let mut ready = Vec::new();
        while let Some(next) = state.buffered.remove(&(state.delivered + 1)) {
            state.delivered += 1;
            if state.mark(next.msg_id.0) {
                ready.push(next);
            }
        }
        let gap = !state.buffered.is_empty() && !state.syncing;
        if gap {
            state.syncing = true;
        }
        let after = state.delivered;
        for m in ready {
            if self.out.send(m).await.is_err() {
                return Err(ClientError::Closed);
            }
        }
        if gap {
            send_frame(
                ws,
                &ClientFrame::Sync {
                    conversation_id: conv,
                    after_seq: after,
                    limit: Some(100),
                },
            )
            .await?;
        }
        Ok(())
    }
}

async fn send_frame(ws: &mut Socket, f: &ClientFrame) -> Result<(), ClientError> {
    ws.send(WsMessage::Text(f.encode().into()))
        .await
        .map_err(|e| ClientError::Ws(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn events_come_from_the_frames_the_client_does_not_handle_itself() {
        let edited = ServerFrame::decode(
            br#"{"type":"edited","conversation_id":"u:1:2","msg_id":"9","seq":3,"body":"new","edited_at":5,"by":"1"}"#,
        )
        .unwrap();
        assert_eq!(
            Event::from_frame(edited),
            Some(Event::Edited {
                conversation_id: "u:1:2".parse().unwrap(),
                msg_id: MessageId(9),
                seq: 3,
                body: serde_json::json!("new"),
                edited_at: 5,
                by: "1".parse().unwrap(),
            })
        );
        let contact =
            ServerFrame::decode(br#"{"type":"contact","event":"accepted","from":"2","to":"1"}"#)
                .unwrap();
        assert!(matches!(
            Event::from_frame(contact),
            Some(Event::Contact {
                event: ContactEvent::Accepted,
                ..
            })
        ));
        let refused =
            ServerFrame::decode(br#"{"type":"error","code":"permission_denied","message":"no"}"#)
                .unwrap();
        assert!(matches!(
            Event::from_frame(refused),
            Some(Event::Error {
                code: ErrorCode::PermissionDenied,
                ..
            })
        ));
        // A send's error answers the send, not the event stream.
        let send_error = ServerFrame::decode(
            br#"{"type":"error","code":"unavailable","message":"later","client_msg_id":"c1"}"#,
        )
        .unwrap();
        assert_eq!(Event::from_frame(send_error), None);
        assert_eq!(Event::from_frame(ServerFrame::Pong), None);
    }

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
