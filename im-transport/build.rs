//! With the `grpc` feature: compiles `proto/im/v1/*.proto` with `protox`
//! (pure Rust, no `protoc`) and generates the tonic/prost code into
//! `OUT_DIR`. Without it there is nothing to generate (and `protox` and
//! `tonic-prost-build` are not even compiled).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_GRPC").is_none() {
        return Ok(());
    }
    #[cfg(feature = "grpc")]
    generate()?;
    Ok(())
}

#[cfg(feature = "grpc")]
fn generate() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
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
