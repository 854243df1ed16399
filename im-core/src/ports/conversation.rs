//! `ConversationStore`: each user's conversation list, read cursors and
//! unread counts.
//!
//! The persist worker feeds it every persisted batch ([`ConversationStore::record`]);
//! Logic lists group conversations for their members ([`ConversationStore::join`])
//! and moves read cursors ([`ConversationStore::mark_read`]).

use async_trait::async_trait;

use crate::error::Result;
use crate::id::{ConversationId, UserId};
use crate::model::Message;

/// One row of a user's conversation list.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationEntry {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its message with the highest seq recorded.
    pub last_message: Message,
    /// That message's seq.
    pub last_seq: u64,
    /// The user's read cursor (0: nothing read).
    pub read_seq: u64,
    /// Messages from others with a seq above `read_seq`.
    pub unread: u64,
    /// v1.2, 1:1 conversations: the peer's read cursor (filled by Logic,
    /// stores leave it `None`).
    pub peer_read_seq: Option<u64>,
    /// v1.2: a message above `read_seq` mentions the user (filled by Logic
    /// from [`ConversationStore::mention_seqs`]; stores leave it `false`).
    pub mentioned: bool,
}

impl ConversationEntry {
    /// An entry as a store lists it (the v1.2 fields Logic fills are unset).
    pub fn new(last_message: Message, read_seq: u64, unread: u64) -> Self {
        ConversationEntry {
            conversation_id: last_message.conversation_id,
            last_seq: last_message.seq,
            last_message,
            read_seq,
            unread,
            peer_read_seq: None,
            mentioned: false,
        }
    }
}

/// Where a page of the conversation list continues: strictly older than this
/// (last message time, then conversation id, both descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    /// `ts` of the last message of the previous page's last row.
    pub ts: i64,
    /// That row's conversation.
    pub conversation_id: ConversationId,
}

impl ListCursor {
    /// The cursor after `entry`.
    pub fn after(entry: &ConversationEntry) -> Self {
        ListCursor {
            ts: entry.last_message.ts,
            conversation_id: entry.conversation_id,
        }
    }

    /// The opaque wire form: `{ts}~{conversation_id}`.
    pub fn encode(&self) -> String {
        format!("{}~{}", self.ts, self.conversation_id)
    }

    /// Parses [`ListCursor::encode`]'s output.
    pub fn decode(s: &str) -> Option<Self> {
        let (ts, c) = s.split_once('~')?;
        Some(ListCursor {
            ts: ts.parse().ok()?,
            conversation_id: c.parse().ok()?,
        })
    }

    /// Whether a row with last message time `ts` of `conversation` comes after
    /// this cursor in list order.
    pub fn is_before(&self, ts: i64, conversation: ConversationId) -> bool {
        (ts, conversation.to_string()) < (self.ts, self.conversation_id.to_string())
    }
}

/// Conversation lists, read cursors and unread counts.
///
/// A backend may read the last message and unread counts from the message
/// archive it shares with a [`MessageStore`](super::MessageStore) (the SQL
/// stores do), so `record` a batch only after `append`ing it, as the persist
/// worker does.
///
/// Contract (see `testkit::conversations`):
/// - `record` is idempotent and order-insensitive: a conversation's last
///   message is the recorded one with the highest seq; recording a 1:1 message
///   lists the conversation for both parties.
/// - `join` lists a conversation for a user (group members); `leave` unlists
///   it. A listed conversation appears in `list` once it has a recorded message.
/// - `mark_read` only moves a cursor forward and says whether it moved.
/// - `list` orders by the last message's `ts` descending, then conversation id
///   descending, and pages with [`ListCursor`].
/// - `unread` counts recorded messages from others with a seq above the cursor.
/// - `mention_seqs` answers, per conversation, the higher of: the highest
///   recorded seq of a message that mentions the user by id, and the seq of
///   the conversation's latest `all` mention when someone else sent it (only
///   the latest `all` is kept; its sender is not mentioned by it, see
///   [`crate::model::Mentions::includes`]); 0 when none.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// Indexes persisted messages.
    async fn record(&self, batch: &[Message]) -> Result<()>;

    /// Lists `conversation` for `user` (idempotent).
    async fn join(&self, user: UserId, conversation: ConversationId) -> Result<()>;

    /// Unlists `conversation` for `user` (idempotent).
    async fn leave(&self, user: UserId, conversation: ConversationId) -> Result<()>;

    /// Moves the read cursor of `user` in `conversation` up to `seq`; returns
    /// whether it moved (a lower or equal seq is a no-op).
    async fn mark_read(&self, user: UserId, conversation: ConversationId, seq: u64)
        -> Result<bool>;

    /// The read cursor (0 when never set).
    async fn read_seq(&self, user: UserId, conversation: ConversationId) -> Result<u64>;

    /// A page of the user's conversations, newest last message first.
    async fn list(
        &self,
        user: UserId,
        after: Option<ListCursor>,
        limit: usize,
    ) -> Result<Vec<ConversationEntry>>;

    /// Read cursors of many (user, conversation) pairs, in order (0 when
    /// never set). The default asks [`ConversationStore::read_seq`] per
    /// pair; backends answer in one round trip.
    async fn read_seqs(&self, cursors: &[(UserId, ConversationId)]) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(cursors.len());
        for (user, conversation) in cursors {
            out.push(self.read_seq(*user, *conversation).await?);
        }
        Ok(out)
    }

    /// A recorded message changed after it was recorded (edited or
    /// recalled): a backend that keeps its own copy of last messages updates
    /// it. The default does nothing, which is right for backends that read
    /// the last message from the archive (the SQL stores).
    async fn changed(&self, message: &Message) -> Result<()> {
        let _ = message;
        Ok(())
    }

    /// For each of `conversations`, in order, the highest recorded seq of a
    /// message that mentions `user` (0 when none): see the contract above.
    async fn mention_seqs(
        &self,
        user: UserId,
        conversations: &[ConversationId],
    ) -> Result<Vec<u64>>;
}
