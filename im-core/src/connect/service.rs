//! The Connect service: opens and closes sessions (binding their routes
//! through Logic), answers client frames, and refreshes routes periodically.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::id::{SessionId, UserId};
use crate::logic::{LogicApi, Sender};
use crate::model::{NodeId, SessionRoute};
use crate::protocol::{ClientFrame, ServerFrame};

use super::{Hub, RateLimiter, SessionHandle};

/// Connect-layer settings.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Outbound frames buffered per session before it is closed as too slow.
    pub session_queue: usize,
    /// Sends per second allowed per user on this node (`None`: unlimited).
    pub send_rate: Option<f64>,
    /// Burst of sends allowed above the rate.
    pub send_burst: f64,
    /// How often the routes of live sessions are refreshed.
    pub heartbeat: Duration,
    /// Typing indicators per second relayed per user on this node (extra ones
    /// are dropped silently; `None`: unlimited).
    pub typing_rate: Option<f64>,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            session_queue: 1024,
            send_rate: Some(200.0),
            send_burst: 400.0,
            heartbeat: Duration::from_secs(30),
            typing_rate: Some(2.0),
        }
    }
}

/// The session as its frames are handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCtx {
    /// The authenticated user (frames never choose it).
    pub user: UserId,
    /// The session id.
    pub session: SessionId,
    /// The node.
    pub node: NodeId,
}

/// What a session was authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAuth {
    /// The authenticated user.
    pub user: UserId,
    /// The id of the bearer token ([`crate::auth::token_id`]; never the
    /// token itself), carried on the session's route so a logout finds it.
    pub token_id: Option<String>,
    /// When the token expires, Unix milliseconds: the session is closed then
    /// (`kicked` "token expired", 4001).
    pub expires_at: Option<i64>,
}

impl SessionAuth {
    /// A session of `user` without a token (it never expires and no logout
    /// reaches it).
    pub fn user(user: UserId) -> Self {
        SessionAuth {
            user,
            token_id: None,
            expires_at: None,
        }
    }
}

/// The Connect layer's logic for one node.
pub struct ConnectService {
    hub: Arc<Hub>,
    logic: Arc<dyn LogicApi>,
    limiter: Option<RateLimiter<UserId>>,
    typing_limiter: Option<RateLimiter<UserId>>,
    config: ConnectConfig,
}

