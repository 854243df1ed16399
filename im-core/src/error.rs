//! Typed errors by meaning, shared by the ports and the services.
//!
//! A backend maps its own failures onto [`Error`] (its error type never appears
//! in a core signature); the transports map [`ErrorCode`] onto HTTP statuses,
//! gRPC codes and WebSocket `error` frames.

use std::fmt;
use std::time::Duration;

/// A boxed source error from a backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The public error codes of the client protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Malformed or out-of-range input (400).
    InvalidArgument,
    /// Missing, bad or expired token; wrong password (401).
    Unauthenticated,
    /// Authenticated but not allowed (403).
    PermissionDenied,
    /// No such user, group, message or route (404).
    NotFound,
    /// Username taken, member already in the group (409).
    AlreadyExists,
    /// Over a limit: too large (413) or rate limited (429).
    ResourceExhausted,
    /// A dependency is down; safe to retry (503).
    Unavailable,
    /// A bug (500).
    Internal,
}

impl ErrorCode {
    /// The wire name, e.g. `"invalid_argument"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// Parses a wire name.
    pub fn from_wire(s: &str) -> Option<Self> {
        Some(match s {
            "invalid_argument" => ErrorCode::InvalidArgument,
            "unauthenticated" => ErrorCode::Unauthenticated,
            "permission_denied" => ErrorCode::PermissionDenied,
            "not_found" => ErrorCode::NotFound,
            "already_exists" => ErrorCode::AlreadyExists,
            "resource_exhausted" => ErrorCode::ResourceExhausted,
            "unavailable" => ErrorCode::Unavailable,
            "internal" => ErrorCode::Internal,
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every port and service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Malformed or out-of-range input.
    #[error("{0}")]
    InvalidArgument(String),
    /// Missing, bad or expired credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated but not allowed.
    #[error("{0}")]
    PermissionDenied(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A uniqueness conflict (already exists).
    #[error("{0}")]
    Conflict(String),
    /// Over a size or rate limit, or a bounded backend is full.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Over a rate limit (login attempts, registrations, connections): the
    /// same request can succeed after `retry_after` (HTTP 429 with
    /// `Retry-After`).
    #[error("{message}")]
    Throttled {
        /// What was limited.
        message: String,
        /// How long to wait before trying again.
        retry_after: Duration,
    },
    /// A bounded resource is full right now (e.g. password hashing): retry
    /// after `retry_after` (HTTP 503 with `Retry-After`).
    #[error("{message}")]
    Overloaded {
        /// What was full.
        message: String,
        /// How long to wait before trying again.
        retry_after: Duration,
    },
    /// A dependency cannot be reached; retrying later can help.
    #[error("{message}")]
    Unavailable {
        /// What was unavailable.
        message: String,
        /// The backend's own error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A deadline passed; retrying can help.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A backend failed in a way a retry will not fix (bad data, bad query).
    #[error("{message}")]
    Backend {
        /// What failed.
        message: String,
        /// The backend's own error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A broken invariant: a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Unavailable`] with a source.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An [`Error::Unavailable`] without a source.
    pub fn unavailable_msg(message: impl Into<String>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::Backend`] with a source.
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The public protocol code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Conflict(_) => ErrorCode::AlreadyExists,
            Error::ResourceExhausted(_) | Error::Throttled { .. } => ErrorCode::ResourceExhausted,
            Error::Unavailable { .. } | Error::Timeout(_) | Error::Overloaded { .. } => {
                ErrorCode::Unavailable
            }
            Error::Backend { .. } | Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Builds the error a code stands for (used by transports decoding a code).
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        let m = message.into();
        match code {
            ErrorCode::InvalidArgument => Error::InvalidArgument(m),
            ErrorCode::Unauthenticated => Error::Unauthenticated(m),
            ErrorCode::PermissionDenied => Error::PermissionDenied(m),
            ErrorCode::NotFound => Error::NotFound(m),
            ErrorCode::AlreadyExists => Error::Conflict(m),
            ErrorCode::ResourceExhausted => Error::ResourceExhausted(m),
            ErrorCode::Unavailable => Error::unavailable_msg(m),
            ErrorCode::Internal => Error::Internal(m),
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::Timeout(_) | Error::Overloaded { .. }
        )
    }

    /// How long the caller should wait before retrying, when the error says
    /// (HTTP answers it as `Retry-After`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use im_core::{Error, ErrorCode};
    /// let e = Error::Throttled { message: "too many login attempts".into(), retry_after: Duration::from_secs(4) };
    /// assert_eq!(e.code(), ErrorCode::ResourceExhausted);
    /// assert_eq!(e.retry_after(), Some(Duration::from_secs(4)));
    /// assert_eq!(Error::NotFound("x".into()).retry_after(), None);
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Throttled { retry_after, .. } | Error::Overloaded { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// An equivalent error, for answering several callers with one failure
    /// (errors are not `Clone`: they may carry a source, which is dropped).
    ///
    /// ```
    /// use im_core::{Error, ErrorCode};
    /// let e = Error::unavailable_msg("redis is down");
    /// assert_eq!(e.duplicate().code(), ErrorCode::Unavailable);
    /// assert!(e.duplicate().is_retryable());
    /// let e = Error::NotFound("no user 7".into());
    /// assert_eq!(e.duplicate().public_message(), e.public_message());
    /// ```
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Unavailable { message, .. } => Error::unavailable_msg(message.clone()),
            Error::Timeout(m) => Error::Timeout(m.clone()),
            Error::Throttled {
                message,
                retry_after,
            } => Error::Throttled {
                message: message.clone(),
                retry_after: *retry_after,
            },
            Error::Overloaded {
                message,
                retry_after,
            } => Error::Overloaded {
                message: message.clone(),
                retry_after: *retry_after,
            },
            other => Error::from_code(other.code(), other.public_message()),
        }
    }

    /// The message to show a client (never a backend's internals).
    pub fn public_message(&self) -> String {
        match self {
            Error::Backend { .. } | Error::Internal(_) => "internal error".to_owned(),
            Error::Unavailable { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

impl From<crate::id::IdError> for Error {
    fn from(e: crate::id::IdError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_retryability() {
        for code in [
            ErrorCode::InvalidArgument,
            ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied,
            ErrorCode::NotFound,
            ErrorCode::AlreadyExists,
            ErrorCode::ResourceExhausted,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ] {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
            assert_eq!(Error::from_code(code, "x").code(), code);
        }
        assert!(Error::Timeout("t".into()).is_retryable());
        assert!(!Error::NotFound("n".into()).is_retryable());
        assert_eq!(
            Error::backend("db", std::io::Error::other("secret")).public_message(),
            "internal error"
        );
    }
}
