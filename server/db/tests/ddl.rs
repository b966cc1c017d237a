//! Golden DDL for the university models and one test per bad-metadata case.

use fluxon_db::schema::{create_sql, ColumnMeta, FieldType, ModelMeta, OnDelete, SchemaError};

#[test]
fn university_ddl_matches_golden_file() {
    let sql = create_sql(&fluxon_db::testing::models()).expect("ddl");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/university.sql");
    if std::env::var_os("FLUXON_BLESS").is_some() {
        std::fs::write(path, &sql).expect("bless golden file");
    }
    let golden = std::fs::read_to_string(path).expect("golden file");
    assert_eq!(sql, golden, "if intended, rerun with FLUXON_BLESS=1");
    assert_eq!(
        sql,
        create_sql(&fluxon_db::testing::models()).expect("ddl"),
        "deterministic"
    );
    let conn = rusqlite::Connection::open_in_memory().expect("open");
    conn.execute_batch(&sql)
        .expect("golden DDL is valid SQLite");
}

#[test]
fn join_table_for_many_to_many_without_through() {
    let models = [
        ModelMeta::new("Tag", "tag").column(ColumnMeta::new("label", 1, FieldType::Text)),
        ModelMeta::new("Post", "post")
            .column(ColumnMeta::new("select", 1, FieldType::Text).default_value("it's"))
            .column(ColumnMeta::new("published", 2, FieldType::Bool).default_value(false))
            .many_to_many("tags", 3, "Tag", None),
    ];
    let sql = create_sql(&models).expect("ddl");
    assert!(
        sql.contains("\"select\" TEXT NOT NULL DEFAULT 'it''s'"),
        "{sql}"
    );
    assert!(sql.contains("CHECK (\"published\" IN (0, 1))"), "{sql}");
    assert!(sql.contains("CREATE TABLE \"post_tags\" (\n    \"post_id\" INTEGER NOT NULL,\n    \"tag_id\" INTEGER NOT NULL,\n    PRIMARY KEY (\"post_id\", \"tag_id\"),\n    FOREIGN KEY (\"post_id\") REFERENCES \"post\" (\"id\") ON DELETE CASCADE,"), "{sql}");
    rusqlite::Connection::open_in_memory()
        .expect("open")
        .execute_batch(&sql)
        .expect("valid");
}

fn err(models: &[ModelMeta]) -> SchemaError {
    match create_sql(models) {
        Err(e) => e,
        Ok(sql) => panic!("accepted bad schema:\n{sql}"),
    }
}

#[test]
fn bad_metadata_is_a_typed_error() {
    let a = || ModelMeta::new("A", "a").column(ColumnMeta::new("x", 1, FieldType::Text));
    assert!(matches!(
        err(&[a().column(ColumnMeta::new("f", 2, FieldType::Integer).foreign_key("Nope", OnDelete::Cascade))]),
        SchemaError::UnknownModel { target, .. } if target == "Nope"
    ));
    assert!(matches!(
        err(&[a()
            .column(ColumnMeta::new("p", 2, FieldType::Integer).primary_key())
            .column(ColumnMeta::new("q", 3, FieldType::Integer).primary_key())]),
        SchemaError::MultiplePrimaryKeys(m) if m == "A"
    ));
    assert!(matches!(
        err(&[a().column(ColumnMeta::new("n", 2, FieldType::Integer).max_length(3))]),
        SchemaError::BadColumn { column, .. } if column == "n"
    ));
    assert!(matches!(
        err(&[a(), ModelMeta::new("B", "a")]),
        SchemaError::DuplicateTable(t) if t == "a"
    ));
    assert!(matches!(err(&[a(), a()]), SchemaError::DuplicateModel(_)));
    assert!(matches!(
        err(&[a().column(ColumnMeta::new("y", 1, FieldType::Text))]),
        SchemaError::DuplicateFieldNumber { number: 1, .. }
    ));
    assert!(matches!(
        err(&[a().column(ColumnMeta::new("x", 2, FieldType::Text))]),
        SchemaError::DuplicateColumn { .. }
    ));
    assert!(matches!(
        err(&[a().column(
            ColumnMeta::new("f", 2, FieldType::Integer).foreign_key("A", OnDelete::SetNull)
        )]),
        SchemaError::BadColumn { .. }
    ));
    assert!(matches!(
        err(&[a().authorized_user()]),
        SchemaError::AuthorizedUserPassword(_)
    ));
    assert!(matches!(
        err(&[a().index(&["missing"], true)]),
        SchemaError::UnknownIndexColumn { .. }
    ));
    assert!(matches!(
        err(&[ModelMeta::new("S", "sqlite_x")]),
        SchemaError::InvalidName { .. }
    ));
    let through_without_fks = [
        a().many_to_many("bs", 5, "B", Some("AB")),
        ModelMeta::new("B", "b"),
        ModelMeta::new("AB", "ab").column(
            ColumnMeta::new("a", 1, FieldType::Integer).foreign_key("A", OnDelete::Cascade),
        ),
    ];
    assert!(matches!(
        err(&through_without_fks),
        SchemaError::BadThrough { missing, .. } if missing == "B"
    ));
}

#[test]
fn metadata_round_trips_through_json() {
    let models = fluxon_db::testing::models();
    let json = serde_json::to_string(&models).expect("serialize");
    let back: Vec<ModelMeta> = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, models);
}

#[test]
fn on_delete_actions_behave_as_declared() {
    let fk = |name: &str, on: OnDelete| {
        let c = ColumnMeta::new("parent", 1, FieldType::Integer);
        let c = match on {
            OnDelete::SetNull => c.nullable(),
            OnDelete::SetDefault => c.default_value(1),
            _ => c,
        };
        ModelMeta::new(name, name.to_lowercase()).column(c.foreign_key("Parent", on))
    };
    let models = [
        ModelMeta::new("Parent", "parent").column(ColumnMeta::new("n", 1, FieldType::Integer)),
        fk("Casc", OnDelete::Cascade),
        fk("Restr", OnDelete::Restrict),
        fk("Nul", OnDelete::SetNull),
        fk("Def", OnDelete::SetDefault),
    ];
    let db = fluxon_db::Database::open_in_memory().expect("open");
    db.create_tables(&models).expect("tables");
    let conn = db.handle().connection();
    conn.execute_batch(
        "INSERT INTO parent (id, n) VALUES (1, 1), (2, 2), (3, 3);
         INSERT INTO casc (parent) VALUES (2); INSERT INTO nul (parent) VALUES (2);
         INSERT INTO def (parent) VALUES (2); INSERT INTO restr (parent) VALUES (3);",
    )
    .expect("rows");
    conn.execute("DELETE FROM parent WHERE id = 2", [])
        .expect("delete");
    let one = |sql: &str| -> Option<i64> { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(one("SELECT count(*) FROM casc"), Some(0));
    assert_eq!(one("SELECT parent FROM nul"), None);
    assert_eq!(one("SELECT parent FROM def"), Some(1));
    let restricted: fluxon_db::Error = conn
        .execute("DELETE FROM parent WHERE id = 3", [])
        .expect_err("restrict")
        .into();
    assert_eq!(
        restricted.kind(),
        fluxon_db::ErrorKind::FailedPrecondition,
        "{restricted:?}"
    );
}
