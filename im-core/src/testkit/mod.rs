//! Conformance suites, one per port (feature `testkit`; not API-stable).
//!
//! Every backend runs the same checks. A suite takes a factory that returns a
//! fresh, isolated instance (its own key prefix or database), runs every check
//! of the port's contract and panics with a message naming the broken rule.
//! Ids are random so suites can share a real server and be rerun.
//!
//! ```
//! # #[cfg(feature = "testkit")]
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use im_core::{memory::MemorySequenceAllocator, testkit};
//! testkit::sequence_suite(|| async { Arc::new(MemorySequenceAllocator::new()) as _ }).await;
//! # });
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
mod send;
mod seq;
mod session;
mod store;
mod throttle;

pub use contacts::contacts_suite;
pub use conversation::conversations_suite;
pub use dedup::dedup_suite;
pub use device::device_suite;
pub use discovery::discovery_suite;
pub use lease::lease_suite;
pub use objects::objects_suite;
pub use queue::queue_suite;
pub use revocation::revocation_suite;
pub use schedule::schedule_suite;
pub use send::send_pipeline_suite;
pub use seq::sequence_suite;
pub use session::session_suite;
pub use store::{group_suite, message_suite, user_suite};
pub use throttle::throttle_suite;

use crate::id::{ConversationId, GroupId, MessageId, UserId};
use crate::model::{Envelope, Message, MessageKind, Target};

/// A random id in a range no real deployment of the tests collides with.
pub fn random_id() -> u64 {
    rand::random::<u64>() >> 2 | 1 << 60
}

/// A random 1:1 conversation.
pub fn random_direct() -> (UserId, UserId, ConversationId) {
    let a = UserId(random_id());
    let b = UserId(a.0 + 1);
    (a, b, ConversationId::Direct(a, b))
}

/// A text message of `conversation` with `seq`, a random id and body `body`.
pub fn sample_message(conversation: ConversationId, seq: u64, body: &str) -> Message {
    let (from, to) = match conversation {
        ConversationId::Direct(a, b) => (a, Target::User(b)),
        ConversationId::Group(g) => (UserId(g.0), Target::Group(GroupId(g.0))),
    };
    Message {
        msg_id: MessageId(random_id()),
        conversation_id: conversation,
        seq,
        from,
        to,
        kind: MessageKind::Text,
        body: serde_json::Value::String(body.to_owned()),
        client_msg_id: format!("c-{}", random_id()),
        ts: 1_700_000_000_000 + seq as i64,
        recalled: false,
        edited_at: None,
        mentions: None,
    }
}

/// An envelope around [`sample_message`].
pub fn sample_envelope(conversation: ConversationId, seq: u64) -> Envelope {
    Envelope {
        message: sample_message(conversation, seq, &format!("m{seq}")),
        origin: None,
        audience: None,
    }
}

/// A unique name with a prefix, for groups, consumers and key prefixes.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:x}", random_id())
}
