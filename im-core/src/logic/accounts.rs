//! Accounts: registration rules, password login, token issue, verification
//! and logout (revocation).

use crate::auth::{hash_password, token_id, verify_password};
use crate::error::{Error, Result};
use crate::id::{now_ms, UserId};
use crate::model::{Event, EventAudience, SessionRoute, User};
use crate::ports::Identity;

use super::{Logic, Login};

/// Username rule: 3–32 characters of ASCII letters, digits, `_`, `.`, `-`.
pub fn validate_username(username: &str) -> Result<()> {
    let ok = (3..=32).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "username must be 3-32 characters of letters, digits, '_', '.', '-'".into(),
        ))
    }
}

/// Password rule: at least 8 characters (at most 1024 bytes, to bound hashing).
pub fn validate_password(password: &str) -> Result<()> {
    if password.chars().count() < 8 {
        return Err(Error::InvalidArgument(
            "password must be at least 8 characters".into(),
        ));
    }
    if password.len() > 1024 {
        return Err(Error::InvalidArgument(
            "password must be at most 1024 bytes".into(),
        ));
    }
    Ok(())
}

/// Bounds password hashing: at most `slots` hashes run at once (each holds
/// 19 MiB for tens of milliseconds), at most `queue` more wait, and the rest
/// are refused at once with [`Error::Overloaded`] — so a flood of logins costs
/// a constant amount of memory and answers quickly instead of piling up.
#[derive(Debug)]
pub(super) struct HashGate {
    slots: tokio::sync::Semaphore,
    /// Hashes running or waiting.
    admitted: std::sync::atomic::AtomicUsize,
    limit: usize,
}

/// How long a client refused by a full [`HashGate`] is asked to wait.
const HASH_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl HashGate {
    pub(super) fn new(slots: usize, queue: usize) -> Self {
        let slots = slots.max(1);
        HashGate {
            slots: tokio::sync::Semaphore::new(slots),
            admitted: std::sync::atomic::AtomicUsize::new(0),
            limit: slots.saturating_add(queue),
        }
    }

    /// Runs `f` (CPU-heavy) on a blocking thread once a slot is free.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        use std::sync::atomic::Ordering;
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        // Decrements on every way out, a cancelled request included.
        let _admitted = Admitted(&self.admitted);
        if before >= self.limit {
            metrics::counter!("im_password_hash_refused_total").increment(1);
            return Err(Error::Overloaded {
                message: "too many logins and registrations at once; try again shortly".into(),
                retry_after: HASH_RETRY_AFTER,
            });
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Error::Internal("password hashing gate closed".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))
    }
}

struct Admitted<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A valid argon2id hash of a random password, so that a login for an unknown
/// user costs the same time as one with a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Xn7fS3ZPaaT0Yw7jwLd3m0mhLFdE1PRTqQ0Xv1IMbts";

impl Logic {
    pub(super) async fn register(&self, username: &str, password: &str) -> Result<UserId> {
        validate_username(username)?;
        validate_password(password)?;
        if self.ports.users.by_username(username).await?.is_some() {
            return Err(Error::Conflict(format!("username {username} is taken")));
        }
        let pw = password.to_owned();
        let password_hash = self.hashing.run(move || hash_password(&pw)).await??;
        let user = User {
            id: UserId(self.next_id()),
            username: username.to_owned(),
            password_hash,
            created_at: now_ms(),
            avatar_url: None,
            display_name: None,
        };
        self.ports.users.create(&user).await?;
        Ok(user.id)
    }

    pub(super) async fn login(&self, username: &str, password: &str) -> Result<Login> {
        let wrong = || Error::Unauthenticated("wrong username or password".into());
        if validate_username(username).is_err() || password.len() > 1024 {
            return Err(wrong());
        }
        let user = self.ports.users.by_username(username).await?;
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.to_owned());
        let pw = password.to_owned();
        let ok = self
            .hashing
            .run(move || verify_password(&pw, &hash))
            .await?;
        let user = match user {
            Some(u) if ok => u,
            _ => return Err(wrong()),
        };
        let token = self.ports.auth.issue(user.id)?;
        Ok(Login {
            user_id: user.id,
            token: token.token,
            expires_at: token.expires_at,
        })
    }
}

