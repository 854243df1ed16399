//! Client-side balancers that pick one instance out of a discovered set.
//!
//! Both work over a plain `&[ServiceInstance]` (for example the current value
//! of a [`Discovery::watch`](im_core::ports::Discovery::watch) receiver), so
//! they carry no I/O and no lock:
//!
//! - [`RoundRobin`] spreads calls evenly with one atomic counter.
//! - [`HashRing`] maps a key (a user id, a conversation id) to the same
//!   instance for as long as membership does not change, and moves only about
//!   `1/(n+1)` of the keys when an instance joins.

mod hash_ring;
mod round_robin;

pub use hash_ring::{HashRing, DEFAULT_VIRTUAL_NODES};
pub use round_robin::RoundRobin;
