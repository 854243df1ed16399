//! `SendHook`: application code around the send path — before a message is
//! accepted (allow, reject, or rewrite its body) and after it is acked
//! (notification).
//!
//! Hooks see whole batches, as the send path is batched: an idle hook costs
//! nothing, a busy one one call per batch, not one per message.

use async_trait::async_trait;

use crate::error::Result;
use crate::id::{ConversationId, UserId};
use crate::model::{Message, MessageKind, Target};

/// A send that passed validation and authorization, before it is accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingSend {
    /// The authenticated sender.
    pub from: UserId,
    /// The addressee.
    pub to: Target,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// The kind of body.
    pub kind: MessageKind,
    /// The body as sent.
    pub body: serde_json::Value,
    /// The sender's idempotency key.
    pub client_msg_id: String,
}

/// What a before-hook decides about one send.
#[derive(Debug, Clone, PartialEq)]
pub enum HookVerdict {
    /// Accept it as it is.
    Allow,
    /// Refuse it; the reason reaches the sender as `permission_denied`.
    Reject(String),
    /// Accept it with this body instead (same kind; the size limit applies).
    Rewrite(serde_json::Value),
}

/// Code run around the send path.
///
/// Contract: `before_send` answers one verdict per send, in order (a shorter
/// or longer answer is treated as an error); an `Err` refuses the whole batch
/// with that error (a hook that wants to fail open returns `Allow` instead).
/// `after_send` runs after the acks went out and cannot change anything; it
/// must not block for long (spawn or queue slow work).
#[async_trait]
pub trait SendHook: Send + Sync + 'static {
    /// Decides about a batch of sends before they are accepted.
    async fn before_send(&self, batch: &[PendingSend]) -> Result<Vec<HookVerdict>> {
        Ok(vec![HookVerdict::Allow; batch.len()])
    }

    /// Learns about accepted messages (with their seq), after the ack.
    async fn after_send(&self, _batch: &[Message]) {}
}
