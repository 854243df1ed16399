//! The request and response bodies of the accounts, messages,
//! conversations, presence, groups and connect endpoints, with their OpenAPI
//! schemas. Core types inside them are described by the doc-only schemas of
//! [`super::schema`].

use im_core::id::{now_ms, ConversationId, GroupId, MessageId, UserId};
use im_core::model::{Member, Message, MessageKind, Target};
use im_core::ports::ScheduledSend;
use im_core::Error;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::errors::ApiError;
use super::schema::{MemberDoc, MessageDoc, MessageKindDoc, RoleChangeDoc, TargetDoc};

/// A username and password (register and log in).
#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    /// 3–32 characters: ASCII letters, digits, `_`, `.`, `-` (case-sensitive).
    #[schema(example = "alice", min_length = 3, max_length = 32)]
    pub username: String,
    /// At least 8 characters, at most 1,024 bytes.
    #[schema(example = "correct horse", min_length = 8)]
    pub password: String,
}

/// A new account (`POST /api/v1/users`): credentials, and (v1.2) an
/// optional display name.
#[derive(Deserialize, ToSchema)]
pub struct NewAccount {
    /// 3–32 characters: ASCII letters, digits, `_`, `.`, `-` (case-sensitive).
    #[schema(example = "alice", min_length = 3, max_length = 32)]
    pub username: String,
    /// At least 8 characters, at most 1,024 bytes.
    #[schema(example = "correct horse", min_length = 8)]
    pub password: String,
    /// v1.2: the name shown to others (1–64 characters); absent: the username.
    #[serde(default)]
    #[schema(required = false, example = "Alice Liddell")]
    pub display_name: Option<String>,
}

/// The answer to a registration.
#[derive(Serialize, ToSchema)]
pub struct Registered {
    /// The new user's id (canonical decimal string).
    #[schema(value_type = String, example = "1001")]
    pub user_id: UserId,
}

/// The answer to a login.
#[derive(Serialize, ToSchema)]
pub struct LoggedIn {
    /// The user's id (canonical decimal string).
    #[schema(value_type = String, example = "1001")]
    pub user_id: UserId,
    /// The bearer token for `Authorization: Bearer <token>`.
    pub token: String,
    /// Token expiry, Unix milliseconds.
    #[schema(example = 1767312000000_i64)]
    pub expires_at: i64,
}

/// The answer to an accepted send (a WebSocket `send_ack` without
/// `type` and `client_msg_id`).
#[derive(Serialize, ToSchema)]
pub struct Sent {
    /// The message's id (canonical decimal string).
    #[schema(value_type = String, example = "7262015623421952")]
    pub msg_id: MessageId,
    /// `u:{a}:{b}` or `g:{group_id}`.
    #[schema(value_type = String, example = "u:1001:1002")]
    pub conversation_id: ConversationId,
    /// The message's position in its conversation (1, 2, 3, …); 0 for a
    /// scheduled send, which gets its seq when it is delivered.
    #[schema(example = 42)]
    pub seq: u64,
    /// Acceptance time, Unix milliseconds (for a scheduled send: its
    /// delivery time, `deliver_at`).
    #[schema(example = 1767225600123_i64)]
    pub ts: i64,
    /// Present only for a scheduled send (extension): held until this time,
    /// Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, example = 1767229200000_i64)]
    pub deliver_at: Option<i64>,
}

/// A scheduled send not yet delivered: a message without `seq` (it gets
/// one when it is delivered), with its delivery time.
#[derive(Serialize, ToSchema)]
pub struct ScheduledMessage {
    /// The message's id (canonical decimal string); it keeps it when delivered.
    #[schema(value_type = String, example = "7262015623421952")]
    pub msg_id: MessageId,
    /// `u:{a}:{b}` or `g:{group_id}`.
    #[schema(value_type = String, example = "u:1001:1002")]
    pub conversation_id: ConversationId,
    /// The sender: the caller (canonical decimal string).
    #[schema(value_type = String, example = "1001")]
    pub from: UserId,
    /// The addressee as sent.
    #[schema(value_type = TargetDoc)]
    pub to: Target,
    /// The kind of body.
    #[schema(value_type = MessageKindDoc)]
    pub kind: MessageKind,
    /// The body as sent.
    pub body: serde_json::Value,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// The delivery time, as in the scheduled send's answer (the delivered
    /// message's `ts` is when it was actually delivered).
    #[schema(example = 1767229200000_i64)]
    pub ts: i64,
    /// When it will be delivered, Unix milliseconds.
    #[schema(example = 1767229200000_i64)]
    pub deliver_at: i64,
}

impl From<ScheduledSend> for ScheduledMessage {
    fn from(s: ScheduledSend) -> Self {
        let m = s.envelope.message;
        ScheduledMessage {
            msg_id: m.msg_id,
            conversation_id: m.conversation_id,
            from: m.from,
            to: m.to,
            kind: m.kind,
            body: m.body,
            client_msg_id: m.client_msg_id,
            ts: s.deliver_at,
            deliver_at: s.deliver_at,
        }
    }
}

/// The caller's scheduled sends.
#[derive(Serialize, ToSchema)]
pub struct ScheduledList {
    /// Not yet delivered nor cancelled, soonest first.
    pub scheduled: Vec<ScheduledMessage>,
}

/// A page of history.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    /// Messages with `seq > after_seq`, ascending by seq.
    #[schema(value_type = Vec<MessageDoc>)]
    pub messages: Vec<Message>,
    /// Whether messages exist after the last one returned.
    pub has_more: bool,
}

/// A new group.
#[derive(Deserialize, ToSchema)]
pub struct NewGroup {
    /// 1–64 characters, not only whitespace.
    #[schema(example = "Team", min_length = 1, max_length = 64)]
    pub name: String,
}

