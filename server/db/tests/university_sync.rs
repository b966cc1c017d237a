//! Every operation of the synchronous `Database` on the university models.

mod common;

use common::{seed, user, Place};
use fluxon_db::testing::{Course, Enrollment, Student, Teacher, User};
use fluxon_db::{escape_like, Error, ErrorKind, Password};

fn insert_get_and_auto_fields(place: &Place) {
    let db = place.create();
    let (t, [c1, _], s) = seed(&db);
    assert_ne!(t, s);
    let alice: User = db.get(t).expect("get").expect("alice exists");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.email, "alice@uni.example");
    assert!(alice.created_at.as_micros() > 0, "auto_now_add set");
    assert_eq!(
        alice.password,
        Password::NotLoaded,
        "hash not selected by default"
    );
    let teacher: Teacher = db.get(t).expect("get").expect("teacher");
    assert_eq!(teacher.name, "Alice");
    let course: Course = db.get(c1).expect("get").expect("course");
    assert_eq!((course.code.as_str(), course.teacher), ("CS101", t));
    assert!(db.get::<User>(9999).expect("get").is_none());
    let student: Student = db.get(s).expect("get").expect("student");
    assert_eq!(student.birth_date.as_str(), "2001-05-17");
}

fn select_filter_order_limit_offset_columns_count_exists(place: &Place) {
    let db = place.create();
    for i in 0..10 {
        db.insert(&user(&format!("u{i}"))).expect("insert");
    }
    let rows = db
        .select::<User>()
        .filter(User::USERNAME.ne("u0") & User::ID.gt(3))
        .order_by(User::ID.desc())
        .limit(3)
        .offset(1)
        .fetch()
        .expect("fetch");
    let names: Vec<&str> = rows.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["u8", "u7", "u6"]);

    let nested = db
        .select::<User>()
        .filter(
            (User::USERNAME.eq("u1") | User::USERNAME.eq("u2"))
                & !(User::ID.eq(2) | User::EMAIL.like("%nomatch%")),
        )
        .fetch()
        .expect("nested");
    assert_eq!(nested.len(), 1);
    assert_eq!(nested[0].username, "u2");

    let some = db
        .select::<User>()
        .filter(User::USERNAME.is_in(["u3", "u5", "zz"]))
        .order_by(User::USERNAME.asc())
        .fetch()
        .expect("in");
    assert_eq!(some.iter().map(|u| u.id).collect::<Vec<_>>(), [4, 6]);
    assert_eq!(
        db.select::<User>()
            .filter(User::ID.le(3))
            .count()
            .expect("count"),
        3
    );
    assert_eq!(
        db.select::<User>()
            .filter(User::ID.lt(1))
            .count()
            .expect("c"),
        0
    );
    assert!(db
        .select::<User>()
        .filter(User::ID.ge(10))
        .exists()
        .expect("e"));
    assert!(!db
        .select::<User>()
        .filter(User::ID.ge(11))
        .exists()
        .expect("e"));
    assert_eq!(
        db.select::<User>()
            .filter(User::USERNAME.like("u%"))
            .count()
            .expect("like"),
        10
    );

    let only = db
        .select::<User>()
        .columns([User::ID.index(), User::USERNAME.index()])
        .filter(User::ID.eq(1))
        .first()
        .expect("first")
        .expect("row");
    assert_eq!(
        (only.id, only.username.as_str(), only.email.as_str()),
        (1, "u0", "")
    );

    let hashed = db
        .select::<User>()
        .columns([User::PASSWORD.index()])
        .filter(User::ID.eq(1))
        .first()
        .expect("first")
        .expect("row");
    let phc = hashed.password.phc().expect("explicitly selected hash");
    assert!(phc.starts_with("$argon2id$") && !phc.contains("pw-u0"));
}

