//! gRPC between the layers: LogicRpc and ConnectRpc (tonic, generated from
//! `proto/im/v1/*.proto` by `protox` at build time, no `protoc` needed).

/// The generated protobuf messages and tonic stubs of package `im.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod pb {
    tonic::include_proto!("im.v1");
}

pub mod status;
