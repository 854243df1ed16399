//! Redis queue introspection: pending entries and backlogs of the consumer
//! groups on every shard.

use std::collections::HashMap;

use im_core::task::{PERSIST_GROUP, PUSH_GROUP};

use crate::setup::SHARDS;

// Redis queue introspection.

pub async fn redis_con(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

pub fn stream_key(ns: &str, shard: u32) -> String {
    format!("{ns}:{{p{shard}}}:stream")
}

/// A pending entry: (group, stream, id, consumer).
pub type Pending = (String, String, String, String);

/// Every pending entry of both groups on every shard.
pub async fn pel(con: &mut redis::aio::MultiplexedConnection, ns: &str) -> Vec<Pending> {
    let mut out = Vec::new();
    for g in [PUSH_GROUP, PERSIST_GROUP] {
        for s in 0..SHARDS {
            let key = stream_key(ns, s);
            let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
                .arg(&key)
                .arg(g)
                .arg("-")
                .arg("+")
                .arg(1_000_000)
                .query_async(con)
                .await
                .unwrap_or_default();
            out.extend(
                rows.into_iter()
                    .map(|(id, consumer, _, _)| (g.to_owned(), key.clone(), id, consumer)),
            );
        }
    }
    out
}

pub fn redis_str(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// (pending, lag) of `group` summed over the shards (`XINFO GROUPS`); a lag
/// Redis cannot tell is counted by reading the undelivered entries.
pub async fn backlog(
    con: &mut redis::aio::MultiplexedConnection,
    ns: &str,
    group: &str,
) -> (u64, u64) {
    let (mut pending, mut lag) = (0, 0);
    for s in 0..SHARDS {
        let key = stream_key(ns, s);
        let groups: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(con)
            .await
            .unwrap_or_default();
        for g in groups {
            let fields: HashMap<String, &redis::Value> = g
                .chunks(2)
                .filter_map(|kv| Some((redis_str(&kv[0])?, kv.get(1)?)))
                .collect();
            if fields.get("name").and_then(|v| redis_str(v)).as_deref() != Some(group) {
                continue;
            }
            pending += fields
                .get("pending")
                .and_then(|v| redis_str(v))
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            match fields
                .get("lag")
                .and_then(|v| redis_str(v))
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(l) => lag += l,
                None => {
                    let last = fields
                        .get("last-delivered-id")
                        .and_then(|v| redis_str(v))
                        .unwrap_or_else(|| "0-0".into());
                    let after: Vec<redis::Value> = redis::cmd("XRANGE")
                        .arg(&key)
                        .arg(format!("({last}"))
                        .arg("+")
                        .query_async(con)
                        .await
                        .unwrap_or_default();
                    lag += after.len() as u64;
                }
            }
        }
    }
    (pending, lag)
}
