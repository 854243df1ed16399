//! The ConnectRpc server: a node's [`Hub`] behind gRPC, so Task workers in
//! other processes can push batches to its sessions.
//!
//! Internal and trusted, like LogicRpc: never expose it publicly.

use std::future::Future;
use std::sync::Arc;

use im_core::connect::Hub;
use im_core::id::SessionId;
use im_core::ports::{PushBatch, PushItem};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use super::pb;
use super::pb::connect_rpc_server::{self, ConnectRpc};
use super::MAX_MESSAGE_SIZE;

/// The tonic service of [`ConnectRpcServer`], ready for `Server::add_service`.
pub type ConnectRpcService = connect_rpc_server::ConnectRpcServer<ConnectRpcServer>;

/// Serves one node's hub as ConnectRpc.
#[derive(Debug, Clone)]
pub struct ConnectRpcServer {
    hub: Arc<Hub>,
}

impl ConnectRpcServer {
    /// Wraps a hub.
    pub fn new(hub: Arc<Hub>) -> Self {
        ConnectRpcServer { hub }
    }

    /// The tonic service with this crate's message size limits (16 MiB push batches).
    pub fn into_service(self) -> ConnectRpcService {
        connect_rpc_server::ConnectRpcServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// Serves ConnectRpc alone on `listener` until `shutdown` resolves.
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

    /// Whether a request naming `node` is meant for this hub (empty: any).
    fn is_mine(&self, node: &str) -> bool {
        node.is_empty() || node == self.hub.node().as_str()
    }
}

fn sessions(ids: Vec<u64>) -> Vec<SessionId> {
    ids.into_iter().map(SessionId).collect()
}

#[tonic::async_trait]
impl ConnectRpc for ConnectRpcServer {
    async fn push(
        &self,
        request: Request<pb::PushRequest>,
    ) -> Result<Response<pb::PushResponse>, Status> {
        let r = request.into_inner();
        if !self.is_mine(&r.node) {
            // The address now belongs to another node: none of the caller's
            // sessions are here, so all of their routes are stale.
            let mut gone: Vec<u64> = r.items.into_iter().flat_map(|i| i.sessions).collect();
            gone.sort_unstable();
            gone.dedup();
            return Ok(Response::new(pb::PushResponse { delivered: 0, gone }));
        }
        let batch = PushBatch {
            items: r
                .items
                .into_iter()
                .map(|i| PushItem {
                    frame: i.frame,
                    sessions: sessions(i.sessions),
                })
                .collect(),
        };
        let report = self.hub.deliver(&batch);
        Ok(Response::new(pb::PushResponse {
            delivered: report.delivered,
            gone: report.gone.into_iter().map(|s| s.0).collect(),
        }))
    }

    async fn kick(
        &self,
        request: Request<pb::KickRequest>,
    ) -> Result<Response<pb::KickResponse>, Status> {
        let r = request.into_inner();
        let kicked = self.is_mine(&r.node) && self.hub.kick(SessionId(r.session), &r.reason);
        Ok(Response::new(pb::KickResponse { kicked }))
    }

    async fn stats(
        &self,
        _request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        Ok(Response::new(pb::StatsResponse {
            sessions: self.hub.session_count() as u64,
            node: self.hub.node().as_str().to_owned(),
        }))
    }
}
