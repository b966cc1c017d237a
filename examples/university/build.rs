//! Generates the university schema's messages, routes, client stubs, reverse-call glue,
//! models and SQL.

fn main() -> Result<(), fluxon_codegen::Error> {
    fluxon_codegen::configure().compile(&["proto/university.proto"], &["proto"])?;
    Ok(())
}
