//! Bad schemas: each mistake gets a compiler-style message naming file:line:column and a hint,
//! never a panic and never SQL.

use std::path::PathBuf;

use fluxon_codegen::Error;

/// A schema file `bad.proto` in a fresh directory.
struct Schema {
    dir: tempfile::TempDir,
    src: String,
}

impl Schema {
    fn new(body: &str) -> Self {
        let src = format!(
            "syntax = \"proto3\";\npackage bad;\nimport \"fluxon/options.proto\";\nimport \"google/protobuf/timestamp.proto\";\n{body}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.proto"), &src).unwrap();
        Self { dir, src }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("bad.proto")
    }

    fn generate(&self) -> Result<fluxon_codegen::Generated, Error> {
        fluxon_codegen::configure().generate(&[self.path()], &[self.dir.path()])
    }

    /// The error text, which must be a schema or parse error.
    fn error(&self) -> String {
        match self.generate() {
            Ok(_) => panic!("schema accepted:\n{}", self.src),
            Err(e) => {
                assert!(!e.diagnostics().is_empty(), "not a schema error: {e}");
                e.to_string()
            }
        }
    }

    /// `path:line:` of the first line containing `needle`.
    fn at(&self, needle: &str) -> String {
        let line = self
            .src
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in schema"));
        format!("{}:{}:", self.path().display(), line + 1)
    }
}

/// Asserts `err` points at the line of `needle`, says `what` and gives a hint.
fn assert_error(schema: &Schema, needle: &str, what: &str) {
    let err = schema.error();
    let at = schema.at(needle);
    assert!(err.starts_with(&at), "expected location {at} in:\n{err}");
    let column = err[at.len()..].split(':').next().unwrap_or("");
    assert!(
        column.parse::<u32>().is_ok(),
        "no column after {at} in:\n{err}"
    );
    assert!(err.contains(what), "expected {what:?} in:\n{err}");
    assert!(err.contains("= hint: "), "no hint in:\n{err}");
}

#[test]
fn unknown_foreign_key_target() {
    let s = Schema::new(
        r#"
message Teacher { option (fluxon.model) = {}; string name = 1; }
message Course {
  option (fluxon.model) = {};
  int64 teacher = 1 [(fluxon.field) = { foreign_key: "Techer" }];
}
"#,
    );
    assert_error(
        &s,
        "Techer",
        "foreign_key of field `teacher` names `Techer`, which is not a model",
    );
    assert!(s.error().contains("Course, Teacher") || s.error().contains("Teacher, Course"));
}

#[test]
fn max_length_on_a_non_string() {
    let s = Schema::new(
        r#"
message Item {
  option (fluxon.model) = {};
  int64 count = 1 [(fluxon.field) = { max_length: 10 }];
}
"#,
    );
    assert_error(
        &s,
        "count",
        "max_length on field `count` of type int64, which is not a string",
    );
}

#[test]
fn two_primary_keys() {
    let s = Schema::new(
        r#"
message Pair {
  option (fluxon.model) = {};
  int64 a = 1 [(fluxon.field) = { primary_key: true }];
  int64 b = 2 [(fluxon.field) = { primary_key: true }];
}
"#,
    );
    assert_error(
        &s,
        "int64 b",
        "model `Pair` has two primary keys: `a` and `b`",
    );
}

#[test]
fn through_model_lacking_the_two_foreign_keys() {
    let s = Schema::new(
        r#"
message Course { option (fluxon.model) = {}; string name = 1; }
message Student {
  option (fluxon.model) = {};
  repeated int64 courses = 1 [(fluxon.field) = { many_to_many: "Course", through: "Enrollment" }];
}
message Enrollment {
  option (fluxon.model) = {};
  int64 student = 1 [(fluxon.field) = { foreign_key: "Student" }];
  int64 grade = 2;
}
"#,
    );
    assert_error(
        &s,
        "repeated int64 courses",
        "through model `Enrollment` of `Student.courses` needs exactly one foreign key to `Student` and one to `Course` (has 1 and 0)",
    );
}

