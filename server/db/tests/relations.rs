//! `linked` / `linked_from` over a generated join table and over a through model that can link
//! a pair twice (a through model with unique pairs is covered by `university_sync.rs`). Rows
//! come back once each, ordered by primary key, whatever order they were linked in.

mod common;

use std::sync::LazyLock;

use common::Place;

use fluxon_db::schema::{ColumnMeta, FieldType, ModelMeta, OnDelete};
use fluxon_db::{Arg, Database, Model, Relation, Result, RowReader, SqlValue};

/// A club; people join it through [`Membership`], which may record the same pair twice.
#[derive(Debug, Default, PartialEq)]
struct Club {
    id: i64,
    name: String,
}

/// A person, with tags through a generated join table and clubs through [`Membership`].
#[derive(Debug, Default, PartialEq)]
struct Person {
    id: i64,
    name: String,
}

/// A tag on people.
#[derive(Debug, Default, PartialEq)]
struct Tag {
    id: i64,
    label: String,
}

/// One membership period: the same person and club may appear in several (no unique index).
#[derive(Debug, Default, PartialEq)]
struct Membership {
    id: i64,
    person: i64,
    club: i64,
    year: i64,
}

impl Person {
    const TAGS: Relation<Self, Tag> = Relation::new("tags");
    const CLUBS: Relation<Self, Club> = Relation::through("clubs", Membership::meta);
}

/// `id` and one text column: the shape of Club and Tag (and Person, before its relations).
fn named_meta(name: &str, table: &str, field: &str) -> ModelMeta {
    ModelMeta::new(name, table).column(ColumnMeta::new(field, 1, FieldType::Text))
}

static CLUB: LazyLock<ModelMeta> =
    LazyLock::new(|| named_meta("Club", "club", "name").normalized());
static PERSON: LazyLock<ModelMeta> = LazyLock::new(|| {
    named_meta("Person", "person", "name")
        .many_to_many("tags", 2, "Tag", None)
        .many_to_many("clubs", 3, "Club", Some("Membership"))
        .normalized()
});
static TAG: LazyLock<ModelMeta> = LazyLock::new(|| named_meta("Tag", "tag", "label").normalized());
static MEMBERSHIP: LazyLock<ModelMeta> = LazyLock::new(|| {
    ModelMeta::new("Membership", "membership")
        .column(
            ColumnMeta::new("person", 1, FieldType::Integer)
                .foreign_key("Person", OnDelete::Cascade),
        )
        .column(
            ColumnMeta::new("club", 2, FieldType::Integer).foreign_key("Club", OnDelete::Cascade),
        )
        .column(ColumnMeta::new("year", 3, FieldType::Integer))
        .normalized()
});

/// `id` and one text column: the shape of Club, Person and Tag.
macro_rules! named_model {
    ($ty:ident, $meta:ident, $field:ident) => {
        impl Model for $ty {
            fn meta() -> &'static ModelMeta {
                &$meta
            }
            fn from_row(row: &RowReader<'_, '_>) -> Result<Self> {
                Ok(Self {
                    id: row.get(0)?,
                    $field: row.get(1)?,
                })
            }
            fn values(&self) -> Vec<Arg<'_>> {
                vec![self.id.to_arg(), self.$field.to_arg()]
            }
        }
    };
}
named_model!(Club, CLUB, name);
named_model!(Person, PERSON, name);
named_model!(Tag, TAG, label);

impl Model for Membership {
    fn meta() -> &'static ModelMeta {
        &MEMBERSHIP
    }
    fn from_row(row: &RowReader<'_, '_>) -> Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            person: row.get(1)?,
            club: row.get(2)?,
            year: row.get(3)?,
        })
    }
    fn values(&self) -> Vec<Arg<'_>> {
        vec![
            self.id.to_arg(),
            self.person.to_arg(),
            self.club.to_arg(),
            self.year.to_arg(),
        ]
    }
}

fn open(place: &Place) -> Database {
    let db = place.open();
    let models = [
        CLUB.clone(),
        PERSON.clone(),
        TAG.clone(),
        MEMBERSHIP.clone(),
    ];
    db.create_tables(&models).expect("create tables");
    db
}

fn person(db: &Database, name: &str) -> i64 {
    let name = name.into();
    db.insert(&Person { id: 0, name }).expect("person")
}

fn club(db: &Database, name: &str) -> i64 {
    let name = name.into();
    db.insert(&Club { id: 0, name }).expect("club")
}

fn tag(db: &Database, label: &str) -> i64 {
    let label = label.into();
    db.insert(&Tag { id: 0, label }).expect("tag")
}

fn ids<M>(rows: &[M], id: impl Fn(&M) -> i64) -> Vec<i64> {
    rows.iter().map(id).collect()
}

fn a_generated_join_table_lists_links_by_primary_key(place: &Place) {
    let db = open(place);
    let ann = person(&db, "Ann");
    let ben = person(&db, "Ben");
    let tags: Vec<i64> = ["a", "b", "c"].iter().map(|l| tag(&db, l)).collect();
    // Linked out of order.
    for &t in [tags[2], tags[0], tags[1]].iter() {
        db.link(Person::TAGS, ann, t).expect("link");
    }
    db.link(Person::TAGS, ben, tags[1]).expect("link");

    let mine = db.linked(Person::TAGS, ann).expect("linked");
    assert_eq!(ids(&mine, |t| t.id), tags);
    assert_eq!(mine[0].label, "a");
    let tagged = db.linked_from(Person::TAGS, tags[1]).expect("linked_from");
    assert_eq!(ids(&tagged, |p| p.id), [ann, ben]);
    assert!(db.linked(Person::TAGS, 9999).expect("linked").is_empty());
}

fn a_through_model_that_links_a_pair_twice_yields_its_row_once(place: &Place) {
    let db = open(place);
    let ann = person(&db, "Ann");
    let chess = club(&db, "chess");
    let choir = club(&db, "choir");
    for (club, year) in [(choir, 2024), (chess, 2024), (choir, 2025)] {
        db.insert(&Membership {
            id: 0,
            person: ann,
            club,
            year,
        })
        .expect("membership");
    }
    let clubs = db.linked(Person::CLUBS, ann).expect("linked");
    assert_eq!(ids(&clubs, |c| c.id), [chess, choir]);
    let members = db.linked_from(Person::CLUBS, choir).expect("linked_from");
    assert_eq!(ids(&members, |p| p.id), [ann]);
}

on_both_backends!(
    a_generated_join_table_lists_links_by_primary_key,
    a_through_model_that_links_a_pair_twice_yields_its_row_once,
);
