//! gRPC clients of the core ports: [`LogicGrpcClient`] implements
//! [`LogicApi`] over LogicRpc; [`GrpcPusher`] implements [`Pusher`] over
//! ConnectRpc, resolving connect nodes through discovery.
//!
//! Every call carries a deadline (sent as `grpc-timeout` and enforced
//! locally); a call that fails in transport or times out answers
//! [`Error::Unavailable`] / [`Error::Timeout`], which callers may retry.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use im_core::error::{Error, Result};
use im_core::id::{ConversationId, GroupId, MessageId, SessionId, UserId};
use im_core::logic::{ConversationPage, GroupCommand, LogicApi, Login, Page, Sender};
use im_core::model::{Group, Member, NodeId, Presence, SessionRoute, Target};
use im_core::ports::{Identity, PushBatch, PushReport, Pusher, ScheduledSend, ServiceInstance};
use im_core::protocol::{SendAck, SendRequest};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Request;

use super::convert::{
    ack_from_pb, command_to_pb, group_from_pb, member_from_pb, message_from_pb, origin_to_pb,
    page_from_pb, presence_from_pb, route_to_pb, scheduled_from_pb, send_to_pb, target_to_pb,
};
use super::pb::connect_rpc_client::ConnectRpcClient;
use super::pb::logic_rpc_client::LogicRpcClient;
use super::pb::{self, send_result};
use super::status::{rpc_to_error, status_to_error};
use crate::tls::ClientTls;

use super::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, MAX_MESSAGE_SIZE};

/// The discovery service name of connect nodes (instance id = node id,
/// address = the node's ConnectRpc URL).
pub const CONNECT_SERVICE: &str = "connect";

/// Timeouts and limits of the gRPC clients.
#[derive(Debug, Clone)]
pub struct GrpcClientConfig {
    /// How long establishing a connection may take.
    pub connect_timeout: Duration,
    /// Deadline of every call.
    pub request_timeout: Duration,
    /// Largest message sent or accepted.
    pub max_message_size: usize,
    /// Verify servers with TLS against this CA (`None`: plain HTTP/2, unless
    /// an address is `https://`, which then fails for want of a CA). With
    /// TLS set, `http://` addresses (as discovery hands them out) are
    /// reached over TLS too.
    pub tls: Option<ClientTls>,
}

impl Default for GrpcClientConfig {
    fn default() -> Self {
        GrpcClientConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            max_message_size: MAX_MESSAGE_SIZE,
            tls: None,
        }
    }
}

impl GrpcClientConfig {
    /// An endpoint for `addr` (e.g. `http://127.0.0.1:7001`) with these
    /// settings; over TLS when [`GrpcClientConfig::tls`] is set.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint> {
        let url = match (&self.tls, addr.strip_prefix("http://")) {
            (Some(_), Some(rest)) => format!("https://{rest}"),
            _ => addr.to_owned(),
        };
        let mut endpoint = Endpoint::from_shared(url)
            .map_err(|e| Error::InvalidArgument(format!("bad gRPC address {addr:?}: {e}")))?;
        if let Some(tls) = &self.tls {
            let mut config =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some(domain) = &tls.domain {
                config = config.domain_name(domain.clone());
            }
            endpoint = endpoint.tls_config(config).map_err(|e| {
                Error::InvalidArgument(format!("gRPC client TLS for {addr:?}: {e}"))
            })?;
        }
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .http2_adaptive_window(true))
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.request_timeout);
        request
    }
}

/// A copy of an error for every item of a batch that failed as a whole.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Timeout(m) => Error::Timeout(m.clone()),
        Error::Unavailable { message, .. } => Error::unavailable_msg(message.clone()),
        Error::Internal(m) => Error::Internal(m.clone()),
        other => Error::from_code(other.code(), other.to_string()),
    }
}

