//! The message archive and the conversation index spread over several
//! databases ("shards") by conversation.
//!
//! A conversation lives on exactly one shard, chosen by the queue's own
//! partition function: `shard = partition_of(conversation.shard_hash(),
//! partitions) % shards` ([`ShardMap`]). So the persist worker of a queue
//! partition writes to one shard, a conversation's history, last seq and read
//! cursors are one shard's reads, and moving shards means moving whole
//! partitions (docs/deployment.md, "Resharding the archive").
//!
//! What stays unsharded is not here: users, groups and memberships live on the
//! primary database and are passed around as their own ports.
//!
//! Reads that do not name a conversation fan out to every shard at once, in
//! parallel, bounded by the number of shards: [`MessageStore::get`] and
//! [`MessageStore::recall`] by message id (rare: recalls and edits), and
//! [`ConversationStore::list`], which asks each shard for one page and merges
//! them (a user's conversations are spread over all shards).

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::{join_all, BoxFuture};

use crate::error::{Error, Result};
use crate::id::{ConversationId, MessageId, UserId};
use crate::model::Message;
use crate::ports::{partition_of, ConversationEntry, ConversationStore, ListCursor, MessageStore};

/// Which shard holds a conversation.
///
/// ```
/// use im_core::compose::ShardMap;
/// use im_core::id::{ConversationId, GroupId};
///
/// let map = ShardMap::new(64, 2).unwrap();
/// let c = ConversationId::Group(GroupId(7));
/// assert_eq!(map.shard_of(c), map.partition_of(c) as usize % 2);
/// assert!(ShardMap::new(64, 0).is_err(), "no shard");
/// assert!(ShardMap::new(4, 8).is_err(), "more shards than partitions");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardMap {
    partitions: u32,
    shards: u32,
}

impl ShardMap {
    /// `shards` shards over the queue's `partitions` partitions (the
    /// deployment's queue partition count: both must stay fixed, or rows
    /// must move). `InvalidArgument` for no shard, or more shards than
    /// partitions (a shard would never get a conversation).
    pub fn new(partitions: u32, shards: u32) -> Result<Self> {
        let partitions = partitions.max(1);
        if shards == 0 || shards > partitions {
            return Err(Error::InvalidArgument(format!(
                "archive shards: {shards} shards over {partitions} partitions (need 1..=partitions)"
            )));
        }
        Ok(ShardMap { partitions, shards })
    }

    /// How many shards.
    pub fn shards(&self) -> usize {
        self.shards as usize
    }

    /// The queue partition of a conversation.
    pub fn partition_of(&self, conversation: ConversationId) -> u32 {
        partition_of(conversation.shard_hash(), self.partitions)
    }

    /// The shard of a conversation (`0..shards`).
    pub fn shard_of(&self, conversation: ConversationId) -> usize {
        (self.partition_of(conversation) % self.shards) as usize
    }

    /// The partitions a shard holds, ascending (for resharding and checks).
    pub fn partitions_of(&self, shard: usize) -> Vec<u32> {
        (0..self.partitions)
            .filter(|p| (p % self.shards) as usize == shard)
            .collect()
    }

    /// `batch` split by shard, order kept within each. `None` when it all
    /// goes to one shard (the common case: the caller passes it unsplit,
    /// without cloning), with that shard.
    fn split(&self, batch: &[Message]) -> std::result::Result<Vec<Vec<Message>>, usize> {
        let first = match batch.first() {
            Some(m) => self.shard_of(m.conversation_id),
            None => return Err(0),
        };
        if batch
            .iter()
            .all(|m| self.shard_of(m.conversation_id) == first)
        {
            return Err(first);
        }
        let mut out = vec![Vec::new(); self.shards()];
        for m in batch {
            out[self.shard_of(m.conversation_id)].push(m.clone());
        }
        Ok(out)
    }
}

/// One port per shard, in shard order, and the map between them: a
/// [`MessageStore`] as [`ShardedMessageStore`], a [`ConversationStore`] as
/// [`ShardedConversationStore`].
pub struct Sharded<T: ?Sized> {
    map: ShardMap,
    shards: Vec<Arc<T>>,
}

/// A [`MessageStore`] over one store per shard.
pub type ShardedMessageStore = Sharded<dyn MessageStore>;

/// A [`ConversationStore`] over one store per shard, each paired with the
/// same shard's [`MessageStore`] when the backend reads the archive (the SQL
/// stores do: give shard *i* of both the same database).
pub type ShardedConversationStore = Sharded<dyn ConversationStore>;

