#![no_main]
//! The HTTP API's inputs as `im-transport/src/http/routes.rs` reads them: the
//! JSON bodies (axum's `Json` extractor is `serde_json::from_slice`) and the
//! path parameters (`FromStr` of the ids). The first byte picks the input,
//! the rest is the body. Never panic; a parsed id is canonical (it displays
//! as the input); a parsed send request survives a JSON round trip.
//!
//! `SendRequest` is the real type. The other bodies are private to
//! `im-transport` or carry only strings, numbers and ids; they are mirrored
//! here field for field (see routes.rs), so this crate builds from `im-core`
//! alone.

use im_core::id::{ConversationId, GroupId, MessageId, UserId};
use im_core::protocol::SendRequest;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// `POST /users`, `POST /sessions`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Credentials {
    username: String,
    password: String,
}

/// `POST /groups`, `PATCH /groups/{id}`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct NewGroup {
    name: String,
}

/// `POST /groups/{id}/members`, `POST /groups/{id}/transfer`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct NewMember {
    user_id: UserId,
}

/// `POST /conversations/{id}/read`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct ReadUpTo {
    seq: u64,
}

/// `PUT /groups/{id}/members/{user}/role`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct RoleChange {
    role: String,
}

/// `PUT /groups/{id}/mute`, `PUT /groups/{id}/members/{user}/mute`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct MuteChange {
    muted: bool,
    duration_ms: Option<u64>,
}

fn canonical<T: std::str::FromStr + std::fmt::Display>(s: &str) {
    if let Ok(v) = s.parse::<T>() {
        assert_eq!(v.to_string(), s, "a parsed id is canonical");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => {
            if let Ok(r) = serde_json::from_slice::<SendRequest>(body) {
                let json = serde_json::to_vec(&r).expect("a parsed request serializes");
                let again: SendRequest = serde_json::from_slice(&json).expect("and parses again");
                assert_eq!(again, r);
            }
        }
        1 => {
            let _ = serde_json::from_slice::<Credentials>(body);
        }
        2 => {
            let _ = serde_json::from_slice::<NewGroup>(body);
        }
        3 => {
            if let Ok(m) = serde_json::from_slice::<NewMember>(body) {
                canonical::<UserId>(&m.user_id.to_string());
            }
        }
        4 => {
            let _ = serde_json::from_slice::<ReadUpTo>(body);
        }
        5 => {
            let _ = serde_json::from_slice::<RoleChange>(body);
        }
        6 => {
            let _ = serde_json::from_slice::<MuteChange>(body);
        }
        _ => {
            // Path parameters arrive percent-decoded as UTF-8 strings.
            if let Ok(s) = std::str::from_utf8(body) {
                canonical::<ConversationId>(s);
                canonical::<UserId>(s);
                canonical::<GroupId>(s);
                canonical::<MessageId>(s);
            }
        }
    }
});
