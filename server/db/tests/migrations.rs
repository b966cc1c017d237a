//! The schema-version chain: save, apply up and down with data intact, renames by field
//! number, destructive flag, checksums, and the server's version check.

mod common;

use fluxon_db::migrate::{self, SaveOptions, SchemaDir};
use fluxon_db::schema::{ColumnMeta, Dialect, FieldType, ModelMeta, OnDelete};
use fluxon_db::{Database, ErrorKind};

fn author(extra: &[ColumnMeta]) -> ModelMeta {
    let mut m =
        ModelMeta::new("Author", "author").column(ColumnMeta::new("name", 1, FieldType::Text));
    for c in extra {
        m = m.column(c.clone());
    }
    m
}

fn post(title: &str) -> ModelMeta {
    ModelMeta::new("Post", "post")
        .column(ColumnMeta::new(title, 1, FieldType::Text).max_length(200))
        .column(
            ColumnMeta::new("author", 2, FieldType::Integer)
                .foreign_key("Author", OnDelete::Cascade),
        )
}

fn bio() -> ColumnMeta {
    ColumnMeta::new("bio", 2, FieldType::Text).nullable()
}

fn email() -> ColumnMeta {
    ColumnMeta::new("email", 3, FieldType::Text)
        .nullable()
        .unique()
}

fn tag() -> ModelMeta {
    ModelMeta::new("Tag", "tag").column(ColumnMeta::new("label", 1, FieldType::Text).unique())
}

fn v1() -> Vec<ModelMeta> {
    vec![author(&[]), post("title")]
}
fn v2() -> Vec<ModelMeta> {
    vec![author(&[bio()]), post("title")]
}
fn v3() -> Vec<ModelMeta> {
    let p = post("title").many_to_many("tags", 3, "Tag", None);
    vec![author(&[bio(), email()]), p, tag()]
}
fn v4() -> Vec<ModelMeta> {
    let p = post("title").many_to_many("tags", 3, "Tag", None);
    vec![author(&[email()]), p, tag()]
}
fn v5() -> Vec<ModelMeta> {
    let p = post("headline").many_to_many("tags", 3, "Tag", None);
    vec![author(&[email()]), p, tag()]
}

