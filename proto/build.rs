//! Generates the tonic/prost code with the vendored protoc, so no system protoc is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Messages that carry secrets get a hand-written Debug that prints `***` (src/lib.rs).
        .skip_debug([
            ".aiproxy.v1.EdgeResource",
            ".aiproxy.v1.ManagedIdentityToken",
            ".aiproxy.v1.SyncUpdate",
        ])
        .file_descriptor_set_path(out_dir.join("aiproxy_descriptor.bin"))
        .compile_protos(
            &["aiproxy/v1/catalog.proto", "aiproxy/v1/edge.proto"],
            &["."],
        )?;
    println!("cargo:rerun-if-changed=aiproxy");
    Ok(())
}
