//! Generates code for a schema into a directory: `cargo run -p fluxon-codegen --example gen --
//! OUT_DIR INCLUDE_DIR FILE.proto...` (a stand-in for `fluxon gen`).

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(out), Some(include)) = (args.next(), args.next()) else {
        eprintln!("usage: gen OUT_DIR INCLUDE_DIR FILE.proto...");
        std::process::exit(2);
    };
    let protos: Vec<String> = args.collect();
    match fluxon_codegen::generate_to_dir(&protos, &[include], &out) {
        Ok(g) => {
            for f in g.rust.iter().chain(&g.sql) {
                println!("{out}/{}", f.name);
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
