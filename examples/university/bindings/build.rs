//! Generates the university schema's messages, client stubs and uniffi glue from the example's own
//! `.proto` (no server side, no models).

fn main() -> Result<(), fluxon_codegen::Error> {
    fluxon_codegen::configure()
        .build_server(false)
        .build_client(true)
        .build_models(false)
        .build_uniffi(true)
        .compile(&["../proto/university.proto"], &["../proto"])?;
    Ok(())
}
