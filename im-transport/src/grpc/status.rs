//! Mapping [`im_core::Error`] to [`tonic::Status`] and back without losing the code.
//!
//! | im error (code)                      | gRPC code            |
//! |--------------------------------------|----------------------|
//! | `InvalidArgument` (invalid_argument) | `InvalidArgument`    |
//! | `Unauthenticated` (unauthenticated)  | `Unauthenticated`    |
//! | `PermissionDenied` (permission_denied)| `PermissionDenied`  |
//! | `NotFound` (not_found)               | `NotFound`           |
//! | `Conflict` (already_exists)          | `AlreadyExists`      |
//! | `ResourceExhausted` (resource_exhausted)| `ResourceExhausted`|
//! | `Unavailable` (unavailable)          | `Unavailable`        |
//! | `Timeout` (unavailable)              | `DeadlineExceeded`   |
//! | `Backend`, `Internal` (internal)     | `Internal`           |
//!
//! On the client side, failures that never reached the peer (connection
//! refused, reset, HTTP/2 errors, keepalive timeouts) become
//! [`Error::Unavailable`] and deadlines become [`Error::Timeout`], both
//! retryable ([`Error::is_retryable`]); a send retried after one is safe
//! because Logic deduplicates by `client_msg_id`.

use im_core::error::{Error, ErrorCode};
use tonic::{Code, Status};

use super::pb;

