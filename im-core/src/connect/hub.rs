//! The hub: every session of this node with a bounded outbound queue each.
//!
//! Delivering a batch clones the `Bytes` of each frame (a reference count),
//! never re-serializes per session; a session whose queue is full is closed
//! (it will reconnect and sync) instead of slowing the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::id::{SessionId, UserId};
use crate::model::{NodeId, SessionRoute};
use crate::ports::{PushBatch, PushReport, Pusher};
use crate::protocol::ServerFrame;

use super::{CLOSE_KICKED, CLOSE_SLOW_CONSUMER};

/// Why the server closed a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason text.
    pub reason: String,
}

struct Entry {
    user: UserId,
    device: String,
    token_id: Option<String>,
    /// The app said it is in the background: no route, no pushes.
    background: bool,
    tx: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
    reason: Arc<Mutex<Option<CloseReason>>>,
}

/// The socket side of one session: its outbound frames and its close signal.
#[derive(Debug)]
pub struct SessionHandle {
    /// The session id (unique on this node).
    pub id: SessionId,
    /// The session's user.
    pub user: UserId,
    /// Device label.
    pub device: String,
    /// Frames to write, in order.
    pub outbound: mpsc::Receiver<Bytes>,
    /// Cancelled when the server closes the session (see [`SessionHandle::close_reason`]).
    pub closed: CancellationToken,
    reason: Arc<Mutex<Option<CloseReason>>>,
}

impl SessionHandle {
    /// Why the server closed the session, once `closed` fired.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.reason.lock().clone()
    }
}

/// The node-local registry of sessions.
pub struct Hub {
    node: NodeId,
    queue_capacity: usize,
    next: AtomicU64,
    sessions: RwLock<HashMap<SessionId, Entry>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("node", &self.node)
            .field("sessions", &self.session_count())
            .finish()
    }
}

