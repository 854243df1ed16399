//! The client protocol (v1 + v1.1 + v1.2): WebSocket frames as serde types.
//!
//! Frames are JSON objects with a `type` field. Every 64-bit id is a canonical
//! decimal string on the wire. [`ClientFrame::decode`] never panics: any input
//! that is not a valid frame yields a [`FrameError`] that becomes an
//! `invalid_argument` error frame.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::id::{ConversationId, MessageId, UserId};
use crate::model::{ContactEvent, Event, Mentions, Message, MessageKind, Presence, Target};

/// A frame sent by a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientFrame {
    /// Send a message; answered by `send_ack` or `error`.
    Send(SendRequest),
    /// Fetch a conversation after a seq; answered by `sync_result`.
    Sync {
        /// The conversation.
        conversation_id: ConversationId,
        /// Return messages with a seq greater than this.
        after_seq: u64,
        /// Page size (default 50, at most 100).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Everything up to `seq` was received (delivery cursor; no reply).
    Ack {
        /// The conversation.
        conversation_id: ConversationId,
        /// Received up to here.
        seq: u64,
    },
    /// Application-level ping; answered by `pong`.
    Ping,
    /// Mark a conversation read up to `seq` (v1.1).
    Read {
        /// The conversation.
        conversation_id: ConversationId,
        /// Read up to here.
        seq: u64,
    },
    /// Recall one of one's messages (v1.1).
    Recall {
        /// The message.
        msg_id: MessageId,
    },
    /// Edit the body of one of one's text messages (v1.2); no reply, or an
    /// `error`. Every participant's sessions get an `edited` frame.
    Edit {
        /// The message.
        msg_id: MessageId,
        /// The new body (a string, as for a text send).
        body: serde_json::Value,
    },
    /// A typing indicator to a peer or group (v1.1, ephemeral).
    Typing {
        /// The peer or group.
        to: Target,
    },
    /// The app went to the background or came back (v1.2). A background
    /// session gets no pushes, and its user's offline notifications fire
    /// when no foreground session is left; back in the foreground it gets
    /// pushes again and should `sync` what it missed. No reply.
    AppState {
        /// `background` or `foreground`.
        state: AppState,
    },
    /// Cancel one of one's scheduled sends before it is delivered
    /// (extension); no reply, or an `error`.
    CancelScheduled {
        /// The scheduled message.
        msg_id: MessageId,
    },
    /// Ask for the presence of users now and subscribe to their changes
    /// (extension); answered by `presence_result`, then `presence` events.
    SubscribePresence {
        /// The users (at most 200).
        user_ids: Vec<UserId>,
    },
}

/// Where a client app is (v1.2 `app_state` frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// On screen: pushes come to this session.
    Foreground,
    /// Not on screen: no pushes; notifications instead.
    Background,
}

/// The body of a `send` frame and of `POST /api/v1/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The sender's idempotency key (1–128 characters).
    pub client_msg_id: String,
    /// The addressee.
    pub to: Target,
    /// The kind (default `text`).
    #[serde(default)]
    pub kind: MessageKind,
    /// A string for text, an object for the other kinds.
    pub body: serde_json::Value,
    /// Deliver at this time (Unix ms) instead of now (extension: scheduled
    /// delivery). The send is acked at once with seq 0; it gets its seq when
    /// it is delivered. A time in the past delivers now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<i64>,
    /// Whom a group message mentions (v1.2): an array of member ids (at most
    /// 50), or `"all"` (owner and admins only). Not allowed in 1:1 messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Mentions>,
}

/// The answer to an accepted send (also the HTTP answer, without `client_msg_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAck {
    /// Echo of the sender's key.
    pub client_msg_id: String,
    /// The message's id.
    pub msg_id: MessageId,
    /// The message's conversation.
    pub conversation_id: ConversationId,
    /// The message's seq.
    pub seq: u64,
    /// Acceptance time, Unix milliseconds (for a scheduled send: its
    /// delivery time).
    pub ts: i64,
    /// Set for a scheduled send (extension): held until then, `seq` is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<i64>,
}

