//! The domain model: users, groups and roles, messages, session routes and the
//! queue envelope that carries an accepted message from Logic to Task.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::{ConversationId, GroupId, MessageId, SessionId, UserId};

/// A user account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// The unique, case-sensitive login name.
    pub username: String,
    /// The argon2id PHC string of the password.
    pub password_hash: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// The name shown to others (v1.2); `None`: show the username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// A picture of the user (v1.2): an `https://` URL or an attachment
    /// path of this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

impl User {
    /// A new account with no profile yet.
    pub fn new(
        id: UserId,
        username: impl Into<String>,
        password_hash: impl Into<String>,
        created_at: i64,
    ) -> Self {
        User {
            id,
            username: username.into(),
            password_hash: password_hash.into(),
            created_at,
            display_name: None,
            avatar_url: None,
        }
    }

    /// What others see of this account.
    pub fn profile(&self) -> Profile {
        Profile {
            user_id: self.id,
            username: self.username.clone(),
            display_name: self
                .display_name
                .clone()
                .unwrap_or_else(|| self.username.clone()),
            avatar_url: self.avatar_url.clone(),
        }
    }
}

/// A user's public profile (v1.2): what any authenticated user may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The user.
    pub user_id: UserId,
    /// The unique login name.
    pub username: String,
    /// The name to show: the one the user chose, else the username.
    pub display_name: String,
    /// The user's picture, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the group (or received ownership); exactly one per group.
    Owner,
    /// May add and remove plain members.
    Admin,
    /// A plain member.
    Member,
}

impl Role {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses a wire or storage name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The group's id.
    pub id: GroupId,
    /// Display name.
    pub name: String,
    /// The current owner.
    pub owner: UserId,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// While set and in the future (Unix ms), only the owner and admins may
    /// send; `i64::MAX` mutes until unmuted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<i64>,
    /// Whether members added later see the messages from before they joined
    /// (v1.2; default `false`: a new member reads from its join on).
    #[serde(default)]
    pub history_visible: bool,
}

impl Group {
    /// Whether the whole group is muted at `now` (Unix ms).
    pub fn is_muted(&self, now: i64) -> bool {
        self.muted_until.is_some_and(|t| t > now)
    }
}

/// One member of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member.
    pub user_id: UserId,
    /// Its role.
    pub role: Role,
    /// While set and in the future (Unix ms), this member may not send;
    /// `i64::MAX` mutes until unmuted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<i64>,
    /// The conversation's last seq when the member was added (v1.2): unless
    /// the group's `history_visible` is set, the member sees only messages
    /// with a higher seq. 0 for the creator and for members added before v1.2.
    #[serde(default)]
    pub joined_seq: u64,
}

impl Member {
    /// A member with a role, not muted, seeing the whole history.
    pub fn new(user_id: UserId, role: Role) -> Self {
        Member {
            user_id,
            role,
            muted_until: None,
            joined_seq: 0,
        }
    }

    /// The same member, added when the conversation's last seq was `seq`.
    pub fn joined_at(mut self, seq: u64) -> Self {
        self.joined_seq = seq;
        self
    }

    /// Whether this member is muted at `now` (Unix ms).
    pub fn is_muted(&self, now: i64) -> bool {
        self.muted_until.is_some_and(|t| t > now)
    }
}

/// The addressee of a send: `{"user": "<id>"}` or `{"group": "<id>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// A 1:1 peer.
    User(UserId),
    /// A group.
    Group(GroupId),
}

impl Target {
    /// The conversation a message from `sender` to this target belongs to.
    pub fn conversation(self, sender: UserId) -> Result<ConversationId, crate::id::IdError> {
        match self {
            Target::User(peer) => ConversationId::direct(sender, peer),
            Target::Group(g) => Ok(ConversationId::Group(g)),
        }
    }
}

/// The kind of a message; `text` carries a string body, the others a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageKind {
    /// Plain text; the body is a JSON string.
    #[default]
    Text,
    /// An image reference; the body is a JSON object.
    Image,
    /// A file reference; the body is a JSON object.
    File,
    /// An audio clip (v1.2); the body is a JSON object.
    Audio,
    /// A video (v1.2); the body is a JSON object.
    Video,
    /// Application-defined; the body is a JSON object.
    Custom,
    /// Written by the server (group administration); the body is a JSON
    /// object with an `event` field. Clients cannot send it.
    System,
}

