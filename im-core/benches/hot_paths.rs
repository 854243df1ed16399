//! Criterion benches of im-core's hot pieces: frame decode/encode, snowflake
//! ids, and hub fan-out of one frame to 1,000 sessions.
//!
//! Run with: `cargo bench -p im-core --bench hot_paths`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use im_core::connect::Hub;
use im_core::id::{ConversationId, MessageId, Snowflake, UserId};
use im_core::model::{Message, MessageKind, NodeId, Target};
use im_core::ports::{PushBatch, PushItem};
use im_core::protocol::{ClientFrame, ServerFrame};

fn frames(c: &mut Criterion) {
    let send = br#"{"type":"send","client_msg_id":"c-123456","to":{"user":"384781004579012608"},"body":"hello there, how are you?"}"#;
    let msg = ServerFrame::Message(Message {
        msg_id: MessageId(384_781_008_752_345_088),
        conversation_id: ConversationId::direct(
            UserId(384_781_001_005_465_600),
            UserId(384_781_004_579_012_608),
        )
        .unwrap(),
        seq: 42,
        from: UserId(384_781_001_005_465_600),
        to: Target::User(UserId(384_781_004_579_012_608)),
        kind: MessageKind::Text,
        body: serde_json::json!("hello there, how are you?"),
        client_msg_id: "c-123456".into(),
        ts: 1_795_810_125_334,
        recalled: false,
        edited_at: None,
        mentions: None,
    });
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode send", |b| {
        b.iter(|| ClientFrame::decode(black_box(send)).unwrap())
    });
    g.bench_function("encode message", |b| b.iter(|| black_box(&msg).encode()));
    g.bench_function("decode junk", |b| {
        b.iter(|| ClientFrame::decode(black_box(b"{\"type\":\"fly\"}")).is_err())
    });
    g.finish();
}

fn ids(c: &mut Criterion) {
    let gen = Snowflake::new(1).unwrap();
    let mut g = c.benchmark_group("ids");
    g.throughput(Throughput::Elements(1));
    g.bench_function("snowflake next_id", |b| b.iter(|| black_box(gen.next_id())));
    g.bench_function("parse conversation id", |b| {
        b.iter(|| {
            black_box("u:384781001005465600:384781004579012608")
                .parse::<ConversationId>()
                .unwrap()
        })
    });
    g.finish();
}

fn fan_out(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let hub = Hub::new(NodeId::new("bench"), 1 << 20);
    let mut handles: Vec<_> = (0..1000).map(|i| hub.open(UserId(i), "bench")).collect();
    let batch = PushBatch {
        items: vec![PushItem {
            frame: Bytes::from_static(br#"{"type":"message","body":"x"}"#),
            sessions: handles.iter().map(|h| h.id).collect(),
        }],
    };
    let mut g = c.benchmark_group("hub");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("deliver one frame to 1000 sessions", |b| {
        b.iter(|| {
            let r = hub.deliver(black_box(&batch));
            // Drain so the queues never fill.
            for h in handles.iter_mut() {
                while h.outbound.try_recv().is_ok() {}
            }
            r
        })
    });
    g.finish();
}

criterion_group!(benches, frames, ids, fan_out);
criterion_main!(benches);
