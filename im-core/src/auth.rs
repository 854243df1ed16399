//! Built-in authentication: argon2id password hashes and the JWT
//! [`Authenticator`] that issues and verifies bearer tokens.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{now_ms, UserId};
use crate::ports::{Authenticator, Identity, IssuedToken};

/// Argon2id with the OWASP minimum: 19 MiB, 2 iterations, parallelism 1.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (CPU-heavy: call from a blocking thread).
pub fn hash_password(password: &str) -> Result<String> {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| Error::Internal(format!("salt: {e}")))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

/// Checks a password against a PHC string (CPU-heavy: call from a blocking thread).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
}

/// Issues and verifies HS256 JWTs: `sub` is the user id, `exp` the expiry.
///
/// ```
/// # tokio_test_shim::run(async {
/// use im_core::{auth::JwtAuthenticator, id::UserId, ports::Authenticator};
/// let auth = JwtAuthenticator::new(b"a secret of at least 32 bytes....", std::time::Duration::from_secs(60));
/// let token = auth.issue(UserId(7)).unwrap();
/// assert_eq!(auth.verify(&token.token).await.unwrap().user_id, UserId(7));
/// assert!(auth.verify("junk").await.is_err());
/// # });
/// # mod tokio_test_shim { pub fn run<F: std::future::Future>(f: F) -> F::Output {
/// #   tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f) } }
/// ```
pub struct JwtAuthenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl JwtAuthenticator {
    /// An authenticator signing with `secret`, issuing tokens valid for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtAuthenticator {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// Token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn verify(&self, token: &str) -> Result<Identity> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => Error::Unauthenticated("token expired".into()),
                    _ => Error::Unauthenticated("invalid token".into()),
                }
            })?;
        let user_id = data
            .claims
            .sub
            .parse::<UserId>()
            .map_err(|_| Error::Unauthenticated("invalid token subject".into()))?;
        Ok(Identity {
            user_id,
            expires_at: Some((data.claims.exp as i64).saturating_mul(1000)),
        })
    }

    fn issue(&self, user: UserId) -> Result<IssuedToken> {
        let now_s = (now_ms() / 1000).max(0) as u64;
        let exp = now_s + self.ttl.as_secs().max(1);
        let claims = Claims {
            sub: user.to_string(),
            iat: now_s,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("jwt encode: {e}")))?;
        Ok(IssuedToken {
            token,
            expires_at: (exp as i64) * 1000,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_verify_and_use_argon2id() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[tokio::test]
    async fn tokens_from_another_secret_or_expired_are_refused() {
        let a = JwtAuthenticator::new(
            b"secret-a-secret-a-secret-a-secret-a",
            Duration::from_secs(60),
        );
        let b = JwtAuthenticator::new(
            b"secret-b-secret-b-secret-b-secret-b",
            Duration::from_secs(60),
        );
        let t = a.issue(UserId(5)).unwrap();
        assert_eq!(a.verify(&t.token).await.unwrap().user_id, UserId(5));
        assert!(matches!(
            b.verify(&t.token).await,
            Err(Error::Unauthenticated(_))
        ));
        let claims = Claims {
            sub: "5".into(),
            iat: 1,
            exp: 2,
        };
        let old = jsonwebtoken::encode(&Header::default(), &claims, &a.encoding).unwrap();
        match a.verify(&old).await {
            Err(Error::Unauthenticated(m)) => assert_eq!(m, "token expired"),
            other => panic!("{other:?}"),
        }
    }
}
