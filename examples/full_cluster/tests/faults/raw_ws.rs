//! Raw WebSocket sessions (no client library): opening one, and watching the
//! order of the `message` frames it receives.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

/// What [`watch_order`] saw so far (shared with the test while it runs).
pub type Seen = Arc<Mutex<BTreeSet<u64>>>;

/// Reads `message` frames of one raw session until `stop`: counts frames
/// whose seq is below one already seen in their conversation and whose
/// msg_id is new (out of order; a repeat of a seen msg_id is a duplicate,
/// which at-least-once allows); records every msg_id in `seen`.
pub async fn watch_order(mut ws: Ws, seen: Seen, stop: CancellationToken) -> u64 {
    let mut top: HashMap<String, u64> = HashMap::new();
    let mut out_of_order = 0;
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break,
            f = ws.next() => f,
        };
        let Some(Ok(WsMessage::Text(text))) = frame else {
            if frame.is_none() {
                break;
            }
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if v["type"] != "message" || v["kind"] == "system" {
            continue;
        }
        let (Some(conv), Some(seq), Some(id)) = (
            v["conversation_id"].as_str(),
            v["seq"].as_u64(),
            v["msg_id"].as_str().and_then(|s| s.parse::<u64>().ok()),
        ) else {
            continue;
        };
        let new = seen.lock().unwrap().insert(id);
        let last = top.entry(conv.to_owned()).or_insert(0);
        if seq > *last {
            *last = seq;
        } else if new {
            out_of_order += 1;
        }
    }
    out_of_order
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn open_ws(url: &str, token: &str) -> Option<Ws> {
    let mut req = url.into_client_request().ok()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().ok()?);
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .ok()?
    .ok()
    .map(|(ws, _)| ws)
}
