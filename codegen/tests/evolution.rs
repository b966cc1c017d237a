//! Changing a model changes the generated SQL and metadata exactly where expected (the
//! database layer turns such differences into migrations).

use std::path::Path;

use fluxon_codegen::Generated;
use fluxon_db::schema::{ColumnMeta, FieldType};

const ADDED: &str =
    "  optional string phone = 5 [(fluxon.field) = { max_length: 20, index: true }];\n";

fn university() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/university/university.proto");
    std::fs::read_to_string(path).unwrap()
}

fn generate(src: &str) -> Generated {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("university.proto"), src).unwrap();
    fluxon_codegen::configure()
        .generate(&[dir.path().join("university.proto")], &[dir.path()])
        .unwrap()
}

/// The university schema with `phone` added as the last field of `User`.
fn with_phone() -> String {
    let src = university();
    let anchor =
        "google.protobuf.Timestamp created_at = 4 [(fluxon.field) = { auto_now_add: true }];\n";
    let at = src.find(anchor).expect("User.created_at") + anchor.len();
    format!("{}{ADDED}{}", &src[..at], &src[at..])
}

#[test]
fn adding_a_field_adds_a_column_and_nothing_else() {
    let before = generate(&university());
    let after = generate(&with_phone());

    // Metadata: User gains one column, with its field number and options; nothing else moves.
    let (old, new) = (&before.models["university"], &after.models["university"]);
    assert_eq!(old.len(), new.len());
    let mut expected = old[0].clone();
    expected.columns.push(
        ColumnMeta::new("phone", 5, FieldType::Text)
            .nullable()
            .max_length(20)
            .index(),
    );
    assert_eq!(new[0], expected);
    assert_eq!(old[1..], new[1..]);

    // SQL: one new column line in "user" and one new index; every other line unchanged.
    let old_sql: Vec<&str> = before.sql[0].contents.lines().collect();
    let new_sql: Vec<&str> = after.sql[0].contents.lines().collect();
    let added: Vec<&str> = new_sql
        .iter()
        .filter(|l| !old_sql.contains(l))
        .copied()
        .collect();
    let removed: Vec<&str> = old_sql
        .iter()
        .filter(|l| !new_sql.contains(l))
        .copied()
        .collect();
    assert_eq!(
        added,
        [
            "    \"created_at\" INTEGER NOT NULL,",
            "    \"phone\" TEXT CHECK (length(\"phone\") <= 20)",
            "CREATE INDEX \"idx_user_phone\" ON \"user\" (\"phone\");",
        ]
    );
    assert_eq!(removed, ["    \"created_at\" INTEGER NOT NULL"]);

    // Rust: the row type and its column constant.
    let rust = &after.rust[0].contents;
    assert!(rust.contains("pub phone: Option<String>,"), "{rust}");
    assert!(
        rust.contains("pub const PHONE: Column<Self, Option<String>> = Column::new(5, \"phone\");"),
        "{rust}"
    );
}