/// [`LogicApi`] over LogicRpc: what API and Connect processes use to reach
/// Logic in a cluster. Cheap to clone (one multiplexed HTTP/2 channel).
#[derive(Debug, Clone)]
pub struct LogicGrpcClient {
    client: LogicRpcClient<Channel>,
    config: GrpcClientConfig,
}

impl LogicGrpcClient {
    /// A client of `addr` (e.g. `http://127.0.0.1:7001`) that connects on
    /// first use and reconnects by itself. Needs a Tokio runtime.
    pub fn new(addr: &str, config: GrpcClientConfig) -> Result<Self> {
        let channel = config.endpoint(addr)?.connect_lazy();
        Ok(Self::from_channel(channel, config))
    }

    /// A client of `addr` that connects now, failing with
    /// [`Error::Unavailable`] if the server cannot be reached.
    pub async fn connect(addr: &str, config: GrpcClientConfig) -> Result<Self> {
        let channel = config
            .endpoint(addr)?
            .connect()
            .await
            .map_err(|e| Error::unavailable(format!("cannot reach Logic at {addr}"), e))?;
        Ok(Self::from_channel(channel, config))
    }

    /// A client over an existing channel (e.g. one balanced over several
    /// Logic instances with `Channel::balance_list`).
    pub fn from_channel(channel: Channel, config: GrpcClientConfig) -> Self {
        let client = LogicRpcClient::new(channel)
            .max_decoding_message_size(config.max_message_size)
            .max_encoding_message_size(config.max_message_size);
        LogicGrpcClient { client, config }
    }

    fn rpc(&self) -> LogicRpcClient<Channel> {
        self.client.clone()
    }
}

