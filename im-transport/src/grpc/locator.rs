//! [`DiscoveryLocator`]: the [`WsLocator`] of an API process in a cluster,
//! sending each client to the least loaded live connect node.
//!
//! Connect nodes register in discovery with two metadata entries:
//! [`WS_URL_META`] (the public `ws://`/`wss://` URL of their `/ws`) and
//! [`SESSIONS_META`] (their current session count, refreshed by the node).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use im_core::error::Error;
use im_core::id::UserId;
use im_core::ports::ServiceInstance;
use tokio::sync::watch;

use crate::http::routes::WsLocator;

/// Metadata key of a connect instance's public WebSocket URL.
pub const WS_URL_META: &str = "ws_url";

/// Metadata key of a connect instance's current session count.
pub const SESSIONS_META: &str = "sessions";

/// A [`WsLocator`] over a discovery watch of connect nodes: answers the
/// `ws_url` of the live node with the fewest sessions, ties broken
/// round-robin, or [`Error::Unavailable`] when no live node has a `ws_url`.
///
/// A node without a (parsable) `sessions` entry counts as having none.
#[derive(Debug)]
pub struct DiscoveryLocator {
    instances: watch::Receiver<Vec<ServiceInstance>>,
    next: AtomicUsize,
}

impl DiscoveryLocator {
    /// A locator over the live set of `instances` (e.g. from
    /// `Discovery::watch("connect")`).
    pub fn new(instances: watch::Receiver<Vec<ServiceInstance>>) -> Self {
        DiscoveryLocator {
            instances,
            next: AtomicUsize::new(0),
        }
    }

    /// The `ws_url` of the least loaded live node, if any.
    pub fn pick(&self) -> Option<String> {
        let set = self.instances.borrow();
        let candidates: Vec<(u64, &str)> = set
            .iter()
            .filter_map(|i| {
                let url = i.metadata.get(WS_URL_META)?;
                let sessions = i
                    .metadata
                    .get(SESSIONS_META)
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                Some((sessions, url.as_str()))
            })
            .collect();
        let least = candidates.iter().map(|(s, _)| *s).min()?;
        let tied: Vec<&str> = candidates
            .iter()
            .filter(|(s, _)| *s == least)
            .map(|(_, url)| *url)
            .collect();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        tied.get(n % tied.len().max(1)).map(|u| (*u).to_owned())
    }
}

#[async_trait]
impl WsLocator for DiscoveryLocator {
    async fn locate(&self, _user: UserId, _host: Option<&str>) -> Result<String, Error> {
        self.pick()
            .ok_or_else(|| Error::unavailable_msg("no connect node available"))
    }
}
