//! The same operations through `AsyncDatabase`, plus 64 concurrent writers.

mod common;

use std::sync::Arc;

use common::{user, Place};
use fluxon_db::testing::{models, Course, Enrollment, Student, Teacher, User};
use fluxon_db::{AsyncDatabase, Date, Error, ErrorKind, Password};

async fn open(place: &Place) -> AsyncDatabase {
    let db = place.open_async(4).await;
    db.create_tables(&models()).await.expect("tables");
    db
}

async fn async_crud_relations_and_passwords(place: Place) {
    let db = open(&place).await;
    let t = db.insert(user("alice")).await.expect("insert");
    db.insert(Teacher {
        user: t,
        name: "Alice".into(),
        department: "CS".into(),
    })
    .await
    .expect("teacher");
    let c = db
        .insert(Course {
            name: "Databases".into(),
            code: "CS101".into(),
            teacher: t,
            ..Default::default()
        })
        .await
        .expect("course");
    let s = db.insert(user("bob")).await.expect("bob");
    db.insert(Student {
        user: s,
        name: "Bob".into(),
        birth_date: Date::new(2000, 1, 2).expect("date"),
    })
    .await
    .expect("student");

    let alice: User = db.get(t).await.expect("get").expect("row");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.password, Password::NotLoaded);
    let found = db
        .select::<User>()
        .filter(User::USERNAME.eq("bob") | (User::ID.eq(t) & User::EMAIL.like("alice%")))
        .order_by(User::ID.desc())
        .limit(10)
        .fetch()
        .await
        .expect("select");
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), [s, t]);
    assert_eq!(db.select::<User>().count().await.expect("count"), 2);
    assert!(db
        .select::<Course>()
        .filter(Course::TEACHER.eq(t))
        .exists()
        .await
        .expect("e"));
    assert_eq!(
        db.select::<User>()
            .filter(User::ID.eq(s))
            .first()
            .await
            .expect("first")
            .map(|u| u.username),
        Some("bob".to_owned())
    );

    db.link(Student::COURSES, s, c).await.expect("link");
    let mine = db.linked(Student::COURSES, s).await.expect("linked");
    assert_eq!(mine[0].code, "CS101");
    assert_eq!(
        db.linked_from(Student::COURSES, c).await.expect("rev")[0].user,
        s
    );
    assert_eq!(db.unlink(Student::COURSES, s, c).await.expect("unlink"), 1);

    assert_eq!(
        db.update::<Course>()
            .set(Course::CODE, "CS201")
            .filter(Course::ID.eq(c))
            .execute()
            .await
            .expect("update"),
        1
    );
    let mut course: Course = db.get(c).await.expect("g").expect("c");
    assert_eq!(course.code, "CS201");
    course.name = "DB II".into();
    assert_eq!(db.save(course).await.expect("save"), 1);

    let by_name = User::USERNAME.eq("bob");
    assert_eq!(
        db.verify_password::<User>(by_name.clone(), "pw-bob".into())
            .await
            .expect("v"),
        Some(s)
    );
    assert_eq!(
        db.verify_password::<User>(by_name.clone(), "nope".into())
            .await
            .expect("v"),
        None
    );
    db.set_password::<User>(s, "changed".into())
        .await
        .expect("set");
    assert_eq!(
        db.verify_password::<User>(by_name, "changed".into())
            .await
            .expect("v"),
        Some(s)
    );

    let dup = db.insert(user("bob")).await.expect_err("dup");
    assert_eq!(dup.kind(), ErrorKind::AlreadyExists);

    // Cascade: deleting alice removes her teacher row and course.
    assert_eq!(db.delete_by_id::<User>(t).await.expect("del"), 1);
    assert_eq!(db.select::<Course>().count().await.expect("c"), 0);
    assert_eq!(
        db.delete::<User>()
            .filter(User::ID.eq(s))
            .execute()
            .await
            .expect("del"),
        1
    );
    assert_eq!(db.select::<Student>().count().await.expect("c"), 0);
}