/// The message carried on the wire: the error's own text, without the
/// prefixes `Display` adds (so a round trip does not stack them).
fn inner_message(err: &Error) -> String {
    match err {
        Error::Unavailable { message, .. } | Error::Backend { message, .. } => message.clone(),
        Error::Timeout(m) | Error::Internal(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The gRPC code standing for an im error code.
pub fn code_to_grpc(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::Unavailable => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// The status answering a failed call (server side).
pub fn error_to_status(err: &Error) -> Status {
    let code = match err {
        Error::Timeout(_) => Code::DeadlineExceeded,
        other => code_to_grpc(other.code()),
    };
    let mut status = Status::new(code, inner_message(err));
    if let Some(wait) = err.retry_after() {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        if let Ok(v) = ms.to_string().parse() {
            status.metadata_mut().insert(RETRY_AFTER_MS, v);
        }
    }
    status
}

/// The metadata key carrying [`Error::retry_after`] (milliseconds), so a
/// throttled or overloaded answer keeps its wait across the hop.
pub const RETRY_AFTER_MS: &str = "im-retry-after-ms";

/// The wait a peer's status asks for, if any.
fn retry_after_of(status: &Status) -> Option<std::time::Duration> {
    status
        .metadata()
        .get(RETRY_AFTER_MS)?
        .to_str()
        .ok()?
        .parse::<u64>()
        .ok()
        .map(std::time::Duration::from_millis)
}

/// Whether a status was produced locally by a failing transport (it carries
/// a source error) rather than sent by the peer.
fn is_transport_failure(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// The error a status stands for (client side).
///
/// Transport failures (connection refused or reset, HTTP/2 errors) become
/// [`Error::Unavailable`]; an expired deadline becomes [`Error::Timeout`].
pub fn status_to_error(status: Status) -> Error {
    let message = status.message().to_owned();
    if !is_transport_failure(&status) {
        if let Some(retry_after) = retry_after_of(&status) {
            match status.code() {
                Code::ResourceExhausted => {
                    return Error::Throttled {
                        message,
                        retry_after,
                    }
                }
                Code::Unavailable => {
                    return Error::Overloaded {
                        message,
                        retry_after,
                    }
                }
                _ => {}
            }
        }
    }
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            Error::InvalidArgument(message)
        }
        Code::Unauthenticated => Error::Unauthenticated(message),
        Code::PermissionDenied => Error::PermissionDenied(message),
        Code::NotFound => Error::NotFound(message),
        Code::AlreadyExists => Error::Conflict(message),
        Code::ResourceExhausted if !is_transport_failure(&status) => {
            Error::ResourceExhausted(message)
        }
        Code::DeadlineExceeded => Error::Timeout(message),
        // The client's own deadline (tower timeout) surfaces as Cancelled.
        Code::Cancelled if message.contains("Timeout expired") => Error::Timeout(message),
        // Sent by the peer: its dependency is down.
        Code::Unavailable if !is_transport_failure(&status) => Error::unavailable_msg(message),
        Code::Unavailable | Code::Cancelled | Code::Aborted | Code::ResourceExhausted => {
            Error::unavailable(format!("rpc failed: {message}"), status)
        }
        Code::Internal | Code::Unknown if is_transport_failure(&status) => {
            Error::unavailable(format!("rpc transport failed: {message}"), status)
        }
        _ => Error::Internal(message),
    }
}

/// The batch item form of an error (server side).
pub fn error_to_rpc(err: &Error) -> pb::RpcError {
    let code = match err {
        Error::Timeout(_) => ErrorCode::Unavailable,
        other => other.code(),
    };
    pb::RpcError {
        code: code.as_str().to_owned(),
        message: inner_message(err),
    }
}

/// The error of a failed batch item (client side); an unknown code is internal.
pub fn rpc_to_error(err: pb::RpcError) -> Error {
    match ErrorCode::from_wire(&err.code) {
        Some(code) => Error::from_code(code, err.message),
        None => Error::Internal(format!("{} ({})", err.message, err.code)),
    }
}

/// A malformed message from the peer.
pub(crate) fn bad(what: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(what.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const CODES: [(ErrorCode, Code); 8] = [
        (ErrorCode::InvalidArgument, Code::InvalidArgument),
        (ErrorCode::Unauthenticated, Code::Unauthenticated),
        (ErrorCode::PermissionDenied, Code::PermissionDenied),
        (ErrorCode::NotFound, Code::NotFound),
        (ErrorCode::AlreadyExists, Code::AlreadyExists),
        (ErrorCode::ResourceExhausted, Code::ResourceExhausted),
        (ErrorCode::Unavailable, Code::Unavailable),
        (ErrorCode::Internal, Code::Internal),
    ];

    #[test]
    fn every_code_round_trips_through_a_status() {
        for (code, grpc) in CODES {
            let err = Error::from_code(code, "why");
            let status = error_to_status(&err);
            assert_eq!(status.code(), grpc, "{code}");
            assert_eq!(status.message(), "why", "{code}");
            let back = status_to_error(status);
            assert_eq!(back.code(), code, "{code}");
            assert_eq!(error_to_status(&back).message(), "why", "{code}");
        }
    }

    #[test]
    fn a_wait_survives_the_hop() {
        let wait = std::time::Duration::from_millis(1500);
        for err in [
            Error::Throttled {
                message: "slow down".into(),
                retry_after: wait,
            },
            Error::Overloaded {
                message: "busy".into(),
                retry_after: wait,
            },
        ] {
            let back = status_to_error(error_to_status(&err));
            assert_eq!(back.code(), err.code());
            assert_eq!(back.retry_after(), Some(wait));
            assert_eq!(back.to_string(), err.to_string());
        }
    }

    #[test]
    fn every_code_round_trips_through_a_batch_item() {
        for (code, _) in CODES {
            let back = rpc_to_error(error_to_rpc(&Error::from_code(code, "m")));
            assert_eq!(back.code(), code);
        }
        let unknown = rpc_to_error(pb::RpcError {
            code: "nope".into(),
            message: "m".into(),
        });
        assert_eq!(unknown.code(), ErrorCode::Internal);
    }

    #[test]
    fn timeouts_backends_and_transport_failures() {
        let t = status_to_error(error_to_status(&Error::Timeout("slow".into())));
        assert!(matches!(t, Error::Timeout(ref m) if m == "slow"), "{t:?}");
        assert!(t.is_retryable());

        let b = error_to_status(&Error::backend("db down", std::io::Error::other("x")));
        assert_eq!(b.code(), Code::Internal);
        assert_eq!(status_to_error(b).code(), ErrorCode::Internal);

        let local = Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(local.code(), Code::Unknown);
        let e = status_to_error(local);
        assert!(e.is_retryable(), "{e:?}");
        assert_eq!(e.code(), ErrorCode::Unavailable);

        assert!(status_to_error(Status::deadline_exceeded("d")).is_retryable());
        assert!(matches!(
            status_to_error(Status::cancelled("Timeout expired")),
            Error::Timeout(_)
        ));
        assert_eq!(
            status_to_error(Status::unknown("?")).code(),
            ErrorCode::Internal
        );
    }
}
