//! gRPC between the layers: LogicRpc and ConnectRpc (tonic, generated from
//! `proto/im/v1/*.proto` by `protox` at build time, no `protoc` needed).
//!
//! - [`LogicRpcServer`] serves any [`im_core::logic::LogicApi`];
//!   [`LogicGrpcClient`] implements `LogicApi` over the network.
//! - [`ConnectRpcServer`] serves a node's [`im_core::connect::Hub`];
//!   [`GrpcPusher`] implements [`im_core::ports::Pusher`] by resolving
//!   connect nodes through discovery.
//! - [`status`] maps [`im_core::Error`] to `tonic::Status` and back.
//!
//! Both services are internal and trusted: they take user ids from the
//! request. Bind them to a private network, never expose them to clients.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::tls::{TlsError, TlsFiles};

/// The generated protobuf messages and tonic stubs of package `im.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod pb {
    tonic::include_proto!("im.v1");
}

mod client;
mod connect;
mod convert;
#[cfg(all(feature = "pool", feature = "http"))]
mod locator;
mod logic;
#[cfg(feature = "pool")]
mod pool;
pub mod status;

pub use client::{GrpcClientConfig, GrpcPusher, LogicGrpcClient, CONNECT_SERVICE};
pub use connect::{ConnectRpcServer, ConnectRpcService};
#[cfg(all(feature = "pool", feature = "http"))]
pub use locator::{DiscoveryLocator, SESSIONS_META, WS_URL_META};
pub use logic::{LogicRpcServer, LogicRpcService};
#[cfg(feature = "pool")]
pub use pool::{BreakerConfig, BreakerState, InstanceStatus, LogicPool, NO_INSTANCE};

/// Largest encoded message either side accepts or sends (push batches).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// HTTP/2 keepalive ping interval of servers and clients.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// How long a keepalive ping may go unanswered before the connection is dropped.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server builder with this crate's settings: HTTP/2 keepalive pings,
/// `TCP_NODELAY`. Add services with `add_service` (e.g. both
/// [`LogicRpcServer::into_service`] and [`ConnectRpcServer::into_service`]
/// on one port) and run it with [`serve_router`].
pub fn server_builder() -> Server {
    Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .http2_adaptive_window(Some(true))
}

/// [`server_builder`] serving TLS with the certificate and key in `tls`
/// (read once; restart the process to change them), or plain when `None`.
/// An unreadable or malformed file is an error naming it.
pub fn server_builder_tls(tls: Option<&TlsFiles>) -> Result<Server, TlsError> {
    let builder = server_builder();
    let Some(files) = tls else {
        return Ok(builder);
    };
    let (cert, key) = files.read_pem()?;
    builder
        .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
        .map_err(|e| TlsError::Config(format!("gRPC server TLS: {e}")))
}

/// Runs a router on an already-bound listener until `shutdown` resolves,
/// then drains in-flight calls. Accepted sockets get `TCP_NODELAY` and TCP
/// keepalive.
pub async fn serve_router(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> im_core::Result<()> {
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| im_core::Error::unavailable("gRPC server failed", e))
}