fn q(db: &Database, sql: &str) -> Vec<String> {
    let conn = db.handle().connection().expect("a SQLite database");
    let mut st = conn.prepare(sql).expect("prepare");
    let n = st.column_count();
    st.query_map([], |r| {
        let mut parts = Vec::new();
        for i in 0..n {
            let v: rusqlite::types::Value = r.get(i)?;
            parts.push(match v {
                rusqlite::types::Value::Null => "NULL".to_owned(),
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            });
        }
        Ok(parts.join("|"))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

fn exec(db: &Database, sql: &str) {
    db.handle()
        .connection()
        .expect("a SQLite database")
        .execute_batch(sql)
        .expect(sql);
}

fn save(dir: &SchemaDir, models: &[ModelMeta], name: &str) -> u32 {
    dir.save(models, name, SaveOptions::default())
        .expect("save")
        .expect("changes")
        .number
}

#[test]
fn chain_up_and_down_keeps_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SchemaDir::new(tmp.path().join("schema"));
    let db = Database::open(tmp.path().join("app.db")).expect("open");

    assert_eq!(save(&dir, &v1(), "initial"), 1);
    assert!(dir
        .save(&v1(), "again", SaveOptions::default())
        .expect("save")
        .is_none());
    assert_eq!(db.apply_schema(&dir, 1).expect("apply"), [1]);
    exec(&db, "INSERT INTO author (name) VALUES ('Ann'); INSERT INTO post (title, author) VALUES ('Hello', 1);");

    assert_eq!(save(&dir, &v2(), "author bio"), 2);
    assert_eq!(dir.versions().expect("v")[1].name, "author_bio");
    let up2 = std::fs::read_to_string(dir.path().join("0002_author_bio.up.sql")).expect("read");
    assert!(
        up2.contains("ALTER TABLE \"author\" ADD COLUMN \"bio\" TEXT;"),
        "{up2}"
    );
    db.apply_schema(&dir, 2).expect("apply 2");
    exec(&db, "UPDATE author SET bio = 'writer' WHERE id = 1;");

    assert_eq!(save(&dir, &v3(), "email and tags"), 3);
    let up3 = std::fs::read_to_string(dir.path().join("0003_email_and_tags.up.sql")).expect("read");
    assert!(
        up3.contains("_fluxon_new_author"),
        "a unique column needs a rebuild: {up3}"
    );
    db.apply_schema(&dir, 3).expect("apply 3");
    exec(&db, "UPDATE author SET email = 'ann@x' WHERE id = 1;");
    assert_eq!(
        q(&db, "SELECT name, bio, email FROM author"),
        ["Ann|writer|ann@x"]
    );
    assert_eq!(
        q(&db, "SELECT title, author FROM post"),
        ["Hello|1"],
        "child rows survive the parent's rebuild"
    );
    exec(&db, "INSERT INTO tag (label) VALUES ('rust'); INSERT INTO post_tags (post_id, tag_id) VALUES (1, 1);");

    let refused = dir
        .save(&v4(), "drop bio", SaveOptions::default())
        .expect_err("needs flag");
    assert!(
        refused.to_string().contains("drop column author.bio"),
        "{refused}"
    );
    assert_eq!(
        dir.versions().expect("v").len(),
        3,
        "nothing written without the flag"
    );
    let v = dir
        .save(
            &v4(),
            "drop bio",
            SaveOptions {
                allow_destructive: true,
            },
        )
        .expect("save")
        .expect("changes");
    assert_eq!(v.number, 4);
    db.apply_schema(&dir, 4).expect("apply 4");
    assert_eq!(q(&db, "SELECT name, email FROM author"), ["Ann|ann@x"]);

    assert_eq!(save(&dir, &v5(), "rename title"), 5);
    let up5 = std::fs::read_to_string(dir.path().join("0005_rename_title.up.sql")).expect("read");
    assert!(
        up5.contains("RENAME COLUMN \"title\" TO \"headline\""),
        "{up5}"
    );
    db.apply_schema(&dir, 5).expect("apply 5");
    assert_eq!(
        q(&db, "SELECT headline FROM post"),
        ["Hello"],
        "rename keeps data"
    );
    assert_eq!(q(&db, "SELECT post_id, tag_id FROM post_tags"), ["1|1"]);
    // The max_length CHECK follows the rename.
    let long = db
        .handle()
        .connection()
        .expect("a SQLite database")
        .execute(
            "INSERT INTO post (headline, author) VALUES (?1, 1)",
            [&"x".repeat(201)],
        )
        .expect_err("check");
    assert_eq!(
        fluxon_db::Error::from(long).kind(),
        ErrorKind::InvalidArgument
    );

    let st = db.schema_status(&dir).expect("status");
    assert_eq!((st.current, st.latest), (5, 5));
    db.check_schema(&dir, &v5()).expect("server check passes");

    // Back down to version 1: data of surviving columns intact.
    assert_eq!(db.apply_schema(&dir, 1).expect("down"), [5, 4, 3, 2]);
    assert_eq!(q(&db, "SELECT title, author FROM post"), ["Hello|1"]);
    assert_eq!(q(&db, "SELECT name FROM author"), ["Ann"]);
    assert!(q(
        &db,
        "SELECT name FROM sqlite_master WHERE name IN ('tag', 'post_tags')"
    )
    .is_empty());
    assert_eq!(migrate::current_version(&db.handle()).expect("v"), 1);
    // Foreign keys still enforced after the migrations.
    assert!(db
        .handle()
        .connection()
        .expect("a SQLite database")
        .execute("INSERT INTO post (title, author) VALUES ('x', 99)", [])
        .is_err());

    // And up again to the latest.
    assert_eq!(db.apply_schema(&dir, 5).expect("up"), [2, 3, 4, 5]);
    assert_eq!(q(&db, "SELECT headline FROM post"), ["Hello"]);
    // Cascade still works on rebuilt tables.
    exec(&db, "DELETE FROM author WHERE id = 1;");
    assert!(q(&db, "SELECT * FROM post").is_empty());
}

#[test]
fn edited_migration_is_reported_and_check_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SchemaDir::new(tmp.path().join("schema"));
    let db = Database::open(tmp.path().join("app.db")).expect("open");
    save(&dir, &v1(), "initial");
    save(&dir, &v2(), "more");

    let behind = db.check_schema(&dir, &v2()).expect_err("db at 0");
    assert_eq!(behind.kind(), ErrorKind::FailedPrecondition);
    assert!(
        behind
            .to_string()
            .contains("database is at schema version 0"),
        "{behind}"
    );
    let stale = db.check_schema(&dir, &v3()).expect_err("models not saved");
    assert!(
        stale
            .to_string()
            .contains("differ from the latest saved schema"),
        "{stale}"
    );

    db.ensure_schema(&dir, &v2(), true).expect("ensure applies");
    assert_eq!(db.schema_status(&dir).expect("s").current, 2);

    // Whitespace and comment edits do not count as edits...
    let up1 = dir.path().join("0001_initial.up.sql");
    let text = std::fs::read_to_string(&up1).expect("read");
    std::fs::write(
        &up1,
        format!("-- reviewed\n{}\n\n", text.replace("    ", "\t")),
    )
    .expect("write");
    assert!(db.schema_status(&dir).expect("s").edited.is_empty());
    // ...but a real change does.
    std::fs::write(&up1, text.replace("TEXT NOT NULL", "TEXT")).expect("write");
    let st = db.schema_status(&dir).expect("status");
    assert_eq!(st.edited, [1]);
    assert!(!st.is_current());
    let err = db.apply_schema(&dir, 0).expect_err("refuses");
    assert!(err.to_string().contains("edited"), "{err}");
    assert!(db.check_schema(&dir, &v2()).is_err());
}

/// A version whose SQL fails part-way leaves the database at the version before.
fn failed_migration_rolls_back_entirely(place: &common::Place) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SchemaDir::new(tmp.path().join("schema"));
    let db = place.open();
    save(&dir, &v1(), "initial");
    save(&dir, &v2(), "more");
    let file = match db.handle().dialect() {
        Dialect::Postgres => "0002_more.postgres.up.sql",
        _ => "0002_more.up.sql",
    };
    let up2 = dir.path().join(file);
    let text = std::fs::read_to_string(&up2).expect("read");
    std::fs::write(&up2, format!("{text}\nTHIS IS NOT SQL;\n")).expect("write");
    db.apply_schema(&dir, 1).expect("v1");
    let err = db.apply_schema(&dir, 2).expect_err("broken");
    assert!(
        err.to_string()
            .contains("version 2 (more) failed, rolled back"),
        "{err}"
    );
    assert_eq!(db.schema_status(&dir).expect("s").current, 1);
    db.handle()
        .execute_batch("SELECT name FROM author")
        .expect("version 1's table is there");
    assert!(
        db.handle().execute_batch("SELECT bio FROM author").is_err(),
        "the column version 2 added before failing is not"
    );
    assert!(db.apply_schema(&dir, 9).is_err(), "unknown version");
}