impl MessageKind {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::File => "file",
            MessageKind::Audio => "audio",
            MessageKind::Video => "video",
            MessageKind::Custom => "custom",
            MessageKind::System => "system",
        }
    }

    /// Parses a wire or storage name.
    pub fn parse(s: &str) -> Option<MessageKind> {
        match s {
            "text" => Some(MessageKind::Text),
            "image" => Some(MessageKind::Image),
            "file" => Some(MessageKind::File),
            "audio" => Some(MessageKind::Audio),
            "video" => Some(MessageKind::Video),
            "custom" => Some(MessageKind::Custom),
            "system" => Some(MessageKind::System),
            _ => None,
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An accepted message: the message object of the protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Snowflake id, unique across the cluster.
    pub msg_id: MessageId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Position in the conversation: 1, 2, 3 … without gaps.
    pub seq: u64,
    /// The sender (always taken from the authenticated session).
    pub from: UserId,
    /// The addressee as sent.
    pub to: Target,
    /// The kind of body.
    pub kind: MessageKind,
    /// The body: a string for text, an object otherwise; absent once recalled.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub body: serde_json::Value,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// Acceptance time, Unix milliseconds.
    pub ts: i64,
    /// True once the message was recalled (the body is then gone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recalled: bool,
    /// When the sender last edited the body, Unix ms (v1.2; absent when never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// Whom a group message mentions (v1.2; absent when nobody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Mentions>,
}

/// Whom a group message mentions (v1.2): on the wire an array of user ids,
/// or the string `"all"` (owner and admins only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mentions {
    /// Every member.
    All,
    /// These members.
    Users(Vec<UserId>),
}

impl Mentions {
    /// Whether `user` is mentioned by a message from `from` (nobody is
    /// mentioned by their own `all`).
    pub fn includes(&self, user: UserId, from: UserId) -> bool {
        match self {
            Mentions::All => user != from,
            Mentions::Users(users) => users.contains(&user),
        }
    }
}

impl Serialize for Mentions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Mentions::All => s.serialize_str("all"),
            Mentions::Users(users) => users.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Mentions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Word(String),
            Users(Vec<UserId>),
        }
        match Wire::deserialize(d)? {
            Wire::Word(w) if w == "all" => Ok(Mentions::All),
            Wire::Word(w) => Err(serde::de::Error::custom(format!(
                "mentions must be an array of user ids or \"all\", not {w:?}"
            ))),
            Wire::Users(users) => Ok(Mentions::Users(users)),
        }
    }
}

/// The name of a connect node (carried by every session route).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl NodeId {
    /// A node id from any string.
    pub fn new(s: impl Into<String>) -> Self {
        NodeId(s.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where one online session of a user lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionRoute {
    /// The session's user.
    pub user_id: UserId,
    /// The connect node holding the socket.
    pub node: NodeId,
    /// The session on that node.
    pub session_id: SessionId,
    /// A free-form device or platform label (e.g. `web`, `ios`).
    pub device: String,
    /// The id of the bearer token the session was opened with
    /// ([`crate::auth::token_id`], a hash: never the token itself), so a
    /// logout can close exactly that token's sessions. `None` for routes
    /// written before it existed and for sessions opened without a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// A queue entry: an accepted message plus what the Task layer needs to route it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The message, with its seq and id assigned.
    pub message: Message,
    /// The session that sent it over WebSocket, which gets only the `send_ack`
    /// and is skipped by the push (None for HTTP sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<(NodeId, SessionId)>,
    /// Pinned recipients of a group message (a `system` message about a
    /// removal or dissolution reaches the members as they were); `None`: the
    /// group's members at push time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Vec<UserId>>,
}

impl Envelope {
    /// The conversation of the carried message.
    pub fn conversation(&self) -> ConversationId {
        self.message.conversation_id
    }
}

/// One entry of the queue: an accepted message, or an event about a
/// conversation or some users that only the push group acts on.
///
/// Serialized untagged, so message entries keep the JSON shape of
/// [`Envelope`] (`{"message": …}`) and events are `{"event": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    /// A message to deliver and persist.
    Message(Envelope),
    /// An event to deliver to online sessions only (never persisted).
    Event(EventEnvelope),
}

impl Entry {
    /// The hash that picks the queue shard: entries of one conversation share
    /// a shard, so they keep their order.
    pub fn shard_hash(&self) -> u64 {
        match self {
            Entry::Message(e) => e.message.conversation_id.shard_hash(),
            Entry::Event(e) => e.shard_hash(),
        }
    }

    /// The message, if this entry carries one.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Entry::Message(e) => Some(&e.message),
            Entry::Event(_) => None,
        }
    }

    /// The message envelope, if this entry carries one.
    pub fn envelope(&self) -> Option<&Envelope> {
        match self {
            Entry::Message(e) => Some(e),
            Entry::Event(_) => None,
        }
    }
}