#[async_trait]
impl LogicApi for LogicGrpcClient {
    async fn register(&self, username: &str, password: &str) -> Result<UserId> {
        let r = self
            .rpc()
            .register(self.config.request(pb::RegisterRequest {
                username: username.to_owned(),
                password: password.to_owned(),
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(UserId(r.user_id))
    }

    async fn login(&self, username: &str, password: &str) -> Result<Login> {
        let r = self
            .rpc()
            .login(self.config.request(pb::LoginRequest {
                username: username.to_owned(),
                password: password.to_owned(),
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(Login {
            user_id: UserId(r.user_id),
            token: r.token,
            expires_at: r.expires_at,
        })
    }

    async fn verify_token(&self, token: &str) -> Result<Identity> {
        let r = self
            .rpc()
            .verify_token(self.config.request(pb::VerifyTokenRequest {
                token: token.to_owned(),
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(Identity {
            user_id: UserId(r.user_id),
            expires_at: r.expires_at,
        })
    }

    async fn logout(&self, token: &str) -> Result<()> {
        self.rpc()
            .logout(self.config.request(pb::LogoutRequest {
                token: token.to_owned(),
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn connect_session(&self, route: SessionRoute) -> Result<()> {
        self.rpc()
            .connect_session(self.config.request(pb::ConnectSessionRequest {
                route: Some(route_to_pb(&route)),
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn refresh_sessions(&self, routes: Vec<SessionRoute>) -> Result<()> {
        self.rpc()
            .refresh_sessions(self.config.request(pb::RefreshSessionsRequest {
                routes: routes.iter().map(route_to_pb).collect(),
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn disconnect_session(&self, route: SessionRoute) -> Result<()> {
        self.rpc()
            .disconnect_session(self.config.request(pb::DisconnectSessionRequest {
                route: Some(route_to_pb(&route)),
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn send(&self, sender: Sender, request: SendRequest) -> Result<SendAck> {
        let r = self
            .rpc()
            .send(self.config.request(send_to_pb(&sender, &request)?))
            .await
            .map_err(status_to_error)?
            .into_inner();
        ack_from_pb(r)
    }

    async fn send_batch(&self, sends: Vec<(Sender, SendRequest)>) -> Vec<Result<SendAck>> {
        let n = sends.len();
        // Items that cannot be encoded fail alone; the rest go in one call.
        let mut encoded = Vec::with_capacity(n);
        let mut slots: Vec<Option<Error>> = Vec::with_capacity(n);
        for (sender, request) in &sends {
            match send_to_pb(sender, request) {
                Ok(p) => {
                    encoded.push(p);
                    slots.push(None);
                }
                Err(e) => slots.push(Some(e)),
            }
        }
        let answered = if encoded.is_empty() {
            Ok(Vec::new())
        } else {
            self.rpc()
                .send_batch(self.config.request(pb::SendBatchRequest { sends: encoded }))
                .await
                .map(|r| r.into_inner().results)
                .map_err(status_to_error)
        };
        let mut results = match answered {
            Ok(results) => results.into_iter(),
            Err(e) => {
                return slots
                    .into_iter()
                    .map(|slot| Err(slot.unwrap_or_else(|| copy_error(&e))))
                    .collect()
            }
        };
        slots
            .into_iter()
            .map(|slot| match slot {
                Some(e) => Err(e),
                None => match results.next().and_then(|r| r.result) {
                    Some(send_result::Result::Ack(ack)) => ack_from_pb(ack),
                    Some(send_result::Result::Error(e)) => Err(rpc_to_error(e)),
                    None => Err(Error::Internal(
                        "LogicRpc.SendBatch answered fewer items than it was given".into(),
                    )),
                },
            })
            .collect()
    }

    async fn sync(
        &self,
        user: UserId,
        conversation: ConversationId,
        after_seq: u64,
        limit: Option<u32>,
    ) -> Result<Page> {
        let r = self
            .rpc()
            .sync(self.config.request(pb::SyncRequest {
                user_id: user.0,
                conversation_id: conversation.to_string(),
                after_seq,
                limit,
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(Page {
            messages: r
                .messages
                .into_iter()
                .map(message_from_pb)
                .collect::<Result<_>>()?,
            has_more: r.has_more,
        })
    }

    async fn create_group(&self, actor: UserId, name: &str) -> Result<GroupId> {
        let r = self
            .rpc()
            .create_group(self.config.request(pb::CreateGroupRequest {
                actor: actor.0,
                name: name.to_owned(),
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(GroupId(r.group_id))
    }

    async fn add_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()> {
        self.rpc()
            .add_member(self.config.request(pb::AddMemberRequest {
                actor: actor.0,
                group_id: group.0,
                user_id: user.0,
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn remove_member(&self, actor: UserId, group: GroupId, user: UserId) -> Result<()> {
        self.rpc()
            .remove_member(self.config.request(pb::RemoveMemberRequest {
                actor: actor.0,
                group_id: group.0,
                user_id: user.0,
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn members(&self, actor: UserId, group: GroupId) -> Result<Vec<Member>> {
        let r = self
            .rpc()
            .list_members(self.config.request(pb::ListMembersRequest {
                actor: actor.0,
                group_id: group.0,
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        r.members.into_iter().map(member_from_pb).collect()
    }

    async fn group(&self, actor: UserId, group: GroupId) -> Result<Group> {
        let r = self
            .rpc()
            .get_group(self.config.request(pb::GetGroupRequest {
                actor: actor.0,
                group_id: group.0,
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        group_from_pb(r.group)
    }

    async fn administer_group(
        &self,
        actor: UserId,
        group: GroupId,
        command: GroupCommand,
    ) -> Result<()> {
        self.rpc()
            .administer_group(self.config.request(pb::AdministerGroupRequest {
                actor: actor.0,
                group_id: group.0,
                command: Some(command_to_pb(command)),
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
        origin: Option<(NodeId, SessionId)>,
    ) -> Result<()> {
        self.rpc()
            .mark_read(self.config.request(pb::MarkReadRequest {
                user_id: user.0,
                conversation_id: conversation.to_string(),
                seq,
                origin: origin_to_pb(origin.as_ref()),
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn recall(&self, actor: UserId, msg_id: MessageId) -> Result<()> {
        self.rpc()
            .recall(self.config.request(pb::RecallRequest {
                actor: actor.0,
                msg_id: msg_id.0,
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn typing(&self, user: UserId, to: Target) -> Result<()> {
        self.rpc()
            .typing(self.config.request(pb::TypingRequest {
                user_id: user.0,
                to: Some(target_to_pb(to)),
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn conversations(
        &self,
        user: UserId,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<ConversationPage> {
        let r = self
            .rpc()
            .list_conversations(self.config.request(pb::ListConversationsRequest {
                user_id: user.0,
                cursor,
                limit,
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        page_from_pb(r)
    }

    async fn presence(&self, users: Vec<UserId>) -> Result<Vec<Presence>> {
        let r = self
            .rpc()
            .get_presence(self.config.request(pb::GetPresenceRequest {
                user_ids: users.iter().map(|u| u.0).collect(),
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(r.presences.into_iter().map(presence_from_pb).collect())
    }

    async fn subscribe_presence(
        &self,
        subscriber: UserId,
        users: Vec<UserId>,
    ) -> Result<Vec<Presence>> {
        let r = self
            .rpc()
            .subscribe_presence(self.config.request(pb::SubscribePresenceRequest {
                subscriber: subscriber.0,
                user_ids: users.iter().map(|u| u.0).collect(),
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(r.presences.into_iter().map(presence_from_pb).collect())
    }

    async fn cancel_scheduled(&self, user: UserId, msg_id: MessageId) -> Result<()> {
        self.rpc()
            .cancel_scheduled(self.config.request(pb::CancelScheduledRequest {
                user_id: user.0,
                msg_id: msg_id.0,
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn scheduled(&self, user: UserId) -> Result<Vec<ScheduledSend>> {
        let r = self
            .rpc()
            .list_scheduled(
                self.config
                    .request(pb::ListScheduledRequest { user_id: user.0 }),
            )
            .await
            .map_err(status_to_error)?
            .into_inner();
        r.scheduled.into_iter().map(scheduled_from_pb).collect()
    }

    async fn execute(
        &self,
        actor: UserId,
        command: im_core::logic::Command,
    ) -> Result<im_core::logic::Reply> {
        let command_json = serde_json::to_string(&command)
            .map_err(|e| im_core::Error::Internal(format!("encode command: {e}")))?;
        let r = self
            .rpc()
            .execute(self.config.request(pb::ExecuteRequest {
                actor: actor.0,
                command_json,
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        serde_json::from_str(&r.reply_json)
            .map_err(|e| im_core::Error::Internal(format!("malformed reply from logic: {e}")))
    }
}

struct PusherInner {
    instances: watch::Receiver<Vec<ServiceInstance>>,
    config: GrpcClientConfig,
    /// One lazily connected client per live node, with the address it was made for.
    channels: Mutex<HashMap<NodeId, (String, ConnectRpcClient<Channel>)>>,
    /// Stops the pruning task when the last clone of the pusher is dropped.
    _stop: DropGuard,
}

impl PusherInner {
    fn addr_of(&self, node: &NodeId) -> Option<String> {
        self.instances
            .borrow()
            .iter()
            .find(|i| i.service == CONNECT_SERVICE && i.id == node.as_str())
            .map(|i| i.addr.clone())
    }

    fn client(&self, node: &NodeId) -> Result<ConnectRpcClient<Channel>> {
        let addr = self.addr_of(node).ok_or_else(|| {
            Error::unavailable_msg(format!("connect node {node} is not in the live set"))
        })?;
        let mut channels = self.channels.lock();
        if let Some((known, client)) = channels.get(node) {
            if *known == addr {
                return Ok(client.clone());
            }
        }
        let endpoint = self.config.endpoint(&addr).map_err(|e| {
            Error::unavailable_msg(format!("connect node {node} has a bad address: {e}"))
        })?;
        let client = ConnectRpcClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(self.config.max_message_size)
            .max_encoding_message_size(self.config.max_message_size);
        channels.insert(node.clone(), (addr, client.clone()));
        Ok(client)
    }

    /// Drops the channels of nodes that left the set (or moved).
    fn prune(&self, live: &[ServiceInstance]) {
        self.channels.lock().retain(|node, (addr, _)| {
            live.iter()
                .any(|i| i.service == CONNECT_SERVICE && i.id == node.as_str() && i.addr == *addr)
        });
    }
}

/// [`Pusher`] over ConnectRpc: the Task layer's way to reach connect nodes
/// in a cluster.
///
/// Nodes are resolved from a discovery watch of the `connect` service
/// (instance id = node id, address = the node's ConnectRpc URL). One
/// lazily connected channel is kept per live node and dropped when the node
/// leaves the set; a node not in the set answers [`Error::Unavailable`].
/// Cheap to clone.
#[derive(Clone)]
pub struct GrpcPusher {
    inner: Arc<PusherInner>,
}

impl std::fmt::Debug for GrpcPusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcPusher")
            .field("config", &self.inner.config)
            .field("channels", &self.inner.channels.lock().len())
            .finish()
    }
}

impl GrpcPusher {
    /// A pusher over the live set of `instances` (e.g. from
    /// `Discovery::watch("connect")`). Spawns a small task that prunes
    /// channels as the set changes, so it needs a Tokio runtime.
    pub fn new(instances: watch::Receiver<Vec<ServiceInstance>>, config: GrpcClientConfig) -> Self {
        let stop = CancellationToken::new();
        let inner = Arc::new(PusherInner {
            instances: instances.clone(),
            config,
            channels: Mutex::new(HashMap::new()),
            _stop: stop.clone().drop_guard(),
        });
        tokio::spawn(prune_on_change(Arc::downgrade(&inner), instances, stop));
        GrpcPusher { inner }
    }

    /// Open sessions on `node` (ConnectRpc.Stats).
    pub async fn session_count(&self, node: &NodeId) -> Result<u64> {
        let r = self
            .inner
            .client(node)?
            .stats(self.inner.config.request(pb::StatsRequest {}))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(r.sessions)
    }

    /// Nodes with an open channel (for metrics and tests).
    pub fn connected_nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self.inner.channels.lock().keys().cloned().collect();
        nodes.sort();
        nodes
    }
}

async fn prune_on_change(
    inner: Weak<PusherInner>,
    mut instances: watch::Receiver<Vec<ServiceInstance>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = instances.changed() => {
                if changed.is_err() {
                    // The watch ended: the last set stays in force.
                    return;
                }
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        let live = instances.borrow_and_update().clone();
        inner.prune(&live);
    }
}

#[async_trait]
impl Pusher for GrpcPusher {
    async fn push(&self, node: &NodeId, batch: PushBatch) -> Result<PushReport> {
        let request = pb::PushRequest {
            items: batch
                .items
                .into_iter()
                .map(|i| pb::PushItem {
                    frame: i.frame,
                    sessions: i.sessions.into_iter().map(|s| s.0).collect(),
                })
                .collect(),
            node: node.as_str().to_owned(),
        };
        let r = self
            .inner
            .client(node)?
            .push(self.inner.config.request(request))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(PushReport {
            delivered: r.delivered,
            gone: r.gone.into_iter().map(SessionId).collect(),
        })
    }

    async fn kick(&self, node: &NodeId, session: SessionId, reason: &str) -> Result<bool> {
        let r = self
            .inner
            .client(node)?
            .kick(self.inner.config.request(pb::KickRequest {
                session: session.0,
                reason: reason.to_owned(),
                node: node.as_str().to_owned(),
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(r.kicked)
    }
}
