//! Conversation features: read cursors, recall, typing, and the
//! conversation list with unread counts.

use crate::error::{Error, Result};
use crate::id::{now_ms, ConversationId, MessageId, SessionId, UserId};
use crate::model::{Event, EventAudience, NodeId, Role, Target};
use crate::ports::ListCursor;

use super::{ConversationPage, Logic};

impl Logic {
    pub(super) async fn mark_conversation_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
        origin: Option<(NodeId, SessionId)>,
    ) -> Result<()> {
        self.authorize_read(user, conversation).await?;
        let last = self.ports.sequences.current(conversation).await?;
        if seq > last {
            return Err(Error::InvalidArgument(format!(
                "seq {seq} is past the last seq {last} of {conversation}"
            )));
        }
        if !self
            .ports
            .conversations
            .mark_read(user, conversation, seq)
            .await?
        {
            return Ok(());
        }
        self.publish_event(
            Event::Read {
                conversation_id: conversation,
                user_id: user,
                seq,
            },
            EventAudience::Conversation {
                conversation_id: conversation,
                except: None,
            },
            origin,
        )
        .await
    }

    pub(super) async fn recall_message(&self, actor: UserId, msg_id: MessageId) -> Result<()> {
        let message = self
            .ports
            .messages
            .get(msg_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no message {msg_id}")))?;
        // Someone who cannot read the conversation learns nothing about it.
        if self
            .authorize_read(actor, message.conversation_id)
            .await
            .is_err()
        {
            return Err(Error::NotFound(format!("no message {msg_id}")));
        }
        if message.recalled {
            return Ok(());
        }
        let allowed = message.from == actor
            || match message.conversation_id {
                ConversationId::Group(g) => matches!(
                    self.ports.groups.role_of(g, actor).await?,
                    Some(Role::Owner | Role::Admin)
                ),
                ConversationId::Direct(..) => false,
            };
        if !allowed {
            return Err(Error::PermissionDenied(
                "only the sender, or a group owner or admin, can recall a message".into(),
            ));
        }
        let window = i64::try_from(self.config.recall_window.as_millis()).unwrap_or(i64::MAX);
        if now_ms().saturating_sub(message.ts) > window {
            return Err(Error::PermissionDenied(format!(
                "the recall window of {} s has passed",
                window / 1000
            )));
        }
        if !self.ports.messages.recall(msg_id).await? {
            return Ok(());
        }
        self.publish_event(
            Event::Recalled {
                conversation_id: message.conversation_id,
                msg_id,
                by: actor,
            },
            EventAudience::Conversation {
                conversation_id: message.conversation_id,
                except: None,
            },
            None,
        )
        .await
    }

    pub(super) async fn relay_typing(&self, user: UserId, to: Target) -> Result<()> {
        if to == Target::User(user) {
            return Err(Error::InvalidArgument("cannot type to yourself".into()));
        }
        let conversation = to.conversation(user)?;
        self.authorize_read(user, conversation).await?;
        self.publish_event(
            Event::Typing {
                conversation_id: conversation,
                from: user,
            },
            EventAudience::Conversation {
                conversation_id: conversation,
                except: Some(user),
            },
            None,
        )
        .await
    }

    pub(super) async fn list_conversations(
        &self,
        user: UserId,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<ConversationPage> {
        let after = match cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                ListCursor::decode(c)
                    .ok_or_else(|| Error::InvalidArgument("malformed cursor".into()))?,
            ),
        };
        let limit = limit
            .unwrap_or(self.config.default_conversations_page)
            .clamp(1, self.config.max_conversations_page) as usize;
        let mut rows = self
            .ports
            .conversations
            .list(user, after, limit + 1)
            .await?;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| ListCursor::after(r).encode())
        } else {
            None
        };
        Ok(ConversationPage {
            conversations: rows,
            next_cursor,
        })
    }
}
