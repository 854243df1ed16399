//! In-memory `MessageStore`, `UserStore` and `GroupStore`.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::id::{ConversationId, GroupId, MessageId, UserId};
use crate::model::{Group, Member, Message, Role, User};
use crate::ports::{GroupStore, MessageStore, UserStore};

#[derive(Debug, Default)]
struct Conversation {
    by_seq: BTreeMap<u64, Message>,
    last_seq: u64,
    evicted_upto: u64,
}

#[derive(Debug, Default)]
struct Messages {
    conversations: HashMap<ConversationId, Conversation>,
    index: HashMap<MessageId, (ConversationId, u64)>,
}

/// Message history in memory, keeping at most `keep_per_conversation` recent
/// messages of each conversation (older ones are evicted; `last_seq` stays right).
#[derive(Debug)]
pub struct MemoryMessageStore {
    inner: RwLock<Messages>,
    keep_per_conversation: usize,
}

impl Default for MemoryMessageStore {
    fn default() -> Self {
        MemoryMessageStore::new(10_000)
    }
}

impl MemoryMessageStore {
    /// A store keeping at most `keep_per_conversation` messages per conversation.
    pub fn new(keep_per_conversation: usize) -> Self {
        MemoryMessageStore {
            inner: RwLock::new(Messages::default()),
            keep_per_conversation: keep_per_conversation.max(1),
        }
    }
}

#[async_trait]
impl MessageStore for MemoryMessageStore {
    async fn append(&self, batch: &[Message]) -> Result<u64> {
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let mut inserted = 0;
        for m in batch {
            if inner.index.contains_key(&m.msg_id) {
                continue;
            }
            let conv = inner.conversations.entry(m.conversation_id).or_default();
            if m.seq <= conv.evicted_upto || conv.by_seq.contains_key(&m.seq) {
                continue;
            }
            conv.by_seq.insert(m.seq, m.clone());
            conv.last_seq = conv.last_seq.max(m.seq);
            inner.index.insert(m.msg_id, (m.conversation_id, m.seq));
            inserted += 1;
            while conv.by_seq.len() > self.keep_per_conversation {
                if let Some((seq, old)) = conv.by_seq.pop_first() {
                    conv.evicted_upto = seq;
                    inner.index.remove(&old.msg_id);
                }
            }
        }
        Ok(inserted)
    }