impl From<Envelope> for Entry {
    fn from(e: Envelope) -> Self {
        Entry::Message(e)
    }
}

impl From<EventEnvelope> for Entry {
    fn from(e: EventEnvelope) -> Self {
        Entry::Event(e)
    }
}

/// An event in the queue, with who gets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// What happened.
    pub event: Event,
    /// Who receives it.
    pub to: EventAudience,
    /// A session that caused the event and does not need it echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<(NodeId, SessionId)>,
    /// When it happened, Unix milliseconds (stale ephemeral events are dropped).
    pub ts: i64,
}

impl EventEnvelope {
    /// The queue shard hash: the conversation's, else the first user's.
    pub fn shard_hash(&self) -> u64 {
        match &self.to {
            EventAudience::Conversation {
                conversation_id, ..
            } => conversation_id.shard_hash(),
            EventAudience::Users(users) => users
                .first()
                .map(|u| ConversationId::Group(GroupId(u.0)).shard_hash())
                .unwrap_or(0),
            EventAudience::Sessions(routes) => routes
                .first()
                .map(|r| ConversationId::Group(GroupId(r.user_id.0)).shard_hash())
                .unwrap_or(0),
        }
    }
}

/// The recipients of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAudience {
    /// Every participant's sessions (both parties, or the group's members),
    /// except the sessions of `except` when set.
    Conversation {
        /// The conversation.
        conversation_id: ConversationId,
        /// A participant left out (the typist of a typing event).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<UserId>,
    },
    /// Every session of these users.
    Users(Vec<UserId>),
    /// Exactly these sessions.
    Sessions(Vec<SessionRoute>),
}

/// An event carried by the queue to online sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A read cursor advanced.
    Read {
        /// The conversation.
        conversation_id: ConversationId,
        /// Who read.
        user_id: UserId,
        /// Up to which seq.
        seq: u64,
    },
    /// A message was recalled.
    Recalled {
        /// The conversation.
        conversation_id: ConversationId,
        /// The message.
        msg_id: MessageId,
        /// Who recalled it.
        by: UserId,
    },
    /// Someone is typing (ephemeral: dropped when older than a few seconds).
    Typing {
        /// The conversation.
        conversation_id: ConversationId,
        /// The typist.
        from: UserId,
    },
    /// A message's body was edited by its sender (v1.2).
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
        /// Who edited it (the sender).
        by: UserId,
    },
    /// A contact relation changed (v1.2); both parties' sessions get it.
    Contact {
        /// What happened.
        event: ContactEvent,
        /// Who acted.
        from: UserId,
        /// The other party.
        to: UserId,
    },
    /// A user came online or went offline.
    Presence(Presence),
    /// The audience sessions are closed with a `kicked` frame and code 4001.
    Kick {
        /// Why.
        reason: String,
    },
}

/// A change of a contact relation (v1.2 `contact` frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactEvent {
    /// `from` asked `to` to become contacts.
    Requested,
    /// `from` accepted the request of `to`: they are contacts now.
    Accepted,
    /// `from` declined the request of `to`.
    Declined,
    /// `from` withdrew its request to `to`.
    Cancelled,
    /// `from` removed `to` from its contacts (both sides lose the relation).
    Removed,
}

/// Whether a user is online, and when it was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The user.
    pub user_id: UserId,
    /// Whether at least one session is connected.
    pub online: bool,
    /// When a session of the user was last connected, Unix milliseconds
    /// (`None`: never).
    pub last_seen: Option<i64>,
}
