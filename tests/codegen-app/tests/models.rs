//! The generated model code of the golden fixtures, compiled and used against SQLite.

use fluxon_codegen_app::cloud::models::{self as cloud, Directory, File, FileMetadata, Owner};
use fluxon_codegen_app::university::models as university;
use fluxon_db::{Database, HashParams, Password};

#[test]
fn university_models_are_the_database_layers_reference() {
    assert_eq!(university::all(), fluxon_db::testing::models());
}

#[test]
fn cloud_models_round_trip_relations_and_cascades() {
    let db = Database::open_in_memory()
        .unwrap()
        .with_hash_params(HashParams {
            m_cost: 8,
            t_cost: 1,
            p_cost: 1,
        });
    db.create_tables(&cloud::all()).unwrap();
    let owner = db
        .insert(&Owner {
            username: "ada".into(),
            password: Password::new("pw"),
            ..Owner::default()
        })
        .unwrap();
    let friend = db
        .insert(&Owner {
            username: "bob".into(),
            password: Password::new("pw2"),
            ..Owner::default()
        })
        .unwrap();
    let root = db
        .insert(&Directory {
            owner,
            parent: None,
            name: "/".into(),
            ..Directory::default()
        })
        .unwrap();
    let docs = db
        .insert(&Directory {
            owner,
            parent: Some(root),
            name: "docs".into(),
            ..Directory::default()
        })
        .unwrap();
    let file = db
        .insert(&File {
            owner,
            directory: docs,
            name: "a.txt".into(),
            size: 3,
            sha256: vec![1, 2, 3],
            ..File::default()
        })
        .unwrap();
    db.insert(&FileMetadata {
        file,
        mime_type: "text/plain".into(),
        width: None,
        height: None,
        shared: true,
    })
    .unwrap();
    db.link(File::SHARED_WITH, file, friend).unwrap();

    let children = db
        .select::<Directory>()
        .filter(Directory::PARENT.eq(root))
        .fetch()
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].name, "docs");
    let stored = db.get::<File>(file).unwrap().unwrap();
    assert_eq!(stored.sha256, [1, 2, 3]);
    assert!(stored.created_at.as_micros() > 0, "auto_now_add set");
    let shared: Vec<Owner> = db.linked(File::SHARED_WITH, file).unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].username, "bob");
    assert_eq!(shared[0].password, Password::NotLoaded);
    let meta = db.get::<FileMetadata>(file).unwrap().unwrap();
    assert!(meta.shared);
    assert_eq!(meta.width, None);

    // Deleting the root directory cascades through the self-reference to the file and its
    // metadata and links.
    assert_eq!(db.delete_by_id::<Directory>(root).unwrap(), 1);
    assert_eq!(db.select::<Directory>().count().unwrap(), 0);
    assert_eq!(db.select::<File>().count().unwrap(), 0);
    assert_eq!(db.select::<FileMetadata>().count().unwrap(), 0);
    assert!(db
        .linked_from(File::SHARED_WITH, friend)
        .unwrap()
        .is_empty());
}
