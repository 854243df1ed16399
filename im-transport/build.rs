//! Compiles `proto/im/v1/*.proto` with `protox` (pure Rust, no `protoc`) and
//! generates the tonic/prost code into `OUT_DIR`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let files = [
        root.join("im/v1/logic.proto"),
        root.join("im/v1/connect.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Frames stay `bytes::Bytes`: decoded without a copy per session.
        .bytes(".im.v1.PushItem.frame")
        .compile_fds(fds)?;
    Ok(())
}
