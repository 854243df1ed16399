//! The Redis backends against a real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`): every applicable conformance suite, trimming,
//! undecodable entries and reconnection after the server kills the connection.
//! Each test uses its own random key prefix and deletes it at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use im_core::model::{Entry, Event, EventAudience, EventEnvelope};
use im_core::ports::{EntryId, MessageQueue, QueueConsumer};
use im_core::testkit;
use im_store::redis::{RedisConfig, RedisConn, RedisQueue};

fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The seed nodes of the test Redis Cluster (`REDIS_CLUSTER_URLS`, default
/// the three loopback masters `scripts/services.sh` starts).
fn cluster_urls() -> Vec<String> {
    std::env::var("REDIS_CLUSTER_URLS")
        .unwrap_or_else(|_| {
            "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003".into()
        })
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Which Redis a test runs on: every Redis-backed port must work on both.
#[derive(Debug, Clone, Copy, Default)]
enum Kind {
    #[default]
    Standalone,
    Cluster,
}

const KINDS: [Kind; 2] = [Kind::Standalone, Kind::Cluster];

/// Connects with a fresh prefix, or fails the test naming the server.
async fn connect(config: RedisConfig) -> RedisConn {
    let target = if config.cluster_urls.is_empty() {
        format!("Redis at {}", config.url)
    } else {
        format!("the Redis Cluster at {}", config.cluster_urls.join(","))
    };
    RedisConn::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "{target} is not reachable ({e}). These tests need a real Redis 7 and a \
             3-master Redis Cluster: start both with `scripts/services.sh`, or point \
             REDIS_URL / REDIS_CLUSTER_URLS at yours."
        )
    })
}

/// Hands out fresh namespaces and deletes them all on `cleanup`.
#[derive(Clone, Default)]
struct Namespaces(Arc<Mutex<Vec<RedisConn>>>, Kind);

impl Namespaces {
    fn of(kind: Kind) -> Namespaces {
        Namespaces(Arc::default(), kind)
    }

    async fn fresh(&self) -> RedisConn {
        self.fresh_with(|c| c).await
    }

    async fn fresh_with(&self, f: impl FnOnce(RedisConfig) -> RedisConfig) -> RedisConn {
        let base = match self.1 {
            Kind::Standalone => RedisConfig::new(url()),
            Kind::Cluster => RedisConfig::cluster(cluster_urls()),
        };
        let conn = connect(f(base.with_prefix(testkit::unique("imtest")))).await;
        self.0.lock().unwrap().push(conn.clone());
        conn
    }

    async fn cleanup(&self) {
        let conns: Vec<_> = self.0.lock().unwrap().drain(..).collect();
        for c in conns {
            c.delete_namespace().await.expect("cleanup");
        }
    }
}

