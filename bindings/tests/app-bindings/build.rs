//! Generates the school schema's messages, client stubs and uniffi glue (for the library) and its server
//! routes (for the tests' in-process server, in `OUT_DIR/server`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    fluxon_codegen::configure()
        .build_server(false)
        .build_client(true)
        .build_models(false)
        .build_uniffi(true)
        .compile(&["proto/school.proto"], &["proto"])?;
    fluxon_codegen::configure()
        .build_server(true)
        .build_client(false)
        .build_models(false)
        .out_dir(out.join("server"))
        .compile(&["proto/school.proto"], &["proto"])?;
    Ok(())
}
