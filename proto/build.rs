//! Compiles Fluxon's own `.proto` files with protox (no system `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/fluxon/wire.proto",
        "proto/fluxon/storage.proto",
        "proto/fluxon/cluster.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
