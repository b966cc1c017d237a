//! Generates the campus application's messages, routes, clients, models and SQL.

fn main() -> Result<(), fluxon_codegen::Error> {
    fluxon_codegen::configure()
        .build_server(true)
        .build_client(true)
        .compile(&["proto/campus.proto"], &["proto"])?;
    // The golden fixtures of fluxon-codegen, compiled here so their generated code is built
    // and linted too.
    let fixtures = "../../codegen/tests/fixtures";
    for name in ["university", "cloud"] {
        fluxon_codegen::configure().compile(
            &[format!("{fixtures}/{name}/{name}.proto")],
            &[format!("{fixtures}/{name}")],
        )?;
    }
    Ok(())
}