/// Runs a conformance suite on fresh namespaces of both kinds of Redis:
/// `conforms!(suite, |conn| backend built from conn)`.
macro_rules! conforms {
    ($suite:path, |$c:ident| $make:expr) => {
        for kind in KINDS {
            let ns = Namespaces::of(kind);
            let n = ns.clone();
            $suite(move || {
                let n = n.clone();
                async move {
                    let $c = n.fresh().await;
                    $make
                }
            })
            .await;
            ns.cleanup().await;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_queue_conforms() {
    conforms!(testkit::queue_suite, |c| Arc::new(c.queue()) as _);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_queue_conforms_with_one_partition_and_eager_trimming() {
    for kind in KINDS {
        let ns = Namespaces::of(kind);
        let n = ns.clone();
        testkit::queue_suite(move || {
            let n = n.clone();
            async move {
                let c = n
                    .fresh_with(|c| RedisConfig {
                        trim_every: 1,
                        trim_approx: false,
                        ..c.with_partitions(1)
                    })
                    .await;
                Arc::new(c.queue()) as _
            }
        })
        .await;
        ns.cleanup().await;
    }
}

#[tokio::test]
async fn redis_leases_conform() {
    conforms!(testkit::lease_suite, |c| Arc::new(c.leases()) as _);
}

#[tokio::test]
async fn redis_sessions_conform() {
    conforms!(testkit::session_suite, |c| Arc::new(c.sessions()) as _);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sequences_conform() {
    conforms!(testkit::sequence_suite, |c| Arc::new(c.sequences()) as _);
}

#[tokio::test]
async fn redis_dedup_conforms() {
    conforms!(testkit::dedup_suite, |c| Arc::new(c.dedup()) as _);
}

#[tokio::test]
async fn redis_throttle_conforms() {
    conforms!(testkit::throttle_suite, |c| Arc::new(c.throttle()) as _);
}

#[tokio::test]
async fn redis_revocations_conform() {
    conforms!(testkit::revocation_suite, |c| Arc::new(c.revocations())
        as _);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_send_pipeline_conforms() {
    conforms!(testkit::send_pipeline_suite, |c| {
        let q = c.queue();
        (Arc::new(c.send_pipeline(q.clone())) as _, Arc::new(q) as _)
    });
}

/// The composed pipeline over the Redis ports is wire-compatible with the
/// script: both pass the same suite on the same key layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_composed_send_pipeline_conforms() {
    use im_core::compose::ComposedSendPipeline;
    conforms!(testkit::send_pipeline_suite, |c| {
        let q = Arc::new(c.queue());
        let p = ComposedSendPipeline::new(Arc::new(c.dedup()), Arc::new(c.sequences()), q.clone());
        (Arc::new(p) as _, q as _)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_schedules_conform() {
    conforms!(testkit::schedule_suite, |c| Arc::new(c.schedules()) as _);
}

/// A scheduled send of `owner` due at `deliver_at`.
fn scheduled(owner: im_core::id::UserId, deliver_at: i64) -> im_core::ports::ScheduledSend {
    let peer = im_core::id::UserId(testkit::random_id());
    let conv = im_core::id::ConversationId::direct(owner, peer).unwrap();
    let mut envelope = testkit::sample_envelope(conv, 0);
    envelope.message.from = owner;
    envelope.message.to = im_core::model::Target::User(peer);
    im_core::ports::ScheduledSend {
        envelope,
        deliver_at,
    }
}

/// Held sends live in Redis, not in the process: a new connection (a
/// restarted node) finds them, their order and their keys.
#[tokio::test]
async fn scheduled_sends_survive_the_connection() {
    use im_core::ports::ScheduleStore;
    let ns = Namespaces::default();
    let first = ns.fresh().await;
    let owner = im_core::id::UserId(testkit::random_id());
    let late = scheduled(owner, 1_700_000_000_200);
    let soon = scheduled(owner, 1_700_000_000_100);
    let ttl = Duration::from_secs(60);
    let s = first.schedules();
    assert_eq!(s.hold(&late, ttl).await.unwrap(), None);
    assert_eq!(s.hold(&soon, ttl).await.unwrap(), None);
    drop(s);
    let prefix = first.config().prefix.clone();
    drop(first);

    let again = connect(RedisConfig::new(url()).with_prefix(prefix)).await;
    let s = again.schedules();
    assert_eq!(
        s.pending(owner).await.unwrap(),
        vec![soon.clone(), late.clone()],
        "a new connection lists the sends held through another"
    );
    assert_eq!(
        s.due(1_700_000_001_000, 10).await.unwrap(),
        vec![soon.clone(), late.clone()],
        "a new connection sees the due sends in order"
    );
    let mut retry = late.clone();
    retry.envelope.message.msg_id = im_core::id::MessageId(testkit::random_id());
    assert_eq!(
        s.hold(&retry, ttl).await.unwrap(),
        Some(late),
        "a new connection finds the keys"
    );
    ns.cleanup().await;
}

/// An item that is not a `ScheduledSend`, or a due entry without an item,
/// neither panics nor blocks the due set: `due` skips it, logs it and moves
/// it out (to `P:{sched}:dead`), and `pending` skips it too.
#[tokio::test]
async fn undecodable_scheduled_sends_are_dead_lettered() {
    use im_core::ports::ScheduleStore;
    let ns = Namespaces::default();
    let c = ns.fresh().await;
    let s = c.schedules();
    let owner = im_core::id::UserId(testkit::random_id());
    let good = scheduled(owner, 1_700_000_000_300);
    s.hold(&good, Duration::from_secs(60)).await.unwrap();

    let prefix = c.config().prefix.clone();
    let client = redis::Client::open(url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let (bad, orphan) = ("111", "222");
    let _: () = redis::pipe()
        .cmd("ZADD")
        .arg(format!("{prefix}:{{sched}}:due"))
        .arg(1_700_000_000_100_i64)
        .arg(bad)
        .arg(1_700_000_000_200_i64)
        .arg(orphan)
        .ignore()
        .cmd("HSET")
        .arg(format!("{prefix}:{{sched}}:items"))
        .arg(bad)
        .arg("{not json")
        .ignore()
        .cmd("ZADD")
        .arg(format!("{prefix}:{{sched}}:user:{owner}"))
        .arg(1_700_000_000_100_i64)
        .arg(bad)
        .ignore()
        .query_async(&mut raw)
        .await
        .unwrap();

    assert_eq!(
        s.pending(owner).await.unwrap(),
        vec![good.clone()],
        "pending skips an undecodable item"
    );
    assert_eq!(
        s.due(1_700_000_001_000, 10).await.unwrap(),
        vec![good.clone()],
        "due skips an undecodable item and a due entry without an item"
    );
    let left: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}:{{sched}}:due"))
        .arg(0)
        .arg(-1)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        left,
        vec![good.msg_id().0.to_string()],
        "the bad entries left the due set"
    );
    let dead: Option<String> = redis::cmd("HGET")
        .arg(format!("{prefix}:{{sched}}:dead"))
        .arg(bad)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        dead.as_deref(),
        Some("{not json"),
        "the undecodable item is in the dead-letter hash"
    );
    assert!(
        !s.cancel(owner, im_core::id::MessageId(111)).await.unwrap(),
        "a dead-lettered send cannot be cancelled"
    );
    s.release(&[good.msg_id()]).await.unwrap();
    assert_eq!(s.pending(owner).await.unwrap(), vec![]);
    let owner_set: u64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}:{{sched}}:user:{owner}"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(owner_set, 0, "the owner's set is emptied");
    ns.cleanup().await;
}

async fn drain(c: &mut dyn QueueConsumer, want: usize) -> Vec<im_core::ports::Delivery> {
    let mut got = Vec::new();
    for _ in 0..50 {
        if got.len() >= want {
            break;
        }
        got.extend(
            c.fetch(want - got.len(), Duration::from_millis(100))
                .await
                .unwrap(),
        );
    }
    got
}

fn batch(n: u64) -> Vec<Entry> {
    let (_, _, conv) = testkit::random_direct();
    (1..=n)
        .map(|s| testkit::sample_envelope(conv, s).into())
        .collect()
}

#[tokio::test]
async fn trim_keeps_what_a_group_still_needs() {
    let ns = Namespaces::default();
    let c = ns
        .fresh_with(|c| RedisConfig {
            trim_every: 0,
            trim_approx: false,
            ..c.with_partitions(2)
        })
        .await;
    let q: RedisQueue = c.queue();
    q.create_group("fast").await.unwrap();
    q.create_group("slow").await.unwrap();
    // One publish per entry: 30 stream entries (a publish is one batch entry
    // per partition, and trimming counts stream entries).
    for e in batch(30) {
        q.publish(&[e]).await.unwrap();
    }
    let mut fast = q.consumer("fast", "f").await.unwrap();
    let got = drain(fast.as_mut(), 30).await;
    fast.ack(&got.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        q.trim().await.unwrap(),
        0,
        "nothing is trimmed while `slow` has read nothing"
    );
    let mut slow = q.consumer("slow", "s").await.unwrap();
    let first = drain(slow.as_mut(), 10).await;
    assert_eq!(first.len(), 10);
    // `slow` holds 10 pending: they and everything after must stay.
    q.trim().await.unwrap();
    slow.ack(&first[..5].iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    let trimmed = q.trim().await.unwrap();
    assert!(trimmed <= 5, "trimmed {trimmed}, more than `slow` acked");
    let rest = drain(slow.as_mut(), 20).await;
    assert_eq!(rest.len(), 20, "un-fetched entries survive trimming");
    let stale = slow.claim_stale(Duration::ZERO, 100).await.unwrap();
    assert_eq!(stale.len(), 25, "pending entries survive trimming");
    slow.ack(&stale.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        q.trim().await.unwrap() + trimmed,
        30,
        "all acked: the streams are emptied"
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn undecodable_entries_are_skipped_and_dead_lettered() {
    let ns = Namespaces::default();
    let c = ns.fresh_with(|c| c.with_partitions(1)).await;
    let q = c.queue();
    let mut consumer = q.consumer("g", "c").await.unwrap();
    let prefix = c.config().prefix.clone();
    let client = redis::Client::open(url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let stream = format!("{prefix}:{{p0}}:stream");
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("e")
        .arg("{not json")
        .query_async(&mut raw)
        .await
        .unwrap();
    q.publish(&batch(2)).await.unwrap();
    let got = drain(consumer.as_mut(), 2).await;
    assert_eq!(
        got.len(),
        2,
        "the good entries after a bad one are delivered"
    );
    consumer
        .ack(&got.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        q.stats("g").await.unwrap().pending,
        0,
        "the bad entry was acked"
    );
    let dead: usize = redis::cmd("XLEN")
        .arg(format!("{prefix}:{{p0}}:dead"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(dead, 1, "the bad entry is in the dead-letter stream");
    assert!(matches!(
        consumer.ack(&[EntryId("nonsense".into())]).await,
        Err(im_core::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        q.stats("nope").await,
        Err(im_core::Error::NotFound(_))
    ));
    ns.cleanup().await;
}

fn event(conv: im_core::id::ConversationId, seq: u64) -> Entry {
    Entry::Event(EventEnvelope {
        event: Event::Read {
            conversation_id: conv,
            user_id: im_core::id::UserId(7),
            seq,
        },
        to: EventAudience::Conversation {
            conversation_id: conv,
            except: None,
        },
        origin: None,
        ts: 1_700_000_000_000,
    })
}

/// Events travel with messages: both kinds round-trip, an event shares its
/// conversation's shard (so it stays in order with its messages), and an
/// event addressed to users lands on the shard of its first user.
#[tokio::test]
async fn events_and_messages_share_the_queue() {
    let ns = Namespaces::default();
    let c = ns.fresh_with(|c| c.with_partitions(4)).await;
    let q = c.queue();
    let mut consumer = q.consumer("g", "c").await.unwrap();
    let (_, _, conv) = testkit::random_direct();
    let user = im_core::id::UserId(testkit::random_id());
    let to_users = Entry::Event(EventEnvelope {
        event: Event::Kick {
            reason: "test".into(),
        },
        to: EventAudience::Users(vec![user]),
        origin: Some((
            im_core::model::NodeId("n1".into()),
            im_core::id::SessionId(3),
        )),
        ts: 1_700_000_000_000,
    });
    let published: Vec<Entry> = vec![
        testkit::sample_envelope(conv, 1).into(),
        event(conv, 1),
        testkit::sample_envelope(conv, 2).into(),
        event(conv, 2),
        to_users.clone(),
    ];
    q.publish(&published).await.unwrap();
    let got = drain(consumer.as_mut(), published.len()).await;
    assert_eq!(got.len(), published.len(), "every entry is delivered");
    let shard_of = |d: &im_core::ports::Delivery| d.id.0.split_once('/').unwrap().0.to_owned();
    let in_conv: Vec<&im_core::ports::Delivery> =
        got.iter().filter(|d| d.entry != to_users).collect();
    assert_eq!(
        in_conv.iter().map(|d| d.entry.clone()).collect::<Vec<_>>(),
        published[..4].to_vec(),
        "a conversation's messages and events round-trip and keep their order"
    );
    let conv_shard = (conv.shard_hash() % 4).to_string();
    assert!(
        in_conv.iter().all(|d| shard_of(d) == conv_shard),
        "a conversation's events are on its shard"
    );
    let kick = got.iter().find(|d| d.entry == to_users).unwrap();
    assert_eq!(
        shard_of(kick),
        (to_users.shard_hash() % 4).to_string(),
        "an event is sharded by Entry::shard_hash"
    );
    consumer
        .ack(&got.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();

    // An `s` field overrides a message's seq; on an event it is a dead letter.
    let client = redis::Client::open(url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let prefix = c.config().prefix.clone();
    let stream = format!("{prefix}:{{p{conv_shard}}}:stream");
    let env = testkit::sample_envelope(conv, 0);
    for (json, seq) in [
        (serde_json::to_string(&env).unwrap(), 41),
        (serde_json::to_string(&event(conv, 3)).unwrap(), 42),
    ] {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("e")
            .arg(json)
            .arg("s")
            .arg(seq)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let got = drain(consumer.as_mut(), 2).await;
    assert_eq!(got.len(), 1, "the event with a seq field is not delivered");
    assert_eq!(
        got[0].entry.message().map(|m| (m.msg_id, m.seq)),
        Some((env.message.msg_id, 41)),
        "the `s` field is the message's seq"
    );
    let dead: usize = redis::cmd("XLEN")
        .arg(format!("{prefix}:{{p{conv_shard}}}:dead"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(dead, 1, "the malformed event is dead-lettered");
    ns.cleanup().await;
}

/// Kills every normal client connection from another connection, and shows
/// the shared and the consumer's connections come back without losing entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_kills_the_connection() {
    let ns = Namespaces::default();
    let c = ns.fresh().await;
    let q = c.queue();
    let mut consumer = q.consumer("g", "c").await.unwrap();
    let first = batch(10);
    q.publish(&first).await.unwrap();
    let got = drain(consumer.as_mut(), 5).await;
    assert_eq!(got.len(), 5);
    consumer
        .ack(&got.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();

    // Kill exactly this test's connections (the shared one and the
    // consumer's), found by their client names, so parallel tests and other
    // users of the server are left alone.
    let client = redis::Client::open(url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .unwrap();
    let prefix = c.config().prefix.clone();
    let ids: Vec<String> = list
        .lines()
        .filter(|l| {
            l.split(' ').any(|kv| {
                kv.strip_prefix("name=")
                    .is_some_and(|n| n == prefix || n.starts_with(&format!("{prefix}:")))
            })
        })
        .filter_map(|l| {
            l.split(' ')
                .find_map(|kv| kv.strip_prefix("id="))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "the shared and the consumer connection: {list}"
    );
    for id in &ids {
        let n: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(n, 1, "CLIENT KILL ID {id}");
    }

    // The first call after the kill may fail (Unavailable, retryable); the
    // next ones go through on a fresh connection.
    let second = batch(10);
    let mut published = false;
    for _ in 0..50 {
        match q.publish(&second).await {
            Ok(()) => {
                published = true;
                break;
            }
            Err(e) => {
                assert!(e.is_retryable(), "a dropped connection is retryable: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(published, "publish never succeeded after the kill");

    let mut rest = Vec::new();
    for _ in 0..100 {
        if rest.len() >= 15 {
            break;
        }
        match consumer
            .fetch(15 - rest.len(), Duration::from_millis(100))
            .await
        {
            Ok(b) => rest.extend(b),
            Err(e) => {
                assert!(e.is_retryable(), "a dropped connection is retryable: {e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // The 5 unacked of the first batch are pending for this consumer: not
    // handed out again by fetch, but claimable.
    let stale = consumer.claim_stale(Duration::ZERO, 100).await.unwrap();
    let mut msg_ids: Vec<_> = rest
        .iter()
        .chain(&stale)
        .filter_map(|d| d.entry.message().map(|m| m.msg_id))
        .collect();
    msg_ids.sort();
    msg_ids.dedup();
    let mut want: Vec<_> = first[5..]
        .iter()
        .chain(&second)
        .filter_map(|e| e.message().map(|m| m.msg_id))
        .collect();
    want.sort();
    assert_eq!(
        msg_ids, want,
        "every unacked entry is still there after the reconnect"
    );
    ns.cleanup().await;
}

/// A raw connection for poking at keys: the standalone server, or the cluster.
fn raw_con(kind: Kind) -> Box<dyn redis::ConnectionLike> {
    match kind {
        Kind::Standalone => Box::new(
            redis::Client::open(url())
                .unwrap()
                .get_connection()
                .unwrap(),
        ),
        Kind::Cluster => Box::new(
            redis::cluster::ClusterClient::new(cluster_urls())
                .unwrap()
                .get_connection()
                .unwrap(),
        ),
    }
}

fn admission(conv: im_core::id::ConversationId, cmid: &str) -> im_core::ports::Admission {
    let mut envelope = testkit::sample_envelope(conv, 0);
    envelope.message.client_msg_id = cmid.to_owned();
    im_core::ports::Admission {
        key: im_core::ports::DedupKey::of_send(envelope.message.from, cmid),
        envelope,
    }
}

/// PROTOCOL.md v1.2 "Seqs without holes": when a partition refuses the
/// enqueue (here its stream key holds a string, so `XADD` fails), the send
/// fails, takes no seq and leaves no key; once the partition is healthy the
/// retry gets the next seq, and a retry naming another conversation is not
/// mistaken for a duplicate.
#[tokio::test]
async fn a_failed_enqueue_takes_no_seq_and_leaves_no_key() {
    use im_core::ports::{Admitted, SendPipeline};
    for kind in KINDS {
        let ns = Namespaces::of(kind);
        let c = ns.fresh().await;
        let q = c.queue();
        q.create_group("g").await.unwrap();
        let p = c.send_pipeline(q.clone());
        let ttl = Duration::from_secs(60);
        let (_, _, conv) = testkit::random_direct();
        let first = p.admit(vec![admission(conv, "a")], ttl).await.unwrap();
        assert!(matches!(&first[0], Ok(Admitted::New(a)) if a.seq == 1));
        let part = im_core::ports::partition_of(conv.shard_hash(), c.config().partitions);
        let stream = format!("{}:{{p{part}}}:stream", c.config().prefix);
        let backup = format!("{stream}-aside");
        let mut raw = raw_con(kind);
        let _: () = redis::cmd("RENAME")
            .arg(&stream)
            .arg(&backup)
            .query(&mut *raw)
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(&stream)
            .arg("not a stream")
            .query(&mut *raw)
            .unwrap();
        let failed = p.admit(vec![admission(conv, "b")], ttl).await.unwrap();
        assert!(
            failed[0].is_err(),
            "{kind:?}: the refused enqueue fails the send"
        );
        let _: () = redis::cmd("DEL").arg(&stream).query(&mut *raw).unwrap();
        let _: () = redis::cmd("RENAME")
            .arg(&backup)
            .arg(&stream)
            .query(&mut *raw)
            .unwrap();
        let retried = p.admit(vec![admission(conv, "b")], ttl).await.unwrap();
        assert!(
            matches!(&retried[0], Ok(Admitted::New(a)) if a.seq == 2),
            "{kind:?}: the retry takes seq 2, no hole: {retried:?}"
        );
        // The same sender and key for another conversation: the original ack.
        let im_core::id::ConversationId::Direct(sender, _) = conv else {
            unreachable!("a direct conversation");
        };
        let other = im_core::id::ConversationId::Direct(sender, im_core::id::UserId(sender.0 + 7));
        let moved = p.admit(vec![admission(other, "b")], ttl).await.unwrap();
        assert!(
            matches!(&moved[0], Ok(Admitted::Duplicate(a)) if a.seq == 2 && a.conversation_id == conv),
            "{kind:?}: a retry naming another conversation gets the original ack: {moved:?}"
        );
        ns.cleanup().await;
    }
}
