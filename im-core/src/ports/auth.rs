//! `Authenticator`: turning a bearer token into an identity.

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::id::UserId;

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The authenticated user.
    pub user_id: UserId,
    /// When the token expires, Unix milliseconds (if it does).
    pub expires_at: Option<i64>,
}

/// A token issued after a password login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// Expiry, Unix milliseconds.
    pub expires_at: i64,
}

/// Verifies bearer tokens (and, for the built-in one, issues them).
///
/// Plug in your own to accept tokens of an existing identity system; it only
/// has to implement `verify`.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The identity of a token, or [`Error::Unauthenticated`].
    async fn verify(&self, token: &str) -> Result<Identity>;

    /// Issues a token for a user who proved their password. Authenticators
    /// that only verify foreign tokens keep the default, which refuses.
    fn issue(&self, user: UserId) -> Result<IssuedToken> {
        let _ = user;
        Err(Error::PermissionDenied(
            "this deployment does not issue tokens; log in with your identity provider".into(),
        ))
    }
}
