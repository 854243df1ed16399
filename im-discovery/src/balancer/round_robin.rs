//! Round-robin balancing with a lock-free atomic counter.

use std::sync::atomic::{AtomicUsize, Ordering};

use im_core::ports::ServiceInstance;

/// Picks instances in turn; share one `RoundRobin` between tasks (it is `Sync`).
///
/// ```
/// use im_core::ports::ServiceInstance;
/// use im_discovery::balancer::RoundRobin;
///
/// let set = vec![
///     ServiceInstance::new("logic", "a", "http://127.0.0.1:1"),
///     ServiceInstance::new("logic", "b", "http://127.0.0.1:2"),
/// ];
/// let rr = RoundRobin::new();
/// let first = rr.pick(&set).map(|i| i.id.clone());
/// let second = rr.pick(&set).map(|i| i.id.clone());
/// assert_ne!(first, second);
/// assert!(rr.pick(&[]).is_none());
/// ```
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A balancer starting at the first instance.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next instance of `instances`, or `None` when the set is empty.
    pub fn pick<'a>(&self, instances: &'a [ServiceInstance]) -> Option<&'a ServiceInstance> {
        if instances.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        instances.get(n % instances.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn set(n: usize) -> Vec<ServiceInstance> {
        (0..n)
            .map(|i| ServiceInstance::new("svc", format!("n{i}"), format!("http://h:{i}")))
            .collect()
    }

    #[test]
    fn spreads_evenly() {
        let instances = set(3);
        let rr = RoundRobin::new();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..300 {
            let picked = rr.pick(&instances).unwrap();
            *counts.entry(picked.id.clone()).or_default() += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&c| c == 100), "{counts:?}");
    }

    #[test]
    fn spreads_evenly_across_threads() {
        let instances = set(4);
        let rr = RoundRobin::new();
        let counts: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut local = vec![0usize; 4];
                        for _ in 0..1000 {
                            let p = rr.pick(&instances).unwrap();
                            let idx = instances.iter().position(|i| i == p).unwrap();
                            local[idx] += 1;
                        }
                        local
                    })
                })
                .collect();
            let mut total = vec![0usize; 4];
            for h in handles {
                for (t, c) in total.iter_mut().zip(h.join().unwrap()) {
                    *t += c;
                }
            }
            total
        });
        assert_eq!(counts, vec![1000; 4], "4000 picks over 4 instances");
    }

    #[test]
    fn empty_set_picks_nothing() {
        assert!(RoundRobin::new().pick(&[]).is_none());
    }
}