/// A frame sent by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerFrame {
    /// A send was accepted.
    SendAck(SendAck),
    /// A message for this session.
    Message(Message),
    /// The answer to `sync`.
    SyncResult {
        /// The conversation.
        conversation_id: ConversationId,
        /// Messages ordered by seq.
        messages: Vec<Message>,
        /// Whether more messages exist after the last one returned.
        has_more: bool,
    },
    /// A request failed; the socket stays open.
    Error {
        /// The error code.
        code: ErrorCode,
        /// A human-readable message.
        message: String,
        /// The `client_msg_id` of the send this answers, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
    },
    /// The answer to `ping`.
    Pong,
    /// A read cursor advanced (v1.1).
    Read {
        /// The conversation.
        conversation_id: ConversationId,
        /// Who read.
        user_id: UserId,
        /// Up to which seq.
        seq: u64,
    },
    /// A message was recalled (v1.1).
    Recalled {
        /// The conversation.
        conversation_id: ConversationId,
        /// The recalled message.
        msg_id: MessageId,
        /// Who recalled it.
        by: UserId,
    },
    /// Someone is typing (v1.1).
    Typing {
        /// The conversation.
        conversation_id: ConversationId,
        /// Who types.
        from: UserId,
    },
    /// A message was edited by its sender (v1.2).
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
        /// Who edited it.
        by: UserId,
    },
    /// A contact relation of this user changed (v1.2).
    Contact {
        /// `requested`, `accepted`, `declined`, `cancelled` or `removed`.
        event: ContactEvent,
        /// Who acted.
        from: UserId,
        /// The other party.
        to: UserId,
    },
    /// This session was replaced or revoked; the server closes with 4001 (v1.1).
    Kicked {
        /// Why.
        reason: String,
    },
    /// The answer to `subscribe_presence` (extension).
    PresenceResult {
        /// Presence of each user asked for, in order.
        presences: Vec<Presence>,
    },
    /// A subscribed user came online or went offline (extension).
    Presence(Presence),
}

impl ServerFrame {
    /// The frame announcing a queue event to a session (`None` for events
    /// that are not frames, such as a kick).
    pub fn from_event(event: &Event) -> Option<ServerFrame> {
        Some(match event {
            Event::Read {
                conversation_id,
                user_id,
                seq,
            } => ServerFrame::Read {
                conversation_id: *conversation_id,
                user_id: *user_id,
                seq: *seq,
            },
            Event::Recalled {
                conversation_id,
                msg_id,
                by,
            } => ServerFrame::Recalled {
                conversation_id: *conversation_id,
                msg_id: *msg_id,
                by: *by,
            },
            Event::Typing {
                conversation_id,
                from,
            } => ServerFrame::Typing {
                conversation_id: *conversation_id,
                from: *from,
            },
            Event::Edited {
                conversation_id,
                msg_id,
                seq,
                body,
                edited_at,
                by,
            } => ServerFrame::Edited {
                conversation_id: *conversation_id,
                msg_id: *msg_id,
                seq: *seq,
                body: body.clone(),
                edited_at: *edited_at,
                by: *by,
            },
            Event::Contact { event, from, to } => ServerFrame::Contact {
                event: *event,
                from: *from,
                to: *to,
            },
            Event::Presence(p) => ServerFrame::Presence(*p),
            Event::Kick { .. } => return None,
        })
    }
}

/// Why bytes are not a valid client frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrameError {
    /// What was wrong, fit for an `error` frame.
    pub message: String,
    /// The `client_msg_id` of the frame, when one could be read.
    pub client_msg_id: Option<String>,
}

impl FrameError {
    /// The protocol code of every frame error.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }

