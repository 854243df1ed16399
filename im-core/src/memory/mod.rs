//! In-memory implementations of every port: the embedded default of a single
//! node. They are bounded where they must be (queue capacity, history kept per
//! conversation), expire what has a TTL (dedup keys, session routes), and pass
//! the same conformance suites as the networked backends.

mod contacts;
mod conversation;
mod dedup;
mod device;
mod discovery;
mod lease;
mod objects;
mod queue;
mod revocation;
mod schedule;
mod seq;
mod session;
mod store;
mod throttle;

pub use contacts::MemoryContactStore;
pub use conversation::MemoryConversationStore;
pub use dedup::MemoryDedupStore;
pub use device::MemoryDeviceStore;
pub use discovery::MemoryDiscovery;
pub use lease::MemoryPartitionLeases;
pub use objects::{MemoryObjectStorage, SignedOp, OBJECTS_PATH};
pub use queue::MemoryQueue;
pub use revocation::MemoryTokenRevocations;
pub use schedule::MemoryScheduleStore;
pub use seq::MemorySequenceAllocator;
pub use session::MemorySessionStore;
pub use store::{MemoryGroupStore, MemoryMessageStore, MemoryUserStore};
pub use throttle::MemoryThrottle;
