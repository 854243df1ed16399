//! Adapters that build one port out of others.
//!
//! - [`send`]: a [`SendPipeline`](crate::ports::SendPipeline) out of a dedup
//!   store, a sequence allocator and a queue.
//! - [`shards`]: a message archive and conversation index spread over several
//!   databases by conversation partition (any backend, e.g. N MySQL servers).

pub mod send;
pub mod shards;

pub use send::ComposedSendPipeline;
pub use shards::{ShardMap, Sharded, ShardedConversationStore, ShardedMessageStore};
