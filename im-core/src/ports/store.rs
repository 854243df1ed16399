//! Durable stores: messages (history), users (accounts) and groups (membership).

use async_trait::async_trait;

use crate::error::Result;
use crate::id::{ConversationId, GroupId, MessageId, UserId};
use crate::model::{Group, Member, Message, Role, User};

/// The message archive.
///
/// Contract: `append` is idempotent by `msg_id` (a replay writes nothing
/// twice, and a different message with an existing `(conversation, seq)` is
/// ignored too); `history` is ordered by seq, strictly after `after_seq`, at
/// most `limit` long.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Stores a batch; returns how many messages were new.
    async fn append(&self, batch: &[Message]) -> Result<u64>;

    /// Messages of `conversation` with seq > `after_seq`, ordered by seq.
    async fn history(
        &self,
        conversation: ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>>;

    /// The highest stored seq of `conversation` (0 when empty).
    async fn last_seq(&self, conversation: ConversationId) -> Result<u64>;

    /// One message by id.
    async fn get(&self, msg_id: MessageId) -> Result<Option<Message>>;

    /// Marks a stored message recalled and drops its body; returns whether it
    /// changed (`false` when already recalled). `NotFound` for an unknown id.
    /// A later `append` of the same message does not bring the body back.
    async fn recall(&self, msg_id: MessageId) -> Result<bool>;

    /// Replaces the body of a stored message and sets its `edited_at`
    /// (v1.2); returns whether it changed (`false` for a recalled message,
    /// which keeps no body). `NotFound` for an unknown id. A later `append`
    /// of the same message does not bring the old body back.
    async fn edit(
        &self,
        msg_id: MessageId,
        body: &serde_json::Value,
        edited_at: i64,
    ) -> Result<bool>;
}

/// User accounts.
///
/// Contract: usernames are unique (`create` of a taken one is
/// [`crate::Error::Conflict`]); lookups of unknown users return `None`.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Creates an account.
    async fn create(&self, user: &User) -> Result<()>;

    /// An account by id.
    async fn get(&self, id: UserId) -> Result<Option<User>>;

    /// An account by username (case-sensitive).
    async fn by_username(&self, username: &str) -> Result<Option<User>>;

    /// Which of `ids` exist (one round trip), in any order.
    async fn existing(&self, ids: &[UserId]) -> Result<Vec<UserId>>;

    /// The accounts of `ids` that exist, in any order (v1.2 profile lookup).
    /// The default asks [`UserStore::get`] once per id; backends answer in
    /// one round trip.
    async fn get_many(&self, ids: &[UserId]) -> Result<Vec<User>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(u) = self.get(*id).await? {
                out.push(u);
            }
        }
        Ok(out)
    }

    /// Sets (or, with `None`, clears) the display name and avatar URL of an
    /// account; `NotFound` for an unknown id.
    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<()>;

    /// Accounts whose username starts with `prefix` (byte-wise, case-sensitive),
    /// ordered by username, strictly after `after` when set, at most `limit`.
    async fn search(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<User>>;
}

/// Groups and their members.
///
/// Contract: `create` stores the group and its owner as a member with role
/// owner (and `joined_seq` 0); a member keeps the `joined_seq` it was added
/// with; adding a present member is [`crate::Error::Conflict`]; removing an
/// absent one, or touching an unknown group, is [`crate::Error::NotFound`].
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Creates a group with `group.owner` as its owner member.
    async fn create(&self, group: &Group) -> Result<()>;

    /// A group by id.
    async fn get(&self, id: GroupId) -> Result<Option<Group>>;

    /// Adds a member.
    async fn add_member(&self, group: GroupId, member: Member) -> Result<()>;

    /// Removes a member.
    async fn remove_member(&self, group: GroupId, user: UserId) -> Result<()>;

    /// Changes a member's role.
    async fn set_role(&self, group: GroupId, user: UserId, role: Role) -> Result<()>;

    /// The role of `user` in `group`, or `None` when not a member (or no group).
    async fn role_of(&self, group: GroupId, user: UserId) -> Result<Option<Role>>;

    /// All members of a group (empty for an unknown group).
    async fn members(&self, group: GroupId) -> Result<Vec<Member>>;

    /// One member with role and mute state (`None` when not a member).
    async fn member(&self, group: GroupId, user: UserId) -> Result<Option<Member>>;

    /// Renames a group (`NotFound` for an unknown group).
    async fn rename(&self, group: GroupId, name: &str) -> Result<()>;

    /// Makes member `to` the owner and the previous owner an admin, in one
    /// step (`NotFound` when `to` is not a member).
    async fn transfer(&self, group: GroupId, to: UserId) -> Result<()>;

    /// Mutes the whole group until `until` (Unix ms), or unmutes it (`None`).
    async fn mute_group(&self, group: GroupId, until: Option<i64>) -> Result<()>;

    /// Mutes one member until `until` (Unix ms), or unmutes it (`None`);
    /// `NotFound` when not a member.
    async fn mute_member(&self, group: GroupId, user: UserId, until: Option<i64>) -> Result<()>;

    /// Deletes a group and its memberships (messages stay); `NotFound` when unknown.
    async fn delete(&self, group: GroupId) -> Result<()>;

    /// Whether members added later see earlier history (v1.2, see
    /// [`Group::history_visible`]); `NotFound` for an unknown group.
    async fn set_history_visible(&self, group: GroupId, visible: bool) -> Result<()>;
}