#[test]
fn saved_files_are_deterministic() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    for tmp in [&a, &b] {
        let dir = SchemaDir::new(tmp.path());
        let mut models = fluxon_db::testing::models();
        save(&dir, &models, "initial");
        models.push(tag());
        save(&dir, &models, "add tag");
    }
    let mut names: Vec<_> = std::fs::read_dir(a.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 10, "{names:?}");
    for n in names {
        let x = std::fs::read(a.path().join(&n)).expect("a");
        let y = std::fs::read(b.path().join(&n)).expect("b");
        assert_eq!(x, y, "{n:?}");
    }
}

fn university_schema_applies_from_scratch(place: &common::Place) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SchemaDir::new(tmp.path().join("schema"));
    let models = fluxon_db::testing::models();
    save(&dir, &models, "initial");
    let db = place.open();
    let st = db.ensure_schema(&dir, &models, true).expect("ensure");
    assert!(st.is_current());
    let id = db.insert(&fluxon_db::testing::User {
        username: "u".into(),
        email: "e".into(),
        ..Default::default()
    });
    assert_eq!(
        id.expect_err("password required").kind(),
        ErrorKind::InvalidArgument
    );
    let (_, courses, student) = common::seed(&db);
    assert_eq!(courses.len(), 2);
    assert!(student > 0);
}

