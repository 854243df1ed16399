//! Conformance suite of `SequenceAllocator`.

use std::future::Future;
use std::sync::Arc;

use super::random_direct;
use crate::ports::SequenceAllocator;

/// Runs every `SequenceAllocator` check on fresh allocators from `make`.
pub async fn sequence_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn SequenceAllocator>>,
{
    let s = make().await;
    let (_, _, conv) = random_direct();
    let (_, _, other) = random_direct();
    assert_eq!(
        s.current(conv).await.expect("current"),
        0,
        "seq: a new conversation starts at 0"
    );
    assert_eq!(
        s.allocate(&[(conv, 1)]).await.expect("allocate"),
        vec![1],
        "seq: the first seq is 1"
    );
    let firsts = s
        .allocate(&[(conv, 3), (other, 2), (conv, 2)])
        .await
        .expect("allocate");
    assert_eq!(
        firsts,
        vec![2, 1, 5],
        "seq: blocks are contiguous, per conversation, in call order"
    );
    assert_eq!(s.current(conv).await.expect("current"), 6);
    assert_eq!(s.current(other).await.expect("current"), 2);

    // Concurrent callers: the union of their blocks is exactly 1..=N.
    let (_, _, hot) = random_direct();
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..50u32 {
                let n = 1 + (t + i) % 3;
                let first = s.allocate(&[(hot, n)]).await.expect("allocate");
                got.extend((0..u64::from(n)).map(|k| first[0] + k));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    all.sort_unstable();
    let n = all.len() as u64;
    assert_eq!(
        all,
        (1..=n).collect::<Vec<_>>(),
        "seq: concurrent allocation must be gap-free and never overlap"
    );
    assert_eq!(s.current(hot).await.expect("current"), n);

    // Unused blocks are given back only while they are the last ones.
    let (_, _, back) = random_direct();
    let a = s.allocate(&[(back, 2)]).await.expect("allocate")[0];
    let b = s.allocate(&[(back, 3)]).await.expect("allocate")[0];
    assert_eq!((a, b), (1, 3));
    assert_eq!(
        s.rewind(&[(back, a, 2)]).await.expect("rewind"),
        0,
        "seq: a block that is not the last one stays taken"
    );
    assert_eq!(s.current(back).await.expect("current"), 5);
    assert_eq!(
        s.rewind(&[(back, a, 2), (back, b, 3)])
            .await
            .expect("rewind"),
        2,
        "seq: the last blocks of one call are given back, latest first"
    );
    assert_eq!(s.current(back).await.expect("current"), 0);
    assert_eq!(
        s.allocate(&[(back, 1)]).await.expect("allocate"),
        vec![1],
        "seq: given-back seqs are allocated again: no hole"
    );
}
