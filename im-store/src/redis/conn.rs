//! One connection type for a standalone Redis and a Redis Cluster.
//!
//! [`Con`] wraps either the auto-reconnecting `ConnectionManager` of a
//! standalone server or the async cluster client of `redis-rs`, and implements
//! `redis::aio::ConnectionLike` by delegation, so `cmd.query_async(&mut con)`
//! and `pipe.query_async(&mut con)` work on both. On a cluster a single
//! command is routed by its first key, and every key of a pipeline or a
//! `MULTI` transaction must be in one slot (else the client refuses it with a
//! `CrossSlot` error before sending); a script call or a multi-key command
//! whose keys span slots is refused by the server (`CROSSSLOT`). Note that
//! redis-rs reports an error reply to `EXEC` (`CROSSSLOT`, `EXECABORT`) as
//! `UnexpectedReturnType` "Invalid response when parsing multi response".
//! [`query_per_slot`] runs a batch of independent commands whose keys span
//! many slots: one pipeline per slot, in parallel, each result handed back in
//! input order. [`slot_of`] is the cluster's key-to-slot function
//! (`CLUSTER KEYSLOT`).

// The Redis backends adopt these while they are being ported to the cluster.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// The number of hash slots of a Redis Cluster.
pub(crate) const SLOTS: u16 = 16384;

/// A connection to a standalone Redis or to a Redis Cluster (cheap to clone;
/// clones share the underlying connections).
#[derive(Clone)]
pub(crate) enum Con {
    /// A standalone server (or a proxy in front of one).
    Single(ConnectionManager),
    /// A Redis Cluster: commands are routed to the master of their key's slot,
    /// following `MOVED`/`ASK` redirections.
    Cluster(ClusterConnection),
}

impl Con {
    /// Whether this is a cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Con::Cluster(_))
    }
}

impl std::fmt::Debug for Con {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Con::Single(_) => "Con::Single",
            Con::Cluster(_) => "Con::Cluster",
        })
    }
}

impl From<ConnectionManager> for Con {
    fn from(c: ConnectionManager) -> Self {
        Con::Single(c)
    }
}

impl From<ClusterConnection> for Con {
    fn from(c: ClusterConnection) -> Self {
        Con::Cluster(c)
    }
}

impl ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Con::Single(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Con::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Con::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Single(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }
}

/// Connects to the Redis Cluster that `urls` (`redis://host:port`, any of
/// its nodes; the rest of the topology is discovered) belong to.
/// `connect_timeout` bounds each connection attempt to a node,
/// `response_timeout` each request (retries included), and `retries` is how
/// many times a request is retried after a connection error or a
/// redirection before it fails.
pub(crate) async fn connect_cluster(
    urls: &[String],
    connect_timeout: Duration,
    response_timeout: Duration,
    retries: u32,
) -> RedisResult<ClusterConnection> {
    if urls.is_empty() {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "no Redis Cluster node URL given",
        )));
    }
    ClusterClientBuilder::new(urls.iter().map(String::as_str))
        .connection_timeout(connect_timeout)
        .response_timeout(response_timeout)
        .retries(retries)
        .build()?
        .get_async_connection()
        .await
}

/// The CRC16 (XMODEM: polynomial 0x1021, initial value 0) lookup table.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from(((crc >> 8) as u8) ^ b)]
    })
}