on_both_backends!(
    failed_migration_rolls_back_entirely,
    university_schema_applies_from_scratch
);

#[test]
fn indexes_and_constraints_are_added_and_dropped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SchemaDir::new(tmp.path());
    let db = Database::open(tmp.path().join("app.db")).expect("open");
    let base = || {
        ModelMeta::new("Item", "item")
            .column(ColumnMeta::new("sku", 1, FieldType::Text))
            .column(ColumnMeta::new("shelf", 2, FieldType::Integer))
    };
    save(&dir, &[base()], "initial");
    let indexed = ModelMeta::new("Item", "item")
        .column(ColumnMeta::new("sku", 1, FieldType::Text).index())
        .column(ColumnMeta::new("shelf", 2, FieldType::Integer))
        .index(&["sku", "shelf"], true);
    save(&dir, &[indexed], "indexes");
    let up = std::fs::read_to_string(tmp.path().join("0002_indexes.up.sql")).expect("read");
    assert!(up.contains("CREATE INDEX \"idx_item_sku\""), "{up}");
    assert!(
        up.contains("CREATE UNIQUE INDEX \"uq_item_sku_shelf\""),
        "{up}"
    );
    assert!(!up.contains("_fluxon_new_"), "no rebuild needed: {up}");
    save(&dir, &[base()], "drop indexes");
    let up3 = std::fs::read_to_string(tmp.path().join("0003_drop_indexes.up.sql")).expect("read");
    assert!(
        up3.contains("DROP INDEX IF EXISTS \"uq_item_sku_shelf\""),
        "{up3}"
    );

    db.apply_schema(&dir, 2).expect("apply 2");
    exec(&db, "INSERT INTO item (sku, shelf) VALUES ('a', 1);");
    assert!(
        db.handle()
            .connection()
            .expect("a SQLite database")
            .execute("INSERT INTO item (sku, shelf) VALUES ('a', 1)", [])
            .is_err(),
        "unique constraint active"
    );
    db.apply_schema(&dir, 3).expect("apply 3");
    exec(&db, "INSERT INTO item (sku, shelf) VALUES ('a', 1);");
    assert_eq!(q(&db, "SELECT count(*) FROM item"), ["2"]);
    let back = db
        .apply_schema(&dir, 2)
        .expect_err("down re-adds the unique index over duplicates");
    assert_eq!(back.kind(), ErrorKind::FailedPrecondition);
    assert_eq!(
        db.schema_status(&dir).expect("s").current,
        3,
        "failed reverse rolled back"
    );
}

/// A plain tokio-postgres client beside the database under test, to read what the
/// migrations did with SQL of the test's own.
struct Raw {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Raw {
    fn connect(url: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            client
        });
        Self { rt, client }
    }

    /// Rows as `a|b|c` text (every column cast to text in the query).
    fn q(&self, sql: &str) -> Vec<String> {
        let rows = self.rt.block_on(self.client.query(sql, &[])).expect(sql);
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.get::<_, Option<String>>(i)
                            .unwrap_or_else(|| "NULL".into())
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    fn exec(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.rt.block_on(self.client.batch_execute(sql))
    }
}

