//! # custom_auth: plugging your own parts into im
//!
//! - [`token::HmacTokenAuthenticator`]: an `Authenticator` for tokens issued by
//!   an existing identity system (it verifies, never issues, and provisions
//!   accounts for users it has not seen).
//! - [`audit::AuditingMessageStore`]: a decorator over any `MessageStore`.
//! - [`builder`]: a [`NodeBuilder`] (every other port in memory) with both
//!   plugged in, ready to `start()`.
//!
//! The binary (`src/main.rs`) serves them; `tests/` checks them, including the
//! `im_core::testkit::message_suite` conformance suite on the decorator.

pub mod audit;
pub mod token;

use std::sync::Arc;

use im_core::builder::NodeBuilder;
use im_core::memory::MemoryMessageStore;

use audit::AuditingMessageStore;
use token::HmacTokenAuthenticator;

/// Every port in memory, except that tokens are checked by
/// [`HmacTokenAuthenticator`] (signed with `secret`, provisioning the users
/// it sees into the node's user store) and the archive is an
/// [`AuditingMessageStore`] (returned too, to read its counters).
pub fn builder(secret: &[u8]) -> (NodeBuilder, Arc<AuditingMessageStore>) {
    let audited = Arc::new(AuditingMessageStore::new(Arc::new(
        MemoryMessageStore::default(),
    )));
    let secret = secret.to_vec();
    let builder = NodeBuilder::new()
        .with_messages(audited.clone())
        .with_auth_from(move |users| {
            Arc::new(HmacTokenAuthenticator::new(&secret).with_user_provisioning(users))
        });
    (builder, audited)
}
