//! Generates the campus application's messages, routes, clients, models and SQL.

fn main() -> Result<(), fluxon_codegen::Error> {
    fluxon_codegen::configure()
        .build_server(true)
        .build_client(true)
        .compile(&["proto/campus.proto"], &["proto"])?;
    Ok(())
}