#[test]
fn postgres_chain_up_and_down_keeps_data() {
    let Some(place) = common::Place::postgres("postgres_chain_up_and_down_keeps_data") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SchemaDir::new(tmp.path().join("schema"));
    let db = Database::connect(place.location()).expect("connect");
    let raw = Raw::connect(place.location());

    save(&dir, &v1(), "initial");
    db.apply_schema(&dir, 1).expect("apply 1");
    raw.exec("INSERT INTO author (name) VALUES ('Ann'); INSERT INTO post (title, author) VALUES ('Hello', 1);")
        .expect("rows");
    save(&dir, &v2(), "author bio");
    let up2 = std::fs::read_to_string(dir.path().join("0002_author_bio.postgres.up.sql"))
        .expect("the PostgreSQL migration is written beside SQLite's");
    assert!(
        up2.contains("ALTER TABLE \"author\" ADD COLUMN \"bio\" TEXT;"),
        "{up2}"
    );
    db.apply_schema(&dir, 2).expect("apply 2");
    raw.exec("UPDATE author SET bio = 'writer' WHERE id = 1;")
        .expect("bio");
    save(&dir, &v3(), "email and tags");
    db.apply_schema(&dir, 3).expect("apply 3");
    raw.exec("UPDATE author SET email = 'ann@x' WHERE id = 1; INSERT INTO tag (label) VALUES ('rust'); INSERT INTO post_tags (post_id, tag_id) VALUES (1, 1);")
        .expect("v3 rows");
    assert_eq!(
        raw.q("SELECT name, bio, email FROM author"),
        ["Ann|writer|ann@x"]
    );
    dir.save(
        &v4(),
        "drop bio",
        SaveOptions {
            allow_destructive: true,
        },
    )
    .expect("save")
    .expect("changes");
    save(&dir, &v5(), "rename title");
    db.apply_schema(&dir, 5).expect("apply 4 and 5");
    assert_eq!(
        raw.q("SELECT headline, author::text FROM post"),
        ["Hello|1"]
    );
    assert_eq!(raw.q("SELECT name, email FROM author"), ["Ann|ann@x"]);
    assert!(
        raw.exec(&format!(
            "INSERT INTO post (headline, author) VALUES ('{}', 1)",
            "x".repeat(201)
        ))
        .is_err(),
        "the max_length CHECK follows the rename"
    );
    db.check_schema(&dir, &v5()).expect("server check passes");

    // Down to version 1 and up again: data of surviving columns intact, keys enforced.
    assert_eq!(db.apply_schema(&dir, 1).expect("down"), [5, 4, 3, 2]);
    assert_eq!(raw.q("SELECT title, author::text FROM post"), ["Hello|1"]);
    assert!(raw
        .q("SELECT tablename::text FROM pg_tables WHERE tablename IN ('tag', 'post_tags')")
        .is_empty());
    assert!(raw
        .exec("INSERT INTO post (title, author) VALUES ('x', 99)")
        .is_err());
    assert_eq!(db.apply_schema(&dir, 5).expect("up"), [2, 3, 4, 5]);
    raw.exec("DELETE FROM author WHERE id = 1;")
        .expect("delete");
    assert!(raw.q("SELECT headline FROM post").is_empty(), "cascade");

    // A version that fails part-way leaves nothing behind.
    dir.save(
        &[author(&[email()]), post("headline"), tag()],
        "drop tags",
        SaveOptions {
            allow_destructive: true,
        },
    )
    .expect("save")
    .expect("changes");
    let up6 = dir.path().join("0006_drop_tags.postgres.up.sql");
    let text = std::fs::read_to_string(&up6).expect("read");
    std::fs::write(&up6, format!("{text}\nTHIS IS NOT SQL;\n")).expect("write");
    let err = db.apply_schema(&dir, 6).expect_err("broken");
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert_eq!(db.schema_status(&dir).expect("status").current, 5);
    assert_eq!(
        raw.q("SELECT tablename::text FROM pg_tables WHERE tablename = 'post_tags'"),
        ["post_tags"]
    );
}

