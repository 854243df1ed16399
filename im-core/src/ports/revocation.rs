//! `TokenRevocations`: bearer tokens revoked before their expiry (logout).

use async_trait::async_trait;

use crate::error::Result;

/// The set of revoked bearer tokens, each remembered until its expiry.
///
/// Tokens are named by their id ([`crate::auth::token_id`]: a hash of the
/// token), never by the token itself, so a backend never stores a usable
/// credential.
///
/// Contract (checked by `testkit::revocation_suite`):
/// - `is_revoked` is false for an id never revoked, true from the moment
///   `revoke` returns until `until_ms`, and false again once `until_ms` has
///   passed (the token has expired by then anyway, so the entry may go).
/// - Revoking again never shortens a revocation: the latest `until_ms` wins.
/// - A revocation whose `until_ms` has already passed is a no-op.
/// - Ids are opaque strings; revoking one affects no other.
#[async_trait]
pub trait TokenRevocations: Send + Sync + 'static {
    /// Revokes a token until `until_ms` (Unix milliseconds, usually the
    /// token's own expiry).
    async fn revoke(&self, token_id: &str, until_ms: i64) -> Result<()>;

    /// Whether a token is revoked now.
    async fn is_revoked(&self, token_id: &str) -> Result<bool>;
}
