//! Conformance suite of `Discovery`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::unique;
use crate::ports::{Discovery, ServiceInstance};

async fn wait_for(
    rx: &mut watch::Receiver<Vec<ServiceInstance>>,
    what: &str,
    pred: impl Fn(&[ServiceInstance]) -> bool,
) {
    let res = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| pred(v)))
        .await
        .map(|r| r.map(|_| ()));
    match res {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("discovery: watch closed while waiting until {what}"),
        Err(_) => panic!(
            "discovery: timed out waiting until {what}; last set {:?}",
            *rx.borrow()
        ),
    }
}

/// Runs every `Discovery` check on fresh registries from `make`.
pub async fn discovery_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Discovery>>,
{
    let d = make().await;
    let service = unique("svc");
    let other = unique("other");
    let mut rx = d.watch(&service).await.expect("watch");
    assert!(
        rx.borrow().is_empty(),
        "discovery: a new service has no instance"
    );
    let a = ServiceInstance::new(&service, "a", "http://127.0.0.1:1").with_meta("zone", "z1");
    let b = ServiceInstance::new(&service, "b", "http://127.0.0.1:2");
    d.register(b.clone()).await.expect("register");
    d.register(a.clone()).await.expect("register");
    d.register(ServiceInstance::new(&other, "x", "http://127.0.0.1:3"))
        .await
        .expect("register");
    wait_for(&mut rx, "both instances are seen", |v| v.len() == 2).await;
    assert_eq!(
        *rx.borrow(),
        vec![a.clone(), b.clone()],
        "discovery: the set is sorted by id, with metadata, and only of its service"
    );

    let late = d.watch(&service).await.expect("watch");
    assert_eq!(
        late.borrow().len(),
        2,
        "discovery: a new watcher starts with the current set"
    );

    d.deregister(&service, "a").await.expect("deregister");
    wait_for(&mut rx, "the deregistered instance is gone", |v| {
        v.len() == 1
    })
    .await;
    assert_eq!(*rx.borrow(), vec![b.clone()]);
    d.deregister(&service, "b").await.expect("deregister");
    d.deregister(&other, "x").await.expect("deregister");
    wait_for(&mut rx, "the set is empty", |v| v.is_empty()).await;
}
