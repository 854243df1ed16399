//! Sync and history: messages of a conversation after a seq, for participants only.

use crate::error::{Error, Result};
use crate::id::{ConversationId, UserId};

use super::{Logic, Page};

impl Logic {
    /// Checks that `user` may read `conversation`: 404 for an unknown peer or
    /// group, 403 for a non-participant.
    pub async fn authorize_read(&self, user: UserId, conversation: ConversationId) -> Result<()> {
        match conversation {
            ConversationId::Direct(a, b) => {
                let peer = if a == user {
                    b
                } else if b == user {
                    a
                } else {
                    return Err(Error::PermissionDenied(
                        "you are not a participant of this conversation".into(),
                    ));
                };
                if self.ports.users.existing(&[peer]).await?.is_empty() {
                    return Err(Error::NotFound(format!("no user {peer}")));
                }
                Ok(())
            }
            ConversationId::Group(g) => {
                if self.ports.groups.role_of(g, user).await?.is_some() {
                    return Ok(());
                }
                if self.ports.groups.get(g).await?.is_none() {
                    return Err(Error::NotFound(format!("no group {g}")));
                }
                Err(Error::PermissionDenied(format!(
                    "you are not a member of group {g}"
                )))
            }
        }
    }

    /// Checks that `user` may read `conversation` (as [`Logic::authorize_read`])
    /// and returns the seq up to which it may not (v1.2 join cutoff): a group
    /// member added later sees messages after its `joined_seq` unless the
    /// group shows earlier history; 0 otherwise.
    pub async fn read_cutoff(&self, user: UserId, conversation: ConversationId) -> Result<u64> {
        let ConversationId::Group(g) = conversation else {
            self.authorize_read(user, conversation).await?;
            return Ok(0);
        };
        match self.ports.groups.member(g, user).await? {
            Some(m) if m.joined_seq == 0 => Ok(0),
            Some(m) => Ok(match self.ports.groups.get(g).await? {
                Some(group) if group.history_visible => 0,
                _ => m.joined_seq,
            }),
            None => {
                self.authorize_read(user, conversation).await?;
                Err(Error::PermissionDenied(format!(
                    "you are not a member of group {g}"
                )))
            }
        }
    }

    pub(super) async fn sync(
        &self,
        user: UserId,
        conversation: ConversationId,
        after_seq: u64,
        limit: Option<u32>,
    ) -> Result<Page> {
        let after_seq = after_seq.max(self.read_cutoff(user, conversation).await?);
        let limit = limit
            .unwrap_or(self.config.default_page)
            .clamp(1, self.config.max_page) as usize;
        let mut messages = self
            .ports
            .messages
            .history(conversation, after_seq, limit + 1)
            .await?;
        let mut has_more = messages.len() > limit;
        messages.truncate(limit);
        // Keep a page within the byte budget (a WebSocket frame is bounded):
        // at least one message, then as many as fit; the rest is `has_more`.
        let mut bytes = 0usize;
        let mut fits = messages.len();
        for (i, m) in messages.iter().enumerate() {
            bytes += serde_json::to_vec(m).map(|v| v.len()).unwrap_or(0) + 1;
            if i > 0 && bytes > self.config.max_page_bytes {
                fits = i;
                break;
            }
        }
        if fits < messages.len() {
            messages.truncate(fits);
            has_more = true;
        }
        Ok(Page { messages, has_more })
    }
}
