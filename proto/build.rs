//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so no system `protoc`
//! is needed to build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/aiproxy/v1/config.proto",
        "proto/aiproxy/v1/logs.proto",
        "proto/aiproxy/v1/admin.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Decodes from `Bytes` split off the stream's buffer (src/codec.rs).
        .codec_path("crate::codec::BytesCodec")
        .bytes(".aiproxy.v1.SnapshotEnvelope.snapshot")
        .bytes(".aiproxy.v1.SnapshotEnvelope.delta")
        .compile_fds(fds)?;
    Ok(())
}
