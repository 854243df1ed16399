//! "Your system's" tokens: `user_id.expiry_unix_ms.signature_hex`, where the
//! signature is HMAC-SHA256 over `user_id.expiry_unix_ms` with a secret shared
//! between your identity system (which issues them) and im (which only
//! verifies them).

use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use im_core::id::{now_ms, UserId};
use im_core::model::User;
use im_core::ports::{Authenticator, Identity, UserStore};
use im_core::{Error, Result};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted (a u64, an i64, two dots and 64 hex digits fit well within).
const MAX_TOKEN_LEN: usize = 128;

/// Verifies HMAC-SHA256 signed tokens of an existing identity system.
///
/// It does not issue tokens: it keeps the default [`Authenticator::issue`], so
/// a password login over the API (`POST /api/v1/sessions`) answers 403
/// `permission_denied`. With [`HmacTokenAuthenticator::with_user_provisioning`]
/// it also creates a placeholder account the first time a valid token of an
/// unknown user is seen, so that other users can send to them.
pub struct HmacTokenAuthenticator {
    secret: Vec<u8>,
    users: Option<Arc<dyn UserStore>>,
}

impl std::fmt::Debug for HmacTokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacTokenAuthenticator")
            .field("provisions_users", &self.users.is_some())
            .finish_non_exhaustive()
    }
}

impl HmacTokenAuthenticator {
    /// An authenticator checking signatures made with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        HmacTokenAuthenticator {
            secret: secret.to_vec(),
            users: None,
        }
    }

    /// Also creates an account in `users` for a verified user that has none.
    pub fn with_user_provisioning(mut self, users: Arc<dyn UserStore>) -> Self {
        self.users = Some(users);
        self
    }

    fn mac(&self, payload: &str) -> Result<HmacSha256> {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.secret)
            .map_err(|e| Error::Internal(format!("hmac key: {e}")))?;
        mac.update(payload.as_bytes());
        Ok(mac)
    }

    /// Signs a token for `user` expiring at `expires_at_ms` (Unix ms).
    ///
    /// In a real deployment your identity system does this; here it backs the
    /// `mint-token` subcommand and the tests.
    pub fn mint(&self, user: UserId, expires_at_ms: i64) -> Result<String> {
        let payload = format!("{user}.{expires_at_ms}");
        let signature = hex::encode(self.mac(&payload)?.finalize().into_bytes());
        Ok(format!("{payload}.{signature}"))
    }

    /// Checks format, signature (in constant time) and expiry, in that order.
    fn check(&self, token: &str) -> Result<Identity> {
        let invalid = || Error::Unauthenticated("invalid token".into());
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid());
        }
        let (payload, signature_hex) = token.rsplit_once('.').ok_or_else(invalid)?;
        let (user, expiry) = payload.split_once('.').ok_or_else(invalid)?;
        let user_id = user.parse::<UserId>().map_err(|_| invalid())?;
        let expires_at = expiry.parse::<i64>().map_err(|_| invalid())?;
        let signature = hex::decode(signature_hex).map_err(|_| invalid())?;
        self.mac(payload)?
            .verify_slice(&signature)
            .map_err(|_| invalid())?;
        if expires_at <= now_ms() {
            return Err(Error::Unauthenticated("token expired".into()));
        }
        Ok(Identity {
            user_id,
            expires_at: Some(expires_at),
        })
    }

    /// Creates a placeholder account for `user` unless it has one.
    async fn provision(&self, users: &dyn UserStore, user: UserId) -> Result<()> {
        if !users.existing(&[user]).await?.is_empty() {
            return Ok(());
        }
        let account = User {
            id: user,
            // `:` is not allowed in registered usernames, so this cannot clash
            // with an account made by `POST /api/v1/users`.
            username: format!("ext:{user}"),
            // Not a PHC string: no password ever matches it.
            password_hash: "!".into(),
            created_at: now_ms(),
            avatar_url: None,
            display_name: None,
        };
        match users.create(&account).await {
            Ok(()) => {
                tracing::info!(%user, "provisioned an account for a new user of the identity system");
                Ok(())
            }
            // Another request provisioned it at the same time.
            Err(Error::Conflict(_)) if !users.existing(&[user]).await?.is_empty() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Authenticator for HmacTokenAuthenticator {
    async fn verify(&self, token: &str) -> Result<Identity> {
        let identity = self.check(token)?;
        if let Some(users) = &self.users {
            self.provision(users.as_ref(), identity.user_id).await?;
        }
        Ok(identity)
    }
    // `issue` keeps its default: this deployment does not issue tokens.
}
