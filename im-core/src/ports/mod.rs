//! The ports: one trait per pluggable part of the system.
//!
//! Every trait is object-safe (`Arc<dyn Trait>`), `Send + Sync + 'static`, and
//! batch-first where the hot path needs it. Production backends live in
//! `im-store` (Redis, MySQL, SQLite) and `im-discovery` (etcd); the in-memory
//! ones in [`crate::memory`] are the embedded default. Every backend must pass
//! the conformance suites of `crate::testkit` (feature `testkit`).

mod auth;
mod contacts;
mod conversation;
mod dedup;
mod discovery;
mod guard;
mod hook;
mod lease;
mod notify;
mod objects;
mod push;
mod queue;
mod revocation;
mod schedule;
mod send;
mod seq;
mod session;
mod store;
mod throttle;

pub use auth::{Authenticator, Identity, IssuedToken};
pub use contacts::{Contact, ContactRequest, ContactStore, Direction, Reach, RequestOutcome};
pub use conversation::{ConversationEntry, ConversationStore, ListCursor};
pub use dedup::{DedupKey, DedupStore};
pub use discovery::{Discovery, ServiceInstance};
pub use guard::{AllowAll, RegistrationAttempt, RegistrationGuard};
pub use hook::{HookVerdict, PendingSend, SendHook};
pub use lease::PartitionLeases;
pub use notify::{
    validate_device, DeviceStore, Notification, Notifier, NotifyOutcome, Platform, PushToken,
    MAX_DEVICES_PER_USER, MAX_DEVICE_LABEL_LEN, MAX_PUSH_TOKEN_LEN,
};
pub use objects::{ObjectMeta, ObjectStorage, PresignedRequest};
pub use push::{PushBatch, PushItem, PushReport, Pusher};
pub use queue::{
    partition_of, Assignment, Delivery, EntryId, GroupStats, MessageQueue, QueueConsumer,
    DEFAULT_PARTITIONS,
};
pub use revocation::TokenRevocations;
pub use schedule::{ScheduleStore, ScheduledSend};
pub use send::{Admission, Admitted, SendPipeline};
pub use seq::SequenceAllocator;
pub use session::SessionStore;
pub use store::{GroupStore, MessageStore, UserStore};
pub use throttle::{Backoff, Rate, Throttle};
