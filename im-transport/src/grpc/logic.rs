//! The LogicRpc server: any [`LogicApi`] behind gRPC.
//!
//! **Internal and trusted.** The sender of `Send`, the actor of group calls
//! and the user of `Sync` are taken from the request: the caller (the API or
//! Connect layer) authenticated them. Never expose this service publicly.

use std::future::Future;
use std::sync::Arc;

use im_core::id::{ConversationId, GroupId, MessageId, UserId};
use im_core::logic::LogicApi;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use super::convert::{
    ack_to_pb, command_from_pb, conversation_from_pb, group_to_pb, member_to_pb, message_to_pb,
    origin_from_pb, page_to_pb, presence_to_pb, route_from_pb, routes_from_pb, scheduled_to_pb,
    send_from_pb, target_from_pb,
};
use super::pb::logic_rpc_server::{self, LogicRpc};
use super::pb::{self, send_result};
use super::status::{error_to_rpc, error_to_status};
use super::MAX_MESSAGE_SIZE;

/// The tonic service of [`LogicRpcServer`], ready for `Server::add_service`.
pub type LogicRpcService = logic_rpc_server::LogicRpcServer<LogicRpcServer>;

/// Serves a [`LogicApi`] (usually `im_core::logic::Logic`) as LogicRpc.
#[derive(Clone)]
pub struct LogicRpcServer {
    logic: Arc<dyn LogicApi>,
}

impl std::fmt::Debug for LogicRpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicRpcServer").finish_non_exhaustive()
    }
}

fn st(e: im_core::Error) -> Status {
    error_to_status(&e)
}

impl LogicRpcServer {
    /// Wraps a Logic implementation.
    pub fn new(logic: Arc<dyn LogicApi>) -> Self {
        LogicRpcServer { logic }
    }

    /// The tonic service with this crate's message size limits.
    pub fn into_service(self) -> LogicRpcService {
        logic_rpc_server::LogicRpcServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// Serves LogicRpc alone on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> im_core::Result<()> {
        self.serve_tls(listener, None, shutdown).await
    }

    /// [`Self::serve`] over TLS when `tls` is set (see
    /// [`super::server_builder_tls`]); a bad certificate or key fails at
    /// once with [`im_core::Error::InvalidArgument`] naming the file.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        tls: Option<&crate::tls::TlsFiles>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> im_core::Result<()> {
        let mut builder = super::server_builder_tls(tls)
            .map_err(|e| im_core::Error::InvalidArgument(e.to_string()))?;
        let router = builder.add_service(self.into_service());
        super::serve_router(router, listener, shutdown).await
    }
}

