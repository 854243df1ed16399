//! [`Notifier`]s for devices without a live session: Firebase Cloud
//! Messaging ([`FcmNotifier`], HTTP v1 API), the Apple Push Notification
//! service ([`ApnsNotifier`], token-based auth over HTTP/2) and a signed
//! webhook of yours ([`WebhookNotifier`]).
//!
//! Each maps its provider's answers onto the [`Notifier`] contract:
//! accepted → [`NotifyOutcome::Delivered`]; the token invalid or unregistered
//! → [`NotifyOutcome::TokenGone`] (the caller removes it); the provider
//! unreachable, overloaded or failing (timeouts, 429, 5xx) → a retryable
//! [`Error::Unavailable`] / [`Error::Timeout`]; a rejected request (other
//! 4xx, bad credentials) → [`Error::InvalidArgument`] or [`Error::Backend`].
//! None follows redirects.
//!
//! The real FCM and APNs services are not reachable from the machine these
//! were developed on: the implementations are tested (`tests/notify.rs`)
//! against a local server that checks the shape of every request, its
//! headers and the claims and signatures of the JWTs, and answers like the
//! providers document. Check a new deployment against the real services
//! with a test device before relying on it.
//!
//! [`Notifier`]: im_core::ports::Notifier
//! [`NotifyOutcome::Delivered`]: im_core::ports::NotifyOutcome::Delivered
//! [`NotifyOutcome::TokenGone`]: im_core::ports::NotifyOutcome::TokenGone

mod apns;
mod fcm;
mod webhook;

use std::time::Duration;

use im_core::Error;

pub use apns::{ApnsConfig, ApnsNotifier, APNS_PRODUCTION, APNS_SANDBOX};
pub use fcm::{FcmConfig, FcmNotifier, ServiceAccount, FCM_BASE_URL, FCM_SCOPE, GOOGLE_TOKEN_URI};
pub use webhook::WebhookNotifier;

/// The default deadline of one provider request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client for a provider: a deadline per request, no redirects.
fn client(timeout: Duration, h2_prior_knowledge: bool) -> Result<reqwest::Client, Error> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if h2_prior_knowledge {
        b = b.http2_prior_knowledge();
    }
    b.build()
        .map_err(|e| Error::InvalidArgument(format!("notifier HTTP client: {e}")))
}

/// A request that got no answer: retryable.
fn send_error(provider: &str, e: reqwest::Error) -> Error {
    if e.is_timeout() {
        Error::Timeout(format!("{provider}: no answer in time"))
    } else {
        Error::unavailable(format!("{provider} unreachable"), e)
    }
}

/// An answer that is neither a success nor a gone token: 429 and 5xx are
/// retryable, 401/403 are credentials (permanent until fixed), other 4xx a
/// rejected request.
fn status_error(provider: &str, status: reqwest::StatusCode, detail: &str) -> Error {
    let detail: String = detail.chars().take(300).collect();
    let message = format!("{provider} answered {status}: {detail}");
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Error::unavailable_msg(message)
    } else if status == reqwest::StatusCode::UNAUTHORIZED
        || status == reqwest::StatusCode::FORBIDDEN
    {
        Error::Backend {
            message,
            source: None,
        }
    } else if status.is_client_error() {
        Error::InvalidArgument(message)
    } else {
        Error::Backend {
            message,
            source: None,
        }
    }
}

/// Seconds since the Unix epoch, for JWT claims.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn statuses_map_to_retryable_or_permanent_errors() {
        for s in [429, 500, 502, 503] {
            let e = status_error("p", StatusCode::from_u16(s).unwrap_or_default(), "x");
            assert!(e.is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 302] {
            let e = status_error("p", StatusCode::from_u16(s).unwrap_or_default(), "x");
            assert!(!e.is_retryable(), "{s}");
        }
        assert!(matches!(
            status_error("p", StatusCode::BAD_REQUEST, "x"),
            Error::InvalidArgument(_)
        ));
        assert!(matches!(
            status_error("p", StatusCode::FORBIDDEN, "x"),
            Error::Backend { .. }
        ));
    }
}
