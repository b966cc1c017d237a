//! Generates the tonic peer's echo service, only when the `tonic` feature is on.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/echo.proto");
    #[cfg(feature = "tonic")]
    {
        let fds = protox::compile(["proto/echo.proto"], ["proto"])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(fds)?;
    }
    Ok(())
}
