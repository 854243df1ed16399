//! Doc-only OpenAPI schemas of im-core types (targets, kinds, messages,
//! members, roles), so im-core needs no OpenAPI dependency. They are never
//! serialized: the core types themselves are, and these describe their wire
//! form (every 64-bit id is a canonical decimal string).

use serde::Serialize;
use utoipa::ToSchema;

/// The addressee of a send: exactly one of `user` or `group`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetDoc {
    /// A 1:1 peer's user id (canonical decimal string).
    User(String),
    /// A group id (canonical decimal string).
    Group(String),
}

/// The kind of a message: `text` carries a string body, the others a JSON object.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindDoc {
    /// Plain text; the body is a JSON string.
    Text,
    /// An image reference; the body is a JSON object.
    Image,
    /// A file reference; the body is a JSON object.
    File,
    /// An audio clip (v1.2); the body is a JSON object (an attachment:
    /// `{key, name, size, mime, duration?}`).
    Audio,
    /// A video (v1.2); the body is a JSON object (an attachment:
    /// `{key, name, size, mime, width?, height?, duration?}`).
    Video,
    /// Application-defined; the body is a JSON object.
    Custom,
}

/// The kind of a stored message: the kinds a client sends, plus `system`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKindDoc {
    /// Plain text; the body is a JSON string.
    Text,
    /// An image reference; the body is a JSON object.
    Image,
    /// A file reference; the body is a JSON object.
    File,
    /// An audio clip (v1.2); the body is a JSON object (an attachment:
    /// `{key, name, size, mime, duration?}`).
    Audio,
    /// A video (v1.2); the body is a JSON object (an attachment:
    /// `{key, name, size, mime, width?, height?, duration?}`).
    Video,
    /// Application-defined; the body is a JSON object.
    Custom,
    /// Written by the server about a group change (v1.1 extension); the body
    /// is a JSON object `{"event", "actor", …}`. Clients cannot send it.
    System,
}

/// A send request (`POST /api/v1/messages`).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"client_msg_id": "c-8f14e45f", "to": {"user": "1002"}, "kind": "text", "body": "hello"}))]
pub struct SendRequestDoc {
    /// The sender's idempotency key (1–128 bytes); reuse it on every retry.
    pub client_msg_id: String,
    /// The addressee.
    pub to: TargetDoc,
    /// The kind (default `text`; optional, not nullable).
    #[schema(required = false)]
    pub kind: KindDoc,
    /// A string for `text`, a JSON object for the other kinds (at most
    /// 16,384 bytes).
    pub body: serde_json::Value,
    /// Scheduled delivery (extension): deliver at this time, Unix
    /// milliseconds, at most 30 days ahead; the send is acked at once with
    /// `seq` 0 and held until then. A time in the past sends now.
    #[schema(required = false, example = 1767229200000_i64)]
    pub deliver_at: i64,
    /// v1.2, group messages only: the mentioned members' ids (at most 50),
    /// or `"all"` (owner and admins only).
    #[schema(required = false, value_type = Object, example = json!(["1002", "1003"]))]
    pub mentions: serde_json::Value,
}

/// A stored message (in history, `sync_result` and `message` frames).
#[derive(Serialize, ToSchema)]
pub struct MessageDoc {
    /// Snowflake id, unique across the cluster (canonical decimal string).
    #[schema(example = "7262015623421952")]
    pub msg_id: String,
    /// `u:{a}:{b}` or `g:{group_id}`.
    #[schema(example = "u:1001:1002")]
    pub conversation_id: String,
    /// Position in the conversation: 1, 2, 3, … (strictly increasing).
    #[schema(example = 42)]
    pub seq: u64,
    /// The sender's user id (canonical decimal string).
    #[schema(example = "1001")]
    pub from: String,
    /// The addressee as the sender wrote it.
    pub to: TargetDoc,
    /// The kind of body.
    pub kind: MessageKindDoc,
    /// The body as sent (absent once recalled).
    #[schema(required = false)]
    pub body: serde_json::Value,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// Acceptance time, Unix milliseconds.
    #[schema(example = 1767225600123_i64)]
    pub ts: i64,
    /// Present and true once the message was recalled (v1.1).
    #[schema(required = false)]
    pub recalled: bool,
    /// v1.2: present once the sender edited the body; when, Unix ms.
    #[schema(required = false, example = 1767225700000_i64)]
    pub edited_at: i64,
    /// v1.2: present when the message mentions members: their ids, or `"all"`.
    #[schema(required = false, value_type = Object, example = json!(["1002"]))]
    pub mentions: serde_json::Value,
}

/// A member's role in a group.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleDoc {
    /// Created the group (or received ownership); exactly one per group.
    Owner,
    /// May add and remove plain members.
    Admin,
    /// A plain member.
    Member,
}

/// A group member.
#[derive(Serialize, ToSchema)]
pub struct MemberDoc {
    /// The member's user id (canonical decimal string).
    #[schema(example = "1001")]
    pub user_id: String,
    /// Its role.
    pub role: RoleDoc,
    /// Present while the member is muted: Unix ms until which it may not send
    /// (`9223372036854775807`: until unmuted). Extension.
    #[schema(required = false, example = 1767229200000_i64)]
    pub muted_until: i64,
    /// v1.2: the conversation's last seq when the member was added; unless
    /// the group's `history_visible` is set, the member sees only later messages.
    #[schema(example = 0)]
    pub joined_seq: u64,
}

/// A role that `PUT …/members/{user_id}/role` can set.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleChangeDoc {
    /// May add and remove plain members, rename, mute.
    Admin,
    /// A plain member.
    Member,
}
