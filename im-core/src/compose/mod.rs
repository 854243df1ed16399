//! Adapters that build one port out of others.
//!
//! - [`send`]: a [`SendPipeline`](crate::ports::SendPipeline) out of a dedup
//!   store, a sequence allocator and a queue.
//! - [`seeded`]: an in-memory sequence allocator that continues after the
//!   seqs of a durable archive (what [`NodeBuilder`](crate::builder::NodeBuilder)
//!   uses when you give it an archive but no allocator).
//! - [`shards`]: a message archive and conversation index spread over several
//!   databases by conversation partition (any backend, e.g. N MySQL servers).

pub mod seeded;
pub mod send;
pub mod shards;

pub use seeded::SeededSequenceAllocator;
pub use send::ComposedSendPipeline;
pub use shards::{ShardMap, Sharded, ShardedConversationStore, ShardedMessageStore};