impl<T: ?Sized> Sharded<T> {
    /// One port per shard, in shard order (`InvalidArgument` when the count
    /// is not the map's).
    pub fn new(map: ShardMap, shards: Vec<Arc<T>>) -> Result<Self> {
        if shards.len() != map.shards() {
            return Err(Error::InvalidArgument(format!(
                "archive shards: {} stores for a map of {} shards",
                shards.len(),
                map.shards()
            )));
        }
        Ok(Sharded { map, shards })
    }

    /// The map.
    pub fn map(&self) -> ShardMap {
        self.map
    }

    /// The port of the shard that holds `conversation`.
    pub fn of(&self, conversation: ConversationId) -> &T {
        &self.shards[self.map.shard_of(conversation)]
    }

    /// `f` on each shard's part of `batch`, all shards at once; a failure
    /// fails the whole (the persist worker retries the batch, and the
    /// archive's writes are idempotent).
    async fn per_shard<R>(
        &self,
        batch: &[Message],
        f: impl for<'b> Fn(&'b T, &'b [Message]) -> BoxFuture<'b, Result<R>>,
    ) -> Result<Vec<R>> {
        match self.map.split(batch) {
            Err(_) if batch.is_empty() => Ok(Vec::new()),
            Err(one) => Ok(vec![f(&self.shards[one], batch).await?]),
            Ok(parts) => join_all(
                parts
                    .iter()
                    .zip(&self.shards)
                    .filter(|(p, _)| !p.is_empty())
                    .map(|(p, s)| f(s, p)),
            )
            .await
            .into_iter()
            .collect(),
        }
    }
}

#[async_trait]
impl MessageStore for ShardedMessageStore {
    async fn append(&self, batch: &[Message]) -> Result<u64> {
        let added = self.per_shard(batch, |s, p| s.append(p)).await?;
        Ok(added.into_iter().sum())
    }

    async fn history(
        &self,
        conversation: ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.of(conversation)
            .history(conversation, after_seq, limit)
            .await
    }

    async fn last_seq(&self, conversation: ConversationId) -> Result<u64> {
        self.of(conversation).last_seq(conversation).await
    }

