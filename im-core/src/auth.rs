//! Built-in authentication: argon2id password hashes, the JWT
//! [`Authenticator`] that issues and verifies bearer tokens, and
//! [`token_id`], the name under which a token is revoked and its sessions are
//! found (tokens themselves are never stored nor logged).

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{now_ms, UserId};
use crate::ports::{Authenticator, Identity, IssuedToken};

/// Memory cost of new password hashes, KiB (19 MiB).
pub const ARGON2_M_COST: u32 = 19 * 1024;
/// Iterations of new password hashes.
pub const ARGON2_T_COST: u32 = 2;
/// Parallelism of new password hashes.
pub const ARGON2_P_COST: u32 = 1;

/// Argon2id v1.3 with OWASP's recommended minimum (Password Storage Cheat
/// Sheet): m = 19 MiB, t = 2, p = 1, a 16-byte random salt and a 32-byte
/// output. Verification reads the parameters from the stored PHC string, so
/// raising these later still verifies older hashes.
fn argon2() -> Argon2<'static> {
    let params = Params::new(ARGON2_M_COST, ARGON2_T_COST, ARGON2_P_COST, None).unwrap_or_default();
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

/// Checks a password against a PHC string (CPU-heavy: call from a blocking
/// thread). The computed hash is compared with the stored one in constant time
/// (`password_hash::Output`'s equality).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// The id of a bearer token: the first 128 bits of its SHA-256, as 32 lowercase
/// hex digits. Revocations and session routes name tokens by this id, so no
/// store or log ever holds a usable token (the id cannot be turned back into
/// one).
///
/// ```
/// let id = im_core::auth::token_id("header.payload.signature");
/// assert_eq!(id.len(), 32);
/// assert_eq!(id, im_core::auth::token_id("header.payload.signature"));
/// assert_ne!(id, im_core::auth::token_id("header.payload.signaturf"));
/// ```
pub fn token_id(token: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    /// A random id: two logins of one user in the same second get distinct
    /// tokens (so logging one out leaves the other alone).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    jti: String,
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
        // RFC 7519: not accepted on or after `exp` (the library accepts the
        // whole second of `exp`; sockets close at its start).
        let expires_at = i64::try_from(data.claims.exp)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        if now_ms() >= expires_at {
            return Err(Error::Unauthenticated("token expired".into()));
        }
        let user_id = data
            .claims
            .sub
            .parse::<UserId>()
            .map_err(|_| Error::Unauthenticated("invalid token subject".into()))?;
        Ok(Identity {
            user_id,
            expires_at: Some(expires_at),
        })
    }

    fn issue(&self, user: UserId) -> Result<IssuedToken> {
        let now_s = (now_ms() / 1000).max(0) as u64;
        let exp = now_s + self.ttl.as_secs().max(1);
        let claims = Claims {
            sub: user.to_string(),
            iat: now_s,
            exp,
            jti: format!("{:032x}", rand::random::<u128>()),
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

    /// OWASP (Password Storage Cheat Sheet): argon2id with at least one of
    /// m=47104 t=1, m=19456 t=2, m=12288 t=3, m=9216 t=4 or m=7168 t=5, p=1.
    #[test]
    fn password_hash_parameters_meet_owasp() {
        let phc = hash_password("correct horse").unwrap();
        let h = PasswordHash::new(&phc).unwrap();
        assert_eq!(h.algorithm.as_str(), "argon2id", "{phc}");
        assert_eq!(h.version, Some(0x13), "argon2 v1.3: {phc}");
        let param = |name: &str| {
            h.params
                .get_decimal(name)
                .unwrap_or_else(|| panic!("no {name} in {phc}"))
        };
        let (m, t, p) = (param("m"), param("t"), param("p"));
        let owasp: [(u32, u32); 5] = [
            (47_104, 1),
            (19_456, 2),
            (12_288, 3),
            (9_216, 4),
            (7_168, 5),
        ];
        assert!(
            owasp.iter().any(|&(om, ot)| t >= ot && m >= om),
            "m={m} KiB t={t} is below every OWASP pair"
        );
        assert_eq!(p, 1, "parallelism");
        assert_eq!((m, t, p), (ARGON2_M_COST, ARGON2_T_COST, ARGON2_P_COST));
        let salt = h.salt.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(salt.decode_b64(&mut buf).unwrap().len(), 16, "16-byte salt");
        assert_eq!(h.hash.unwrap().len(), 32, "32-byte output");
        // A fresh salt every time.
        assert_ne!(phc, hash_password("correct horse").unwrap());
    }

    #[tokio::test]
    async fn tokens_of_one_user_in_one_second_differ() {
        let a = JwtAuthenticator::new(
            b"secret-a-secret-a-secret-a-secret-a",
            Duration::from_secs(60),
        );
        let (t1, t2) = (a.issue(UserId(5)).unwrap(), a.issue(UserId(5)).unwrap());
        assert_ne!(t1.token, t2.token);
        assert_ne!(token_id(&t1.token), token_id(&t2.token));
        assert_eq!(a.verify(&t2.token).await.unwrap().user_id, UserId(5));
    }

    #[test]
    fn token_ids_are_short_hashes() {
        let id = token_id("abc");
        // SHA-256("abc") begins ba7816bf 8f01cfea 414140de 5dae2223.
        assert_eq!(id, "ba7816bf8f01cfea414140de5dae2223");
        assert!(!id.contains("abc"));
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
            jti: String::new(),
        };
        let old = jsonwebtoken::encode(&Header::default(), &claims, &a.encoding).unwrap();
        match a.verify(&old).await {
            Err(Error::Unauthenticated(m)) => assert_eq!(m, "token expired"),
            other => panic!("{other:?}"),
        }
        // Refused from the first millisecond of `exp` on (RFC 7519), not
        // only after that second.
        let now_s = (now_ms() / 1000) as u64;
        let ending = Claims {
            sub: "5".into(),
            iat: now_s,
            exp: now_s,
            jti: String::new(),
        };
        let ending = jsonwebtoken::encode(&Header::default(), &ending, &a.encoding).unwrap();
        match a.verify(&ending).await {
            Err(Error::Unauthenticated(m)) => assert_eq!(m, "token expired"),
            other => panic!("{other:?}"),
        }
    }
}