impl Logic {
    /// The identity of a token the authenticator accepts and nobody logged out.
    pub(super) async fn verify_token(&self, token: &str) -> Result<Identity> {
        let identity = self.ports.auth.verify(token).await?;
        if self.ports.revocations.is_revoked(&token_id(token)).await? {
            return Err(Error::Unauthenticated("token revoked".into()));
        }
        // A well-signed token of an account that does not exist (a store
        // that was reset, a forged id under a leaked key) is no identity.
        if !self.user_exists(identity.user_id).await? {
            return Err(Error::Unauthenticated(
                "the token's user does not exist".into(),
            ));
        }
        Ok(identity)
    }

    /// Whether an account exists; positive answers are cached (accounts are
    /// never deleted), so a known user costs no lookup.
    pub(super) async fn user_exists(&self, user: UserId) -> Result<bool> {
        if self.known_users.read().contains(&user) {
            return Ok(true);
        }
        let found = !self.ports.users.existing(&[user]).await?.is_empty();
        if found {
            let mut known = self.known_users.write();
            if known.len() > 1_000_000 {
                known.clear();
            }
            known.insert(user);
        }
        Ok(found)
    }

    /// Revokes a token until its expiry, then kicks the live sessions opened
    /// with it. The order matters with [`Logic::connect_session`], which binds
    /// first and checks the revocation after: a session opening concurrently
    /// is either found here or refused there.
    pub(super) async fn logout(&self, token: &str) -> Result<()> {
        // Not `verify_token`: logging out twice is a no-op, not an error.
        let identity = self.ports.auth.verify(token).await?;
        let id = token_id(token);
        let until = identity.expires_at.unwrap_or_else(|| {
            let ttl = i64::try_from(self.config.revocation_ttl.as_millis()).unwrap_or(i64::MAX);
            now_ms().saturating_add(ttl)
        });
        self.ports.revocations.revoke(&id, until).await?;
        let routes: Vec<SessionRoute> = self
            .ports
            .sessions
            .lookup(&[identity.user_id])
            .await?
            .into_iter()
            .filter(|r| r.token_id.as_deref() == Some(id.as_str()))
            .collect();
        if routes.is_empty() {
            return Ok(());
        }
        // The routes go when the kicked sockets close (`disconnect_session`).
        self.publish_event(
            Event::Kick {
                reason: LOGGED_OUT.into(),
            },
            EventAudience::Sessions(routes),
            None,
        )
        .await
    }
}

/// The `kicked` reason of a session whose token was logged out.
pub const LOGGED_OUT: &str = "logged out";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_beyond_its_queue_is_refused_at_once() {
        let gate = std::sync::Arc::new(HashGate::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let running = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.run(move || rx.recv().is_ok()).await })
        };
        // One runs (blocked on the channel), one waits, the third is refused.
        while gate.admitted.load(std::sync::atomic::Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.run(|| true).await })
        };
        while gate.admitted.load(std::sync::atomic::Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        let err = gate.run(|| true).await.unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::Unavailable);
        assert_eq!(err.retry_after(), Some(HASH_RETRY_AFTER));
        tx.send(()).unwrap();
        assert!(running.await.unwrap().unwrap());
        assert!(waiting.await.unwrap().unwrap());
        assert_eq!(gate.admitted.load(std::sync::atomic::Ordering::Acquire), 0);
    }

    #[test]
    fn username_and_password_rules() {
        for ok in ["abc", "a_b.c-d", "ABCdef123", &"x".repeat(32)] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "", "a b", "émile", "a/b", &"x".repeat(33)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("ééééééé").is_err());
    }
}