fn null_handling_with_is_null(place: &Place) {
    let db = place.create();
    db.insert(&user("x")).expect("insert");
    assert_eq!(
        db.select::<User>()
            .filter(User::EMAIL.is_null())
            .count()
            .expect("c"),
        0
    );
    assert_eq!(
        db.select::<User>()
            .filter(User::EMAIL.is_not_null())
            .count()
            .expect("c"),
        1
    );
}

fn update_delete_and_save(place: &Place) {
    let db = place.create();
    let (t, [c1, c2], _) = seed(&db);
    let n = db
        .update::<Course>()
        .set(Course::NAME, "Advanced Databases")
        .filter(Course::ID.eq(c1))
        .execute()
        .expect("update");
    assert_eq!(n, 1);
    assert_eq!(
        db.get::<Course>(c1).expect("g").expect("c").name,
        "Advanced Databases"
    );
    let err = db
        .update::<Course>()
        .set(Course::NAME, "x")
        .execute()
        .expect_err("update without filter refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        db.update::<Course>()
            .set(Course::CODE, "Z")
            .all()
            .execute()
            .expect("all"),
        2
    );

    let mut course: Course = db.get(c2).expect("g").expect("c");
    course.name = "Saved".into();
    assert_eq!(db.save(&course).expect("save"), 1);
    assert_eq!(db.get::<Course>(c2).expect("g").expect("c").name, "Saved");

    let mut alice: User = db.get(t).expect("g").expect("u");
    alice.email = "new@uni.example".into();
    assert_eq!(db.save(&alice).expect("save keeps password"), 1);
    assert_eq!(
        db.verify_password::<User>(User::USERNAME.eq("alice"), "pw-alice")
            .expect("verify"),
        Some(t)
    );

    assert!(
        db.delete::<Course>().execute().is_err(),
        "delete needs a filter"
    );
    assert_eq!(
        db.delete::<Course>()
            .filter(Course::ID.eq(c1))
            .execute()
            .expect("delete"),
        1
    );
    assert_eq!(db.delete_by_id::<Course>(c2).expect("delete"), 1);
    assert_eq!(db.select::<Course>().count().expect("count"), 0);
}

fn cascade_delete_follows_relations(place: &Place) {
    let db = place.create();
    let (t, [c1, _], s) = seed(&db);
    db.link(Student::COURSES, s, c1).expect("enroll");
    assert_eq!(db.select::<Enrollment>().count().expect("c"), 1);
    // Deleting the teacher's user cascades: user -> teacher -> courses -> enrollments.
    assert_eq!(db.delete_by_id::<User>(t).expect("delete"), 1);
    assert!(db.get::<Teacher>(t).expect("g").is_none());
    assert_eq!(db.select::<Course>().count().expect("c"), 0);
    assert_eq!(db.select::<Enrollment>().count().expect("c"), 0);
    assert!(
        db.get::<Student>(s).expect("g").is_some(),
        "unrelated rows stay"
    );
}

fn relations_both_ways_and_many_to_many(place: &Place) {
    let db = place.create();
    let (t, [c1, c2], s) = seed(&db);
    // Foreign key forward: course -> teacher; backward: teacher -> courses.
    let course: Course = db.get(c1).expect("g").expect("c");
    let teacher: Teacher = db.get(course.teacher).expect("g").expect("t");
    assert_eq!(teacher.user, t);
    let taught = db
        .select::<Course>()
        .filter(Course::TEACHER.eq(teacher.user))
        .order_by(Course::ID.asc())
        .fetch()
        .expect("courses of teacher");
    assert_eq!(taught.iter().map(|c| c.id).collect::<Vec<_>>(), [c1, c2]);

    db.link(Student::COURSES, s, c1).expect("link");
    db.link(Student::COURSES, s, c2).expect("link");
    let dup = db
        .link(Student::COURSES, s, c2)
        .expect_err("unique enrollment");
    assert_eq!(dup.kind(), ErrorKind::AlreadyExists);
    let mine = db.linked(Student::COURSES, s).expect("linked");
    assert_eq!(
        mine.iter().map(|c| c.code.as_str()).collect::<Vec<_>>(),
        ["CS101", "CS102"]
    );
    let enrolled = db.linked_from(Student::COURSES, c1).expect("reverse");
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0].name, "Bob");
    let e = db
        .select::<Enrollment>()
        .filter(Enrollment::COURSE.eq(c2))
        .first()
        .expect("f")
        .expect("enrollment row");
    assert!(e.date.as_micros() > 0, "through model auto_now_add set");
    assert_eq!(db.unlink(Student::COURSES, s, c1).expect("unlink"), 1);
    assert_eq!(db.linked(Student::COURSES, s).expect("linked").len(), 1);
}