#[test]
fn postgres_edited_migration_is_reported_and_indexes_follow_the_versions() {
    let Some(place) = common::Place::postgres("postgres_edited_migration") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SchemaDir::new(tmp.path());
    let db = Database::connect(place.location()).expect("connect");
    let raw = Raw::connect(place.location());
    let base = || {
        ModelMeta::new("Item", "item")
            .column(ColumnMeta::new("sku", 1, FieldType::Text))
            .column(ColumnMeta::new("shelf", 2, FieldType::Integer))
    };
    save(&dir, &[base()], "initial");
    let indexed = ModelMeta::new("Item", "item")
        .column(ColumnMeta::new("sku", 1, FieldType::Text).index())
        .column(ColumnMeta::new("shelf", 2, FieldType::Integer))
        .index(&["sku", "shelf"], true);
    save(&dir, std::slice::from_ref(&indexed), "indexes");

    let behind = db
        .check_schema(&dir, std::slice::from_ref(&indexed))
        .expect_err("db at 0");
    assert_eq!(behind.kind(), ErrorKind::FailedPrecondition);
    db.ensure_schema(&dir, std::slice::from_ref(&indexed), true)
        .expect("ensure applies both versions");
    raw.exec("INSERT INTO item (sku, shelf) VALUES ('a', 1);")
        .expect("row");
    assert!(
        raw.exec("INSERT INTO item (sku, shelf) VALUES ('a', 1);")
            .is_err(),
        "the unique index is active"
    );

    // Comments and whitespace in the PostgreSQL file are not edits; a real change is.
    let up1 = tmp.path().join("0001_initial.postgres.up.sql");
    let text = std::fs::read_to_string(&up1).expect("read");
    std::fs::write(
        &up1,
        format!("-- reviewed\n{}\n\n", text.replace("    ", "\t")),
    )
    .expect("write");
    assert!(db.schema_status(&dir).expect("status").edited.is_empty());
    std::fs::write(&up1, text.replace("TEXT NOT NULL", "TEXT")).expect("write");
    let st = db.schema_status(&dir).expect("status");
    assert_eq!(st.edited, [1]);
    let err = db.apply_schema(&dir, 1).expect_err("refuses");
    assert!(err.to_string().contains("edited"), "{err}");
    std::fs::write(&up1, &text).expect("restore");

    // Down to version 1 drops the indexes; up again fails on the duplicate the unique index
    // would refuse, and leaves the database at version 1.
    assert_eq!(db.apply_schema(&dir, 1).expect("down"), [2]);
    raw.exec("INSERT INTO item (sku, shelf) VALUES ('a', 1);")
        .expect("a duplicate without the unique index");
    let refused = db.apply_schema(&dir, 2).expect_err("duplicate rows");
    assert!(refused.to_string().contains("rolled back"), "{refused}");
    assert_eq!(db.schema_status(&dir).expect("status").current, 1);
    assert_eq!(raw.q("SELECT count(*)::text FROM item"), ["2"]);
}

/// The shape of a PostgreSQL database as its catalog tells it: columns (type, nullability,
/// default, identity), constraints (name and definition) and indexes (name and definition).
fn catalog(raw: &Raw) -> Vec<String> {
    let mut out = raw.q(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text, \
                coalesce(column_default::text, ''), is_identity::text \
         FROM information_schema.columns WHERE table_schema = 'public' \
         ORDER BY table_name, ordinal_position",
    );
    out.extend(raw.q(
        "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
    ));
    out.extend(raw.q(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public' \
         ORDER BY 1",
    ));
    out.extend(
        raw.q("SELECT sequencename::text FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1"),
    );
    out
}