impl std::fmt::Debug for ConnectService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectService")
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl ConnectService {
    /// A service over a hub, reaching Logic through `logic`.
    pub fn new(hub: Arc<Hub>, logic: Arc<dyn LogicApi>, config: ConnectConfig) -> Self {
        let limiter = config
            .send_rate
            .map(|r| RateLimiter::new(r, config.send_burst));
        let typing_limiter = config.typing_rate.map(|r| RateLimiter::new(r, r * 2.0));
        ConnectService {
            hub,
            logic,
            limiter,
            typing_limiter,
            config,
        }
    }

    /// The hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The Logic this node talks to.
    pub fn logic(&self) -> &Arc<dyn LogicApi> {
        &self.logic
    }

    /// Authenticates a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<UserId> {
        self.logic.verify_token(token).await.map(|i| i.user_id)
    }

    /// Authenticates a bearer token for a session: who, the token's id and
    /// its expiry.
    pub async fn authenticate_session(&self, token: &str) -> Result<SessionAuth> {
        let identity = self.logic.verify_token(token).await?;
        Ok(SessionAuth {
            user: identity.user_id,
            token_id: Some(crate::auth::token_id(token)),
            expires_at: identity.expires_at,
        })
    }

    /// Opens a session for an authenticated user (without a token id) and
    /// binds its route.
    pub async fn open(&self, user: UserId, device: &str) -> Result<(SessionCtx, SessionHandle)> {
        self.open_as(&SessionAuth::user(user), device).await
    }

    /// Opens a session for what [`ConnectService::authenticate_session`]
    /// returned and binds its route (with the token id). Closing it when the
    /// token expires is up to the transport (`auth.expires_at`).
    pub async fn open_as(
        &self,
        auth: &SessionAuth,
        device: &str,
    ) -> Result<(SessionCtx, SessionHandle)> {
        let user = auth.user;
        let handle = self
            .hub
            .open_with_token(user, device, auth.token_id.clone());
        let route = SessionRoute {
            user_id: user,
            node: self.hub.node().clone(),
            session_id: handle.id,
            device: device.to_owned(),
            token_id: auth.token_id.clone(),
        };
        if let Err(e) = self.logic.connect_session(route).await {
            self.hub.remove(handle.id);
            return Err(e);
        }
        let ctx = SessionCtx {
            user,
            session: handle.id,
            node: self.hub.node().clone(),
        };
        Ok((ctx, handle))
    }

    /// Closes a session: forgets it and unbinds its route.
    pub async fn close(&self, ctx: &SessionCtx, device: &str) {
        self.hub.remove(ctx.session);
        let route = SessionRoute {
            user_id: ctx.user,
            node: ctx.node.clone(),
            session_id: ctx.session,
            device: device.to_owned(),
            token_id: None,
        };
        if let Err(e) = self.logic.disconnect_session(route).await {
            tracing::debug!(error = %e, "unbinding a closed session failed; its route will expire");
        }
    }

    /// Answers one decoded client frame (`None`: no reply).
    pub async fn handle(&self, ctx: &SessionCtx, frame: ClientFrame) -> Option<ServerFrame> {
        match frame {
            ClientFrame::Send(req) => {
                let cmid = req.client_msg_id.clone();
                let mut sender = Sender {
                    user: ctx.user,
                    origin: Some((ctx.node.clone(), ctx.session)),
                    throttled: false,
                };
                if let Some(l) = &self.limiter {
                    if !l.allow(ctx.user) {
                        // Logic still answers a retry of an accepted send
                        // with its original ack; anything else is refused.
                        metrics_rate_limited();
                        sender = sender.throttled();
                    }
                }
                Some(match self.logic.send(sender, req).await {
                    Ok(ack) => ServerFrame::SendAck(ack),
                    Err(e) => ServerFrame::error(&e, Some(cmid)),
                })
            }
            ClientFrame::Sync {
                conversation_id,
                after_seq,
                limit,
            } => Some(
                match self
                    .logic
                    .sync(ctx.user, conversation_id, after_seq, limit)
                    .await
                {
                    Ok(page) => ServerFrame::SyncResult {
                        conversation_id,
                        messages: page.messages,
                        has_more: page.has_more,
                    },
                    Err(e) => ServerFrame::error(&e, None),
                },
            ),
            ClientFrame::Ack { .. } => None,
            ClientFrame::Ping => Some(ServerFrame::Pong),
            ClientFrame::Read {
                conversation_id,
                seq,
            } => self
                .logic
                .mark_read(
                    ctx.user,
                    conversation_id,
                    seq,
                    Some((ctx.node.clone(), ctx.session)),
                )
                .await
                .err()
                .map(|e| ServerFrame::error(&e, None)),
            ClientFrame::Edit { msg_id, body } => self
                .logic
                .execute(ctx.user, crate::logic::Command::Edit { msg_id, body })
                .await
                .err()
                .map(|e| ServerFrame::error(&e, None)),
            ClientFrame::Recall { msg_id } => self
                .logic
                .recall(ctx.user, msg_id)
                .await
                .err()
                .map(|e| ServerFrame::error(&e, None)),
            ClientFrame::Typing { to } => {
                if let Some(l) = &self.typing_limiter {
                    if !l.allow(ctx.user) {
                        // Typing is advisory: extra indicators are dropped silently.
                        return None;
                    }
                }
                self.logic
                    .typing(ctx.user, to)
                    .await
                    .err()
                    .map(|e| ServerFrame::error(&e, None))
            }
            ClientFrame::AppState { state } => {
                let background = state == crate::protocol::AppState::Background;
                let route = self.hub.set_background(ctx.session, background)?;
                let result = if background {
                    self.logic.disconnect_session(route).await
                } else {
                    self.logic.connect_session(route).await
                };
                result.err().map(|e| ServerFrame::error(&e, None))
            }
            ClientFrame::CancelScheduled { msg_id } => self
                .logic
                .cancel_scheduled(ctx.user, msg_id)
                .await
                .err()
                .map(|e| ServerFrame::error(&e, None)),
            ClientFrame::SubscribePresence { user_ids } => Some(
                match self.logic.subscribe_presence(ctx.user, user_ids).await {
                    Ok(presences) => ServerFrame::PresenceResult { presences },
                    Err(e) => ServerFrame::error(&e, None),
                },
            ),
        }
    }

    /// Answers one raw text frame: decode errors become `invalid_argument` error frames.
    pub async fn handle_text(&self, ctx: &SessionCtx, text: &[u8]) -> Option<ServerFrame> {
        match ClientFrame::decode(text) {
            Ok(frame) => self.handle(ctx, frame).await,
            Err(e) => Some(e.to_frame()),
        }
    }

    /// Refreshes the routes of every live session once.
    pub async fn heartbeat_once(&self) -> Result<()> {
        let routes = self.hub.routes();
        if routes.is_empty() {
            return Ok(());
        }
        self.logic.refresh_sessions(routes).await
    }

    /// Refreshes routes every `heartbeat` until `stop` fires.
    pub async fn run_heartbeats(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.heartbeat_once().await {
                        tracing::warn!(error = %e, "refreshing session routes failed");
                    }
                }
            }
        }
    }
}

fn metrics_rate_limited() {
    metrics::counter!("im_rate_limited_total").increment(1);
}
