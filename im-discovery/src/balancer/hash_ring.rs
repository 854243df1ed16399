//! Consistent hashing with virtual nodes (MurmurHash3, 32-bit).
//!
//! Each instance is placed on a `u32` ring at `vnodes` points, the hash of
//! `"{service}/{id}#{i}"`; a key goes to the first point at or after its own
//! hash (wrapping around). Placement depends on the instance id only, so the
//! same set always builds the same ring, in any process.

use std::io::Cursor;

use im_core::ports::ServiceInstance;

/// Virtual nodes per instance used by [`HashRing::new`].
pub const DEFAULT_VIRTUAL_NODES: usize = 160;

/// MurmurHash3 x86 32-bit with seed 0.
fn hash(bytes: &[u8]) -> u32 {
    // Reading from an in-memory slice cannot fail; 0 is never reached.
    murmur3::murmur3_32(&mut Cursor::new(bytes), 0).unwrap_or_default()
}

/// An immutable consistent-hash ring over one instance set; rebuild it when
/// the set changes (see [`HashRing::rebuild`]).
///
/// ```
/// use im_core::ports::ServiceInstance;
/// use im_discovery::balancer::HashRing;
///
/// let set: Vec<_> = ["a", "b", "c"]
///     .iter()
///     .map(|id| ServiceInstance::new("connect", *id, format!("http://{id}")))
///     .collect();
/// let ring = HashRing::new(&set);
/// let owner = ring.pick(b"user:42").map(|i| i.id.clone());
/// assert!(owner.is_some());
/// assert_eq!(ring.pick(b"user:42").map(|i| i.id.clone()), owner, "stable");
/// assert!(HashRing::new(&[]).pick(b"user:42").is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct HashRing {
    /// `(point, index into instances)`, sorted by point then instance id.
    points: Vec<(u32, usize)>,
    instances: Vec<ServiceInstance>,
    vnodes: usize,
}

impl HashRing {
    /// A ring over `instances` with [`DEFAULT_VIRTUAL_NODES`] points each.
    pub fn new(instances: &[ServiceInstance]) -> Self {
        Self::with_virtual_nodes(instances, DEFAULT_VIRTUAL_NODES)
    }

    /// A ring over `instances` with `vnodes` points each (at least 1).
    pub fn with_virtual_nodes(instances: &[ServiceInstance], vnodes: usize) -> Self {
        let vnodes = vnodes.max(1);
        let instances: Vec<ServiceInstance> = instances.to_vec();
        let mut points = Vec::with_capacity(instances.len() * vnodes);
        for (idx, inst) in instances.iter().enumerate() {
            for v in 0..vnodes {
                let label = format!("{}/{}#{v}", inst.service, inst.id);
                points.push((hash(label.as_bytes()), idx));
            }
        }
        // Ties (two points on the same hash) are broken by instance id so the
        // ring does not depend on the order of the input set.
        points.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| instances[a.1].id.cmp(&instances[b.1].id))
        });
        HashRing {
            points,
            instances,
            vnodes,
        }
    }

    /// Replaces the membership with `instances`, keeping the virtual node count.
    pub fn rebuild(&mut self, instances: &[ServiceInstance]) {
        *self = Self::with_virtual_nodes(instances, self.vnodes);
    }

    /// The instance owning `key`, or `None` when the ring is empty.
    pub fn pick(&self, key: &[u8]) -> Option<&ServiceInstance> {
        if self.points.is_empty() {
            return None;
        }
        let h = hash(key);
        let pos = self.points.partition_point(|&(p, _)| p < h);
        let (_, idx) = self.points.get(pos).or_else(|| self.points.first())?;
        self.instances.get(*idx)
    }

    /// The instances on the ring, in the order they were given.
    pub fn instances(&self) -> &[ServiceInstance] {
        &self.instances
    }

    /// How many instances are on the ring.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether the ring has no instance.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: usize = 10_000;

    fn set(ids: &[&str]) -> Vec<ServiceInstance> {
        ids.iter()
            .map(|id| ServiceInstance::new("connect", *id, format!("http://{id}:7000")))
            .collect()
    }

    fn key(i: usize) -> Vec<u8> {
        format!("user:{i}").into_bytes()
    }

    fn owners(ring: &HashRing) -> Vec<String> {
        (0..KEYS)
            .map(|i| ring.pick(&key(i)).unwrap().id.clone())
            .collect()
    }

    #[test]
    fn a_key_stays_on_its_instance_while_membership_is_unchanged() {
        let ring = HashRing::new(&set(&["a", "b", "c", "d"]));
        let first = owners(&ring);
        assert_eq!(owners(&ring), first);
        // Same membership in another order builds the same ring.
        let shuffled = HashRing::new(&set(&["c", "a", "d", "b"]));
        assert_eq!(owners(&shuffled), first);
        // Every instance gets a reasonable share.
        for id in ["a", "b", "c", "d"] {
            let share = first.iter().filter(|o| *o == id).count() as f64 / KEYS as f64;
            assert!((0.15..0.35).contains(&share), "{id} owns {share}");
        }
    }

    #[test]
    fn adding_one_instance_moves_about_a_fifth_of_the_keys() {
        let mut ring = HashRing::new(&set(&["a", "b", "c", "d"]));
        let before = owners(&ring);
        ring.rebuild(&set(&["a", "b", "c", "d", "e"]));
        let after = owners(&ring);
        let moved: Vec<usize> = (0..KEYS).filter(|&i| before[i] != after[i]).collect();
        let fraction = moved.len() as f64 / KEYS as f64;
        println!("adding 1 to 4 moved {fraction:.3} of {KEYS} keys");
        assert!(
            (0.12..0.30).contains(&fraction),
            "moved {fraction}, expected about 0.2"
        );
        assert!(
            moved.iter().all(|&i| after[i] == "e"),
            "keys only move to the new instance"
        );
    }

    #[test]
    fn removing_one_instance_moves_only_its_keys() {
        let ring = HashRing::new(&set(&["a", "b", "c", "d"]));
        let before = owners(&ring);
        let smaller = HashRing::new(&set(&["a", "b", "d"]));
        let after = owners(&smaller);
        for i in 0..KEYS {
            if before[i] == "c" {
                assert_ne!(after[i], "c");
            } else {
                assert_eq!(
                    after[i], before[i],
                    "key {i} moved although its owner stayed"
                );
            }
        }
    }

    #[test]
    fn empty_ring_picks_nothing() {
        let ring = HashRing::new(&[]);
        assert!(ring.is_empty());
        assert!(ring.pick(b"k").is_none());
        let one = HashRing::new(&set(&["solo"]));
        assert_eq!(one.len(), 1);
        assert_eq!(one.pick(b"anything").unwrap().id, "solo");
    }
}
