//! Generates the streaming fixture of the code generator (every shape of streaming rpc), so
//! the end-to-end tests call generated stubs over QUIC.

fn main() -> Result<(), fluxon_codegen::Error> {
    fluxon_codegen::configure().compile(
        &["../codegen/tests/fixtures/streams/streams.proto"],
        &["../codegen/tests/fixtures/streams"],
    )?;
    Ok(())
}