    /// The `error` frame answering this.
    pub fn to_frame(&self) -> ServerFrame {
        ServerFrame::Error {
            code: self.code(),
            message: self.message.clone(),
            client_msg_id: self.client_msg_id.clone(),
        }
    }
}

impl ClientFrame {
    /// Decodes one text frame. Never panics; any malformed input is a [`FrameError`].
    ///
    /// ```
    /// use im_core::protocol::ClientFrame;
    /// let f = ClientFrame::decode(br#"{"type":"ping"}"#).unwrap();
    /// assert_eq!(f, ClientFrame::Ping);
    /// assert!(ClientFrame::decode(b"{").is_err());
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<ClientFrame, FrameError> {
        match serde_json::from_slice::<ClientFrame>(bytes) {
            Ok(frame) => Ok(frame),
            Err(e) => Err(FrameError {
                message: describe(&e),
                client_msg_id: salvage_client_msg_id(bytes),
            }),
        }
    }

    /// Encodes to JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

impl ServerFrame {
    /// Encodes to JSON text (serialization of these types cannot fail).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","code":"internal","message":"encode: {e}"}}"#)
        })
    }

    /// Decodes a server frame (for clients).
    pub fn decode(bytes: &[u8]) -> Result<ServerFrame, FrameError> {
        serde_json::from_slice(bytes).map_err(|e| FrameError {
            message: describe(&e),
            client_msg_id: None,
        })
    }

    /// An `error` frame for a core error.
    pub fn error(err: &crate::error::Error, client_msg_id: Option<String>) -> ServerFrame {
        ServerFrame::Error {
            code: err.code(),
            message: err.public_message(),
            client_msg_id,
        }
    }
}

fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax | Category::Eof => "malformed JSON",
        Category::Io => "unreadable frame",
        Category::Data => "invalid frame",
    };
    let mut detail = e.to_string();
    if detail.len() > 200 {
        let mut cut = 200;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
    }
    format!("{what}: {detail}")
}

