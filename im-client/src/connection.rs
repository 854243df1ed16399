//! [`Connection`]: one WebSocket session of an [`ImClient`] and the task
//! that drives it (reconnects, resends, dedup, seq order, gap sync), and the
//! [`Event`]s it reports besides messages.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use im_core::id::{ConversationId, MessageId, UserId};
use im_core::model::{ContactEvent, Message, MessageKind, Target};
use im_core::protocol::{ClientFrame, SendAck, SendRequest, ServerFrame};
use im_core::ErrorCode;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::ImClient;
use crate::error::ClientError;

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

/// A random number from the standard library's per-process random hash
/// keys: enough to keep `client_msg_id`s of different connections apart.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
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
    /// Opens the socket at `url` and starts the task driving it.
    pub(crate) async fn open(client: ImClient, url: String) -> Result<Connection, ClientError> {
        let socket = open(&url, &client.token, client.tls.clone()).await?;
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (msg_tx, msg_rx) = mpsc::channel(65_536);
        let (event_tx, event_rx) = mpsc::channel(EVENT_BUFFER);
        let driver = Driver {
            client,
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
            next_id: random_u64() >> 16,
            ack_timeout: Duration::from_secs(30),
        })
    }

    /// Sends a text message; retried (same `client_msg_id`) across
    /// reconnects until acked. The ack carries the message's id and its seq
    /// in the conversation; a refusal (e.g. not a member of the group) is
    /// [`ClientError::Server`], no ack within 30 s [`ClientError::Timeout`].
    ///
    /// ```no_run
    /// # async fn demo(mut conn: im_client::Connection, bob: im_core::id::UserId)
    /// # -> Result<(), im_client::ClientError> {
    /// use im_core::model::Target;
    /// let ack = conn.send(Target::User(bob), "hello".into()).await?;
    /// println!("sent as {} (seq {})", ack.msg_id, ack.seq);
    /// # Ok(()) }
    /// ```
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
    /// delivered late rather than dropped). `None` once the connection
    /// ended (closed, or kicked by the server).
    ///
    /// ```no_run
    /// # async fn demo(mut conn: im_client::Connection) {
    /// while let Some(m) = conn.next_message().await {
    ///     println!("#{} from {}: {}", m.seq, m.from, m.body);
    /// }
    /// # }
    /// ```
    pub async fn next_message(&mut self) -> Option<Message> {
        self.messages.recv().await
    }

    /// The next [`Event`] (an edit, a contact change, a read cursor, a
    /// recall, a refused non-send frame), in the order the server sent them.
    /// Events are buffered apart from messages (at most [`EVENT_BUFFER`];
    /// when the reader falls that far behind, newer ones are dropped).
    /// `None` once the connection ended, or after [`Connection::take_events`].
    ///
    /// ```no_run
    /// # async fn demo(mut conn: im_client::Connection) {
    /// use im_client::Event;
    /// while let Some(event) = conn.next_event().await {
    ///     match event {
    ///         Event::Edited { msg_id, body, .. } => println!("{msg_id} now reads {body}"),
    ///         Event::Read { user_id, seq, .. } => println!("{user_id} read up to {seq}"),
    ///         other => println!("{other:?}"),
    ///     }
    /// }
    /// # }
    /// ```
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
}