/// The hash slot of `key`, as `CLUSTER KEYSLOT` computes it: CRC16 modulo
/// 16384 of the key, or of its hash tag (what is between the first `{` and
/// the first `}` after it, if that is not empty).
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// Runs independent commands and returns each one's own result (a server
/// error is that command's `Err`, the others still run), in input order.
/// Each command comes with its routing key: on a cluster, the command must
/// only touch keys of that key's slot.
///
/// On a standalone server: one (non-atomic) pipeline, one round trip. On a
/// cluster: one pipeline per slot, sent to the slot's master, all in
/// parallel (a cluster pipeline must be single-slot). Nothing is atomic
/// across commands, and the order in which commands of different slots
/// execute is unspecified (within a slot it is the input order).
///
/// The outer `Err` is a connection-level failure that left no command's
/// outcome known: the standalone pipeline failed, or on a cluster every
/// slot's pipeline did. When only some slots' pipelines fail, each of their
/// commands gets a clone of the error and the other results are returned.
/// An empty batch returns at once.
pub(crate) async fn query_per_slot(
    con: &mut Con,
    cmds: Vec<(Vec<u8>, Cmd)>,
) -> RedisResult<Vec<RedisResult<Value>>> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    let cluster = match con {
        Con::Single(c) => {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (_, cmd) in cmds {
                pipe.add_command(cmd);
            }
            return pipe.query_async(c).await;
        }
        Con::Cluster(c) => c,
    };

    struct Group {
        key: Vec<u8>,
        pipe: Pipeline,
        positions: Vec<usize>,
    }
    let total = cmds.len();
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of_slot: HashMap<u16, usize> = HashMap::new();
    for (position, (key, cmd)) in cmds.into_iter().enumerate() {
        let g = *group_of_slot.entry(slot_of(&key)).or_insert_with(|| {
            groups.push(Group {
                key,
                pipe: redis::pipe(),
                positions: Vec::new(),
            });
            groups.len() - 1
        });
        groups[g].pipe.add_command(cmd);
        groups[g].positions.push(position);
    }

    let runs = groups.iter_mut().map(|g| {
        let mut con = cluster.clone();
        let pipe = std::mem::take(&mut g.pipe);
        let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(&g.key, SlotAddr::Master));
        async move {
            let count = pipe.len();
            con.route_pipeline(pipe, 0, count, route).await
        }
    });
    let outcomes = join_all(runs).await;

    let mut results: Vec<Option<RedisResult<Value>>> = (0..total).map(|_| None).collect();
    let mut first_err = None;
    let mut any_ok = false;
    for (group, outcome) in groups.iter().zip(outcomes) {
        match outcome {
            Ok(values) if values.len() == group.positions.len() => {
                any_ok = true;
                for (&p, value) in group.positions.iter().zip(values) {
                    results[p] = Some(match value {
                        Value::ServerError(e) => Err(e.into()),
                        v => Ok(v),
                    });
                }
            }
            Ok(values) => {
                let e = RedisError::from((
                    ErrorKind::Parse,
                    "wrong number of pipeline replies",
                    format!("expected {}, got {}", group.positions.len(), values.len()),
                ));
                for &p in &group.positions {
                    results[p] = Some(Err(e.clone()));
                }
                first_err.get_or_insert(e);
            }
            Err(e) => {
                for &p in &group.positions {
                    results[p] = Some(Err(e.clone()));
                }
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) if !any_ok => Err(e),
        _ => Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(RedisError::from((ErrorKind::Client, "no reply")))))
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use redis::ServerErrorKind;

    const DEFAULT_CLUSTER_URLS: &str =
        "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003";

    fn cluster_urls() -> Vec<String> {
        std::env::var("REDIS_CLUSTER_URLS")
            .unwrap_or_else(|_| DEFAULT_CLUSTER_URLS.to_owned())
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect()
    }

    fn redis_url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| super::super::DEFAULT_REDIS_URL.to_owned())
    }

    /// The test cluster; panics (never skips) when it cannot be reached.
    async fn cluster() -> ClusterConnection {
        let urls = cluster_urls();
        let connect = connect_cluster(&urls, Duration::from_secs(2), Duration::from_secs(5), 2);
        let res = tokio::time::timeout(Duration::from_secs(15), connect).await;
        let err = match res {
            Ok(Ok(con)) => return con,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        panic!(
            "Redis Cluster not reachable at {}: run scripts/services.sh ({err})",
            urls.join(",")
        );
    }

    /// The test standalone server; panics when it cannot be reached.
    async fn single() -> ConnectionManager {
        let url = redis_url();
        let res = async {
            redis::Client::open(url.as_str())?
                .get_connection_manager()
                .await
        };
        match tokio::time::timeout(Duration::from_secs(10), res).await {
            Ok(Ok(con)) => con,
            Ok(Err(e)) => panic!("Redis not reachable at {url}: run scripts/services.sh ({e})"),
            Err(_) => panic!("Redis not reachable at {url}: run scripts/services.sh (timed out)"),
        }
    }

    /// A key prefix of its own for each test run.
    fn namespace(test: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("im-test:conn:{test}:{}:{nanos}", std::process::id())
    }

    /// Two keys of different slots served by the same master (found by
    /// asking `node`: a key it does not serve draws `MOVED`).
    async fn same_node_two_slots(
        node: &mut redis::aio::MultiplexedConnection,
        ns: &str,
    ) -> (String, String) {
        let mut found: Vec<String> = Vec::new();
        for i in 0..1000 {
            let key = format!("{ns}:{{t{i}}}");
            let served: RedisResult<Option<String>> =
                redis::cmd("GET").arg(&key).query_async(node).await;
            if served.is_ok()
                && found
                    .iter()
                    .all(|k| slot_of(k.as_bytes()) != slot_of(key.as_bytes()))
            {
                found.push(key);
                if found.len() == 2 {
                    let b = found.pop().unwrap();
                    return (found.pop().unwrap(), b);
                }
            }
        }
        panic!("no two keys of different slots on one node");
    }

    #[test]
    fn slot_of_matches_known_values() {
        // Reference values from `CLUSTER KEYSLOT` (Redis 7).
        let known: &[(&str, u16)] = &[
            ("foo", 12182),
            ("user1000", 3443),
            ("{user1000}.following", 3443),
            ("{user1000}.followers", 3443),
            ("123456789", 12739),
            ("", 0),
            ("{}", 15257),
            ("foo{}{bar}", 8363),
            ("foo{{bar}}zap", 4015),
            ("foo{bar}{zap}", 5061),
            ("a{b", 13340),
            ("im:{q0}:stream", 3387),
            ("im:sess:{42}", 8000),
        ];
        for &(key, slot) in known {
            assert_eq!(slot_of(key.as_bytes()), slot, "slot of {key:?}");
        }
        assert_eq!(slot_of(b"foo{bar}{zap}"), slot_of(b"bar"));
        assert_eq!(crc16(b"123456789"), 0x31C3); // the CRC16/XMODEM check value
    }

    #[tokio::test]
    async fn slot_of_agrees_with_the_cluster() {
        let mut con = Con::Cluster(cluster().await);
        let keys: Vec<String> = (0..300)
            .map(|i| match i % 3 {
                0 => format!("k{i}"),
                1 => format!("im:{{q{i}}}:seq:{i}"),
                _ => format!("x{{}}{i}{{y{i}}}"),
            })
            .collect();
        for key in &keys {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut con)
                .await
                .unwrap();
            assert_eq!(slot_of(key.as_bytes()), slot, "slot of {key:?}");
        }
    }

    /// SETs then GETs keys of many slots (plus one failing command) through
    /// `query_per_slot` and checks every result lands in its input position.
    async fn per_slot_roundtrip(con: &mut Con, ns: &str) {
        const N: usize = 200;
        let keys: Vec<String> = (0..N).map(|i| format!("{ns}:{{k{i}}}")).collect();
        let slots: std::collections::HashSet<u16> =
            keys.iter().map(|k| slot_of(k.as_bytes())).collect();
        assert!(slots.len() > 100, "keys should span many slots");

        // Writes: SET each key to its index; position 7 also gets a WRONGTYPE.
        let mut cmds: Vec<(Vec<u8>, Cmd)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let mut set = redis::cmd("SET");
            set.arg(k).arg(i);
            cmds.push((k.clone().into_bytes(), set));
        }
        let mut wrong = redis::cmd("HSET");
        wrong.arg(&keys[7]).arg("f").arg("v");
        cmds.insert(8, (keys[7].clone().into_bytes(), wrong));
        let res = query_per_slot(con, cmds).await.unwrap();
        assert_eq!(res.len(), N + 1);
        for (i, r) in res.iter().enumerate() {
            if i == 8 {
                let e = r.as_ref().unwrap_err();
                assert!(e.to_string().contains("WRONGTYPE"), "{e}");
            } else {
                assert_eq!(r.as_ref().unwrap(), &Value::Okay, "reply {i}");
            }
        }

        // Reads, in reverse and interleaved with INCRs of the same keys.
        let mut cmds: Vec<(Vec<u8>, Cmd)> = Vec::new();
        for k in keys.iter().rev() {
            let mut get = redis::cmd("GET");
            get.arg(k);
            cmds.push((k.clone().into_bytes(), get));
            let mut incr = redis::cmd("INCRBY");
            incr.arg(k).arg(1000);
            cmds.push((k.clone().into_bytes(), incr));
        }
        let res = query_per_slot(con, cmds).await.unwrap();
        assert_eq!(res.len(), 2 * N);
        for (j, i) in (0..N).rev().enumerate() {
            let got: String =
                redis::from_redis_value(res[2 * j].as_ref().unwrap().clone()).unwrap();
            assert_eq!(got, i.to_string(), "GET of key {i}");
            let incr: i64 =
                redis::from_redis_value(res[2 * j + 1].as_ref().unwrap().clone()).unwrap();
            assert_eq!(incr, i as i64 + 1000, "INCRBY of key {i}");
        }

        // Cleanup, one DEL per key (a multi-key DEL would span slots).
        let cmds = keys
            .iter()
            .map(|k| {
                let mut del = redis::cmd("DEL");
                del.arg(k);
                (k.clone().into_bytes(), del)
            })
            .collect();
        let res = query_per_slot(con, cmds).await.unwrap();
        assert!(res.iter().all(|r| matches!(r, Ok(Value::Int(1)))));

        assert!(query_per_slot(con, Vec::new()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn query_per_slot_keeps_input_order_on_the_cluster() {
        let mut con = Con::Cluster(cluster().await);
        assert!(con.is_cluster());
        per_slot_roundtrip(&mut con, &namespace("cluster")).await;
    }

    #[tokio::test]
    async fn query_per_slot_keeps_input_order_on_a_single_server() {
        let mut con = Con::Single(single().await);
        assert!(!con.is_cluster());
        per_slot_roundtrip(&mut con, &namespace("single")).await;
    }

    #[tokio::test]
    async fn con_delegates_commands_and_pipelines() {
        for mut con in [Con::Single(single().await), Con::Cluster(cluster().await)] {
            let key = format!("{}:{{one}}", namespace("delegate"));
            let () = redis::cmd("SET")
                .arg(&key)
                .arg(5)
                .query_async(&mut con)
                .await
                .unwrap();
            let (a, b): (i64, i64) = redis::pipe()
                .cmd("INCR")
                .arg(&key)
                .cmd("INCR")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap();
            assert_eq!((a, b), (6, 7), "{con:?}");
            let (c,): (i64,) = redis::pipe()
                .atomic()
                .cmd("INCR")
                .arg(&key)
                .cmd("DEL")
                .arg(&key)
                .ignore()
                .query_async(&mut con)
                .await
                .unwrap();
            assert_eq!(c, 8, "{con:?}");
        }
    }

    #[tokio::test]
    async fn the_cluster_rejects_cross_slot_multi_and_eval() {
        let urls = cluster_urls();
        let mut con = Con::Cluster(cluster().await);
        let ns = namespace("crossslot");

        // Straight to one node, bypassing client-side routing: the server
        // itself refuses a transaction and a script spanning two slots.
        let mut node = redis::Client::open(urls[0].as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Redis Cluster not reachable at {}: run scripts/services.sh ({e})",
                    urls[0]
                )
            });
        let (a, b) = same_node_two_slots(&mut node, &ns).await;
        // The raw EXEC reply: redis-rs 1.8 turns an error reply to EXEC into
        // "Invalid response when parsing multi response" (UnexpectedReturnType).
        let mut multi = redis::pipe();
        multi.atomic().set(&a, 1).set(&b, 2);
        let exec = node.req_packed_commands(&multi, 3, 1).await.unwrap();
        match exec.as_slice() {
            [Value::ServerError(e)] => {
                assert_eq!(e.code(), "CROSSSLOT", "MULTI: {e:?}");
            }
            other => {
                panic!("MULTI across two slots: expected a CROSSSLOT reply to EXEC, got {other:?}")
            }
        }
        let e = multi.query_async::<((), ())>(&mut node).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedReturnType, "{e}");
        let eval: RedisResult<Value> = redis::cmd("EVAL")
            .arg("redis.call('SET', KEYS[1], 1); redis.call('SET', KEYS[2], 2)")
            .arg(2)
            .arg(&a)
            .arg(&b)
            .query_async(&mut node)
            .await;
        let e = eval.unwrap_err();
        assert_eq!(e.code(), Some("CROSSSLOT"), "EVAL on the node: {e}");

        // Through the cluster client: the script is routed by its first key
        // and refused by the server; the transaction is refused by the client.
        let (x, y) = (format!("{ns}:{{x}}"), format!("{ns}:{{y}}"));
        assert_ne!(slot_of(x.as_bytes()), slot_of(y.as_bytes()));
        let eval: RedisResult<Value> = redis::cmd("EVAL")
            .arg("return redis.call('MSET', KEYS[1], 1, KEYS[2], 2)")
            .arg(2)
            .arg(&x)
            .arg(&y)
            .query_async(&mut con)
            .await;
        let e = eval.unwrap_err();
        assert_eq!(e.code(), Some("CROSSSLOT"), "EVAL on the cluster: {e}");
        assert_eq!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::CrossSlot),
            "{e}"
        );
        let multi: RedisResult<((), ())> = redis::pipe()
            .atomic()
            .set(&x, 1)
            .set(&y, 2)
            .query_async(&mut con)
            .await;
        let e = multi.unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::CrossSlot),
            "{e}"
        );

        // Nothing was written.
        for k in [&a, &b, &x, &y] {
            let exists: bool = redis::cmd("EXISTS")
                .arg(k)
                .query_async(&mut con)
                .await
                .unwrap();
            assert!(!exists, "{k} was written");
        }
    }
}