async fn async_transactions_commit_roll_back_and_survive_panics(place: Place) {
    let db = Arc::new(open(&place).await);
    let id = db
        .transaction(|tx| -> Result<i64, Error> {
            let id = tx.insert(&user("a"))?;
            tx.insert(&user("b"))?;
            Ok(id)
        })
        .await
        .expect("commit");
    assert!(id > 0);
    let err = db
        .transaction(|tx| -> Result<(), Error> {
            tx.insert(&user("c"))?;
            tx.insert(&user("a"))?;
            Ok(())
        })
        .await
        .expect_err("rollback");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(db.select::<User>().count().await.expect("c"), 2);

    let db2 = Arc::clone(&db);
    let joined = tokio::spawn(async move {
        db2.transaction(|tx| -> Result<(), Error> {
            tx.insert(&user("d")).expect("insert");
            panic!("boom inside transaction");
        })
        .await
    })
    .await;
    assert!(joined.is_err(), "panic propagated to the caller");
    assert_eq!(
        db.select::<User>().count().await.expect("c"),
        2,
        "rolled back"
    );
    // The pool still works after the panic.
    db.insert(user("e")).await.expect("insert after panic");
    assert_eq!(db.select::<User>().count().await.expect("c"), 3);
}

async fn sixty_four_concurrent_writers_lose_nothing(place: Place) {
    let db = Arc::new(open(&place).await);
    let owner = db.insert(user("owner")).await.expect("owner");
    db.insert(Teacher {
        user: owner,
        name: "T".into(),
        department: "D".into(),
    })
    .await
    .expect("teacher");
    let mut tasks = Vec::new();
    for task in 0..64 {
        let db = Arc::clone(&db);
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                db.insert(Course {
                    name: format!("c-{task}-{i}"),
                    code: format!("{task}/{i}"),
                    teacher: owner,
                    ..Default::default()
                })
                .await?;
                // Interleave reads with the writes.
                let _ = db
                    .select::<Course>()
                    .filter(Course::TEACHER.eq(owner))
                    .count()
                    .await?;
            }
            db.transaction(move |tx| -> Result<(), Error> {
                tx.update::<Course>()
                    .set(Course::NAME, format!("done-{task}"))
                    .filter(Course::CODE.eq(format!("{task}/0")))
                    .execute()?;
                Ok(())
            })
            .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("no error from any writer");
    }
    assert_eq!(db.select::<Course>().count().await.expect("count"), 64 * 20);
    assert_eq!(
        db.select::<Course>()
            .filter(Course::NAME.like("done-%"))
            .count()
            .await
            .expect("c"),
        64
    );
    assert_eq!(db.select::<Enrollment>().count().await.expect("c"), 0);
}

async fn async_schema_versions(place: Place) {
    use fluxon_db::migrate::{SaveOptions, SchemaDir};
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = SchemaDir::new(dir.path().join("schema"));
    let models = models();
    schema
        .save(&models, "initial", SaveOptions::default())
        .expect("save")
        .expect("written");
    let db = place.open_async(2).await;
    let refused = db
        .ensure_schema(&schema, &models, false)
        .await
        .expect_err("behind");
    assert_eq!(refused.kind(), ErrorKind::FailedPrecondition);
    assert_eq!(db.schema_status(&schema).await.expect("status").current, 0);
    assert_eq!(db.apply_schema(&schema, 1).await.expect("apply"), [1]);
    assert!(db
        .ensure_schema(&schema, &models, false)
        .await
        .expect("ok")
        .is_current());
    let id = db
        .insert(user("zed"))
        .await
        .expect("insert after migration");
    // Foreign keys are back on for pooled connections after the migration.
    let orphan = db
        .insert(Teacher {
            user: id + 100,
            name: "x".into(),
            department: "y".into(),
        })
        .await
        .expect_err("fk enforced");
    assert_eq!(orphan.kind(), ErrorKind::FailedPrecondition);
    assert_eq!(db.apply_schema(&schema, 0).await.expect("down"), [1]);
    assert_eq!(db.schema_status(&schema).await.expect("status").current, 0);
}

on_both_backends_async!(
    async_crud_relations_and_passwords,
    async_transactions_commit_roll_back_and_survive_panics,
    sixty_four_concurrent_writers_lose_nothing,
    async_schema_versions,
);

/// Dropped after `block_on` returned, outside any runtime (as a synchronous test or `main`
/// does): the connections close on the runtime it was opened in, without a panic.
#[test]
fn dropped_outside_its_runtime_it_closes_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("uni.db");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(async {
        let db = AsyncDatabase::open(&path, 2)
            .await
            .expect("open")
            .with_hash_params(common::cheap());
        db.create_tables(&models()).await.expect("tables");
        db.insert(user("ann")).await.expect("insert");
        db
    });
    drop(db);
    let again = fluxon_db::Database::open(&path).expect("reopen");
    assert_eq!(again.select::<User>().count().expect("count"), 1);
}
