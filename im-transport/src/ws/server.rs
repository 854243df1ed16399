//! The upgrade: token from `Authorization: Bearer` (wins) or `?token=`, checked
//! before the upgrade (401 otherwise); optional Origin allowlist (403); then
//! the socket runs in its own task. An optional `?device=` labels the session
//! (default `web`; 1–32 of `A-Z a-z 0-9 _ -`, else 400) for the multi-device
//! policy. Neither the token nor the query string (which may hold it) is
//! ever logged; the session keeps only the token's id and expiry.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::TokioIo;
use im_core::Error;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::http::errors::ApiError;

use super::config::WsState;
use super::session::run_session;

/// A router serving `GET /ws`.
pub fn ws_router(state: WsState) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(state)
}

fn bearer(req: &Request) -> Option<String> {
    if let Some(h) = req.headers().get(header::AUTHORIZATION) {
        let v = h.to_str().ok()?;
        return v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(|t| t.trim().to_owned());
    }
    let query = req.uri().query()?;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token=").map(percent_decode))
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

/// The label of a session when none (or an empty one) is given.
pub const DEFAULT_DEVICE: &str = "web";

/// Longest device label.
pub const MAX_DEVICE_LEN: usize = 32;

/// The session's device label from `?device=`: absent or empty is
/// [`DEFAULT_DEVICE`]; otherwise 1–32 characters of `A-Z a-z 0-9 _ -`, else
/// `invalid_argument` (multi-device policies are keyed by this label).
fn device_label(given: Option<String>) -> Result<String, Error> {
    match given {
        None => Ok(DEFAULT_DEVICE.to_owned()),
        Some(d) if d.is_empty() => Ok(DEFAULT_DEVICE.to_owned()),
        Some(d)
            if d.len() <= MAX_DEVICE_LEN
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(d)
        }
        Some(_) => Err(Error::InvalidArgument(format!(
            "device must be 1-{MAX_DEVICE_LEN} characters of A-Z, a-z, 0-9, _ and -"
        ))),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_upgrade(req: &Request) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

async fn upgrade(State(state): State<WsState>, mut req: Request) -> Response {
    if !state.config.allowed_origins.is_empty() {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !state.config.allowed_origins.iter().any(|o| o == origin) {
            return ApiError(Error::PermissionDenied("origin not allowed".into())).into_response();
        }
    }
    // Per-address limits before anything costs: a flood of upgrades from
    // one address is answered 429 with a map lookup.
    let permit = match &state.front_door {
        Some(door) => {
            let ip = crate::http::client_ip(req.extensions(), req.headers(), door);
            match door.open_socket(ip).await {
                Ok(p) => Some(p),
                Err(e) => return ApiError(e).into_response(),
            }
        }
        None => None,
    };
    let Some(token) = bearer(&req) else {
        return ApiError(Error::Unauthenticated("missing bearer token".into())).into_response();
    };
    let auth = match state.connect.authenticate_session(&token).await {
        Ok(a) => a,
        Err(e) => return ApiError(e).into_response(),
    };
    if !is_upgrade(&req) {
        return ApiError(Error::InvalidArgument(
            "expected a WebSocket upgrade request".into(),
        ))
        .into_response();
    }
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return ApiError(Error::InvalidArgument("missing Sec-WebSocket-Key".into()))
            .into_response();
    };
    if !version_ok {
        return ApiError(Error::InvalidArgument(
            "unsupported WebSocket version".into(),
        ))
        .into_response();
    }
    let device = match device_label(query_param(&req, "device")) {
        Ok(d) => d,
        Err(e) => return ApiError(e).into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(state.config.tungstenite()),
                )
                .await;
                run_session(ws, state, auth, device).await;
                // The socket is counted against its address until it closes.
                drop(permit);
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::{device_label, percent_decode};

    #[test]
    fn device_labels() {
        assert_eq!(device_label(None).ok().as_deref(), Some("web"));
        assert_eq!(
            device_label(Some(String::new())).ok().as_deref(),
            Some("web")
        );
        assert_eq!(
            device_label(Some("ios_2-b".into())).ok().as_deref(),
            Some("ios_2-b")
        );
        assert_eq!(
            device_label(Some("a".repeat(32))).ok(),
            Some("a".repeat(32))
        );
        for bad in ["a".repeat(33), "mo bile".into(), "é".into(), "a/b".into()] {
            assert!(device_label(Some(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("eyJ.x-y_z"), "eyJ.x-y_z");
    }
}
