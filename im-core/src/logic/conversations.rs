//! Conversation features: read cursors, recall, typing, and the
//! conversation list with unread counts.

use crate::error::{Error, Result};
use crate::id::{now_ms, ConversationId, MessageId, SessionId, Snowflake, UserId};
use crate::model::{Event, EventAudience, Message, NodeId, Role, Target};
use crate::ports::{ConversationEntry, ListCursor};

use super::{ConversationPage, Logic};

/// How long a just-accepted message is waited for in the store.
const PERSIST_GRACE: std::time::Duration = std::time::Duration::from_millis(1500);
const PERSIST_GRACE_MS: i64 = 1500;

impl Logic {
    /// v1.2 fields of a page of the list: the peer's read cursor of each 1:1
    /// row and whether a group row mentions the user above its read cursor
    /// (two batched store calls per page).
    async fn fill_people(&self, user: UserId, rows: &mut [ConversationEntry]) -> Result<()> {
        let peers: Vec<(usize, (UserId, ConversationId))> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r.conversation_id {
                ConversationId::Direct(a, b) => {
                    Some((i, (if a == user { b } else { a }, r.conversation_id)))
                }
                ConversationId::Group(_) => None,
            })
            .collect();
        if !peers.is_empty() {
            let pairs: Vec<_> = peers.iter().map(|(_, p)| *p).collect();
            let seqs = self.ports.conversations.read_seqs(&pairs).await?;
            for ((i, _), seq) in peers.iter().zip(seqs) {
                if let Some(r) = rows.get_mut(*i) {
                    r.peer_read_seq = Some(seq);
                }
            }
        }
        let groups: Vec<(usize, ConversationId)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.conversation_id, ConversationId::Group(_)) && r.unread > 0)
            .map(|(i, r)| (i, r.conversation_id))
            .collect();
        if !groups.is_empty() {
            let convs: Vec<_> = groups.iter().map(|(_, c)| *c).collect();
            let seqs = self.ports.conversations.mention_seqs(user, &convs).await?;
            for ((i, _), seq) in groups.iter().zip(seqs) {
                if let Some(r) = rows.get_mut(*i) {
                    r.mentioned = seq > r.read_seq;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn mark_read(
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

    /// A stored message; a message accepted in the last few seconds may still
    /// be on its way to the store (persisting is asynchronous), so it is
    /// waited for up to [`PERSIST_GRACE`] (the protocol promises history
    /// within a second).
    pub(super) async fn stored_message(&self, msg_id: MessageId) -> Result<Option<Message>> {
        if let Some(m) = self.ports.messages.get(msg_id).await? {
            return Ok(Some(m));
        }
        let born = i64::try_from(Snowflake::unix_ms_of(msg_id)).unwrap_or(0);
        let age = now_ms().saturating_sub(born);
        if !(0..PERSIST_GRACE_MS * 2).contains(&age) {
            return Ok(None);
        }
        let deadline = tokio::time::Instant::now() + PERSIST_GRACE;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if let Some(m) = self.ports.messages.get(msg_id).await? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    pub(super) async fn recall(&self, actor: UserId, msg_id: MessageId) -> Result<()> {
        let message = self
            .stored_message(msg_id)
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
        if message.recalled {
            // Recalling again is a no-op for whoever may recall it.
            return Ok(());
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
        let recalled = Message {
            body: serde_json::Value::Null,
            recalled: true,
            ..message.clone()
        };
        self.ports.conversations.changed(&recalled).await?;
        self.forget_attachment(&message).await;
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

    pub(super) async fn typing(&self, user: UserId, to: Target) -> Result<()> {
        if to == Target::User(user) {
            return Err(Error::InvalidArgument("cannot type to yourself".into()));
        }
        let conversation = to.conversation(user)?;
        self.authorize_read(user, conversation).await?;
        if let Target::Group(g) = to {
            // Who may not send may not type either.
            let now = now_ms();
            let muted = match self.ports.groups.member(g, user).await? {
                Some(m) if m.is_muted(now) => true,
                Some(m) if m.role == Role::Member => self
                    .ports
                    .groups
                    .get(g)
                    .await?
                    .is_some_and(|g| g.is_muted(now)),
                _ => false,
            };
            if muted {
                return Err(Error::PermissionDenied(format!(
                    "you are muted in group {g}"
                )));
            }
        }
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

    pub(super) async fn conversations(
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
        self.fill_people(user, &mut rows).await?;
        Ok(ConversationPage {
            conversations: rows,
            next_cursor,
        })
    }
}