#[test]
fn required_self_reference_cannot_be_resolved() {
    let s = Schema::new(
        r#"
message Directory {
  option (fluxon.model) = {};
  string name = 1;
  int64 parent = 2 [(fluxon.field) = { foreign_key: "Directory", on_delete: CASCADE }];
}
"#,
    );
    assert_error(
        &s,
        "int64 parent",
        "foreign key `parent` of `Directory` refers to `Directory` itself and cannot be NULL",
    );
    assert!(s.error().contains("optional"));
}

#[test]
fn cycle_of_required_references_cannot_be_resolved() {
    let s = Schema::new(
        r#"
message Chicken {
  option (fluxon.model) = {};
  int64 egg = 1 [(fluxon.field) = { foreign_key: "Egg" }];
}
message Egg {
  option (fluxon.model) = {};
  int64 chicken = 1 [(fluxon.field) = { foreign_key: "Chicken" }];
}
"#,
    );
    assert_error(
        &s,
        "int64 egg",
        "closes a cycle of required references (Chicken -> Egg -> Chicken)",
    );
}

#[test]
fn nullable_self_reference_is_fine() {
    let s = Schema::new(
        r#"
message Directory {
  option (fluxon.model) = {};
  string name = 1;
  optional int64 parent = 2 [(fluxon.field) = { foreign_key: "Directory", on_delete: CASCADE }];
}
"#,
    );
    let sql = &s.generate().unwrap().sql[0].contents;
    assert!(sql.contains("\"parent\" INTEGER,"), "{sql}");
    assert!(
        sql.contains("REFERENCES \"directory\" (\"id\") ON DELETE CASCADE"),
        "{sql}"
    );
}

#[test]
fn reserved_sql_words_are_quoted_consistently() {
    // Decision: identifiers are always quoted, so SQL keywords are valid names.
    let s = Schema::new(
        r#"
message Order {
  option (fluxon.model) = { index: { columns: ["group", "select"] } };
  string select = 1;
  int64 group = 2;
  int64 from = 3 [(fluxon.field) = { foreign_key: "Order", on_delete: SET_NULL, nullable: true }];
}
"#,
    );
    let generated = s.generate().unwrap();
    let sql = &generated.sql[0].contents;
    assert!(sql.contains("CREATE TABLE \"order\" ("), "{sql}");
    assert!(sql.contains("\"select\" TEXT NOT NULL"), "{sql}");
    assert!(
        sql.contains(
            "CREATE INDEX \"idx_order_group_select\" ON \"order\" (\"group\", \"select\")"
        ),
        "{sql}"
    );
    // And SQLite accepts it.
    let db = fluxon_db::Database::open_in_memory().unwrap();
    db.create_tables(&generated.models["bad"]).unwrap();
}

#[test]
fn reserved_name_prefixes_are_rejected() {
    let s = Schema::new(
        r#"
message Stats {
  option (fluxon.model) = { table: "sqlite_stats" };
  int64 n = 1;
}
"#,
    );
    assert_error(
        &s,
        "sqlite_stats",
        "table name `sqlite_stats` uses a prefix reserved by SQLite or Fluxon",
    );
}

#[test]
fn field_types_that_cannot_be_stored() {
    let cases = [
        (
            "uint64 big = 1;",
            "uint64 cannot be stored: SQLite integers are signed 64-bit",
        ),
        (
            "Other nested = 1;",
            "a message field (`bad.Other`) cannot be stored in a column",
        ),
        (
            "map<string, int64> counts = 1;",
            "map field `counts` cannot be stored in a column",
        ),
        (
            "repeated string tags = 1;",
            "repeated field `tags` cannot be stored in a column",
        ),
        (
            "oneof kind { string a = 1; int64 b = 2; }",
            "field `a` of a oneof cannot be stored",
        ),
    ];
    for (field, what) in cases {
        let s = Schema::new(&format!(
            "message Other {{ string x = 1; }}\nmessage Thing {{\n  option (fluxon.model) = {{}};\n  {field}\n}}\n"
        ));
        assert_error(&s, field, what);
    }
}

