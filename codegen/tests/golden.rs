//! Golden tests: the SQL and Rust generated for the original's university and cloud models.
//! Run with `FLUXON_BLESS=1` to rewrite the expected files after an intended change.

use std::path::{Path, PathBuf};

use fluxon_codegen::Generated;

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn generate(name: &str) -> Generated {
    let dir = fixture_dir(name);
    fluxon_codegen::configure()
        .generate(&[dir.join(format!("{name}.proto"))], &[&dir])
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Compares `actual` with the file `expected`, or rewrites it under `FLUXON_BLESS=1`.
fn check_golden(expected: &Path, actual: &str) {
    if std::env::var_os("FLUXON_BLESS").is_some() {
        std::fs::write(expected, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(expected).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with FLUXON_BLESS=1 to create it)",
            expected.display()
        )
    });
    if want != actual {
        let first = want
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the generated output at line {} (run with FLUXON_BLESS=1 if intended)\nexpected: {:?}\nactual:   {:?}",
            expected.display(),
            first + 1,
            want.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

fn golden(name: &str) {
    let generated = generate(name);
    let dir = fixture_dir(name);
    let sql = generated.sql_file(name).expect("SQL file");
    assert_eq!(sql.name, format!("{name}.sql"));
    check_golden(&dir.join(format!("{name}.sql")), &sql.contents);
    let postgres = generated.postgres_sql_file(name).expect("PostgreSQL file");
    assert_eq!(postgres.name, format!("{name}.postgres.sql"));
    check_golden(
        &dir.join(format!("{name}.postgres.sql")),
        &postgres.contents,
    );
    let rust = generated.rust_file(name).expect("Rust file");
    assert_eq!(rust.name, format!("{name}.rs"));
    check_golden(&dir.join("expected.rs.txt"), &rust.contents);
}

#[test]
fn university_sql_and_rust() {
    golden("university");
}

#[test]
fn cloud_sql_and_rust() {
    golden("cloud");
}

/// A service and a reverse service, no models: the Rust only (codegen/README.md quotes it).
#[test]
fn reverse_service_rust() {
    let generated = generate("reverse");
    let rust = generated.rust_file("chat").expect("Rust file");
    check_golden(
        &fixture_dir("reverse").join("expected.rs.txt"),
        &rust.contents,
    );
}

/// Every shape of streaming rpc: server, client and bidirectional streams beside a unary rpc.
#[test]
fn streaming_service_rust() {
    let generated = generate("streams");
    let rust = generated.rust_file("ticker").expect("Rust file");
    check_golden(
        &fixture_dir("streams").join("expected.rs.txt"),
        &rust.contents,
    );
}

#[test]
fn university_metadata_is_the_database_layers_reference() {
    // fluxon_db::testing holds the university models written by hand exactly as codegen
    // should emit them: the generated metadata must be identical.
    let generated = generate("university");
    assert_eq!(generated.models["university"], fluxon_db::testing::models());
}

#[test]
fn output_is_byte_identical_for_identical_input() {
    let (a, b) = (generate("cloud"), generate("cloud"));
    assert_eq!(a.rust, b.rust);
    assert_eq!(a.sql, b.sql);
    assert_eq!(a.file_descriptor_set, b.file_descriptor_set);
}

#[test]
fn cloud_sql_runs_in_sqlite() {
    let generated = generate("cloud");
    let db = fluxon_db::Database::open_in_memory().unwrap();
    db.create_tables(&generated.models["cloud"]).unwrap();
}

#[test]
fn generate_to_dir_writes_rust_and_sql() {
    let out = tempfile::tempdir().unwrap();
    let dir = fixture_dir("cloud");
    let generated =
        fluxon_codegen::generate_to_dir(&[dir.join("cloud.proto")], &[&dir], out.path()).unwrap();
    let rust = std::fs::read_to_string(out.path().join("cloud.rs")).unwrap();
    let sql = std::fs::read_to_string(out.path().join("cloud.sql")).unwrap();
    assert_eq!(rust, generated.rust[0].contents);
    assert_eq!(sql, generated.sql[0].contents);
    assert!(rust.contains("pub struct FileMetadata"));
    assert!(sql.contains("CREATE TABLE \"file_metadata\""));
}

/// A client crate generates with the server and models off: its code names Fluxon's storage
/// messages through `fluxon_client` and nothing of the server, the database or `fluxon_proto`,
/// so it depends on `fluxon-client` and `prost` alone (the cloud example's schema embeds
/// `fluxon.storage.Grant` in its replies).
#[test]
fn a_client_only_package_names_only_the_client_runtime() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cloud/proto");
    let generated = fluxon_codegen::configure()
        .build_server(false)
        .build_models(false)
        .generate(&[dir.join("cloud.proto")], &[&dir])
        .unwrap();
    let rust = &generated.rust_file("cloud").expect("Rust file").contents;
    assert!(
        rust.contains("::fluxon_client::proto::storage::Grant"),
        "{rust}"
    );
    assert!(rust.contains("pub struct CloudClient"));
    for crate_name in ["fluxon_proto", "fluxon_server", "fluxon_db"] {
        assert!(!rust.contains(crate_name), "client code names {crate_name}");
    }
    // With the server side on, the same messages name the server runtime's re-export.
    let full = fluxon_codegen::configure()
        .generate(&[dir.join("cloud.proto")], &[&dir])
        .unwrap();
    let rust = &full.rust_file("cloud").expect("Rust file").contents;
    assert!(rust.contains("::fluxon_server::proto::storage::Grant"));
    assert!(!rust.contains("fluxon_proto"));
}