fn constraint_errors_are_typed(place: &Place) {
    let db = place.create();
    db.insert(&user("carol")).expect("first");
    let dup = db.insert(&user("carol")).expect_err("duplicate username");
    assert!(matches!(dup, Error::UniqueViolation(_)), "{dup:?}");
    assert_eq!(dup.kind(), ErrorKind::AlreadyExists);

    let orphan = db
        .insert(&Course {
            name: "x".into(),
            code: "y".into(),
            teacher: 777,
            ..Default::default()
        })
        .expect_err("missing teacher");
    assert_eq!(orphan.kind(), ErrorKind::FailedPrecondition);

    let long = db.insert(&user(&"x".repeat(101))).expect_err("max_length");
    assert_eq!(long.kind(), ErrorKind::InvalidArgument);
    assert!(db.insert(&user(&"x".repeat(100))).is_ok());
}

fn injection_strings_are_stored_and_matched_literally(place: &Place) {
    let db = place.create();
    let evil = [
        "bob'; DROP TABLE \"user\"; --",
        "\" OR 1=1 --",
        "x') OR ('1'='1",
        "100%_\\",
    ];
    for name in evil {
        db.insert(&user(name)).expect("insert evil");
    }
    for name in evil {
        let found = db
            .select::<User>()
            .filter(User::USERNAME.eq(name))
            .fetch()
            .expect("select");
        assert_eq!(found.len(), 1, "{name}");
        assert_eq!(found[0].username, name);
    }
    let like = db
        .select::<User>()
        .filter(User::USERNAME.like(&escape_like("100%_")))
        .count()
        .expect("like");
    assert_eq!(like, 0, "escaped wildcards match literally, not as prefix");
    let like = db
        .select::<User>()
        .filter(User::USERNAME.like(&format!("{}%", escape_like("100%_"))))
        .count()
        .expect("like");
    assert_eq!(like, 1);
    assert_eq!(db.select::<User>().count().expect("table intact"), 4);
}

