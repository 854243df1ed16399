#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Dedup + seq against a model, state-machine style (proptest): random
//! sequences of steps run on a [`SendPipeline`]; a step is one batch, or
//! several batches admitted concurrently; a batch holds new sends and retries
//! of earlier keys with the same or a different payload (even another
//! conversation). After every step and at the end the pipeline must agree
//! with the model:
//!
//! - every key is admitted `New` exactly once; every other admission of it is
//!   `Duplicate` with exactly the original ack (msg_id, seq, ts, conversation);
//! - the seqs handed out per conversation are exactly 1..n (no gap, no repeat);
//! - the queue holds each new message exactly once, with its acked seq, and
//!   nothing else.
//!
//! Concurrent batches may race on one key: then either may be the `New` one,
//! and the other may also get `unavailable` (still in flight), which the
//! protocol allows (the client retries).
//!
//! Runs on `ComposedSendPipeline` over the memory ports, and on the Redis
//! send pipeline (`REDIS_URL`, default `redis://127.0.0.1:6379`; a fresh key
//! prefix per case, deleted afterwards).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use im_core::compose::ComposedSendPipeline;
use im_core::id::{ConversationId, GroupId, MessageId};
use im_core::memory::{MemoryDedupStore, MemoryQueue, MemorySequenceAllocator};
use im_core::model::Envelope;
use im_core::ports::{Admission, Admitted, DedupKey, MessageQueue, SendPipeline};
use im_core::protocol::SendAck;
use im_core::testkit::{random_direct, random_id, sample_envelope, unique};
use im_core::ErrorCode;
use im_store::redis::{RedisConfig, RedisConn};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reliability::report::Tally;

const TTL: Duration = Duration::from_secs(600);
const GROUP: &str = "model";

/// One operation of a batch.
#[derive(Debug, Clone)]
enum Op {
    /// A send with a fresh key into conversation `conv` (0..3).
    New { conv: usize },
    /// A retry of an earlier key (`pick` modulo the keys so far; a `New` when
    /// there is none yet): the same envelope, or a different payload, msg_id
    /// and possibly conversation (`to`).
    Retry { pick: usize, same: bool, to: usize },
}

/// One step: one batch, or several admitted concurrently.
type Step = Vec<Vec<Op>>;

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let op = prop_oneof![
        3 => (0usize..3).prop_map(|conv| Op::New { conv }),
        2 => (any::<usize>(), any::<bool>(), 0usize..3)
            .prop_map(|(pick, same, to)| Op::Retry { pick, same, to }),
    ];
    let batch = vec(op, 1..6);
    let step = vec(batch, 1..4);
    vec(step, 1..16)
}

/// A pipeline to test and the queue it publishes into.
struct Subject {
    pipeline: Arc<dyn SendPipeline>,
    queue: Arc<dyn MessageQueue>,
    redis: Option<RedisConn>,
}

/// A key of the model: its first envelope and, once admitted, its ack.
struct Key {
    key: DedupKey,
    envelope: Envelope,
    ack: Option<SendAck>,
}

struct Model {
    convs: [ConversationId; 3],
    keys: Vec<Key>,
    /// Seqs handed out per conversation.
    seqs: HashMap<ConversationId, Vec<u64>>,
    /// msg_id of every New admission → its ack.
    news: HashMap<MessageId, SendAck>,
}

impl Model {
    fn new() -> Model {
        Model {
            convs: [
                random_direct().2,
                random_direct().2,
                ConversationId::Group(GroupId(random_id())),
            ],
            keys: Vec::new(),
            seqs: HashMap::new(),
            news: HashMap::new(),
        }
    }

    fn fresh(&mut self, conv: usize) -> usize {
        let mut envelope = sample_envelope(self.convs[conv], 0);
        envelope.message.client_msg_id = format!("k-{}", self.keys.len());
        self.keys.push(Key {
            key: DedupKey::of_send(envelope.message.from, &envelope.message.client_msg_id),
            envelope,
            ack: None,
        });
        self.keys.len() - 1
    }

