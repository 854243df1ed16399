//! `RegistrationGuard`: the application's say on who may create an account
//! (captcha, invite codes, allow lists), asked after the built-in limits.

use std::net::IpAddr;

use async_trait::async_trait;

use crate::error::Result;

/// One attempt to create an account, as the guard sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationAttempt {
    /// The username asked for (already checked against the username rules).
    pub username: String,
    /// The client's address (after trusted proxies).
    pub address: IpAddr,
    /// The request's `X-Registration-Proof` header, if any: a captcha
    /// answer, an invite code, whatever the guard asks clients for.
    pub proof: Option<String>,
}

/// Decides whether an account may be created.
///
/// Return `Ok(())` to let the registration go on, or an error that is
/// answered as is: `Error::PermissionDenied` (403) for a missing or wrong
/// proof, `Error::Throttled` (429 with `Retry-After`) for a limit of your
/// own. The default, [`AllowAll`], lets everyone through.
///
/// ```
/// use async_trait::async_trait;
/// use im_core::ports::{RegistrationAttempt, RegistrationGuard};
/// use im_core::{Error, Result};
///
/// /// Accounts only with the invite code.
/// struct InviteOnly(String);
///
/// #[async_trait]
/// impl RegistrationGuard for InviteOnly {
///     async fn check(&self, attempt: &RegistrationAttempt) -> Result<()> {
///         match &attempt.proof {
///             Some(code) if *code == self.0 => Ok(()),
///             _ => Err(Error::PermissionDenied("an invite code is needed".into())),
///         }
///     }
/// }
/// ```
#[async_trait]
pub trait RegistrationGuard: Send + Sync + 'static {
    /// Whether this attempt may create an account.
    async fn check(&self, attempt: &RegistrationAttempt) -> Result<()>;
}

/// The default guard: lets every registration through.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

#[async_trait]
impl RegistrationGuard for AllowAll {
    async fn check(&self, _: &RegistrationAttempt) -> Result<()> {
        Ok(())
    }
}