type Res<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl LogicRpc for LogicRpcServer {
    async fn register(&self, request: Request<pb::RegisterRequest>) -> Res<pb::RegisterResponse> {
        let r = request.into_inner();
        let id = self
            .logic
            .register(&r.username, &r.password)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::RegisterResponse { user_id: id.0 }))
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Res<pb::LoginResponse> {
        let r = request.into_inner();
        let l = self
            .logic
            .login(&r.username, &r.password)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::LoginResponse {
            user_id: l.user_id.0,
            token: l.token,
            expires_at: l.expires_at,
        }))
    }

    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Res<pb::VerifyTokenResponse> {
        let r = request.into_inner();
        let id = self.logic.verify_token(&r.token).await.map_err(st)?;
        Ok(Response::new(pb::VerifyTokenResponse {
            user_id: id.user_id.0,
            expires_at: id.expires_at,
        }))
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Res<pb::LogoutResponse> {
        let r = request.into_inner();
        self.logic.logout(&r.token).await.map_err(st)?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn connect_session(
        &self,
        request: Request<pb::ConnectSessionRequest>,
    ) -> Res<pb::ConnectSessionResponse> {
        let route = route_from_pb(request.into_inner().route).map_err(st)?;
        self.logic.connect_session(route).await.map_err(st)?;
        Ok(Response::new(pb::ConnectSessionResponse {}))
    }

    async fn refresh_sessions(
        &self,
        request: Request<pb::RefreshSessionsRequest>,
    ) -> Res<pb::RefreshSessionsResponse> {
        let routes = routes_from_pb(request.into_inner().routes).map_err(st)?;
        self.logic.refresh_sessions(routes).await.map_err(st)?;
        Ok(Response::new(pb::RefreshSessionsResponse {}))
    }

    async fn disconnect_session(
        &self,
        request: Request<pb::DisconnectSessionRequest>,
    ) -> Res<pb::DisconnectSessionResponse> {
        let route = route_from_pb(request.into_inner().route).map_err(st)?;
        self.logic.disconnect_session(route).await.map_err(st)?;
        Ok(Response::new(pb::DisconnectSessionResponse {}))
    }

    async fn send(&self, request: Request<pb::SendRequest>) -> Res<pb::SendAck> {
        let (sender, req) = send_from_pb(request.into_inner()).map_err(st)?;
        let ack = self.logic.send(sender, req).await.map_err(st)?;
        Ok(Response::new(ack_to_pb(ack)))
    }

    async fn send_batch(
        &self,
        request: Request<pb::SendBatchRequest>,
    ) -> Res<pb::SendBatchResponse> {
        // A malformed item fails alone; the valid ones go to Logic as one batch.
        let sends = request.into_inner().sends;
        let mut invalid: Vec<Option<im_core::Error>> = Vec::with_capacity(sends.len());
        let mut valid = Vec::with_capacity(sends.len());
        for item in sends {
            match send_from_pb(item) {
                Ok(send) => {
                    valid.push(send);
                    invalid.push(None);
                }
                Err(e) => invalid.push(Some(e)),
            }
        }
        let mut answers = self.logic.send_batch(valid).await.into_iter();
        let mut results = Vec::with_capacity(invalid.len());
        for slot in invalid {
            let outcome = match slot {
                Some(e) => Err(e),
                None => answers.next().unwrap_or_else(|| {
                    Err(im_core::Error::Internal(
                        "send_batch answered fewer items than it was given".into(),
                    ))
                }),
            };
            results.push(pb::SendResult {
                result: Some(match outcome {
                    Ok(ack) => send_result::Result::Ack(ack_to_pb(ack)),
                    Err(e) => send_result::Result::Error(error_to_rpc(&e)),
                }),
            });
        }
        Ok(Response::new(pb::SendBatchResponse { results }))
    }

    async fn sync(&self, request: Request<pb::SyncRequest>) -> Res<pb::SyncResponse> {
        let r = request.into_inner();
        let conversation: ConversationId = conversation_from_pb(&r.conversation_id).map_err(st)?;
        let page = self
            .logic
            .sync(UserId(r.user_id), conversation, r.after_seq, r.limit)
            .await
            .map_err(st)?;
        let messages = page
            .messages
            .into_iter()
            .map(message_to_pb)
            .collect::<Result<Vec<_>, _>>()
            .map_err(st)?;
        Ok(Response::new(pb::SyncResponse {
            messages,
            has_more: page.has_more,
        }))
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Res<pb::CreateGroupResponse> {
        let r = request.into_inner();
        let g = self
            .logic
            .create_group(UserId(r.actor), &r.name)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::CreateGroupResponse { group_id: g.0 }))
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Res<pb::AddMemberResponse> {
        let r = request.into_inner();
        self.logic
            .add_member(UserId(r.actor), GroupId(r.group_id), UserId(r.user_id))
            .await
            .map_err(st)?;
        Ok(Response::new(pb::AddMemberResponse {}))
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Res<pb::RemoveMemberResponse> {
        let r = request.into_inner();
        self.logic
            .remove_member(UserId(r.actor), GroupId(r.group_id), UserId(r.user_id))
            .await
            .map_err(st)?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Res<pb::ListMembersResponse> {
        let r = request.into_inner();
        let members = self
            .logic
            .members(UserId(r.actor), GroupId(r.group_id))
            .await
            .map_err(st)?;
        Ok(Response::new(pb::ListMembersResponse {
            members: members.into_iter().map(member_to_pb).collect(),
        }))
    }

    async fn get_group(&self, request: Request<pb::GetGroupRequest>) -> Res<pb::GetGroupResponse> {
        let r = request.into_inner();
        let group = self
            .logic
            .group(UserId(r.actor), GroupId(r.group_id))
            .await
            .map_err(st)?;
        Ok(Response::new(pb::GetGroupResponse {
            group: Some(group_to_pb(group)),
        }))
    }

    async fn administer_group(
        &self,
        request: Request<pb::AdministerGroupRequest>,
    ) -> Res<pb::AdministerGroupResponse> {
        let r = request.into_inner();
        let command = command_from_pb(r.command).map_err(st)?;
        self.logic
            .administer_group(UserId(r.actor), GroupId(r.group_id), command)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::AdministerGroupResponse {}))
    }

    async fn mark_read(&self, request: Request<pb::MarkReadRequest>) -> Res<pb::MarkReadResponse> {
        let r = request.into_inner();
        let conversation = conversation_from_pb(&r.conversation_id).map_err(st)?;
        self.logic
            .mark_read(
                UserId(r.user_id),
                conversation,
                r.seq,
                origin_from_pb(r.origin),
            )
            .await
            .map_err(st)?;
        Ok(Response::new(pb::MarkReadResponse {}))
    }

    async fn recall(&self, request: Request<pb::RecallRequest>) -> Res<pb::RecallResponse> {
        let r = request.into_inner();
        self.logic
            .recall(UserId(r.actor), MessageId(r.msg_id))
            .await
            .map_err(st)?;
        Ok(Response::new(pb::RecallResponse {}))
    }

    async fn typing(&self, request: Request<pb::TypingRequest>) -> Res<pb::TypingResponse> {
        let r = request.into_inner();
        let to = target_from_pb(r.to).map_err(st)?;
        self.logic.typing(UserId(r.user_id), to).await.map_err(st)?;
        Ok(Response::new(pb::TypingResponse {}))
    }

    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Res<pb::ListConversationsResponse> {
        let r = request.into_inner();
        let page = self
            .logic
            .conversations(UserId(r.user_id), r.cursor, r.limit)
            .await
            .map_err(st)?;
        Ok(Response::new(page_to_pb(page).map_err(st)?))
    }

    async fn get_presence(
        &self,
        request: Request<pb::GetPresenceRequest>,
    ) -> Res<pb::GetPresenceResponse> {
        let users = request
            .into_inner()
            .user_ids
            .into_iter()
            .map(UserId)
            .collect();
        let presences = self.logic.presence(users).await.map_err(st)?;
        Ok(Response::new(pb::GetPresenceResponse {
            presences: presences.into_iter().map(presence_to_pb).collect(),
        }))
    }

    async fn subscribe_presence(
        &self,
        request: Request<pb::SubscribePresenceRequest>,
    ) -> Res<pb::SubscribePresenceResponse> {
        let r = request.into_inner();
        let users = r.user_ids.into_iter().map(UserId).collect();
        let presences = self
            .logic
            .subscribe_presence(UserId(r.subscriber), users)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::SubscribePresenceResponse {
            presences: presences.into_iter().map(presence_to_pb).collect(),
        }))
    }

    async fn cancel_scheduled(
        &self,
        request: Request<pb::CancelScheduledRequest>,
    ) -> Res<pb::CancelScheduledResponse> {
        let r = request.into_inner();
        self.logic
            .cancel_scheduled(UserId(r.user_id), MessageId(r.msg_id))
            .await
            .map_err(st)?;
        Ok(Response::new(pb::CancelScheduledResponse {}))
    }

    async fn list_scheduled(
        &self,
        request: Request<pb::ListScheduledRequest>,
    ) -> Res<pb::ListScheduledResponse> {
        let r = request.into_inner();
        let scheduled = self
            .logic
            .scheduled(UserId(r.user_id))
            .await
            .map_err(st)?
            .into_iter()
            .map(scheduled_to_pb)
            .collect::<Result<Vec<_>, _>>()
            .map_err(st)?;
        Ok(Response::new(pb::ListScheduledResponse { scheduled }))
    }

    async fn execute(&self, request: Request<pb::ExecuteRequest>) -> Res<pb::ExecuteResponse> {
        let r = request.into_inner();
        let command: im_core::logic::Command =
            serde_json::from_str(&r.command_json).map_err(|e| {
                st(im_core::Error::InvalidArgument(format!(
                    "malformed command: {e}"
                )))
            })?;
        let reply = self
            .logic
            .execute(UserId(r.actor), command)
            .await
            .map_err(st)?;
        let reply_json = serde_json::to_string(&reply)
            .map_err(|e| st(im_core::Error::Internal(format!("encode reply: {e}"))))?;
        Ok(Response::new(pb::ExecuteResponse { reply_json }))
    }
}