#[test]
fn duplicate_table_names() {
    let s = Schema::new(
        r#"
message Person { option (fluxon.model) = { table: "people" }; string name = 1; }
message Human { option (fluxon.model) = { table: "people" }; string name = 1; }
"#,
    );
    assert_error(
        &s,
        "message Human",
        "models `Person` and `Human` both use table `people`",
    );
}

#[test]
fn set_null_on_a_required_foreign_key() {
    let s = Schema::new(
        r#"
message Owner { option (fluxon.model) = {}; string name = 1; }
message Pet {
  option (fluxon.model) = {};
  int64 owner = 1 [(fluxon.field) = { foreign_key: "Owner", on_delete: SET_NULL }];
}
"#,
    );
    assert_error(
        &s,
        "int64 owner",
        "foreign key `owner` uses on_delete SET_NULL but cannot be NULL",
    );
}

#[test]
fn foreign_key_type_must_match_the_primary_key() {
    let s = Schema::new(
        r#"
message Country {
  option (fluxon.model) = {};
  string code = 1 [(fluxon.field) = { primary_key: true }];
}
message City {
  option (fluxon.model) = {};
  int64 country = 1 [(fluxon.field) = { foreign_key: "Country" }];
}
"#,
    );
    assert_error(
        &s,
        "int64 country",
        "foreign key `country` is stored as Integer but the primary key of `Country` is Text",
    );
}

#[test]
fn unknown_index_column() {
    let s = Schema::new(
        r#"
message Thing {
  option (fluxon.model) = { unique: { columns: ["name", "colour"] } };
  string name = 1;
}
"#,
    );
    assert_error(
        &s,
        "colour",
        "unique of model `Thing` names `colour`, which is not one of its columns",
    );
}

#[test]
fn authorized_user_without_a_password() {
    let s = Schema::new(
        r#"
message Account {
  option (fluxon.model) = { authorized_user: true };
  string username = 1;
}
"#,
    );
    assert_error(
        &s,
        "authorized_user",
        "authorized user `Account` has 0 password fields",
    );
}

#[test]
fn streaming_methods_of_reverse_services_are_refused() {
    let s = Schema::new(
        r#"
message Ping { string text = 1; }
service Chat {
  option (fluxon.service) = { reverse: true };
  rpc Listen(Ping) returns (stream Ping);
}
"#,
    );
    assert_error(
        &s,
        "rpc Listen",
        "method `Listen` of reverse service `Chat` streams",
    );
}

#[test]
fn field_options_outside_a_model() {
    let s = Schema::new(
        r#"
message Plain { string name = 1 [(fluxon.field) = { unique: true }]; }
"#,
    );
    assert_error(
        &s,
        "string name",
        "field `name` has (fluxon.field) options but `Plain` is not a model",
    );
}

#[test]
fn every_mistake_is_reported_at_once() {
    let s = Schema::new(
        r#"
message A {
  option (fluxon.model) = {};
  int64 n = 1 [(fluxon.field) = { max_length: 3 }];
}
message B {
  option (fluxon.model) = {};
  int64 a = 1 [(fluxon.field) = { foreign_key: "Nope" }];
}
"#,
    );
    let err = s.generate().unwrap_err();
    assert_eq!(err.diagnostics().len(), 2, "{err}");
}

#[test]
fn parse_errors_have_a_position() {
    let s = Schema::new("message Broken {\n  string name = ;\n}\n");
    let err = s.error();
    assert!(err.starts_with(&s.at("string name = ;")), "{err}");
}

#[test]
fn using_options_without_the_import_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("noimport.proto"),
        "syntax = \"proto3\";\npackage x;\nmessage M {\n  option (fluxon.model) = {};\n}\n",
    )
    .unwrap();
    let err = fluxon_codegen::configure()
        .generate(&[dir.path().join("noimport.proto")], &[dir.path()])
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("noimport.proto:4:"), "{text}");
    assert!(text.contains("import \"fluxon/options.proto\""), "{text}");
}
