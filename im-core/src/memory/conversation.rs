//! The in-memory `ConversationStore`: conversation lists, read cursors and
//! unread counts.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use parking_lot::RwLock;

use crate::error::Result;
use crate::id::{ConversationId, UserId};
use crate::model::{Mentions, Message};
use crate::ports::{ConversationEntry, ConversationStore, ListCursor};

#[derive(Debug, Default)]
struct Conv {
    last: Option<Message>,
    /// Sender of each recent seq (for unread counts), bounded.
    senders: BTreeMap<u64, UserId>,
}

#[derive(Debug, Default)]
struct State {
    convs: HashMap<ConversationId, Conv>,
    listed: HashMap<UserId, HashSet<ConversationId>>,
    read: HashMap<(UserId, ConversationId), u64>,
    /// Highest seq mentioning a user by id, per (user, conversation).
    mentioned: HashMap<(UserId, ConversationId), u64>,
    /// Highest seq of an `all` mention per conversation, and its sender.
    mentioned_all: HashMap<ConversationId, (u64, UserId)>,
}

/// Conversation lists in memory; unread counts consider the most recent
/// `keep_per_conversation` messages of each conversation.
#[derive(Debug)]
pub struct MemoryConversationStore {
    state: RwLock<State>,
    keep_per_conversation: usize,
}

impl Default for MemoryConversationStore {
    fn default() -> Self {
        MemoryConversationStore::new(10_000)
    }
}

impl MemoryConversationStore {
    /// A store counting unread messages among the last `keep_per_conversation`
    /// of each conversation.
    pub fn new(keep_per_conversation: usize) -> Self {
        MemoryConversationStore {
            state: RwLock::new(State::default()),
            keep_per_conversation: keep_per_conversation.max(1),
        }
    }
}

#[async_trait]
impl ConversationStore for MemoryConversationStore {
    async fn record(&self, batch: &[Message]) -> Result<()> {
        let mut st = self.state.write();
        for m in batch {
            let st = &mut *st;
            let c = st.convs.entry(m.conversation_id).or_default();
            if c.last.as_ref().is_none_or(|l| l.seq < m.seq) {
                c.last = Some(m.clone());
            }
            c.senders.insert(m.seq, m.from);
            match &m.mentions {
                Some(Mentions::Users(users)) => {
                    for u in users {
                        let slot = st.mentioned.entry((*u, m.conversation_id)).or_insert(0);
                        *slot = (*slot).max(m.seq);
                    }
                }
                Some(Mentions::All) => {
                    let slot = st
                        .mentioned_all
                        .entry(m.conversation_id)
                        .or_insert((0, m.from));
                    if m.seq > slot.0 {
                        *slot = (m.seq, m.from);
                    }
                }
                None => {}
            }
            while c.senders.len() > self.keep_per_conversation {
                c.senders.pop_first();
            }
            if let ConversationId::Direct(a, b) = m.conversation_id {
                st.listed.entry(a).or_default().insert(m.conversation_id);
                st.listed.entry(b).or_default().insert(m.conversation_id);
            }
        }
        Ok(())
    }

    async fn join(&self, user: UserId, conversation: ConversationId) -> Result<()> {
        self.state
            .write()
            .listed
            .entry(user)
            .or_default()
            .insert(conversation);
        Ok(())
    }

    async fn leave(&self, user: UserId, conversation: ConversationId) -> Result<()> {
        let mut st = self.state.write();
        if let Some(l) = st.listed.get_mut(&user) {
            l.remove(&conversation);
        }
        Ok(())
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<bool> {
        let mut st = self.state.write();
        let cur = st.read.entry((user, conversation)).or_insert(0);
        if seq > *cur {
            *cur = seq;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn read_seq(&self, user: UserId, conversation: ConversationId) -> Result<u64> {
        Ok(self
            .state
            .read()
            .read
            .get(&(user, conversation))
            .copied()
            .unwrap_or(0))
    }

    async fn list(
        &self,
        user: UserId,
        after: Option<ListCursor>,
        limit: usize,
    ) -> Result<Vec<ConversationEntry>> {
        let st = self.state.read();
        let Some(listed) = st.listed.get(&user) else {
            return Ok(Vec::new());
        };
        let mut rows: Vec<(i64, String, ConversationId, &Conv, &Message)> = listed
            .iter()
            .filter_map(|c| {
                let conv = st.convs.get(c)?;
                let last = conv.last.as_ref()?;
                Some((last.ts, c.to_string(), *c, conv, last))
            })
            .filter(|(ts, _, c, _, _)| after.is_none_or(|a| a.is_before(*ts, *c)))
            .collect();
        rows.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        Ok(rows
            .into_iter()
            .take(limit)
            .map(|(_, _, c, conv, last)| {
                let read_seq = st.read.get(&(user, c)).copied().unwrap_or(0);
                let unread = conv
                    .senders
                    .range(read_seq.saturating_add(1)..)
                    .filter(|(_, from)| **from != user)
                    .count() as u64;
                ConversationEntry::new(last.clone(), read_seq, unread)
            })
            .collect())
    }

    async fn changed(&self, message: &Message) -> Result<()> {
        let mut st = self.state.write();
        if let Some(c) = st.convs.get_mut(&message.conversation_id) {
            if let Some(last) = c.last.as_mut().filter(|l| l.msg_id == message.msg_id) {
                *last = message.clone();
            }
        }
        Ok(())
    }

    async fn read_seqs(&self, cursors: &[(UserId, ConversationId)]) -> Result<Vec<u64>> {
        let st = self.state.read();
        Ok(cursors
            .iter()
            .map(|k| st.read.get(k).copied().unwrap_or(0))
            .collect())
    }

    async fn mention_seqs(
        &self,
        user: UserId,
        conversations: &[ConversationId],
    ) -> Result<Vec<u64>> {
        let st = self.state.read();
        Ok(conversations
            .iter()
            .map(|c| {
                let direct = st.mentioned.get(&(user, *c)).copied().unwrap_or(0);
                let all = match st.mentioned_all.get(c) {
                    Some((seq, from)) if *from != user => *seq,
                    _ => 0,
                };
                direct.max(all)
            })
            .collect())
    }
}