impl Hub {
    /// A hub for `node` with `queue_capacity` outbound frames per session.
    pub fn new(node: NodeId, queue_capacity: usize) -> Self {
        // Session ids start from the clock so a restarted node does not reuse
        // the ids of its previous life (stale routes would hit new sessions).
        let seed = (crate::id::now_ms().max(0) as u64) << 16;
        Hub {
            node,
            queue_capacity: queue_capacity.max(1),
            next: AtomicU64::new(seed),
            sessions: RwLock::new(HashMap::new()),
        }
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// Registers a session (opened without a token id).
    pub fn open(&self, user: UserId, device: &str) -> SessionHandle {
        self.open_with_token(user, device, None)
    }

    /// Registers a session opened with the token of id `token_id`
    /// ([`crate::auth::token_id`]), carried on its route so a logout finds it.
    pub fn open_with_token(
        &self,
        user: UserId,
        device: &str,
        token_id: Option<String>,
    ) -> SessionHandle {
        let id = SessionId(self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let cancel = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        self.sessions.write().insert(
            id,
            Entry {
                user,
                device: device.to_owned(),
                token_id,
                background: false,
                tx,
                cancel: cancel.clone(),
                reason: reason.clone(),
            },
        );
        SessionHandle {
            id,
            user,
            device: device.to_owned(),
            outbound: rx,
            closed: cancel,
            reason,
        }
    }

    /// Forgets a session (its socket closed).
    pub fn remove(&self, id: SessionId) -> bool {
        self.sessions.write().remove(&id).is_some()
    }

    /// Closes a session from the server side with a code and reason.
    pub fn close(&self, id: SessionId, code: u16, reason: &str) -> bool {
        match self.sessions.write().remove(&id) {
            Some(e) => {
                *e.reason.lock() = Some(CloseReason {
                    code,
                    reason: reason.to_owned(),
                });
                e.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Sends a `kicked` frame to a session, then closes it with 4001.
    pub fn kick(&self, id: SessionId, reason: &str) -> bool {
        let frame = Bytes::from(
            ServerFrame::Kicked {
                reason: reason.to_owned(),
            }
            .encode(),
        );
        if let Some(e) = self.sessions.read().get(&id) {
            let _ = e.tx.try_send(frame);
        }
        self.close(id, CLOSE_KICKED, reason)
    }

    /// Queues one frame to one session (e.g. a reply); false if it is gone or full.
    pub fn send_to(&self, id: SessionId, frame: Bytes) -> bool {
        let full = match self.sessions.read().get(&id) {
            Some(e) => match e.tx.try_send(frame) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
            None => return false,
        };
        if full {
            self.close(
                id,
                CLOSE_SLOW_CONSUMER,
                "outbound queue full; reconnect and sync",
            );
        }
        false
    }

    /// Delivers a batch: each frame's bytes are shared by all its sessions.
    pub fn deliver(&self, batch: &PushBatch) -> PushReport {
        let mut report = PushReport::default();
        let mut overflow = Vec::new();
        {
            let sessions = self.sessions.read();
            for item in &batch.items {
                for sid in &item.sessions {
                    match sessions.get(sid) {
                        Some(e) => match e.tx.try_send(item.frame.clone()) {
                            Ok(()) => report.delivered += 1,
                            Err(mpsc::error::TrySendError::Full(_)) => overflow.push(*sid),
                            Err(mpsc::error::TrySendError::Closed(_)) => report.gone.push(*sid),
                        },
                        None => report.gone.push(*sid),
                    }
                }
            }
        }
        overflow.sort_unstable();
        overflow.dedup();
        for sid in overflow {
            tracing::debug!(session = sid.0, "closing slow session");
            self.close(
                sid,
                CLOSE_SLOW_CONSUMER,
                "outbound queue full; reconnect and sync",
            );
        }
        report.gone.sort_unstable();
        report.gone.dedup();
        report
    }

    /// Open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.read().len()
    }

    /// Sessions of one user on this node.
    pub fn sessions_of(&self, user: UserId) -> Vec<SessionId> {
        self.sessions
            .read()
            .iter()
            .filter(|(_, e)| e.user == user)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Marks a session as in the background (or back in the foreground);
    /// answers its route when that changed anything.
    pub fn set_background(&self, id: SessionId, background: bool) -> Option<SessionRoute> {
        let mut sessions = self.sessions.write();
        let e = sessions.get_mut(&id)?;
        if e.background == background {
            return None;
        }
        e.background = background;
        Some(SessionRoute {
            user_id: e.user,
            node: self.node.clone(),
            session_id: id,
            device: e.device.clone(),
            token_id: e.token_id.clone(),
        })
    }

    /// The routes of every foreground session (for heartbeats: a background
    /// session has no route).
    pub fn routes(&self) -> Vec<SessionRoute> {
        self.sessions
            .read()
            .iter()
            .filter(|(_, e)| !e.background)
            .map(|(id, e)| SessionRoute {
                user_id: e.user,
                node: self.node.clone(),
                session_id: *id,
                device: e.device.clone(),
                token_id: e.token_id.clone(),
            })
            .collect()
    }

    /// Closes every session with `code` (e.g. 1001 on shutdown).
    pub fn close_all(&self, code: u16, reason: &str) -> usize {
        let ids: Vec<SessionId> = self.sessions.read().keys().copied().collect();
        ids.iter()
            .filter(|id| self.close(**id, code, reason))
            .count()
    }
}

/// A [`Pusher`] that calls the hubs of this process directly.
#[derive(Debug, Default, Clone)]
pub struct LocalPusher {
    hubs: Arc<RwLock<HashMap<NodeId, Arc<Hub>>>>,
}

impl LocalPusher {
    /// A pusher over the given hubs.
    pub fn new(hubs: impl IntoIterator<Item = Arc<Hub>>) -> Self {
        let p = LocalPusher::default();
        for h in hubs {
            p.add(h);
        }
        p
    }

    /// Adds a hub.
    pub fn add(&self, hub: Arc<Hub>) {
        self.hubs.write().insert(hub.node().clone(), hub);
    }

    fn hub(&self, node: &NodeId) -> Result<Arc<Hub>> {
        self.hubs
            .read()
            .get(node)
            .cloned()
            .ok_or_else(|| Error::unavailable_msg(format!("connect node {node} is not here")))
    }
}

#[async_trait]
impl Pusher for LocalPusher {
    async fn push(&self, node: &NodeId, batch: PushBatch) -> Result<PushReport> {
        Ok(self.hub(node)?.deliver(&batch))
    }

    async fn kick(&self, node: &NodeId, session: SessionId, reason: &str) -> Result<bool> {
        Ok(self.hub(node)?.kick(session, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PushItem;

    #[tokio::test]
    async fn fan_out_shares_bytes_and_closes_only_the_slow_session() {
        let hub = Hub::new(NodeId::new("n1"), 4);
        let mut fast = hub.open(UserId(1), "web");
        let slow = hub.open(UserId(2), "web");
        for i in 0..10 {
            let frame = Bytes::from(format!("{{\"n\":{i}}}"));
            let report = hub.deliver(&PushBatch {
                items: vec![PushItem {
                    frame: frame.clone(),
                    sessions: vec![fast.id, slow.id],
                }],
            });
            assert!(report.delivered >= 1);
            let got = fast.outbound.recv().await.unwrap();
            assert_eq!(
                got.as_ptr(),
                frame.as_ptr(),
                "the frame bytes are shared, not copied"
            );
        }
        assert!(slow.closed.is_cancelled(), "the slow session is closed");
        assert_eq!(slow.close_reason().unwrap().code, CLOSE_SLOW_CONSUMER);
        assert!(!fast.closed.is_cancelled());
        assert_eq!(hub.session_count(), 1);
    }

    #[tokio::test]
    async fn kick_sends_a_kicked_frame_then_closes() {
        let hub = Hub::new(NodeId::new("n1"), 4);
        let mut s = hub.open(UserId(1), "web");
        assert!(hub.kick(s.id, "replaced"));
        let f = s.outbound.recv().await.unwrap();
        assert_eq!(&f[..], br#"{"type":"kicked","reason":"replaced"}"#);
        assert!(s.closed.is_cancelled());
        assert_eq!(s.close_reason().unwrap().code, CLOSE_KICKED);
        assert!(!hub.kick(s.id, "again"));
    }
}