    async fn get(&self, msg_id: MessageId) -> Result<Option<Message>> {
        let results = join_all(self.shards.iter().map(|s| s.get(msg_id))).await;
        let mut found = None;
        let mut failure = None;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                // The home shard's copy wins over a stale one a reshard left.
                Ok(Some(m)) if self.map.shard_of(m.conversation_id) == i => return Ok(Some(m)),
                Ok(Some(m)) => found = Some(m),
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
        }
        match (found, failure) {
            (Some(m), _) => Ok(Some(m)),
            // Not found on the shards that answered: only an answer if all did.
            (None, Some(e)) => Err(e),
            (None, None) => Ok(None),
        }
    }

    async fn recall(&self, msg_id: MessageId) -> Result<bool> {
        // The shard that holds it answers; the others say NotFound.
        let results = join_all(self.shards.iter().map(|s| s.recall(msg_id))).await;
        let mut failure = None;
        for r in results {
            match r {
                Ok(changed) => return Ok(changed),
                Err(Error::NotFound(_)) => {}
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.unwrap_or_else(|| Error::NotFound(format!("message {msg_id}"))))
    }

    async fn edit(
        &self,
        msg_id: MessageId,
        body: &serde_json::Value,
        edited_at: i64,
    ) -> Result<bool> {
        // As recall: the shard that holds it answers.
        let results = join_all(self.shards.iter().map(|s| s.edit(msg_id, body, edited_at))).await;
        let mut failure = None;
        for r in results {
            match r {
                Ok(changed) => return Ok(changed),
                Err(Error::NotFound(_)) => {}
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.unwrap_or_else(|| Error::NotFound(format!("message {msg_id}"))))
    }
}

impl ShardedConversationStore {
    /// Up to `limit` rows of shard `i` after `after`, skipping conversations
    /// homed elsewhere (stale copies a reshard has not cleaned up yet; none
    /// otherwise, so this is one query).
    async fn home_page(
        &self,
        i: usize,
        user: UserId,
        mut after: Option<ListCursor>,
        limit: usize,
    ) -> Result<Vec<ConversationEntry>> {
        let mut out = Vec::new();
        loop {
            let page = self.shards[i].list(user, after, limit).await?;
            let full = page.len() == limit;
            after = page.last().map(ListCursor::after);
            out.extend(
                page.into_iter()
                    .filter(|e| self.map.shard_of(e.conversation_id) == i),
            );
            if out.len() >= limit || !full {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }
}

/// The list order: last message time, then conversation id (as text), both
/// descending — the order every backend pages by ([`ListCursor`]).
fn list_key(e: &ConversationEntry) -> (i64, String) {
    (e.last_message.ts, e.conversation_id.to_string())
}

#[async_trait]
impl ConversationStore for ShardedConversationStore {
    async fn record(&self, batch: &[Message]) -> Result<()> {
        self.per_shard(batch, |s, p| s.record(p)).await.map(drop)
    }

    async fn join(&self, user: UserId, conversation: ConversationId) -> Result<()> {
        self.of(conversation).join(user, conversation).await
    }

    async fn leave(&self, user: UserId, conversation: ConversationId) -> Result<()> {
        self.of(conversation).leave(user, conversation).await
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<bool> {
        self.of(conversation)
            .mark_read(user, conversation, seq)
            .await
    }

    async fn read_seq(&self, user: UserId, conversation: ConversationId) -> Result<u64> {
        self.of(conversation).read_seq(user, conversation).await
    }

    async fn list(
        &self,
        user: UserId,
        after: Option<ListCursor>,
        limit: usize,
    ) -> Result<Vec<ConversationEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Each shard's first `limit` rows after the cursor hold the merged
        // first `limit` rows: a conversation is on one shard only.
        let pages =
            join_all((0..self.shards.len()).map(|i| self.home_page(i, user, after, limit))).await;
        let mut rows = Vec::new();
        for page in pages {
            rows.extend(page?);
        }
        let mut keyed: Vec<_> = rows.into_iter().map(|e| (list_key(&e), e)).collect();
        keyed.sort_by(|a, b| b.0.cmp(&a.0));
        keyed.truncate(limit);
        Ok(keyed.into_iter().map(|(_, e)| e).collect())
    }

    async fn changed(&self, message: &Message) -> Result<()> {
        self.of(message.conversation_id).changed(message).await
    }

    async fn read_seqs(&self, cursors: &[(UserId, ConversationId)]) -> Result<Vec<u64>> {
        // One call per shard with its pairs, answers put back in order.
        let mut by_shard: Vec<(Vec<usize>, Vec<(UserId, ConversationId)>)> =
            vec![(Vec::new(), Vec::new()); self.shards.len()];
        for (i, pair) in cursors.iter().enumerate() {
            let s = self.map.shard_of(pair.1);
            by_shard[s].0.push(i);
            by_shard[s].1.push(*pair);
        }
        let answers = join_all(
            by_shard
                .iter()
                .enumerate()
                .map(|(s, (_, pairs))| async move {
                    if pairs.is_empty() {
                        Ok(Vec::new())
                    } else {
                        self.shards[s].read_seqs(pairs).await
                    }
                }),
        )
        .await;
        let mut out = vec![0; cursors.len()];
        for ((at, _), answer) in by_shard.iter().zip(answers) {
            for (i, seq) in at.iter().zip(answer?) {
                out[*i] = seq;
            }
        }
        Ok(out)
    }

    async fn mention_seqs(
        &self,
        user: UserId,
        conversations: &[ConversationId],
    ) -> Result<Vec<u64>> {
        let mut by_shard: Vec<(Vec<usize>, Vec<ConversationId>)> =
            vec![(Vec::new(), Vec::new()); self.shards.len()];
        for (i, c) in conversations.iter().enumerate() {
            let s = self.map.shard_of(*c);
            by_shard[s].0.push(i);
            by_shard[s].1.push(*c);
        }
        let answers = join_all(
            by_shard
                .iter()
                .enumerate()
                .map(|(s, (_, convs))| async move {
                    if convs.is_empty() {
                        Ok(Vec::new())
                    } else {
                        self.shards[s].mention_seqs(user, convs).await
                    }
                }),
        )
        .await;
        let mut out = vec![0; conversations.len()];
        for ((at, _), answer) in by_shard.iter().zip(answers) {
            for (i, seq) in at.iter().zip(answer?) {
                out[*i] = seq;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::GroupId;

    #[test]
    fn every_partition_has_one_shard_and_shards_cover_them() {
        let map = ShardMap::new(64, 3).unwrap();
        let mut all: Vec<u32> = (0..3).flat_map(|s| map.partitions_of(s)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..64).collect::<Vec<_>>());
        for g in 0..200 {
            let c = ConversationId::Group(GroupId(g));
            assert!(map
                .partitions_of(map.shard_of(c))
                .contains(&map.partition_of(c)));
        }
    }

    #[test]
    fn doubling_the_shards_moves_only_partitions_to_the_new_ones() {
        let two = ShardMap::new(64, 2).unwrap();
        let four = ShardMap::new(64, 4).unwrap();
        for g in 0..500 {
            let c = ConversationId::Group(GroupId(g));
            let (before, after) = (two.shard_of(c), four.shard_of(c));
            assert!(
                after == before || after == before + 2,
                "{c}: {before} → {after}"
            );
        }
    }
}
