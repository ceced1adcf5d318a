//! Compiles proto/anju/v1 into Rust with tonic-prost-build and the vendored protoc,
//! and writes the file descriptor set that gRPC reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // No system protoc is required: the vendored one ships inside a crate. An explicit
    // PROTOC still wins, for platforms the vendored crate does not cover.
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        std::env::set_var("PROTOC", protoc);
    }
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "common",
        "resident",
        "caseworker",
        "manager",
        "eventlog",
        "admin",
    ]
    .map(|name| proto_root.join(format!("anju/v1/{name}.proto")));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("anju_v1_descriptor.bin"))
        .codec_path("crate::Codec")
        .compile_protos(&files, std::slice::from_ref(&proto_root))?;
    println!("cargo:rerun-if-changed={}", proto_root.display());
    Ok(())
}
