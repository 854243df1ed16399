//! # im-discovery
//!
//! Service discovery for the **im** SDK: implementations of the
//! [`Discovery`](im_core::ports::Discovery) port, and client-side balancers
//! that pick one instance of a discovered set.
//!
//! # Layout
//! - [`etcd`] (feature `etcd`, on by default): [`EtcdDiscovery`], instances
//!   registered under a kept-alive lease and watched by prefix, surviving
//!   etcd restarts.
//! - [`static_list`]: [`StaticDiscovery`], a fixed list from configuration.
//! - [`balancer`]: [`RoundRobin`](balancer::RoundRobin) and the consistent-hash
//!   [`HashRing`](balancer::HashRing), both over `&[ServiceInstance]`.
//!
//! The in-memory registry for a single process is
//! [`im_core::memory::MemoryDiscovery`].
#![warn(missing_docs)]

pub mod balancer;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod static_list;

#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdDiscovery};
pub use static_list::StaticDiscovery;
