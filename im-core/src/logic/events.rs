//! Events: read cursors, recalls, typing, presence and kicks travel through
//! the queue as [`EventEnvelope`]s, so the push group delivers them to online
//! sessions on any connect node, in order with the conversation's messages.
//! They are never persisted and never held for offline users.
//!
//! Also here: session routes with the multi-device policy and presence.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::id::{now_ms, SessionId, UserId};
use crate::model::{Event, EventAudience, EventEnvelope, NodeId, Presence, SessionRoute};

use super::{DevicePolicy, Logic};

impl Logic {
    /// Publishes one event.
    pub(super) async fn publish_event(
        &self,
        event: Event,
        to: EventAudience,
        origin: Option<(NodeId, SessionId)>,
    ) -> Result<()> {
        let entry = EventEnvelope {
            event,
            to,
            origin,
            ts: now_ms(),
        };
        self.ports.queue.publish(&[entry.into()]).await
    }

    /// Binds a new session's route; kicks the user's older sessions of the
    /// same device label when its policy is [`DevicePolicy::Single`]; tells
    /// presence subscribers when the user comes online.
    pub(super) async fn connect_session(&self, route: SessionRoute) -> Result<()> {
        let before = self.ports.sessions.lookup(&[route.user_id]).await?;
        self.ports
            .sessions
            .bind(&route, self.config.session_ttl)
            .await?;
        if let Some(id) = &route.token_id {
            // Checked after the bind: a logout racing this open either sees
            // the route (and kicks it) or is seen here.
            let revoked = match self.ports.revocations.is_revoked(id).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = self.ports.sessions.unbind(&route).await;
                    return Err(e);
                }
            };
            if revoked {
                let _ = self.ports.sessions.unbind(&route).await;
                return Err(Error::Unauthenticated("token revoked".into()));
            }
        }
        let policy = self
            .config
            .device_policies
            .get(&route.device)
            .copied()
            .unwrap_or_default();
        if policy == DevicePolicy::Single {
            let older: Vec<SessionRoute> = before
                .iter()
                .filter(|r| r.device == route.device && r.session_id != route.session_id)
                .cloned()
                .collect();
            if !older.is_empty() {
                for r in &older {
                    // Drop the route now, so nothing more is pushed to it.
                    let _ = self.ports.sessions.unbind(r).await;
                }
                self.publish_event(
                    Event::Kick {
                        reason: format!("signed in on another {} device", route.device),
                    },
                    EventAudience::Sessions(older),
                    None,
                )
                .await?;
            }
        }
        if before
            .iter()
            .all(|r| r.session_id == route.session_id && r.node == route.node)
        {
            self.announce_presence(route.user_id, true).await;
        }
        Ok(())
    }

    /// Unbinds a closed session's route; tells presence subscribers when it
    /// was the user's last session.
    pub(super) async fn disconnect_session(&self, route: SessionRoute) -> Result<()> {
        self.ports.sessions.unbind(&route).await?;
        if self
            .ports
            .sessions
            .lookup(&[route.user_id])
            .await?
            .is_empty()
        {
            self.announce_presence(route.user_id, false).await;
        }
        Ok(())
    }

    /// Sends a presence event to the user's subscribers (best effort: a
    /// subscriber also sees presence by asking).
    async fn announce_presence(&self, user: UserId, online: bool) {
        let subscribers = match self.ports.sessions.presence_subscribers(user).await {
            Ok(s) if s.is_empty() => return,
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "presence subscribers unknown");
                return;
            }
        };
        let presence = Presence {
            user_id: user,
            online,
            last_seen: Some(now_ms()),
        };
        if let Err(e) = self
            .publish_event(
                Event::Presence(presence),
                EventAudience::Users(subscribers),
                None,
            )
            .await
        {
            tracing::debug!(error = %e, "publishing a presence change failed");
        }
    }

    /// Presence of existing users, in the order asked.
    pub(super) async fn presence(&self, users: &[UserId]) -> Result<Vec<Presence>> {
        if users.len() > self.config.max_presence_users {
            return Err(Error::InvalidArgument(format!(
                "at most {} users per presence request",
                self.config.max_presence_users
            )));
        }
        let unique: Vec<UserId> = users
            .iter()
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let found: HashSet<UserId> = self
            .ports
            .users
            .existing(&unique)
            .await?
            .into_iter()
            .collect();
        if let Some(u) = unique.iter().find(|u| !found.contains(u)) {
            return Err(Error::NotFound(format!("no user {u}")));
        }
        let online: HashSet<UserId> = self
            .ports
            .sessions
            .lookup(users)
            .await?
            .into_iter()
            .map(|r| r.user_id)
            .collect();
        let seen = self.ports.sessions.last_seen(users).await?;
        let now = now_ms();
        Ok(users
            .iter()
            .zip(seen)
            .map(|(u, last_seen)| {
                let online = online.contains(u);
                Presence {
                    user_id: *u,
                    online,
                    last_seen: if online { Some(now) } else { last_seen },
                }
            })
            .collect())
    }

    pub(super) async fn subscribe_presence(
        &self,
        subscriber: UserId,
        users: Vec<UserId>,
    ) -> Result<Vec<Presence>> {
        let now = self.presence(&users).await?;
        self.ports
            .sessions
            .subscribe_presence(subscriber, &users, self.config.presence_ttl)
            .await?;
        Ok(now)
    }
}
