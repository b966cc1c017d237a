//! Defaults, auto_now and auto_now_add on a hand-written model of the generated shape.

mod common;

use std::sync::LazyLock;

use common::Place;

use fluxon_db::schema::{ColumnMeta, FieldType, ModelMeta};
use fluxon_db::{Arg, Column, Model, Result, RowReader, SqlValue, Timestamp};

#[derive(Debug, Clone, Default, PartialEq)]
struct Note {
    id: i64,
    title: Option<String>,
    views: Option<i64>,
    created: Timestamp,
    updated: Timestamp,
}

impl Note {
    const ID: Column<Self, i64> = Column::new(0, "id");
    const TITLE: Column<Self, Option<String>> = Column::new(1, "title");
    const VIEWS: Column<Self, Option<i64>> = Column::new(2, "views");
}

static NOTE_META: LazyLock<ModelMeta> = LazyLock::new(|| {
    ModelMeta::new("Note", "note")
        .column(
            ColumnMeta::new("title", 1, FieldType::Text)
                .nullable()
                .default_value("untitled"),
        )
        .column(
            ColumnMeta::new("views", 2, FieldType::Integer)
                .nullable()
                .default_value(7),
        )
        .column(ColumnMeta::new("created", 3, FieldType::Timestamp).auto_now_add())
        .column(ColumnMeta::new("updated", 4, FieldType::Timestamp).auto_now())
        .normalized()
});

impl Model for Note {
    fn meta() -> &'static ModelMeta {
        &NOTE_META
    }
    fn from_row(row: &RowReader<'_, '_>) -> Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            title: row.get(1)?,
            views: row.get(2)?,
            created: row.get(3)?,
            updated: row.get(4)?,
        })
    }
    fn values(&self) -> Vec<Arg<'_>> {
        vec![
            self.id.to_arg(),
            self.title.to_arg(),
            self.views.to_arg(),
            self.created.to_arg(),
            self.updated.to_arg(),
        ]
    }
}

fn pause() {
    std::thread::sleep(std::time::Duration::from_millis(3));
}

fn defaults_and_timestamps(place: &Place) {
    let db = place.open();
    db.create_tables(&[Note::meta().clone()]).expect("tables");
    let before = Timestamp::now();
    let id = db.insert(&Note::default()).expect("insert");
    let n: Note = db.get(id).expect("get").expect("row");
    assert_eq!(n.title.as_deref(), Some("untitled"));
    assert_eq!(n.views, Some(7));
    assert!(n.created >= before && n.updated >= before);
    assert_eq!(n.created, n.updated, "both set to the same now on insert");

    let explicit = db
        .insert(&Note {
            title: Some("mine".into()),
            views: Some(0),
            ..Default::default()
        })
        .expect("insert");
    let e: Note = db.get(explicit).expect("get").expect("row");
    assert_eq!((e.title.as_deref(), e.views), (Some("mine"), Some(0)));

    pause();
    let mut changed = n.clone();
    changed.views = Some(8);
    changed.created = Timestamp::from_micros(1);
    db.save(&changed).expect("save");
    let s: Note = db.get(id).expect("get").expect("row");
    assert_eq!(s.views, Some(8));
    assert_eq!(
        s.created, n.created,
        "auto_now_add is not rewritten by save"
    );
    assert!(s.updated > n.updated, "auto_now bumped by save");

    pause();
    db.update::<Note>()
        .set(Note::VIEWS, 9)
        .filter(Note::ID.eq(id))
        .execute()
        .expect("update");
    let u: Note = db.get(id).expect("get").expect("row");
    assert!(u.updated > s.updated, "auto_now bumped by update");
    assert_eq!(
        db.select::<Note>()
            .filter(Note::TITLE.is_null())
            .count()
            .expect("c"),
        0
    );
    assert_eq!(
        db.select::<Note>()
            .filter(Note::TITLE.eq("mine"))
            .count()
            .expect("c"),
        1
    );
}

on_both_backends!(defaults_and_timestamps);
