//! Criterion bench of the consistent-hash ring: lookup of a key among 8
//! instances with 160 virtual nodes each.
//!
//! Run with: `cargo bench -p im-discovery --bench hash_ring`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use im_core::ports::ServiceInstance;
use im_discovery::balancer::HashRing;

fn ring(c: &mut Criterion) {
    let set: Vec<ServiceInstance> = (0..8)
        .map(|i| {
            ServiceInstance::new(
                "connect",
                format!("node-{i}"),
                format!("http://10.0.0.{i}:7101"),
            )
        })
        .collect();
    let ring = HashRing::new(&set);
    let mut g = c.benchmark_group("hash ring");
    g.throughput(Throughput::Elements(1));
    let mut k = 0u64;
    g.bench_function("pick among 8 instances", |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            black_box(ring.pick(&k.to_le_bytes()).map(|i| i.id.len()))
        })
    });
    g.bench_function("rebuild 8 instances", |b| {
        b.iter(|| HashRing::new(black_box(&set)))
    });
    g.finish();
}

criterion_group!(benches, ring);
criterion_main!(benches);