fn salvage_client_msg_id(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        client_msg_id: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.client_msg_id)
        .filter(|s| s.len() <= 128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::GroupId;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = u64> {
        any::<u64>()
    }

    fn target() -> impl Strategy<Value = Target> {
        prop_oneof![
            id().prop_map(|v| Target::User(UserId(v))),
            id().prop_map(|v| Target::Group(GroupId(v))),
        ]
    }

    fn conv() -> impl Strategy<Value = ConversationId> {
        prop_oneof![
            (0..u64::MAX, 1..u64::MAX).prop_map(|(a, d)| {
                let b = a.saturating_add(d).max(a + 1);
                ConversationId::Direct(UserId(a), UserId(b))
            }),
            id().prop_map(|g| ConversationId::Group(GroupId(g))),
        ]
    }

    fn kind() -> impl Strategy<Value = MessageKind> {
        prop_oneof![
            Just(MessageKind::Text),
            Just(MessageKind::Image),
            Just(MessageKind::File),
            Just(MessageKind::Custom),
        ]
    }

    fn body() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            ".*".prop_map(serde_json::Value::String),
            (".{0,8}", ".*").prop_map(|(k, v)| serde_json::json!({ k: v })),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            id(),
            conv(),
            any::<u64>(),
            id(),
            target(),
            kind(),
            body(),
            ".{0,20}",
            any::<i64>(),
            any::<bool>(),
            (
                proptest::option::of(any::<i64>()),
                proptest::option::of(mentions()),
            ),
        )
            .prop_map(
                |(m, c, seq, from, to, kind, body, cm, ts, recalled, (edited_at, mentions))| {
                    Message {
                        msg_id: MessageId(m),
                        conversation_id: c,
                        seq,
                        from: UserId(from),
                        to,
                        kind,
                        body: if recalled {
                            serde_json::Value::Null
                        } else {
                            body
                        },
                        client_msg_id: cm,
                        ts,
                        recalled,
                        edited_at,
                        mentions,
                    }
                },
            )
    }

    fn mentions() -> impl Strategy<Value = Mentions> {
        prop_oneof![
            Just(Mentions::All),
            proptest::collection::vec(id().prop_map(UserId), 0..4).prop_map(Mentions::Users),
        ]
    }

    fn contact_event() -> impl Strategy<Value = ContactEvent> {
        prop_oneof![
            Just(ContactEvent::Requested),
            Just(ContactEvent::Accepted),
            Just(ContactEvent::Declined),
            Just(ContactEvent::Cancelled),
            Just(ContactEvent::Removed),
        ]
    }

    fn client_frame() -> impl Strategy<Value = ClientFrame> {
        prop_oneof![
            (
                ".{1,20}",
                target(),
                kind(),
                body(),
                proptest::option::of(mentions())
            )
                .prop_map(|(c, to, kind, body, mentions)| {
                    ClientFrame::Send(SendRequest {
                        client_msg_id: c,
                        to,
                        kind,
                        body,
                        deliver_at: None,
                        mentions,
                    })
                }),
            (id(), body()).prop_map(|(m, body)| ClientFrame::Edit {
                msg_id: MessageId(m),
                body
            }),
            (conv(), any::<u64>(), proptest::option::of(any::<u32>())).prop_map(|(c, s, l)| {
                ClientFrame::Sync {
                    conversation_id: c,
                    after_seq: s,
                    limit: l,
                }
            }),
            (conv(), any::<u64>()).prop_map(|(c, s)| ClientFrame::Ack {
                conversation_id: c,
                seq: s
            }),
            Just(ClientFrame::Ping),
            (conv(), any::<u64>()).prop_map(|(c, s)| ClientFrame::Read {
                conversation_id: c,
                seq: s
            }),
            id().prop_map(|m| ClientFrame::Recall {
                msg_id: MessageId(m)
            }),
            target().prop_map(|to| ClientFrame::Typing { to }),
        ]
    }

    fn server_frame() -> impl Strategy<Value = ServerFrame> {
        prop_oneof![
            (".{1,20}", id(), conv(), any::<u64>(), any::<i64>()).prop_map(
                |(c, m, conv, seq, ts)| {
                    ServerFrame::SendAck(SendAck {
                        client_msg_id: c,
                        msg_id: MessageId(m),
                        conversation_id: conv,
                        seq,
                        ts,
                        deliver_at: None,
                    })
                }
            ),
            message().prop_map(ServerFrame::Message),
            (
                conv(),
                proptest::collection::vec(message(), 0..4),
                any::<bool>()
            )
                .prop_map(|(c, messages, has_more)| {
                    ServerFrame::SyncResult {
                        conversation_id: c,
                        messages,
                        has_more,
                    }
                }),
            (".*", proptest::option::of(".{1,10}")).prop_map(|(message, client_msg_id)| {
                ServerFrame::Error {
                    code: ErrorCode::PermissionDenied,
                    message,
                    client_msg_id,
                }
            }),
            Just(ServerFrame::Pong),
            (conv(), id(), any::<u64>()).prop_map(|(c, u, seq)| ServerFrame::Read {
                conversation_id: c,
                user_id: UserId(u),
                seq
            }),
            (conv(), id(), id()).prop_map(|(c, m, by)| ServerFrame::Recalled {
                conversation_id: c,
                msg_id: MessageId(m),
                by: UserId(by)
            }),
            (conv(), id()).prop_map(|(c, f)| ServerFrame::Typing {
                conversation_id: c,
                from: UserId(f)
            }),
            ".*".prop_map(|reason| ServerFrame::Kicked { reason }),
            (conv(), id(), any::<u64>(), body(), any::<i64>(), id()).prop_map(
                |(c, m, seq, body, edited_at, by)| ServerFrame::Edited {
                    conversation_id: c,
                    msg_id: MessageId(m),
                    seq,
                    body,
                    edited_at,
                    by: UserId(by),
                }
            ),
            (contact_event(), id(), id()).prop_map(|(event, f, t)| ServerFrame::Contact {
                event,
                from: UserId(f),
                to: UserId(t)
            }),
        ]
    }

    /// A client's numbers come back exactly as sent (serde_json's default
    /// float parser is off by one ulp for some decimals; the workspace enables
    /// `float_roundtrip`). Found by the `client_frame` fuzz target.
    #[test]
    fn body_numbers_round_trip_exactly() {
        let raw = br#"{"type":"send","client_msg_id":"c-2","to":{"group":"5001"},"body":{"n":[244444444444444444444,9.8701303091732651e-77,-3.4183529825779831e81]}}"#;
        let frame = ClientFrame::decode(raw).unwrap();
        let again = ClientFrame::decode(frame.encode().as_bytes()).unwrap();
        assert_eq!(again, frame);
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            // Any finite float: a body's numbers must survive a relay exactly.
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::json!(f)),
            prop_oneof![
                Just("send".to_owned()),
                Just("sync".to_owned()),
                Just("ping".to_owned()),
                ".*"
            ]
            .prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("type".to_owned()),
                        Just("to".to_owned()),
                        Just("body".to_owned()),
                        Just("client_msg_id".to_owned()),
                        ".{0,6}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn client_frames_round_trip(f in client_frame()) {
            let text = f.encode();
            prop_assert_eq!(ClientFrame::decode(text.as_bytes()).unwrap(), f);
        }

        #[test]
        fn server_frames_round_trip(f in server_frame()) {
            let text = f.encode();
            prop_assert_eq!(ServerFrame::decode(text.as_bytes()).unwrap(), f);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Err(e) = ClientFrame::decode(&bytes) {
                prop_assert_eq!(e.code(), ErrorCode::InvalidArgument);
                prop_assert!(!e.message.is_empty());
            }
        }

        #[test]
        fn arbitrary_json_never_panics(v in arb_json()) {
            let text = serde_json::to_vec(&v).unwrap();
            match ClientFrame::decode(&text) {
                Ok(frame) => { let _ = frame.encode(); }
                Err(e) => prop_assert_eq!(e.to_frame().encode().contains("invalid_argument"), true),
            }
        }
    }

    #[test]
    fn ids_must_be_strings_and_unknown_types_are_errors() {
        let err = ClientFrame::decode(br#"{"type":"recall","msg_id":12}"#).unwrap_err();
        assert!(err.message.contains("invalid frame"), "{}", err.message);
        let err = ClientFrame::decode(br#"{"type":"fly"}"#).unwrap_err();
        assert!(err.message.contains("fly"), "{}", err.message);
        let err = ClientFrame::decode(br#"{"type":"send","client_msg_id":"c1","to":{"user":"2"}}"#)
            .unwrap_err();
        assert_eq!(err.client_msg_id.as_deref(), Some("c1"));
        assert!(err.message.contains("body"));
        let deep = "[".repeat(10_000);
        assert!(ClientFrame::decode(deep.as_bytes()).is_err());
    }

    #[test]
    fn send_defaults_to_text_and_matches_the_contract() {
        let f = ClientFrame::decode(
            br#"{"type":"send","client_msg_id":"a","to":{"group":"5"},"body":"hi"}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            ClientFrame::Send(SendRequest {
                client_msg_id: "a".into(),
                to: Target::Group(GroupId(5)),
                kind: MessageKind::Text,
                body: serde_json::json!("hi"),
                deliver_at: None,
                mentions: None,
            })
        );
        let ack = ServerFrame::SendAck(SendAck {
            client_msg_id: "a".into(),
            msg_id: MessageId(9),
            conversation_id: ConversationId::Group(GroupId(5)),
            seq: 1,
            ts: 2,
            deliver_at: None,
        });
        assert_eq!(
            ack.encode(),
            r#"{"type":"send_ack","client_msg_id":"a","msg_id":"9","conversation_id":"g:5","seq":1,"ts":2}"#
        );
    }
}