fn transactions_commit_and_roll_back_on_error_and_panic(place: &Place) {
    let db = place.create();
    let id = db
        .transaction(|tx| -> Result<i64, Error> {
            let id = tx.insert(&user("t1"))?;
            tx.insert(&user("t2"))?;
            Ok(id)
        })
        .expect("commit");
    assert!(id > 0);
    assert_eq!(db.select::<User>().count().expect("c"), 2);

    let err = db
        .transaction(|tx| -> Result<(), Error> {
            tx.insert(&user("t3"))?;
            tx.insert(&user("t1"))?; // duplicate: whole transaction rolls back
            Ok(())
        })
        .expect_err("rolled back");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(db.select::<User>().count().expect("c"), 2);

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = db.transaction(|tx| -> Result<(), Error> {
            tx.insert(&user("t4")).expect("insert");
            panic!("boom");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(
        db.select::<User>().count().expect("c"),
        2,
        "panic rolled back"
    );

    // Nested: the inner failure rolls back only the savepoint.
    db.transaction(|tx| -> Result<(), Error> {
        tx.insert(&user("outer"))?;
        let inner = tx.transaction(|tx| -> Result<(), Error> {
            tx.insert(&user("inner"))?;
            Err(Error::InvalidQuery("abort inner".into()))
        });
        assert!(inner.is_err());
        Ok(())
    })
    .expect("outer commits");
    let names: Vec<String> = db
        .select::<User>()
        .order_by(User::ID.asc())
        .fetch()
        .expect("f")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["t1", "t2", "outer"]);
}

fn passwords_hashed_verified_rehashed_never_plain(place: &Place) {
    let db = place.create();
    let id = db.insert(&user("dave")).expect("insert");
    let by_name = User::USERNAME.eq("dave");
    assert_eq!(
        db.verify_password::<User>(by_name.clone(), "pw-dave")
            .expect("v"),
        Some(id)
    );
    assert_eq!(
        db.verify_password::<User>(by_name.clone(), "wrong")
            .expect("v"),
        None
    );
    assert_eq!(
        db.verify_password::<User>(User::USERNAME.eq("nobody"), "pw-dave")
            .expect("v"),
        None
    );
    db.set_password::<User>(id, "n3w-secret").expect("set");
    assert_eq!(
        db.verify_password::<User>(by_name.clone(), "pw-dave")
            .expect("v"),
        None
    );
    assert_eq!(
        db.verify_password::<User>(by_name.clone(), "n3w-secret")
            .expect("v"),
        Some(id)
    );
    assert_eq!(
        db.set_password::<User>(4242, "x")
            .expect_err("no row")
            .kind(),
        ErrorKind::NotFound
    );

    // Stronger parameters: the next successful login upgrades the stored hash.
    let stored_hash = |db: &fluxon_db::Database| -> String {
        let row = db
            .select::<User>()
            .filter(User::ID.eq(id))
            .columns([User::PASSWORD.index()])
            .first()
            .expect("select")
            .expect("row");
        row.password.phc().expect("the hash is read").to_owned()
    };
    let before = stored_hash(&db);
    let stronger = fluxon_db::HashParams {
        t_cost: 2,
        ..common::cheap()
    };
    let db2 = place.open().with_hash_params(stronger);
    assert_eq!(
        db2.verify_password::<User>(by_name, "n3w-secret")
            .expect("v"),
        Some(id)
    );
    let after = stored_hash(&db2);
    assert_ne!(before, after);
    assert!(after.contains("t=2"), "{after}");

    // No plaintext anywhere in the database file (SQLite: the file and its WAL).
    drop(db);
    drop(db2);
    let Some(dir) = place.sqlite_dir() else {
        return;
    };
    let bytes = std::fs::read(dir.join("uni.db")).expect("read db");
    let wal = std::fs::read(dir.join("uni.db-wal")).unwrap_or_default();
    for secret in ["pw-dave", "n3w-secret", "pw-alice"] {
        let hay = [bytes.as_slice(), wal.as_slice()];
        assert!(
            hay.iter()
                .all(|h| !h.windows(secret.len()).any(|w| w == secret.as_bytes())),
            "{secret} found in plaintext"
        );
    }
}

#[test]
fn default_argon2_parameters_work() {
    let db = fluxon_db::Database::open_in_memory().expect("open");
    db.create_tables(&fluxon_db::testing::models())
        .expect("tables");
    let id = db.insert(&user("erin")).expect("insert");
    assert_eq!(
        db.verify_password::<User>(User::ID.eq(id), "pw-erin")
            .expect("v"),
        Some(id)
    );
}

on_both_backends!(
    insert_get_and_auto_fields,
    select_filter_order_limit_offset_columns_count_exists,
    null_handling_with_is_null,
    update_delete_and_save,
    cascade_delete_follows_relations,
    relations_both_ways_and_many_to_many,
    constraint_errors_are_typed,
    injection_strings_are_stored_and_matched_literally,
    transactions_commit_and_roll_back_on_error_and_panic,
    passwords_hashed_verified_rehashed_never_plain,
);
