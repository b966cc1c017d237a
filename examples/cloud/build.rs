//! Generates the cloud schema's messages, routes, client stubs, models and SQL. Its replies
//! embed Fluxon's own `fluxon.storage.Grant` (`import "fluxon/storage.proto"`, served by
//! fluxon-codegen), so they carry the runtime's grant type and generic tools (`fluxon cloud`)
//! recognize them.

fn main() -> Result<(), fluxon_codegen::Error> {
    fluxon_codegen::configure().compile(&["proto/cloud.proto"], &["proto"])?;
    Ok(())
}