    async fn history(
        &self,
        conversation: ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let inner = self.inner.read();
        Ok(inner
            .conversations
            .get(&conversation)
            .map(|c| {
                c.by_seq
                    .range(after_seq.saturating_add(1)..)
                    .take(limit)
                    .map(|(_, m)| m.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn last_seq(&self, conversation: ConversationId) -> Result<u64> {
        Ok(self
            .inner
            .read()
            .conversations
            .get(&conversation)
            .map(|c| c.last_seq)
            .unwrap_or(0))
    }

    async fn get(&self, msg_id: MessageId) -> Result<Option<Message>> {
        let inner = self.inner.read();
        Ok(inner.index.get(&msg_id).and_then(|(c, seq)| {
            inner
                .conversations
                .get(c)
                .and_then(|c| c.by_seq.get(seq))
                .cloned()
        }))
    }

    async fn recall(&self, msg_id: MessageId) -> Result<bool> {
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let (c, seq) = inner
            .index
            .get(&msg_id)
            .copied()
            .ok_or_else(|| Error::NotFound(format!("no message {msg_id}")))?;
        let m = inner
            .conversations
            .get_mut(&c)
            .and_then(|c| c.by_seq.get_mut(&seq))
            .ok_or_else(|| Error::NotFound(format!("no message {msg_id}")))?;
        if m.recalled {
            return Ok(false);
        }
        m.recalled = true;
        m.body = serde_json::Value::Null;
        Ok(true)
    }

    async fn edit(
        &self,
        msg_id: MessageId,
        body: &serde_json::Value,
        edited_at: i64,
    ) -> Result<bool> {
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let (c, seq) = inner
            .index
            .get(&msg_id)
            .copied()
            .ok_or_else(|| Error::NotFound(format!("no message {msg_id}")))?;
        let m = inner
            .conversations
            .get_mut(&c)
            .and_then(|c| c.by_seq.get_mut(&seq))
            .ok_or_else(|| Error::NotFound(format!("no message {msg_id}")))?;
        if m.recalled {
            return Ok(false);
        }
        m.body = body.clone();
        m.edited_at = Some(edited_at);
        Ok(true)
    }
}

#[derive(Debug, Default)]
struct Users {
    by_id: HashMap<UserId, User>,
    /// Ordered, so a prefix search is a range scan.
    by_name: BTreeMap<String, UserId>,
}

/// User accounts in memory.
#[derive(Debug, Default)]
pub struct MemoryUserStore {
    inner: RwLock<Users>,
}

impl MemoryUserStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl UserStore for MemoryUserStore {
    async fn create(&self, user: &User) -> Result<()> {
        let mut inner = self.inner.write();
        if inner.by_name.contains_key(&user.username) {
            return Err(Error::Conflict(format!(
                "username {} is taken",
                user.username
            )));
        }
        if inner.by_id.contains_key(&user.id) {
            return Err(Error::Conflict(format!("user id {} exists", user.id)));
        }
        inner.by_name.insert(user.username.clone(), user.id);
        inner.by_id.insert(user.id, user.clone());
        Ok(())
    }

    async fn get(&self, id: UserId) -> Result<Option<User>> {
        Ok(self.inner.read().by_id.get(&id).cloned())
    }

    async fn by_username(&self, username: &str) -> Result<Option<User>> {
        let inner = self.inner.read();
        Ok(inner
            .by_name
            .get(username)
            .and_then(|id| inner.by_id.get(id))
            .cloned())
    }

    async fn existing(&self, ids: &[UserId]) -> Result<Vec<UserId>> {
        let inner = self.inner.read();
        Ok(ids
            .iter()
            .filter(|id| inner.by_id.contains_key(id))
            .copied()
            .collect())
    }

    async fn get_many(&self, ids: &[UserId]) -> Result<Vec<User>> {
        let inner = self.inner.read();
        Ok(ids
            .iter()
            .filter_map(|id| inner.by_id.get(id))
            .cloned()
            .collect())
    }

    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<()> {
        let mut inner = self.inner.write();
        let user = inner
            .by_id
            .get_mut(&id)
            .ok_or_else(|| Error::NotFound(format!("no user {id}")))?;
        user.display_name = display_name.map(str::to_owned);
        user.avatar_url = avatar_url.map(str::to_owned);
        Ok(())
    }

    async fn search(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<User>> {
        let inner = self.inner.read();
        let after = after.unwrap_or("");
        Ok(inner
            .by_name
            .range::<str, _>((
                std::ops::Bound::Included(prefix.max(after)),
                std::ops::Bound::Unbounded,
            ))
            .filter(|(name, _)| name.as_str() > after)
            .take_while(|(name, _)| name.starts_with(prefix))
            .filter_map(|(_, id)| inner.by_id.get(id))
            .take(limit)
            .cloned()
            .collect())
    }
}

type GroupEntry = (Group, BTreeMap<UserId, Member>);

/// Groups and members in memory.
#[derive(Debug, Default)]
pub struct MemoryGroupStore {
    inner: RwLock<HashMap<GroupId, GroupEntry>>,
}

impl MemoryGroupStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn no_group(g: GroupId) -> Error {
    Error::NotFound(format!("no group {g}"))
}

#[async_trait]
impl GroupStore for MemoryGroupStore {
    async fn create(&self, group: &Group) -> Result<()> {
        let mut inner = self.inner.write();
        if inner.contains_key(&group.id) {
            return Err(Error::Conflict(format!("group {} exists", group.id)));
        }
        let mut members = BTreeMap::new();
        members.insert(group.owner, Member::new(group.owner, Role::Owner));
        inner.insert(group.id, (group.clone(), members));
        Ok(())
    }

    async fn get(&self, id: GroupId) -> Result<Option<Group>> {
        Ok(self.inner.read().get(&id).map(|(g, _)| g.clone()))
    }

    async fn add_member(&self, group: GroupId, member: Member) -> Result<()> {
        let mut inner = self.inner.write();
        let (_, members) = inner.get_mut(&group).ok_or_else(|| no_group(group))?;
        if members.contains_key(&member.user_id) {
            return Err(Error::Conflict(format!(
                "user {} is already a member of group {group}",
                member.user_id
            )));
        }
        members.insert(member.user_id, member);
        Ok(())
    }

    async fn remove_member(&self, group: GroupId, user: UserId) -> Result<()> {
        let mut inner = self.inner.write();
        let (_, members) = inner.get_mut(&group).ok_or_else(|| no_group(group))?;
        members
            .remove(&user)
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(format!("user {user} is not a member of group {group}")))
    }

    async fn set_role(&self, group: GroupId, user: UserId, role: Role) -> Result<()> {
        let mut inner = self.inner.write();
        let (g, members) = inner.get_mut(&group).ok_or_else(|| no_group(group))?;
        let slot = members.get_mut(&user).ok_or_else(|| {
            Error::NotFound(format!("user {user} is not a member of group {group}"))
        })?;
        slot.role = role;
        if role == Role::Owner {
            g.owner = user;
        }
        Ok(())
    }

    async fn role_of(&self, group: GroupId, user: UserId) -> Result<Option<Role>> {
        Ok(self
            .inner
            .read()
            .get(&group)
            .and_then(|(_, m)| m.get(&user).map(|m| m.role)))
    }

    async fn members(&self, group: GroupId) -> Result<Vec<Member>> {
        Ok(self
            .inner
            .read()
            .get(&group)
            .map(|(_, m)| m.values().copied().collect())
            .unwrap_or_default())
    }

    async fn member(&self, group: GroupId, user: UserId) -> Result<Option<Member>> {
        Ok(self
            .inner
            .read()
            .get(&group)
            .and_then(|(_, m)| m.get(&user).copied()))
    }

    async fn rename(&self, group: GroupId, name: &str) -> Result<()> {
        let mut inner = self.inner.write();
        let (g, _) = inner.get_mut(&group).ok_or_else(|| no_group(group))?;
        g.name = name.to_owned();
        Ok(())
    }

    async fn transfer(&self, group: GroupId, to: UserId) -> Result<()> {
        let mut inner = self.inner.write();
        let (g, members) = inner.get_mut(&group).ok_or_else(|| no_group(group))?;
        if !members.contains_key(&to) {
            return Err(not_member(group, to));
        }
        if let Some(old) = members.get_mut(&g.owner) {
            old.role = Role::Admin;
        }
        if let Some(new) = members.get_mut(&to) {
            new.role = Role::Owner;
        }
        g.owner = to;
        Ok(())
    }

    async fn set_history_visible(&self, group: GroupId, visible: bool) -> Result<()> {
        let mut inner = self.inner.write();
        let (g, _) = inner.get_mut(&group).ok_or_else(|| no_group(group))?;
        g.history_visible = visible;
        Ok(())
    }

    async fn mute_group(&self, group: GroupId, until: Option<i64>) -> Result<()> {
        let mut inner = self.inner.write();
        let (g, _) = inner.get_mut(&group).ok_or_else(|| no_group(group))?;
        g.muted_until = until;
        Ok(())
    }

    async fn mute_member(&self, group: GroupId, user: UserId, until: Option<i64>) -> Result<()> {
        let mut inner = self.inner.write();
        let (_, members) = inner.get_mut(&group).ok_or_else(|| no_group(group))?;
        let m = members
            .get_mut(&user)
            .ok_or_else(|| not_member(group, user))?;
        m.muted_until = until;
        Ok(())
    }

    async fn delete(&self, group: GroupId) -> Result<()> {
        self.inner
            .write()
            .remove(&group)
            .map(|_| ())
            .ok_or_else(|| no_group(group))
    }
}

fn not_member(group: GroupId, user: UserId) -> Error {
    Error::NotFound(format!("user {user} is not a member of group {group}"))
}
