//! # custom_auth: plugging your own parts into im
//!
//! - [`token::HmacTokenAuthenticator`]: an `Authenticator` for tokens issued by
//!   an existing identity system (it verifies, never issues, and provisions
//!   accounts for users it has not seen).
//! - [`audit::AuditingMessageStore`]: a decorator over any `MessageStore`.
//! - [`backends`]: the in-memory [`Backends`] with both plugged in, ready for
//!   `Node::start`.
//!
//! The binary (`src/main.rs`) serves them; `tests/` checks them, including the
//! `im_core::testkit::message_suite` conformance suite on the decorator.

pub mod audit;
pub mod token;

use std::sync::Arc;

use im_core::node::Backends;

use audit::AuditingMessageStore;
use token::HmacTokenAuthenticator;

/// Every port in memory, except that tokens are checked by
/// [`HmacTokenAuthenticator`] (signed with `secret`) and the archive is wrapped
/// in an [`AuditingMessageStore`] (returned too, to read its counters).
pub fn backends(secret: &[u8]) -> (Backends, Arc<AuditingMessageStore>) {
    // `Backends::memory` builds a JWT authenticator that is replaced below, so
    // its key does not matter.
    let mut backends = Backends::memory(&[0u8; 32]);
    let audited = Arc::new(AuditingMessageStore::new(backends.messages.clone()));
    // Logic reads history from `logic.messages`; the persist workers write to
    // `messages`. Both must be the wrapper.
    backends.messages = audited.clone();
    backends.logic.messages = audited.clone();
    backends.logic.auth = Arc::new(
        HmacTokenAuthenticator::new(secret).with_user_provisioning(backends.logic.users.clone()),
    );
    (backends, audited)
}