    /// The admission of one op, and the index of its key.
    fn admission(&mut self, op: &Op) -> (usize, Admission) {
        let (k, envelope) = match *op {
            Op::New { conv } => {
                let k = self.fresh(conv);
                (k, self.keys[k].envelope.clone())
            }
            Op::Retry { pick, .. } if self.keys.is_empty() => {
                let k = self.fresh(pick % 3);
                (k, self.keys[k].envelope.clone())
            }
            Op::Retry { pick, same, to } => {
                let k = pick % self.keys.len();
                let key = &self.keys[k];
                let envelope = if same {
                    key.envelope.clone()
                } else {
                    let mut e = sample_envelope(self.convs[to], 0);
                    e.message.from = key.envelope.message.from;
                    e.message.client_msg_id = key.envelope.message.client_msg_id.clone();
                    e.message.body = serde_json::json!("a different payload");
                    e
                };
                (k, envelope)
            }
        };
        let mut envelope = envelope;
        envelope.message.seq = 0;
        (
            k,
            Admission {
                key: self.keys[k].key,
                envelope,
            },
        )
    }
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// Runs one case: every step, checked against the model, then the queue.
async fn run_case(
    subject: &Subject,
    steps: &[Step],
    tally: &Mutex<Tally>,
) -> Result<(), TestCaseError> {
    let mut consumer = subject
        .queue
        .consumer(GROUP, "model-0")
        .await
        .map_err(|e| fail(format!("consumer: {e}")))?;
    let mut model = Model::new();
    let mut admissions_total = 0u64;
    for (n, step) in steps.iter().enumerate() {
        let concurrent = step.len() > 1;
        let mut batches: Vec<Vec<(usize, Admission)>> = Vec::new();
        for batch in step {
            batches.push(batch.iter().map(|op| model.admission(op)).collect());
        }
        admissions_total += batches.iter().map(Vec::len).sum::<usize>() as u64;
        // Admit: concurrently on the runtime's threads when several batches.
        let mut handles = Vec::new();
        for b in &batches {
            let p = subject.pipeline.clone();
            let adm: Vec<Admission> = b.iter().map(|(_, a)| a.clone()).collect();
            handles.push(tokio::spawn(async move { p.admit(adm, TTL).await }));
        }
        let mut outcomes = Vec::new();
        for (b, h) in batches.iter().zip(handles) {
            let out = h
                .await
                .map_err(|e| fail(format!("admit task: {e}")))?
                .map_err(|e| fail(format!("step {n}: the whole batch failed: {e}")))?;
            if out.len() != b.len() {
                return Err(fail(format!(
                    "step {n}: {} outcomes for {} admissions",
                    out.len(),
                    b.len()
                )));
            }
            outcomes.extend(
                b.iter()
                    .map(|(k, a)| (*k, a.envelope.message.msg_id))
                    .zip(out),
            );
        }
        // News first (a concurrent Duplicate may name a New of another batch).
        for ((k, msg_id), r) in &outcomes {
            if let Ok(Admitted::New(ack)) = r {
                let key = &mut model.keys[*k];
                if let Some(first) = &key.ack {
                    return Err(fail(format!(
                        "step {n}: key {k} admitted New twice: {first:?} then {ack:?}"
                    )));
                }
                if ack.msg_id != *msg_id || ack.client_msg_id != key.envelope.message.client_msg_id
                {
                    return Err(fail(format!(
                        "step {n}: the ack {ack:?} does not echo its admission (msg_id {msg_id})"
                    )));
                }
                key.ack = Some(ack.clone());
                model
                    .seqs
                    .entry(ack.conversation_id)
                    .or_default()
                    .push(ack.seq);
                model.news.insert(ack.msg_id, ack.clone());
            }
        }
        for ((k, _), r) in &outcomes {
            match r {
                Ok(Admitted::New(_)) => {}
                Ok(Admitted::Duplicate(ack)) => match &model.keys[*k].ack {
                    Some(first) if first == ack => {}
                    first => {
                        return Err(fail(format!(
                        "step {n}: a retry of key {k} got {ack:?}, the original ack is {first:?}"
                    )))
                    }
                },
                Err(e) if concurrent && e.code() == ErrorCode::Unavailable => {}
                Err(e) => return Err(fail(format!("step {n}: admission of key {k} failed: {e}"))),
            }
        }
        for (conv, seqs) in &model.seqs {
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            if sorted != (1..=sorted.len() as u64).collect::<Vec<_>>() {
                return Err(fail(format!(
                    "after step {n}: seqs of {conv} are {sorted:?}, not 1..{}",
                    sorted.len()
                )));
            }
        }
    }

    // The queue: every New exactly once, with its seq; nothing else.
    let want = model.news.len();
    let mut seen: HashMap<MessageId, u64> = HashMap::new();
    let mut got = 0usize;
    let mut empty = 0;
    while empty < 3 && (got < want || empty == 0) {
        let batch = consumer
            .fetch(512, Duration::from_millis(50))
            .await
            .map_err(|e| fail(format!("fetch: {e}")))?;
        if batch.is_empty() {
            empty += 1;
            continue;
        }
        let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();
        for d in &batch {
            let Some(m) = d.entry.message() else {
                return Err(fail(format!(
                    "a non-message entry in the queue: {:?}",
                    d.entry
                )));
            };
            got += 1;
            *seen.entry(m.msg_id).or_default() += 1;
            match model.news.get(&m.msg_id) {
                Some(ack) if ack.seq == m.seq && ack.conversation_id == m.conversation_id => {}
                Some(ack) => {
                    return Err(fail(format!(
                        "queued {} at {} seq {}, acked at {} seq {}",
                        m.msg_id, m.conversation_id, m.seq, ack.conversation_id, ack.seq
                    )))
                }
                None => {
                    return Err(fail(format!(
                        "queued {} ({}), which was never acked New",
                        m.msg_id, m.client_msg_id
                    )))
                }
            }
        }
        consumer
            .ack(&ids)
            .await
            .map_err(|e| fail(format!("ack: {e}")))?;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<_> = model
        .news
        .keys()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    {
        let mut t = tally.lock().unwrap();
        t.sent += admissions_total;
        for id in model.news.keys() {
            t.acked.insert(format!("{}", id));
        }
        for (id, n) in &seen {
            *t.delivered.entry(id.to_string()).or_default() += n;
            *t.persisted.entry(id.to_string()).or_default() += n;
        }
    }
    if !twice.is_empty() || !missing.is_empty() {
        return Err(fail(format!(
            "queue: {} of {want} new messages missing ({missing:?}), queued twice: {twice:?}",
            missing.len()
        )));
    }
    Ok(())
}

fn run_model<F, Fut>(name: &str, cases: u32, make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Subject>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tally = Mutex::new(Tally::new(
        name,
        "random steps: new keys, same/different-payload retries, concurrent batches",
    ));
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&steps(), |steps| {
        rt.block_on(async {
            let subject = make().await;
            let r = run_case(&subject, &steps, &tally).await;
            if let Some(redis) = &subject.redis {
                let _ = redis.delete_namespace().await;
            }
            r
        })
    });
    let mut t = tally.lock().unwrap().clone();
    t.figure = format!(
        "{cases} cases in {:.1} s; delivered/persisted = in the queue",
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        println!("RELIABILITY {}", t.line());
        panic!("{name}: {e}");
    }
    t.check();
    assert!(!t.acked.is_empty(), "the model test admitted something");
}

#[test]
fn composed_memory_pipeline_matches_the_model() {
    run_model("#14 model: composed pipeline (memory)", 96, || async {
        let queue: Arc<dyn MessageQueue> = Arc::new(MemoryQueue::default());
        queue.create_group(GROUP).await.unwrap();
        let pipeline = Arc::new(ComposedSendPipeline::new(
            Arc::new(MemoryDedupStore::new()),
            Arc::new(MemorySequenceAllocator::new()),
            queue.clone(),
        ));
        Subject {
            pipeline,
            queue,
            redis: None,
        }
    });
}

#[test]
fn redis_pipeline_matches_the_model() {
    let config = RedisConfig::from_env();
    let url = config.url.clone();
    run_model("#14 model: Redis send pipeline", 32, || {
        let config = config.clone().with_prefix(unique("rel-model"));
        let url = url.clone();
        async move {
            let conn = RedisConn::connect(config).await.unwrap_or_else(|e| {
                panic!(
                    "Redis at {url} is not reachable ({e}): the Redis send-pipeline model \
                     test needs a Redis server (set REDIS_URL)"
                )
            });
            let queue = conn.queue();
            queue.create_group(GROUP).await.unwrap();
            let pipeline = Arc::new(conn.send_pipeline(queue.clone()));
            Subject {
                pipeline,
                queue: Arc::new(queue),
                redis: Some(conn),
            }
        }
    });
}

#[test]
fn the_model_catches_a_pipeline_that_forgets_keys() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let verdict = rt.block_on(async {
        let queue: Arc<dyn MessageQueue> = Arc::new(MemoryQueue::default());
        queue.create_group(GROUP).await.unwrap();
        let subject = Subject {
            pipeline: Arc::new(ComposedSendPipeline::new(
                // Room for one key: older keys are evicted, so their
                // retries look new (an undersized dedup store).
                Arc::new(MemoryDedupStore::with_capacity(1)),
                Arc::new(MemorySequenceAllocator::new()),
                queue.clone(),
            )),
            queue,
            redis: None,
        };
        let steps = vec![
            vec![vec![Op::New { conv: 0 }]],
            vec![vec![Op::New { conv: 1 }]],
            vec![vec![Op::Retry {
                pick: 0,
                same: true,
                to: 0,
            }]],
        ];
        run_case(&subject, &steps, &Mutex::new(Tally::default())).await
    });
    let err = verdict.expect_err("a retry admitted as new fails the model");
    assert!(err.to_string().contains("admitted New twice"), "{err}");
}