/// The answer to a group creation.
#[derive(Serialize, ToSchema)]
pub struct GroupCreated {
    /// The new group's id (canonical decimal string).
    #[schema(value_type = String, example = "5001")]
    pub group_id: GroupId,
}

/// A user to add to a group.
#[derive(Deserialize, ToSchema)]
pub struct NewMember {
    /// The user's id (canonical decimal string).
    #[schema(value_type = String, example = "1002")]
    pub user_id: UserId,
}

/// A group's members.
#[derive(Serialize, ToSchema)]
pub struct MemberList {
    /// Every member with its role, ordered by user id.
    #[schema(value_type = Vec<MemberDoc>)]
    pub members: Vec<Member>,
}

/// Where to open the WebSocket.
#[derive(Serialize, ToSchema)]
pub struct WsEndpoint {
    /// An absolute `ws://` or `wss://` URL of `/ws` (without the token).
    #[schema(example = "ws://127.0.0.1:8080/ws")]
    pub ws_url: String,
}

/// One row of the conversation list.
#[derive(Serialize, ToSchema)]
pub struct ConversationRow {
    /// `u:{a}:{b}` or `g:{group_id}`.
    #[schema(value_type = String, example = "u:1001:1002")]
    pub conversation_id: ConversationId,
    /// The conversation's message with the highest seq.
    #[schema(value_type = MessageDoc)]
    pub last_message: Message,
    /// That message's seq.
    #[schema(example = 42)]
    pub last_seq: u64,
    /// The caller's read cursor (0: nothing read).
    #[schema(example = 40)]
    pub read_seq: u64,
    /// Messages from others with a seq above `read_seq`.
    #[schema(example = 2)]
    pub unread: u64,
    /// v1.2, 1:1 conversations only: the peer's read cursor (messages of
    /// the caller up to it were read).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, example = 42)]
    pub peer_read_seq: Option<u64>,
    /// v1.2: a message above `read_seq` mentions the caller (by id, or `all`).
    pub mentioned: bool,
}

/// A page of the caller's conversation list.
#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    /// The caller's conversations that have a message, newest last message first.
    pub conversations: Vec<ConversationRow>,
    /// Pass as `cursor` for the next page; `null` at the end.
    #[schema(example = "1767225600123~u:1001:1002")]
    pub next_cursor: Option<String>,
}

/// A read cursor to store.
#[derive(Deserialize, ToSchema)]
pub struct ReadUpTo {
    /// Everything up to this seq was read (at most the conversation's last seq).
    #[schema(example = 42)]
    pub seq: u64,
}

/// Whether a user is online.
#[derive(Serialize, ToSchema)]
pub struct UserPresence {
    /// The user's id (canonical decimal string).
    #[schema(value_type = String, example = "1002")]
    pub user_id: UserId,
    /// Whether at least one WebSocket session of the user is connected.
    pub online: bool,
    /// When a session of the user was last connected, Unix ms (now while
    /// online); `null` if it never connected.
    #[schema(example = 1767225600123_i64)]
    pub last_seen: Option<i64>,
}

/// A group's details.
#[derive(Serialize, ToSchema)]
pub struct GroupInfo {
    /// The group's id (canonical decimal string).
    #[schema(value_type = String, example = "5001")]
    pub group_id: GroupId,
    /// Its display name.
    #[schema(example = "Team")]
    pub name: String,
    /// The owner's user id (canonical decimal string).
    #[schema(value_type = String, example = "1001")]
    pub owner: UserId,
    /// Creation time, Unix milliseconds.
    #[schema(example = 1767225600123_i64)]
    pub created_at: i64,
    /// Present while a mute is set: Unix ms until which only the owner and
    /// admins may send (`9223372036854775807`: until unmuted).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, example = 1767229200000_i64)]
    pub muted_until: Option<i64>,
    /// v1.2: whether members added later see the history from before they
    /// joined (default `false`).
    pub history_visible: bool,
}

/// A new group name.
#[derive(Deserialize, ToSchema)]
pub struct GroupRename {
    /// 1–64 characters, not only whitespace.
    #[schema(example = "Core team", min_length = 1, max_length = 64)]
    pub name: String,
}

/// A member's new role.
#[derive(Deserialize, ToSchema)]
pub struct RoleChange {
    /// `admin` or `member` (ownership moves only by a transfer).
    #[schema(value_type = RoleChangeDoc)]
    pub role: String,
}

/// The new owner of a group.
#[derive(Deserialize, ToSchema)]
pub struct Transfer {
    /// A member's id (canonical decimal string); the old owner becomes an admin.
    #[schema(value_type = String, example = "1002")]
    pub user_id: UserId,
}

/// Mute or unmute a group or a member.
#[derive(Deserialize, ToSchema)]
pub struct MuteChange {
    /// `true` mutes, `false` unmutes.
    pub muted: bool,
    /// How long the mute lasts, in ms (at least 1); absent: until unmuted.
    /// Ignored when `muted` is false.
    #[schema(required = false, example = 3_600_000_u64, minimum = 1)]
    pub duration_ms: Option<u64>,
}

impl MuteChange {
    /// The mute's end: now + duration, `i64::MAX` without a duration, `None`
    /// to unmute.
    pub(super) fn until(&self) -> Result<Option<i64>, ApiError> {
        if !self.muted {
            return Ok(None);
        }
        match self.duration_ms {
            None => Ok(Some(i64::MAX)),
            Some(0) => Err(ApiError(Error::InvalidArgument(
                "duration_ms must be at least 1".into(),
            ))),
            Some(d) => Ok(Some(
                now_ms().saturating_add(i64::try_from(d).unwrap_or(i64::MAX)),
            )),
        }
    }
}