/// [`catalog`] without Fluxon's own history table.
fn app_catalog(raw: &Raw) -> Vec<String> {
    catalog(raw)
        .into_iter()
        .filter(|l| !l.starts_with("_fluxon_schema_history"))
        .collect()
}

/// The catalog of a fresh database created straight at `models`.
fn fresh_catalog(models: &[ModelMeta], test: &str) -> Vec<String> {
    let place = common::Place::postgres(test).expect("the server is there");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SchemaDir::new(tmp.path());
    save(&dir, models, "fresh");
    let db = Database::connect(place.location()).expect("connect");
    db.apply_schema(&dir, 1).expect("apply");
    let raw = Raw::connect(place.location());
    raw.exec("DROP TABLE _fluxon_schema_history")
        .expect("drop history");
    catalog(&raw)
}

#[test]
fn postgres_rebuilds_tables_whose_columns_or_constraints_change() {
    let Some(place) = common::Place::postgres("postgres_rebuilds") else {
        return;
    };
    let author = |v2: bool| {
        let age = ColumnMeta::new(
            "age",
            2,
            if v2 {
                FieldType::Text
            } else {
                FieldType::Integer
            },
        )
        .nullable();
        let nickname = ColumnMeta::new("nickname", 3, FieldType::Text);
        let name = ColumnMeta::new("name", 1, FieldType::Text);
        ModelMeta::new("Author", "author")
            .column(if v2 { name.unique() } else { name })
            .column(age)
            .column(if v2 { nickname } else { nickname.nullable() })
            .column(
                ColumnMeta::new("mentor", 4, FieldType::Integer)
                    .nullable()
                    .foreign_key("Author", OnDelete::SetNull),
            )
    };
    let post = |v3: bool| {
        ModelMeta::new("Post", "post")
            .column(
                ColumnMeta::new("title", 1, FieldType::Text).max_length(if v3 { 100 } else { 200 }),
            )
            .column(
                ColumnMeta::new("author", 2, FieldType::Integer).foreign_key(
                    "Author",
                    if v3 {
                        OnDelete::Restrict
                    } else {
                        OnDelete::Cascade
                    },
                ),
            )
            .many_to_many("tags", 3, "Tag", None)
    };
    let v1 = vec![author(false), post(false), tag()];
    let v2 = vec![author(true), post(false), tag()];
    let v3 = vec![author(true), post(true), tag()];
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SchemaDir::new(tmp.path());
    let db = Database::connect(place.location()).expect("connect");
    let raw = Raw::connect(place.location());
    save(&dir, &v1, "initial");
    db.apply_schema(&dir, 1).expect("apply 1");
    raw.exec(
        "INSERT INTO author (name, age, nickname, mentor) VALUES ('Ann', 42, NULL, NULL), ('Bob', NULL, 'bo', 1);
         INSERT INTO post (title, author) VALUES ('Hello', 1), ('Hi', 2);
         INSERT INTO tag (label) VALUES ('rust');
         INSERT INTO post_tags (post_id, tag_id) VALUES (1, 1), (2, 1);",
    )
    .expect("v1 rows");
    let fresh_v1 = fresh_catalog(&v1, "postgres_rebuilds_fresh_v1");

    // Version 2: a column's type, a column made NOT NULL, a column made unique.
    save(&dir, &v2, "author columns");
    let up2 = std::fs::read_to_string(tmp.path().join("0002_author_columns.postgres.up.sql"))
        .expect("the PostgreSQL migration is written");
    assert!(up2.contains("CAST(\"age\" AS TEXT)"), "{up2}");
    assert!(
        up2.contains("ALTER TABLE \"post\" ADD FOREIGN KEY (\"author\")"),
        "the post's key to the rebuilt author is put back: {up2}"
    );
    db.apply_schema(&dir, 2).expect("apply 2");
    assert_eq!(
        raw.q("SELECT id::text, name, coalesce(age, 'NULL'), nickname, coalesce(mentor::text, 'NULL') FROM author ORDER BY id"),
        ["1|Ann|42||NULL", "2|Bob|NULL|bo|1"],
        "age as text, a missing nickname filled with ''"
    );
    assert_eq!(
        app_catalog(&raw),
        fresh_catalog(&v2, "postgres_rebuilds_fresh_v2"),
        "a rebuilt table has the names and definitions of a fresh one"
    );
    raw.exec("INSERT INTO author (name, nickname) VALUES ('Cy', 'c');")
        .expect("the identity moved past the copied keys");
    assert_eq!(raw.q("SELECT max(id)::text FROM author"), ["3"]);
    assert!(
        raw.exec("INSERT INTO author (name, nickname) VALUES ('Cy', 'again');")
            .is_err(),
        "name is unique now"
    );
    assert!(
        raw.exec("INSERT INTO post (title, author) VALUES ('x', 99);")
            .is_err(),
        "post's key to author is enforced again"
    );
    raw.exec("DELETE FROM author WHERE id = 1;")
        .expect("delete Ann");
    assert_eq!(
        raw.q("SELECT coalesce(mentor::text, 'NULL') FROM author WHERE id = 2"),
        ["NULL"],
        "the self reference is set to NULL"
    );
    assert_eq!(raw.q("SELECT title FROM post"), ["Hi"], "cascade to posts");
    raw.exec(
        "INSERT INTO author (id, name, age, nickname) VALUES (1, 'Ann', '42', '');
              INSERT INTO post (id, title, author) VALUES (1, 'Hello', 1);
              INSERT INTO post_tags (post_id, tag_id) VALUES (1, 1);",
    )
    .expect("Ann back");

    // Version 3: the post's CHECK and its key's ON DELETE: the join table's key to post
    // is put back.
    save(&dir, &v3, "post rules");
    db.apply_schema(&dir, 3).expect("apply 3");
    assert_eq!(
        raw.q("SELECT post_id::text, tag_id::text FROM post_tags ORDER BY 1"),
        ["1|1", "2|1"]
    );
    assert!(
        raw.exec("DELETE FROM author WHERE id = 1;").is_err(),
        "ON DELETE RESTRICT now"
    );
    assert!(
        raw.exec("INSERT INTO post_tags (post_id, tag_id) VALUES (99, 1);")
            .is_err(),
        "the join table's key to post is enforced again"
    );
    assert_eq!(
        app_catalog(&raw),
        fresh_catalog(&v3, "postgres_rebuilds_fresh_v3")
    );

    // Down to 1: version 3 goes back; version 2 cannot, as a text age that is no number
    // does not fit an integer column: it fails whole and the database stays at 2.
    raw.exec("UPDATE author SET age = 'old' WHERE id = 2;")
        .expect("age");
    let err = db.apply_schema(&dir, 1).expect_err("'old' is no integer");
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert_eq!(db.schema_status(&dir).expect("status").current, 2);
    assert_eq!(raw.q("SELECT age FROM author WHERE id = 2"), ["old"]);
    raw.exec("UPDATE author SET age = '7' WHERE id = 2;")
        .expect("age");
    assert_eq!(db.apply_schema(&dir, 1).expect("down"), [2]);
    assert_eq!(
        raw.q("SELECT id::text, name, coalesce(age::text, 'NULL'), coalesce(nickname, 'NULL') FROM author ORDER BY id"),
        ["1|Ann|42|", "2|Bob|7|bo", "3|Cy|NULL|c"]
    );
    assert_eq!(app_catalog(&raw), fresh_v1);
    assert_eq!(db.apply_schema(&dir, 3).expect("up again"), [2, 3]);
}
